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
    Ok(Latencies { user_orders, place_order: recorder.summary() })
}
