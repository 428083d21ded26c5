//! Sync mode: every `UserOrders` is the call chain of `chain.rs` made over gRPC while
//! the client waits.

use common::{
    config::PeerAddr,
    deadline::{call, Deadline},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, users_client::UsersClient, GetProductsRequest,
        GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse, Order, User,
    },
};
use tonic::{transport::Channel, Status};

use crate::chain::{all_orders, Chain, Owners, GET_PRODUCTS, GET_USER, LIST_ORDERS};

/// gRPC clients of users, orders and products.
pub struct GrpcOwners {
    users: UsersClient<Channel>,
    orders: OrdersClient<Channel>,
    products: ProductsClient<Channel>,
}

/// The sync-mode [`crate::Source`].
pub type GrpcSource = Chain<GrpcOwners>;

impl GrpcSource {
    pub fn new(users: &PeerAddr, orders: &PeerAddr, products: &PeerAddr) -> Self {
        Chain(GrpcOwners {
            users: UsersClient::new(common::channel(users)),
            orders: OrdersClient::new(common::channel(orders)),
            products: ProductsClient::new(common::channel(products)),
        })
    }
}

/// All of a user's orders, oldest first, over gRPC (see [`all_orders`]). Generic over
/// the transport: the lab reads its baseline through its own client with it.
pub async fn list_orders<T>(client: &OrdersClient<T>, user_id: &str, deadline: Deadline) -> Result<Vec<Order>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    all_orders(user_id, |message| list_page(client, message, deadline)).await
}

async fn list_page<T>(
    client: &OrdersClient<T>,
    message: ListOrdersByUserRequest,
    deadline: Deadline,
) -> Result<ListOrdersByUserResponse, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = client.clone();
    call(LIST_ORDERS, deadline, message, |req| async move { client.list_orders_by_user(req).await }).await
}

impl Owners for GrpcOwners {
    async fn get_user(&self, message: GetUserRequest, deadline: Deadline) -> Result<User, Status> {
        let mut client = self.users.clone();
        call(GET_USER, deadline, message, |req| async move { client.get_user(req).await }).await
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        list_page(&self.orders, message, deadline).await
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        let mut client = self.products.clone();
        call(GET_PRODUCTS, deadline, message, |req| async move { client.get_products(req).await }).await
    }
}
