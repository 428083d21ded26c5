//! Sync mode: orders asks users and products over gRPC while the client waits.
//! If either is down or slow, placing an order fails: the dependency the learner's
//! notes warn about, made measurable.

use common::{
    config::{PeerList, Policy},
    deadline::{Deadline, Hop},
    error::ApiError,
    names::{methods, PRODUCTS, USERS},
    proto::{products_client::ProductsClient, users_client::UsersClient, GetProductRequest, GetUserRequest, Product},
    shards::Sharded,
};
use tonic::transport::Channel;

use crate::Directory;

/// gRPC clients of users and products (of each shard, asked for the ids it holds).
pub struct GrpcDirectory {
    users: Sharded<UsersClient<Channel>>,
    products: Sharded<ProductsClient<Channel>>,
}

impl GrpcDirectory {
    pub fn new(users: &PeerList, products: &PeerList, policy: Policy) -> Self {
        let users = users.0.iter().map(|a| UsersClient::new(common::channel(a))).collect();
        let products = products.0.iter().map(|a| ProductsClient::new(common::channel(a))).collect();
        Self { users: Sharded::new(USERS, users, policy), products: Sharded::new(PRODUCTS, products, policy) }
    }
}

/// Both look up an id the client sent: their `NOT_FOUND` is an unknown user or product,
/// the client's to hear; anything else they refuse is this service's fault (`INTERNAL`).
/// Both are reads: the hardened policy may retry them.
pub(crate) const GET_USER: Hop = Hop::new(USERS, methods::GET_USER).looking_up_the_clients_id().idempotent();
pub(crate) const GET_PRODUCT: Hop = Hop::new(PRODUCTS, methods::GET_PRODUCT).looking_up_the_clients_id().idempotent();

impl Directory for GrpcDirectory {
    async fn check_user(&self, user_id: &str, deadline: Deadline) -> Result<(), ApiError> {
        let message = GetUserRequest { id: user_id.to_owned() };
        (self.users)
            .call(user_id, GET_USER, deadline, message, |client, req| {
                let mut client = client.clone();
                async move { client.get_user(req).await }
            })
            .await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let message = GetProductRequest { id: product_id.to_owned() };
        let product = (self.products).call(product_id, GET_PRODUCT, deadline, message, |client, req| {
            let mut client = client.clone();
            async move { client.get_product(req).await }
        });
        Ok(product.await?)
    }
}
