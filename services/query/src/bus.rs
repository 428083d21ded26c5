//! bus-rpc mode: every `UserOrders` is the call chain of `chain.rs` made over NATS
//! request/reply (see `common::bus`) while the client waits, each call under the
//! service's policy, as in sync mode.

use common::{
    bus::{call, Client},
    config::Policy,
    deadline::Deadline,
    proto::{
        GetProductsRequest, GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse,
        User,
    },
    resilience::Resilience,
};
use tonic::Status;

use crate::chain::{Chain, Owners, GET_PRODUCTS, GET_USER, LIST_ORDERS};

/// Users, orders and products, asked over the bus.
pub struct BusOwners {
    client: Client,
    resilience: Resilience,
}

/// The bus-rpc-mode [`crate::Source`].
pub type BusSource = Chain<BusOwners>;

impl BusSource {
    pub fn new(client: Client, policy: Policy) -> Self {
        Chain::with_policy(BusOwners { client, resilience: Resilience::new(policy) }, policy)
    }
}

impl Owners for BusOwners {
    async fn get_user(&self, message: GetUserRequest, deadline: Deadline) -> Result<User, Status> {
        call(&self.client, &self.resilience, GET_USER, deadline, message).await
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        call(&self.client, &self.resilience, LIST_ORDERS, deadline, message).await
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        call(&self.client, &self.resilience, GET_PRODUCTS, deadline, message).await
    }
}
