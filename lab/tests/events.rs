//! Async mode against a real nats-server and real processes: convergence with the
//! truth, consumers that tolerate duplicates, old versions and events out of order,
//! SIGKILLs of every component (broker included) under a stream of writes, a broker
//! outage, and a query service that answers with everything else down.

mod support;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_nats::HeaderMap;
use common::{
    config::Mode,
    events,
    proto::{
        CreateProductRequest, CreateUserRequest, GetUserRequest, Order, PlaceOrderRequest, Product, UpdatePriceRequest,
        UserOrdersRequest,
    },
};
use prost::Message;
use rand::{rngs::StdRng, Rng, SeedableRng};
use support::{converge, populate, req, settle, Lab};

const T: Duration = Duration::from_secs(5);
const CONVERGE: Duration = Duration::from_secs(60);

fn order(user: &str, product: &str, quantity: u32) -> PlaceOrderRequest {
    PlaceOrderRequest { user_id: user.into(), product_id: product.into(), quantity }
}

async fn user_orders(lab: &Lab, user: &str) -> Result<common::proto::UserOrdersResponse, tonic::Status> {
    let mut query = lab.clients.query.clone();
    query.user_orders(req(UserOrdersRequest { user_id: user.into() }, T)).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn the_view_converges_to_the_truth() {
    let lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 10, 6).await;
    settle(&lab, 16).await;
    let mut c = lab.clients.clone();
    let mut rng = StdRng::seed_from_u64(3);
    let mut events = 16;
    for i in 0..120 {
        if i % 10 == 0 {
            let id = products[rng.random_range(0..products.len())].clone();
            c.products
                .update_price(req(UpdatePriceRequest { id, price_cents: rng.random_range(100..10_000) }, T))
                .await
                .unwrap();
        } else {
            let (u, p) = (&users[rng.random_range(0..users.len())], &products[rng.random_range(0..products.len())]);
            c.orders.place_order(req(order(u, p, rng.random_range(1..=5)), T)).await.unwrap();
        }
        events += 1;
    }
    let diff = converge(&lab, events, &users, CONVERGE).await;
    assert!(diff.is_clean(), "{diff:?}");
    assert_eq!(diff.users_checked, 10);
    let total: usize = {
        let mut n = 0;
        for u in &users {
            n += user_orders(&lab, u).await.unwrap().items.len();
        }
        n
    };
    assert_eq!(total, 108, "every order, once");
}

/// Publishes a raw event straight to the stream, as a misbehaving or repeating
/// producer would.
async fn publish(lab: &Lab, envelope: &common::proto::Envelope, msg_id: &str) {
    let client = async_nats::connect(lab.topology.nats_url().unwrap()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut headers = HeaderMap::new();
    headers.insert(events::MSG_ID_HEADER, msg_id);
    let subject = events::subject(envelope).unwrap();
    js.publish_with_headers(subject, headers, envelope.encode_to_vec().into()).await.unwrap().await.unwrap();
}

#[tokio::test]
async fn consumers_ignore_duplicates_and_old_versions_and_wait_for_late_entities() {
    let lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 1, 1).await;
    let (user, product) = (&users[0], &products[0]);
    let mut c = lab.clients.clone();
    settle(&lab, 2).await;
    let placed = c.orders.place_order(req(order(user, product, 2), T)).await.unwrap().into_inner();
    let raised = c
        .products
        .update_price(req(UpdatePriceRequest { id: product.clone(), price_cents: 500 }, T))
        .await
        .unwrap()
        .into_inner();
    settle(&lab, 4).await;
    let before = user_orders(&lab, user).await.unwrap();
    assert_eq!(before.items.len(), 1);
    assert_eq!(before.items[0].current_price_cents, 500);

    // The same OrderPlaced again, under a new Nats-Msg-Id so the stream keeps it: a
    // redelivery in all but name. And an older version of the product.
    publish(&lab, &events::order_placed(&placed), "replayed-order").await;
    let stale = Product { price_cents: 1, version: raised.version - 1, ..raised.clone() };
    publish(&lab, &events::product_price_changed(&stale, 500), "stale-price").await;
    settle(&lab, 6).await;
    assert_eq!(user_orders(&lab, user).await.unwrap(), before, "duplicate and stale events changed nothing");

    // An order whose product the view has never seen: kept, and shown once the
    // product arrives.
    let late = Product { id: "prd-00000000000000ff".into(), title: "Late".into(), price_cents: 42, version: 1 };
    let early_order = Order {
        id: "ord-00000000000000ff".into(),
        user_id: user.clone(),
        product_id: late.id.clone(),
        quantity: 1,
        unit_price_cents: 42,
        placed_at_unix_ms: 1,
    };
    publish(&lab, &events::order_placed(&early_order), "early-order").await;
    settle(&lab, 7).await;
    assert_eq!(user_orders(&lab, user).await.unwrap().items.len(), 1, "not shown without its product");
    publish(&lab, &events::product_created(&late), "late-product").await;
    settle(&lab, 8).await;
    let after = user_orders(&lab, user).await.unwrap();
    assert_eq!(after.items.len(), 2);
    assert!(after.items.iter().any(|i| i.order_id == early_order.id && i.title == "Late"));
}

/// What the writer got acknowledged.
#[derive(Default)]
struct Acked {
    orders: Vec<Order>,
    users: Vec<String>,
    writes: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_any_component_loses_no_acknowledged_write() {
    let seed: u64 = rand::random();
    eprintln!("kill schedule seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 4, 4).await;
    settle(&lab, 8).await;

    let acked = Arc::new(Mutex::new(Acked { writes: 8, ..Default::default() }));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut c, acked, stop, users, products) =
            (lab.clients.clone(), acked.clone(), stop.clone(), users.clone(), products.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (u, p) = (&users[(i % 4) as usize], &products[(i / 4 % 4) as usize]);
                let timeout = Duration::from_secs(1);
                match i % 5 {
                    0 => {
                        let message = UpdatePriceRequest { id: p.clone(), price_cents: 100 + i as i64 };
                        if c.products.update_price(req(message, timeout)).await.is_ok() {
                            acked.lock().unwrap().writes += 1;
                        }
                    }
                    1 => {
                        let message = CreateUserRequest { name: format!("W{i}"), email: format!("w{i}@example.test") };
                        if let Ok(user) = c.users.create_user(req(message, timeout)).await {
                            let mut a = acked.lock().unwrap();
                            a.users.push(user.into_inner().id);
                            a.writes += 1;
                        }
                    }
                    _ => {
                        if let Ok(o) = c.orders.place_order(req(order(u, p, 1), timeout)).await {
                            let mut a = acked.lock().unwrap();
                            a.orders.push(o.into_inner());
                            a.writes += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    for victim in ["users", "products", "orders", "query", "nats"] {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        lab.topology.kill(victim).unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        still_serving_without(&lab, victim, &users, &products, &acked).await;
        lab.topology.restart(victim).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let (orders, new_users, writes) = {
        let a = acked.lock().unwrap();
        (a.orders.clone(), a.users.clone(), a.writes)
    };
    assert!(orders.len() > 20, "the writer got only {} orders through", orders.len());
    let all_users: Vec<String> = users.iter().chain(&new_users).cloned().collect();
    let diff = converge(&lab, writes, &all_users, CONVERGE).await;
    assert!(diff.is_clean(), "seed {seed}: {diff:?}");

    // Exactly once: each acknowledged order appears one time in the view.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for u in &users {
        for item in user_orders(&lab, u).await.unwrap().items {
            *seen.entry(item.order_id).or_default() += 1;
        }
    }
    for o in &orders {
        assert_eq!(seen.get(&o.id), Some(&1), "seed {seed}: order {} seen {:?} times", o.id, seen.get(&o.id));
    }
    // Every acknowledged user exists at its owner and reached the view.
    let mut c = lab.clients.clone();
    for u in &new_users {
        c.users.get_user(req(GetUserRequest { id: u.clone() }, T)).await.unwrap();
        user_orders(&lab, u).await.unwrap();
    }
}

/// While `victim` is down, what does not need it still works.
async fn still_serving_without(lab: &Lab, victim: &str, users: &[String], products: &[String], acked: &Mutex<Acked>) {
    let mut c = lab.clients.clone();
    if victim != "query" {
        user_orders(lab, &users[0]).await.unwrap_or_else(|e| panic!("UserOrders with {victim} down: {e}"));
    }
    if victim != "orders" {
        let o = c.orders.place_order(req(order(&users[0], &products[0], 1), T)).await;
        let o = o.unwrap_or_else(|e| panic!("PlaceOrder with {victim} down: {e}")).into_inner();
        let mut a = acked.lock().unwrap();
        a.orders.push(o);
        a.writes += 1;
    }
    if victim != "products" {
        let message = UpdatePriceRequest { id: products[1].clone(), price_cents: 777 };
        c.products
            .update_price(req(message, T))
            .await
            .unwrap_or_else(|e| panic!("UpdatePrice with {victim} down: {e}"));
        acked.lock().unwrap().writes += 1;
    }
}

#[tokio::test]
async fn with_the_broker_down_writes_wait_in_the_outbox_and_reads_serve_stale() {
    let mut lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 1, 1).await;
    let (user, product) = (&users[0], &products[0]);
    settle(&lab, 2).await;
    let mut c = lab.clients.clone();
    c.orders.place_order(req(order(user, product, 1), T)).await.unwrap();
    settle(&lab, 3).await;

    lab.topology.kill("nats").unwrap();
    let second = c.orders.place_order(req(order(user, product, 3), T)).await.expect("write with the broker down");
    c.products.update_price(req(UpdatePriceRequest { id: product.clone(), price_cents: 999 }, T)).await.unwrap();
    let bob = c
        .users
        .create_user(req(CreateUserRequest { name: "Bob".into(), email: "bob@example.test".into() }, T))
        .await
        .unwrap()
        .into_inner();
    c.products.create_product(req(CreateProductRequest { title: "New".into(), price_cents: 5 }, T)).await.unwrap();
    let stale = user_orders(&lab, user).await.expect("UserOrders with the broker down");
    assert_eq!(stale.items.len(), 1, "stale: the new order has not arrived");
    assert_eq!(stale.items[0].current_price_cents, 100, "stale: the old price");

    lab.topology.restart("nats").await.unwrap();
    let diff = converge(&lab, 7, &[user.clone(), bob.id.clone()], CONVERGE).await;
    assert!(diff.is_clean(), "{diff:?}");
    let fresh = user_orders(&lab, user).await.unwrap();
    assert_eq!(fresh.items.len(), 2);
    assert_eq!(fresh.items[1].order_id, second.into_inner().id);
    assert!(fresh.items.iter().all(|i| i.current_price_cents == 999));
}

#[tokio::test]
async fn the_query_service_answers_with_every_other_service_down() {
    let mut lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 2, 2).await;
    settle(&lab, 4).await;
    let mut c = lab.clients.clone();
    for (u, p) in [(0, 0), (0, 1), (1, 1)] {
        c.orders.place_order(req(order(&users[u], &products[p], 1), T)).await.unwrap();
    }
    settle(&lab, 7).await;
    let before: Vec<_> = [&users[0], &users[1]].map(|u| u.clone()).to_vec();
    let mut answers = Vec::new();
    for u in &before {
        answers.push(user_orders(&lab, u).await.unwrap());
    }
    for victim in ["users", "products", "orders"] {
        lab.topology.kill(victim).unwrap();
    }
    for (u, expected) in before.iter().zip(&answers) {
        assert_eq!(&user_orders(&lab, u).await.expect("UserOrders with users, products, orders down"), expected);
    }
    assert_eq!(answers[0].items.len(), 2);
}
