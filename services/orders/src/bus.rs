//! bus-rpc mode: orders asks users and products the same questions as in sync mode,
//! over NATS request/reply instead of gRPC (see `common::bus`), while the client waits.

use common::{
    bus::{call, Client},
    config::Policy,
    deadline::Deadline,
    error::ApiError,
    proto::{GetProductRequest, GetUserRequest, Product, User},
    resilience::Resilience,
};

use crate::{
    sync::{GET_PRODUCT, GET_USER},
    Directory,
};

/// Users and products, asked over the bus.
pub struct BusDirectory {
    client: Client,
    resilience: Resilience,
}

impl BusDirectory {
    pub fn new(client: Client, policy: Policy) -> Self {
        Self { client, resilience: Resilience::new(policy) }
    }
}

impl Directory for BusDirectory {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let message = GetUserRequest { id: user_id.to_owned() };
        call::<_, User>(&self.client, &self.resilience, GET_USER, deadline, message).await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let message = GetProductRequest { id: product_id.to_owned() };
        Ok(call(&self.client, &self.resilience, GET_PRODUCT, deadline, message).await?)
    }
}
