//! The users service (A): owns the users in its own sled database.
//!
//! It depends on no other service in any mode: `store.rs` is its data, `api.rs` its
//! gRPC handlers and validation. In async mode every new user also leaves a
//! `UserCreated` in the outbox, which the relay publishes.

pub mod api;
pub mod store;

use common::{
    broker::Events,
    config::{Mode, ServiceArgs},
    names::USERS,
    proto::users_server::UsersServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`; in
/// async mode also relays the outbox.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = store::UserStore::open(&args.data_dir, args.mode == Mode::Async)?;
    let mut events = Events::start(args, USERS, &shutdown).await?;
    if let Some(events) = &mut events {
        events.relay(store.outbox().clone());
    }
    let server = UsersServer::new(api::UsersApi::new(store.clone()));
    Ok(common::serve::serve_until_shutdown(listener, server, args, events, Some(store.db()), shutdown).await?)
}
