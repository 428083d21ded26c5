//! The `Orders` gRPC API. Validation of an order is the same in every mode; only the
//! [`Directory`] it asks differs.

use std::time::Duration;

use common::{
    deadline::Deadline,
    error::{check_id, ApiError},
    names::{
        DEFAULT_ORDERS_PAGE_SIZE, MAX_ORDERS_PAGE_SIZE, MAX_QUANTITY, ORDER_ID_PREFIX, PRODUCT_ID_PREFIX,
        USER_ID_PREFIX,
    },
    proto::{orders_server::Orders, ListOrdersByUserRequest, ListOrdersByUserResponse, Order, PlaceOrderRequest},
};
use tonic::{Request, Response, Status};

use crate::{
    store::{NewOrder, OrderStore},
    Directory,
};

pub struct OrdersApi<D> {
    store: OrderStore,
    directory: D,
    /// Applied when a client sends no deadline of its own.
    default_deadline: Duration,
}

impl<D: Directory> OrdersApi<D> {
    pub fn new(store: OrderStore, directory: D, default_deadline: Duration) -> Self {
        Self { store, directory, default_deadline }
    }

    /// Validates the request, checks the user and product (concurrently: the order
    /// waits for the slower of the two, not their sum), then stores the order at the
    /// product's current price.
    pub async fn place_order(&self, req: PlaceOrderRequest, deadline: Deadline) -> Result<Order, ApiError> {
        check_id("user_id", USER_ID_PREFIX, &req.user_id)?;
        check_id("product_id", PRODUCT_ID_PREFIX, &req.product_id)?;
        if !(1..=MAX_QUANTITY).contains(&req.quantity) {
            return Err(ApiError::InvalidArgument(format!(
                "quantity must be between 1 and {MAX_QUANTITY}, got {}",
                req.quantity
            )));
        }
        let (user, product) = tokio::join!(
            self.directory.check_user(&req.user_id, deadline),
            self.directory.product(&req.product_id, deadline)
        );
        user?;
        let product = product?;
        let order = self
            .store
            .place(NewOrder {
                user_id: req.user_id,
                product_id: req.product_id,
                quantity: req.quantity,
                unit_price_cents: product.price_cents,
            })
            .await?;
        tracing::debug!(order_id = %order.id, "order placed");
        Ok(order)
    }
}

#[tonic::async_trait]
impl<D: Directory> Orders for OrdersApi<D> {
    async fn place_order(&self, request: Request<PlaceOrderRequest>) -> Result<Response<Order>, Status> {
        let deadline = Deadline::of(&request, self.default_deadline);
        Ok(Response::new(OrdersApi::place_order(self, request.into_inner(), deadline).await?))
    }

    async fn list_orders_by_user(
        &self,
        request: Request<ListOrdersByUserRequest>,
    ) -> Result<Response<ListOrdersByUserResponse>, Status> {
        let req = request.into_inner();
        check_id("user_id", USER_ID_PREFIX, &req.user_id)?;
        let limit = page_size(req.page_size)?;
        let after = page_token(&req.page_token)?;
        let page = self.store.by_user(&req.user_id, after, limit).map_err(ApiError::from)?;
        self.store.outbox().before_reply().await.map_err(ApiError::from)?;
        Ok(Response::new(ListOrdersByUserResponse {
            orders: page.orders,
            next_page_token: page.next_after.unwrap_or_default(),
        }))
    }
}

/// The number of orders a `ListOrdersByUser` page may hold.
fn page_size(asked: u32) -> Result<usize, ApiError> {
    match asked {
        0 => Ok(DEFAULT_ORDERS_PAGE_SIZE as usize),
        n if n <= MAX_ORDERS_PAGE_SIZE => Ok(n as usize),
        n => Err(ApiError::InvalidArgument(format!(
            "page_size {n} is above the maximum of {MAX_ORDERS_PAGE_SIZE}; 0 asks for the default of \
             {DEFAULT_ORDERS_PAGE_SIZE}"
        ))),
    }
}

/// The order a page starts after. A page token is the id of the last order of the
/// previous page (the store's position in the user's index); clients treat it as opaque.
fn page_token(token: &str) -> Result<Option<&str>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    common::ids::check_id("page_token", ORDER_ID_PREFIX, token).map_err(|_| {
        ApiError::InvalidArgument(format!(
            "page_token {token:?} is not a next_page_token of this service; leave it empty for the first page"
        ))
    })?;
    Ok(Some(token))
}
