//! Async mode's promise under the worst crash instants: nothing that leaves a service
//! (an event) may describe a write that a SIGKILL can still erase, and no identity may
//! be handed out twice across a crash. A failpoint holds the window between a write's
//! commit (in memory) and its flush open, so a real SIGKILL lands inside it every time.

mod support;

use std::time::Duration;

use bytes::Bytes;
use common::{
    config::Mode,
    events,
    failpoint::WRITE_FLUSH_DELAY_ENV,
    names::{ORDERS, PRODUCTS, QUERY, USERS},
    proto::{
        admin_client::AdminClient, CreateUserRequest, GetProductRequest, PlaceOrderRequest, StatsRequest,
        StatsResponse, UpdatePriceRequest, UserOrdersRequest,
    },
};
use support::{populate, req, settle, Lab};

const T: Duration = Duration::from_secs(10);
/// How long a write stays committed but not durable: longer than the relay's idle
/// check (1 s), so a relay that reads the outbox from memory publishes it in between.
const WINDOW_MS: u64 = 1500;

async fn with_window_on(mode: Mode, service: &str) -> Lab {
    support::start_with(mode, |config| {
        config.env.push((service.into(), WRITE_FLUSH_DELAY_ENV.into(), WINDOW_MS.to_string()));
    })
    .await
}

async fn set_price(lab: &Lab, id: &str, price_cents: i64, timeout: Duration) -> Result<u64, tonic::Status> {
    let mut products = lab.clients.products.clone();
    let message = UpdatePriceRequest { id: id.into(), price_cents };
    products.update_price(req(message, timeout)).await.map(|r| r.into_inner().version)
}

#[tokio::test]
async fn an_update_killed_before_its_flush_cannot_hide_the_next_acknowledged_one() {
    let mut lab = with_window_on(Mode::Async, PRODUCTS).await;
    let (users, products) = populate(&lab, 1, 1).await;
    let (user, product) = (&users[0], &products[0]);
    let mut orders = lab.clients.orders.clone();
    settle(&lab, 2).await;
    let order = PlaceOrderRequest { user_id: user.clone(), product_id: product.clone(), quantity: 1 };
    orders.place_order(req(order.clone(), T)).await.expect("first order");

    // An update that commits in memory and then waits for its flush; the owner is
    // SIGKILLed inside that window, after the relay's idle check has looked at the
    // outbox. The client never gets an answer: the update is in doubt.
    let in_doubt = {
        let lab_clients = lab.clients.clone();
        let product = product.clone();
        tokio::spawn(async move {
            let mut products = lab_clients.products;
            products.update_price(req(UpdatePriceRequest { id: product, price_cents: 777 }, T)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(WINDOW_MS * 4 / 5)).await;
    lab.topology.kill(PRODUCTS).unwrap();
    assert!(in_doubt.await.unwrap().is_err(), "the killed update was not acknowledged");
    lab.topology.restart(PRODUCTS).await.unwrap();
    lab.reconnect();

    // One more update, acknowledged: every replica must end at its price.
    let acked = set_price(&lab, product, 888, T).await.expect("the update after the restart is acknowledged");
    let mut owner = lab.clients.products.clone();
    let at_owner = owner.get_product(req(GetProductRequest { id: product.clone() }, T)).await.unwrap().into_inner();
    assert_eq!((at_owner.price_cents, at_owner.version), (888, acked));

    // The view: the order's current price. Orders' replica: the unit price of a new order.
    let mut query = lab.clients.query.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (mut view_price, mut replica_price) = (0, 0);
    while std::time::Instant::now() < deadline {
        let view = query.user_orders(req(UserOrdersRequest { user_id: user.clone() }, T)).await.unwrap().into_inner();
        view_price = view.items[0].current_price_cents;
        replica_price = match lab.clients.orders.clone().place_order(req(order.clone(), T)).await {
            Ok(placed) => placed.into_inner().unit_price_cents,
            Err(status) => panic!("an order for a known product failed: {status}"),
        };
        if view_price == 888 && replica_price == 888 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("acknowledged price 888 (version {acked}) never reached the replicas: view {view_price}, orders' replica {replica_price}");
}

async fn stats(lab: &Lab, service: &str) -> StatsResponse {
    let mut admin = AdminClient::new(common::channel(lab.topology.address(service).unwrap()));
    admin.stats(req(StatsRequest {}, T)).await.unwrap().into_inner()
}

async fn jetstream(lab: &Lab) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(lab.topology.nats_url().unwrap()).await.unwrap())
}

#[tokio::test]
async fn an_event_that_cannot_be_applied_is_a_dead_letter_counted_in_stats_across_restarts() {
    let mut lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 1, 1).await;
    settle(&lab, 2).await;
    let js = jetstream(&lab).await;
    js.publish(events::USER_CREATED, Bytes::from_static(b"\xff\xff not protobuf")).await.unwrap().await.unwrap();
    settle(&lab, 3).await;
    for service in [ORDERS, QUERY] {
        let stats = stats(&lab, service).await;
        assert_eq!(stats.dead_letters, 1, "{service}: {stats:?}");
        assert!(stats.dead_letter_reasons[0].contains("undecodable"), "{:?}", stats.dead_letter_reasons);
    }
    assert_eq!(stats(&lab, USERS).await.dead_letters, 0);
    // Kept on disk: still counted after a SIGKILL and a restart.
    lab.topology.kill(QUERY).unwrap();
    lab.topology.restart(QUERY).await.unwrap();
    assert_eq!(stats(&lab, QUERY).await.dead_letters, 1);
    // And it blocked nothing behind it.
    let mut orders = lab.clients.orders.clone();
    let order = PlaceOrderRequest { user_id: users[0].clone(), product_id: products[0].clone(), quantity: 2 };
    orders.place_order(req(order, T)).await.unwrap();
    let diff = support::converge(&lab, 4, &users, Duration::from_secs(30)).await;
    assert!(diff.is_clean(), "{diff:?}");
    assert_eq!(stats(&lab, QUERY).await.orders_applied, 1);
}

#[tokio::test]
async fn consumers_recreate_a_deleted_stream_and_consumer_and_catch_up() {
    let lab = support::start(Mode::Async).await;
    let (mut users, products) = populate(&lab, 2, 1).await;
    settle(&lab, 3).await;
    let js = jetstream(&lab).await;
    let mut c = lab.clients.clone();

    // A durable consumer deleted under a running service: it is recreated, replays the
    // stream from the start (skipped: already applied), and new events still arrive.
    js.get_stream(events::STREAM).await.unwrap().delete_consumer(events::QUERY_CONSUMER).await.unwrap();
    let order = PlaceOrderRequest { user_id: users[0].clone(), product_id: products[0].clone(), quantity: 1 };
    c.orders.place_order(req(order, T)).await.unwrap();
    let diff = support::converge(&lab, 4, &users, Duration::from_secs(30)).await;
    assert!(diff.is_clean(), "after the consumer was deleted: {diff:?}");

    // The whole stream deleted, as if the broker came back without its data: relays
    // and consumers recreate it, and what is written next reaches every replica.
    js.delete_stream(events::STREAM).await.unwrap();
    let user = c.users.create_user(req(CreateUserRequest { name: "Late".into(), email: "l@example.test".into() }, T));
    users.push(user.await.unwrap().into_inner().id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let order = PlaceOrderRequest { user_id: users[2].clone(), product_id: products[0].clone(), quantity: 3 };
    // Orders learns of the new user through the recreated stream: until then, "not yet".
    loop {
        match c.orders.place_order(req(order.clone(), T)).await {
            Ok(_) => break,
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                assert!(std::time::Instant::now() < deadline, "orders never heard of the new user: {status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status}"),
        }
    }
    let diff = support::converge(&lab, 2, &users, Duration::from_secs(30)).await;
    assert!(diff.is_clean(), "after the stream was deleted: {diff:?}");
    let mut query = lab.clients.query.clone();
    let view = query.user_orders(req(UserOrdersRequest { user_id: users[2].clone() }, T)).await.unwrap().into_inner();
    assert_eq!(view.items.len(), 1);
}

#[tokio::test]
async fn a_stream_found_changed_is_restored_and_one_kept_in_memory_is_refused() {
    let mut lab = support::start(Mode::Async).await;
    populate(&lab, 1, 0).await;
    settle(&lab, 1).await;
    let js = jetstream(&lab).await;
    let mut changed = common::broker::stream_config();
    changed.duplicate_window = Duration::from_secs(1);
    js.update_stream(&changed).await.unwrap();
    // A service that subscribes again (here: after a restart) puts it back.
    lab.topology.kill(QUERY).unwrap();
    lab.topology.restart(QUERY).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = js.get_stream(events::STREAM).await.unwrap().info().await.unwrap().config.clone();
        if info.duplicate_window == common::broker::DEFAULT_DUPLICATE_WINDOW {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "duplicate window left at {:?}", info.duplicate_window);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Storage cannot change in place: a memory stream is refused, not used.
    js.delete_stream(events::STREAM).await.unwrap();
    let mut memory = common::broker::stream_config();
    memory.storage = async_nats::jetstream::stream::StorageType::Memory;
    js.create_stream(memory).await.unwrap();
    let error = common::broker::ensure_stream(&js).await.expect_err("a memory stream is refused");
    assert!(error.to_string().contains("storage"), "{error}");
}

#[tokio::test]
async fn a_replay_past_the_duplicate_window_is_applied_once() {
    const WINDOW_MS: u64 = 1000;
    let mut lab = support::start_with(Mode::Async, |config| {
        for service in [USERS, PRODUCTS, ORDERS, QUERY] {
            config.env.push((service.into(), "CASCADE_DUPLICATE_WINDOW_MS".into(), WINDOW_MS.to_string()));
        }
        // No delay, but sled's background flush off: the relay's delete of a published
        // record stays in memory, so a SIGKILL brings the record back after a restart.
        config.env.push((ORDERS.into(), WRITE_FLUSH_DELAY_ENV.into(), "0".into()));
    })
    .await;
    let (users, products) = populate(&lab, 1, 1).await;
    settle(&lab, 2).await;
    let mut orders = lab.clients.orders.clone();
    let order = PlaceOrderRequest { user_id: users[0].clone(), product_id: products[0].clone(), quantity: 4 };
    let placed = orders.place_order(req(order, T)).await.unwrap().into_inner();
    settle(&lab, 3).await;

    // The owner dies before its delete is on disk; the broker is away for longer than
    // the duplicate window while the relay's record waits; then both come back and the
    // relay publishes the record again, past the window, so the stream keeps it.
    lab.topology.kill(ORDERS).unwrap();
    lab.topology.kill("nats").unwrap();
    tokio::time::sleep(Duration::from_millis(WINDOW_MS * 5 / 2)).await;
    lab.topology.restart("nats").await.unwrap();
    lab.topology.restart(ORDERS).await.unwrap();
    settle(&lab, 4).await;

    let js = jetstream(&lab).await;
    let mut stream = js.get_stream(events::STREAM).await.unwrap();
    let event_id = events::order_placed(&placed).event_id;
    let mut copies = 0;
    for seq in 1..=stream.info().await.unwrap().state.last_sequence {
        let message = stream.get_raw_message(seq).await.unwrap();
        if message.headers.get(events::MSG_ID_HEADER).is_some_and(|id| id.as_str() == event_id) {
            copies += 1;
        }
    }
    assert_eq!(copies, 2, "the replay past the window is in the stream");
    let diff = support::converge(&lab, 4, &users, Duration::from_secs(30)).await;
    assert!(diff.is_clean(), "{diff:?}");
    let query = stats(&lab, QUERY).await;
    assert_eq!(query.orders_applied, 1, "applied once: {query:?}");
    assert!(query.events_skipped >= 1, "the replay was seen and skipped: {query:?}");
    assert_eq!(query.dead_letters, 0);
}

#[tokio::test]
async fn a_read_never_answers_with_a_write_that_a_crash_can_erase() {
    // Sync mode: no relay, so nothing but the read itself could make the write durable.
    let mut lab = with_window_on(Mode::Sync, PRODUCTS).await;
    let (_, products) = populate(&lab, 0, 1).await;
    let product = products[0].clone();
    let in_doubt = {
        let (clients, product) = (lab.clients.clone(), product.clone());
        tokio::spawn(async move {
            let mut products = clients.products;
            products.update_price(req(UpdatePriceRequest { id: product, price_cents: 777 }, T)).await
        })
    };
    // The update has committed in memory and waits for its flush; a reader asks.
    tokio::time::sleep(Duration::from_millis(WINDOW_MS / 3)).await;
    let mut owner = lab.clients.products.clone();
    let seen = owner.get_product(req(GetProductRequest { id: product.clone() }, T)).await.unwrap().into_inner();
    assert_eq!((seen.price_cents, seen.version), (777, 2), "the read ran inside the window");
    lab.topology.kill(PRODUCTS).unwrap();
    assert!(in_doubt.await.unwrap().is_err(), "the update itself was never acknowledged");
    lab.topology.restart(PRODUCTS).await.unwrap();
    lab.reconnect();
    let mut owner = lab.clients.products.clone();
    let after = owner.get_product(req(GetProductRequest { id: product }, T)).await.unwrap().into_inner();
    assert_eq!(after, seen, "what a reader was told survived the crash");
}
