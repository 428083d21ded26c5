//! The query service (D): "the products a user ordered".
//!
//! [`Source`] is where its answer comes from. `chain.rs` asks users and orders
//! together, then products, while the client waits, and owns no data: over gRPC (`sync.rs`) or over
//! NATS request/reply (`bus.rs`, bus-rpc mode); `events.rs` reads the
//! service's own view, fed by events. Assembling the answer from those three pieces
//! ([`assemble`]) is the same in every mode.

pub mod api;
pub mod bus;
pub mod chain;
pub mod events;
pub mod sync;

use std::{collections::HashMap, future::Future};

use common::{
    broker::Events,
    bus::Bus,
    config::{Mode, PeerList, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    events::{QUERY_CONSUMER, QUERY_SUBJECTS},
    names::QUERY,
    proto::{query_server::QueryServer, Order, Product, User, UserOrderItem, UserOrdersResponse},
    serve::{Broker, ServeError},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where the query service gets a user's orders and the products in them.
pub trait Source: Send + Sync + 'static {
    fn user_orders(
        &self,
        user_id: &str,
        deadline: Deadline,
    ) -> impl Future<Output = Result<UserOrdersResponse, ApiError>> + Send;
}

/// Joins a user, their orders (oldest first) and the products those orders name.
/// A product missing from `products` is an error: every order was validated against
/// its product, so a gap means the source is inconsistent, and the client must not
/// get a silently wrong row.
pub fn assemble(
    user: User,
    orders: Vec<Order>,
    products: &HashMap<String, Product>,
) -> Result<UserOrdersResponse, ApiError> {
    let items = orders
        .into_iter()
        .map(|order| {
            let product = products.get(&order.product_id).ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "product {} of order {} is not known to the query service",
                    order.product_id, order.id
                ))
            })?;
            Ok(UserOrderItem {
                order_id: order.id,
                product_id: order.product_id,
                title: product.title.clone(),
                unit_price_cents: order.unit_price_cents,
                current_price_cents: product.price_cents,
                quantity: order.quantity,
                placed_at_unix_ms: order.placed_at_unix_ms,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(UserOrdersResponse { user: Some(user), items, ..Default::default() })
}

/// The degraded answer (hardened policy, products unavailable): every order with its
/// price at order time, no product details, marked partial with `reason`.
pub fn assemble_without_products(user: User, orders: Vec<Order>, reason: String) -> UserOrdersResponse {
    let items = orders
        .into_iter()
        .map(|order| UserOrderItem {
            order_id: order.id,
            product_id: order.product_id,
            title: String::new(),
            unit_price_cents: order.unit_price_cents,
            current_price_cents: 0,
            quantity: order.quantity,
            placed_at_unix_ms: order.placed_at_unix_ms,
        })
        .collect();
    UserOrdersResponse { user: Some(user), items, partial: true, partial_reason: reason }
}

/// Where the sync-mode dependencies listen.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub users: Option<PeerList>,
    pub orders: Option<PeerList>,
    pub products: Option<PeerList>,
}

/// Serves on `listener` until `shutdown`, keeping its view (async mode) through the
/// durable consumer [`QUERY_CONSUMER`].
pub async fn run(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_as(listener, args, peers, QUERY_CONSUMER, shutdown).await
}

/// [`run`] for one replica of several: in async mode its view is fed by the durable
/// consumer `consumer`, which must be its own (replicas that shared one would split its
/// events, each view missing what the others got). In sync and bus-rpc mode the query
/// service keeps nothing and `consumer` is not used.
pub async fn run_as(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    consumer: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    args.refuse_monolith(QUERY)?;
    if args.shard.is_some() {
        anyhow::bail!(
            "the query service is not sharded: each instance answers for every user (run replicas instead, each with \
             its own --consumer-name in async mode)"
        );
    }
    match args.mode {
        Mode::Sync => {
            // Stateless: any number of replicas answer alike.
            let (Some(users), Some(orders), Some(products)) = (peers.users, peers.orders, peers.products) else {
                anyhow::bail!("sync mode needs --users-addr, --orders-addr and --products-addr");
            };
            let source = sync::GrpcSource::new(&users, &orders, &products, args.policy);
            Ok(serve_api(listener, args, source, Broker::None, None, shutdown).await?)
        }
        Mode::Async => {
            let Some(mut events) = Events::start(args, QUERY, &shutdown).await? else {
                anyhow::bail!("async mode: no connection to NATS");
            };
            let view = events::View::open(&args.data_dir)?;
            tracing::info!(consumer, "the view is fed by its own durable consumer");
            events.consume(consumer, &QUERY_SUBJECTS, view.clone());
            let db = common::consumer::Projection::db(&view);
            Ok(serve_api(listener, args, view.clone(), Broker::Events(events), Some(db), shutdown).await?)
        }
        Mode::BusRpc => {
            // Nothing calls the query service over the bus (its clients use gRPC): it
            // only sends requests, whose replies come to its own inbox, so replicas need
            // no queue group of their own.
            if peers.users.is_some() || peers.orders.is_some() || peers.products.is_some() {
                tracing::warn!(
                    "bus-rpc mode reaches users, orders and products over NATS: their addresses are not used"
                );
            }
            let bus = Bus::start(args, QUERY, &shutdown).await?;
            let source = bus::BusSource::new(bus.client(), args);
            Ok(serve_api(listener, args, source, Broker::Bus(bus), None, shutdown).await?)
        }
        Mode::Monolith => Err(common::config::ServedByMonolith(QUERY).into()),
    }
}

/// Builds the gRPC API on its [`Source`] and serves it until `shutdown`.
async fn serve_api<S: Source>(
    listener: TcpListener,
    args: &ServiceArgs,
    source: S,
    broker: Broker,
    db: Option<&sled::Db>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = QueryServer::new(api::QueryApi::new(source, args.default_deadline()));
    common::serve::serve_until_shutdown(listener, server, args, broker, db, shutdown).await
}

#[cfg(test)]
mod tests {
    //! [`assemble`], the join every mode shares.

    use super::*;

    fn user() -> User {
        User {
            id: "usr-0000000000000001".into(),
            name: "Ann".into(),
            email: "ann@b.test".into(),
            created_at_unix_ms: 1,
        }
    }

    fn product(n: u8, price_cents: i64) -> Product {
        Product { id: format!("prd-{n:016x}"), title: format!("Product {n}"), price_cents, version: 1 }
    }

    fn order(n: u8, product: &Product, unit_price_cents: i64, quantity: u32) -> Order {
        Order {
            id: format!("ord-{n:016x}"),
            user_id: user().id,
            product_id: product.id.clone(),
            quantity,
            unit_price_cents,
            placed_at_unix_ms: 1_000 + u64::from(n),
        }
    }

    fn catalogue(products: &[&Product]) -> HashMap<String, Product> {
        products.iter().map(|p| (p.id.clone(), (*p).clone())).collect()
    }

    #[test]
    fn each_order_is_joined_with_its_product_keeping_the_price_paid_beside_the_current_one() {
        let (tea, cake) = (product(1, 120), product(2, 300));
        let orders = vec![order(1, &tea, 100, 2), order(2, &cake, 300, 1), order(3, &tea, 120, 5)];
        let answer = assemble(user(), orders.clone(), &catalogue(&[&tea, &cake])).expect("assembled");
        assert_eq!(answer.user, Some(user()));
        let rows: Vec<_> = answer
            .items
            .iter()
            .map(|i| (i.order_id.as_str(), i.title.as_str(), i.unit_price_cents, i.current_price_cents, i.quantity))
            .collect();
        assert_eq!(
            rows,
            [
                (orders[0].id.as_str(), "Product 1", 100, 120, 2),
                (orders[1].id.as_str(), "Product 2", 300, 300, 1),
                (orders[2].id.as_str(), "Product 1", 120, 120, 5),
            ],
            "one row per order, in the order given (oldest first), a product shared by orders"
        );
        assert_eq!(answer.items[2].placed_at_unix_ms, 1_003);
        assert_eq!(answer.items[1].product_id, cake.id);
    }

    #[test]
    fn an_order_whose_product_is_missing_fails_the_answer_naming_both() {
        let (tea, cake) = (product(1, 120), product(2, 300));
        let orders = vec![order(1, &tea, 100, 2), order(2, &cake, 300, 1)];
        match assemble(user(), orders, &catalogue(&[&tea])) {
            Err(ApiError::FailedPrecondition(message)) => {
                assert!(message.contains(&cake.id) && message.contains("ord-0000000000000002"), "{message}")
            }
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    #[test]
    fn a_user_without_orders_gets_no_rows_not_an_error() {
        let answer = assemble(user(), Vec::new(), &HashMap::new()).expect("assembled");
        assert_eq!((answer.user, answer.items.len()), (Some(user()), 0));
    }
}
