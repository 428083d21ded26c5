//! The staleness probe: during a scenario, one client places an order, and as soon as
//! it is acknowledged polls `UserOrders` back to back until the order shows. The time
//! from acknowledgement to visible is the staleness a reader saw; an acknowledged
//! order that never shows within the probe's patience is counted apart.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bench::{Recorder, Summary};
use common::proto::{PlaceOrderRequest, UserOrdersRequest};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{client::Clients, seed::Seeded, workload::timed};

/// How long one probe waits for its order to show.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// Pause between probes.
const GAP: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Staleness {
    /// Time from acknowledged to visible, of the probes that became visible.
    pub visible: Summary,
    /// Probe writes that were not acknowledged (the write itself failed).
    pub writes_failed: u64,
    /// Acknowledged probe writes that never showed within the patience.
    pub never_visible: u64,
}

/// Probes until `stop`, then finishes the probe in flight.
pub async fn run(clients: Clients, seeded: Arc<Seeded>, stop: CancellationToken) -> Staleness {
    let mut recorder = Recorder::default();
    let (mut failed, mut never) = (0, 0);
    let (mut orders, mut query) = (clients.orders.clone(), clients.query.clone());
    let mut i = 0usize;
    while !stop.is_cancelled() {
        i += 1;
        let user_id = seeded.user_ids[i % seeded.user_ids.len()].clone();
        let product_id = seeded.product_ids[i % seeded.product_ids.len()].clone();
        let placed = orders
            .place_order(timed(
                PlaceOrderRequest { user_id: user_id.clone(), product_id, quantity: 1 },
                Duration::from_secs(1),
            ))
            .await;
        let acknowledged = Instant::now();
        match placed {
            Err(_) => failed += 1,
            Ok(order) => {
                let order_id = order.into_inner().id;
                loop {
                    match query
                        .user_orders(timed(UserOrdersRequest { user_id: user_id.clone() }, Duration::from_secs(1)))
                        .await
                    {
                        Ok(answer) if answer.get_ref().items.iter().any(|item| item.order_id == order_id) => {
                            recorder.record(acknowledged.elapsed(), "OK");
                            break;
                        }
                        Ok(_) => {}
                        // The query service is down: do not spin on refused connections.
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                    if acknowledged.elapsed() > PATIENCE {
                        never += 1;
                        break;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(GAP) => {}
            _ = stop.cancelled() => {}
        }
    }
    Staleness { visible: recorder.summary(), writes_failed: failed, never_visible: never }
}
