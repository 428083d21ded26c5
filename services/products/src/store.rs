//! The products' sled tree: product id → protobuf `Product` (with its version).

use std::path::Path;

use common::{
    names::PRODUCT_ID_PREFIX,
    proto::Product,
    store::{self, OpenError, StoreError},
};
use prost::Message;
use sled::transaction::ConflictableTransactionError;

#[derive(Clone)]
pub struct ProductStore {
    db: sled::Db,
    products: sled::Tree,
}

impl ProductStore {
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        let products =
            db.open_tree("products").map_err(|source| OpenError::Other { dir: dir.display().to_string(), source })?;
        Ok(Self { db, products })
    }

    /// Stores a new product (version 1) and makes it durable before returning it.
    pub async fn create(&self, title: String, price_cents: i64) -> Result<Product, StoreError> {
        let product = Product { id: common::ids::new_id(&self.db, PRODUCT_ID_PREFIX)?, title, price_cents, version: 1 };
        self.products.insert(product.id.as_bytes(), product.encode_to_vec())?;
        store::flush(&self.db).await?;
        Ok(product)
    }

    /// Sets a new price and bumps the version, atomically with respect to concurrent
    /// updates (a sled transaction), durable before returning. `None`: no such product.
    pub async fn update_price(&self, id: &str, price_cents: i64) -> Result<Option<Product>, StoreError> {
        let updated = self.products.transaction(|tx| {
            let Some(bytes) = tx.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut product = Product::decode(bytes.as_ref())
                .map_err(|e| ConflictableTransactionError::Abort(StoreError::Decode(e)))?;
            product.price_cents = price_cents;
            product.version += 1;
            tx.insert(id.as_bytes(), product.encode_to_vec())?;
            Ok(Some(product))
        })?;
        if updated.is_some() {
            store::flush(&self.db).await?;
        }
        Ok(updated)
    }

    pub fn get(&self, id: &str) -> Result<Option<Product>, StoreError> {
        store::get(&self.products, id.as_bytes())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        Ok(store::flush(&self.db).await?)
    }
}
