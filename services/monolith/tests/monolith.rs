//! The monolith as the lab runs it: its binary, one listener on a loopback port, one
//! data dir, the four public APIs. Its in-process calls validate as the services' gRPC calls
//! do, it counts no inter-service RPCs, and what it acknowledged survives a restart on
//! the same data dir.

use std::{net::SocketAddr, path::Path, time::Duration};

use common::{
    config::{Mode, ServiceArgs},
    deadline::Deadline,
    error::ApiError,
    proto::{
        admin_client::AdminClient, orders_client::OrdersClient, products_client::ProductsClient,
        query_client::QueryClient, users_client::UsersClient, CreateProductRequest, CreateUserRequest, GetUserRequest,
        PlaceOrderRequest, StatsRequest, UserOrdersRequest,
    },
};
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Code};

/// The `monolith` binary as a child process, on a loopback port it picks itself.
struct Process {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Process {
    async fn start(data_dir: &Path) -> Self {
        let addr_file = data_dir.with_extension("addr");
        // A previous run's address must not be read as this one's.
        match std::fs::remove_file(&addr_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("cannot remove {}: {e}", addr_file.display()),
            _ => {}
        }
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_monolith"))
            .args(["--listen", "127.0.0.1:0", "--mode", "monolith", "--data-dir"])
            .arg(data_dir)
            .arg("--addr-file")
            .arg(&addr_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the monolith binary starts");
        // Owned at once, so a panic below kills it (see `Drop`).
        let mut process = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        for _ in 0..500 {
            if let Some(addr) = std::fs::read_to_string(&addr_file).ok().and_then(|t| t.trim().parse().ok()) {
                process.addr = addr;
                return process;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the monolith did not announce its address within 5 s");
    }

    fn channel(&self) -> Channel {
        common::channel(self.addr)
    }

    /// SIGKILL: whatever was acknowledged must already be on disk.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A test that failed midway leaves no process behind (a no-op once reaped).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn four_services_on_one_listener_answer_as_the_distributed_ones_and_survive_a_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let running = Process::start(&data).await;
    let (mut users, mut products, mut orders, mut query) = (
        UsersClient::new(running.channel()),
        ProductsClient::new(running.channel()),
        OrdersClient::new(running.channel()),
        QueryClient::new(running.channel()),
    );
    let ann = users
        .create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() })
        .await
        .expect("user created")
        .into_inner();
    let tea = products
        .create_product(CreateProductRequest { title: "Tea".into(), price_cents: 120 })
        .await
        .expect("product created")
        .into_inner();
    let place = |user_id: &str, product_id: &str, quantity: u32| PlaceOrderRequest {
        user_id: user_id.into(),
        product_id: product_id.into(),
        quantity,
    };
    let order = orders.place_order(place(&ann.id, &tea.id, 2)).await.expect("order placed").into_inner();
    assert_eq!((order.unit_price_cents, order.quantity), (120, 2));

    // The same codes as in sync mode: the user and product checks run in process.
    let unknown_user = orders.place_order(place("usr-00000000000000ff", &tea.id, 1)).await.expect_err("refused");
    assert_eq!(unknown_user.code(), Code::NotFound, "{unknown_user:?}");
    assert!(unknown_user.message().contains("usr-00000000000000ff"), "{}", unknown_user.message());
    let unknown_product = orders.place_order(place(&ann.id, "prd-00000000000000ff", 1)).await.expect_err("refused");
    assert_eq!(unknown_product.code(), Code::NotFound, "{unknown_product:?}");
    let bad_quantity = orders.place_order(place(&ann.id, &tea.id, 0)).await.expect_err("refused");
    assert_eq!(bad_quantity.code(), Code::InvalidArgument);
    let unknown_reader =
        query.user_orders(UserOrdersRequest { user_id: "usr-00000000000000ff".into() }).await.expect_err("refused");
    assert_eq!(unknown_reader.code(), Code::NotFound);

    let answer = query.user_orders(UserOrdersRequest { user_id: ann.id.clone() }).await.expect("read").into_inner();
    assert_eq!(answer.user.as_ref().map(|u| u.id.as_str()), Some(ann.id.as_str()));
    let rows: Vec<_> = answer.items.iter().map(|i| (i.order_id.as_str(), i.title.as_str(), i.quantity)).collect();
    assert_eq!(rows, [(order.id.as_str(), "Tea", 2)]);

    let stats = AdminClient::new(running.channel()).stats(StatsRequest {}).await.expect("stats").into_inner();
    assert!(stats.rpcs_sent.is_empty(), "the monolith makes no inter-service RPCs: {:?}", stats.rpcs_sent);
    running.kill();

    // Every write was flushed before its reply: after a SIGKILL, a restart on the same
    // dir reads it all.
    let again = Process::start(&data).await;
    let read = UsersClient::new(again.channel())
        .get_user(GetUserRequest { id: ann.id.clone() })
        .await
        .expect("user read back")
        .into_inner();
    assert_eq!(read, ann);
    let answer = QueryClient::new(again.channel())
        .user_orders(UserOrdersRequest { user_id: ann.id.clone() })
        .await
        .expect("read after restart")
        .into_inner();
    assert_eq!(answer.items.len(), 1);
    assert_eq!(answer.items[0].order_id, order.id);
    again.kill();
}

#[tokio::test]
async fn a_mode_with_a_broker_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let args = ServiceArgs {
        listen: listener.local_addr().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        addr_file: None,
        default_deadline_ms: 2_000,
        mode: Mode::Async,
        nats_url: Some("nats://127.0.0.1:4222".into()),
        duplicate_window_ms: 1_000,
        stream_replicas: 1,
        policy: common::config::Policy::Naive,
        max_in_flight: common::config::DEFAULT_MAX_IN_FLIGHT,
        shard: None,
        owner_shards: 1,
    };
    let error = monolith::run(listener, &args, CancellationToken::new()).await.expect_err("refused");
    assert!(error.to_string().contains("monolith mode only"), "{error}");
}

#[tokio::test]
async fn place_order_asks_the_users_domain_in_process_within_the_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let monolith = monolith::Monolith::open(dir.path(), Duration::from_secs(1)).expect("opens");
    let deadline = Deadline::after(Duration::from_secs(1));
    let tea = monolith
        .products
        .create_product(CreateProductRequest { title: "Tea".into(), price_cents: 100 })
        .await
        .expect("product");
    let request = PlaceOrderRequest { user_id: "usr-00000000000000aa".into(), product_id: tea.id.clone(), quantity: 1 };
    match monolith.orders.place_order(request, deadline).await {
        Err(ApiError::NotFound(message)) => assert!(message.contains("usr-00000000000000aa"), "{message}"),
        other => panic!("expected NotFound for an unknown user, got {other:?}"),
    }
    let ann = monolith
        .users
        .create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() })
        .await
        .expect("user");
    let request = PlaceOrderRequest { user_id: ann.id.clone(), product_id: tea.id, quantity: 3 };
    let order = monolith.orders.place_order(request, deadline).await.expect("placed");
    let answer =
        monolith.query.user_orders(UserOrdersRequest { user_id: ann.id }, deadline).await.expect("user orders");
    assert_eq!(answer.items.iter().map(|i| i.order_id.as_str()).collect::<Vec<_>>(), [order.id.as_str()]);

    // A deadline already spent fails the in-process call by name, as a hop would.
    let spent = Deadline::after(Duration::ZERO);
    let request = PlaceOrderRequest { user_id: order.user_id.clone(), product_id: order.product_id, quantity: 1 };
    match monolith.orders.place_order(request, spent).await {
        Err(ApiError::Dependency(status)) => {
            assert_eq!(status.code(), Code::DeadlineExceeded);
            assert!(status.message().contains("in process"), "{}", status.message());
        }
        other => panic!("expected DEADLINE_EXCEEDED, got {other:?}"),
    }
}
