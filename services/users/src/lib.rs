//! The users service (A): owns the users in its own sled database.
//!
//! It depends on no other service in any mode: `store.rs` is its data, `api.rs` its
//! gRPC handlers and validation. In async mode every new user also leaves a
//! `UserCreated` in the outbox, which the relay publishes.

pub mod api;
pub mod store;

use std::sync::Arc;

use common::{
    broker::Events,
    bus::Bus,
    config::{Mode, ServiceArgs},
    names::{methods, USERS},
    proto::users_server::UsersServer,
    serve::Broker,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`; in
/// async mode also relays the outbox; in bus-rpc mode also answers GetUser on the bus.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.refuse_monolith(USERS)?;
    let store = store::UserStore::open(&args.data_dir, args.mode == Mode::Async, args.shard())?;
    let api = Arc::new(api::UsersApi::new(store.clone()));
    let broker = match args.mode {
        Mode::Sync => Broker::None,
        Mode::Async => {
            let mut events = Events::start(args, USERS, &shutdown).await?;
            if let Some(events) = &mut events {
                events.relay(store.outbox().clone());
            }
            events.into()
        }
        Mode::BusRpc => {
            let mut bus = Bus::start(args, USERS, &shutdown).await?;
            let get_user = api.clone();
            bus.answer(methods::GET_USER, move |req| {
                let api = get_user.clone();
                async move { api.get_user(req).await }
            })
            .await?;
            Broker::Bus(bus)
        }
        Mode::Monolith => return Err(common::config::ServedByMonolith(USERS).into()),
    };
    let server = UsersServer::from_arc(api);
    Ok(common::serve::serve_until_shutdown(listener, server, args, broker, Some(store.db()), shutdown).await?)
}
