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

use std::{future::Future, net::SocketAddr};

use common::{
    broker::Events,
    config::{Mode, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    names::ORDERS,
    proto::Product,
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Peers {
    pub users: Option<SocketAddr>,
    pub products: Option<SocketAddr>,
}

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = store::OrderStore::open(&args.data_dir, args.mode == Mode::Async)?;
    let result = match args.mode {
        Mode::Sync => {
            let (Some(users), Some(products)) = (peers.users, peers.products) else {
                anyhow::bail!("sync mode needs --users-addr and --products-addr");
            };
            serve(listener, args, &store, sync::GrpcDirectory::new(users, products), shutdown).await
        }
        Mode::Async => {
            let replica = events::Replica::open(store.db())?;
            let mut events = Events::connect(args.require_nats_url().map_err(anyhow::Error::msg)?, ORDERS).await?;
            events.spawn(common::outbox::relay(store.outbox().clone(), events.jetstream(), shutdown.clone()));
            events.spawn(common::consumer::consume(
                events.jetstream(),
                common::events::ORDERS_CONSUMER,
                &common::events::ORDERS_SUBJECTS,
                replica.clone(),
                shutdown.clone(),
            ));
            let served = serve(listener, args, &store, replica, shutdown.clone()).await;
            shutdown.cancel();
            events.stop().await;
            served
        }
    };
    store.flush().await?;
    Ok(result?)
}

async fn serve<D: Directory>(
    listener: TcpListener,
    args: &ServiceArgs,
    store: &store::OrderStore,
    directory: D,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let api = api::OrdersApi::new(store.clone(), directory, args.default_deadline());
    let server = common::proto::orders_server::OrdersServer::new(api);
    common::serve::run(listener, server, args.addr_file.as_deref(), shutdown).await
}
