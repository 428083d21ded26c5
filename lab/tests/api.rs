//! The public API end to end, against the real service binaries: every operation's
//! success path and every bad input named by the API's contract.

mod support;

use std::time::Duration;

use common::{
    config::Mode,
    deadline::Deadline,
    names::{DEFAULT_ORDERS_PAGE_SIZE, MAX_ORDERS_PAGE_SIZE, MAX_PRODUCTS_PER_GET},
    proto::{
        admin_client::AdminClient, CreateProductRequest, CreateUserRequest, GetProductRequest, GetProductsRequest,
        GetUserRequest, ListOrdersByUserRequest, PlaceOrderRequest, StatsRequest, UpdatePriceRequest,
        UserOrdersRequest,
    },
};
use support::{assert_status, req, settle};
use tonic::Code;

const T: Duration = Duration::from_secs(5);
const UNKNOWN_USER: &str = "usr-00000000ffffffff";
const UNKNOWN_PRODUCT: &str = "prd-00000000ffffffff";

async fn api_contract(mode: Mode) {
    let lab = support::start(mode).await;
    let (mut users, mut products, mut orders, mut query) = (
        lab.clients.users.clone(),
        lab.clients.products.clone(),
        lab.clients.orders.clone(),
        lab.clients.query.clone(),
    );

    // Users.
    let ada = users
        .create_user(req(CreateUserRequest { name: " Ada ".into(), email: "ada@example.test".into() }, T))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ada.name, "Ada");
    assert!(ada.created_at_unix_ms > 0);
    let got = users.get_user(req(GetUserRequest { id: ada.id.clone() }, T)).await.unwrap().into_inner();
    assert_eq!(got, ada);
    for (name, email, field) in [
        ("", "a@b.c", "name"),
        ("  ", "a@b.c", "name"),
        ("Bob", "bob.example", "email"),
        ("Bob", "@b.c", "email"),
        ("Bob", "a@", "email"),
        ("Bob", "a b@c.d", "email"),
    ] {
        let message = CreateUserRequest { name: name.into(), email: email.into() };
        assert_status(users.create_user(req(message, T)).await, Code::InvalidArgument, field);
    }
    assert_status(users.get_user(req(GetUserRequest { id: "42".into() }, T)).await, Code::InvalidArgument, "id");
    assert_status(
        users.get_user(req(GetUserRequest { id: UNKNOWN_USER.into() }, T)).await,
        Code::NotFound,
        UNKNOWN_USER,
    );

    // Products.
    let lamp = products
        .create_product(req(CreateProductRequest { title: "Lamp".into(), price_cents: 1999 }, T))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((lamp.title.as_str(), lamp.price_cents, lamp.version), ("Lamp", 1999, 1));
    let desk = products
        .create_product(req(CreateProductRequest { title: "Desk".into(), price_cents: 15000 }, T))
        .await
        .unwrap()
        .into_inner();
    for (title, price, field) in [("", 100, "title"), ("Chair", 0, "price_cents"), ("Chair", -5, "price_cents")] {
        let message = CreateProductRequest { title: title.into(), price_cents: price };
        assert_status(products.create_product(req(message, T)).await, Code::InvalidArgument, field);
    }
    assert_status(
        products.update_price(req(UpdatePriceRequest { id: lamp.id.clone(), price_cents: 0 }, T)).await,
        Code::InvalidArgument,
        "price_cents",
    );
    assert_status(
        products.update_price(req(UpdatePriceRequest { id: "prd-x".into(), price_cents: 10 }, T)).await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        products.update_price(req(UpdatePriceRequest { id: UNKNOWN_PRODUCT.into(), price_cents: 10 }, T)).await,
        Code::NotFound,
        UNKNOWN_PRODUCT,
    );
    assert_status(
        products.get_product(req(GetProductRequest { id: ada.id.clone() }, T)).await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        products.get_product(req(GetProductRequest { id: UNKNOWN_PRODUCT.into() }, T)).await,
        Code::NotFound,
        UNKNOWN_PRODUCT,
    );
    let ids = vec![desk.id.clone(), UNKNOWN_PRODUCT.into(), lamp.id.clone()];
    let found = products.get_products(req(GetProductsRequest { ids }, T)).await.unwrap().into_inner().products;
    assert_eq!(found, vec![desk.clone(), lamp.clone()], "known products, in request order");
    assert_status(
        products.get_products(req(GetProductsRequest { ids: vec![lamp.id.clone(), "nope".into()] }, T)).await,
        Code::InvalidArgument,
        "ids[1]",
    );

    // Orders: the unit price is the price at order time. (In async mode orders knows
    // users and products through its replica: let it catch up first.)
    settle(&lab, 3).await;
    let place = |user_id: &str, product_id: &str, quantity| PlaceOrderRequest {
        user_id: user_id.into(),
        product_id: product_id.into(),
        quantity,
    };
    let first = orders.place_order(req(place(&ada.id, &lamp.id, 2), T)).await.unwrap().into_inner();
    assert_eq!((first.unit_price_cents, first.quantity), (1999, 2));
    let raised = products
        .update_price(req(UpdatePriceRequest { id: lamp.id.clone(), price_cents: 2499 }, T))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((raised.price_cents, raised.version), (2499, 2));
    settle(&lab, 5).await;
    let second = orders.place_order(req(place(&ada.id, &desk.id, 1), T)).await.unwrap().into_inner();
    let third = orders.place_order(req(place(&ada.id, &lamp.id, 1), T)).await.unwrap().into_inner();
    assert_eq!(third.unit_price_cents, 2499);
    for (q, name) in [(0, "0"), (1001, "1001")] {
        assert_status(orders.place_order(req(place(&ada.id, &lamp.id, q), T)).await, Code::InvalidArgument, name);
    }
    assert_status(orders.place_order(req(place("bob", &lamp.id, 1), T)).await, Code::InvalidArgument, "user_id");
    assert_status(orders.place_order(req(place(&ada.id, "", 1), T)).await, Code::InvalidArgument, "product_id");
    // The one difference between the modes: sync and bus-rpc ask the owner, which knows
    // the id does not exist; async can only say its replica does not have it (yet).
    let unknown = if mode == Mode::Async { Code::FailedPrecondition } else { Code::NotFound };
    assert_status(orders.place_order(req(place(UNKNOWN_USER, &lamp.id, 1), T)).await, unknown, UNKNOWN_USER);
    assert_status(orders.place_order(req(place(&ada.id, UNKNOWN_PRODUCT, 1), T)).await, unknown, UNKNOWN_PRODUCT);
    // No page fields (a client from before paging): the first page, here all of them.
    let listed = orders
        .list_orders_by_user(req(ListOrdersByUserRequest { user_id: ada.id.clone(), ..Default::default() }, T))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders, vec![first.clone(), second.clone(), third.clone()], "oldest first");
    assert_eq!(listed.next_page_token, "", "one page holds them all");
    // Pages of two: the token leads to the rest, and the last page says it is the last.
    let list = |page_size, page_token: &str| ListOrdersByUserRequest {
        user_id: ada.id.clone(),
        page_size,
        page_token: page_token.to_owned(),
    };
    let page = orders.list_orders_by_user(req(list(2, ""), T)).await.unwrap().into_inner();
    assert_eq!(page.orders, vec![first.clone(), second.clone()]);
    assert_ne!(page.next_page_token, "");
    let page = orders.list_orders_by_user(req(list(2, &page.next_page_token), T)).await.unwrap().into_inner();
    assert_eq!((page.orders, page.next_page_token.as_str()), (vec![third.clone()], ""));
    assert_status(
        orders.list_orders_by_user(req(list(MAX_ORDERS_PAGE_SIZE + 1, ""), T)).await,
        Code::InvalidArgument,
        "page_size",
    );
    for token in ["x", "ord-", &ada.id] {
        assert_status(orders.list_orders_by_user(req(list(2, token), T)).await, Code::InvalidArgument, "page_token");
    }
    assert_status(
        orders.list_orders_by_user(req(ListOrdersByUserRequest { user_id: "x".into(), ..Default::default() }, T)).await,
        Code::InvalidArgument,
        "user_id",
    );

    // Query: the user, then one item per order with both prices.
    settle(&lab, 7).await;
    let answer = query.user_orders(req(UserOrdersRequest { user_id: ada.id.clone() }, T)).await.unwrap().into_inner();
    assert_eq!(answer.user.as_ref(), Some(&ada));
    let rows: Vec<(&str, &str, i64, i64, u32)> = answer
        .items
        .iter()
        .map(|i| (i.order_id.as_str(), i.title.as_str(), i.unit_price_cents, i.current_price_cents, i.quantity))
        .collect();
    assert_eq!(
        rows,
        vec![
            (first.id.as_str(), "Lamp", 1999, 2499, 2),
            (second.id.as_str(), "Desk", 15000, 15000, 1),
            (third.id.as_str(), "Lamp", 2499, 2499, 1),
        ]
    );
    assert_eq!(answer.items[0].placed_at_unix_ms, first.placed_at_unix_ms);
    assert_eq!(answer.items[0].product_id, lamp.id);
    let bob = users
        .create_user(req(CreateUserRequest { name: "Bob".into(), email: "bob@example.test".into() }, T))
        .await
        .unwrap()
        .into_inner();
    settle(&lab, 8).await;
    let empty = query.user_orders(req(UserOrdersRequest { user_id: bob.id.clone() }, T)).await.unwrap().into_inner();
    assert!(empty.items.is_empty());
    assert_status(
        query.user_orders(req(UserOrdersRequest { user_id: "".into() }, T)).await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        query.user_orders(req(UserOrdersRequest { user_id: UNKNOWN_USER.into() }, T)).await,
        Code::NotFound,
        UNKNOWN_USER,
    );
}

#[tokio::test]
async fn api_contract_sync() {
    api_contract(Mode::Sync).await;
}

#[tokio::test]
async fn api_contract_async() {
    api_contract(Mode::Async).await;
}

/// The sync call graph over NATS request/reply: the same public API, the same codes.
#[tokio::test]
async fn api_contract_bus_rpc() {
    api_contract(Mode::BusRpc).await;
}

/// One process serving all four services from one database, calling itself in
/// process: the same public API, the same codes.
#[tokio::test]
async fn api_contract_monolith() {
    api_contract(Mode::Monolith).await;
}

/// Asks the server reflection service of version `$v` (`v1` or `v1alpha`: the two are
/// the same protocol under two package names, and clients speak one or the other) at
/// `$addr` to list the services it advertises.
macro_rules! reflection_list_services {
    ($v:ident, $addr:expr) => {{
        use tokio_stream::StreamExt;
        use tonic_reflection::pb::$v::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            server_reflection_response::MessageResponse, ServerReflectionRequest,
        };
        let mut client = ServerReflectionClient::new(common::channel($addr));
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        async {
            let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await?.into_inner();
            let response = responses.next().await.expect("one answer")?;
            let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
                panic!("unexpected reflection answer: {response:?}");
            };
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            Ok::<_, tonic::Status>(names)
        }
        .await
    }};
}

/// gRPC health and server reflection in both versions (v1 for newer clients such as
/// grpcurl; v1alpha for Postman, Python's grpcio-reflection and older grpcurl), so a
/// generic client can list and call services.
#[tokio::test]
async fn health_and_reflection_v1_and_v1alpha() {
    let lab = support::start(Mode::Sync).await;
    for (name, expected) in [
        ("users", "cascade.v1.Users"),
        ("products", "cascade.v1.Products"),
        ("orders", "cascade.v1.Orders"),
        ("query", "cascade.v1.Query"),
    ] {
        let addr = lab.topology.address(name).unwrap();
        lab::client::wait_serving(addr, T).await.unwrap();
        let mut want = vec![
            expected.to_owned(),
            "cascade.v1.Admin".to_owned(),
            "grpc.health.v1.Health".to_owned(),
            "grpc.reflection.v1.ServerReflection".to_owned(),
            "grpc.reflection.v1alpha.ServerReflection".to_owned(),
        ];
        want.sort();
        let v1alpha = reflection_list_services!(v1alpha, addr);
        assert_eq!(v1alpha.as_ref().map_err(|s| (s.code(), s.message())), Ok(&want), "{name} over v1alpha");
        let v1 = reflection_list_services!(v1, addr);
        assert_eq!(v1.as_ref().map_err(|s| (s.code(), s.message())), Ok(&want), "{name} over v1");
    }
}

/// The monolith's one listener advertises (and serves health for) all four services;
/// a fault on one of them is refused as not applying, naming the process to act on.
#[tokio::test]
async fn the_monolith_serves_all_four_services_on_one_address_and_refuses_faults_on_one() {
    let mut lab = support::start(Mode::Monolith).await;
    let file = lab.topology.file();
    let monolith = file.address("monolith").unwrap();
    for name in ["users", "products", "orders", "query"] {
        assert_eq!(file.address(name).unwrap(), monolith, "{name} is served by the monolith");
    }
    assert_eq!(lab.topology.services.len(), 1, "one process: {:?}", lab.topology.services);
    let mut want = vec![
        "cascade.v1.Admin".to_owned(),
        "cascade.v1.Orders".to_owned(),
        "cascade.v1.Products".to_owned(),
        "cascade.v1.Query".to_owned(),
        "cascade.v1.Users".to_owned(),
        "grpc.health.v1.Health".to_owned(),
        "grpc.reflection.v1.ServerReflection".to_owned(),
        "grpc.reflection.v1alpha.ServerReflection".to_owned(),
    ];
    want.sort();
    let v1 = reflection_list_services!(v1, monolith);
    assert_eq!(v1.as_ref().map_err(|s| (s.code(), s.message())), Ok(&want));
    let error = lab.topology.kill("users").expect_err("no users process in a monolith");
    assert!(
        matches!(&error, lab::topology::TopologyError::NoSuchComponent { mode: Mode::Monolith, component } if component == "users"),
        "{error:?}"
    );
    assert!(error.to_string().contains("monolith mode has no separate users process"), "{error}");
    // The process itself can be killed and restarted, and still knows what it acknowledged.
    let ada = lab
        .clients
        .users
        .create_user(req(CreateUserRequest { name: "Ada".into(), email: "ada@example.test".into() }, T))
        .await
        .unwrap()
        .into_inner();
    lab.topology.kill("monolith").unwrap();
    lab.topology.restart("monolith").await.unwrap();
    lab.reconnect();
    let got = lab.clients.users.get_user(req(GetUserRequest { id: ada.id.clone() }, T)).await.unwrap().into_inner();
    assert_eq!(got, ada);
}

/// One content row of a `UserOrders` item: what must be equal across modes (ids and
/// times differ between two topologies).
type Row = (String, i64, i64, u32);

/// In one fresh topology of `mode`: a user with an order for each of
/// `MAX_PRODUCTS_PER_GET + 5` products, i.e. more distinct products than one
/// `GetProducts` may ask for and more orders than one `ListOrdersByUser` page may hold.
/// Asserts `UserOrders` is complete and returns its rows, sorted.
async fn many_orders(mode: Mode) -> (String, Vec<Row>) {
    use futures::StreamExt;
    let n = MAX_PRODUCTS_PER_GET + 5;
    let lab = support::start(mode).await;
    let (users, products) = support::populate(&lab, 1, n).await;
    let user = users[0].clone();
    settle(&lab, 1 + n as u64).await;
    // Concurrent, to keep the test short; the order ids then follow completion order.
    let placed: Vec<(String, String, u32)> = futures::stream::iter(products.iter().enumerate())
        .map(|(i, product)| {
            let mut orders = lab.clients.orders.clone();
            let quantity = 1 + (i % 7) as u32;
            let message = PlaceOrderRequest { user_id: user.clone(), product_id: product.clone(), quantity };
            async move {
                let order = orders.place_order(req(message, T)).await.expect("order placed").into_inner();
                (order.id, order.product_id, order.quantity)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    settle(&lab, 1 + 2 * n as u64).await;

    // An old client (no page fields) gets the first page and a token, not everything.
    let first_page = lab
        .clients
        .orders
        .clone()
        .list_orders_by_user(req(ListOrdersByUserRequest { user_id: user.clone(), ..Default::default() }, T))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.orders.len(), DEFAULT_ORDERS_PAGE_SIZE as usize);
    assert_ne!(first_page.next_page_token, "");
    let all = query::sync::list_orders(&lab.clients.orders, &user, Deadline::after(T)).await.unwrap();
    assert_eq!(all.len(), n, "{mode:?}: following the pages gives every order");
    assert_eq!(all[..first_page.orders.len()], first_page.orders[..]);
    let stats_before = query_rpcs(&lab).await;

    let answer = lab
        .clients
        .query
        .clone()
        .user_orders(req(UserOrdersRequest { user_id: user.clone() }, Duration::from_secs(20)))
        .await
        .unwrap_or_else(|status| panic!("{mode:?}: UserOrders failed: {:?}: {}", status.code(), status.message()))
        .into_inner();
    let stats = query_rpcs(&lab).await;
    let sent = |hop: &str| stats.get(hop).copied().unwrap_or(0) - stats_before.get(hop).copied().unwrap_or(0);
    let sent = (sent("users.GetUser"), sent("orders.ListOrdersByUser"), sent("products.GetProducts"));
    match mode {
        // The view is the query service's own: no calls.
        Mode::Async => assert_eq!(sent, (0, 0, 0)),
        // The same chain, in process: nothing is sent, nothing counted.
        Mode::Monolith => {
            assert_eq!(sent, (0, 0, 0));
            assert!(stats.is_empty(), "the monolith makes no inter-service RPCs: {stats:?}");
        }
        Mode::Sync | Mode::BusRpc => {
            // Each page and each batch is a call of its own, and counted as one.
            let pages = n.div_ceil(MAX_ORDERS_PAGE_SIZE as usize) as u64;
            let batches = n.div_ceil(MAX_PRODUCTS_PER_GET) as u64;
            assert_eq!((pages, batches), (2, 2), "the test's size covers more than one of each");
            assert_eq!(sent, (1, pages, batches));
        }
    }
    let mut want: Vec<(String, String, u32)> = placed;
    want.sort();
    let got: Vec<(String, String, u32)> =
        answer.items.iter().map(|i| (i.order_id.clone(), i.product_id.clone(), i.quantity)).collect();
    assert_eq!(got.len(), n, "{mode:?}: one item per order");
    assert_eq!(got, want, "{mode:?}: every order, oldest first");
    let mut rows: Vec<Row> =
        answer.items.into_iter().map(|i| (i.title, i.unit_price_cents, i.current_price_cents, i.quantity)).collect();
    rows.sort();
    (answer.user.expect("the user").name, rows)
}

/// The calls the query service has made so far, by hop (`Admin.Stats`).
async fn query_rpcs(lab: &support::Lab) -> std::collections::HashMap<String, u64> {
    let mut admin = AdminClient::new(common::channel(lab.topology.address("query").unwrap()));
    admin.stats(req(StatsRequest {}, T)).await.unwrap().into_inner().rpcs_sent
}

#[tokio::test]
async fn a_user_with_more_orders_than_a_page_and_more_products_than_a_get_gets_them_all_in_every_mode() {
    let (sync, asynchronous, bus, monolith) = tokio::join!(
        many_orders(Mode::Sync),
        many_orders(Mode::Async),
        many_orders(Mode::BusRpc),
        many_orders(Mode::Monolith)
    );
    assert_eq!(sync, asynchronous, "sync and async give the same answer");
    assert_eq!(sync, bus, "sync and bus-rpc give the same answer");
    assert_eq!(sync, monolith, "sync and the monolith give the same answer");
}
