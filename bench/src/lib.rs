//! Cascade's measuring tools: latency recording with HDR histograms and outcomes by
//! gRPC status code ([`Recorder`], [`Summary`]), the open- and closed-loop load
//! engines with their timeline ([`load`]), and finding or provisioning `nats-server`
//! ([`nats`]). The lab's commands drive the Cascade workload through these.

pub mod load;
pub mod nats;

use std::{collections::BTreeMap, future::Future, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
const MAX_MICROS: u64 = 600_000_000;

/// Latencies of one operation (successes and failures apart, and every request
/// together) and every outcome by code.
#[derive(Clone)]
pub struct Recorder {
    latencies: Histogram<u64>,
    /// How long failures took: a failure at the deadline and a fast refusal differ.
    failures: Histogram<u64>,
    /// Every timed request, failures at their elapsed time: a request that hung until
    /// its deadline must weigh in the tail, as wrk2 and HdrHistogram count it.
    every: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
}

pub(crate) fn histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, significant_digits).expect("constant histogram bounds are valid")
}

/// Whole microseconds, capped at the histograms' top. 0 stays 0: a staleness of 0 is a
/// measurement, not a rounding error.
pub(crate) fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).min(MAX_MICROS)
}

impl Default for Recorder {
    fn default() -> Self {
        Self { latencies: histogram(3), failures: histogram(2), every: histogram(3), outcomes: BTreeMap::new() }
    }
}

/// The outcome of a request in the protocol's spelling: `OK`, `UNAVAILABLE`, …
pub fn outcome<T>(result: &Result<T, tonic::Status>) -> &'static str {
    use tonic::Code::*;
    let code = match result {
        Result::Ok(_) => Ok,
        Result::Err(status) => status.code(),
    };
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Runs a request under the client's own deadline, so no request outlives it: past
/// `deadline` it is abandoned and fails with `DEADLINE_EXCEEDED` at its elapsed time.
/// (tonic's channel also enforces the `grpc-timeout` it sends, but reports its expiry
/// as `CANCELLED`; that is the same deadline passing, so it is named the same.)
pub async fn within<T>(
    deadline: Duration,
    request: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let passed = || tonic::Status::deadline_exceeded(format!("the client's deadline of {deadline:?} passed"));
    match tokio::time::timeout(deadline, request).await {
        Err(_) => Err(passed()),
        Ok(Err(status))
            if status.code() == tonic::Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string() =>
        {
            Err(passed())
        }
        Ok(result) => result,
    }
}

/// A gRPC call under a deadline, the one way the lab sends a request: the deadline
/// travels as `grpc-timeout` (so the servers and their downstream calls know it) and is
/// enforced by the client itself ([`within`]), and the answer's message is returned.
/// `send` is the generated client's method: `call(d, message, |r| client.method(r))`.
pub async fn call<M, T, Fut>(
    deadline: Duration,
    message: M,
    send: impl FnOnce(tonic::Request<M>) -> Fut,
) -> Result<T, tonic::Status>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    within(deadline, send(request)).await.map(tonic::Response::into_inner)
}

impl Recorder {
    /// Records one request: its latency and its outcome. Success-only percentiles keep
    /// successes alone (so a fast failure cannot make a mode look quick); the
    /// all-requests ones count failures at their elapsed time (so a hung request
    /// cannot vanish from the tail).
    pub fn record(&mut self, latency: Duration, outcome: &str) {
        if outcome == "OK" {
            self.latencies.saturating_record(micros(latency));
        } else {
            self.failures.saturating_record(micros(latency));
        }
        self.every.saturating_record(micros(latency));
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// Counts an outcome without a latency (a request that was never sent).
    pub fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Recorder) {
        self.latencies.add(&other.latencies).expect("same bounds");
        self.failures.add(&other.failures).expect("same bounds");
        self.every.add(&other.every).expect("same bounds");
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
    }

    pub fn summary(&self) -> Summary {
        let h = &self.latencies;
        let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        Summary {
            attempted: self.outcomes.values().sum(),
            ok: h.len(),
            outcomes: self.outcomes.clone(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            failed_p50_us: quantile(&self.failures, 0.5),
            failed_p99_us: quantile(&self.failures, 0.99),
            failed_max_us: if self.failures.is_empty() { 0 } else { self.failures.max() },
            all_requests: Some(Percentiles::of(&self.every)),
            spectrum: spectrum(h),
        }
    }
}

/// Points of the percentile spectrum, HdrHistogram style: ten per decade of 1/(1−p)
/// (0 %, 20.6 %, 36.9 % … 90 % … 99 % … 99.9 % …) as far as the samples reach (no
/// percentile finer than one sample in the histogram), then the max at 1 − 1/n.
fn spectrum(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let n = h.len();
    let mut points: Vec<(f64, u64)> = (0..)
        .map(|k| 1.0 - 10f64.powf(-(k as f64) / 10.0))
        // (Short of 1 − 1/n by a margin, so float rounding cannot put a point on the max's.)
        .take_while(|q| n > 1 && *q < 1.0 - 1.0 / n as f64 - 1e-9)
        .map(|q| (100.0 * q, h.value_at_quantile(q)))
        .collect();
    if n > 1 {
        points.push((100.0 * (1.0 - 1.0 / n as f64), h.max()));
    }
    points
}

/// Percentiles of one histogram (0 when it is empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Requests timed.
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_us: quantile(h, 0.50),
            p90_us: quantile(h, 0.90),
            p99_us: quantile(h, 0.99),
            p999_us: quantile(h, 0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

/// What a run of one operation measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub attempted: u64,
    pub ok: u64,
    /// Count per outcome: `OK`, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, …
    pub outcomes: BTreeMap<String, u64>,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    /// How long the failed requests took (0 when none failed).
    #[serde(default)]
    pub failed_p50_us: u64,
    #[serde(default)]
    pub failed_p99_us: u64,
    #[serde(default)]
    pub failed_max_us: u64,
    /// Latency over **all** timed requests, failures counted at their elapsed time
    /// (the `p*_us` fields above are successes only). `None` in results recorded
    /// before it was measured.
    #[serde(default)]
    pub all_requests: Option<Percentiles>,
    /// The successes' percentile spectrum: (percentile in %, µs), see [`spectrum`].
    /// Empty in results recorded before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spectrum: Vec<(f64, u64)>,
}

impl Summary {
    /// Successful / attempted (1.0 when nothing was attempted).
    pub fn availability(&self) -> f64 {
        if self.attempted == 0 {
            1.0
        } else {
            self.ok as f64 / self.attempted as f64
        }
    }
}

pub(crate) fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_timed_apart_from_successes() {
        let mut r = Recorder::default();
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms), "OK");
        }
        r.record(Duration::from_secs(30), "DEADLINE_EXCEEDED");
        let s = r.summary();
        assert_eq!(s.attempted, 101);
        assert_eq!(s.ok, 100);
        assert_eq!(s.outcomes["DEADLINE_EXCEEDED"], 1);
        assert!((49_500..=50_500).contains(&s.p50_us), "{}", s.p50_us);
        assert!((99_000..=100_500).contains(&s.p99_us), "{}", s.p99_us);
        assert!(s.max_us < 30_000_000);
        assert!((29_000_000..=30_100_000).contains(&s.failed_max_us), "{}", s.failed_max_us);
        // Over all requests the failure is in the tail: the max is the 30 s failure.
        let all = s.all_requests.expect("measured");
        assert_eq!(all.count, 101);
        assert!((29_000_000..=30_100_000).contains(&all.max_us), "{}", all.max_us);
        assert!((99_000..=100_500).contains(&all.p99_us), "{}", all.p99_us);
        // The successes' spectrum: 10 points per decade of 1/(1-p) up to 1 in 100
        // samples, then the max; rising with the percentile.
        assert_eq!(s.spectrum.len(), 21, "{:?}", s.spectrum);
        assert_eq!(s.spectrum[10].0.round(), 90.0);
        assert!(s.spectrum.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{:?}", s.spectrum);
        assert_eq!(s.spectrum.last().unwrap().1, s.max_us);
    }

    #[test]
    fn codes_have_protocol_names() {
        assert_eq!(outcome(&Ok::<(), tonic::Status>(())), "OK");
        assert_eq!(outcome::<()>(&Err(tonic::Status::unavailable("x"))), "UNAVAILABLE");
        assert_eq!(outcome::<()>(&Err(tonic::Status::deadline_exceeded("x"))), "DEADLINE_EXCEEDED");
    }
}
