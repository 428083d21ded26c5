//! Sync mode: orders asks users and products over gRPC while the client waits.
//! If either is down or slow, placing an order fails: the dependency the learner's
//! notes warn about, made measurable.

use common::{
    config::{PeerAddr, Policy},
    deadline::{Deadline, Hop},
    error::ApiError,
    names::{methods, PRODUCTS, USERS},
    proto::{products_client::ProductsClient, users_client::UsersClient, GetProductRequest, GetUserRequest, Product},
    resilience::Resilience,
};
use tonic::transport::Channel;

use crate::Directory;

/// gRPC clients of users and products.
pub struct GrpcDirectory {
    users: UsersClient<Channel>,
    products: ProductsClient<Channel>,
    resilience: Resilience,
}

impl GrpcDirectory {
    pub fn new(users: &PeerAddr, products: &PeerAddr, policy: Policy) -> Self {
        Self {
            users: UsersClient::new(common::channel(users)),
            products: ProductsClient::new(common::channel(products)),
            resilience: Resilience::new(policy),
        }
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
        (self.resilience)
            .call(GET_USER, deadline, message, |req| {
                let mut client = self.users.clone();
                async move { client.get_user(req).await }
            })
            .await?;
        Ok(())
    }

    async fn product(&self, product_id: &str, deadline: Deadline) -> Result<Product, ApiError> {
        let message = GetProductRequest { id: product_id.to_owned() };
        let product = (self.resilience).call(GET_PRODUCT, deadline, message, |req| {
            let mut client = self.products.clone();
            async move { client.get_product(req).await }
        });
        Ok(product.await?)
    }
}
