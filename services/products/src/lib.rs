//! The products service (B): owns the catalogue and its prices in its own sled database.
//!
//! It depends on no other service in any mode: `store.rs` is its data, `api.rs` its
//! gRPC handlers and validation. In async mode every change also leaves an event in
//! the outbox, which the relay publishes.

pub mod api;
pub mod store;

use std::sync::Arc;

use common::{
    broker::Events,
    bus::Bus,
    config::{Mode, ServiceArgs},
    names::{methods, PRODUCTS},
    proto::products_server::ProductsServer,
    serve::Broker,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`; in
/// async mode also relays the outbox; in bus-rpc mode also answers GetProduct and
/// GetProducts on the bus.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.refuse_monolith(PRODUCTS)?;
    let store = store::ProductStore::open(&args.data_dir, args.mode == Mode::Async, args.shard())?;
    let api = Arc::new(api::ProductsApi::new(store.clone()));
    let broker = match args.mode {
        Mode::Sync => Broker::None,
        Mode::Async => {
            let mut events = Events::start(args, PRODUCTS, &shutdown).await?;
            if let Some(events) = &mut events {
                events.relay(store.outbox().clone());
            }
            events.into()
        }
        Mode::BusRpc => {
            let mut bus = Bus::start(args, PRODUCTS, &shutdown).await?;
            let get_product = api.clone();
            bus.answer(methods::GET_PRODUCT, move |req| {
                let api = get_product.clone();
                async move { api.get_product(req).await }
            })
            .await?;
            let get_products = api.clone();
            bus.answer(methods::GET_PRODUCTS, move |req| {
                let api = get_products.clone();
                async move { api.get_products(req).await }
            })
            .await?;
            Broker::Bus(bus)
        }
        Mode::Monolith => return Err(common::config::ServedByMonolith(PRODUCTS).into()),
    };
    let server = ProductsServer::from_arc(api);
    Ok(common::serve::serve_until_shutdown(listener, server, args, broker, Some(store.db()), shutdown).await?)
}
