//! Sync mode: orders asks users and products over gRPC while the client waits.
//! If either is down or slow, placing an order fails: the dependency the learner's
//! notes warn about, made measurable.

use common::config::PeerAddr;

use common::{
    deadline::{call, Deadline, Hop},
    error::ApiError,
    names::{methods, PRODUCTS, USERS},
    proto::{products_client::ProductsClient, users_client::UsersClient, GetProductRequest, GetUserRequest, Product},
};
use tonic::transport::Channel;

use crate::Directory;

/// gRPC clients of users and products.
pub struct GrpcDirectory {
    users: UsersClient<Channel>,
    products: ProductsClient<Channel>,
}

impl GrpcDirectory {
    pub fn new(users: &PeerAddr, products: &PeerAddr) -> Self {
        Self {
            users: UsersClient::new(common::channel(users)),
            products: ProductsClient::new(common::channel(products)),
        }
    }
}

/// Both look up an id the client sent: their `NOT_FOUND` is an unknown user or product,
/// the client's to hear; anything else they refuse is this service's fault (`INTERNAL`).
pub(crate) const GET_USER: Hop = Hop::new(USERS, methods::GET_USER).looking_up_the_clients_id();
pub(crate) const GET_PRODUCT: Hop = Hop::new(PRODUCTS, methods::GET_PRODUCT).looking_up_the_clients_id();

impl Directory for GrpcDirectory {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let mut client = self.users.clone();
        let message = GetUserRequest { id: user_id.to_owned() };
        call(GET_USER, deadline, message, |req| async move { client.get_user(req).await }).await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let mut client = self.products.clone();
        let message = GetProductRequest { id: product_id.to_owned() };
        Ok(call(GET_PRODUCT, deadline, message, |req| async move { client.get_product(req).await }).await?)
    }
}
