//! Sync mode: every `UserOrders` is the call chain of `chain.rs` made over gRPC while
//! the client waits, each call under the service's policy (`common::resilience`).

use common::{
    config::{PeerList, Policy},
    deadline::Deadline,
    names::{ORDERS, PRODUCTS, USERS},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, users_client::UsersClient, GetProductsRequest,
        GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse, Order, User,
    },
    resilience::Resilience,
    shards::Sharded,
};
use tonic::{transport::Channel, Status};

use crate::chain::{all_orders, Chain, Owners, GET_PRODUCTS, GET_USER, LIST_ORDERS};

/// gRPC clients of users, orders and products (of each shard).
pub struct GrpcOwners {
    users: Sharded<UsersClient<Channel>>,
    orders: Sharded<OrdersClient<Channel>>,
    products: Sharded<ProductsClient<Channel>>,
}

/// The sync-mode [`crate::Source`].
pub type GrpcSource = Chain<GrpcOwners>;

impl GrpcSource {
    pub fn new(users: &PeerList, orders: &PeerList, products: &PeerList, policy: Policy) -> Self {
        let clients = |peers: &PeerList| peers.0.iter().map(common::channel).collect::<Vec<_>>();
        let owners = GrpcOwners {
            users: Sharded::new(USERS, clients(users).into_iter().map(UsersClient::new).collect(), policy),
            orders: Sharded::new(ORDERS, clients(orders).into_iter().map(OrdersClient::new).collect(), policy),
            products: Sharded::new(PRODUCTS, clients(products).into_iter().map(ProductsClient::new).collect(), policy),
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
        let id = message.id.clone();
        (self.users)
            .call(&id, GET_USER, deadline, message, |client, req| {
                let mut client = client.clone();
                async move { client.get_user(req).await }
            })
            .await
    }

    async fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> Result<ListOrdersByUserResponse, Status> {
        let (_, client, resilience) = self.orders.of(&message.user_id)?;
        list_page(client, resilience, message, deadline).await
    }

    async fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> Result<GetProductsResponse, Status> {
        let first = message.ids.first().cloned().unwrap_or_default();
        (self.products)
            .call(&first, GET_PRODUCTS, deadline, message, |client, req| {
                let mut client = client.clone();
                async move { client.get_products(req).await }
            })
            .await
    }
}
