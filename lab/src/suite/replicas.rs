//! Replicas of the query service, and kill-replica: the query service as two replicas
//! (whatever `--replicas` says) under the usual load, one replica SIGKILLed and
//! restarted. The lab's client balances `UserOrders` over the replicas
//! ([`crate::client::Balanced`]); what it saw is recorded beside the scenario's usual
//! figures (availability per window, staleness, convergence of every replica's view,
//! losses): the requests that failed while it had not yet dropped the dead replica, and
//! the ones it moved to the other.
//!
//! Only the query service is replicated. The owners (users, products, orders) each own
//! their sled store as its single writer: two instances with stores of their own would
//! split its data, and partitioning an owner is not built.

use std::time::Instant;

use common::{
    config::Mode,
    names::{QUERY, QUERY_REPLICAS},
};
use serde::{Deserialize, Serialize};

use super::{
    scenarios::{Step, DOES_NOT_APPLY},
    Ctx, FaultEvent, FaultKind, Scenario, ScenarioResult,
};
use crate::{
    client::{Balanced, BalancerCounts},
    control::Action,
};

/// Query replicas kill-replica runs.
pub const REPLICAS: usize = 2;
/// The replica kill-replica kills.
pub const VICTIM: &str = QUERY_REPLICAS[1];

/// What a load on query replicas recorded of them and of the clients' balancer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaRun {
    /// Instances of the query service.
    pub replicas: usize,
    /// The replica killed (kill-replica), if one was killed alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<String>,
    /// `UserOrders` requests that failed `UNAVAILABLE` at the balancer while the
    /// killed replica was down: sent to it before the balancer dropped it (or no
    /// replica could be reached).
    #[serde(default)]
    pub failed_while_down: u64,
    /// From the kill (issued) to the last of those failures, ms: how long the clients
    /// saw errors before the balancer had dropped the dead replica. `None` if none
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_for_ms: Option<u64>,
    /// Requests whose turn was the killed replica's that the balancer sent to another
    /// while it was down (skipped while marked down, or moved when its connection was
    /// refused: never sent to it, so nothing failed).
    #[serde(default)]
    pub moved_while_down: u64,
    /// Requests that failed `UNAVAILABLE` at the balancer from the restart to the end of
    /// the load.
    #[serde(default)]
    pub failed_after_restart: u64,
    /// Over the whole load: requests moved, replicas marked down, requests failed.
    #[serde(default)]
    pub moved: u64,
    #[serde(default)]
    pub marked_down: u64,
    #[serde(default)]
    pub failed: u64,
}

/// Watches the balancer through a load's fault steps (given to
/// [`super::scenarios::load_during`] as its `progress`), to tell what it did while a
/// replica was down from what it did otherwise.
pub struct Watch {
    balancer: Balanced,
    start: BalancerCounts,
    /// The replica killed alone, when its kill was issued, and the counts then.
    kill: Option<(String, Instant, BalancerCounts)>,
    /// The counts at its restart.
    restart: Option<BalancerCounts>,
    run: ReplicaRun,
}

impl Watch {
    pub fn new(balancer: &Balanced) -> Self {
        let start = balancer.counts();
        Self {
            balancer: balancer.clone(),
            start,
            kill: None,
            restart: None,
            run: ReplicaRun { replicas: start.replicas, ..Default::default() },
        }
    }

    /// Told of every step done: the kill of one replica, then its restart.
    pub fn step(&mut self, event: &FaultEvent) {
        let Ok((action, target)) = Action::parse(&event.action) else { return };
        if event.result != super::scenarios::OK || common::names::replica_of(&target) != Some(QUERY) {
            return;
        }
        // The step returned just now; it was issued this long before.
        let took =
            std::time::Duration::from_millis(event.effective_ms.unwrap_or(event.t_ms).saturating_sub(event.t_ms));
        let issued = Instant::now().checked_sub(took).unwrap_or_else(Instant::now);
        match action {
            Action::Kill if self.kill.is_none() => self.kill = Some((target, issued, self.balancer.counts())),
            Action::Restart if self.kill.as_ref().is_some_and(|(k, ..)| *k == target) && self.restart.is_none() => {
                let (_, killed_at, at_kill) = self.kill.as_ref().expect("checked");
                let now = self.balancer.counts();
                self.run.failed_while_down = now.failed - at_kill.failed;
                self.run.moved_while_down = now.moved - at_kill.moved;
                self.run.errors_for_ms = (self.run.failed_while_down > 0)
                    .then(|| self.balancer.last_failure())
                    .flatten()
                    .map(|last| last.saturating_duration_since(*killed_at).as_millis() as u64);
                self.restart = Some(now);
            }
            _ => {}
        }
    }

    /// What was recorded, once the load has ended.
    pub fn finish(mut self) -> ReplicaRun {
        let end = self.balancer.counts();
        self.run.killed = self.kill.as_ref().map(|(k, ..)| k.clone());
        if let Some(at_restart) = self.restart {
            self.run.failed_after_restart = end.failed - at_restart.failed;
        }
        self.run.moved = end.moved - self.start.moved;
        self.run.marked_down = end.marked_down - self.start.marked_down;
        self.run.failed = end.failed - self.start.failed;
        self.run
    }
}

/// kill-replica in `mode`: two query replicas, [`VICTIM`] SIGKILLed at 2 s and restarted
/// at 4 s of 7 (scaled like every fault timeline), under the fault scenarios' load. The
/// monolith has no query process of its own: does not apply, and no run.
pub async fn run(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    if mode == Mode::Monolith {
        return Ok(ScenarioResult {
            note: Some(format!(
                "{DOES_NOT_APPLY}monolith mode has no query process of its own: one process serves every service, so \
                 there is no replica to kill"
            )),
            ..Default::default()
        });
    }
    if ctx.target != crate::topology::Target::Process {
        return Ok(ScenarioResult {
            note: Some("query replicas run on the process target only for now".into()),
            ..Default::default()
        });
    }
    let at = |s: f64| ctx.profile.secs(s);
    let step = |t: f64, action: Action| {
        let starts = (action == Action::Kill).then_some(FaultKind::Kill);
        Step { at: at(t), action, target: VICTIM, starts }
    };
    let steps = vec![step(2.0, Action::Kill), step(4.0, Action::Restart)];
    super::scenarios::with_steps(&ctx.with_replicas(REPLICAS), Scenario::KillReplica, mode, steps, at(7.0)).await
}
