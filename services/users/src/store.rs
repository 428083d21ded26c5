//! The users' sled tree: user id → protobuf `User`.

use std::path::Path;

use common::{
    names::USER_ID_PREFIX,
    proto::User,
    store::{self, OpenError, StoreError},
};
use prost::Message;

#[derive(Clone)]
pub struct UserStore {
    db: sled::Db,
    users: sled::Tree,
}

impl UserStore {
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        let users =
            db.open_tree("users").map_err(|source| OpenError::Other { dir: dir.display().to_string(), source })?;
        Ok(Self { db, users })
    }

    /// Stores a new user and makes it durable before returning it.
    pub async fn create(&self, name: String, email: String) -> Result<User, StoreError> {
        let user = User {
            id: common::ids::new_id(&self.db, USER_ID_PREFIX)?,
            name,
            email,
            created_at_unix_ms: common::ids::now_unix_ms(),
        };
        self.users.insert(user.id.as_bytes(), user.encode_to_vec())?;
        store::flush(&self.db).await?;
        Ok(user)
    }

    pub fn get(&self, id: &str) -> Result<Option<User>, StoreError> {
        store::get(&self.users, id.as_bytes())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        Ok(store::flush(&self.db).await?)
    }
}
