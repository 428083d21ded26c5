//! Load engines.
//!
//! [`open_loop`] issues requests on a fixed schedule (request *i* is due at
//! `start + i / rate`) whatever the server does, and measures each latency from the
//! request's *intended* send time. A server that stalls therefore cannot hide its
//! queue behind a generator that politely waits (no coordinated omission): every
//! request that should have been sent during the stall is charged the time it waited.
//! [`closed_loop`] runs N clients that each send their next request when the previous
//! one returns: the way to find the maximum throughput, not to measure latency under a
//! given load.
//!
//! Both record per-operation [`Recorder`]s and a [`Timeline`] of fixed buckets by
//! intended send time, so a fault window shows up where it happened.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, time::Instant};

use crate::{histogram, micros, quantile, Recorder, Summary};

/// The outcome of a request the open loop did not send because too many were in flight.
pub const SHED: &str = "SHED";

/// One finished request, as the engine reports it to its collector.
struct Done {
    op: &'static str,
    outcome: &'static str,
    /// Intended send time, from the start of the run.
    intended: Duration,
    /// From the intended send time to the answer.
    latency: Duration,
    /// How late the request actually left.
    lag: Duration,
}

/// Counts and tail latency of one bucket of the timeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    /// Start of the bucket from the start of the run.
    pub t_ms: u64,
    pub ok: u64,
    /// Failures by outcome.
    pub errors: BTreeMap<String, u64>,
    /// p99 of the successful requests intended in this bucket (0 if none).
    pub p99_us: u64,
    /// p99 of every timed request intended in this bucket, failures at their elapsed
    /// time (0 if none; absent in results from before it was recorded).
    #[serde(default)]
    pub p99_all_us: u64,
}

/// Requests by intended send time in fixed buckets.
pub struct Timeline {
    width: Duration,
    buckets: Vec<TimelineBucket>,
}

/// Successes, failures by outcome, the successes' latencies, every timed request's.
type TimelineBucket = (u64, BTreeMap<String, u64>, Histogram<u64>, Histogram<u64>);

impl Timeline {
    pub fn new(width: Duration) -> Self {
        Self { width, buckets: Vec::new() }
    }

    fn record(&mut self, at: Duration, latency: Duration, outcome: &str) {
        let i = (at.as_nanos() / self.width.as_nanos().max(1)) as usize;
        while self.buckets.len() <= i {
            self.buckets.push((0, BTreeMap::new(), histogram(2), histogram(2)));
        }
        let (ok, errors, h, every) = &mut self.buckets[i];
        if outcome == "OK" {
            *ok += 1;
            h.saturating_record(micros(latency));
        } else {
            *errors.entry(outcome.to_owned()).or_default() += 1;
        }
        // A shed request was never sent: counted, not timed (as in the recorder).
        if outcome != SHED {
            every.saturating_record(micros(latency));
        }
    }

    pub fn buckets(&self) -> Vec<Bucket> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, (ok, errors, h, every))| Bucket {
                t_ms: (self.width * i as u32).as_millis() as u64,
                ok: *ok,
                errors: errors.clone(),
                p99_us: quantile(h, 0.99),
                p99_all_us: quantile(every, 0.99),
            })
            .collect()
    }
}

/// How well the generator kept its schedule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SendLag {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Requests that left more than 1 ms after their intended time.
    pub late_over_1ms: u64,
}

/// What one load run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// "open" or "closed".
    pub kind: String,
    /// Requests per second asked for (open loop).
    pub target_rate: Option<f64>,
    /// Concurrent clients (closed loop).
    pub concurrency: Option<usize>,
    pub duration_ms: u64,
    /// Requests scheduled (open loop) or sent (closed loop).
    pub scheduled: u64,
    /// Successful requests per second over the run.
    pub ok_per_s: f64,
    /// Every operation together, then each.
    pub all: Summary,
    pub ops: BTreeMap<String, Summary>,
    pub send_lag: SendLag,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    pub timeline_bucket_ms: u64,
    pub timeline: Vec<Bucket>,
}

impl LoadReport {
    /// Share of the requests sent that left more than 1 ms after their intended time.
    pub fn late_share(&self) -> f64 {
        let sent = self.scheduled - self.all.outcomes.get(SHED).copied().unwrap_or(0);
        self.send_lag.late_over_1ms as f64 / sent.max(1) as f64
    }
}

/// Open-loop settings.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
    /// Beyond this many in flight the engine sheds new requests (outcome `SHED`,
    /// charged no latency) rather than grow without bound.
    pub max_in_flight: usize,
    pub bucket: Duration,
}

impl OpenLoop {
    pub fn new(rate: f64, duration: Duration) -> Self {
        Self { rate, duration, max_in_flight: 20_000, bucket: Duration::from_millis(100) }
    }
}

/// Collects finished requests; `live` (if any) gets each whole second of completions
/// as it passes, for a live view.
struct Collector {
    ops: BTreeMap<&'static str, Recorder>,
    all: Recorder,
    timeline: Timeline,
    lag: Histogram<u64>,
    late: u64,
}

impl Collector {
    fn new(bucket: Duration) -> Self {
        Self {
            ops: BTreeMap::new(),
            all: Recorder::default(),
            timeline: Timeline::new(bucket),
            lag: histogram(2),
            late: 0,
        }
    }

    fn add(&mut self, done: &Done) {
        if done.outcome == SHED {
            // Never sent: counted, not timed.
            self.ops.entry(done.op).or_default().count(SHED);
            self.all.count(SHED);
            self.timeline.record(done.intended, Duration::ZERO, SHED);
            return;
        }
        self.ops.entry(done.op).or_default().record(done.latency, done.outcome);
        self.all.record(done.latency, done.outcome);
        self.timeline.record(done.intended, done.latency, done.outcome);
        self.lag.saturating_record(micros(done.lag));
        if done.lag > Duration::from_millis(1) {
            self.late += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        self,
        kind: &str,
        target_rate: Option<f64>,
        concurrency: Option<usize>,
        duration: Duration,
        scheduled: u64,
        max_in_flight: usize,
        bucket: Duration,
    ) -> LoadReport {
        let all = self.all.summary();
        LoadReport {
            kind: kind.to_owned(),
            target_rate,
            concurrency,
            duration_ms: duration.as_millis() as u64,
            scheduled,
            ok_per_s: all.ok as f64 / duration.as_secs_f64().max(1e-9),
            all,
            ops: self.ops.iter().map(|(k, r)| (k.to_string(), r.summary())).collect(),
            send_lag: SendLag {
                p50_us: quantile(&self.lag, 0.5),
                p99_us: quantile(&self.lag, 0.99),
                max_us: if self.lag.is_empty() { 0 } else { self.lag.max() },
                late_over_1ms: self.late,
            },
            max_in_flight,
            timeline_bucket_ms: bucket.as_millis() as u64,
            timeline: self.timeline.buckets(),
        }
    }
}

/// A second of completions, for a live view.
#[derive(Debug, Clone)]
pub struct Second {
    pub second: u64,
    pub summary: Summary,
}

/// Runs `config.rate` requests per second for `config.duration`. `next(i)` makes
/// request *i*: its operation name and the future that sends it, resolving to its
/// outcome (`"OK"` or a gRPC code name). `live`, if given, receives each second of
/// completions as it ends.
pub async fn open_loop<F, Fut>(config: OpenLoop, next: F, live: Option<mpsc::UnboundedSender<Second>>) -> LoadReport
where
    F: FnMut(u64) -> (&'static str, Fut) + Send + 'static,
    Fut: Future<Output = &'static str> + Send + 'static,
{
    open_loop_for(config, Length::new(config.duration), next, live).await
}

/// The length of an open-loop run, which its caller may extend while the run lasts
/// (a fault schedule running late keeps the load going until its last step is done).
#[derive(Debug, Clone)]
pub struct Length {
    nanos: Arc<AtomicU64>,
    /// Holds taken ([`Length::hold`]): while any is, the run does not end.
    holds: Arc<AtomicU64>,
}

impl Length {
    pub fn new(length: Duration) -> Self {
        Self { nanos: Arc::new(AtomicU64::new(length.as_nanos() as u64)), holds: Arc::default() }
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    /// Makes the run at least `length` long; a run that has already ended stays ended.
    pub fn extend_to(&self, length: Duration) {
        self.nanos.fetch_max(length.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Keeps the run going past its length until the guard is dropped (extend it before
    /// then): for a step of unknown length that the run must outlive, such as a restart
    /// that blocks its thread while the process stops.
    pub fn hold(&self) -> Held {
        self.holds.fetch_add(1, Ordering::SeqCst);
        Held(self.holds.clone())
    }

    /// Whether a request due `at` from the start is still within the run.
    fn covers(&self, at: Duration) -> bool {
        self.holds.load(Ordering::SeqCst) > 0 || at < self.get()
    }
}

/// A hold on a run's end ([`Length::hold`]); dropping it lets the run end.
#[derive(Debug)]
pub struct Held(Arc<AtomicU64>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// [`open_loop`] for as long as `length` says when the schedule reaches it
/// (`config.duration` is not used).
pub async fn open_loop_for<F, Fut>(
    config: OpenLoop,
    length: Length,
    mut next: F,
    live: Option<mpsc::UnboundedSender<Second>>,
) -> LoadReport
where
    F: FnMut(u64) -> (&'static str, Fut) + Send + 'static,
    Fut: Future<Output = &'static str> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Done>();
    let collector = tokio::spawn(collect(rx, config.bucket, live));
    let runtime = tokio::runtime::Handle::current();
    let schedule = Schedule { rate: config.rate.max(1e-6), length: length.clone() };
    let start = Instant::now();
    // The schedule is kept by a thread of its own: tokio's timer ticks in whole
    // milliseconds, which would make every request up to 1 ms late at any rate, and
    // that lateness would be charged to the server. A thread sleeping with a fine timer
    // slack wakes within tens of microseconds of the intended time; the requests still
    // run on the runtime.
    //
    // At high rates one sleep (and one cross-thread spawn) per request costs more than
    // the interval, so the thread paces in small batches: each time it wakes it takes
    // every request already due and hands them to the runtime in one spawn. No request
    // leaves before its intended time, and each is still timed from its own intended
    // time, so a batch's lateness is charged and shows as send lag.
    let scheduler = std::thread::Builder::new().name("open-loop".into()).spawn(move || {
        fine_timer_slack();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut max_in_flight = 0;
        let mut i: u64 = 0;
        loop {
            if tx.is_closed() {
                break;
            }
            let Some(first) = schedule.intended(i) else { break };
            let now = start.elapsed();
            if first > now {
                std::thread::sleep(first - now);
                continue;
            }
            let due = schedule.due(i, now, MAX_BATCH);
            let mut batch = Vec::with_capacity(due.clone().count());
            for j in due.clone() {
                let intended_offset = schedule.intended(j).expect("due requests are in the schedule");
                let (op, request) = next(j);
                let count = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                max_in_flight = max_in_flight.max(count);
                if count > config.max_in_flight {
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let done = Done {
                        op,
                        outcome: SHED,
                        intended: intended_offset,
                        latency: Duration::ZERO,
                        lag: Duration::ZERO,
                    };
                    // The collector outlives the schedule (it ends when all senders are gone).
                    tx.send(done).ok();
                    continue;
                }
                let (tx, in_flight) = (tx.clone(), in_flight.clone());
                let intended = start + intended_offset;
                batch.push(async move {
                    let lag = intended.elapsed();
                    let outcome = request.await;
                    let latency = intended.elapsed();
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    tx.send(Done { op, outcome, intended: intended_offset, latency, lag }).ok();
                });
            }
            i = due.end;
            if batch.len() == 1 {
                runtime.spawn(batch.pop().expect("one request"));
            } else if !batch.is_empty() {
                // One wake-up of the runtime for the batch; each request then gets its
                // own task from inside it, so none waits for another's answer.
                runtime.spawn(async move {
                    for request in batch {
                        tokio::spawn(request);
                    }
                });
            }
        }
        (i, max_in_flight)
    });
    let scheduler = scheduler.expect("cannot start the open-loop scheduler thread");
    let (scheduled, max_in_flight) =
        tokio::task::spawn_blocking(move || scheduler.join().expect("open-loop scheduler panicked"))
            .await
            .expect("open-loop scheduler join");
    let collector = collector.await.expect("collector task");
    // Throughput over the schedule's length: the last answers draining after it are
    // the same requests, not extra time.
    collector.report("open", Some(config.rate), None, length.get(), scheduled, max_in_flight, config.bucket)
}

/// Most requests handed to the runtime in one batch: bounds how long the scheduler
/// thread is away from its clock.
const MAX_BATCH: usize = 64;

/// The open loop's schedule: request *i* is due `i / rate` after the start, for as long
/// as that is within the run.
#[derive(Debug, Clone)]
struct Schedule {
    rate: f64,
    length: Length,
}

impl Schedule {
    #[cfg(test)]
    fn new(rate: f64, duration: Duration) -> Self {
        Self { rate: rate.max(1e-6), length: Length::new(duration) }
    }

    /// When request `i` is due, from the start; `None` past the end of the run.
    fn intended(&self, i: u64) -> Option<Duration> {
        // Rounded to the nanosecond (not truncated), so that at a rate whose interval
        // is a whole number of nanoseconds every intended time is exact.
        let at = Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64);
        self.length.covers(at).then_some(at)
    }

    /// The requests from `next` on that are due by `now`, at most `max` of them.
    fn due(&self, next: u64, now: Duration, max: usize) -> std::ops::Range<u64> {
        let mut end = next;
        while end - next < max as u64 && self.intended(end).is_some_and(|at| at <= now) {
            end += 1;
        }
        next..end
    }
}

/// Asks Linux to wake this thread's sleeps within 1 µs of their deadline instead of
/// the default 50 µs slack.
#[allow(unsafe_code)]
fn fine_timer_slack() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
    if rc != 0 {
        tracing::debug!("PR_SET_TIMERSLACK refused; sleeps keep the default slack");
    }
}

/// Runs `concurrency` clients back to back for `duration`: the throughput ceiling.
/// Latency is measured from each actual send (there is no schedule to miss).
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, next: F) -> LoadReport
where
    F: Fn(u64) -> (&'static str, Fut) + Send + Sync + 'static,
    Fut: Future<Output = &'static str> + Send + 'static,
{
    let bucket = Duration::from_millis(100);
    let (tx, rx) = mpsc::unbounded_channel::<Done>();
    let collector = tokio::spawn(collect(rx, bucket, None));
    let next = Arc::new(next);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (tx, next, counter) = (tx.clone(), next.clone(), counter.clone());
        workers.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let (op, request) = next(i);
                let sent = Instant::now();
                let outcome = request.await;
                let done = Done { op, outcome, intended: sent - start, latency: sent.elapsed(), lag: Duration::ZERO };
                if tx.send(done).is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    for worker in workers {
        worker.await.expect("closed-loop worker");
    }
    let elapsed = start.elapsed();
    let scheduled = counter.load(Ordering::Relaxed);
    collector.await.expect("collector task").report(
        "closed",
        None,
        Some(concurrency),
        elapsed,
        scheduled,
        concurrency,
        bucket,
    )
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<Done>,
    bucket: Duration,
    live: Option<mpsc::UnboundedSender<Second>>,
) -> Collector {
    let mut collector = Collector::new(bucket);
    let start = Instant::now();
    let mut second = Recorder::default();
    let mut current = 0;
    while let Some(done) = rx.recv().await {
        collector.add(&done);
        if let Some(live) = &live {
            let now = start.elapsed().as_secs();
            if now != current {
                // A closed live view just means nobody is watching any more.
                live.send(Second { second: current, summary: second.summary() }).ok();
                second = Recorder::default();
                current = now;
            }
            second.record(done.latency, done.outcome);
        }
    }
    collector
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that freezes for 300 ms in the middle of the run: the requests due
    /// during the freeze are charged their wait, so the tail shows the stall, and the
    /// timeline puts it where it happened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_injected_stall_shows_up_in_the_latencies() {
        let start = std::time::Instant::now();
        let stall_from = Duration::from_millis(400);
        let stall_to = Duration::from_millis(700);
        let report = open_loop(
            OpenLoop::new(500.0, Duration::from_secs(1)),
            move |_| {
                ("op", async move {
                    // Every request sent while the server is frozen waits until it thaws.
                    let now = start.elapsed();
                    if now >= stall_from && now < stall_to {
                        tokio::time::sleep(stall_to - now).await;
                    }
                    "OK"
                })
            },
            None,
        )
        .await;
        assert_eq!(report.scheduled, 500);
        assert_eq!(report.all.ok, 500);
        // 30 % of requests were due during the stall; they waited up to 300 ms.
        assert!(report.all.max_us >= 250_000, "max {}", report.all.max_us);
        assert!(report.all.p90_us >= 50_000, "p90 {}", report.all.p90_us);
        assert!(report.all.p50_us < 50_000, "p50 {}", report.all.p50_us);
        let stalled: Vec<&Bucket> = report.timeline.iter().filter(|b| b.p99_us >= 100_000).collect();
        assert!(!stalled.is_empty());
        assert!(stalled.iter().all(|b| (300..=700).contains(&b.t_ms)), "{stalled:?}");
    }

    /// The same stall measured closed-loop hides in a handful of slow requests: the
    /// reason the latency figures come from the open loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_loop_hides_the_same_stall() {
        let start = std::time::Instant::now();
        let report = closed_loop(1, Duration::from_secs(1), move |_| {
            ("op", async move {
                let now = start.elapsed();
                if now >= Duration::from_millis(400) && now < Duration::from_millis(700) {
                    tokio::time::sleep(Duration::from_millis(700) - now).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                "OK"
            })
        })
        .await;
        assert!(report.all.max_us >= 250_000);
        assert!(report.all.p90_us < 50_000, "closed loop p90 {}", report.all.p90_us);
    }

    #[tokio::test]
    async fn outcomes_are_counted_per_operation_and_bucket() {
        let report = open_loop(
            OpenLoop { bucket: Duration::from_millis(100), ..OpenLoop::new(100.0, Duration::from_millis(500)) },
            |i| {
                let (op, outcome) = if i % 2 == 0 { ("read", "OK") } else { ("write", "UNAVAILABLE") };
                (op, async move { outcome })
            },
            None,
        )
        .await;
        assert_eq!(report.ops["read"].ok, 25);
        assert_eq!(report.ops["write"].outcomes["UNAVAILABLE"], 25);
        assert_eq!(report.timeline.len(), 5);
        assert!(report.timeline.iter().all(|b| b.ok == 5 && b.errors["UNAVAILABLE"] == 5), "{:?}", report.timeline);
    }

    /// Batching takes every request due at a wake-up and only those, in order, none
    /// twice, none skipped; each keeps its own schedule-exact intended time.
    /// A bucket in which every request hung until its deadline has no success p99, and
    /// its all-requests p99 is the deadline: the hang is in the timeline, not a blank.
    #[test]
    fn a_bucket_of_hung_requests_shows_in_the_all_requests_p99() {
        let mut timeline = Timeline::new(Duration::from_millis(100));
        timeline.record(Duration::from_millis(10), Duration::from_micros(900), "OK");
        for i in 0..20 {
            timeline.record(Duration::from_millis(110 + i), Duration::from_millis(500), "DEADLINE_EXCEEDED");
        }
        timeline.record(Duration::from_millis(120), Duration::ZERO, SHED);
        let buckets = timeline.buckets();
        assert!((895..=910).contains(&buckets[0].p99_all_us), "{:?}", buckets[0]);
        assert_eq!(buckets[1].p99_us, 0, "nothing succeeded");
        assert!((495..=510).contains(&(buckets[1].p99_all_us / 1000)), "{:?}", buckets[1]);
        assert_eq!(buckets[1].errors["DEADLINE_EXCEEDED"], 20);
    }

    #[test]
    fn batches_hold_exactly_the_requests_due_at_each_wake_up() {
        let schedule = Schedule::new(50_000.0, Duration::from_millis(10));
        let mut taken = Vec::new();
        let mut batched = 0;
        let mut now = Duration::ZERO;
        let mut next = 0;
        // Wake-ups that overshoot by varying amounts, as a sleeping thread's do.
        for k in 0u64.. {
            let Some(first) = schedule.intended(next) else { break };
            now = now.max(first) + Duration::from_micros([3, 137, 41, 9, 1_600][k as usize % 5]);
            let due = schedule.due(next, now, MAX_BATCH);
            assert!(!due.is_empty(), "the first request was due at {first:?}, now is {now:?}");
            assert!(due.clone().count() <= MAX_BATCH);
            if due.clone().count() > 1 {
                batched += 1;
            }
            for j in due.clone() {
                // Request j's time is j intervals (20 µs) from the start, exactly.
                assert_eq!(schedule.intended(j), Some(Duration::from_micros(20 * j)));
                assert!(schedule.intended(j).unwrap() <= now, "request {j} would leave early");
            }
            let after = schedule.intended(due.end);
            assert!(due.clone().count() == MAX_BATCH || after.is_none_or(|at| at > now), "request {} was due", due.end);
            taken.extend(due.clone());
            next = due.end;
        }
        assert_eq!(taken, (0..500).collect::<Vec<_>>());
        assert!(batched > 0, "the overshoots must have produced batches");
    }

    /// Through the engine at a rate far above one sleep per request: the timeline
    /// (bucketed by intended send time) holds exactly rate × width requests per bucket,
    /// which it could not if a batch moved any request's intended time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batched_open_loop_times_each_request_from_its_own_slot() {
        let config =
            OpenLoop { bucket: Duration::from_millis(10), ..OpenLoop::new(20_000.0, Duration::from_millis(300)) };
        let report = open_loop(config, |_| ("noop", async { "OK" }), None).await;
        assert_eq!(report.scheduled, 6_000);
        assert_eq!(report.timeline.len(), 30);
        for bucket in &report.timeline {
            let total = bucket.ok + bucket.errors.values().sum::<u64>();
            assert_eq!(total, 200, "{bucket:?}");
        }
    }
}
