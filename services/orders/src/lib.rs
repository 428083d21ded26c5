//! The orders service (C): owns the orders in its own sled database.
//!
//! Placing an order needs two facts owned by other services: that the user exists and
//! what the product costs now. [`Directory`] is where those facts come from: `sync.rs`
//! asks users and products over gRPC at request time; `events.rs` reads orders' own
//! replica, fed by events. The domain (`api.rs`, `store.rs`) does not know which.

pub mod api;
pub mod events;
pub mod store;
pub mod sync;

use std::future::Future;

use common::{
    broker::Events,
    config::{Mode, PeerAddr, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    events::{ORDERS_CONSUMER, ORDERS_SUBJECTS},
    names::ORDERS,
    proto::{orders_server::OrdersServer, Product},
    serve::ServeError,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where orders learns about users and products.
pub trait Directory: Send + Sync + 'static {
    /// `Ok` if the user exists; `NotFound` if not; a dependency error if it cannot tell.
    fn check_user(&self, user_id: &str, deadline: Deadline) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The product as it is now (its price becomes the order's unit price).
    fn product(&self, product_id: &str, deadline: Deadline) -> impl Future<Output = Result<Product, ApiError>> + Send;
}

/// Where the sync-mode dependencies listen.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub users: Option<PeerAddr>,
    pub products: Option<PeerAddr>,
}

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = store::OrderStore::open(&args.data_dir, args.mode == Mode::Async)?;
    match Events::start(args, ORDERS, &shutdown).await? {
        None => {
            let (Some(users), Some(products)) = (peers.users, peers.products) else {
                anyhow::bail!("sync mode needs --users-addr and --products-addr");
            };
            let directory = sync::GrpcDirectory::new(&users, &products);
            Ok(serve_api(listener, args, &store, directory, None, shutdown).await?)
        }
        Some(mut events) => {
            let replica = events::Replica::open(store.db())?;
            events.relay(store.outbox().clone());
            events.consume(ORDERS_CONSUMER, &ORDERS_SUBJECTS, replica.clone());
            Ok(serve_api(listener, args, &store, replica, Some(events), shutdown).await?)
        }
    }
}

/// Builds the gRPC API on its [`Directory`] and serves it until `shutdown`.
async fn serve_api<D: Directory>(
    listener: TcpListener,
    args: &ServiceArgs,
    store: &store::OrderStore,
    directory: D,
    events: Option<Events>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let api = api::OrdersApi::new(store.clone(), directory, args.default_deadline());
    let server = OrdersServer::new(api);
    common::serve::serve_until_shutdown(listener, server, args, events, Some(store.db()), shutdown).await
}
