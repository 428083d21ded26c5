//! Async mode: the query service keeps its own denormalized copy of users, products
//! and orders, fed by the `query` durable consumer, and answers `UserOrders` from it
//! alone: it has no runtime dependency on any other service. The price is duplicated
//! data and a view that may lag the owners.

use std::{collections::HashMap, path::Path};

use common::{
    consumer::{copy_user_or_product, first_time, Projection},
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
            if !first_time(applied, envelope)? {
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
