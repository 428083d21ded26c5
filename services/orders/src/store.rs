//! The orders' sled trees: `orders` (order id → protobuf `Order`) and `by_user`
//! (user id ++ order id → nothing), an index that lists a user's orders oldest first
//! because order ids grow monotonically and have a fixed length; in async mode also the
//! `outbox` of `OrderPlaced` events not yet acknowledged by the broker.

use std::path::Path;

use common::{
    events,
    names::ORDER_ID_PREFIX,
    outbox::Outbox,
    proto::Order,
    store::{self, OpenError, StoreError},
};
use prost::Message;
use sled::Transactional;

#[derive(Clone)]
pub struct OrderStore {
    db: sled::Db,
    orders: sled::Tree,
    by_user: sled::Tree,
    outbox: Outbox,
}

/// The fields of a new order, as validated by the API.
pub struct NewOrder {
    pub user_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

fn index_key(user_id: &str, order_id: &str) -> Vec<u8> {
    [user_id.as_bytes(), order_id.as_bytes()].concat()
}

impl OrderStore {
    /// `events`: stage an `OrderPlaced` with every order (async mode).
    pub fn open(dir: &Path, events: bool) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        let err = |source| OpenError::Other { dir: dir.display().to_string(), source };
        Ok(Self {
            orders: db.open_tree("orders").map_err(err)?,
            by_user: db.open_tree("by_user").map_err(err)?,
            outbox: Outbox::open(&db, events).map_err(err)?,
            db,
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stores the order, its index entry and its event in one transaction, durable
    /// before returning.
    pub async fn place(&self, new: NewOrder) -> Result<Order, StoreError> {
        let order = Order {
            id: common::ids::new_id(&self.db, ORDER_ID_PREFIX)?,
            user_id: new.user_id,
            product_id: new.product_id,
            quantity: new.quantity,
            unit_price_cents: new.unit_price_cents,
            placed_at_unix_ms: common::ids::now_unix_ms(),
        };
        let bytes = order.encode_to_vec();
        let key = index_key(&order.user_id, &order.id);
        let event = events::order_placed(&order);
        (&self.orders, &self.by_user, self.outbox.tree()).transaction(|(orders, by_user, outbox)| {
            orders.insert(order.id.as_bytes(), bytes.as_slice())?;
            by_user.insert(key.as_slice(), &[])?;
            self.outbox.stage(outbox, &event)
        })?;
        self.outbox.make_durable().await?;
        Ok(order)
    }

    /// A user's orders, oldest first.
    pub fn by_user(&self, user_id: &str) -> Result<Vec<Order>, StoreError> {
        let mut orders = Vec::new();
        for entry in self.by_user.scan_prefix(user_id.as_bytes()) {
            let (key, _) = entry?;
            let order_id = &key[user_id.len()..];
            if let Some(order) = store::get(&self.orders, order_id)? {
                orders.push(order);
            }
        }
        Ok(orders)
    }
}
