//! The users service (A): owns the users in its own sled database.
//!
//! It depends on no other service in any mode: `store.rs` is its data, `api.rs` its
//! gRPC handlers and validation. In async mode every new user also leaves a
//! `UserCreated` in the outbox, which the relay publishes.

pub mod api;
pub mod store;

use common::{config::Mode, config::ServiceArgs, names::USERS, serve::ServeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = store::UserStore::open(&args.data_dir, args.mode == Mode::Async)?;
    let events = common::broker::relay_outbox(args, USERS, store.outbox().clone(), &shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the event relay: {e}"))?;
    let api = api::UsersApi::new(store.clone());
    let served: Result<(), ServeError> = common::serve::run(
        listener,
        common::proto::users_server::UsersServer::new(api),
        args.addr_file.as_deref(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(events) = events {
        events.stop().await;
    }
    store.flush().await?;
    Ok(served?)
}
