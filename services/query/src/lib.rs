//! The query service (D): "the products a user ordered".
//!
//! [`Source`] is where its answer comes from. `sync.rs` asks users, then orders, then
//! products over gRPC while the client waits, and owns no data; `events.rs` reads the
//! service's own view, fed by events. Assembling the answer from those three pieces
//! ([`assemble`]) is the same in every mode.

pub mod api;
pub mod events;
pub mod sync;

use std::{collections::HashMap, future::Future};

use common::{
    broker::Events,
    config::{PeerAddr, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    events::{QUERY_CONSUMER, QUERY_SUBJECTS},
    names::QUERY,
    proto::{query_server::QueryServer, Order, Product, User, UserOrderItem, UserOrdersResponse},
    serve::ServeError,
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
    Ok(UserOrdersResponse { user: Some(user), items })
}

/// Where the sync-mode dependencies listen.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub users: Option<PeerAddr>,
    pub orders: Option<PeerAddr>,
    pub products: Option<PeerAddr>,
}

/// Serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match Events::start(args, QUERY, &shutdown).await? {
        None => {
            let (Some(users), Some(orders), Some(products)) = (peers.users, peers.orders, peers.products) else {
                anyhow::bail!("sync mode needs --users-addr, --orders-addr and --products-addr");
            };
            let source = sync::GrpcSource::new(&users, &orders, &products);
            Ok(serve(listener, args, source, None, None, shutdown).await?)
        }
        Some(mut events) => {
            let view = events::View::open(&args.data_dir)?;
            events.consume(QUERY_CONSUMER, &QUERY_SUBJECTS, view.clone());
            Ok(serve(
                listener,
                args,
                view.clone(),
                Some(events),
                Some(common::consumer::Projection::db(&view)),
                shutdown,
            )
            .await?)
        }
    }
}

async fn serve<S: Source>(
    listener: TcpListener,
    args: &ServiceArgs,
    source: S,
    events: Option<Events>,
    db: Option<&sled::Db>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = QueryServer::new(api::QueryApi::new(source, args.default_deadline()));
    common::serve::run_service(listener, server, args, events, db, shutdown).await
}
