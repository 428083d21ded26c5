//! bus-rpc mode: orders asks users and products the same questions as in sync mode,
//! over NATS request/reply instead of gRPC (see `common::bus`), while the client waits.

use common::{
    bus::{call_shard, shards, Client},
    config::ServiceArgs,
    deadline::Deadline,
    error::ApiError,
    names::{PRODUCTS, USERS},
    proto::{GetProductRequest, GetUserRequest, Product, User},
    shards::Sharded,
};

use crate::{
    sync::{GET_PRODUCT, GET_USER},
    Directory,
};

/// Users and products, asked over the bus (each id on its shard's subject).
pub struct BusDirectory {
    client: Client,
    users: Sharded<usize>,
    products: Sharded<usize>,
}

impl BusDirectory {
    pub fn new(client: Client, args: &ServiceArgs) -> Self {
        Self { client, users: shards(USERS, args), products: shards(PRODUCTS, args) }
    }
}

impl Directory for BusDirectory {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let message = GetUserRequest { id: user_id.to_owned() };
        call_shard::<_, User>(&self.client, &self.users, user_id, GET_USER, deadline, message).await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let message = GetProductRequest { id: product_id.to_owned() };
        Ok(call_shard(&self.client, &self.products, product_id, GET_PRODUCT, deadline, message).await?)
    }
}
