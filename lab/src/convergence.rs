//! Is the async view right? Two tools:
//!
//! - [`wait_settled`]: waits until the stream holds at least the events the caller
//!   expects and every durable consumer has been delivered and has acked all of them:
//!   the moment after which the replicas cannot change any more.
//! - [`compare`]: the query service's answer for each user against the [`Truth`],
//!   built here from the owners' raw answers (not by the query service's code), row by
//!   row: missing, extra and wrong rows, which must all be 0.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use common::{
    events::{ORDERS_CONSUMER, QUERY_CONSUMER, STREAM},
    names::{MAX_ORDERS_PAGE_SIZE, MAX_PRODUCTS_PER_GET},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, query_client::QueryClient,
        users_client::UsersClient, GetProductsRequest, GetUserRequest, ListOrdersByUserRequest, Order, Product, User,
        UserOrderItem, UserOrdersRequest, UserOrdersResponse,
    },
};
use serde::{Deserialize, Serialize};

use crate::client::{Balanced, Clients};
use bench::call;

/// Waits until the stream has at least `min_events` events and both durable consumers
/// (orders' and a single query instance's) have nothing pending or unacknowledged.
/// Returns how long it waited (zero if settled at the first look; otherwise from the
/// call, connecting included). `nats_url` may name several servers of a cluster,
/// comma-separated.
pub async fn wait_settled(nats_url: &str, min_events: u64, timeout: Duration) -> anyhow::Result<Duration> {
    wait_settled_for(nats_url, min_events, &[ORDERS_CONSUMER.to_owned(), QUERY_CONSUMER.to_owned()], timeout).await
}

/// [`wait_settled`] for the durable consumers named (a topology's:
/// [`crate::topology::Topology::consumers`], one per query replica).
pub async fn wait_settled_for(
    nats_url: &str,
    min_events: u64,
    consumers: &[String],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let client = async_nats::connect(common::broker::servers(nats_url)).await?;
    let js = async_nats::jetstream::new(client);
    let mut last = String::new();
    let mut first = true;
    while start.elapsed() < timeout {
        match settled(&js, min_events, consumers).await {
            // Settled at the first look: nothing was waited for (connecting and
            // looking are not the replicas' lag).
            Ok(None) if first => return Ok(Duration::ZERO),
            Ok(None) => return Ok(start.elapsed()),
            Ok(Some(why)) => last = why,
            Err(e) => last = e.to_string(),
        }
        first = false;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("not settled after {} s: {last}", timeout.as_secs())
}

/// `None` if settled, else why not.
async fn settled(
    js: &async_nats::jetstream::Context,
    min_events: u64,
    consumers: &[String],
) -> Result<Option<String>, async_nats::Error> {
    let mut stream = js.get_stream(STREAM).await?;
    let messages = stream.info().await?.state.messages;
    if messages < min_events {
        return Ok(Some(format!("stream has {messages} of {min_events} events")));
    }
    for name in consumers {
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

/// The truth, built by the lab itself from the owners' raw answers: users.GetUser,
/// orders.ListOrdersByUser (every page) and products.GetProducts (in batches the
/// products service accepts), joined by [`join`]. Nothing of the query service's code
/// takes part, so a bug in its assembly shows as a difference instead of being copied
/// into the yardstick.
#[derive(Clone)]
pub struct Truth {
    users: UsersClient<Balanced>,
    orders: OrdersClient<Balanced>,
    products: ProductsClient<Balanced>,
}

/// The deadline of each call the truth makes.
const TRUTH_DEADLINE: Duration = Duration::from_secs(10);

impl Truth {
    /// Talks to the owners through `clients` (each request to the shard its id names).
    pub fn of(clients: &Clients) -> Self {
        Self { users: clients.users.clone(), orders: clients.orders.clone(), products: clients.products.clone() }
    }

    /// What `UserOrders` must answer for `user_id`; `None` if users does not know them.
    pub async fn user_orders(&self, user_id: &str) -> anyhow::Result<Option<UserOrdersResponse>> {
        let mut users = self.users.clone();
        let user = match call(TRUTH_DEADLINE, GetUserRequest { id: user_id.to_owned() }, |r| users.get_user(r)).await {
            Ok(user) => user,
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => anyhow::bail!("the truth cannot read user {user_id}: {status}"),
        };
        let mut orders = Vec::new();
        let mut page_token = String::new();
        loop {
            let message =
                ListOrdersByUserRequest { user_id: user_id.to_owned(), page_size: MAX_ORDERS_PAGE_SIZE, page_token };
            let mut orders_client = self.orders.clone();
            let page = call(TRUTH_DEADLINE, message, |r| orders_client.list_orders_by_user(r)).await;
            let page = page.map_err(|s| anyhow::anyhow!("the truth cannot list the orders of {user_id}: {s}"))?;
            orders.extend(page.orders);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let ids: Vec<String> =
            orders.iter().map(|o| o.product_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let mut products = Vec::new();
        // Each shard of products is asked for its own.
        let by_shard = common::shards::by_shard(&ids);
        for batch in by_shard.values().flat_map(|ids| ids.chunks(MAX_PRODUCTS_PER_GET)) {
            let message = GetProductsRequest { ids: batch.to_vec() };
            let mut products_client = self.products.clone();
            let answer = call(TRUTH_DEADLINE, message, |r| products_client.get_products(r)).await;
            products.extend(answer.map_err(|s| anyhow::anyhow!("the truth cannot read products: {s}"))?.products);
        }
        join(user, orders, products).map(Some)
    }
}

/// The rows a user's `UserOrders` must show: one per order, in the orders service's
/// order (oldest first), with its product's title and current price from products.
/// An order whose product the products service does not have is an error of the owners.
pub fn join(user: User, orders: Vec<Order>, products: Vec<Product>) -> anyhow::Result<UserOrdersResponse> {
    let products: BTreeMap<String, Product> = products.into_iter().map(|p| (p.id.clone(), p)).collect();
    let mut items = Vec::with_capacity(orders.len());
    for o in orders {
        let Some(p) = products.get(&o.product_id) else {
            anyhow::bail!("order {} names product {}, which products does not have", o.id, o.product_id)
        };
        items.push(UserOrderItem {
            title: p.title.clone(),
            current_price_cents: p.price_cents,
            unit_price_cents: o.unit_price_cents,
            quantity: o.quantity,
            placed_at_unix_ms: o.placed_at_unix_ms,
            product_id: o.product_id,
            order_id: o.id,
        });
    }
    Ok(UserOrdersResponse { user: Some(user), items, ..Default::default() })
}

/// Compares `UserOrders` from the query service with the answer assembled from users,
/// orders and products directly, for each of `user_ids` (with replicas, each read goes
/// to the next replica in turn: see [`compare_view`] for one replica's view).
pub async fn compare(clients: &Clients, truth: &Truth, user_ids: &[String]) -> anyhow::Result<Diff> {
    compare_view(clients.query.clone(), truth, user_ids).await
}

/// [`compare`] through `view`: one query instance's client, say
/// ([`Clients::query_instances`]).
pub async fn compare_view(
    mut view: QueryClient<crate::client::Balanced>,
    truth: &Truth,
    user_ids: &[String],
) -> anyhow::Result<Diff> {
    let mut diff = Diff::default();
    for user_id in user_ids {
        // A user the owners do not have must have no rows in the view either.
        let expected = truth.user_orders(user_id).await?.unwrap_or_default();
        let request = UserOrdersRequest { user_id: user_id.clone() };
        let actual = match call(TRUTH_DEADLINE, request, |r| view.user_orders(r)).await {
            Ok(answer) => answer,
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
