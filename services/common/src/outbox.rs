//! The transactional outbox and its relay: how a write reaches JetStream without a
//! dual-write gap.
//!
//! A write commits its entity and an outbox record in one sled transaction and flushes
//! before replying, so an acknowledged write always has its event on disk, even if the
//! process is SIGKILLed the next instant. The relay then publishes outbox records in
//! key order with `Nats-Msg-Id` = event id, awaits each PubAck, and only then deletes
//! the record. A crash between PubAck and delete publishes the record again on restart:
//! the stream drops it as a duplicate within its window, and consumers skip events
//! they have already applied, so the effect is exactly once.

use std::{sync::Arc, time::Duration};

use async_nats::{jetstream, HeaderMap};
use bytes::Bytes;
use prost::Message;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{events, proto::Envelope, store::StoreError};

/// Records published per round; their PubAcks are awaited together (pipelined), in order.
const BATCH: usize = 256;
/// Even with no notification, the relay looks at the outbox this often.
const IDLE_CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A service's outbox tree. In sync mode it is disabled and [`Outbox::stage`] does
/// nothing, so the same write path serves both modes.
#[derive(Clone)]
pub struct Outbox {
    tree: sled::Tree,
    /// Records that could not be decoded, kept for inspection.
    dead: sled::Tree,
    enabled: bool,
    /// Wakes the relay after a commit, so no polling interval hides in the propagation delay.
    notify: Arc<Notify>,
}

impl Outbox {
    pub fn open(db: &sled::Db, enabled: bool) -> sled::Result<Self> {
        Ok(Self {
            tree: db.open_tree("outbox")?,
            dead: db.open_tree("outbox_dead")?,
            enabled,
            notify: Arc::new(Notify::new()),
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Adds `envelope` to the outbox inside the caller's transaction (no-op when
    /// disabled). The key is a monotonic id, so the relay publishes in commit order.
    pub fn stage(
        &self,
        tx: &TransactionalTree,
        envelope: &Envelope,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        if self.enabled {
            let key = tx.generate_id()?.to_be_bytes();
            tx.insert(&key, envelope.encode_to_vec())?;
        }
        Ok(())
    }

    /// Tells the relay that a transaction that staged events has committed.
    pub fn committed(&self) {
        if self.enabled {
            self.notify.notify_one();
        }
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
            match Envelope::decode(value.as_ref()) {
                Ok(envelope) => batch.push((key, value, envelope)),
                Err(error) => {
                    // Retrying cannot fix it, and it must not block the records behind
                    // it: set it aside where a person can look at it.
                    tracing::error!(%error, "undecodable outbox record moved to outbox_dead");
                    outbox.dead.insert(&key, value)?;
                    outbox.tree.remove(&key)?;
                }
            }
        }
        if batch.is_empty() {
            return Ok(published);
        }
        // Send the whole batch, then collect the acks in order. Every ack future is
        // awaited: a dropped one would hide a failed publish.
        let mut acks = Vec::with_capacity(batch.len());
        for (key, value, envelope) in batch {
            let Some(subject) = events::subject(&envelope) else {
                tracing::error!(event_id = %envelope.event_id, "outbox record without payload; dropped");
                outbox.tree.remove(&key)?;
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(events::MSG_ID_HEADER, envelope.event_id.as_str());
            let ack = js.publish_with_headers(subject, headers, Bytes::copy_from_slice(&value)).await?;
            acks.push((key, envelope.event_id, ack));
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
