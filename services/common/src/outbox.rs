//! The transactional outbox and its relay: how a write reaches JetStream without a
//! dual-write gap, and without ever publishing a write that a crash could still erase.
//!
//! A write commits its entity and an outbox record in one sled transaction, then
//! [`Outbox::make_durable`] flushes before the write is acknowledged. sled commits in
//! memory first, so between commit and flush the record is visible to anyone reading
//! the tree, the relay included, while a SIGKILL would still erase it (and the
//! restarted service would hand its entity version, so its event id, to the next
//! write: the broker would then drop that acknowledged write as a duplicate). Hence the
//! relay's rule: **read a batch, flush, then publish** — everything read before a
//! successful flush is on disk, so only durable facts leave the service. Replies obey
//! the same rule: a write is counted as unflushed from before its transaction until
//! its flush, and a read answered while any write is unflushed flushes first
//! ([`Outbox::before_reply`]), so a reader is never told of a write that a SIGKILL
//! could still erase (and whose version the restarted owner would hand out again).
//! If a write's
//! own flush fails, the outbox is poisoned: the relay publishes nothing more and the
//! service must be restarted (what is on disk then is the truth).
//!
//! The relay publishes records in key order with `Nats-Msg-Id` = event id, awaits each
//! PubAck, and only then deletes the record. A crash between PubAck and delete
//! publishes the record again on restart: the stream drops it as a duplicate within
//! its window, and consumers skip events they have already applied, so the effect is
//! exactly once. A record that cannot be published (it does not decode, or has no
//! payload) is moved to the `outbox_dead` dead letters with the reason.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_nats::{jetstream, HeaderMap};
use bytes::Bytes;
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{dead_letters::DeadLetters, events, ids::IdGen, proto::Envelope, store::StoreError};

/// Records published per round; their PubAcks are awaited together (pipelined), in order.
const BATCH: usize = 256;
/// Even with no notification, the relay looks at the outbox this often.
const IDLE_CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A service's outbox tree. In sync mode it is disabled and [`Outbox::stage`] does
/// nothing, so the same write path serves both modes.
#[derive(Clone)]
pub struct Outbox {
    db: sled::Db,
    tree: sled::Tree,
    /// Records that could not be published, with the reason.
    dead: DeadLetters,
    enabled: bool,
    /// Wakes the relay after a commit, so no polling interval hides in the propagation delay.
    notify: Arc<Notify>,
    /// Set when a write's flush failed: nothing more is published until a restart.
    poisoned: Arc<AtomicBool>,
    /// Record keys: never handed out twice, so a new record cannot overwrite a pending one.
    keys: IdGen,
    /// Writes begun and not yet flushed (see [`PendingWrite`]).
    unflushed: Arc<AtomicU64>,
}

/// A write from before its transaction until its flush: while one exists, whatever a
/// read sees may not be on disk yet. Dropping it (after the flush, or when the write
/// fails or changes nothing) ends it.
#[must_use = "hold it until the write is durable"]
pub struct PendingWrite(Arc<AtomicU64>);

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Outbox {
    pub fn open(db: &sled::Db, enabled: bool) -> sled::Result<Self> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree("outbox")?,
            dead: DeadLetters::open(db, "outbox_dead")?,
            enabled,
            notify: Arc::new(Notify::new()),
            poisoned: Arc::new(AtomicBool::new(false)),
            keys: IdGen::open(db, "outbox")?,
            unflushed: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// A key for the next record, drawn before the transaction (whose closure may run
    /// more than once, and must not flush). Keys grow, so the relay publishes records
    /// roughly in commit order; consumers do not depend on the order.
    pub fn next_key(&self) -> sled::Result<u64> {
        if self.enabled {
            self.keys.next()
        } else {
            Ok(0)
        }
    }

    /// Adds `envelope` under `key` to the outbox inside the caller's transaction (no-op
    /// when disabled).
    pub fn stage(
        &self,
        tx: &TransactionalTree,
        key: u64,
        envelope: &Envelope,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        if self.enabled {
            tx.insert(&key.to_be_bytes(), envelope.encode_to_vec())?;
        }
        Ok(())
    }

    /// Marks the start of a write, before its transaction commits.
    pub fn begin_write(&self) -> PendingWrite {
        self.unflushed.fetch_add(1, Ordering::SeqCst);
        PendingWrite(self.unflushed.clone())
    }

    /// Called once a read has gathered its answer, before it replies: if any write is
    /// unflushed, the answer may show it, so flush first. Costs nothing while no write
    /// is in flight.
    pub async fn before_reply(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        if self.unflushed.load(Ordering::SeqCst) > 0 {
            crate::store::flush(&self.db).await?;
        }
        Ok(())
    }

    /// Makes a committed write durable before it is acknowledged (in both modes), then
    /// wakes the relay. A failed flush poisons the outbox: the relay publishes nothing
    /// more, since it can no longer tell what is on disk.
    pub async fn make_durable(&self, write: PendingWrite) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Poisoned);
        }
        crate::failpoint::before_write_flush().await;
        if let Err(error) = crate::store::flush(&self.db).await {
            tracing::error!(%error, "a write's flush failed: outbox poisoned, nothing more is published; restart the service");
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(error.into());
        }
        drop(write);
        if self.enabled {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Sets a record the relay cannot publish aside, then removes it from the outbox.
    fn set_aside(&self, key: &[u8], reason: &str, record: &[u8]) -> Result<(), RelayError> {
        self.dead.put(key, reason, record)?;
        self.tree.remove(key)?;
        Ok(())
    }

    /// Records not yet acknowledged by the broker.
    pub fn pending(&self) -> usize {
        self.tree.len()
    }
}

/// Why a relay round stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
    #[error("publish: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("a write's flush failed: nothing is published until the service restarts")]
    Poisoned,
}

impl From<crate::store::FlushError> for RelayError {
    fn from(e: crate::store::FlushError) -> Self {
        RelayError::Store(StoreError::Flush(e))
    }
}

impl From<sled::Error> for RelayError {
    fn from(e: sled::Error) -> Self {
        RelayError::Store(StoreError::Sled(e))
    }
}

/// Publishes the outbox until `shutdown`: after every commit, every second, and with
/// growing backoff while the broker is away.
pub async fn relay(outbox: Outbox, js: jetstream::Context, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match publish_pending(&outbox, &js).await {
            Ok(published) => {
                if published > 0 {
                    tracing::debug!(published, "outbox relayed");
                }
                backoff = Duration::from_millis(50);
                tokio::select! {
                    _ = outbox.notify.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(RelayError::Poisoned) => {
                tracing::error!(pending = outbox.pending(), "outbox poisoned; relay stopped");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, pending = outbox.pending(), retry_in_ms = backoff.as_millis() as u64, "outbox relay failed; will retry");
                // The stream may be missing (no consumer has created it yet, or the
                // broker lost its store): publishers make sure of it too.
                if let Err(error) = crate::broker::ensure_stream(&js).await {
                    tracing::debug!(%error, "cannot ensure the stream yet");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One pass: publish everything in the outbox, oldest first, deleting each record
/// once its PubAck is in. Returns how many were published.
pub async fn publish_pending(outbox: &Outbox, js: &jetstream::Context) -> Result<usize, RelayError> {
    let mut published = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        for entry in outbox.tree.iter().take(BATCH) {
            let (key, value) = entry?;
            let envelope = match Envelope::decode(value.as_ref()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Retrying cannot fix it, and it must not block the records behind it.
                    outbox.set_aside(&key, &format!("undecodable outbox record: {error}"), &value)?;
                    continue;
                }
            };
            match events::subject(&envelope) {
                Some(subject) => batch.push((key, value, envelope.event_id, subject)),
                None => outbox.set_aside(&key, "outbox record without payload", &value)?,
            }
        }
        if batch.is_empty() {
            return Ok(published);
        }
        // Only durable facts leave: everything read above was committed before this
        // flush began, so once it succeeds it is on disk (see the module header).
        crate::store::flush(&outbox.db).await?;
        if outbox.poisoned.load(Ordering::SeqCst) {
            return Err(RelayError::Poisoned);
        }
        // Send the whole batch, then collect the acks in order. Every ack future is
        // awaited: a dropped one would hide a failed publish.
        let mut acks = Vec::with_capacity(batch.len());
        for (key, value, event_id, subject) in batch {
            let mut headers = HeaderMap::new();
            headers.insert(events::MSG_ID_HEADER, event_id.as_str());
            let ack = js.publish_with_headers(subject, headers, Bytes::copy_from_slice(&value)).await?;
            acks.push((key, event_id, ack));
        }
        for (key, event_id, ack) in acks {
            let ack = ack.await?;
            if ack.duplicate {
                tracing::debug!(%event_id, "broker already had this event");
            }
            outbox.tree.remove(&key)?;
            crate::stats::events_published(1);
            published += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poisoned_outbox_refuses_writes_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let outbox = Outbox::open(&db, true).unwrap();
        outbox.make_durable(outbox.begin_write()).await.expect("a healthy outbox flushes");
        // What a failed flush leaves behind.
        outbox.poisoned.store(true, Ordering::SeqCst);
        let error = outbox.make_durable(outbox.begin_write()).await.expect_err("no write after a failed flush");
        assert!(matches!(error, StoreError::Poisoned), "{error}");
        let status = tonic::Status::from(crate::error::ApiError::from(error));
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("restarted"), "{}", status.message());
    }
}
