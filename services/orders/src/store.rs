//! The orders' sled trees: `orders` (order id → protobuf `Order`) and `by_user`
//! (user id ++ order id → nothing), an index that lists a user's orders oldest first
//! because order ids grow monotonically and have a fixed length; in async mode also the
//! `outbox` of `OrderPlaced` events not yet acknowledged by the broker.

use std::{ops::Bound, path::Path};

use common::{
    events,
    ids::{IdGen, Shard},
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
    ids: IdGen,
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
    pub fn open(dir: &Path, events: bool, shard: Shard) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        Self::in_db(&db, events, shard).map_err(|source| OpenError::Other { dir: dir.display().to_string(), source })
    }

    /// The store's trees in an open database, which may hold other stores' trees too
    /// (the monolith's one database: tree names do not collide).
    pub fn in_db(db: &sled::Db, events: bool, shard: Shard) -> sled::Result<Self> {
        Ok(Self {
            orders: db.open_tree("orders")?,
            by_user: db.open_tree("by_user")?,
            ids: IdGen::open_shard(db, "orders", shard)?,
            outbox: Outbox::open(db, events)?,
            db: db.clone(),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The shard whose entities this store holds (and whose ids it hands out).
    pub fn shard(&self) -> Shard {
        self.ids.shard()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stores the order, its index entry and its event in one transaction, durable
    /// before returning.
    pub async fn place(&self, new: NewOrder) -> Result<Order, StoreError> {
        let order = Order {
            id: self.ids.new_id(ORDER_ID_PREFIX)?,
            user_id: new.user_id,
            product_id: new.product_id,
            quantity: new.quantity,
            unit_price_cents: new.unit_price_cents,
            placed_at_unix_ms: common::ids::now_unix_ms(),
        };
        let bytes = order.encode_to_vec();
        let key = index_key(&order.user_id, &order.id);
        let event = events::order_placed(&order);
        let write = self.outbox.begin_write();
        let outbox_key = self.outbox.next_key()?;
        (&self.orders, &self.by_user, self.outbox.tree()).transaction(|(orders, by_user, outbox)| {
            orders.insert(order.id.as_bytes(), bytes.as_slice())?;
            by_user.insert(key.as_slice(), &[])?;
            self.outbox.stage(outbox, outbox_key, &event)
        })?;
        self.outbox.make_durable(write).await?;
        Ok(order)
    }

    /// One page of a user's orders, oldest first: at most `limit` (at least 1) of them,
    /// after the order `after` if given (the last one of the previous page). Reads only
    /// this page from the index (and one key more, to tell whether another page
    /// follows), whatever the user's history: the index is sorted by user id ++ order id,
    /// and ids have a fixed length, so the scan starts right after `after` and stops at
    /// the end of the user's prefix.
    pub fn by_user(&self, user_id: &str, after: Option<&str>, limit: usize) -> Result<OrderPage, StoreError> {
        let start = match after {
            Some(order_id) => Bound::Excluded(index_key(user_id, order_id)),
            None => Bound::Included(user_id.as_bytes().to_vec()),
        };
        let limit = limit.max(1);
        let mut orders = Vec::with_capacity(limit.min(1024));
        let (mut taken, mut last) = (0, None);
        for entry in self.by_user.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (key, _) = entry?;
            let Some(order_id) = key.strip_prefix(user_id.as_bytes()) else { break };
            if taken == limit {
                // One more entry than the page holds: another page follows.
                return Ok(OrderPage { orders, next_after: last });
            }
            taken += 1;
            if let Some(order) = store::get(&self.orders, order_id)? {
                orders.push(order);
            }
            last = Some(String::from_utf8_lossy(order_id).into_owned());
        }
        Ok(OrderPage { orders, next_after: None })
    }
}

/// A page of [`OrderStore::by_user`].
#[derive(Debug, PartialEq)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// The order to read the next page after; `None` when this page is the last.
    pub next_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADA: &str = "usr-0000000000000001";
    const BOB: &str = "usr-0000000000000002";

    fn new_order(user_id: &str) -> NewOrder {
        NewOrder {
            user_id: user_id.into(),
            product_id: "prd-0000000000000001".into(),
            quantity: 1,
            unit_price_cents: 5,
        }
    }

    /// Follows `by_user` pages of `limit` to the end; returns the pages' order ids.
    fn pages(store: &OrderStore, user_id: &str, limit: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = store.by_user(user_id, after.as_deref(), limit).unwrap();
            assert!(page.orders.len() <= limit);
            pages.push(page.orders.into_iter().map(|o| o.id).collect());
            match page.next_after {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
    }

    #[tokio::test]
    async fn a_users_orders_come_in_pages_oldest_first_and_only_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = OrderStore::open(dir.path(), false, Default::default()).unwrap();
        let mut ada = Vec::new();
        for i in 0..5 {
            ada.push(store.place(new_order(ADA)).await.unwrap().id);
            if i % 2 == 0 {
                store.place(new_order(BOB)).await.unwrap();
            }
        }
        let chunks = |n: usize| ada.chunks(n).map(<[String]>::to_vec).collect::<Vec<_>>();
        assert_eq!(pages(&store, ADA, 2), chunks(2), "2 + 2 + 1, the last page says it is the last");
        assert_eq!(pages(&store, ADA, 5), chunks(5), "a full last page: no empty page after it");
        assert_eq!(pages(&store, ADA, 1000), chunks(5));
        assert_eq!(pages(&store, BOB, 1).len(), 3);
        assert_eq!(pages(&store, "usr-00000000000000ff", 10), vec![Vec::<String>::new()], "no orders: one empty page");
        // A page after the last order is empty, and after any order it starts right after.
        assert_eq!(store.by_user(ADA, Some(&ada[4]), 10).unwrap(), OrderPage { orders: vec![], next_after: None });
        let rest = store.by_user(ADA, Some(&ada[1]), 10).unwrap();
        assert_eq!(rest.orders.iter().map(|o| &o.id).collect::<Vec<_>>(), ada[2..].iter().collect::<Vec<_>>());
    }
}
