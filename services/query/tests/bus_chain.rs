//! bus-rpc mode in one process: users, products, orders and query each served by its
//! crate's `run` (public gRPC API on a `127.0.0.1:0` listener, internal RPCs over core
//! NATS request/reply) against a real `nats-server` on an ephemeral loopback port.
//! The codes a client sees are held to sync mode's (see `sync_chain.rs`).

use std::{
    future::Future,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    bus::{self, Client},
    config::{Mode, ServiceArgs},
    deadline::{Deadline, Hop},
    names::{methods, ORDERS, PRODUCTS, USERS},
    proto::{
        admin_client::AdminClient, orders_client::OrdersClient, products_client::ProductsClient,
        query_client::QueryClient, users_client::UsersClient, CreateProductRequest, CreateUserRequest,
        GetProductsRequest, GetProductsResponse, GetUserRequest, ListOrdersByUserRequest, ListOrdersByUserResponse,
        PlaceOrderRequest, StatsRequest, UpdatePriceRequest, User, UserOrdersRequest,
    },
};
use futures::StreamExt;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// A `nats-server` (core NATS, no JetStream) on an ephemeral loopback port; killed on drop.
struct Broker {
    child: Child,
    url: String,
}

impl Broker {
    /// On an ephemeral port.
    fn start(dir: &Path) -> Self {
        Self::on_port(dir, "-1")
    }

    /// Kills it (SIGKILL) and starts another on the same port.
    fn restart(&mut self, dir: &Path) {
        self.kill();
        let port = self.url.rsplit(':').next().expect("a port").to_owned();
        let next = Self::on_port(dir, &port);
        assert_eq!(next.url, self.url);
        *self = next;
    }

    fn kill(&mut self) {
        if let Err(error) = self.child.kill().and_then(|()| self.child.wait().map(drop)) {
            eprintln!("cannot stop nats-server: {error}");
        }
    }

    fn on_port(dir: &Path, port: &str) -> Self {
        let nats = bench::nats::nats_server().expect("a nats-server (found or provisioned)");
        let ports = dir.join("ports");
        std::fs::create_dir_all(&ports).expect("ports dir");
        let child = Command::new(&nats.path)
            .args(["-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let started = Instant::now();
        let url = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(at) = text.find("nats://") {
                let url = &text[at..];
                break url[..url.find('"').expect("a JSON string")].to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server wrote no ports file");
            std::thread::sleep(Duration::from_millis(10));
        };
        Self { child, url }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every service's deadline for a request that brings none.
const DEFAULT_DEADLINE: Duration = Duration::from_millis(500);

type Server = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One running service: its gRPC address, its own shutdown and its task.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("server task").expect("server stops cleanly");
    }
}

struct Shop {
    users: Vec<Running>,
    products: Running,
    orders: Running,
    query: Running,
    bus: Client,
    broker: Broker,
    dir: tempfile::TempDir,
}

fn args(dir: &Path, name: &str, listen: SocketAddr, nats_url: &str) -> ServiceArgs {
    ServiceArgs {
        listen,
        data_dir: dir.join(name),
        addr_file: None,
        default_deadline_ms: DEFAULT_DEADLINE.as_millis() as u64,
        mode: Mode::BusRpc,
        nats_url: Some(nats_url.to_owned()),
        duplicate_window_ms: 1_000,
        stream_replicas: 1,
        policy: common::config::Policy::Naive,
        max_in_flight: common::config::DEFAULT_MAX_IN_FLIGHT,
        shard: None,
        owner_shards: 1,
    }
}

async fn spawn(
    dir: &Path,
    name: &str,
    url: &str,
    serve: fn(TcpListener, ServiceArgs, CancellationToken) -> Server,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, args(dir, name, addr, url), stop.clone()));
    Running { addr, stop, task }
}

fn users(listener: TcpListener, a: ServiceArgs, stop: CancellationToken) -> Server {
    Box::pin(async move { users::run(listener, &a, stop).await })
}

fn products(listener: TcpListener, a: ServiceArgs, stop: CancellationToken) -> Server {
    Box::pin(async move { products::run(listener, &a, stop).await })
}

/// No peer addresses: bus-rpc mode needs none.
fn orders(listener: TcpListener, a: ServiceArgs, stop: CancellationToken) -> Server {
    Box::pin(async move { orders::run(listener, &a, orders::Peers::default(), stop).await })
}

fn query(listener: TcpListener, a: ServiceArgs, stop: CancellationToken) -> Server {
    Box::pin(async move { query::run(listener, &a, query::Peers::default(), stop).await })
}

const GET_USER: Hop = Hop::new(USERS, methods::GET_USER).looking_up_the_clients_id();

/// Waits until `call` gets something other than "nothing answers" (the subscriptions
/// are made as each service starts).
async fn until_answering<T, Fut: Future<Output = Result<T, tonic::Status>>>(what: &str, call: impl Fn() -> Fut) {
    let started = Instant::now();
    loop {
        match call().await {
            Err(status) if status.code() == Code::Unavailable => {
                assert!(started.elapsed() < Duration::from_secs(10), "{what} never answered: {status:?}")
            }
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Shop {
    async fn start(user_instances: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Broker::start(dir.path());
        let url = broker.url.clone();
        let mut users_running = Vec::new();
        for i in 0..user_instances {
            users_running.push(spawn(dir.path(), &format!("users-{i}"), &url, users).await);
        }
        let shop = Self {
            users: users_running,
            products: spawn(dir.path(), "products", &url, products).await,
            orders: spawn(dir.path(), "orders", &url, orders).await,
            query: spawn(dir.path(), "query", &url, query).await,
            bus: common::broker::connect(&url, "test").await.expect("test client connects"),
            broker,
            dir,
        };
        let deadline = || Deadline::after(Duration::from_secs(1));
        let naive = naive();
        let naive = &naive;
        let stranger = || GetUserRequest { id: "usr-00000000000000ff".into() };
        until_answering("users", || bus::call::<_, User>(&shop.bus, naive, GET_USER, deadline(), stranger())).await;
        let hop = Hop::new(PRODUCTS, methods::GET_PRODUCTS);
        let none = || GetProductsRequest { ids: Vec::new() };
        until_answering("products", || bus::call::<_, GetProductsResponse>(&shop.bus, naive, hop, deadline(), none()))
            .await;
        let hop = Hop::new(ORDERS, methods::LIST_ORDERS_BY_USER);
        let list = || ListOrdersByUserRequest { user_id: stranger().id, ..Default::default() };
        until_answering("orders", || {
            bus::call::<_, ListOrdersByUserResponse>(&shop.bus, naive, hop, deadline(), list())
        })
        .await;
        shop
    }

    async fn stop(self) {
        for running in self.users {
            running.stop().await;
        }
        for running in [self.products, self.orders, self.query] {
            running.stop().await;
        }
        drop(self.broker);
        drop(self.dir);
    }
}

#[tokio::test]
async fn the_sync_call_graph_over_nats_gives_sync_modes_answers_and_codes() {
    let shop = Shop::start(1).await;
    let mut users = UsersClient::new(common::channel(shop.users[0].addr));
    let mut products = ProductsClient::new(common::channel(shop.products.addr));
    let mut orders = OrdersClient::new(common::channel(shop.orders.addr));
    let mut query = QueryClient::new(common::channel(shop.query.addr));

    let ann = users.create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() }).await;
    let ann = ann.expect("user created").into_inner();
    let tea = products.create_product(CreateProductRequest { title: "Tea".into(), price_cents: 100 }).await;
    let tea = tea.expect("product created").into_inner();
    let place = |quantity| PlaceOrderRequest { user_id: ann.id.clone(), product_id: tea.id.clone(), quantity };
    let first = orders.place_order(place(2)).await.expect("placed").into_inner();
    products.update_price(UpdatePriceRequest { id: tea.id.clone(), price_cents: 130 }).await.expect("price changed");
    let second = orders.place_order(place(1)).await.expect("placed").into_inner();
    assert_eq!((first.unit_price_cents, second.unit_price_cents), (100, 130), "the price asked over the bus");

    // Admin.Stats counts the bus hops as sync mode counts its gRPC calls.
    let mut admin = AdminClient::new(common::channel(shop.query.addr));
    let sent = |name: &str, stats: &common::proto::StatsResponse| stats.rpcs_sent.get(name).copied().unwrap_or(0);
    let before = admin.stats(StatsRequest {}).await.expect("stats").into_inner();
    let answer = query.user_orders(UserOrdersRequest { user_id: ann.id.clone() }).await.expect("answered");
    let after = admin.stats(StatsRequest {}).await.expect("stats").into_inner();
    for hop in ["orders.ListOrdersByUser", "products.GetProducts"] {
        assert_eq!(sent(hop, &after) - sent(hop, &before), 1, "{hop} counted once per UserOrders");
    }
    assert!(sent("users.GetUser", &after) > sent("users.GetUser", &before));
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

    // The codes of sync_chain.rs, the same for the same requests.
    let stranger = "usr-00000000000000ff";
    let unknown_product = "prd-00000000000000ff";
    let codes = [
        query.user_orders(UserOrdersRequest { user_id: stranger.into() }).await.map(|_| ()),
        query.user_orders(UserOrdersRequest { user_id: "ann".into() }).await.map(|_| ()),
        orders.place_order(PlaceOrderRequest { user_id: stranger.into(), ..place(1) }).await.map(|_| ()),
        orders.place_order(place(0)).await.map(|_| ()),
        orders.place_order(PlaceOrderRequest { product_id: unknown_product.into(), ..place(1) }).await.map(|_| ()),
    ]
    .map(|r| r.expect_err("refused").code());
    assert_eq!(codes, [Code::NotFound, Code::InvalidArgument, Code::NotFound, Code::InvalidArgument, Code::NotFound]);

    // A request whose deadline has passed is refused by the answering side, not served.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(bus::TIMEOUT_HEADER, "0m");
    let payload = prost::Message::encode_to_vec(&GetUserRequest { id: ann.id.clone() });
    let request = async_nats::Request::new().headers(headers).payload(payload.into());
    let reply = shop.bus.send_request(bus::subject(USERS, methods::GET_USER), request).await.expect("a reply");
    let status = reply.headers.as_ref().and_then(|h| h.get(bus::STATUS_HEADER)).map(|v| v.as_str().to_owned());
    assert_eq!(status, Some((Code::DeadlineExceeded as i32).to_string()), "{reply:?}");
    assert!(reply.payload.is_empty());

    // users stopped: nothing answers its subject, and orders says so as sync mode does.
    let Shop { users: mut users_running, products: p, orders: o, query: q, bus: test_bus, broker, dir } = shop;
    users_running.pop().expect("one users instance").stop().await;
    let err = orders.place_order(place(1)).await.expect_err("users is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().starts_with("users is unavailable"), "{}", err.message());
    let err = query.user_orders(UserOrdersRequest { user_id: ann.id.clone() }).await.expect_err("users is down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // users answering nothing: the hop runs out of the request's deadline (orders'
    // default, DEFAULT_DEADLINE here: a client deadline would race orders' answer with
    // its own timer), named.
    let mut silent =
        test_bus.queue_subscribe(bus::subject(USERS, methods::GET_USER), USERS.to_owned()).await.expect("sub");
    bus::round_trip(&test_bus).await.expect("the broker has the subscription");
    let started = Instant::now();
    let err = orders.place_order(place(1)).await.expect_err("users is silent");
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("users.GetUser"), "{}", err.message());
    assert!(took >= DEFAULT_DEADLINE * 8 / 10 && took < DEFAULT_DEADLINE * 2, "took {took:?}");
    assert!(silent.next().await.is_some(), "the request reached the silent responder");

    let shop = Shop { users: users_running, products: p, orders: o, query: q, bus: test_bus, broker, dir };
    shop.stop().await;
}

#[tokio::test]
async fn instances_of_a_service_share_its_subject_in_one_queue_group() {
    let shop = Shop::start(2).await;
    // A user that only the first instance has (each instance has its own data dir):
    // a GetUser answered by the second is NOT_FOUND.
    let mut first = UsersClient::new(common::channel(shop.users[0].addr));
    let ann = first.create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() }).await;
    let ann = ann.expect("user created").into_inner();
    let (mut found, mut not_found) = (0, 0);
    for _ in 0..40 {
        let message = GetUserRequest { id: ann.id.clone() };
        match bus::call::<_, User>(&shop.bus, &naive(), GET_USER, Deadline::after(Duration::from_secs(1)), message)
            .await
        {
            Ok(user) => {
                assert_eq!(user, ann);
                found += 1
            }
            Err(status) if status.code() == Code::NotFound => not_found += 1,
            Err(status) => panic!("unexpected {status:?}"),
        }
    }
    assert!(found > 0 && not_found > 0, "both instances answer: {found} from the first, {not_found} from the second");

    // One queue group: each request reaches one instance, so it gets one reply, not two.
    let inbox = shop.bus.new_inbox();
    let mut replies = shop.bus.subscribe(inbox.clone()).await.expect("inbox");
    let payload = prost::Message::encode_to_vec(&GetUserRequest { id: ann.id.clone() });
    for _ in 0..10 {
        let subject = bus::subject(USERS, methods::GET_USER);
        shop.bus.publish_with_reply(subject, inbox.clone(), payload.clone().into()).await.expect("published");
    }
    let mut count = 0;
    while tokio::time::timeout(Duration::from_millis(300), replies.next()).await.is_ok_and(|r| r.is_some()) {
        count += 1;
    }
    assert_eq!(count, 10, "one reply per request");
    shop.stop().await;
}

#[tokio::test]
async fn bus_rpc_mode_without_a_nats_url_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut a = args(dir.path(), "orders", listener.local_addr().expect("addr"), "unused");
    a.nats_url = None;
    let err = orders::run(listener, &a, orders::Peers::default(), CancellationToken::new()).await.expect_err("refused");
    assert_eq!(err.to_string(), "--nats-url is required in bus-rpc mode");
}

#[tokio::test]
async fn with_the_broker_dead_calls_fail_at_once_and_work_again_once_it_is_back() {
    let mut shop = Shop::start(1).await;
    let mut users = UsersClient::new(common::channel(shop.users[0].addr));
    let mut products = ProductsClient::new(common::channel(shop.products.addr));
    let mut orders = OrdersClient::new(common::channel(shop.orders.addr));
    let ann = users.create_user(CreateUserRequest { name: "Ann".into(), email: "ann@b.test".into() }).await;
    let ann = ann.expect("user created").into_inner();
    let tea = products.create_product(CreateProductRequest { title: "Tea".into(), price_cents: 100 }).await;
    let tea = tea.expect("product created").into_inner();
    let place = || PlaceOrderRequest { user_id: ann.id.clone(), product_id: tea.id.clone(), quantity: 1 };
    orders.place_order(place()).await.expect("placed");

    shop.broker.kill();
    // The services notice the lost connection within moments; until then a call may
    // still wait for its deadline.
    let started = Instant::now();
    let err = loop {
        let err = orders.place_order(place()).await.expect_err("no broker");
        if err.code() == Code::Unavailable || started.elapsed() > Duration::from_secs(10) {
            break err;
        }
    };
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no connection to the NATS broker"), "{}", err.message());
    let started = Instant::now();
    orders.place_order(place()).await.expect_err("still no broker");
    assert!(started.elapsed() < Duration::from_millis(500), "failed fast: {:?}", started.elapsed());
    // The owners' own gRPC API does not need the broker.
    users.get_user(GetUserRequest { id: ann.id.clone() }).await.expect("users serves without the broker");

    shop.broker.restart(shop.dir.path());
    let started = Instant::now();
    loop {
        match orders.place_order(place()).await {
            Ok(order) => break assert_eq!(order.into_inner().unit_price_cents, 100),
            Err(err) => assert!(started.elapsed() < Duration::from_secs(10), "never recovered: {err:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.stop().await;
}

/// One attempt per call, as before the policies.
fn naive() -> common::resilience::Resilience {
    common::resilience::Resilience::new(common::config::Policy::Naive)
}

/// Under the hardened policy a service's bus responders share its `--max-in-flight`:
/// a request that finds it full is answered `RESOURCE_EXHAUSTED` at once, not queued.
#[tokio::test]
async fn a_hardened_responder_at_its_limit_sheds_the_excess_with_resource_exhausted() {
    use std::sync::Arc;

    use tokio::sync::Notify;

    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let shutdown = CancellationToken::new();
    let mut hardened = args(dir.path(), "slow", "127.0.0.1:0".parse().unwrap(), &broker.url);
    (hardened.policy, hardened.max_in_flight) = (common::config::Policy::Hardened, 1);
    let mut bus = bus::Bus::start(&hardened, "slow", &shutdown).await.expect("bus");
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (e, r) = (entered.clone(), release.clone());
    bus.answer(methods::GET_USER, move |req: GetUserRequest| {
        let (entered, release) = (e.clone(), r.clone());
        async move {
            entered.notify_one();
            release.notified().await;
            Ok(User { id: req.id, ..Default::default() })
        }
    })
    .await
    .expect("subscribed");
    bus.ready().await;

    let client = common::broker::connect(&broker.url, "test").await.expect("test client connects");
    let connected = async {
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), connected).await.expect("the test client connects");
    let hop = Hop::new("slow", methods::GET_USER);
    let ask = |id: &str| GetUserRequest { id: id.to_owned() };
    let first = {
        let (client, message) = (client.clone(), ask("first"));
        tokio::spawn(async move {
            let deadline = Deadline::after(Duration::from_secs(5));
            bus::call::<_, User>(&client, &naive(), hop, deadline, message).await
        })
    };
    if tokio::time::timeout(Duration::from_secs(5), entered.notified()).await.is_err() {
        panic!("the first request never reached the responder: {:?}", first.await);
    }
    let naive = naive();
    let second = bus::call::<_, User>(&client, &naive, hop, Deadline::after(Duration::from_secs(5)), ask("second"));
    let status = second.await.expect_err("the second is shed");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    release.notify_one();
    assert_eq!(first.await.expect("task").expect("the first is answered").id, "first");
    // Under the limit again: served.
    release.notify_one();
    let third = bus::call::<_, User>(&client, &naive, hop, Deadline::after(Duration::from_secs(5)), ask("third"));
    assert_eq!(third.await.expect("served").id, "third");
    shutdown.cancel();
    bus.stop().await;
}
