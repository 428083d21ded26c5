//! bus-rpc mode: orders asks users and products the same questions as in sync mode,
//! over NATS request/reply instead of gRPC (see `common::bus`), while the client waits.

use common::{
    bus::{call, Client},
    deadline::Deadline,
    error::ApiError,
    proto::{GetProductRequest, GetUserRequest, Product, User},
};

use crate::{
    sync::{GET_PRODUCT, GET_USER},
    Directory,
};

/// Users and products, asked over the bus.
pub struct BusDirectory {
    client: Client,
}

impl BusDirectory {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Directory for BusDirectory {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let message = GetUserRequest { id: user_id.to_owned() };
        call::<_, User>(&self.client, GET_USER, deadline, message).await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let message = GetProductRequest { id: product_id.to_owned() };
        Ok(call(&self.client, GET_PRODUCT, deadline, message).await?)
    }
}
