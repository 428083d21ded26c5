//! The call chain behind `UserOrders` in sync and bus-rpc modes: users.GetUser, then
//! orders.ListOrdersByUser (page after page), then products.GetProducts for the
//! distinct products (in batches the products service accepts). Each call gets only
//! what is left of the client's deadline, and the answer fails if any call fails.
//! [`Owners`] is how the calls travel: gRPC (`sync.rs`) or NATS (`bus.rs`).

use std::{collections::HashMap, future::Future};

use common::{
    deadline::{Deadline, Hop},
    error::ApiError,
    names::{methods, MAX_ORDERS_PAGE_SIZE, MAX_PRODUCTS_PER_GET, ORDERS, PRODUCTS, USERS},
    proto::{
        GetProductsRequest, GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse,
        Order, Product, User, UserOrdersResponse,
    },
};
use tonic::Status;

use crate::{assemble, Source};

/// The user is the one the client asked for: an unknown one is the client's `NOT_FOUND`.
pub const GET_USER: Hop = Hop::new(USERS, methods::GET_USER).looking_up_the_clients_id();
/// Any refusal of these is this service's fault, whatever the code (see `deadline::blame`).
pub const LIST_ORDERS: Hop = Hop::new(ORDERS, methods::LIST_ORDERS_BY_USER);
pub const GET_PRODUCTS: Hop = Hop::new(PRODUCTS, methods::GET_PRODUCTS);

/// The three owners' calls, each made within `deadline` as its hop (errors already
/// blamed, as `deadline::call` does).
pub trait Owners: Send + Sync + 'static {
    fn get_user(
        &self,
        message: GetUserRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<User, Status>> + Send;
    fn list_orders_by_user(
        &self,
        message: ListOrdersByUserRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<ListOrdersByUserResponse, Status>> + Send;
    fn get_products(
        &self,
        message: GetProductsRequest,
        deadline: Deadline,
    ) -> impl Future<Output = Result<GetProductsResponse, Status>> + Send;
}

/// A [`Source`] that asks the owners while the client waits.
pub struct Chain<O>(pub O);

/// All of a user's orders, oldest first: follows `ListOrdersByUser` pages (of the largest
/// size, the fewest round trips) until the last, each fetched by `page`. Each page is a
/// call of its own, counted as one in `Admin.Stats`.
pub async fn all_orders<F, Fut>(user_id: &str, mut page: F) -> Result<Vec<Order>, Status>
where
    F: FnMut(ListOrdersByUserRequest) -> Fut,
    Fut: Future<Output = Result<ListOrdersByUserResponse, Status>>,
{
    let mut orders = Vec::new();
    let mut page_token = String::new();
    loop {
        let message =
            ListOrdersByUserRequest { user_id: user_id.to_owned(), page_size: MAX_ORDERS_PAGE_SIZE, page_token };
        let answer = page(message).await?;
        orders.extend(answer.orders);
        if answer.next_page_token.is_empty() {
            return Ok(orders);
        }
        page_token = answer.next_page_token;
    }
}

impl<O: Owners> Chain<O> {
    /// The products with these ids (distinct, at most one lookup each), as the products
    /// service has them now.
    ///
    /// In batches of at most `MAX_PRODUCTS_PER_GET`, sent concurrently: the chain then
    /// waits for the slowest batch rather than for their sum, and every batch shares the
    /// one deadline. The first batch to fail fails the answer and drops the others.
    async fn products(&self, ids: &[String], deadline: Deadline) -> Result<HashMap<String, Product>, Status> {
        let batches = ids
            .chunks(MAX_PRODUCTS_PER_GET)
            .map(|batch| self.0.get_products(GetProductsRequest { ids: batch.to_vec() }, deadline));
        let answers = futures::future::try_join_all(batches).await?;
        Ok(answers.into_iter().flat_map(|a| a.products).map(|p| (p.id.clone(), p)).collect())
    }
}

impl<O: Owners> Source for Chain<O> {
    async fn user_orders(&self, user_id: &str, deadline: Deadline) -> Result<UserOrdersResponse, ApiError> {
        let user = self.0.get_user(GetUserRequest { id: user_id.to_owned() }, deadline).await?;
        let orders = all_orders(user_id, |message| self.0.list_orders_by_user(message, deadline)).await?;
        let mut ids: Vec<String> = orders.iter().map(|o| o.product_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let products = self.products(&ids, deadline).await?;
        assemble(user, orders, &products)
    }
}
