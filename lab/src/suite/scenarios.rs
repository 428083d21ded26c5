//! The scenarios of `lab bench`. Most are one shape: a seeded topology, open-loop load
//! with the staleness probe, faults at fixed offsets ([`with_faults`]), then repair,
//! convergence and the loss checker.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bench::load::{closed_loop, open_loop_for, Length, OpenLoop};
use common::{
    config::Mode,
    names::{NATS, PRODUCTS, QUERY, USERS},
    proto::{admin_client::AdminClient, StatsRequest, StatsResponse},
};
use tokio_util::sync::CancellationToken;

use super::{
    floor::Floor,
    probe,
    resources::Sampler,
    schedule::{Shape, Until},
    Convergence, Ctx, Fanout, FaultEvent, FaultKind, Losses, Prepared, Scenario, ScenarioResult,
};
use crate::{
    control::{self, Action},
    history::InFlight,
    topology::TopologyError,
    workload::{Mix, Workload},
};

/// How long the view may take to equal the truth after the faults end.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// Runs `scenario` in `mode` (the floor, once per machine, is [`floor`]).
pub async fn run(ctx: &Ctx, scenario: Scenario, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    let at = |s: f64| p.secs(s);
    let mut result = match scenario {
        Scenario::Steady => steady(ctx, mode).await?,
        Scenario::SlowDependency => slow_dependency(ctx, mode).await?,
        Scenario::KillDependency => {
            let faults = vec![
                (at(2.0), Action::Kill, USERS),
                (at(4.0), Action::Restart, USERS),
                (at(5.0), Action::Kill, PRODUCTS),
                (at(7.0), Action::Restart, PRODUCTS),
            ];
            with_faults(ctx, scenario, mode, faults, at(9.0)).await?
        }
        Scenario::PauseDependency => {
            let faults = vec![(at(2.0), Action::Pause, PRODUCTS), (at(4.5), Action::Resume, PRODUCTS)];
            with_faults(ctx, scenario, mode, faults, at(7.0)).await?
        }
        Scenario::KillBroker => {
            let faults = vec![(at(2.0), Action::Kill, NATS), (at(4.0), Action::Restart, NATS)];
            with_faults(ctx, scenario, mode, faults, at(7.0)).await?
        }
        Scenario::KillBrokerNode | Scenario::LoseBrokerQuorum => super::cluster::run(ctx, scenario, mode).await?,
        Scenario::Partition => {
            if ctx.target == crate::topology::Target::Process {
                return Ok(ScenarioResult {
                    scenario,
                    mode,
                    note: Some("a partition needs the compose target (`--target compose`)".into()),
                    ..Default::default()
                });
            }
            if let crate::topology::Target::Swarm { .. } = ctx.target {
                return Ok(ScenarioResult {
                    scenario,
                    mode,
                    note: Some(crate::topology::stack::SwarmError::NoPartition.to_string()),
                    ..Default::default()
                });
            }
            let faults = vec![(at(2.0), Action::Partition, USERS), (at(4.0), Action::Reconnect, USERS)];
            with_faults(ctx, scenario, mode, faults, at(7.0)).await?
        }
        Scenario::KillQuery => {
            let faults = vec![(at(2.0), Action::Kill, QUERY), (at(4.0), Action::Restart, QUERY)];
            with_faults(ctx, scenario, mode, faults, at(7.0)).await?
        }
        Scenario::KillReplica => super::replicas::run(ctx, mode).await?,
        Scenario::Chaos => {
            let length = Duration::from_secs_f64(p.chaos_secs);
            let (steps, _) = super::schedule::schedule(p.seed.seed, &CHAOS, Until::Before(length));
            with_steps(ctx, scenario, mode, super::schedule::in_mode(steps, mode), length).await?
        }
        Scenario::Soak => super::soak::run(ctx, mode).await?,
        Scenario::Storage => storage(ctx, mode).await?,
        Scenario::FanOut => fan_out(ctx, mode).await?,
        Scenario::LoadCurve => super::curves::load_curve(ctx, mode).await?,
        Scenario::OrdersPerUser => super::curves::orders_per_user(ctx, mode).await?,
        Scenario::OverloadBlip => super::blip::run(ctx, mode).await?,
        Scenario::Floor => anyhow::bail!("the floor runs once per machine, not in a mode"),
    };
    result.scenario = scenario;
    result.mode = mode;
    Ok(result)
}

pub async fn floor(ctx: &Ctx) -> anyhow::Result<Floor> {
    // A topology gives a real service process for the gRPC echo and a real broker.
    let run_dir = ctx.dir.join("floor");
    let topology = crate::topology::Topology::start(crate::topology::Config::new(Mode::Async, &run_dir)).await?;
    let url = topology.nats_url().expect("async topology has a broker");
    let ceiling = Duration::from_secs_f64(ctx.profile.steady_secs.min(3.0));
    // sled is measured in the run dir: the filesystem the services' data dirs are on.
    let floor = super::floor::measure(&run_dir, topology.address(USERS)?, &url, ctx.profile.sequential, ceiling).await;
    let mut topology = topology;
    topology.stop()?;
    let mut floor = floor?;
    // The same JetStream figures on a three-node cluster, the floor's stream R3: the
    // price of replication, in the same run. A cluster that does not form is recorded
    // as such, not a failed floor.
    match replicated_floor(ctx, super::cluster::NODES).await {
        Ok(replicated) => floor.replicated = Some(replicated),
        Err(e) => floor.replicated_missing = Some(format!("{e:#}")),
    }
    Ok(floor)
}

/// JetStream publish+ack and delivery on a cluster of `nodes`, the floor's stream
/// replicated on every node, in a topology of its own.
async fn replicated_floor(ctx: &Ctx, nodes: usize) -> anyhow::Result<super::floor::Replicated> {
    let mut config = crate::topology::Config::new(Mode::Async, ctx.dir.join("floor-cluster"));
    config.brokers = nodes;
    let mut topology = crate::topology::Topology::start(config).await?;
    let url = topology.nats_url().expect("async topology has a broker");
    let replicated = super::floor::measure_replicated(&url, nodes, nodes, ctx.profile.sequential).await;
    topology.stop()?;
    replicated
}

/// Chaos: a seeded SIGKILL of a service every 0.8–2 s, restarted 0.3–1 s later, and
/// (from the schedule's separate broker stream) of the broker every few seconds: the
/// same victims at the same times in both modes; sync skips the broker's.
pub const CHAOS: Shape = Shape {
    salt: 0xC4A05,
    kinds: &[(FaultKind::Kill, 1)],
    down_ms: 300..=1000,
    restart_allowance: Duration::ZERO,
    gap_ms: 500..1000,
    broker_first_ms: 1000..3000,
    broker_gap_ms: 2000..5000,
};

/// [`with_steps`] for a fixed list of faults: a kill or pause starts a fault, the
/// other actions repair one.
async fn with_faults(
    ctx: &Ctx,
    name: Scenario,
    mode: Mode,
    faults: Vec<(Duration, Action, &'static str)>,
    length: Duration,
) -> anyhow::Result<ScenarioResult> {
    let steps = faults
        .into_iter()
        .map(|(at, action, target)| {
            let starts = match action {
                Action::Kill => Some(FaultKind::Kill),
                Action::Pause => Some(FaultKind::Pause),
                _ => None,
            };
            Step { at, action, target, starts }
        })
        .collect();
    with_steps(ctx, name, mode, steps, length).await
}

/// Load at the fault rate for `length`, the steps at their offsets, then repair,
/// convergence and the checker. On a broker cluster it also records where the stream
/// was before and after, and (async) the most events the outboxes held meanwhile.
pub(super) async fn with_steps(
    ctx: &Ctx,
    name: Scenario,
    mode: Mode,
    steps: Vec<Step>,
    length: Duration,
) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    let mut prepared = ctx.prepare(name.name(), mode, &[], p.seed).await?;
    // On a cluster: where things stand before the load, and the outboxes during it.
    let mut cluster = None;
    let mut outboxes = None;
    if prepared.topology.is_cluster() {
        let topology = &prepared.topology;
        // Seeding's writes may leave a replica a moment behind: read it whole.
        topology.wait_brokers_ready(crate::topology::CLUSTER_READY_WITHIN).await?;
        let before = match mode {
            Mode::Async => Some(topology.stream_placement().await.map_err(anyhow::Error::msg)?),
            _ => None,
        };
        cluster = Some(super::cluster::ClusterRun {
            nodes: topology.brokers().count(),
            meta_leader_before: topology.meta_leader().await,
            before,
            ..Default::default()
        });
        if mode == Mode::Async {
            let services: Vec<_> = topology.service_processes().map(|s| s.public_address()).collect();
            outboxes = Some(super::cluster::watch_outboxes(services));
        }
    }
    let workload = prepared.workload(p, p.seed.seed);
    let acked = workload.acked_orders();
    let partial = workload.partial_answers();
    // Every fault records the workload's writes in flight when it took effect.
    let writes = workload.writes_in_flight();
    let mut result = ScenarioResult::default();
    let mut sampler = Sampler::new();
    let (stop_probe, probe) = start_probe(&prepared, acked.clone());
    // Create-then-use through the faults: a new user and at once an order every
    // CREATE_THEN_USE_EVERY, over the planned length of the load.
    let create_then_use = {
        let (clients, seeded) = (prepared.clients.clone(), prepared.seeded.clone());
        let sequences = (length.as_millis() / CREATE_THEN_USE_EVERY.as_millis()).max(1) as usize;
        tokio::spawn(async move {
            crate::latency::create_then_use(&clients, &seeded, sequences, CREATE_THEN_USE_EVERY, 17).await
        })
    };
    // With replicas or shards: what the clients' balancers did, and while which instance
    // was down.
    let shards = prepared.topology.instances_of(common::names::USERS).count();
    let replicated = prepared.topology.query_instances().count() > 1 || shards > 1;
    let mut watch = super::replicas::Watch::new(&prepared.clients, shards);
    // Convergence is timed from the last repair that took effect.
    let load_started = tokio::time::Instant::now();
    let (report, events) = load_during(
        &mut prepared,
        workload,
        OpenLoop::new(p.fault_rate, length),
        steps,
        &mut sampler,
        Some(&writes),
        &mut |event| watch.step(event),
    )
    .await;
    if replicated {
        result.replicas = Some(watch.finish());
    }
    result.loads.insert("run".into(), report);
    result.partial_answers.insert("run".into(), partial.load(std::sync::atomic::Ordering::Relaxed));
    result.create_then_use = Some(create_then_use.await.expect("create-then-use task")?);
    let repaired = last_repair(&events);
    let applied = ensure_applied(&events);
    result.faults = events;
    prepared.topology.recover().await?;
    if let Some(cluster) = &mut cluster {
        if let Some((stop, peak)) = outboxes {
            stop.cancel();
            cluster.outbox_peak = Some(peak.await?);
        }
        if mode == Mode::Async {
            // `recover` waited for the stream to be whole again; read once it is still so.
            let after = prepared.topology.whole_stream_placement(crate::topology::CLUSTER_READY_WITHIN).await;
            cluster.after = Some(after.map_err(anyhow::Error::msg)?);
        }
    }
    result.cluster = cluster;
    // A repair of the schedule that did not take effect was done by `recover`, just now.
    let since = repaired.map_or_else(tokio::time::Instant::now, |ms| load_started + Duration::from_millis(ms));
    // New probes stop; those in flight finish once their orders show, while the view is
    // compared with the truth (so draining them does not delay the first comparison).
    stop_probe.cancel();
    let users = &prepared.seeded.user_ids;
    let convergence = async {
        match mode {
            Mode::Async => converge(&prepared, users, since, CONVERGE_WITHIN).await.map(Some),
            // The view is read from the owners on every request: nothing to converge.
            Mode::Sync | Mode::BusRpc | Mode::Monolith => Ok(None),
        }
    };
    let (staleness, convergence) = tokio::join!(probe, convergence);
    result.staleness = Some(staleness?);
    let convergence = convergence?;
    // The phantom rows of the last comparison; in sync mode one comparison is made for it.
    let diff = match &convergence {
        Some(c) => c.diff.clone(),
        None => compare_all(&prepared, users).await?,
    };
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let losses = losses(&prepared, users, &acked, &diff).await?;
    sampler.sample(&prepared.topology.file());
    result.set_resources(&sampler);
    if convergence.is_none() {
        result.note = Some(CONVERGENCE_NOT_APPLICABLE.into());
    }
    result.convergence = convergence;
    result.losses = Some(losses);
    if !mode.uses_broker() && name == Scenario::KillBroker {
        result.note = Some(format!(
            "{DOES_NOT_APPLY}{mode} mode has no broker: the fault has nothing to act on; {CONVERGENCE_NOT_APPLICABLE}"
        ));
    } else if let Some(note) = faults_did_not_apply(&result.faults) {
        result.note = Some(format!("{note}; {CONVERGENCE_NOT_APPLICABLE}"));
    }
    prepared.topology.stop()?;
    applied?;
    Ok(result)
}

/// How often a fault scenario starts a create-then-use sequence.
const CREATE_THEN_USE_EVERY: Duration = Duration::from_millis(100);

/// Why sync mode (and bus-rpc, and the monolith) has no convergence figure.
pub const CONVERGENCE_NOT_APPLICABLE: &str =
    "convergence not applicable: the sync view is assembled from the owners on every read";

/// When the last repair among `events` took effect, in ms from the start of the load;
/// `None` if one of them did not take effect.
pub(super) fn last_repair(events: &[FaultEvent]) -> Option<u64> {
    let mut last = 0;
    let is_repair = |e: &&FaultEvent| Action::parse(&e.action).is_ok_and(|(action, _)| action.is_repair());
    for e in events.iter().filter(is_repair) {
        if e.result != OK {
            return None;
        }
        last = last.max(e.effective_ms.unwrap_or(e.t_ms));
    }
    Some(last)
}

/// Fails unless every planned step was carried out: a scenario whose fault never
/// happened measured something else. A broker step in a mode without a broker, or a
/// step on a component the mode does not have (a service in monolith mode), is skipped
/// by design, not failed.
pub fn ensure_applied(events: &[FaultEvent]) -> anyhow::Result<()> {
    let failed: Vec<String> = events
        .iter()
        .filter(|e| e.result != OK && !skipped_by_design(&e.result))
        .map(|e| format!("{} (planned at {} ms): {}", e.action, e.planned_ms.unwrap_or(e.t_ms), e.result))
        .collect();
    anyhow::ensure!(failed.is_empty(), "planned faults that did not happen: {}", failed.join("; "));
    Ok(())
}

/// Starts the staleness probe, whose acknowledged orders join `acked`; cancel the
/// token, then await the handle for its figures.
fn start_probe(
    prepared: &Prepared,
    acked: Arc<Mutex<Vec<String>>>,
) -> (CancellationToken, tokio::task::JoinHandle<probe::Staleness>) {
    let stop = CancellationToken::new();
    (stop.clone(), tokio::spawn(probe::run(prepared.clients.clone(), prepared.seeded.clone(), acked, stop)))
}

/// One step of a fault schedule.
#[derive(Debug, Clone)]
pub struct Step {
    /// From the start of the load.
    pub at: Duration,
    pub action: Action,
    pub target: &'static str,
    /// The fault this step starts, where faults are counted (the soak); `None` for a
    /// repair.
    pub starts: Option<FaultKind>,
}

/// How long a fault waits, past its planned time, for a write to be in flight: faults
/// are meant to land on writes, the case that can lose one.
const LAND_ON_A_WRITE: Duration = Duration::from_millis(50);

/// Runs the workload open-loop while applying the `steps` at their offsets and
/// sampling resources; returns the load report and what was done. With `writes`, a
/// step that starts a fault first waits (at most [`LAND_ON_A_WRITE`]) for a write to be
/// in flight, and records how many were at the instant it took effect. A step that
/// takes longer than planned delays the later steps and the end of the load by as much.
/// `progress` is told of every step done.
pub async fn load_during(
    prepared: &mut Prepared,
    mut workload: Workload,
    config: OpenLoop,
    mut steps: Vec<Step>,
    sampler: &mut Sampler,
    writes: Option<&InFlight>,
    progress: &mut dyn FnMut(&FaultEvent),
) -> (bench::load::LoadReport, Vec<FaultEvent>) {
    let start = tokio::time::Instant::now();
    let length = Length::new(config.duration);
    let mut load = tokio::spawn(open_loop_for(config, length.clone(), move |_| workload.next_request(), None));
    steps.sort_by_key(|f| f.at);
    let mut events = Vec::new();
    // Victims of a fault carried out and not yet repaired.
    let mut down: Vec<&'static str> = Vec::new();
    // The nodes of a broker cluster the steps that name a role hit.
    let mut roles = super::cluster::Roles::default();
    // How late the schedule runs: a step done later than planned (after a restart that
    // waited for readiness) delays every later step and the end of the load by as much,
    // so each fault keeps its planned length and the load its tail after the last.
    let mut shift = Duration::ZERO;
    let mut pending = steps.into_iter().peekable();
    let mut tick = tokio::time::interval(super::resources::SAMPLE_EVERY);
    let report = loop {
        let next_fault = pending.peek().map(|f| start + f.at + shift);
        tokio::select! {
            report = &mut load => break report.expect("load task"),
            _ = tick.tick() => sampler.sample_load(&prepared.topology.file()),
            _ = async { match next_fault { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                if let Some(step) = pending.next() {
                    // The load waits for the step: one slower than the rest of the load
                    // (a restart, which blocks while its process stops) must not find
                    // the load ended.
                    let held = length.hold();
                    let event = apply_step(prepared, &step, start, sampler, writes, &mut down, &mut roles).await;
                    progress(&event);
                    shift = shift.max(start.elapsed().saturating_sub(step.at));
                    length.extend_to(config.duration + shift);
                    drop(held);
                    events.push(event);
                }
            }
        }
    };
    // A repair of a fault carried out is carried out even when the load has ended (a
    // slow step before it can push it past the end): a fault is never left in place.
    // The load outlived every other step: listed, not silently dropped.
    for step in pending {
        let target = roles.node(step.target).unwrap_or(step.target);
        let event = if step.action.is_repair() && down.contains(&target) {
            tokio::time::sleep_until(start + step.at + shift).await;
            let event = apply_step(prepared, &step, start, sampler, None, &mut down, &mut roles).await;
            progress(&event);
            event
        } else {
            FaultEvent {
                t_ms: report.duration_ms,
                action: step.action.line(step.target),
                result: NOT_APPLIED.to_owned(),
                planned_ms: Some(step.at.as_millis() as u64),
                effective_ms: None,
                fault: step.starts,
                writes_in_flight: None,
                self_healed: None,
            }
        };
        events.push(event);
    }
    (report, events)
}

/// Carries out one step and says how it went; `down` keeps the victims of the faults
/// carried out (kill, pause, slow, partition, …) until their repair. A step on a role
/// of a broker cluster ([`super::cluster::LEADER`], …) acts on the node that has it,
/// found right before (the role is recorded after the action: `kill nats-2 (the
/// stream's leader)`); its repair on the node its fault hit.
async fn apply_step(
    prepared: &mut Prepared,
    step: &Step,
    start: tokio::time::Instant,
    sampler: &mut Sampler,
    writes: Option<&InFlight>,
    down: &mut Vec<&'static str>,
    roles: &mut super::cluster::Roles,
) -> FaultEvent {
    if let (Some(writes), Some(_)) = (writes, step.starts) {
        let waited = tokio::time::Instant::now();
        while writes.count() == 0 && waited.elapsed() < LAND_ON_A_WRITE {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // A SIGKILLed process cannot be read: read every process right before.
    sampler.sample_load(&prepared.topology.file());
    let issued = tokio::time::Instant::now();
    let (target, role) = match super::cluster::resolve(&prepared.topology, step, roles).await {
        Ok(resolved) => resolved,
        Err(e) => (step.target, Some(format!("not resolved: {e}"))),
    };
    let outcome = if step.target == NATS && prepared.topology.nats_url().is_none() {
        SKIPPED_NO_BROKER.to_owned()
    } else if super::cluster::is_role(target) {
        format!("error: {}", role.clone().unwrap_or_default())
    } else {
        match control::apply(&mut prepared.topology, &step.action, target).await {
            Ok(()) => OK.to_owned(),
            Err(TopologyError::NoSuchComponent { mode, component }) => does_not_apply(mode, &component),
            Err(e) => format!("error: {e}"),
        }
    };
    let effective = tokio::time::Instant::now();
    // On swarm a restart waited for the task swarm started by itself: when it served.
    let self_healed = (outcome == OK && step.action == Action::Restart)
        .then(|| prepared.topology.take_self_heal(target))
        .flatten()
        .map(|heal| super::SelfHealed::since(heal, start));
    if outcome == OK {
        if step.action.is_repair() {
            down.retain(|&t| t != target);
        } else {
            down.push(target);
        }
    } else if !step.action.is_repair() && super::cluster::is_role(step.target) {
        roles.not_taken_down(target);
    }
    let ms = |at: tokio::time::Instant| at.duration_since(start).as_millis() as u64;
    let action = match role {
        Some(role) => format!("{} ({role})", step.action.line(target)),
        None => step.action.line(target),
    };
    FaultEvent {
        t_ms: ms(issued),
        action,
        result: outcome,
        planned_ms: Some(step.at.as_millis() as u64),
        effective_ms: Some(ms(effective)),
        fault: step.starts,
        writes_in_flight: writes.filter(|_| step.starts.is_some()).map(InFlight::count),
        self_healed,
    }
}

/// The result of a fault carried out.
pub const OK: &str = "ok";
/// The result of a broker fault in a mode without a broker.
pub const SKIPPED_NO_BROKER: &str = "skipped: no broker in this mode";
/// How the result of a step on a component the mode does not have begins (see
/// [`does_not_apply`]).
pub const DOES_NOT_APPLY: &str = "does not apply: ";

/// The result of a step on `component` in a `mode` that has no such component (a
/// service in monolith mode): `does not apply: monolith mode has no users process`.
pub fn does_not_apply(mode: Mode, component: &str) -> String {
    format!("{DOES_NOT_APPLY}{mode} mode has no {component} process")
}

/// Whether a step's result says it was skipped by design (no broker, or no such
/// component in this mode), not failed.
pub fn skipped_by_design(result: &str) -> bool {
    result == SKIPPED_NO_BROKER || result.starts_with(DOES_NOT_APPLY)
}

/// When none of a scenario's faults applied to this mode (each was on a component it
/// does not have, or on the broker it does not have, and at least one was a
/// component's): the note that says so, with the first reason.
pub fn faults_did_not_apply(events: &[FaultEvent]) -> Option<String> {
    let mut reason = None;
    // A step starts a fault if the soak counts it as one, or if its action is not a
    // repair (a partition is a fault the soak does not count).
    let starts_a_fault =
        |e: &&FaultEvent| e.fault.is_some() || Action::parse(&e.action).is_ok_and(|(a, _)| !a.is_repair());
    for e in events.iter().filter(starts_a_fault) {
        if !skipped_by_design(&e.result) {
            return None;
        }
        if e.result.starts_with(DOES_NOT_APPLY) {
            reason.get_or_insert_with(|| e.result.clone());
        }
    }
    reason.map(|r| format!("{r}: the fault had nothing to act on, so the figures are of the load alone"))
}

/// The result of a step still pending when the load ended.
pub const NOT_APPLIED: &str = "not applied: the load had ended";

/// After the faults: how long until the view equals the truth, and whether any
/// acknowledged order was lost or applied twice.
/// Convergence is timed from `since`; the checker gives up `within` after it.
pub async fn check(
    prepared: &Prepared,
    users: &[String],
    acked: &[String],
    since: tokio::time::Instant,
    within: Duration,
) -> anyhow::Result<(Convergence, Losses)> {
    let convergence = converge(prepared, users, since, within).await?;
    let losses = losses(prepared, users, acked, &convergence.diff).await?;
    Ok((convergence, losses))
}

/// The loss checker: `acked` orders against the view of `users`; phantom rows are the
/// extra rows of `diff`, the last comparison with the truth.
pub async fn losses(
    prepared: &Prepared,
    users: &[String],
    acked: &[String],
    diff: &crate::convergence::Diff,
) -> anyhow::Result<Losses> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, item) in read_view(prepared, users).await? {
        *seen.entry(item.order_id).or_default() += 1;
    }
    Ok(Losses {
        acknowledged_orders: acked.len(),
        lost: acked.iter().filter(|id| !seen.contains_key(*id)).count(),
        duplicated: seen.values().filter(|&&n| n > 1).count(),
        phantom: diff.extra,
        dead_letters: stats(prepared).await?.values().map(|s| s.dead_letters).sum(),
    })
}

/// Comparisons of the view with the truth that run at once.
const COMPARE_CONCURRENCY: usize = 8;

/// One comparison of the query view of `users` with the truth, in a few concurrent
/// slices so that it stays short with many users. With query replicas, every replica's
/// view is compared, each read sent to that replica alone (each has a view of its own in
/// async mode), and the differences are summed.
pub async fn compare_all(prepared: &Prepared, users: &[String]) -> anyhow::Result<crate::convergence::Diff> {
    let truth = crate::convergence::Truth::of(&prepared.clients);
    let slice = users.len().div_ceil(COMPARE_CONCURRENCY).max(1);
    let views = match prepared.clients.query_instances() {
        one if one.len() == 1 => vec![prepared.clients.query.clone()],
        each => each,
    };
    let slices = views.iter().flat_map(|view| {
        let truth = &truth;
        users.chunks(slice).map(move |users| crate::convergence::compare_view(view.clone(), truth, users))
    });
    let diffs = futures::future::try_join_all(slices).await?;
    Ok(diffs.into_iter().fold(crate::convergence::Diff::default(), |mut all, d| {
        all.users_checked += d.users_checked;
        all.missing += d.missing;
        all.extra += d.extra;
        all.wrong += d.wrong;
        all.examples.extend(d.examples);
        all.examples.truncate(10);
        all
    }))
}

/// Compares the query view of `users` with the truth, pass after pass, until they are
/// equal or `within` has passed since `since`. The time is from `since` to the end of
/// the clean pass, with the duration of one pass as its resolution; a first pass that is
/// already clean is reported as such (the view had converged by then: an upper bound).
pub async fn converge(
    prepared: &Prepared,
    users: &[String],
    since: tokio::time::Instant,
    within: Duration,
) -> anyhow::Result<Convergence> {
    let first_check_ms = since.elapsed().as_millis() as u64;
    let mut passes = 0;
    loop {
        let pass = tokio::time::Instant::now();
        let diff = compare_all(prepared, users).await;
        passes += 1;
        let resolution_ms = pass.elapsed().as_millis() as u64;
        match diff {
            Ok(diff) if diff.is_clean() || since.elapsed() > within => {
                let time_ms = since.elapsed().as_millis() as u64;
                return Ok(Convergence {
                    converged: diff.is_clean(),
                    clean_at_first_check: diff.is_clean() && passes == 1,
                    first_check_ms: Some(first_check_ms),
                    passes,
                    time_ms,
                    diff,
                    resolution_ms,
                });
            }
            Err(e) if since.elapsed() > within => return Err(e),
            // The next pass follows at once: the resolution is one pass.
            _ => {}
        }
    }
}

/// Every row of the query view for `users`, with the user whose view showed it.
pub async fn read_view(
    prepared: &Prepared,
    users: &[String],
) -> anyhow::Result<Vec<(String, common::proto::UserOrderItem)>> {
    let mut rows = Vec::new();
    let mut query = prepared.clients.query.clone();
    for user_id in users {
        let request = common::proto::UserOrdersRequest { user_id: user_id.clone() };
        match bench::call(Duration::from_secs(5), request, |r| query.user_orders(r)).await {
            Ok(answer) => rows.extend(answer.items.into_iter().map(|item| (user_id.clone(), item))),
            // A user the view does not have (yet): none of their orders are there.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => anyhow::bail!("the checker cannot read the view of {user_id}: {status}"),
        }
    }
    Ok(rows)
}

/// In async mode, waits until every outbox is published and every consumer has
/// applied everything: the replicas cannot change any more. Nothing to do in sync mode.
/// Returns how long it waited: zero if nothing was left at the first look.
pub async fn drain(prepared: &Prepared, within: Duration) -> anyhow::Result<Duration> {
    let Some(url) = prepared.topology.events_url() else { return Ok(Duration::ZERO) };
    let start = tokio::time::Instant::now();
    let deadline = start + within;
    let mut outboxes = Duration::ZERO;
    while stats(prepared).await?.values().any(|s| s.outbox_pending > 0) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "outboxes did not drain within {} s", within.as_secs());
        tokio::time::sleep(Duration::from_millis(10)).await;
        outboxes = start.elapsed();
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let consumers = crate::convergence::wait_settled_for(&url, 0, &prepared.topology.consumers(), left).await?;
    Ok(match consumers.is_zero() {
        true => outboxes,
        false => start.elapsed(),
    })
}

async fn steady(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    let mut prepared = ctx.prepare(Scenario::Steady.name(), mode, &[], p.seed).await?;
    let mut result = ScenarioResult::default();
    let mut sampler = Sampler::new();
    let mut sequential = crate::latency::sequential(&prepared.clients, &prepared.seeded, p.sequential, 7).await?;
    sequential.propagation =
        Some(crate::latency::propagation(&prepared.clients, &prepared.seeded, p.sequential / 5, 11).await?);
    result.sequential = Some(sequential);
    result.create_then_use = Some(
        crate::latency::create_then_use(
            &prepared.clients,
            &prepared.seeded,
            (p.sequential / 10).max(1),
            Duration::ZERO,
            13,
        )
        .await?,
    );
    // Nothing checks losses after the steady rates: the probe's orders are not kept.
    let (stop_probe, probe) = start_probe(&prepared, Arc::default());
    for (i, &rate) in p.steady_rates.iter().enumerate() {
        let workload = prepared.workload(p, p.seed.seed + i as u64);
        let config = OpenLoop::new(rate, Duration::from_secs_f64(p.steady_secs));
        let (report, _) =
            load_during(&mut prepared, workload, config, Vec::new(), &mut sampler, None, &mut |_| {}).await;
        result.loads.insert(format!("rate-{rate}"), report);
    }
    stop_probe.cancel();
    result.staleness = Some(probe.await?);
    let saturation = saturation_run(&prepared, p, Duration::from_secs_f64(p.steady_secs));
    // Sampled while it runs, like every other load; read right before it (once async has
    // caught up with the earlier phases) and after it once async has caught up with it
    // too (its relay, broker and consumers work on after the replies), so its CPU is its
    // own and whole.
    drain(&prepared, Duration::from_secs(30)).await?;
    sampler.sample(&prepared.topology.file());
    let cpu_before = sampler.cpu_s();
    tokio::pin!(saturation);
    let mut tick = tokio::time::interval(super::resources::SAMPLE_EVERY);
    let saturation = loop {
        tokio::select! {
            report = &mut saturation => break report,
            _ = tick.tick() => sampler.sample_load(&prepared.topology.file()),
        }
    };
    drain(&prepared, Duration::from_secs(30)).await?;
    sampler.sample(&prepared.topology.file());
    result.saturation_cpu_s = Some(sampler.cpu_s() - cpu_before);
    result.loads.insert("saturation".into(), saturation);
    result.set_resources(&sampler);
    prepared.topology.stop()?;
    Ok(result)
}

/// The closed-loop saturation run: the profile's clients, each sending the workload's
/// next request as soon as its last one ended, for `length` (seeded apart from the
/// open-loop runs).
pub(super) fn saturation_run(
    prepared: &Prepared,
    p: &super::Profile,
    length: Duration,
) -> impl std::future::Future<Output = bench::load::LoadReport> {
    let workload = Mutex::new(prepared.workload(p, p.seed.seed + 99));
    closed_loop(p.saturation_clients, length, move |_| {
        workload.lock().unwrap_or_else(|e| e.into_inner()).next_request()
    })
}

/// What a fault on the calls between services gives in a mode that makes none (the
/// monolith): the scenario does not apply, and says so rather than showing a figure.
pub fn no_call_between_services(mode: Mode, action: &Action, target: &str) -> ScenarioResult {
    let reason = does_not_apply(mode, target);
    ScenarioResult {
        faults: vec![FaultEvent {
            t_ms: 0,
            action: action.line(target),
            result: reason.clone(),
            planned_ms: Some(0),
            effective_ms: None,
            fault: None,
            writes_in_flight: None,
            self_healed: None,
        }],
        note: Some(format!("{reason}: no call between services for the fault to act on")),
        ..Default::default()
    }
}

/// The latency slow-dependency adds in front of products.
const SLOWED_BY: Duration = Duration::from_millis(20);

async fn slow_dependency(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    if mode == Mode::Monolith {
        let slow = Action::Slow { latency: SLOWED_BY, jitter: Duration::ZERO };
        return Ok(no_call_between_services(mode, &slow, PRODUCTS));
    }
    let mut result = ScenarioResult::default();
    let mut prepared = ctx.prepare(Scenario::SlowDependency.name(), mode, &[PRODUCTS], p.seed).await?;
    let mut sampler = Sampler::new();
    let added = SLOWED_BY;
    result.added_latency_us = Some(added.as_micros() as u64);
    // Fault times are from the start of the first phase's load.
    let start = tokio::time::Instant::now();
    let ms = |at: tokio::time::Instant| at.duration_since(start).as_millis() as u64;
    for (phase, latency) in [("baseline", Duration::ZERO), ("slowed", added)] {
        let slow = Action::Slow { latency, jitter: Duration::ZERO };
        let issued = tokio::time::Instant::now();
        control::apply(&mut prepared.topology, &slow, PRODUCTS).await?;
        if latency > Duration::ZERO {
            result.faults.push(FaultEvent {
                t_ms: ms(issued),
                action: format!("{} (phase {phase})", slow.line(PRODUCTS)),
                result: OK.into(),
                planned_ms: Some(ms(issued)),
                effective_ms: Some(ms(tokio::time::Instant::now())),
                fault: None,
                writes_in_flight: None,
                self_healed: None,
            });
        }
        let workload = prepared.workload(p, p.seed.seed);
        let partial = workload.partial_answers();
        let config = OpenLoop::new(p.fault_rate, p.secs(2.5));
        let (report, _) =
            load_during(&mut prepared, workload, config, Vec::new(), &mut sampler, None, &mut |_| {}).await;
        result.loads.insert(phase.into(), report);
        result.partial_answers.insert(phase.into(), partial.load(std::sync::atomic::Ordering::Relaxed));
    }
    result.set_resources(&sampler);
    prepared.topology.stop()?;
    Ok(result)
}

async fn storage(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    if ctx.target != crate::topology::Target::Process {
        return Ok(ScenarioResult {
            note: Some("on-disk sizes are measured on the process target".into()),
            ..Default::default()
        });
    }
    let mut prepared = ctx.prepare(Scenario::Storage.name(), mode, &[], ctx.profile.storage_seed).await?;
    // Stopped first, so every store is flushed and closed.
    prepared.topology.stop()?;
    let (bytes, logical) = measure_storage(&prepared.topology)?;
    let s = ctx.profile.storage_seed;
    Ok(ScenarioResult {
        storage: Some(bytes),
        logical_storage: Some(logical),
        note: Some(format!(
            "{} users, {} products, {} orders, then stopped and measured",
            s.users, s.products, s.orders
        )),
        ..Default::default()
    })
}

/// Bytes on disk per component, and logical bytes per sled tree per service, of a
/// topology that has stopped (so no store is open in another process).
pub fn measure_storage(
    topology: &crate::topology::Topology,
) -> anyhow::Result<(BTreeMap<String, u64>, super::LogicalStorage)> {
    let mut bytes = BTreeMap::new();
    let mut logical = BTreeMap::new();
    for s in &topology.services {
        // File sizes first: opening a sled database may write to its directory.
        bytes.insert(s.name.to_string(), super::resources::disk_bytes(&s.data_dir));
        if s.kind == crate::topology::Kind::Service {
            let trees = super::resources::logical_bytes(&s.data_dir)?;
            logical.insert(s.name.to_string(), trees.unwrap_or_default());
        }
    }
    Ok((bytes, logical))
}

/// Every service process's `Admin.Stats`, by component (`query-1`, `query-2` … for
/// replicas; `monolith` once in monolith mode).
pub async fn stats(prepared: &Prepared) -> anyhow::Result<BTreeMap<String, StatsResponse>> {
    let mut all = BTreeMap::new();
    for service in prepared.topology.service_processes() {
        let mut admin = AdminClient::new(common::channel(service.public_address()));
        all.insert(service.name.to_string(), admin.stats(StatsRequest {}).await?.into_inner());
    }
    Ok(all)
}

/// Inter-service calls made between two snapshots, by hop.
pub(super) fn rpcs_between(
    before: &BTreeMap<String, StatsResponse>,
    after: &BTreeMap<String, StatsResponse>,
) -> BTreeMap<String, u64> {
    let mut hops = BTreeMap::new();
    for (service, now) in after {
        for (hop, n) in &now.rpcs_sent {
            let was = before.get(service).and_then(|b| b.rpcs_sent.get(hop)).copied().unwrap_or(0);
            *hops.entry(hop.clone()).or_default() += n - was;
        }
    }
    hops
}

async fn fan_out(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    let mut prepared = ctx.prepare(Scenario::FanOut.name(), mode, &[], p.seed).await?;
    let n = (p.sequential / 5).max(50) as u64;
    let mut fanout = Fanout::default();
    let mut events = (0u64, 0u64, 0u64);
    for (op, mix) in [
        (crate::workload::USER_ORDERS, Mix { user_orders: 1, place_order: 0, update_price: 0 }),
        (crate::workload::PLACE_ORDER, Mix { user_orders: 0, place_order: 1, update_price: 0 }),
        (crate::workload::UPDATE_PRICE, Mix { user_orders: 0, place_order: 0, update_price: 1 }),
    ] {
        let before = stats(&prepared).await?;
        let mut workload =
            Workload::new(prepared.clients.clone(), prepared.seeded.clone(), mix, Duration::from_secs(5), p.seed.seed);
        for _ in 0..n {
            workload.next_request().1.await;
        }
        drain(&prepared, Duration::from_secs(30)).await?;
        let after = stats(&prepared).await?;
        let hops = rpcs_between(&before, &after);
        let total: u64 = hops.values().sum();
        fanout.requests.insert(op.into(), n);
        fanout.rpcs_per_request.insert(op.into(), total as f64 / n as f64);
        fanout.rpcs_by_hop.insert(op.into(), hops.into_iter().map(|(h, c)| (h, c as f64 / n as f64)).collect());
        if op != crate::workload::USER_ORDERS {
            let sum =
                |s: &BTreeMap<String, StatsResponse>, f: fn(&StatsResponse) -> u64| s.values().map(f).sum::<u64>();
            events.0 += n;
            events.1 += sum(&after, |s| s.events_published) - sum(&before, |s| s.events_published);
            events.2 += sum(&after, |s| s.events_applied) - sum(&before, |s| s.events_applied);
        }
    }
    fanout.events_published_per_write = events.1 as f64 / events.0 as f64;
    fanout.events_applied_per_write = events.2 as f64 / events.0 as f64;
    prepared.topology.stop()?;
    Ok(ScenarioResult { fanout: Some(fanout), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, result: &str) -> FaultEvent {
        FaultEvent {
            t_ms: 10,
            action: action.into(),
            result: result.into(),
            planned_ms: Some(10),
            effective_ms: None,
            fault: None,
            writes_in_flight: None,
            self_healed: None,
        }
    }

    #[test]
    fn a_scenario_whose_planned_fault_never_happened_fails() {
        assert!(ensure_applied(&[event("kill users", OK), event("kill nats", SKIPPED_NO_BROKER)]).is_ok());
        let err = ensure_applied(&[event("kill users", OK), event("restart users", NOT_APPLIED)]).unwrap_err();
        assert!(err.to_string().contains("restart users"), "{err}");
        assert!(ensure_applied(&[event("pause products", "error: not running")]).is_err());
        let monolith = does_not_apply(Mode::Monolith, "users");
        assert_eq!(monolith, "does not apply: monolith mode has no users process");
        assert!(ensure_applied(&[event("kill users", &monolith), event("restart users", &monolith)]).is_ok());
    }

    #[test]
    fn a_scenario_none_of_whose_faults_applied_says_so() {
        let fault = |action: &str, result: &str| FaultEvent { fault: Some(FaultKind::Kill), ..event(action, result) };
        let monolith = does_not_apply(Mode::Monolith, "users");
        let note =
            faults_did_not_apply(&[fault("kill users", &monolith), event("restart users", &monolith)]).expect("a note");
        assert!(note.starts_with("does not apply: monolith mode has no users process"), "{note}");
        assert_eq!(faults_did_not_apply(&[fault("kill users", OK), fault("kill products", &monolith)]), None);
        // Chaos in a monolith: service faults that do not apply, broker faults skipped.
        let chaos = [fault("kill nats", SKIPPED_NO_BROKER), fault("kill users", &monolith)];
        assert!(faults_did_not_apply(&chaos).is_some_and(|n| n.contains("no users process")));
        assert_eq!(faults_did_not_apply(&[fault("kill nats", SKIPPED_NO_BROKER)]), None, "sync's broker skip");
        assert_eq!(faults_did_not_apply(&[event("restart users", &monolith)]), None, "no fault, no note");
        // A partition (compose) starts a fault though it is not one the soak counts.
        let partition = [event("partition users", &monolith), event("reconnect users", &monolith)];
        assert!(faults_did_not_apply(&partition).is_some_and(|n| n.contains("no users process")));
    }
}
