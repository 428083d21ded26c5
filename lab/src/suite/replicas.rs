//! Several instances of each service, and kill-replica: every service as two instances
//! (whatever `--replicas` says): the query service as two replicas, each owner (users,
//! products, orders) as two shards. Under the usual load, one instance of each is
//! SIGKILLed and restarted in turn: `users-2`, `products-2`, `orders-2`, `query-2`. The
//! lab's client balances `UserOrders` over the query replicas and sends each owner's
//! request to the shard its id names ([`crate::client::Balanced`]); what it saw while
//! each instance was down is recorded beside the scenario's usual figures
//! (availability per window, staleness, convergence of every replica's view, losses).
//!
//! A query replica is a whole copy: its sibling answers every request. An owner's shard
//! is not: each is the single writer of the entities whose ids name it, so while
//! `users-2` is down its users cannot be read from users (sync, bus-rpc), while the
//! other shard's can, and new users are created on the live shard.

use std::time::Instant;

use common::{
    config::Mode,
    names::{ORDERS_SHARDS, PRODUCTS_SHARDS, QUERY_REPLICAS, USERS_SHARDS},
};
use serde::{Deserialize, Serialize};

use super::{
    scenarios::{Step, DOES_NOT_APPLY},
    Ctx, FaultEvent, FaultKind, Scenario, ScenarioResult,
};
use crate::{
    client::{Balanced, BalancerCounts, Clients},
    control::Action,
};

/// Instances of each service kill-replica runs.
pub const REPLICAS: usize = 2;
/// The instances kill-replica kills, in turn: the second of each service.
pub const VICTIMS: [&str; 4] = [USERS_SHARDS[1], PRODUCTS_SHARDS[1], ORDERS_SHARDS[1], QUERY_REPLICAS[1]];

/// What a load on several instances of a service recorded of them and of the clients'
/// balancers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaRun {
    /// Instances of the query service.
    pub replicas: usize,
    /// Shards of each owner (1 in results from before it was recorded).
    #[serde(default = "one")]
    pub shards: usize,
    /// Each instance killed alone (kill-replica), in the order killed.
    #[serde(default)]
    pub kills: Vec<ReplicaKill>,
    /// Over the whole load, at the query replicas' balancer: requests moved, replicas
    /// marked down, requests failed.
    #[serde(default)]
    pub moved: u64,
    #[serde(default)]
    pub marked_down: u64,
    #[serde(default)]
    pub failed: u64,
}

fn one() -> usize {
    1
}

/// What the clients' balancer of one service saw while one of its instances was down.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplicaKill {
    /// The instance killed (`users-2`).
    pub instance: String,
    /// Requests the lab's client sent straight to its service that failed `UNAVAILABLE`
    /// at the connection while it was down: for a replica, those sent to it before the
    /// balancer dropped it; for a shard, those naming an entity it holds (no other shard
    /// has them). Not the requests a service in between (orders, query) failed for it.
    pub failed_while_down: u64,
    /// From the kill (issued) to the last of those failures, ms; `None` if none failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_for_ms: Option<u64>,
    /// Requests whose turn was the killed instance's that the balancer sent to another
    /// while it was down (a query replica's; an owner's creates, which name no shard):
    /// never sent to it, so nothing failed.
    pub moved_while_down: u64,
    /// Requests to its service that failed `UNAVAILABLE` at the balancer from its
    /// restart to the next kill (or the end of the load).
    pub failed_after_restart: u64,
}

/// Watches the clients' balancers through a load's fault steps (given to
/// [`super::scenarios::load_during`] as its `progress`), to tell what each did while an
/// instance of its service was down from what it did otherwise.
pub struct Watch {
    clients: Clients,
    start: BalancerCounts,
    /// The instance killed alone and not yet restarted: its service's balancer, when its
    /// kill was issued, and the counts then.
    down: Option<(Balanced, Instant, BalancerCounts)>,
    /// The last instance restarted: its balancer and its counts at the restart.
    restarted: Option<(Balanced, BalancerCounts)>,
    run: ReplicaRun,
}

impl Watch {
    pub fn new(clients: &Clients, shards: usize) -> Self {
        let start = clients.query_balancer().counts();
        Self {
            clients: clients.clone(),
            start,
            down: None,
            restarted: None,
            run: ReplicaRun { replicas: start.replicas, shards, ..Default::default() },
        }
    }

    /// Told of every step done: the kill of one instance, then its restart, in turn.
    pub fn step(&mut self, event: &FaultEvent) {
        let Ok((action, target)) = Action::parse(&event.action) else { return };
        let Some(balancer) = common::names::replica_of(&target).and_then(|s| self.clients.balancer(s)).cloned() else {
            return;
        };
        if event.result != super::scenarios::OK {
            return;
        }
        // The step returned just now; it was issued this long before.
        let took =
            std::time::Duration::from_millis(event.effective_ms.unwrap_or(event.t_ms).saturating_sub(event.t_ms));
        let issued = Instant::now().checked_sub(took).unwrap_or_else(Instant::now);
        match action {
            Action::Kill if self.down.is_none() => {
                self.close_restarted();
                let at_kill = balancer.counts();
                self.down = Some((balancer, issued, at_kill));
                self.run.kills.push(ReplicaKill { instance: target, ..Default::default() });
            }
            Action::Restart if self.run.kills.last().is_some_and(|k| k.instance == target) => {
                let Some((balancer, killed_at, at_kill)) = self.down.take() else { return };
                let now = balancer.counts();
                let kill = self.run.kills.last_mut().expect("checked");
                kill.failed_while_down = now.failed - at_kill.failed;
                kill.moved_while_down = now.moved - at_kill.moved;
                kill.errors_for_ms = (kill.failed_while_down > 0)
                    .then(|| balancer.last_failure())
                    .flatten()
                    .map(|last| last.saturating_duration_since(killed_at).as_millis() as u64);
                self.restarted = Some((balancer, now));
            }
            _ => {}
        }
    }

    /// Counts the failures after the last restart, up to now.
    fn close_restarted(&mut self) {
        if let (Some((balancer, at_restart)), Some(kill)) = (self.restarted.take(), self.run.kills.last_mut()) {
            kill.failed_after_restart = balancer.counts().failed - at_restart.failed;
        }
    }

    /// What was recorded, once the load has ended.
    pub fn finish(mut self) -> ReplicaRun {
        self.close_restarted();
        let end = self.clients.query_balancer().counts();
        self.run.moved = end.moved - self.start.moved;
        self.run.marked_down = end.marked_down - self.start.marked_down;
        self.run.failed = end.failed - self.start.failed;
        self.run
    }
}

/// kill-replica in `mode`: two instances of every service, each of [`VICTIMS`] SIGKILLed
/// and restarted in turn (at 2 s and 4 s, 5 s and 7 s, 8 s and 10 s, 11 s and 13 s of 15,
/// scaled like every fault timeline), under the fault scenarios' load. The monolith has
/// no process of a service's own: does not apply, and no run.
pub async fn run(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    if mode == Mode::Monolith {
        return Ok(ScenarioResult {
            note: Some(format!(
                "{DOES_NOT_APPLY}monolith mode has no process of a service's own: one process serves every service, \
                 so there is no replica to kill"
            )),
            ..Default::default()
        });
    }
    if ctx.target != crate::topology::Target::Process {
        return Ok(ScenarioResult {
            note: Some("replicas and shards run on the process target only for now".into()),
            ..Default::default()
        });
    }
    let at = |s: f64| ctx.profile.secs(s);
    let step = |t: f64, action: Action, target| {
        let starts = (action == Action::Kill).then_some(FaultKind::Kill);
        Step { at: at(t), action, target, starts }
    };
    let steps = (VICTIMS.iter().enumerate())
        .flat_map(|(i, &victim)| {
            let t = 2.0 + 3.0 * i as f64;
            [step(t, Action::Kill, victim), step(t + 2.0, Action::Restart, victim)]
        })
        .collect();
    let ctx = ctx.with_replicas(REPLICAS, REPLICAS);
    super::scenarios::with_steps(&ctx, Scenario::KillReplica, mode, steps, at(15.0)).await
}
