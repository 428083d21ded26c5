//! The products service (B): owns the catalogue and its prices in its own sled database.
//!
//! It depends on no other service in any mode: `store.rs` is its data, `api.rs` its
//! gRPC handlers and validation.

pub mod api;
pub mod store;

use common::{config::ServiceArgs, serve::ServeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, args: &ServiceArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = store::ProductStore::open(&args.data_dir)?;
    let api = api::ProductsApi::new(store.clone());
    let served: Result<(), ServeError> = common::serve::run(
        listener,
        common::proto::products_server::ProductsServer::new(api),
        args.addr_file.as_deref(),
        shutdown,
    )
    .await;
    store.flush().await?;
    Ok(served?)
}
