//! Async mode: orders keeps its own copy of the users and products it needs, fed by
//! the `orders` durable consumer, and validates orders against that copy alone. No
//! call to another service happens while a client waits; the price of that is a
//! replica that may lag: an order for a user or product that has not arrived yet is
//! refused with FAILED_PRECONDITION.

use common::{
    consumer::{copy_user_or_product, record_first_apply, Projection},
    dead_letters::DeadLetters,
    deadline::Deadline,
    error::ApiError,
    proto::{Envelope, Product},
    store::{self, StoreError},
};
use sled::Transactional;

/// The replica trees, in orders' own database.
#[derive(Clone)]
pub struct Replica {
    db: sled::Db,
    /// user id → protobuf `User`.
    users: sled::Tree,
    /// product id → protobuf `Product`, newest version seen.
    products: sled::Tree,
    /// event id → nothing: events already applied.
    applied: sled::Tree,
    /// Events given up on, with the reason.
    dead: DeadLetters,
}

impl Replica {
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(Self {
            users: db.open_tree("replica_users")?,
            products: db.open_tree("replica_products")?,
            applied: db.open_tree("replica_applied")?,
            dead: DeadLetters::open(db, "replica_dead_letters")?,
            db: db.clone(),
        })
    }
}

fn not_replicated(what: &str, id: &str) -> ApiError {
    ApiError::FailedPrecondition(format!(
        "{what} {id} is not in orders' replica: the replica has not caught up yet, or no such {what} exists"
    ))
}

impl Projection for Replica {
    fn apply(&self, envelope: &Envelope) -> Result<bool, StoreError> {
        // Orders' consumer only receives user and product events: there is nothing else
        // to copy.
        Ok((&self.users, &self.products, &self.applied).transaction(|(users, products, applied)| {
            if record_first_apply(applied, envelope)? {
                copy_user_or_product(users, products, envelope)?;
                return Ok(true);
            }
            Ok(false)
        })?)
    }

    fn db(&self) -> &sled::Db {
        &self.db
    }

    fn dead_letters(&self) -> &DeadLetters {
        &self.dead
    }
}

impl crate::Directory for Replica {
    async fn check_user(&self, user_id: &str, _deadline: Deadline) -> Result<(), ApiError> {
        match self.users.contains_key(user_id.as_bytes())? {
            true => Ok(()),
            false => Err(not_replicated("user", user_id)),
        }
    }

    async fn product(&self, product_id: &str, _deadline: Deadline) -> Result<Product, ApiError> {
        store::get(&self.products, product_id.as_bytes())?.ok_or_else(|| not_replicated("product", product_id))
    }
}
