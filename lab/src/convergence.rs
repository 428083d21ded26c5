//! Is the async view right? Two tools:
//!
//! - [`wait_settled`]: waits until the stream holds at least the events the caller
//!   expects and every durable consumer has been delivered and has acked all of them:
//!   the moment after which the replicas cannot change any more.
//! - [`compare`]: the query service's answer for each user against the truth computed
//!   from the owning services (the sync chain's answer), row by row: missing, extra
//!   and wrong rows, which must all be 0.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    deadline::Deadline,
    events::{ORDERS_CONSUMER, QUERY_CONSUMER, STREAM},
    proto::{UserOrderItem, UserOrdersRequest},
};
use query::Source;
use serde::{Deserialize, Serialize};

use crate::client::Clients;

/// Waits until the stream has at least `min_events` events and both durable consumers
/// have nothing pending or unacknowledged. Returns how long that took.
pub async fn wait_settled(nats_url: &str, min_events: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let client = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let mut last = String::new();
    while start.elapsed() < timeout {
        match settled(&js, min_events).await {
            Ok(None) => return Ok(start.elapsed()),
            Ok(Some(why)) => last = why,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("not settled after {} s: {last}", timeout.as_secs())
}

/// `None` if settled, else why not.
async fn settled(js: &async_nats::jetstream::Context, min_events: u64) -> Result<Option<String>, async_nats::Error> {
    let mut stream = js.get_stream(STREAM).await?;
    let messages = stream.info().await?.state.messages;
    if messages < min_events {
        return Ok(Some(format!("stream has {messages} of {min_events} events")));
    }
    for name in [ORDERS_CONSUMER, QUERY_CONSUMER] {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer(name).await?;
        let info = consumer.info().await?;
        if info.num_pending > 0 || info.num_ack_pending > 0 {
            return Ok(Some(format!("{name}: {} pending, {} unacked", info.num_pending, info.num_ack_pending)));
        }
    }
    Ok(None)
}

/// The differences between the query view and the truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub users_checked: usize,
    /// Rows the truth has that the view lacks.
    pub missing: usize,
    /// Rows the view has that the truth lacks (including duplicates).
    pub extra: usize,
    /// Rows in both whose fields differ, and users whose details differ.
    pub wrong: usize,
    /// The first few differences, for humans.
    pub examples: Vec<String>,
}

impl Diff {
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.wrong == 0
    }

    fn note(&mut self, example: String) {
        if self.examples.len() < 10 {
            self.examples.push(example);
        }
    }
}

/// The truth: the answer the sync chain assembles from the owners of `topology`.
pub fn truth(topology: &crate::topology::Topology) -> Result<query::sync::GrpcSource, crate::topology::TopologyError> {
    use common::names::{ORDERS, PRODUCTS, USERS};
    let addr = |name| topology.address(name).map(common::config::PeerAddr::from);
    Ok(query::sync::GrpcSource::new(&addr(USERS)?, &addr(ORDERS)?, &addr(PRODUCTS)?))
}

/// Compares `UserOrders` from the query service with the answer assembled from users,
/// orders and products directly, for each of `user_ids`.
pub async fn compare(clients: &Clients, truth: &query::sync::GrpcSource, user_ids: &[String]) -> anyhow::Result<Diff> {
    let mut diff = Diff::default();
    let mut view = clients.query.clone();
    for user_id in user_ids {
        let expected =
            truth.user_orders(user_id, Deadline::after(Duration::from_secs(10))).await.map_err(tonic::Status::from)?;
        let mut request = tonic::Request::new(UserOrdersRequest { user_id: user_id.clone() });
        request.set_timeout(Duration::from_secs(10));
        let actual = match view.user_orders(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => Default::default(),
            Err(status) => return Err(status.into()),
        };
        diff.users_checked += 1;
        if actual.user.is_some() && actual.user != expected.user {
            diff.wrong += 1;
            diff.note(format!("user {user_id}: {:?} != {:?}", actual.user, expected.user));
        }
        let mut want: BTreeMap<&str, &UserOrderItem> =
            expected.items.iter().map(|i| (i.order_id.as_str(), i)).collect();
        for item in &actual.items {
            match want.remove(item.order_id.as_str()) {
                Some(truth) if truth == item => {}
                Some(truth) => {
                    diff.wrong += 1;
                    diff.note(format!("order {}: {item:?} != {truth:?}", item.order_id));
                }
                None => {
                    diff.extra += 1;
                    diff.note(format!("order {} of {user_id} is extra (or duplicated)", item.order_id));
                }
            }
        }
        for order_id in want.keys() {
            diff.missing += 1;
            diff.note(format!("order {order_id} of {user_id} is missing"));
        }
    }
    Ok(diff)
}
