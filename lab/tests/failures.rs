//! Sync mode under real faults: a SIGKILLed dependency, a SIGSTOPped one, and the
//! durability of acknowledged writes across a SIGKILL of their owner.

mod support;

use std::time::{Duration, Instant};

use common::{
    config::Mode,
    deadline::Deadline,
    proto::{
        CreateProductRequest, CreateUserRequest, GetProductRequest, GetUserRequest, PlaceOrderRequest, Product, User,
        UserOrdersRequest,
    },
};
use support::{assert_status, req, Lab};
use tonic::Code;

const T: Duration = Duration::from_secs(5);

/// One user, one product, one order.
async fn fixture(lab: &Lab) -> (User, Product) {
    let mut c = lab.clients.clone();
    let user = c
        .users
        .create_user(req(CreateUserRequest { name: "Ada".into(), email: "ada@example.test".into() }, T))
        .await
        .unwrap()
        .into_inner();
    let product = c
        .products
        .create_product(req(CreateProductRequest { title: "Lamp".into(), price_cents: 1999 }, T))
        .await
        .unwrap()
        .into_inner();
    c.orders.place_order(req(place(&user, &product), T)).await.unwrap();
    (user, product)
}

fn place(user: &User, product: &Product) -> PlaceOrderRequest {
    PlaceOrderRequest { user_id: user.id.clone(), product_id: product.id.clone(), quantity: 1 }
}

#[tokio::test]
async fn killed_users_makes_reads_and_writes_fail_fast_with_unavailable() {
    let mut lab = support::start(Mode::Sync).await;
    let (user, product) = fixture(&lab).await;
    let mut c = lab.clients.clone();
    lab.topology.kill("users").unwrap();

    let deadline = Duration::from_secs(4);
    let start = Instant::now();
    let read = c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, deadline)).await;
    let read_took = start.elapsed();
    assert_status(read, Code::Unavailable, "users");
    let start = Instant::now();
    let write = c.orders.place_order(req(place(&user, &product), deadline)).await;
    let write_took = start.elapsed();
    assert_status(write, Code::Unavailable, "users");
    // "Fast": a refused connection is reported at once, not after the deadline.
    assert!(read_took < deadline / 2, "UserOrders took {read_took:?}");
    assert!(write_took < deadline / 2, "PlaceOrder took {write_took:?}");

    // What does not need users keeps working.
    let listed = query::sync::list_orders(&c.orders, &user.id, Deadline::after(T)).await;
    assert_eq!(listed.unwrap().len(), 1);
    c.products.get_product(req(GetProductRequest { id: product.id.clone() }, T)).await.unwrap();

    // Back on the same address: callers reconnect by themselves.
    lab.topology.restart("users").await.unwrap();
    let answer = c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await.unwrap();
    assert_eq!(answer.into_inner().items.len(), 1);
    c.orders.place_order(req(place(&user, &product), T)).await.unwrap();
}

#[tokio::test]
async fn paused_products_makes_callers_fail_at_their_deadline_then_recover() {
    let mut lab = support::start(Mode::Sync).await;
    let (user, product) = fixture(&lab).await;
    let mut c = lab.clients.clone();
    lab.topology.pause("products").unwrap();

    let deadline = Duration::from_millis(800);
    let margin = Duration::from_millis(700);
    let start = Instant::now();
    let read = c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, deadline)).await;
    let read_took = start.elapsed();
    assert_status(read, Code::DeadlineExceeded, "products");
    let start = Instant::now();
    let write = c.orders.place_order(req(place(&user, &product), deadline)).await;
    let write_took = start.elapsed();
    assert_status(write, Code::DeadlineExceeded, "products");
    for took in [read_took, write_took] {
        assert!(took >= deadline * 8 / 10, "failed before the deadline: {took:?}");
        assert!(took < deadline + margin, "did not fail at the deadline: {took:?}");
    }
    // A request without a deadline gets the service's default one: it still ends.
    let start = Instant::now();
    let write = c.orders.place_order(tonic::Request::new(place(&user, &product))).await;
    assert_status(write, Code::DeadlineExceeded, "products");
    let default = Duration::from_millis(common::names::DEFAULT_DEADLINE_MS);
    assert!(start.elapsed() < default + margin, "took {:?}", start.elapsed());

    lab.topology.resume("products").unwrap();
    let answer = c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await.unwrap();
    assert_eq!(answer.into_inner().items.len(), 1);
    c.orders.place_order(req(place(&user, &product), T)).await.unwrap();
}

/// Every write is flushed before its reply, so a SIGKILL right after the reply loses
/// nothing. (Without the flush, sled would still hold these in memory.)
#[tokio::test]
async fn acknowledged_writes_survive_sigkill_of_their_owner() {
    let mut lab = support::start(Mode::Sync).await;
    let (user, product) = fixture(&lab).await;
    let mut c = lab.clients.clone();
    const N: usize = 20;

    let mut user_ids = Vec::new();
    for i in 0..N {
        let message = CreateUserRequest { name: format!("U{i}"), email: format!("u{i}@example.test") };
        user_ids.push(c.users.create_user(req(message, T)).await.unwrap().into_inner().id);
    }
    lab.topology.kill("users").unwrap();
    lab.topology.restart("users").await.unwrap();
    for id in &user_ids {
        c.users.get_user(req(GetUserRequest { id: id.clone() }, T)).await.expect("user survived SIGKILL");
    }

    let mut prices = Vec::new();
    for i in 0..N as i64 {
        let message = common::proto::UpdatePriceRequest { id: product.id.clone(), price_cents: 2000 + i };
        prices.push(c.products.update_price(req(message, T)).await.unwrap().into_inner());
    }
    lab.topology.kill("products").unwrap();
    lab.topology.restart("products").await.unwrap();
    let now = c.products.get_product(req(GetProductRequest { id: product.id.clone() }, T)).await.unwrap().into_inner();
    assert_eq!(&now, prices.last().unwrap(), "last acknowledged price and version survived SIGKILL");

    let mut order_ids = Vec::new();
    for _ in 0..N {
        order_ids.push(c.orders.place_order(req(place(&user, &product), T)).await.unwrap().into_inner().id);
    }
    lab.topology.kill("orders").unwrap();
    lab.topology.restart("orders").await.unwrap();
    let listed = query::sync::list_orders(&c.orders, &user.id, Deadline::after(T)).await.unwrap();
    let listed: Vec<String> = listed.into_iter().map(|o| o.id).collect();
    assert_eq!(listed.len(), N + 1);
    assert_eq!(listed[1..], order_ids[..], "every acknowledged order survived SIGKILL, in order");
}

/// SIGTERM stops a service by itself while its callers hold their connections open
/// (the lab's clients, orders' and query's channels): it serves no more, flushes and
/// exits, rather than waiting on idle connections until the topology's grace period
/// runs out and SIGKILLs it (which made every restart of a running service take 5 s).
#[tokio::test]
async fn sigterm_stops_a_service_whose_callers_keep_their_connections() {
    let mut lab = support::start(Mode::Sync).await;
    let (user, product) = fixture(&lab).await;
    let mut c = lab.clients.clone();
    c.orders.place_order(req(place(&user, &product), T)).await.unwrap();
    c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await.unwrap();
    let record = lab.topology.file().services.into_iter().find(|s| s.name == "users").unwrap();
    let lab::topology::RunsAs::Process { log } = record.runs_as else { panic!("users is a process: {record:?}") };
    lab.topology.stop_one("users").unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("stopped serving"), "users did not stop by itself on SIGTERM:\n{log}");
}

/// A slowed dependency's latency reaches the caller of a request/reply chain, whatever
/// carries it: in bus-rpc mode the proxy in front of products must slow the requests
/// the broker hands products (its gRPC edge carries no call from the other services),
/// as it slows the gRPC calls into products in sync mode.
#[tokio::test]
async fn a_slowed_dependency_slows_the_chain_over_grpc_and_over_the_bus() {
    for mode in [Mode::Sync, Mode::BusRpc] {
        let mut lab = support::start_with(mode, |c| c.proxied = vec!["products".into()]).await;
        let (user, product) = fixture(&lab).await;
        let mut c = lab.clients.clone();
        let added = Duration::from_millis(60);
        lab.topology.set_faults("products", lab::proxy::Faults { latency: added, ..Default::default() }).unwrap();
        // UserOrders asks products once for the current prices; PlaceOrder asks it
        // whether the product exists; UpdatePrice goes to products' own gRPC edge.
        for placed in 1..=3 {
            let start = Instant::now();
            let read = c.query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await;
            assert_eq!(read.unwrap().into_inner().items.len(), placed);
            assert!(
                start.elapsed() >= added,
                "{mode}: UserOrders took {:?}, less than the added {added:?}",
                start.elapsed()
            );
            let start = Instant::now();
            c.orders.place_order(req(place(&user, &product), T)).await.unwrap();
            assert!(start.elapsed() >= added, "{mode}: PlaceOrder took {:?}", start.elapsed());
            let start = Instant::now();
            let price = common::proto::UpdatePriceRequest { id: product.id.clone(), price_cents: 2500 };
            c.products.update_price(req(price, T)).await.unwrap();
            assert!(start.elapsed() >= added, "{mode}: UpdatePrice took {:?}", start.elapsed());
        }
        lab.topology.set_faults("products", lab::proxy::Faults::default()).unwrap();
    }
}
