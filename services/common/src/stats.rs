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
    outbox::Outbox,
    proto::{admin_server::Admin, StatsRequest, StatsResponse},
};

static RPCS_SENT: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static EVENTS_PUBLISHED: AtomicU64 = AtomicU64::new(0);
static EVENTS_APPLIED: AtomicU64 = AtomicU64::new(0);
static EVENTS_SKIPPED: AtomicU64 = AtomicU64::new(0);
static OUTBOX: OnceLock<Outbox> = OnceLock::new();

pub fn rpc_sent(what: &str) {
    let mut rpcs = RPCS_SENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *rpcs.entry(what.to_owned()).or_default() += 1;
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

pub fn snapshot() -> StatsResponse {
    StatsResponse {
        rpcs_sent: RPCS_SENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone().into_iter().collect(),
        events_published: EVENTS_PUBLISHED.load(Ordering::Relaxed),
        events_applied: EVENTS_APPLIED.load(Ordering::Relaxed),
        events_skipped: EVENTS_SKIPPED.load(Ordering::Relaxed),
        outbox_pending: OUTBOX.get().map_or(0, |o| o.pending() as u64),
        ..Default::default()
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
