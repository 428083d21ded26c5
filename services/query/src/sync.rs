//! Sync mode: every `UserOrders` is a chain of three gRPC calls made while the client
//! waits: users.GetUser, then orders.ListOrdersByUser, then products.GetProducts for
//! the distinct products. Each hop gets only what is left of the client's deadline, and
//! the answer fails if any hop fails.

use std::collections::HashMap;

use common::config::PeerAddr;

use common::{
    deadline::{call, Deadline},
    error::ApiError,
    names::{ORDERS, PRODUCTS, USERS},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, users_client::UsersClient, GetProductsRequest,
        GetUserRequest, ListOrdersByUserRequest, UserOrdersResponse,
    },
};
use tonic::transport::Channel;

use crate::{assemble, Source};

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
}

impl Source for GrpcSource {
    async fn user_orders(&self, user_id: &str, deadline: Deadline) -> Result<UserOrdersResponse, ApiError> {
        let mut users = self.users.clone();
        let user = call(USERS, "GetUser", deadline, GetUserRequest { id: user_id.to_owned() }, |req| async move {
            users.get_user(req).await
        })
        .await?;

        let mut orders = self.orders.clone();
        let message = ListOrdersByUserRequest { user_id: user_id.to_owned() };
        let orders =
            call(
                ORDERS,
                "ListOrdersByUser",
                deadline,
                message,
                |req| async move { orders.list_orders_by_user(req).await },
            )
            .await?
            .orders;

        let mut ids: Vec<String> = orders.iter().map(|o| o.product_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let products = if ids.is_empty() {
            HashMap::new()
        } else {
            let mut client = self.products.clone();
            call(PRODUCTS, "GetProducts", deadline, GetProductsRequest { ids }, |req| async move {
                client.get_products(req).await
            })
            .await?
            .products
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect()
        };
        assemble(user, orders, &products)
    }
}
