//! The query service (D): "the products a user ordered".
//!
//! It owns no data of its own in sync mode; [`Source`] is where its answer comes from.
//! `sync.rs` asks users, then orders, then products over gRPC while the client waits.
//! Assembling the answer from those three pieces ([`assemble`]) is the same in every
//! mode.

pub mod api;
pub mod sync;

use std::{collections::HashMap, future::Future};

use common::{
    config::ServiceArgs,
    deadline::Deadline,
    error::ApiError,
    proto::{Order, Product, User, UserOrderItem, UserOrdersResponse},
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

/// Serves on `listener` until `shutdown`, answering from `source`.
pub async fn run<S: Source>(
    listener: TcpListener,
    args: &ServiceArgs,
    source: S,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let api = api::QueryApi::new(source, args.default_deadline());
    let served: Result<(), ServeError> = common::serve::run(
        listener,
        common::proto::query_server::QueryServer::new(api),
        args.addr_file.as_deref(),
        shutdown,
    )
    .await;
    Ok(served?)
}
