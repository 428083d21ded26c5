//! Sequential latency: one request at a time against a running topology, the simplest
//! honest measure of what one call costs end to end in each mode.

use std::time::{Duration, Instant};

use bench::{outcome, Recorder, Summary};
use common::proto::{PlaceOrderRequest, UserOrdersRequest};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{client::Clients, seed::Seeded};

/// Per-request deadline for measured requests.
pub const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latencies {
    pub user_orders: Summary,
    pub place_order: Summary,
    /// Write acknowledged → visible in `UserOrders` (see [`propagation`]).
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
        let mut request = tonic::Request::new(UserOrdersRequest { user_id });
        request.set_timeout(DEADLINE);
        let start = Instant::now();
        let result = query.user_orders(request).await;
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
        let mut request = tonic::Request::new(message);
        request.set_timeout(DEADLINE);
        let start = Instant::now();
        let result = orders.place_order(request).await;
        recorder.record(start.elapsed(), outcome(&result));
    }
    Ok(Latencies { user_orders, place_order: recorder.summary(), propagation: None })
}

/// Propagation delay: for each of `writes` orders, the time from PlaceOrder's
/// acknowledgement until `UserOrders` shows it, polling as fast as the query service
/// answers (so the resolution is one `UserOrders` round trip). In sync mode this is
/// one read; in async mode it is the relay, the broker and the consumer. Orders that
/// never show within [`VISIBLE_TIMEOUT`] are counted as `NEVER_VISIBLE`.
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
        let mut request = tonic::Request::new(message);
        request.set_timeout(DEADLINE);
        let placed = orders.place_order(request).await;
        let acknowledged = Instant::now();
        let order_id = match placed {
            Ok(order) => order.into_inner().id,
            Err(status) => {
                recorder.record(Duration::ZERO, outcome::<()>(&Err(status)));
                continue;
            }
        };
        let visible = loop {
            let mut request = tonic::Request::new(UserOrdersRequest { user_id: user_id.clone() });
            request.set_timeout(DEADLINE);
            if let Ok(answer) = query.user_orders(request).await {
                if answer.get_ref().items.iter().any(|i| i.order_id == order_id) {
                    break true;
                }
            }
            if acknowledged.elapsed() > VISIBLE_TIMEOUT {
                break false;
            }
        };
        recorder.record(acknowledged.elapsed(), if visible { "OK" } else { "NEVER_VISIBLE" });
    }
    Ok(recorder.summary())
}

/// How long an acknowledged order may take to become visible before it counts as lost.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);
