//! Counters of one process, served by the `Admin.Stats` RPC. Each service is its own
//! process, so process-wide counters are per-service counters.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, OnceLock,
    },
};

use tonic::{Request, Response, Status};

use crate::{
    dead_letters::DeadLetters,
    outbox::Outbox,
    proto::{admin_server::Admin, StatsRequest, StatsResponse},
};

static RPCS_SENT: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static RETRIES_SENT: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static BREAKER_REJECTIONS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static REQUESTS_SHED: AtomicU64 = AtomicU64::new(0);
static POLICY: OnceLock<crate::config::Policy> = OnceLock::new();
static EVENTS_PUBLISHED: AtomicU64 = AtomicU64::new(0);
static EVENTS_APPLIED: AtomicU64 = AtomicU64::new(0);
static EVENTS_SKIPPED: AtomicU64 = AtomicU64::new(0);
static OUTBOX: OnceLock<Outbox> = OnceLock::new();
static DEAD_LETTERS: Mutex<Vec<DeadLetters>> = Mutex::new(Vec::new());
/// The projection's persisted counters (see [`ORDERS_APPLIED_KEY`]).
static PROJECTION_COUNTS: OnceLock<sled::Tree> = OnceLock::new();
/// Key, in a projection's `counts` tree, of the number of OrderPlaced events applied
/// for the first time (a big-endian u64, bumped in the applying transaction).
pub const ORDERS_APPLIED_KEY: &[u8] = b"orders_applied";
/// Dead-letter reasons shown in a `Stats` answer.
const REASONS_SHOWN: usize = 10;

fn count(map: &Mutex<BTreeMap<String, u64>>, what: &str) {
    let mut counts = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *counts.entry(what.to_owned()).or_default() += 1;
}

fn counts(map: &Mutex<BTreeMap<String, u64>>) -> std::collections::HashMap<String, u64> {
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().into_iter().collect()
}

pub fn rpc_sent(what: &str) {
    count(&RPCS_SENT, what);
}

/// An attempt of `what` that was a retry (also counted by [`rpc_sent`]).
pub fn retry_sent(what: &str) {
    count(&RETRIES_SENT, what);
}

/// A call to `dependency` refused by its open circuit breaker (never sent).
pub fn breaker_rejected(dependency: &str) {
    count(&BREAKER_REJECTIONS, dependency);
}

/// A request refused with `RESOURCE_EXHAUSTED` by the server's concurrency limit.
pub fn request_shed() {
    REQUESTS_SHED.fetch_add(1, Ordering::Relaxed);
}

/// Records the policy of this process's outbound calls (the first one set wins).
pub fn set_policy(policy: crate::config::Policy) {
    if POLICY.set(policy).is_err() && POLICY.get() != Some(&policy) {
        tracing::debug!(%policy, "another policy is already recorded in this process");
    }
}

pub fn events_published(n: u64) {
    EVENTS_PUBLISHED.fetch_add(n, Ordering::Relaxed);
}

pub fn event_applied(fresh: bool) {
    let counter = if fresh { &EVENTS_APPLIED } else { &EVENTS_SKIPPED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Makes `outbox` the one whose backlog `Stats` reports.
pub fn watch_outbox(outbox: &Outbox) {
    if OUTBOX.set(outbox.clone()).is_err() {
        tracing::debug!("an outbox is already watched");
    }
}

/// Adds `letters` to the dead letters `Stats` counts.
pub fn watch_dead_letters(letters: &DeadLetters) {
    DEAD_LETTERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(letters.clone());
}

/// Makes `counts` the projection counters `Stats` reports.
pub fn watch_projection_counts(counts: &sled::Tree) {
    if PROJECTION_COUNTS.set(counts.clone()).is_err() {
        tracing::debug!("projection counts are already watched");
    }
}

/// A persisted counter's value from its stored bytes (a big-endian u64; 0 if absent).
pub fn decode_count(bytes: Option<impl AsRef<[u8]>>) -> u64 {
    bytes.and_then(|b| b.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// A persisted counter of a projection's `counts` tree (0 if absent).
pub fn read_count(counts: &sled::Tree, key: &[u8]) -> u64 {
    match counts.get(key) {
        Ok(bytes) => decode_count(bytes),
        Err(error) => {
            tracing::warn!(%error, "cannot read a projection counter");
            0
        }
    }
}

pub fn snapshot() -> StatsResponse {
    let dead = DEAD_LETTERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    StatsResponse {
        rpcs_sent: counts(&RPCS_SENT),
        events_published: EVENTS_PUBLISHED.load(Ordering::Relaxed),
        events_applied: EVENTS_APPLIED.load(Ordering::Relaxed),
        events_skipped: EVENTS_SKIPPED.load(Ordering::Relaxed),
        outbox_pending: OUTBOX.get().map_or(0, |o| o.pending() as u64),
        dead_letters: dead.iter().map(|d| d.count() as u64).sum(),
        dead_letter_reasons: dead.iter().flat_map(|d| d.reasons(REASONS_SHOWN)).take(REASONS_SHOWN).collect(),
        orders_applied: PROJECTION_COUNTS.get().map_or(0, |c| read_count(c, ORDERS_APPLIED_KEY)),
        policy: POLICY.get().map_or_else(String::new, |p| p.to_string()),
        retries_sent: counts(&RETRIES_SENT),
        breaker_rejections: counts(&BREAKER_REJECTIONS),
        requests_shed: REQUESTS_SHED.load(Ordering::Relaxed),
    }
}

/// The `Admin` service.
#[derive(Default, Clone, Copy)]
pub struct AdminApi;

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn stats(&self, _request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(snapshot()))
    }
}
