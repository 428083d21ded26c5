//! The users' sled trees: `users` (user id → protobuf `User`) and, in async mode, the
//! `outbox` of events not yet acknowledged by the broker.

use std::path::Path;

use common::{
    events,
    ids::{IdGen, Shard},
    names::USER_ID_PREFIX,
    outbox::Outbox,
    proto::User,
    store::{self, OpenError, StoreError},
};
use prost::Message;
use sled::Transactional;

#[derive(Clone)]
pub struct UserStore {
    db: sled::Db,
    users: sled::Tree,
    ids: IdGen,
    outbox: Outbox,
}

impl UserStore {
    /// `events`: stage a `UserCreated` with every new user (async mode).
    pub fn open(dir: &Path, events: bool, shard: Shard) -> Result<Self, OpenError> {
        let db = store::open(dir)?;
        Self::in_db(&db, events, shard).map_err(|source| OpenError::Other { dir: dir.display().to_string(), source })
    }

    /// The store's trees in an open database, which may hold other stores' trees too
    /// (the monolith's one database: tree names do not collide).
    pub fn in_db(db: &sled::Db, events: bool, shard: Shard) -> sled::Result<Self> {
        Ok(Self {
            users: db.open_tree("users")?,
            ids: IdGen::open_shard(db, "users", shard)?,
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

    /// Stores a new user (and its event, in the same transaction) and makes both
    /// durable before returning.
    pub async fn create(&self, name: String, email: String) -> Result<User, StoreError> {
        let user =
            User { id: self.ids.new_id(USER_ID_PREFIX)?, name, email, created_at_unix_ms: common::ids::now_unix_ms() };
        let bytes = user.encode_to_vec();
        let event = events::user_created(&user);
        let write = self.outbox.begin_write();
        let key = self.outbox.next_key()?;
        (&self.users, self.outbox.tree()).transaction(|(users, outbox)| {
            users.insert(user.id.as_bytes(), bytes.as_slice())?;
            self.outbox.stage(outbox, key, &event)
        })?;
        self.outbox.make_durable(write).await?;
        Ok(user)
    }

    pub fn get(&self, id: &str) -> Result<Option<User>, StoreError> {
        store::get(&self.users, id.as_bytes())
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}
