//! Async mode: the query service keeps its own denormalized copy of users, products
//! and orders, fed by the `query` durable consumer, and answers `UserOrders` from it
//! alone: it has no runtime dependency on any other service. The price is duplicated
//! data and a view that may lag the owners.

use std::{collections::HashMap, path::Path};

use common::{
    consumer::{copy_user_or_product, record_first_apply, Projection},
    dead_letters::DeadLetters,
    deadline::Deadline,
    error::ApiError,
    proto::{envelope::Payload, Envelope, Order, OrderPlaced, Product, User, UserOrdersResponse},
    stats::{decode_count, ORDERS_APPLIED_KEY},
    store::{self, OpenError, StoreError},
};
use prost::Message;
use sled::Transactional;

use crate::{assemble, Source};

/// The query service's own database.
#[derive(Clone)]
pub struct View {
    db: sled::Db,
    /// user id → protobuf `User`.
    users: sled::Tree,
    /// product id → protobuf `Product`, newest version seen.
    products: sled::Tree,
    /// order id → protobuf `Order`.
    orders: sled::Tree,
    /// user id ++ order id → nothing: a user's orders, oldest first.
    by_user: sled::Tree,
    /// event id → nothing: events already applied.
    applied: sled::Tree,
    /// Persisted counters bumped with the effects they count: how many OrderPlaced
    /// events were applied for the first time ([`common::stats::ORDERS_APPLIED_KEY`]).
    /// A double apply would make it exceed the distinct orders the view holds, which a
    /// view keyed by order id could not show otherwise.
    counts: sled::Tree,
    /// Events given up on, with the reason.
    dead: DeadLetters,
}

impl View {
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        let err = |source| OpenError::Other { dir: dir.display().to_string(), source };
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Self {
            users: tree("users")?,
            products: tree("products")?,
            orders: tree("orders")?,
            by_user: tree("by_user")?,
            applied: tree("applied")?,
            counts: tree("counts")?,
            dead: DeadLetters::open(&db, "dead_letters").map_err(err)?,
            db: db.clone(),
        })
        .inspect(|view| common::stats::watch_projection_counts(&view.counts))
    }
}

impl Projection for View {
    /// An order may arrive before its user or product (they come from different
    /// owners): it is stored anyway and joined at read time, so it appears as soon as
    /// the product does.
    fn apply(&self, envelope: &Envelope) -> Result<bool, StoreError> {
        let trees = (&self.users, &self.products, &self.orders, &self.by_user, &self.applied, &self.counts);
        Ok(trees.transaction(|(users, products, orders, by_user, applied, counts)| {
            if !record_first_apply(applied, envelope)? {
                return Ok(false);
            }
            match &envelope.payload {
                Some(Payload::OrderPlaced(OrderPlaced { order: Some(order) })) => {
                    orders.insert(order.id.as_bytes(), order.encode_to_vec())?;
                    by_user.insert([order.user_id.as_bytes(), order.id.as_bytes()].concat(), &[])?;
                    let applied_before = decode_count(counts.get(ORDERS_APPLIED_KEY)?);
                    counts.insert(ORDERS_APPLIED_KEY, &(applied_before + 1).to_be_bytes())?;
                }
                _ => copy_user_or_product(users, products, envelope)?,
            }
            Ok(true)
        })?)
    }

    fn db(&self) -> &sled::Db {
        &self.db
    }

    fn dead_letters(&self) -> &DeadLetters {
        &self.dead
    }
}

impl Source for View {
    async fn user_orders(&self, user_id: &str, _deadline: Deadline) -> Result<UserOrdersResponse, ApiError> {
        let user: User = store::get(&self.users, user_id.as_bytes())?.ok_or_else(|| {
            ApiError::NotFound(format!("user {user_id} not found in the query view (unknown, or not replicated yet)"))
        })?;
        let mut orders: Vec<Order> = Vec::new();
        let mut products: HashMap<String, Product> = HashMap::new();
        for entry in self.by_user.scan_prefix(user_id.as_bytes()) {
            let (key, _) = entry?;
            let Some(order) = store::get::<Order>(&self.orders, &key[user_id.len()..])? else { continue };
            if !products.contains_key(&order.product_id) {
                match store::get::<Product>(&self.products, order.product_id.as_bytes())? {
                    Some(product) => {
                        products.insert(product.id.clone(), product);
                    }
                    // Its product has not arrived yet: the order shows once it does.
                    None => continue,
                }
            }
            orders.push(order);
        }
        assemble(user, orders, &products)
    }
}

#[cfg(test)]
mod tests {
    //! The view as a projection: events applied directly (no broker), read back through
    //! [`Source::user_orders`].

    use std::time::Duration;

    use common::events::{order_placed, product_created, product_price_changed, user_created};

    use super::*;

    const ANN: &str = "usr-0000000000000001";
    const BOB: &str = "usr-0000000000000002";
    const TEA: &str = "prd-0000000000000001";

    fn view() -> (View, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        (View::open(dir.path()).expect("view opens"), dir)
    }

    fn user(id: &str) -> User {
        User { id: id.into(), name: "Ann".into(), email: "ann@b.test".into(), created_at_unix_ms: 1 }
    }

    fn product(price_cents: i64, version: u64) -> Product {
        Product { id: TEA.into(), title: "Tea".into(), price_cents, version }
    }

    fn order(n: u8, user_id: &str) -> Order {
        Order {
            id: format!("ord-{n:016x}"),
            user_id: user_id.into(),
            product_id: TEA.into(),
            quantity: u32::from(n),
            unit_price_cents: 100,
            placed_at_unix_ms: u64::from(n),
        }
    }

    fn applied_orders(view: &View) -> u64 {
        decode_count(view.counts.get(ORDERS_APPLIED_KEY).expect("read"))
    }

    async fn rows(view: &View, user_id: &str) -> Vec<(String, i64)> {
        let answer = view.user_orders(user_id, Deadline::after(Duration::from_secs(1))).await.expect("answered");
        answer.items.into_iter().map(|i| (i.order_id, i.current_price_cents)).collect()
    }

    #[tokio::test]
    async fn a_duplicate_order_placed_is_applied_and_counted_once() {
        let (view, _dir) = view();
        view.apply(&user_created(&user(ANN))).expect("applied");
        view.apply(&product_created(&product(100, 1))).expect("applied");
        let placed = order_placed(&order(1, ANN));
        assert!(view.apply(&placed).expect("applied"));
        let before = view.db.checksum().expect("checksum");
        assert!(!view.apply(&placed).expect("no error"), "a duplicate reports itself as not applied");
        assert_eq!(view.db.checksum().expect("checksum"), before, "a duplicate changes nothing at all");
        assert_eq!(applied_orders(&view), 1);
        assert_eq!(rows(&view, ANN).await, [(order(1, ANN).id, 100)]);
    }

    #[tokio::test]
    async fn an_older_product_version_arriving_after_a_newer_one_does_not_overwrite_it() {
        let (view, _dir) = view();
        view.apply(&user_created(&user(ANN))).expect("applied");
        view.apply(&product_price_changed(&product(300, 3), 200)).expect("applied");
        view.apply(&product_created(&product(100, 1))).expect("applied");
        view.apply(&product_price_changed(&product(200, 2), 100)).expect("applied");
        view.apply(&order_placed(&order(1, ANN))).expect("applied");
        assert_eq!(rows(&view, ANN).await, [(order(1, ANN).id, 300)]);
        view.apply(&product_price_changed(&product(400, 4), 300)).expect("applied");
        assert_eq!(rows(&view, ANN).await, [(order(1, ANN).id, 400)], "a newer version does replace it");
    }

    #[tokio::test]
    async fn an_order_before_its_product_is_held_back_until_the_product_arrives() {
        let (view, _dir) = view();
        view.apply(&user_created(&user(ANN))).expect("applied");
        view.apply(&order_placed(&order(1, ANN))).expect("applied");
        assert_eq!(rows(&view, ANN).await, [], "no row without its product, and no error");
        view.apply(&product_created(&product(100, 1))).expect("applied");
        assert_eq!(rows(&view, ANN).await, [(order(1, ANN).id, 100)]);
    }

    #[tokio::test]
    async fn a_user_sees_only_their_orders_oldest_first_and_an_unknown_user_is_not_found() {
        let (view, _dir) = view();
        view.apply(&product_created(&product(100, 1))).expect("applied");
        for (n, who) in [(3, ANN), (1, ANN), (2, BOB)] {
            view.apply(&order_placed(&order(n, who))).expect("applied");
        }
        match view.user_orders(ANN, Deadline::after(Duration::from_secs(1))).await {
            Err(ApiError::NotFound(message)) => assert!(message.contains(ANN), "{message}"),
            other => panic!("an order does not make its user known: expected NotFound, got {other:?}"),
        }
        view.apply(&user_created(&user(ANN))).expect("applied");
        assert_eq!(rows(&view, ANN).await, [(order(1, ANN).id, 100), (order(3, ANN).id, 100)]);
        assert_eq!(applied_orders(&view), 3);
    }
}
