//! The `Orders` gRPC API. Validation of an order is the same in every mode; only the
//! [`Directory`] it asks differs.

use std::time::Duration;

use common::{
    deadline::Deadline,
    error::{check_id, ApiError},
    names::{MAX_QUANTITY, PRODUCT_ID_PREFIX, USER_ID_PREFIX},
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
        let user_id = request.into_inner().user_id;
        check_id("user_id", USER_ID_PREFIX, &user_id)?;
        let orders = self.store.by_user(&user_id).map_err(ApiError::from)?;
        Ok(Response::new(ListOrdersByUserResponse { orders }))
    }
}
