//! Sync mode: every `UserOrders` is a chain of gRPC calls made while the client waits:
//! users.GetUser, then orders.ListOrdersByUser (page after page), then
//! products.GetProducts for the distinct products (in batches the products service
//! accepts). Each call gets only what is left of the client's deadline, and the answer
//! fails if any call fails.

use std::collections::HashMap;

use common::config::PeerAddr;

use common::{
    deadline::{call, Deadline, Hop},
    error::ApiError,
    names::{MAX_ORDERS_PAGE_SIZE, MAX_PRODUCTS_PER_GET, ORDERS, PRODUCTS, USERS},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, users_client::UsersClient, GetProductsRequest,
        GetUserRequest, ListOrdersByUserRequest, Order, Product, UserOrdersResponse,
    },
};
use tonic::{transport::Channel, Status};

use crate::{assemble, Source};

/// The user is the one the client asked for: an unknown one is the client's `NOT_FOUND`.
const GET_USER: Hop = Hop::new(USERS, "GetUser").looking_up_the_clients_id();
/// Any refusal of these is this service's fault, whatever the code (see `deadline::blame`).
const LIST_ORDERS: Hop = Hop::new(ORDERS, "ListOrdersByUser");
const GET_PRODUCTS: Hop = Hop::new(PRODUCTS, "GetProducts");

pub struct GrpcSource {
    users: UsersClient<Channel>,
    orders: OrdersClient<Channel>,
    products: ProductsClient<Channel>,
}

impl GrpcSource {
    pub fn new(users: &PeerAddr, orders: &PeerAddr, products: &PeerAddr) -> Self {
        Self {
            users: UsersClient::new(common::channel(users)),
            orders: OrdersClient::new(common::channel(orders)),
            products: ProductsClient::new(common::channel(products)),
        }
    }

    /// The products with these ids (distinct, at most one lookup each), as the products
    /// service has them now.
    ///
    /// In batches of at most `MAX_PRODUCTS_PER_GET`, sent concurrently: the chain then
    /// waits for the slowest batch rather than for their sum, and every batch shares the
    /// one deadline. The first batch to fail fails the answer and drops the others.
    async fn products(&self, ids: &[String], deadline: Deadline) -> Result<HashMap<String, Product>, Status> {
        let batches = ids.chunks(MAX_PRODUCTS_PER_GET).map(|batch| {
            let mut client = self.products.clone();
            let message = GetProductsRequest { ids: batch.to_vec() };
            call(GET_PRODUCTS, deadline, message, |req| async move { client.get_products(req).await })
        });
        let answers = futures::future::try_join_all(batches).await?;
        Ok(answers.into_iter().flat_map(|a| a.products).map(|p| (p.id.clone(), p)).collect())
    }
}

/// All of a user's orders, oldest first: follows `ListOrdersByUser` pages (of the largest
/// size, the fewest round trips) until the last, all within `deadline`. Each page is a
/// call of its own, counted as one in `Admin.Stats`. Generic over the transport: the
/// lab reads its baseline through its own client with the same function.
pub async fn list_orders<T>(client: &OrdersClient<T>, user_id: &str, deadline: Deadline) -> Result<Vec<Order>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut orders = Vec::new();
    let mut page_token = String::new();
    loop {
        let mut client = client.clone();
        let message =
            ListOrdersByUserRequest { user_id: user_id.to_owned(), page_size: MAX_ORDERS_PAGE_SIZE, page_token };
        let page =
            call(LIST_ORDERS, deadline, message, |req| async move { client.list_orders_by_user(req).await }).await?;
        orders.extend(page.orders);
        if page.next_page_token.is_empty() {
            return Ok(orders);
        }
        page_token = page.next_page_token;
    }
}

impl Source for GrpcSource {
    async fn user_orders(&self, user_id: &str, deadline: Deadline) -> Result<UserOrdersResponse, ApiError> {
        let mut users = self.users.clone();
        let message = GetUserRequest { id: user_id.to_owned() };
        let user = call(GET_USER, deadline, message, |req| async move { users.get_user(req).await }).await?;

        let orders = list_orders(&self.orders, user_id, deadline).await?;

        let mut ids: Vec<String> = orders.iter().map(|o| o.product_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let products = self.products(&ids, deadline).await?;
        assemble(user, orders, &products)
    }
}
