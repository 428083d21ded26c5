//! Clients of a running topology's public API.

use std::{net::SocketAddr, time::Duration};

use common::{
    names::{ORDERS, PRODUCTS, QUERY, USERS},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, query_client::QueryClient,
        users_client::UsersClient,
    },
};
use tonic::transport::Channel;
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

use crate::topology::TopologyFile;

/// One reused HTTP/2 connection per service.
#[derive(Clone)]
pub struct Clients {
    pub users: UsersClient<Channel>,
    pub products: ProductsClient<Channel>,
    pub orders: OrdersClient<Channel>,
    pub query: QueryClient<Channel>,
}

impl Clients {
    pub fn new(users: SocketAddr, products: SocketAddr, orders: SocketAddr, query: SocketAddr) -> Self {
        Self {
            users: UsersClient::new(common::channel(users)),
            products: ProductsClient::new(common::channel(products)),
            orders: OrdersClient::new(common::channel(orders)),
            query: QueryClient::new(common::channel(query)),
        }
    }

    pub fn for_topology(file: &TopologyFile) -> Result<Self, crate::topology::TopologyError> {
        Ok(Self::new(file.address(USERS)?, file.address(PRODUCTS)?, file.address(ORDERS)?, file.address(QUERY)?))
    }
}

/// Waits until the gRPC health service at `addr` says SERVING.
pub async fn wait_serving(addr: impl std::fmt::Display, timeout: Duration) -> Result<(), String> {
    let mut client = HealthClient::new(common::channel(addr));
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        request.set_timeout(Duration::from_secs(1));
        match client.check(request).await {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => return Ok(()),
            Ok(response) => last = format!("status {:?}", response.get_ref().status()),
            Err(status) => last = status.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("not SERVING after {} s: {last}", timeout.as_secs()))
}
