//! Sequential latency: one request at a time against a running topology, the simplest
//! honest measure of what one call costs end to end in each mode.

use std::time::{Duration, Instant};

use bench::{call, outcome, Recorder, Summary};
use common::proto::{CreateUserRequest, PlaceOrderRequest, UserOrdersRequest};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{client::Clients, seed::Seeded};

/// Per-request deadline for measured requests.
pub const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latencies {
    pub user_orders: Summary,
    pub place_order: Summary,
    /// Sequential staleness: write acknowledged → send time of the first `UserOrders` read
    /// that showed it, 0 if the first read did (see [`propagation`]).
    pub propagation: Option<Summary>,
}

/// `requests` sequential `UserOrders` then `requests` sequential `PlaceOrder`, for
/// users and products chosen by a seeded generator among `seeded`.
pub async fn sequential(clients: &Clients, seeded: &Seeded, requests: usize, seed: u64) -> anyhow::Result<Latencies> {
    if seeded.user_ids.is_empty() || seeded.product_ids.is_empty() {
        anyhow::bail!("no seeded users or products to query: run `lab seed` first");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut recorder = Recorder::default();
    let mut query = clients.query.clone();
    for _ in 0..requests {
        let user_id = seeded.user_ids[rng.random_range(0..seeded.user_ids.len())].clone();
        let start = Instant::now();
        let result = call(DEADLINE, UserOrdersRequest { user_id }, |r| query.user_orders(r)).await;
        recorder.record(start.elapsed(), outcome(&result));
    }
    let user_orders = recorder.summary();

    let mut recorder = Recorder::default();
    let mut orders = clients.orders.clone();
    for _ in 0..requests {
        let message = PlaceOrderRequest {
            user_id: seeded.user_ids[rng.random_range(0..seeded.user_ids.len())].clone(),
            product_id: seeded.product_ids[rng.random_range(0..seeded.product_ids.len())].clone(),
            quantity: 1,
        };
        let start = Instant::now();
        let result = call(DEADLINE, message, |r| orders.place_order(r)).await;
        recorder.record(start.elapsed(), outcome(&result));
    }
    Ok(Latencies { user_orders, place_order: recorder.summary(), propagation: None })
}

/// Sequential staleness: for each of `writes` orders, one at a time, the time from
/// PlaceOrder's acknowledgement until the **send time** of the first `UserOrders` read
/// that showed it, reading back to back (so a write the first read already shows
/// counts 0, and the figure's resolution is one `UserOrders` round trip). The same
/// definition as the concurrent staleness probe's, without its load. Orders that never
/// show within [`VISIBLE_TIMEOUT`] count as `NEVER_VISIBLE`; a refused write counts
/// its code, without a latency.
pub async fn propagation(clients: &Clients, seeded: &Seeded, writes: usize, seed: u64) -> anyhow::Result<Summary> {
    if seeded.user_ids.is_empty() || seeded.product_ids.is_empty() {
        anyhow::bail!("no seeded users or products: run `lab seed` first");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut recorder = Recorder::default();
    let (mut orders, mut query) = (clients.orders.clone(), clients.query.clone());
    for _ in 0..writes {
        let user_id = seeded.user_ids[rng.random_range(0..seeded.user_ids.len())].clone();
        let message = PlaceOrderRequest {
            user_id: user_id.clone(),
            product_id: seeded.product_ids[rng.random_range(0..seeded.product_ids.len())].clone(),
            quantity: 1,
        };
        let placed = call(DEADLINE, message, |r| orders.place_order(r)).await;
        let acknowledged = Instant::now();
        let order_id = match placed {
            Ok(order) => order.id,
            Err(status) => {
                recorder.count(outcome::<()>(&Err(status)));
                continue;
            }
        };
        let mut missed = false;
        let visible = loop {
            let sent = Instant::now();
            let request = UserOrdersRequest { user_id: user_id.clone() };
            if let Ok(answer) = call(DEADLINE, request, |r| query.user_orders(r)).await {
                if answer.items.iter().any(|i| i.order_id == order_id) {
                    break Some(if missed { sent - acknowledged } else { Duration::ZERO });
                }
            }
            missed = true;
            if acknowledged.elapsed() > VISIBLE_TIMEOUT {
                break None;
            }
        };
        match visible {
            Some(stale) => recorder.record(stale, "OK"),
            None => recorder.record(acknowledged.elapsed(), "NEVER_VISIBLE"),
        }
    }
    Ok(recorder.summary())
}

/// How long an acknowledged order may take to become visible before it counts as lost.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait before a refused order is retried; each later wait doubles.
pub const RETRY_FIRST: Duration = Duration::from_micros(500);
/// The most a create-then-use sequence waits between retries, in all, before it gives up.
pub const RETRY_BUDGET: Duration = Duration::from_secs(1);

/// What a client meets when it creates a user and at once orders for them (see
/// [`create_then_use`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateThenUse {
    /// Sequences tried.
    pub sequences: usize,
    /// Users whose creation was acknowledged: the sequences that went on to order.
    pub users_created: usize,
    /// First orders refused with `FAILED_PRECONDITION` (the orders service did not know
    /// the user yet).
    pub refused_first: usize,
    /// Orders accepted within the retry budget.
    pub accepted: usize,
    /// Orders sent after a refusal, in all.
    pub retries: usize,
    /// The first retry's wait, doubling after each refusal, and the most waited in all.
    pub retry_first_us: u64,
    pub retry_budget_ms: u64,
    /// From the user's acknowledgement until the order was accepted (the accepted
    /// request's own round trip included); a sequence that gave up counts as a failure
    /// at its elapsed time.
    pub until_accepted: Summary,
}

impl CreateThenUse {
    /// Share of first orders refused, of the users created.
    pub fn refused_share(&self) -> f64 {
        self.refused_first as f64 / self.users_created.max(1) as f64
    }
}

/// Create-then-use, one sequence at a time, `sequences` times, a new one `pace` after the
/// start of the last (at once if it took longer; `Duration::ZERO`: back to back), so the
/// sequences can be spread over a fault schedule: create a user, then at
/// once place an order for them (a product chosen by a seeded generator), retrying on
/// `FAILED_PRECONDITION` after [`RETRY_FIRST`], doubling, until accepted or
/// [`RETRY_BUDGET`] has been waited. In sync mode the order checks the user with its
/// owner, so it cannot be refused for this; in async mode the orders service knows the
/// user only once its event has arrived, and a client must handle "not yet".
pub async fn create_then_use(
    clients: &Clients,
    seeded: &Seeded,
    sequences: usize,
    pace: Duration,
    seed: u64,
) -> anyhow::Result<CreateThenUse> {
    if seeded.product_ids.is_empty() {
        anyhow::bail!("no seeded products to order: run `lab seed` first");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut recorder = Recorder::default();
    let (mut users, mut orders) = (clients.users.clone(), clients.orders.clone());
    let (mut users_created, mut refused_first, mut accepted, mut retries) = (0, 0, 0, 0);
    let mut next = tokio::time::Instant::now();
    for i in 0..sequences {
        tokio::time::sleep_until(next).await;
        next += pace;
        let message = CreateUserRequest {
            name: format!("New user {i}"),
            email: format!("new-{seed}-{i}-{}@example.test", rng.random::<u32>()),
        };
        let Ok(user) = call(DEADLINE, message, |r| users.create_user(r)).await else { continue };
        let acknowledged = Instant::now();
        users_created += 1;
        let message = PlaceOrderRequest {
            user_id: user.id,
            product_id: seeded.product_ids[rng.random_range(0..seeded.product_ids.len())].clone(),
            quantity: 1,
        };
        let (mut wait, mut waited, mut first) = (RETRY_FIRST, Duration::ZERO, true);
        let result = loop {
            let result = call(DEADLINE, message.clone(), |r| orders.place_order(r)).await;
            let refused = matches!(&result, Err(s) if s.code() == tonic::Code::FailedPrecondition);
            if refused && first {
                refused_first += 1;
            }
            first = false;
            let nap = wait.min(RETRY_BUDGET.saturating_sub(waited));
            if !refused || nap.is_zero() {
                break result;
            }
            tokio::time::sleep(nap).await;
            waited += nap;
            wait *= 2;
            retries += 1;
        };
        if result.is_ok() {
            accepted += 1;
        }
        recorder.record(acknowledged.elapsed(), outcome(&result));
    }
    Ok(CreateThenUse {
        sequences,
        users_created,
        refused_first,
        accepted,
        retries,
        retry_first_us: RETRY_FIRST.as_micros() as u64,
        retry_budget_ms: RETRY_BUDGET.as_millis() as u64,
        until_accepted: recorder.summary(),
    })
}

impl Latencies {
    /// A table, one line per operation (`visible`: the sequential staleness, when it was
    /// measured), each labelled `label`.
    pub fn table(&self, label: &str) -> String {
        let mut out = format!(
            "{:<9} {:<12} {:>9} {:>9} {:>9} {:>9}  outcomes\n",
            "mode", "operation", "p50 µs", "p90 µs", "p99 µs", "max µs"
        );
        let rows = [
            ("UserOrders", Some(&self.user_orders)),
            ("PlaceOrder", Some(&self.place_order)),
            ("stale", self.propagation.as_ref()),
        ];
        for (name, s) in rows.into_iter().filter_map(|(name, s)| Some((name, s?))) {
            out += &format!(
                "{label:<9} {name:<12} {:>9} {:>9} {:>9} {:>9}  {:?}\n",
                s.p50_us, s.p90_us, s.p99_us, s.max_us, s.outcomes
            );
        }
        out
    }
}
