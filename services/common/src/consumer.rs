//! The consumer side of async mode: a durable JetStream pull consumer whose events are
//! applied to a local sled projection, exactly once in effect.
//!
//! Order of operations, and why: (1) apply the event and record its id as applied in
//! one sled transaction (so a crash can never leave one without the other); (2) flush
//! (so the effect is on disk); (3) only then ack (so the broker redelivers anything
//! not yet durable). A redelivered or duplicate event finds its id already applied
//! and changes nothing. Events that are available together are applied as a batch
//! with one flush, which costs nothing at low load and saves flushes at high load.
//!
//! Nothing is dropped silently: an event that does not decode, or fails to apply on
//! [`MAX_ATTEMPTS`] deliveries, goes to the projection's dead letters with the reason
//! (flushed) before the broker is told to stop redelivering it; the consumer's own
//! `max_deliver` is unlimited, so the broker never gives up on an event by itself.
//! And the consumer heals: if its durable consumer or the whole stream disappears (a
//! broker back without its data, someone deleting it), the next subscription recreates
//! both and the applied markers make the replay from the start harmless.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, PullConsumer},
    AckKind,
};
use futures::{FutureExt, StreamExt};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::{broker::BrokerError, dead_letters::DeadLetters, proto::Envelope, store::StoreError};

/// Most events applied before one flush and their acks.
const BATCH: usize = 128;
/// Idle heartbeat of the pull requests: how fast a lost broker is noticed.
const HEARTBEAT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Deliveries of one event that fails to apply before it becomes a dead letter.
pub const MAX_ATTEMPTS: i64 = 5;
/// How long the broker waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// A local store that events are applied to.
pub trait Projection: Send + Sync + 'static {
    /// Applies `envelope` and records its id as applied, in one sled transaction.
    /// Returns `false` (and changes nothing) if it was applied before.
    fn apply(&self, envelope: &Envelope) -> Result<bool, StoreError>;
    /// The database to flush before acking.
    fn db(&self) -> &sled::Db;
    /// Where events that cannot be applied are set aside (in the same database).
    fn dead_letters(&self) -> &DeadLetters;
}

/// The key under which an applied event is remembered.
fn applied_key(envelope: &Envelope) -> &[u8] {
    envelope.event_id.as_bytes()
}

/// Consumes `subjects` through the durable consumer `name` into `projection` until
/// `shutdown`, surviving broker restarts (it recreates its subscription with backoff).
/// Two processes given the same `name` share one consumer and split its events between
/// them; replicas of one service that each keep a view need a name each.
pub async fn consume<P: Projection>(
    js: jetstream::Context,
    name: String,
    subjects: &'static [&'static str],
    projection: P,
    shutdown: CancellationToken,
) {
    let name = name.as_str();
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let consumer = consumer(&js, name, subjects).await?;
            let messages = consumer.stream().heartbeat(HEARTBEAT).messages().await?;
            Ok::<_, async_nats::Error>(messages)
        };
        let messages = tokio::select! {
            attempt = attempt => attempt,
            _ = shutdown.cancelled() => return,
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, consumer = name, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(consumer = name, "consuming");
        loop {
            let first = tokio::select! {
                next = messages.next() => next,
                _ = shutdown.cancelled() => return,
            };
            let mut batch = match first {
                Some(Ok(message)) => {
                    // Only a delivery proves the subscription works: until then an error
                    // right after subscribing keeps the backoff growing.
                    backoff = Duration::from_millis(50);
                    vec![message]
                }
                Some(Err(error)) => {
                    // Missed heartbeats (a broker away, or back without its data), a
                    // deleted consumer or stream: subscribe again, which recreates
                    // whatever is missing, with backoff while the broker is away.
                    tracing::warn!(%error, consumer = name, "consumer stream error; resubscribing");
                    break;
                }
                None => break,
            };
            let mut failed = false;
            while batch.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(error))) => {
                        tracing::warn!(%error, consumer = name, "consumer stream error; resubscribing after this batch");
                        failed = true;
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            apply_batch(name, &projection, batch).await;
            if failed {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn apply_batch<P: Projection>(name: &str, projection: &P, batch: Vec<jetstream::Message>) {
    let mut done = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    for message in batch {
        let (key, reason) = match Envelope::decode(message.payload.as_ref()) {
            Ok(envelope) => match projection.apply(&envelope) {
                Ok(fresh) => {
                    tracing::trace!(event_id = %envelope.event_id, fresh, "applied");
                    crate::stats::event_applied(fresh);
                    done.push(message);
                    continue;
                }
                Err(error) if deliveries(&message) < MAX_ATTEMPTS => {
                    tracing::warn!(%error, event_id = %envelope.event_id, consumer = name, "cannot apply; redelivery later");
                    ack(name, &message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                    continue;
                }
                Err(error) => (envelope.event_id, format!("cannot apply after {MAX_ATTEMPTS} deliveries: {error}")),
            },
            // Redelivering an undecodable event would fail forever.
            Err(error) => (stream_position(&message), format!("undecodable event on {}: {error}", message.subject)),
        };
        if let Err(error) = projection.dead_letters().put(key.as_bytes(), &reason, &message.payload) {
            tracing::error!(%error, consumer = name, "cannot keep a dead letter; redelivery later");
            continue;
        }
        dead.push(message);
    }
    if done.is_empty() && dead.is_empty() {
        return;
    }
    if let Err(error) = crate::store::flush(projection.db()).await {
        // Not durable: no ack, so the broker redelivers after its ack wait.
        tracing::error!(%error, consumer = name, "flush failed; events will be redelivered");
        return;
    }
    for message in &done {
        ack(name, message, AckKind::Ack).await;
    }
    for message in &dead {
        ack(name, message, AckKind::Term).await;
    }
}

/// How many times the broker has delivered `message` (1 the first time).
fn deliveries(message: &jetstream::Message) -> i64 {
    message.info().map_or(1, |info| info.delivered)
}

/// The key of a dead letter whose event id is unknown: its place in the stream.
fn stream_position(message: &jetstream::Message) -> String {
    message
        .info()
        .map_or_else(|_| format!("{}@unknown", message.subject), |i| format!("stream-seq-{}", i.stream_sequence))
}

async fn ack(name: &str, message: &jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // A lost ack means a redelivery, which the applied marker makes harmless.
        tracing::warn!(%error, consumer = name, "ack failed");
    }
}

/// The durable consumer `name`, created if missing and brought back to this
/// configuration if it was changed; one whose configuration cannot be updated in
/// place is refused with a clear error rather than used as it is.
async fn consumer(js: &jetstream::Context, name: &str, subjects: &[&str]) -> Result<PullConsumer, async_nats::Error> {
    let stream = crate::broker::ensure_stream(js).await?;
    let wanted = pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        // Unlimited: the consumer decides when an event becomes a dead letter, and
        // keeps it; a broker giving up on its own would drop it without a trace.
        max_deliver: -1,
        // No replica count of its own (0): on a cluster the consumer is kept by as
        // many servers as the stream (`--stream-replicas`), so its acknowledged
        // position survives the loss of any minority of them.
        ..Default::default()
    };
    let mut consumer: PullConsumer = stream.get_or_create_consumer(name, wanted.clone()).await?;
    let have = &consumer.cached_info().config;
    let mut have_subjects = have.filter_subjects.clone();
    if !have.filter_subject.is_empty() {
        have_subjects.push(have.filter_subject.clone());
    }
    let same = have.ack_policy == wanted.ack_policy
        && have.ack_wait == wanted.ack_wait
        && have.max_deliver == wanted.max_deliver
        && have_subjects == wanted.filter_subjects;
    if !same {
        tracing::warn!(consumer = name, "durable consumer found with another configuration; updating it");
        stream.update_consumer(wanted).await.map_err(|error| {
            BrokerError::Misconfigured(format!(
                "durable consumer {name} has another configuration and cannot be updated ({error}); delete it \
                 and restart the service to recreate it"
            ))
        })?;
        consumer = stream.get_consumer(name).await?;
    }
    Ok(consumer)
}

/// Inside a projection's transaction: records `envelope` as applied and returns true,
/// the caller then applying its effect in the same transaction; returns false, and
/// writes nothing, if it was applied before.
pub fn record_first_apply(
    applied: &sled::transaction::TransactionalTree,
    envelope: &Envelope,
) -> Result<bool, sled::transaction::ConflictableTransactionError<StoreError>> {
    if applied.get(applied_key(envelope))?.is_some() {
        return Ok(false);
    }
    applied.insert(applied_key(envelope), &[])?;
    Ok(true)
}

/// Inside a projection's transaction: copies the user or product an event carries
/// (every projection keeps both). Other events are left to the caller.
pub fn copy_user_or_product(
    users: &sled::transaction::TransactionalTree,
    products: &sled::transaction::TransactionalTree,
    envelope: &Envelope,
) -> Result<(), sled::transaction::ConflictableTransactionError<StoreError>> {
    use crate::proto::envelope::Payload;
    match &envelope.payload {
        Some(Payload::UserCreated(e)) => {
            if let Some(user) = &e.user {
                users.insert(user.id.as_bytes(), user.encode_to_vec())?;
            }
        }
        Some(Payload::ProductCreated(crate::proto::ProductCreated { product: Some(product) }))
        | Some(Payload::ProductPriceChanged(crate::proto::ProductPriceChanged { product: Some(product), .. })) => {
            keep_newest_product(products, product)?;
        }
        _ => {}
    }
    Ok(())
}

/// Inside a projection's transaction: stores `product` unless the stored copy is as
/// new or newer (events may arrive out of order; an older version never wins).
fn keep_newest_product(
    products: &sled::transaction::TransactionalTree,
    product: &crate::proto::Product,
) -> Result<(), sled::transaction::ConflictableTransactionError<StoreError>> {
    if let Some(stored) = products.get(product.id.as_bytes())? {
        let stored = crate::proto::Product::decode(stored.as_ref())
            .map_err(|e| sled::transaction::ConflictableTransactionError::Abort(StoreError::Decode(e)))?;
        if stored.version >= product.version {
            return Ok(());
        }
    }
    products.insert(product.id.as_bytes(), product.encode_to_vec())?;
    Ok(())
}
