//! The orders service (C): owns the orders in its own sled database.
//!
//! Placing an order needs two facts owned by other services: that the user exists and
//! what the product costs now. [`Directory`] is where those facts come from: `sync.rs`
//! asks users and products over gRPC at request time, `bus.rs` asks them the same over
//! NATS request/reply (bus-rpc mode); `events.rs` reads orders' own replica, fed by
//! events. The domain (`api.rs`, `store.rs`) does not know which.

pub mod api;
pub mod bus;
pub mod events;
pub mod store;
pub mod sync;

use std::{future::Future, sync::Arc};

use common::{
    broker::Events,
    bus::Bus,
    config::{Mode, PeerList, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    events::{ORDERS_CONSUMER, ORDERS_SUBJECTS},
    names::{methods, ORDERS},
    proto::{orders_server::OrdersServer, Product},
    serve::{Broker, ServeError},
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

/// Where the sync-mode dependencies listen (each shard of each, in shard order).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    pub users: Option<PeerList>,
    pub products: Option<PeerList>,
}

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    args: &ServiceArgs,
    peers: Peers,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    args.refuse_monolith(ORDERS)?;
    let store = store::OrderStore::open(&args.data_dir, args.mode == Mode::Async, args.shard())?;
    match args.mode {
        Mode::Sync => {
            let (Some(users), Some(products)) = (peers.users, peers.products) else {
                anyhow::bail!("sync mode needs --users-addr and --products-addr");
            };
            let directory = sync::GrpcDirectory::new(&users, &products, args.policy);
            let api = Arc::new(api::OrdersApi::new(store.clone(), directory, args.default_deadline()));
            Ok(serve_api(listener, args, &store, api, Broker::None, shutdown).await?)
        }
        Mode::Async => {
            let Some(mut events) = Events::start(args, ORDERS, &shutdown).await? else {
                anyhow::bail!("async mode: no connection to NATS");
            };
            let replica = events::Replica::open(store.db())?;
            events.relay(store.outbox().clone());
            // Each shard keeps every user and product: a consumer of its own.
            events.consume(args.consumer_name(ORDERS_CONSUMER), &ORDERS_SUBJECTS, replica.clone());
            let api = Arc::new(api::OrdersApi::new(store.clone(), replica, args.default_deadline()));
            Ok(serve_api(listener, args, &store, api, Broker::Events(events), shutdown).await?)
        }
        Mode::BusRpc => {
            if peers.users.is_some() || peers.products.is_some() {
                tracing::warn!("bus-rpc mode reaches users and products over NATS: their addresses are not used");
            }
            let mut bus = Bus::start(args, ORDERS, &shutdown).await?;
            let directory = bus::BusDirectory::new(bus.client(), args);
            let api = Arc::new(api::OrdersApi::new(store.clone(), directory, args.default_deadline()));
            let list = api.clone();
            bus.answer(methods::LIST_ORDERS_BY_USER, move |req| {
                let api = list.clone();
                async move { api.list_orders_by_user(req).await }
            })
            .await?;
            Ok(serve_api(listener, args, &store, api, Broker::Bus(bus), shutdown).await?)
        }
        Mode::Monolith => Err(common::config::ServedByMonolith(ORDERS).into()),
    }
}

/// Serves the gRPC API, built on its [`Directory`], until `shutdown`.
async fn serve_api<D: Directory>(
    listener: TcpListener,
    args: &ServiceArgs,
    store: &store::OrderStore,
    api: Arc<api::OrdersApi<D>>,
    broker: Broker,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server = OrdersServer::from_arc(api);
    common::serve::serve_until_shutdown(listener, server, args, broker, Some(store.db()), shutdown).await
}
