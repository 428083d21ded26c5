//! bus-rpc mode: every `UserOrders` is the call chain of `chain.rs` made over NATS
//! request/reply (see `common::bus`) while the client waits, each call under the
//! service's policy, as in sync mode.

use common::{
    bus::{call_shard, shards, Client},
    config::ServiceArgs,
    deadline::Deadline,
    names::{ORDERS, PRODUCTS, USERS},
    proto::{
        GetProductsRequest, GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse,
        User,
    },
    shards::Sharded,
};
use tonic::Status;

use crate::chain::{Chain, Owners, GET_PRODUCTS, GET_USER, LIST_ORDERS};

/// Users, orders and products, asked over the bus (each on its shard's subject).
pub struct BusOwners {
    client: Client,
    users: Sharded<usize>,
    orders: Sharded<usize>,
    products: Sharded<usize>,
}

/// The bus-rpc-mode [`crate::Source`].
pub type BusSource = Chain<BusOwners>;

impl BusSource {
    pub fn new(client: Client, args: &ServiceArgs) -> Self {
        let owners = BusOwners {
            client,
            users: shards(USERS, args),
            orders: shards(ORDERS, args),
            products: shards(PRODUCTS, args),
        };
        Chain::with_policy(owners, args.policy)
    }
}

impl Owners for BusOwners {
    async fn get_user(&self, message: GetUserRequest, deadline: Deadline) -> Result<User, Status> {
        let id = message.id.clone();
        call_shard(&self.client, &self.users, &id, GET_USER, deadline, message).await
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        let id = message.user_id.clone();
        call_shard(&self.client, &self.orders, &id, LIST_ORDERS, deadline, message).await
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        let first = message.ids.first().cloned().unwrap_or_default();
        call_shard(&self.client, &self.products, &first, GET_PRODUCTS, deadline, message).await
    }
}
