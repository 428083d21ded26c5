//! The scenarios on a three-node broker cluster, and what the fault scenarios record of
//! a cluster:
//!
//! - kill-broker-node: one node SIGKILLed and restarted, twice: the node that leads the
//!   event stream at that moment, then a follower;
//! - lose-broker-quorum: two of the three nodes SIGKILLed at once, then restarted.
//!
//! Which node is the leader is known only when the fault is due, so their steps name a
//! role ([`LEADER`], [`FOLLOWER`]) that [`resolve`] turns into a node right before the
//! kill, by asking the cluster (stream info in async mode; bus-rpc has no stream, so
//! there the JetStream meta leader, from the nodes' monitoring endpoints); the repair
//! restarts the node the kill hit.

use std::time::Duration;

use common::config::Mode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    scenarios::{Step, DOES_NOT_APPLY},
    Ctx, Scenario, ScenarioResult,
};
use crate::{control::Action, topology::cluster::Placement};

/// A step target: the node that leads (the stream, or in bus-rpc the meta group) when
/// the fault is due.
pub const LEADER: &str = "the-leader";
/// A step target: a node that does not lead when the fault is due (a current replica
/// of the stream where there is one).
pub const FOLLOWER: &str = "a-follower";

/// Nodes of the cluster the cluster scenarios run on.
pub const NODES: usize = 3;

/// What a fault scenario on a cluster records of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterRun {
    /// Broker nodes.
    pub nodes: usize,
    /// The JetStream meta leader before the load.
    pub meta_leader_before: Option<String>,
    /// Where the event stream was before the load (async mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Placement>,
    /// Where it was once every fault was repaired and the cluster was whole again
    /// (async mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Placement>,
    /// The most events waiting in the services' outboxes at once during the load
    /// (`Admin.Stats` outbox_pending summed over the services, read every
    /// [`OUTBOX_EVERY`]; async mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_peak: Option<u64>,
}

/// How long a fault on a role waits for the cluster to be whole first.
pub const WHOLE_WITHIN: Duration = Duration::from_secs(30);

/// How often the outboxes are read during a load on a cluster.
pub const OUTBOX_EVERY: Duration = Duration::from_millis(100);

/// Runs kill-broker-node or lose-broker-quorum in `mode`, on a cluster of [`NODES`].
pub async fn run(ctx: &Ctx, scenario: Scenario, mode: Mode) -> anyhow::Result<ScenarioResult> {
    if !mode.uses_broker() {
        // No broker, so no cluster: the scenario does not apply, and costs no run.
        return Ok(ScenarioResult {
            note: Some(format!("{DOES_NOT_APPLY}{mode} mode has no broker: no cluster node to kill")),
            ..Default::default()
        });
    }
    let at = |s: f64| ctx.profile.secs(s);
    let step = |t: f64, action: Action, target: &'static str| {
        let starts = (action == Action::Kill).then_some(super::FaultKind::Kill);
        Step { at: at(t), action, target, starts }
    };
    let (steps, length) = match scenario {
        Scenario::KillBrokerNode => (
            vec![
                step(2.0, Action::Kill, LEADER),
                step(4.0, Action::Restart, LEADER),
                step(5.0, Action::Kill, FOLLOWER),
                step(7.0, Action::Restart, FOLLOWER),
            ],
            at(9.0),
        ),
        Scenario::LoseBrokerQuorum => (
            vec![
                step(2.0, Action::Kill, LEADER),
                step(2.0, Action::Kill, FOLLOWER),
                step(4.0, Action::Restart, FOLLOWER),
                step(4.0, Action::Restart, LEADER),
            ],
            at(7.0),
        ),
        other => anyhow::bail!("{other} does not run on a broker cluster"),
    };
    super::scenarios::with_steps(&ctx.with_brokers(NODES), scenario, mode, steps, length).await
}

/// What a role was resolved to in one load, in order: the node, and whether it is down
/// (killed, not yet restarted).
#[derive(Debug, Default)]
pub struct Roles(Vec<Resolved>);

#[derive(Debug)]
struct Resolved {
    role: &'static str,
    node: &'static str,
    down: bool,
}

impl Roles {
    /// A fault on a role that did not take effect on `node`: the node is not down, and
    /// no repair of the role may act on it (it would restart a healthy node).
    pub fn not_taken_down(&mut self, node: &str) {
        if let Some(i) = self.0.iter().rposition(|r| r.node == node && r.down) {
            self.0.remove(i);
        }
    }

    /// The node a role was last resolved to.
    pub fn node(&self, role: &str) -> Option<&'static str> {
        self.0.iter().rev().find(|r| r.role == role).map(|r| r.node)
    }
}

/// Whether `target` is a role rather than a component.
pub fn is_role(target: &str) -> bool {
    target == LEADER || target == FOLLOWER
}

/// The component `step` acts on, and for a fault on a role, what the node was ("the
/// stream's leader"). A fault on a role asks the cluster which node has it now (among
/// the nodes not down) and remembers it in `roles`; its repair acts on that node.
/// Anything else is as given.
pub async fn resolve(
    topology: &crate::topology::Topology,
    step: &Step,
    roles: &mut Roles,
) -> Result<(&'static str, Option<String>), String> {
    if !is_role(step.target) {
        return Ok((step.target, None));
    }
    if step.action.is_repair() {
        let resolved = (roles.0.iter_mut().rev().find(|r| r.role == step.target))
            .ok_or_else(|| format!("no node was taken down as {}", step.target))?;
        resolved.down = false;
        return Ok((resolved.node, None));
    }
    let down: Vec<&str> = roles.0.iter().filter(|r| r.down).map(|r| r.node).collect();
    let hit: Vec<&str> = roles.0.iter().map(|r| r.node).collect();
    let (node, how) = pick(topology, step.target, &down, &hit).await?;
    roles.0.push(Resolved { role: step.target, node, down: true });
    Ok((node, Some(how)))
}

/// The node that has `role` now, among the nodes not in `down`; a follower that no
/// earlier fault of the load `hit` if there is one.
async fn pick(
    topology: &crate::topology::Topology,
    role: &str,
    down: &[&str],
    hit: &[&str],
) -> Result<(&'static str, String), String> {
    let nodes: Vec<&'static str> = topology.brokers().map(|b| b.name).filter(|n| !down.contains(n)).collect();
    let running = |name: &str| nodes.iter().copied().find(|n| *n == name);
    if role == FOLLOWER && !down.is_empty() {
        // A node is down already (the leader, a moment ago): the cluster may not answer
        // until it elects another (stream info waits for a leader), and the kill is due
        // now. Any running node is a second one down.
        let found = nodes.first().copied().ok_or("no running node")?;
        return Ok((found, format!("a second node, with {} down", down.join(", "))));
    }
    // With every node up, the cluster is first let become whole again (a node restarted
    // a moment ago caught up, the stream led): a fault meant for one node of a healthy
    // cluster must not land on one still recovering from the last. The wait delays
    // this step and the rest of the schedule alike (see `load_during`), and shows as the
    // gap between the step's planned and issued times.
    topology.wait_brokers_ready(WHOLE_WITHIN).await.map_err(|e| e.to_string())?;
    let asked = match topology.config.mode {
        Mode::Async => topology.stream_placement().await.map(|placement| {
            let current = placement.followers.iter().filter(|r| r.current && !r.offline).map(|r| r.name.clone());
            (placement.leader, current.collect::<Vec<_>>(), "the stream's")
        }),
        // No stream in bus-rpc mode: the meta group is the cluster's one leader.
        _ => Ok((topology.meta_leader().await, Vec::new(), "the JetStream meta")),
    };
    if role == LEADER {
        let (leader, _, what) = asked?;
        let leader = leader.ok_or_else(|| format!("{what} group has no leader right now"))?;
        let found = running(&leader).ok_or_else(|| format!("{what} leader {leader} is not a running node"))?;
        return Ok((found, format!("{what} leader")));
    }
    // A follower: a current replica the stream names, else any running node but the
    // leader.
    match asked {
        Ok((Some(leader), mut current, what)) => {
            // Not hit before first (a stable sort keeps the stream's order otherwise).
            current.sort_by_key(|name| hit.contains(&name.as_str()));
            let mut others: Vec<&'static str> = nodes.iter().copied().filter(|n| *n != leader).collect();
            others.sort_by_key(|name| hit.contains(name));
            let found = (current.iter().find_map(|name| running(name)))
                .or_else(|| others.first().copied())
                .ok_or("no running node besides the leader")?;
            Ok((found, format!("a follower of {what} leader {leader}")))
        }
        Ok((None, _, what)) => Err(format!("{what} group has no leader right now, so no follower either")),
        Err(e) => Err(e),
    }
}

/// While a load runs on a cluster in async mode: the most events waiting in the
/// services' outboxes at once, read every [`OUTBOX_EVERY`] until cancelled (a service
/// that does not answer, being down, counts as 0).
pub fn watch_outboxes(addresses: Vec<std::net::SocketAddr>) -> (CancellationToken, tokio::task::JoinHandle<u64>) {
    let stop = CancellationToken::new();
    let cancelled = stop.clone();
    let task = tokio::spawn(async move {
        use common::proto::{admin_client::AdminClient, StatsRequest};
        let mut peak = 0;
        let mut tick = tokio::time::interval(OUTBOX_EVERY);
        loop {
            tokio::select! {
                _ = cancelled.cancelled() => return peak,
                _ = tick.tick() => {}
            }
            let mut pending = 0;
            for &address in &addresses {
                let mut admin = AdminClient::new(common::channel(address));
                let mut request = tonic::Request::new(StatsRequest {});
                request.set_timeout(OUTBOX_EVERY);
                if let Ok(stats) = admin.stats(request).await {
                    pending += stats.into_inner().outbox_pending;
                }
            }
            peak = peak.max(pending);
        }
    });
    (stop, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_whose_fault_failed_is_not_repaired_on_a_healthy_node() {
        let mut roles = Roles::default();
        roles.0.push(Resolved { role: LEADER, node: "nats-2", down: true });
        roles.0.push(Resolved { role: FOLLOWER, node: "nats-3", down: true });
        // The kill of nats-3 did not take effect: nothing may restart it as the follower.
        roles.not_taken_down("nats-3");
        assert_eq!(roles.node(FOLLOWER), None);
        assert_eq!(roles.node(LEADER), Some("nats-2"));
        // A node that is not down is left alone.
        roles.not_taken_down("nats-1");
        assert_eq!(roles.0.len(), 1);
    }
}
