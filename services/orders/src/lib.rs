//! The orders service (C): owns the orders in its own sled database.
//!
//! Placing an order needs two facts owned by other services: that the user exists and
//! what the product costs now. [`Directory`] is where those facts come from; `sync.rs`
//! asks users and products over gRPC at request time. The domain (`api.rs`,
//! `store.rs`) does not know which.

pub mod api;
pub mod store;
pub mod sync;

use std::future::Future;

use common::{config::ServiceArgs, deadline::Deadline, error::ApiError, proto::Product, serve::ServeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where orders learns about users and products.
pub trait Directory: Send + Sync + 'static {
    /// `Ok` if the user exists; `NotFound` if not; a dependency error if it cannot tell.
    fn check_user(&self, user_id: &str, deadline: Deadline) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The product as it is now (its price becomes the order's unit price).
    fn product(&self, product_id: &str, deadline: Deadline) -> impl Future<Output = Result<Product, ApiError>> + Send;
}

/// Opens the store in `args.data_dir` and serves on `listener` until `shutdown`,
/// validating orders through `directory`.
pub async fn run<D: Directory>(
    listener: TcpListener,
    args: &ServiceArgs,
    directory: D,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = store::OrderStore::open(&args.data_dir)?;
    let api = api::OrdersApi::new(store.clone(), directory, args.default_deadline());
    let served: Result<(), ServeError> = common::serve::run(
        listener,
        common::proto::orders_server::OrdersServer::new(api),
        args.addr_file.as_deref(),
        shutdown,
    )
    .await;
    store.flush().await?;
    Ok(served?)
}
