//! The products' sled trees: `products` (product id → protobuf `Product`, with its
//! version) and, in async mode, the `outbox` of events not yet acknowledged by the
//! broker.

use std::path::Path;

use common::{
    events,
    ids::{IdGen, Shard},
    names::PRODUCT_ID_PREFIX,
    outbox::Outbox,
    proto::Product,
    store::{self, OpenError, StoreError},
};
use prost::Message;
use sled::{transaction::ConflictableTransactionError, Transactional};

#[derive(Clone)]
pub struct ProductStore {
    db: sled::Db,
    products: sled::Tree,
    ids: IdGen,
    outbox: Outbox,
}

impl ProductStore {
    /// `events`: stage an event with every change (async mode).
    pub fn open(dir: &Path, events: bool, shard: Shard) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        Self::in_db(&db, events, shard).map_err(|source| OpenError::Other { dir: dir.display().to_string(), source })
    }

    /// The store's trees in an open database, which may hold other stores' trees too
    /// (the monolith's one database: tree names do not collide).
    pub fn in_db(db: &sled::Db, events: bool, shard: Shard) -> sled::Result<Self> {
        Ok(Self {
            products: db.open_tree("products")?,
            ids: IdGen::open_shard(db, "products", shard)?,
            outbox: Outbox::open(db, events)?,
            db: db.clone(),
        })
    }

    /// The shard whose entities this store holds (and whose ids it hands out).
    pub fn shard(&self) -> Shard {
        self.ids.shard()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stores a new product (version 1) and its event in one transaction, durable
    /// before returning.
    pub async fn create(&self, title: String, price_cents: i64) -> Result<Product, StoreError> {
        let product = Product { id: self.ids.new_id(PRODUCT_ID_PREFIX)?, title, price_cents, version: 1 };
        let bytes = product.encode_to_vec();
        let event = events::product_created(&product);
        let write = self.outbox.begin_write();
        let key = self.outbox.next_key()?;
        (&self.products, self.outbox.tree()).transaction(|(products, outbox)| {
            products.insert(product.id.as_bytes(), bytes.as_slice())?;
            self.outbox.stage(outbox, key, &event)
        })?;
        self.outbox.make_durable(write).await?;
        Ok(product)
    }

    /// Sets a new price and bumps the version, atomically with respect to concurrent
    /// updates (a sled transaction that also stages the event), durable before
    /// returning. `None`: no such product.
    pub async fn update_price(&self, id: &str, price_cents: i64) -> Result<Option<Product>, StoreError> {
        let write = self.outbox.begin_write();
        let key = self.outbox.next_key()?;
        let updated = (&self.products, self.outbox.tree()).transaction(|(products, outbox)| {
            let Some(bytes) = products.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut product = Product::decode(bytes.as_ref())
                .map_err(|e| ConflictableTransactionError::Abort(StoreError::Decode(e)))?;
            let previous = product.price_cents;
            product.price_cents = price_cents;
            product.version += 1;
            products.insert(id.as_bytes(), product.encode_to_vec())?;
            self.outbox.stage(outbox, key, &events::product_price_changed(&product, previous))?;
            Ok(Some(product))
        })?;
        if updated.is_some() {
            self.outbox.make_durable(write).await?;
        }
        Ok(updated)
    }

    pub fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        store::get(&self.products, id.as_bytes())
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}
