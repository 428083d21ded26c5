//! Sync mode: every `UserOrders` is the call chain of `chain.rs` made over gRPC while
//! the client waits, each call under the service's policy (`common::resilience`).

use common::{
    config::{PeerAddr, Policy},
    deadline::Deadline,
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, users_client::UsersClient, GetProductsRequest,
        GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse, Order, User,
    },
    resilience::Resilience,
};
use tonic::{transport::Channel, Status};

use crate::chain::{all_orders, Chain, Owners, GET_PRODUCTS, GET_USER, LIST_ORDERS};

/// gRPC clients of users, orders and products.
pub struct GrpcOwners {
    users: UsersClient<Channel>,
    orders: OrdersClient<Channel>,
    products: ProductsClient<Channel>,
    resilience: Resilience,
}

/// The sync-mode [`crate::Source`].
pub type GrpcSource = Chain<GrpcOwners>;

impl GrpcSource {
    pub fn new(users: &PeerAddr, orders: &PeerAddr, products: &PeerAddr, policy: Policy) -> Self {
        let owners = GrpcOwners {
            users: UsersClient::new(common::channel(users)),
            orders: OrdersClient::new(common::channel(orders)),
            products: ProductsClient::new(common::channel(products)),
            resilience: Resilience::new(policy),
        };
        Chain::with_policy(owners, policy)
    }
}

/// All of a user's orders, oldest first, over gRPC (see [`all_orders`]), one attempt
/// per page. Generic over the transport: the lab reads its baseline through its own
/// client with it.
pub async fn list_orders<T>(client: &OrdersClient<T>, user_id: &str, deadline: Deadline) -> Result<Vec<Order>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let naive = Resilience::new(Policy::Naive);
    all_orders(user_id, |message| list_page(client, &naive, message, deadline)).await
}

async fn list_page<T>(
    client: &OrdersClient<T>,
    resilience: &Resilience,
    message: ListOrdersByUserRequest,
    deadline: Deadline,
) -> Result<ListOrdersByUserResponse, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    resilience
        .call(LIST_ORDERS, deadline, message, |req| {
            let mut client = client.clone();
            async move { client.list_orders_by_user(req).await }
        })
        .await
}

impl Owners for GrpcOwners {
    async fn get_user(&self, message: GetUserRequest, deadline: Deadline) -> Result<User, Status> {
        (self.resilience)
            .call(GET_USER, deadline, message, |req| {
                let mut client = self.users.clone();
                async move { client.get_user(req).await }
            })
            .await
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        list_page(&self.orders, &self.resilience, message, deadline).await
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        (self.resilience)
            .call(GET_PRODUCTS, deadline, message, |req| {
                let mut client = self.products.clone();
                async move { client.get_products(req).await }
            })
            .await
    }
}
