//! The public API end to end, against the real service binaries: every operation's
//! success path and every bad input named by the API's contract.

mod support;

use std::time::Duration;

use common::{
    config::Mode,
    proto::{
        CreateProductRequest, CreateUserRequest, GetProductRequest, GetProductsRequest, GetUserRequest,
        ListOrdersByUserRequest, PlaceOrderRequest, UpdatePriceRequest, UserOrdersRequest,
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
    // The one difference between the modes: sync asks the owner, which knows the id
    // does not exist; async can only say its replica does not have it (yet).
    let unknown = if mode == Mode::Sync { Code::NotFound } else { Code::FailedPrecondition };
    assert_status(orders.place_order(req(place(UNKNOWN_USER, &lamp.id, 1), T)).await, unknown, UNKNOWN_USER);
    assert_status(orders.place_order(req(place(&ada.id, UNKNOWN_PRODUCT, 1), T)).await, unknown, UNKNOWN_PRODUCT);
    let listed = orders
        .list_orders_by_user(req(ListOrdersByUserRequest { user_id: ada.id.clone() }, T))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(listed, vec![first.clone(), second.clone(), third.clone()], "oldest first");
    assert_status(
        orders.list_orders_by_user(req(ListOrdersByUserRequest { user_id: "x".into() }, T)).await,
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
