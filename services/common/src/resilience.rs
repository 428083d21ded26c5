//! The policy axis, client side: how a service's outbound calls meet failure.
//!
//! Every inter-service call, gRPC (sync mode) or NATS request/reply (bus-rpc), goes
//! through [`Resilience::call`], so both modes get the same policy:
//!
//! - **naive**: one attempt within the propagated deadline ([`deadline::call`]).
//! - **retry-storm**: what a hurried team ships: on any error from the dependency, or
//!   an attempt that did not answer within its per-try timeout ([`STORM_TRY_TIMEOUT`]),
//!   up to [`STORM_RETRIES`] more attempts at once, no budget, no breaker. Each attempt
//!   gets the per-try timeout or what is left of the deadline, whichever is shorter, so
//!   a slowdown, not only an error, sets the retries off; none follows an attempt that
//!   used up the deadline (the rest is the reply's).
//! - **hardened**: what a careful team ships, each piece for a reason:
//!   - retries only for idempotent calls (every call here is a read, marked on its
//!     [`Hop`]), only on `UNAVAILABLE`, `RESOURCE_EXHAUSTED` or a `DEADLINE_EXCEEDED`
//!     the dependency itself answered: the codes a second try can fix;
//!   - exponential backoff with full jitter (AWS's "full jitter"), so that callers who
//!     failed together do not return together; never a wait past the propagated deadline;
//!   - a retry budget per dependency (tower's `TpsBudget`, as Finagle and gRPC's retry
//!     throttling: about 10 % of calls, plus a small floor), so that retries cannot
//!     multiply the load on a dependency that is already failing;
//!   - a circuit breaker per dependency ([`Breaker`]): after consecutive failures it
//!     fails calls in microseconds with `UNAVAILABLE "circuit open for <dep>"`, and after
//!     a cool-down lets one probe through, closing on its success. A dependency that is
//!     down then costs its callers nothing, and gets no load while it restarts.
//!
//! The breaker is our own (about 60 lines): it runs on tokio's clock, so tests drive it
//! with a paused clock, and it has the one behaviour described above; the maintained
//! crates (`failsafe`) bring their own clock and futures wrappers for the same thing.
//! Shedding (the server side) is in `serve.rs` and `bus.rs`; degradation in query's
//! `chain.rs`.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use rand::Rng;
use tokio::time::Instant;
use tonic::{Code, Request, Status};
use tower::retry::budget::{Budget, TpsBudget};

use crate::{
    config::Policy,
    deadline::{self, Deadline, Failed, Hop, REPLY_RESERVE},
};

/// Retry-storm's extra attempts per call.
pub const STORM_RETRIES: u32 = 3;
/// Retry-storm's per-try timeout: the hurried team's "a call takes a few milliseconds,
/// give it 50". Four attempts of it fit in the lab's 500 ms deadline.
pub const STORM_TRY_TIMEOUT: Duration = Duration::from_millis(50);

/// The hardened policy's knobs (tests shrink them).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Extra attempts per call at most.
    pub retries: u32,
    /// The first backoff's upper bound; it doubles with each retry, up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long the budget remembers calls (tower: 1 to 60 s).
    pub budget_ttl: Duration,
    /// Retries allowed per second whatever the traffic (the floor).
    pub budget_floor_per_sec: u32,
    /// Retries allowed per call made, on top of the floor.
    pub budget_ratio: f32,
    /// Consecutive failures that open a dependency's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before it lets a probe through.
    pub breaker_cool_down: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(80),
            budget_ttl: Duration::from_secs(10),
            budget_floor_per_sec: 10,
            budget_ratio: 0.1,
            breaker_failures: 5,
            breaker_cool_down: Duration::from_millis(500),
        }
    }
}

/// A service's outbound calls under one [`Policy`]. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Resilience {
    policy: Policy,
    settings: Settings,
    dependencies: Arc<std::sync::Mutex<HashMap<&'static str, Arc<Dependency>>>>,
}

/// What the hardened policy keeps per dependency.
struct Dependency {
    budget: TpsBudget,
    breaker: std::sync::Mutex<Breaker>,
}

impl Dependency {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Resilience {
    pub fn new(policy: Policy) -> Self {
        Self::with_settings(policy, Settings::default())
    }

    pub fn with_settings(policy: Policy, settings: Settings) -> Self {
        Self { policy, settings, dependencies: Arc::default() }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn dependency(&self, name: &'static str) -> Arc<Dependency> {
        let mut all = self.dependencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let s = &self.settings;
        all.entry(name)
            .or_insert_with(|| {
                Arc::new(Dependency {
                    budget: TpsBudget::new(s.budget_ttl, s.budget_floor_per_sec, s.budget_ratio),
                    breaker: std::sync::Mutex::new(Breaker::new(s.breaker_failures, s.breaker_cool_down)),
                })
            })
            .clone()
    }

    /// Makes the call of `hop` within `deadline` under this policy: `make_call` sends
    /// one attempt (as for [`deadline::call`]) and is called once per attempt. Errors are
    /// blamed as [`deadline::call`] blames them.
    pub async fn call<Req, Resp, Fut>(
        &self,
        hop: Hop,
        deadline: Deadline,
        message: Req,
        mut make_call: impl FnMut(Request<Req>) -> Fut,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        match self.policy {
            Policy::Naive => deadline::call(hop, deadline, message, make_call).await,
            Policy::RetryStorm => {
                let mut retries = 0;
                loop {
                    let attempt =
                        deadline::attempt(hop, deadline, Some(STORM_TRY_TIMEOUT), message.clone(), &mut make_call);
                    match attempt.await {
                        Ok(response) => return Ok(response),
                        // Another attempt only if it gets time of its own beside the
                        // reply's share: a retry in the deadline's last sliver could only
                        // fail as "no time left" and hide why the last one failed.
                        Err(Failed::Callee(_) | Failed::TryTimedOut(_))
                            if retries < STORM_RETRIES && deadline.remaining() >= 2 * REPLY_RESERVE =>
                        {
                            retries += 1;
                            crate::stats::retry_sent(&hop.to_string());
                        }
                        Err(failed) => return Err(failed.blamed(hop)),
                    }
                }
            }
            Policy::Hardened => self.hardened(hop, deadline, message, make_call).await,
        }
    }

    async fn hardened<Req, Resp, Fut>(
        &self,
        hop: Hop,
        deadline: Deadline,
        message: Req,
        mut make_call: impl FnMut(Request<Req>) -> Fut,
    ) -> Result<Resp, Status>
    where
        Req: Clone,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let dependency = self.dependency(hop.dependency);
        dependency.budget.deposit();
        let mut retries = 0;
        loop {
            let Some(admitted) = dependency.breaker().admit(Instant::now()) else {
                crate::stats::breaker_rejected(hop.dependency);
                return Err(Status::unavailable(format!("circuit open for {} ({hop} not sent)", hop.dependency)));
            };
            let failed = match deadline::attempt(hop, deadline, None, message.clone(), &mut make_call).await {
                Ok(response) => {
                    dependency.breaker().record(admitted, true, Instant::now());
                    return Ok(response);
                }
                Err(failed) => failed,
            };
            let retryable = match &failed {
                Failed::Callee(status) => {
                    let unhealthy =
                        matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted);
                    // A dependency that answered (even NOT_FOUND) is healthy.
                    dependency.breaker().record(admitted, !unhealthy, Instant::now());
                    unhealthy && hop.is_idempotent()
                }
                Failed::TimedOut(_) | Failed::TryTimedOut(_) => {
                    dependency.breaker().record(admitted, false, Instant::now());
                    false
                }
                Failed::NoTimeLeft(_) => false,
            };
            if !retryable || retries >= self.settings.retries {
                return Err(failed.blamed(hop));
            }
            // Full jitter: anywhere between 0 and the exponential bound.
            let bound = self.settings.backoff_base.saturating_mul(1 << retries.min(16)).min(self.settings.backoff_cap);
            let wait = rand::rng().random_range(Duration::ZERO..=bound);
            // Never wait past the deadline: the next attempt must still have time of its
            // own after the wait, beside what is kept for the reply.
            if wait + REPLY_RESERVE >= deadline.remaining() || !dependency.budget.withdraw() {
                return Err(failed.blamed(hop));
            }
            tokio::time::sleep(wait).await;
            retries += 1;
            crate::stats::retry_sent(&hop.to_string());
        }
    }
}

/// A circuit breaker for one dependency: closed (calls pass, consecutive failures
/// counted), open (calls refused until the cool-down ends), half-open (one probe
/// passes; its success closes the breaker, its failure opens it again). A probe that
/// never reports (its caller gave up) is replaced by another after one cool-down.
#[derive(Debug)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    threshold: u32,
    cool_down: Duration,
    /// Bumped on every change of state: a call admitted before it reports on a state
    /// that is gone, and its result is ignored.
    generation: u64,
}

/// Where a [`Breaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_sent: Instant },
}

/// A call the breaker let through, and the state it was let through in.
#[derive(Debug, Clone, Copy)]
pub struct Admitted {
    generation: u64,
}

impl Breaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            threshold: threshold.max(1),
            cool_down,
            generation: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn set(&mut self, state: BreakerState) {
        self.state = state;
        self.generation += 1;
    }

    /// Whether a call may go out at `now`: the ticket to report its outcome with.
    pub fn admit(&mut self, now: Instant) -> Option<Admitted> {
        let probe_due = match self.state {
            BreakerState::Closed => return Some(Admitted { generation: self.generation }),
            BreakerState::Open { until } => now >= until,
            // A probe that never reported (its caller gave up) is replaced after one cool-down.
            BreakerState::HalfOpen { probe_sent } => now >= probe_sent + self.cool_down,
        };
        if !probe_due {
            return None;
        }
        self.set(BreakerState::HalfOpen { probe_sent: now });
        Some(Admitted { generation: self.generation })
    }

    /// The outcome of `call`: healthy unless the dependency was unreachable, too slow or
    /// overloaded (any answer, even `NOT_FOUND`, is healthy). A call admitted before the
    /// last change of state (sent while closed and failing after the breaker opened, or a
    /// probe replaced by another) tells nothing about the dependency now: ignored.
    pub fn record(&mut self, call: Admitted, healthy: bool, now: Instant) {
        if call.generation != self.generation {
            return;
        }
        if healthy {
            self.consecutive_failures = 0;
            if self.state != BreakerState::Closed {
                self.set(BreakerState::Closed);
            }
            return;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let probe_failed = matches!(self.state, BreakerState::HalfOpen { .. });
        if probe_failed || self.consecutive_failures >= self.threshold {
            self.consecutive_failures = 0;
            self.set(BreakerState::Open { until: now + self.cool_down });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const PRODUCTS: Hop = Hop::new("products", "GetProducts").idempotent();

    fn down() -> Status {
        Status::unavailable("tcp connect error")
    }

    /// Calls `hop` once through `resilience` against a dependency answering `answer`,
    /// and returns the result with the attempts it made.
    async fn call_with(
        resilience: &Resilience,
        hop: Hop,
        answer: impl Fn() -> Result<(), Status>,
    ) -> (Result<(), Status>, u32) {
        let attempts = AtomicU32::new(0);
        let deadline = Deadline::after(Duration::from_secs(2));
        let result = resilience
            .call(hop, deadline, (), |_req| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let answer = answer().map(tonic::Response::new);
                async move { answer }
            })
            .await;
        (result, attempts.into_inner())
    }

    fn no_breaker() -> Settings {
        Settings { breaker_failures: u32::MAX, ..Settings::default() }
    }

    #[tokio::test]
    async fn naive_makes_one_attempt() {
        let (result, attempts) = call_with(&Resilience::new(Policy::Naive), PRODUCTS, || Err(down())).await;
        assert_eq!((result.unwrap_err().code(), attempts), (Code::Unavailable, 1));
    }

    #[tokio::test]
    async fn retry_storm_tries_four_times_on_any_error_even_a_write() {
        let storm = Resilience::new(Policy::RetryStorm);
        let write = Hop::new("orders", "PlaceOrder");
        let (result, attempts) = call_with(&storm, write, || Err(Status::not_found("no user"))).await;
        assert_eq!((result.unwrap_err().code(), attempts), (Code::Internal, 4));
        let (result, attempts) = call_with(&storm, PRODUCTS, || Ok(())).await;
        assert_eq!((result.is_ok(), attempts), (true, 1));
    }

    /// Calls `PRODUCTS` through `resilience` within `deadline` against a dependency that
    /// never answers in time, like a NATS request whose own timer is the time it was sent
    /// with: the final status and the attempts made.
    async fn call_a_frozen_dependency(resilience: &Resilience, deadline: Deadline) -> (Status, u32) {
        let attempts = AtomicU32::new(0);
        let status = (resilience.call(PRODUCTS, deadline, (), |req: Request<()>| {
            attempts.fetch_add(1, Ordering::Relaxed);
            let timeout = req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let timeout = timeout.as_deref().and_then(deadline::parse_grpc_timeout).unwrap();
            async move {
                tokio::time::sleep(timeout).await;
                Err::<tonic::Response<()>, _>(Status::deadline_exceeded("no reply on the subject in time"))
            }
        }))
        .await
        .unwrap_err();
        (status, attempts.into_inner())
    }

    #[tokio::test(start_paused = true)]
    async fn no_policy_retries_a_call_whose_transport_timed_out_with_the_deadline_it_was_given() {
        let hardened = Resilience::with_settings(Policy::Hardened, no_breaker());
        let (status, attempts) = call_a_frozen_dependency(&hardened, Deadline::after(Duration::from_secs(2))).await;
        assert_eq!((status.code(), attempts), (Code::DeadlineExceeded, 1));
        assert!(status.message().contains("did not answer within the remaining"), "{}", status.message());
        // Retry-storm's last attempt gets what is left of the deadline, no more: 50 +
        // 50 ms, then the 40 ms left less the reply's share, and no fourth.
        let storm = Resilience::new(Policy::RetryStorm);
        let (status, attempts) = call_a_frozen_dependency(&storm, Deadline::after(Duration::from_millis(140))).await;
        assert_eq!((status.code(), attempts), (Code::DeadlineExceeded, 3));
        assert!(status.message().contains("did not answer within the remaining"), "{}", status.message());
        // With less left than a retry's own time beside the reply's share (20 ms after
        // 50 + 50), no retry goes out: the status says why the last attempt failed.
        let (status, attempts) = call_a_frozen_dependency(&storm, Deadline::after(Duration::from_millis(120))).await;
        assert_eq!((status.code(), attempts), (Code::DeadlineExceeded, 2));
        assert!(status.message().contains("per-try timeout of 50 ms"), "{}", status.message());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_storm_retries_a_slow_call_at_its_per_try_timeout() {
        let storm = Resilience::new(Policy::RetryStorm);
        let started = Instant::now();
        let (status, attempts) = call_a_frozen_dependency(&storm, Deadline::after(Duration::from_secs(2))).await;
        assert_eq!((status.code(), attempts), (Code::DeadlineExceeded, 1 + STORM_RETRIES));
        assert!(status.message().contains("per-try timeout of 50 ms"), "{}", status.message());
        assert_eq!(started.elapsed(), STORM_TRY_TIMEOUT * (1 + STORM_RETRIES), "each attempt had 50 ms, back to back");
        // The callee is told the per-try timeout as its deadline, not the caller's.
        let told = std::sync::Mutex::new(Vec::new());
        let _ = storm
            .call(PRODUCTS, Deadline::after(Duration::from_secs(2)), (), |req: Request<()>| {
                let timeout = req.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()).map(str::to_owned);
                told.lock().unwrap().push(timeout.as_deref().and_then(deadline::parse_grpc_timeout));
                async { Err::<tonic::Response<()>, _>(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(told.into_inner().unwrap(), vec![Some(STORM_TRY_TIMEOUT); 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn hardened_retries_only_idempotent_calls_on_codes_a_retry_can_fix() {
        let hardened = Resilience::with_settings(Policy::Hardened, no_breaker());
        let (_, attempts) = call_with(&hardened, PRODUCTS, || Err(down())).await;
        assert_eq!(attempts, 3, "two retries of a read on UNAVAILABLE");
        let (_, attempts) = call_with(&hardened, PRODUCTS, || Err(Status::resource_exhausted("shed"))).await;
        assert_eq!(attempts, 3, "two retries of a read on RESOURCE_EXHAUSTED");
        let (result, attempts) = call_with(&hardened, PRODUCTS, || Err(Status::not_found("no product"))).await;
        assert_eq!((result.unwrap_err().code(), attempts), (Code::Internal, 1), "NOT_FOUND is not retried");
        let write = Hop::new("orders", "PlaceOrder");
        let (_, attempts) = call_with(&hardened, write, || Err(down())).await;
        assert_eq!(attempts, 1, "a call not marked idempotent is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn hardened_retries_stop_when_the_budget_is_spent() {
        // A floor of 1 retry per second over a 1 s window: 10 tokens in reserve; each
        // call deposits 1, each retry withdraws 10 (10 %).
        let settings = Settings { budget_ttl: Duration::from_secs(1), budget_floor_per_sec: 1, ..no_breaker() };
        let hardened = Resilience::with_settings(Policy::Hardened, settings);
        let mut attempts = 0;
        for _ in 0..50 {
            attempts += call_with(&hardened, PRODUCTS, || Err(down())).await.1;
        }
        assert_eq!(attempts - 50, 6, "retries = (reserve 10 + 50 deposits) / 10");
        let (result, after) = call_with(&hardened, PRODUCTS, || Err(down())).await;
        assert_eq!((result.unwrap_err().code(), after), (Code::Unavailable, 1), "budget spent: no retry");
    }

    #[tokio::test(start_paused = true)]
    async fn hardened_never_waits_past_the_deadline() {
        let settings =
            Settings { backoff_base: Duration::from_secs(10), backoff_cap: Duration::from_secs(10), ..no_breaker() };
        let hardened = Resilience::with_settings(Policy::Hardened, settings);
        for _ in 0..20 {
            let started = Instant::now();
            let (result, _) = call_with(&hardened, PRODUCTS, || Err(down())).await;
            assert_eq!(result.unwrap_err().code(), Code::Unavailable);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "waited {:?}, past the 2 s deadline",
                started.elapsed()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
        let settings = Settings {
            retries: 0,
            breaker_failures: 3,
            breaker_cool_down: Duration::from_secs(1),
            ..Settings::default()
        };
        let hardened = Resilience::with_settings(Policy::Hardened, settings);
        for _ in 0..3 {
            assert_eq!(call_with(&hardened, PRODUCTS, || Err(down())).await.1, 1);
        }
        // Open: refused without a call.
        let (result, attempts) = call_with(&hardened, PRODUCTS, || Ok(())).await;
        let status = result.unwrap_err();
        assert_eq!((status.code(), attempts), (Code::Unavailable, 0));
        assert!(status.message().starts_with("circuit open for products"), "{}", status.message());
        // Other dependencies have breakers of their own.
        let users = Hop::new("users", "GetUser").idempotent();
        assert_eq!(call_with(&hardened, users, || Ok(())).await.1, 1);
        // After the cool-down one probe passes; it fails: open again.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(call_with(&hardened, PRODUCTS, || Err(down())).await.1, 1, "the probe");
        assert_eq!(call_with(&hardened, PRODUCTS, || Ok(())).await.1, 0, "open again after a failed probe");
        // Next probe succeeds: closed, calls pass.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(call_with(&hardened, PRODUCTS, || Ok(())).await.1, 1, "the probe");
        for _ in 0..5 {
            let (result, attempts) = call_with(&hardened, PRODUCTS, || Ok(())).await;
            assert!(result.is_ok() && attempts == 1, "closed: {result:?} after {attempts} attempts");
        }
    }

    #[test]
    fn a_half_open_breaker_lets_one_probe_through_and_replaces_a_lost_one() {
        let t0 = Instant::now();
        let cool = Duration::from_millis(500);
        let mut breaker = Breaker::new(2, cool);
        let (a, b) = (breaker.admit(t0).unwrap(), breaker.admit(t0).unwrap());
        breaker.record(a, false, t0);
        assert_eq!(breaker.state(), BreakerState::Closed, "one failure of two");
        breaker.record(b, false, t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool });
        assert!(breaker.admit(t0 + cool / 2).is_none());
        let lost = breaker.admit(t0 + cool).expect("the probe");
        assert!(breaker.admit(t0 + cool + cool / 2).is_none(), "one probe at a time");
        let probe = breaker.admit(t0 + cool * 2).expect("the probe never reported: another");
        breaker.record(lost, false, t0 + cool * 2);
        assert_eq!(breaker.state(), BreakerState::HalfOpen { probe_sent: t0 + cool * 2 }, "the lost probe is stale");
        breaker.record(probe, true, t0 + cool * 2);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit(t0 + cool * 2).is_some());
    }

    /// Calls let through before the breaker opened (a frozen dependency's, timing out one
    /// after another) say nothing about the dependency after it opened: they neither push
    /// the probe back nor close or reopen the breaker.
    #[test]
    fn results_of_calls_admitted_before_the_breaker_opened_are_ignored() {
        let t0 = Instant::now();
        let cool = Duration::from_millis(500);
        let mut breaker = Breaker::new(2, cool);
        let in_flight: Vec<Admitted> = (0..5).map(|_| breaker.admit(t0).unwrap()).collect();
        breaker.record(in_flight[0], false, t0);
        breaker.record(in_flight[1], false, t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool });
        // The rest time out later, while open: the probe is still due at t0 + cool.
        breaker.record(in_flight[2], false, t0 + cool / 2);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool });
        let probe = breaker.admit(t0 + cool).expect("the probe is due when the cool-down ends");
        // A late failure of an old call is not the probe's.
        breaker.record(in_flight[3], false, t0 + cool);
        assert_eq!(breaker.state(), BreakerState::HalfOpen { probe_sent: t0 + cool });
        // Nor does a late success of an old call close it.
        breaker.record(in_flight[4], true, t0 + cool);
        assert_eq!(breaker.state(), BreakerState::HalfOpen { probe_sent: t0 + cool });
        breaker.record(probe, false, t0 + cool);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + cool * 2 }, "the probe's failure reopens it");
    }
}
