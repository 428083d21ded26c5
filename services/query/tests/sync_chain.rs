//! Sync mode in one process: users, products, orders and query each served by its own
//! crate's `run` on a `127.0.0.1:0` listener, with its own sled dir, talking real gRPC.
//! What needs separate processes, signals or a broker stays in `lab/tests/`.

use std::{future::Future, net::SocketAddr};

use common::{
    config::{Mode, ServiceArgs},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, query_client::QueryClient,
        users_client::UsersClient, CreateProductRequest, CreateUserRequest, PlaceOrderRequest, UpdatePriceRequest,
        UserOrdersRequest,
    },
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::Code;

struct Shop {
    users: SocketAddr,
    products: SocketAddr,
    orders: SocketAddr,
    query: SocketAddr,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

fn args(dir: &tempfile::TempDir, name: &str, listen: SocketAddr) -> ServiceArgs {
    ServiceArgs {
        listen,
        data_dir: dir.path().join(name),
        addr_file: None,
        default_deadline_ms: 2_000,
        mode: Mode::Sync,
        nats_url: None,
        duplicate_window_ms: 1_000,
        stream_replicas: 1,
        policy: common::config::Policy::Naive,
        max_in_flight: common::config::DEFAULT_MAX_IN_FLIGHT,
        shard: None,
        owner_shards: 1,
    }
}

impl Shop {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let shutdown = CancellationToken::new();
        let ((ul, users), (pl, products), (ol, orders), (ql, query)) =
            (bind().await, bind().await, bind().await, bind().await);
        let mut servers = Vec::new();
        let mut spawn = |server: std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>| {
            servers.push(tokio::spawn(server))
        };
        let (a, token) = (args(&dir, "users", users), shutdown.clone());
        spawn(Box::pin(async move { users::run(ul, &a, token).await }));
        let (a, token) = (args(&dir, "products", products), shutdown.clone());
        spawn(Box::pin(async move { products::run(pl, &a, token).await }));
        let (a, token) = (args(&dir, "orders", orders), shutdown.clone());
        let peers = orders::Peers { users: Some(users.into()), products: Some(products.into()) };
        spawn(Box::pin(async move { orders::run(ol, &a, peers, token).await }));
        let (a, token) = (args(&dir, "query", query), shutdown.clone());
        let peers =
            query::Peers { users: Some(users.into()), orders: Some(orders.into()), products: Some(products.into()) };
        spawn(Box::pin(async move { query::run(ql, &a, peers, token).await }));
        Self { users, products, orders, query, shutdown, servers, _dir: dir }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for server in self.servers {
            server.await.expect("server task").expect("server stops cleanly");
        }
    }
}

#[tokio::test]
async fn user_orders_joins_the_three_owners_answers_over_grpc() {
    let shop = Shop::start().await;
    let mut users = UsersClient::new(common::channel(shop.users));
    let mut products = ProductsClient::new(common::channel(shop.products));
    let mut orders = OrdersClient::new(common::channel(shop.orders));
    let mut query = QueryClient::new(common::channel(shop.query));

    let ann = users.create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() }).await;
    let ann = ann.expect("user created").into_inner();
    let tea = products.create_product(CreateProductRequest { title: "Tea".into(), price_cents: 100 }).await;
    let tea = tea.expect("product created").into_inner();
    let place = |quantity| PlaceOrderRequest { user_id: ann.id.clone(), product_id: tea.id.clone(), quantity };
    let first = orders.place_order(place(2)).await.expect("placed").into_inner();
    products.update_price(UpdatePriceRequest { id: tea.id.clone(), price_cents: 130 }).await.expect("price changed");
    let second = orders.place_order(place(1)).await.expect("placed").into_inner();

    let answer = query.user_orders(UserOrdersRequest { user_id: ann.id.clone() }).await.expect("answered");
    let rows: Vec<_> = answer
        .into_inner()
        .items
        .into_iter()
        .map(|i| (i.order_id, i.title, i.unit_price_cents, i.current_price_cents, i.quantity))
        .collect();
    assert_eq!(
        rows,
        [(first.id, "Tea".to_owned(), 100, 130, 2), (second.id, "Tea".to_owned(), 130, 130, 1)],
        "each order at the price it was placed at, beside today's, oldest first"
    );

    let stranger = "usr-00000000000000ff";
    let codes = [
        query.user_orders(UserOrdersRequest { user_id: stranger.into() }).await.map(|_| ()),
        query.user_orders(UserOrdersRequest { user_id: "ann".into() }).await.map(|_| ()),
        orders.place_order(PlaceOrderRequest { user_id: stranger.into(), ..place(1) }).await.map(|_| ()),
        orders.place_order(place(0)).await.map(|_| ()),
    ]
    .map(|r| r.expect_err("refused").code());
    assert_eq!(codes, [Code::NotFound, Code::InvalidArgument, Code::NotFound, Code::InvalidArgument]);

    shop.stop().await;
}
