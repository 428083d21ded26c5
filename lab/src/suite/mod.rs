//! `lab bench`: the benchmark suite. Every scenario runs in each mode on a fresh
//! topology, seeded alike, under the same workload; the modes' order flips from one
//! scenario (or round) to the next (ABBA, [`plan`]) so a drifting machine hits both,
//! and the latency scenarios run over several rounds so each headline figure has a
//! spread. Results are one versioned JSON file, with the order that actually ran.

pub mod blip;
pub mod cluster;
pub mod curves;
pub mod floor;
pub mod probe;
pub mod replicas;
pub mod resources;
pub mod scenario;
pub mod scenarios;
pub mod schedule;
pub mod soak;
pub mod summary;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bench::load::LoadReport;
use common::config::{Mode, Policy};
pub use scenario::Scenario;
use serde::{Deserialize, Serialize};

use crate::{
    client::Clients,
    convergence::Diff,
    latency::Latencies,
    seed::{SeedConfig, Seeded},
    topology::{Config, Topology},
    workload::{Mix, Workload},
};

/// Bumped when the meaning of a field changes.
pub const RESULTS_VERSION: u32 = 1;

/// How big and how long: `quick` (the default) or `full`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// Open-loop rates of the steady scenario, requests per second.
    pub steady_rates: Vec<f64>,
    /// Length of each steady rate and of the saturation run.
    pub steady_secs: f64,
    /// Rate of the fault scenarios.
    pub fault_rate: f64,
    /// Scale of the fault scenarios' timelines (1.0 = quick).
    pub stretch: f64,
    /// Length of the chaos scenario.
    pub chaos_secs: f64,
    /// Concurrent clients of the saturation run.
    pub saturation_clients: usize,
    /// Sequential requests of the floor and of the sequential latency figures.
    pub sequential: usize,
    pub seed: SeedConfig,
    pub storage_seed: SeedConfig,
    /// Per-request deadline of the workload.
    pub deadline_ms: u64,
    /// Service faults of the soak scenario, per mode (`--kills`).
    #[serde(default = "default_soak_faults")]
    pub soak_faults: usize,
    /// Whether the default suite (no `--scenario`) includes the long scenarios.
    #[serde(default)]
    pub long_scenarios: bool,
    /// Rounds of the latency scenarios ([`Scenario::is_latency`]) (results from before rounds: 1).
    #[serde(default = "one")]
    pub rounds: usize,
    /// The workload's mix of operations (absent in results from before it was
    /// recorded: the report then says so rather than assume one).
    #[serde(default)]
    pub mix: Option<Mix>,
    /// Fractions of the measured saturation the load curve offers, one rung each.
    #[serde(default = "quick_curve_fractions")]
    pub curve_fractions: Vec<f64>,
    /// Length of each load-curve rung, and of its saturation run.
    #[serde(default = "one_second")]
    pub curve_step_secs: f64,
    /// Orders placed for one user, per point of the orders-per-user curve.
    #[serde(default = "quick_orders_per_user")]
    pub orders_per_user: Vec<usize>,
    /// Sequential `UserOrders` reads per point of the orders-per-user curve.
    #[serde(default = "quick_orders_per_user_reads")]
    pub orders_per_user_reads: usize,
    /// overload-blip: the open-loop load as a share of the mode's measured saturation.
    #[serde(default = "blip_load_share")]
    pub blip_load_share: f64,
    /// overload-blip: seconds of load before the blip, of the blip, and after it.
    #[serde(default = "blip_phases_secs")]
    pub blip_phases_secs: [f64; 3],
    /// overload-blip: the fault applied to products' proxy for the blip, as `lab`'s
    /// control line (`slow products 50 0`: 50 ms added, no jitter); healed after it.
    #[serde(default = "blip_fault")]
    pub blip_fault: String,
}

fn default_soak_faults() -> usize {
    soak::DEFAULT_FAULTS
}

fn one() -> usize {
    1
}

fn quick_curve_fractions() -> Vec<f64> {
    vec![0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25]
}

fn one_second() -> f64 {
    1.0
}

fn quick_orders_per_user() -> Vec<usize> {
    vec![10, 100, 1000]
}

fn quick_orders_per_user_reads() -> usize {
    50
}

/// Half the sustained rate: at 0.7 (this machine, release build) naive sync and async
/// lost goodput seconds after the blip had healed, with no retry sent, so that share
/// left too little headroom to tell what the blip and a policy did from what the load
/// alone did; the load curve serves every variant at 0.5 with its p99 under 15 ms.
fn blip_load_share() -> f64 {
    0.5
}

fn blip_phases_secs() -> [f64; 3] {
    [2.0, 2.0, 5.0]
}

fn blip_fault() -> String {
    "slow products 50 0".into()
}

impl Profile {
    pub fn quick(seed: u64) -> Self {
        Self {
            name: "quick".into(),
            steady_rates: vec![200.0, 1000.0],
            // Four modes in about five minutes: shorter phases than the two-mode
            // suite had (2 s rates, fault timelines 1.0, chaos 10 s, 1000 sequential).
            steady_secs: 1.5,
            fault_rate: 200.0,
            stretch: 0.7,
            chaos_secs: 7.0,
            saturation_clients: 64,
            sequential: 500,
            seed: SeedConfig { users: 100, products: 50, orders: 500, seed },
            storage_seed: SeedConfig { users: 500, products: 100, orders: 3000, seed },
            deadline_ms: 500,
            soak_faults: soak::DEFAULT_FAULTS,
            long_scenarios: false,
            rounds: 2,
            mix: Some(Mix::default()),
            curve_fractions: quick_curve_fractions(),
            curve_step_secs: one_second(),
            orders_per_user: quick_orders_per_user(),
            orders_per_user_reads: quick_orders_per_user_reads(),
            blip_load_share: blip_load_share(),
            blip_phases_secs: blip_phases_secs(),
            blip_fault: blip_fault(),
        }
    }

    pub fn full(seed: u64) -> Self {
        Self {
            name: "full".into(),
            steady_rates: vec![100.0, 500.0, 1000.0, 2000.0, 4000.0],
            steady_secs: 10.0,
            fault_rate: 500.0,
            stretch: 3.0,
            chaos_secs: 60.0,
            saturation_clients: 64,
            sequential: 5000,
            seed: SeedConfig { users: 1000, products: 200, orders: 5000, seed },
            storage_seed: SeedConfig { users: 5000, products: 500, orders: 30000, seed },
            deadline_ms: 500,
            soak_faults: soak::DEFAULT_FAULTS,
            long_scenarios: true,
            rounds: 3,
            mix: Some(Mix::default()),
            curve_fractions: vec![0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5],
            curve_step_secs: 5.0,
            orders_per_user: vec![10, 100, 1000, 10_000],
            orders_per_user_reads: 500,
            blip_load_share: blip_load_share(),
            blip_phases_secs: [5.0, 2.0, 20.0],
            blip_fault: blip_fault(),
        }
    }

    /// The mix the scenarios' workloads use: the recorded one.
    pub fn workload_mix(&self) -> Mix {
        self.mix.unwrap_or_default()
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    fn secs(&self, s: f64) -> Duration {
        Duration::from_secs_f64(s * self.stretch)
    }
}

/// A fault as the suite applied it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    /// When it was issued, from the start of the scenario's load.
    pub t_ms: u64,
    pub action: String,
    /// "ok", or why it could not be done.
    pub result: String,
    /// When the schedule wanted it (the soak: the same in every mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_ms: Option<u64>,
    /// When the call that carried it out returned (the process dead, frozen, or
    /// serving again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ms: Option<u64>,
    /// The kind of fault this step starts; `None` for a repair (and in scenarios that
    /// do not count faults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultKind>,
    /// Writes outstanding at the effective instant of a fault (the soak's writers', or
    /// the workload's in chaos and the other fault scenarios); absent for a repair and
    /// in results from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_in_flight: Option<u64>,
    /// The swarm target, on the repair of a kill (or on a restart): swarm replaced the
    /// task by itself, and the step only waited for it. Absent on the other targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_healed: Option<SelfHealed>,
}

/// When a component whose task a fault ended served again from swarm's next task, as
/// the lab's watcher saw it (polling every 20 ms from the fault on).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SelfHealed {
    /// When it answered again on its published port (gRPC health SERVING; the broker:
    /// its greeting), ms from the start of the load; before the step was issued when
    /// swarm was quicker than the schedule.
    pub serving_again_ms: u64,
    /// When its new task was then first seen healthy (its health check passed; the
    /// broker, which has none: running) and running for swarm, ms from the start of the
    /// load.
    pub healthy_ms: u64,
    /// From the fault taking effect (`docker kill` returned; a restart: `docker stop`)
    /// until it served again: the gap.
    pub gap_ms: u64,
    /// From the fault taking effect until the new task was healthy.
    pub until_healthy_ms: u64,
}

impl SelfHealed {
    /// `heal` in ms from `start`, the start of the load.
    pub fn since(heal: crate::topology::SelfHeal, start: tokio::time::Instant) -> Self {
        let ms = |at: std::time::Instant| at.saturating_duration_since(start.into_std()).as_millis() as u64;
        SelfHealed {
            serving_again_ms: ms(heal.serving_at),
            healthy_ms: ms(heal.healthy_at),
            gap_ms: heal.gap().as_millis() as u64,
            until_healthy_ms: heal.until_healthy().as_millis() as u64,
        }
    }
}

/// A fault the soak counts. Each comes with its own repair: a killed component is
/// restarted, a paused one resumed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// SIGKILL, then a restart on the same address and data dir.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGTERM (SIGKILL after the grace period) and a start on the same data dir.
    Restart,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Convergence {
    pub diff: Diff,
    /// From the last repair that took effect until the end of the comparison that found
    /// the view equal to the truth (or of the last one, if it never did).
    pub time_ms: u64,
    pub converged: bool,
    /// How long one comparison took: the resolution of `time_ms`.
    #[serde(default)]
    pub resolution_ms: u64,
    /// The first comparison was already clean: the view had converged by the time it
    /// ended, and `time_ms` is only an upper bound (comparisons begin once the writes
    /// stop, `first_check_ms` after the repair).
    #[serde(default)]
    pub clean_at_first_check: bool,
    /// When the first comparison began, from the last repair (absent in older files).
    #[serde(default)]
    pub first_check_ms: Option<u64>,
    /// Comparisons made.
    #[serde(default)]
    pub passes: u32,
}

impl Convergence {
    /// How long after the last repair the view equalled the truth, as precisely as it
    /// was measured: an upper bound when the first comparison was already clean.
    pub fn describe(&self) -> String {
        match (self.converged, self.clean_at_first_check) {
            (false, _) => format!("had not converged {} ms after the last repair", self.time_ms),
            (true, true) => format!("within {} ms of the last repair (clean at the first check)", self.time_ms),
            (true, false) => format!("{} ± {} ms after the last repair", self.time_ms, self.resolution_ms),
        }
    }
}

/// The checker's verdict on acknowledged writes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Losses {
    pub acknowledged_orders: usize,
    /// Acknowledged orders missing from the view (must be 0).
    pub lost: usize,
    /// Orders the view shows more than once (must be 0). The async view is keyed by
    /// order id and every consumer skips events it applied before, so a duplicate
    /// delivery cannot add a row; this count is what would catch a view that did.
    pub duplicated: usize,
    /// Rows of the view that the owners do not have (must be 0).
    pub phantom: usize,
    /// Events and outbox records the services set aside for good (`Admin.Stats`,
    /// summed over every service; must be 0: each is something not applied or not
    /// published).
    #[serde(default)]
    pub dead_letters: u64,
}

impl Losses {
    /// Nothing lost, applied twice, made up or given up on.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.phantom == 0 && self.dead_letters == 0
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Fanout {
    /// Requests sent per operation.
    pub requests: BTreeMap<String, u64>,
    /// Inter-service gRPC calls per client request, per operation, counted by the
    /// services themselves.
    pub rpcs_per_request: BTreeMap<String, f64>,
    /// The same by hop ("users.GetUser", …).
    pub rpcs_by_hop: BTreeMap<String, BTreeMap<String, f64>>,
    /// Events published per write, and applied by consumers per write.
    pub events_published_per_write: f64,
    pub events_applied_per_write: f64,
}

/// One scenario in one mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub mode: Mode,
    /// How the services' inter-service calls met failure (`--policies`); naive for the
    /// modes that make none (async, the monolith) and in results from before the axis.
    #[serde(default)]
    pub policy: Policy,
    /// Which round of the scenario (from 1; results from before rounds: 1; 0 when run
    /// outside the suite).
    #[serde(default = "one")]
    pub round: usize,
    pub seconds: f64,
    /// Load runs by name ("rate-200", "saturation", "baseline", "slowed", "run").
    pub loads: BTreeMap<String, LoadReport>,
    pub sequential: Option<Latencies>,
    pub faults: Vec<FaultEvent>,
    pub staleness: Option<probe::Staleness>,
    pub convergence: Option<Convergence>,
    pub losses: Option<Losses>,
    /// CPU seconds and peak RSS per component during the scenario (see
    /// [`resources`] for what is counted).
    pub resources: BTreeMap<String, resources::Usage>,
    /// CPU seconds of the lab process (load generator, staleness probe, checker) over
    /// the same samples.
    #[serde(default)]
    pub generator_cpu_s: Option<f64>,
    /// Bytes on disk per component (storage scenario): file sizes, so sled's log
    /// segments, churn and the broker's store included.
    pub storage: Option<BTreeMap<String, u64>>,
    /// Logical bytes (keys + values) per sled tree, per component (storage scenario),
    /// read from each data dir after the topology stopped. A component whose data dir
    /// holds no sled database has no trees; the broker (not sled) is not listed.
    #[serde(default)]
    pub logical_storage: Option<LogicalStorage>,
    pub fanout: Option<Fanout>,
    pub note: Option<String>,
    /// The soak's checker: the history of every acknowledged write against the system.
    #[serde(default)]
    pub soak: Option<soak::Soak>,
    /// The latency the fault proxy added in front of the slowed dependency
    /// (slow-dependency), in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_latency_us: Option<u64>,
    /// Create a user, then at once order for them (steady): how often the first order
    /// is refused, and how long until it is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_then_use: Option<crate::latency::CreateThenUse>,
    /// Latency against offered load (load-curve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_curve: Option<curves::LoadCurve>,
    /// `UserOrders` against the orders a user has, one point per size (orders-per-user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders_per_user: Option<Vec<curves::OrdersPerUser>>,
    /// CPU seconds of every service and broker process over the saturation run alone
    /// (steady): the sampler read before and after that run, after it once async's
    /// relay, broker and consumers had caught up with its writes (the lab process not
    /// included). Absent in results from before it was recorded; results before 2026-11-29
    /// read it right after the run, without async's catching up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturation_cpu_s: Option<f64>,
    /// `UserOrders` answers that succeeded but were marked partial (a degraded answer:
    /// no product details), per load run; absent where not counted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partial_answers: BTreeMap<String, u64>,
    /// overload-blip's measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blip: Option<blip::Blip>,
    /// The scenarios on a broker cluster (kill-broker-node, lose-broker-quorum): the
    /// cluster and where the event stream was before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<cluster::ClusterRun>,
    /// kill-replica: the query replicas, the one killed, and what the clients' balancer
    /// saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<replicas::ReplicaRun>,
}

/// Logical bytes (keys + values) per sled tree, per component.
pub type LogicalStorage = BTreeMap<String, BTreeMap<String, u64>>;

impl ScenarioResult {
    /// The column name of its variant: `sync`, `sync hardened`, … (see [`variant_label`]).
    pub fn label(&self) -> String {
        variant_label(self.mode, self.policy)
    }

    /// Records what `sampler` measured.
    pub fn set_resources(&mut self, sampler: &resources::Sampler) {
        self.resources = sampler.usage();
        self.generator_cpu_s = sampler.generator_cpu_s();
    }

    /// Logical bytes per component (the sum over its trees), where measured.
    pub fn logical_totals(&self) -> Option<BTreeMap<String, u64>> {
        let components = self.logical_storage.as_ref()?;
        Some(components.iter().map(|(name, trees)| (name.clone(), trees.values().sum())).collect())
    }

    /// The swarm target's self-heals, in the order of the steps: each component a fault
    /// ended, and ms from the fault until swarm's next task served, and until it was
    /// healthy.
    pub fn self_heals(&self) -> Vec<(String, u64, u64)> {
        self.faults
            .iter()
            .filter_map(|e| {
                let heal = e.self_healed?;
                Some((crate::control::Action::parse(&e.action).ok()?.1, heal.gap_ms, heal.until_healthy_ms))
            })
            .collect()
    }

    /// [`ScenarioResult::self_heals`] in words: "users 1.42 s (healthy 2.10 s),
    /// products …"; past four, "12 times: p50 1.40 s (healthy 2.05 s), max …". `None` if
    /// there were none.
    pub fn describe_self_heals(&self) -> Option<String> {
        let heals = self.self_heals();
        let secs = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
        let pair = |gap: u64, healthy: u64| format!("{} (healthy {})", secs(gap), secs(healthy));
        match heals.len() {
            0 => None,
            1..=4 => Some(
                heals
                    .iter()
                    .map(|(name, gap, healthy)| format!("{name} {}", pair(*gap, *healthy)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            n => {
                let mut gaps: Vec<u64> = heals.iter().map(|h| h.1).collect();
                let mut healthy: Vec<u64> = heals.iter().map(|h| h.2).collect();
                gaps.sort_unstable();
                healthy.sort_unstable();
                let (mid, last) = ((n - 1) / 2, n - 1);
                Some(format!(
                    "{n} times: p50 {}, max {}",
                    pair(gaps[mid], healthy[mid]),
                    pair(gaps[last], healthy[last])
                ))
            }
        }
    }
}

/// A target of the issue that set up the suite, and where this run stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: f64,
    pub limit: f64,
    pub met: bool,
    pub how: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub cores: usize,
    pub build_profile: String,
    pub commit: String,
    pub nats_server: Option<String>,
    /// Versions of the crates that matter, from Cargo.lock.
    pub crates: BTreeMap<String, String>,
    pub cpu_pinning: bool,
    pub target: String,
    pub command: String,
    pub started_unix_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub version: u32,
    pub environment: Environment,
    pub profile: Profile,
    pub modes: Vec<Mode>,
    pub floor: Option<floor::Floor>,
    pub scenarios: Vec<ScenarioResult>,
    pub targets: Vec<TargetCheck>,
    /// Lines of code that exist only for each mode's way of communicating.
    #[serde(default)]
    pub complexity: Complexity,
    /// What ran, in the order it ran (empty in results from before it was recorded).
    #[serde(default)]
    pub run_order: Vec<Ran>,
    /// The policies asked for (`--policies`); empty in results from before the axis,
    /// which ran naive alone.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Broker servers of async and bus-rpc modes (`--brokers`): 1, or a JetStream
    /// cluster of 3 with the event stream replicated 3 times (1 in results from before
    /// it was recorded). The cluster scenarios run on 3 whatever it says.
    #[serde(default = "one")]
    pub brokers: usize,
    /// Instances of the query service in every scenario but the monolith's
    /// (`--replicas`; 1 in results from before it was recorded). kill-replica runs 2
    /// whatever it says.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Shards of each owner (users, products, orders) in every scenario but the
    /// monolith's (`--replicas owners=N`; 1 in results from before it was recorded).
    /// kill-replica runs 2 whatever it says.
    #[serde(default = "one")]
    pub shards: usize,
}

/// Whether `mode` makes inter-service calls, so that a policy applies to it (sync,
/// bus-rpc); async and the monolith run once, naive.
pub fn has_policies(mode: Mode) -> bool {
    matches!(mode, Mode::Sync | Mode::BusRpc)
}

/// A mode under a policy as a column is named: the bare mode for naive (`sync`), else
/// the mode and the policy (`sync hardened`, `bus-rpc retry-storm`).
pub fn variant_label(mode: Mode, policy: Policy) -> String {
    match policy {
        Policy::Naive => mode.to_string(),
        p => format!("{mode} {p}"),
    }
}

/// The variants `modes` × `policies` make, in the order asked: each request/reply mode
/// once per policy, async and the monolith once (naive).
pub fn variants(modes: &[Mode], policies: &[Policy]) -> Vec<(Mode, Policy)> {
    let mut out = Vec::new();
    for &m in modes {
        if has_policies(m) && !policies.is_empty() {
            out.extend(policies.iter().map(|&p| (m, p)));
        } else {
            out.push((m, Policy::Naive));
        }
    }
    out
}

impl Results {
    /// A results file a `lab bench` run wrote, of this lab's results version.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {}: pass the results.json a `lab bench` run printed", path.display())
        })?;
        let results: Results =
            serde_json::from_str(&text).with_context(|| format!("{} is not a Cascade results file", path.display()))?;
        anyhow::ensure!(
            results.version == RESULTS_VERSION,
            "{} has results version {}; this lab reads version {}",
            path.display(),
            results.version,
            RESULTS_VERSION
        );
        Ok(results)
    }

    /// `scenario` in `mode` under the naive policy (every mode's plain run): its first
    /// round.
    pub fn scenario(&self, scenario: Scenario, mode: Mode) -> Option<&ScenarioResult> {
        self.runs(scenario, mode).next()
    }

    /// Every round of `scenario` in `mode` under the naive policy, in the order they ran.
    pub fn runs(&self, scenario: Scenario, mode: Mode) -> impl Iterator<Item = &ScenarioResult> {
        self.runs_with(scenario, mode, Policy::Naive)
    }

    /// `scenario` in `mode` under `policy`: its first round.
    pub fn scenario_with(&self, scenario: Scenario, mode: Mode, policy: Policy) -> Option<&ScenarioResult> {
        self.runs_with(scenario, mode, policy).next()
    }

    /// Every round of `scenario` in `mode` under `policy`, in the order they ran.
    pub fn runs_with(&self, scenario: Scenario, mode: Mode, policy: Policy) -> impl Iterator<Item = &ScenarioResult> {
        self.scenarios.iter().filter(move |s| s.scenario == scenario && s.mode == mode && s.policy == policy)
    }

    /// The policies the run asked for (naive alone in results from before the axis).
    pub fn policies(&self) -> Vec<Policy> {
        if self.policies.is_empty() {
            vec![Policy::Naive]
        } else {
            self.policies.clone()
        }
    }

    /// Whether the run had a policy besides naive.
    pub fn has_policy_axis(&self) -> bool {
        self.policies().iter().any(|&p| p != Policy::Naive)
    }

    /// The run's variants (mode × policy), in the order asked.
    pub fn variants(&self) -> Vec<(Mode, Policy)> {
        variants(&self.modes, &self.policies())
    }

    /// `scenario` in each variant that ran it (first round), labelled as its column.
    pub fn by_variant(&self, scenario: Scenario) -> Vec<(String, &ScenarioResult)> {
        // A scenario no policy changes ran each mode once, under naive, whatever the
        // policies asked for.
        if !scenario.policy_applies() {
            let naive = self.modes.iter().map(|&m| (m, Policy::Naive));
            return naive.filter_map(|(m, p)| Some((m.to_string(), self.scenario_with(scenario, m, p)?))).collect();
        }
        self.variants()
            .into_iter()
            .filter_map(|(m, p)| Some((variant_label(m, p), self.scenario_with(scenario, m, p)?)))
            .collect()
    }

    /// The scenarios that have results, in the order they first ran.
    pub fn scenarios_ran(&self) -> Vec<Scenario> {
        let mut ran: Vec<Scenario> = Vec::new();
        for s in &self.scenarios {
            if !ran.contains(&s.scenario) {
                ran.push(s.scenario);
            }
        }
        ran
    }
}

/// One scenario run, as the suite started it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ran {
    pub scenario: Scenario,
    /// `None` for the floor, which is not a mode's.
    pub mode: Option<Mode>,
    pub round: usize,
    /// The policy it ran under (naive in results from before the axis).
    #[serde(default)]
    pub policy: Policy,
}

/// One step of the suite's plan: a scenario in one variant (none for the floor), in
/// one round.
pub type Planned = (Scenario, Option<(Mode, Policy)>, usize);

/// The order the suite runs `scenarios` in: each in every variant (each mode, the
/// request/reply modes once per policy: [`variants`]), the variants' order flipped from
/// one scenario (or round) to the next (sync, async, then async, sync: ABBA), so that a
/// machine whose speed drifts does not favour the variant that always runs first; the
/// latency scenarios `rounds` times.
pub fn plan(scenarios: &[Scenario], modes: &[Mode], policies: &[Policy], rounds: usize) -> Vec<Planned> {
    let mut steps = Vec::new();
    let mut flipped = false;
    for &s in scenarios {
        if s.is_per_machine() {
            steps.push((s, None, 1));
            continue;
        }
        // A scenario no policy can change runs each mode once, under naive.
        let variants = variants(modes, if s.policy_applies() { policies } else { &[Policy::Naive] });
        let rounds = if s.is_latency() { rounds.max(1) } else { 1 };
        for round in 1..=rounds {
            let mut order = variants.clone();
            if flipped {
                order.reverse();
            }
            flipped = !flipped;
            steps.extend(order.into_iter().map(|v| (s, Some(v), round)));
        }
    }
    steps
}

/// How much code each mode's communication takes: the files that exist for it alone,
/// counted without blank lines, comments and tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Complexity {
    pub lines: BTreeMap<String, usize>,
    pub files: BTreeMap<String, Vec<String>>,
}

impl Complexity {
    pub fn of_this_build() -> Self {
        macro_rules! files {
            ($($path:literal),* $(,)?) => { vec![$(($path, include_str!(concat!("../../../", $path)))),*] };
        }
        // query's chain.rs is sync's call chain (bus-rpc shares it).
        let sync = files![
            "services/common/src/deadline.rs",
            "services/orders/src/sync.rs",
            "services/query/src/chain.rs",
            "services/query/src/sync.rs",
        ];
        let r#async = files![
            "proto/events.proto",
            "services/common/src/events.rs",
            "services/common/src/outbox.rs",
            "services/common/src/consumer.rs",
            "services/common/src/broker.rs",
            "services/orders/src/events.rs",
            "services/query/src/events.rs",
        ];
        // The monolith's wiring of the four services in one process, and the chain it
        // calls in process.
        let monolith = files!["services/monolith/src/lib.rs", "services/query/src/chain.rs"];
        let mut c = Complexity::default();
        for (mode, files) in [("sync", sync), ("async", r#async), ("monolith", monolith)] {
            c.lines.insert(mode.into(), files.iter().map(|(_, text)| code_lines(text)).sum());
            c.files.insert(mode.into(), files.iter().map(|(path, _)| path.to_string()).collect());
        }
        c
    }
}

/// Lines of code before any test module, without blank lines and comments.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

/// What `lab bench` was asked to do.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub profile: Profile,
    pub scenarios: Vec<Scenario>,
    pub modes: Vec<Mode>,
    /// The policies of the request/reply modes (`--policies`; naive alone by default).
    pub policies: Vec<Policy>,
    pub runs: PathBuf,
    pub command: String,
    /// Processes or Compose.
    pub target: crate::topology::Target,
    /// Broker servers of async and bus-rpc modes (`--brokers`: 1 or 3).
    pub brokers: usize,
    /// Instances of the query service (`--replicas`: 1 to 5).
    pub replicas: usize,
    /// Shards of each owner (`--replicas owners=N`: 1 to 5).
    pub shards: usize,
}

/// Everything a scenario needs from the suite.
pub struct Ctx {
    pub profile: Profile,
    pub dir: PathBuf,
    pub target: crate::topology::Target,
    /// Every service of a prepared topology is started with it.
    pub policy: Policy,
    /// Broker servers of a prepared topology (async, bus-rpc): 1 or 3.
    pub brokers: usize,
    /// Instances of the query service of a prepared topology (1 to 5; the monolith has
    /// none of its own).
    pub replicas: usize,
    /// Shards of each owner of a prepared topology (1 to 5).
    pub shards: usize,
}

/// A fresh topology of `mode` in its own run dir, seeded with `seed`, with its
/// replicas settled.
pub struct Prepared {
    pub topology: Topology,
    pub clients: Clients,
    pub seeded: Arc<Seeded>,
}

impl Prepared {
    /// The profile's workload (its mix and deadline) on this topology's data, from `seed`.
    pub fn workload(&self, p: &Profile, seed: u64) -> Workload {
        Workload::new(self.clients.clone(), self.seeded.clone(), p.workload_mix(), p.deadline(), seed)
    }
}

impl Ctx {
    /// Naive policy on local processes, under `dir`: what tests and a plain suite start from.
    pub fn on_processes(profile: Profile, dir: &Path) -> Self {
        Ctx {
            profile,
            dir: dir.to_path_buf(),
            target: crate::topology::Target::Process,
            policy: Policy::Naive,
            brokers: 1,
            replicas: 1,
            shards: 1,
        }
    }

    /// The same context with `brokers` broker servers.
    pub fn with_brokers(&self, brokers: usize) -> Self {
        Ctx {
            profile: self.profile.clone(),
            dir: self.dir.clone(),
            target: self.target.clone(),
            policy: self.policy,
            brokers,
            replicas: self.replicas,
            shards: self.shards,
        }
    }

    /// The same context with `replicas` instances of the query service and `shards` of
    /// each owner.
    pub fn with_replicas(&self, replicas: usize, shards: usize) -> Self {
        Ctx { replicas, shards, ..self.with_brokers(self.brokers) }
    }

    pub async fn prepare(
        &self,
        name: &str,
        mode: Mode,
        proxied: &[&str],
        seed: SeedConfig,
    ) -> anyhow::Result<Prepared> {
        // A policy besides naive runs in run dirs (and compose projects) of its own.
        let variant = match self.policy {
            Policy::Naive => mode.to_string(),
            p => format!("{mode}-{p}"),
        };
        let run_dir = self.dir.join(format!("{name}-{variant}"));
        let mut config = Config::new(mode, &run_dir);
        config.policy = self.policy;
        config.brokers = self.brokers;
        config.replicas = self.replicas;
        config.shards = self.shards;
        config.proxied = proxied.iter().map(|s| s.to_string()).collect();
        if let crate::topology::Target::Compose { image, project } = &self.target {
            // One project per scenario and variant: names must differ, as projects of
            // one run are taken down and up in turn.
            let project = format!("{project}{}{}", name.replace('-', ""), variant.replace('-', ""));
            config.target = crate::topology::Target::Compose { image: image.clone(), project };
        }
        if let crate::topology::Target::Swarm { image, stack } = &self.target {
            // One stack per scenario and variant, as projects above.
            let stack = stack_name(stack, &format!("{name}{variant}"));
            config.target = crate::topology::Target::Swarm { image: image.clone(), stack };
        }
        let topology = Topology::start(config).await?;
        let clients = Clients::for_topology(&topology.file())?;
        let seeded = crate::seed::seed(&clients, seed, |_, _| {}).await?;
        if let Some(url) = topology.events_url() {
            let events = (seed.users + seed.products + seed.orders) as u64;
            crate::convergence::wait_settled_for(&url, events, &topology.consumers(), Duration::from_secs(60)).await?;
        }
        Ok(Prepared { topology, clients, seeded: Arc::new(seeded) })
    }
}

/// The stack of a scenario's topology: `base` and `what` without dashes, kept short
/// enough that every service's name (`<stack>_products`) stays within the 63 characters
/// swarm allows (a long one is cut, and a hash of the whole keeps it unique).
pub fn stack_name(base: &str, what: &str) -> String {
    const MAX: usize = 50;
    let whole = format!("{base}{}", what.replace('-', ""));
    if whole.len() <= MAX {
        return whole;
    }
    // FNV-1a: stable across runs and builds.
    let hash = whole.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    // By characters: a prefix from the environment may not be ASCII.
    let kept: String = whole.chars().take(MAX - 7).collect();
    format!("{kept}x{:06x}", hash & 0xff_ffff)
}

/// Runs the suite, printing progress; returns the results and where they were written.
pub async fn run(config: SuiteConfig) -> anyhow::Result<(Results, PathBuf)> {
    let started = common::ids::now_unix_ms();
    let dir = config.runs.join(format!("bench-{started}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let environment = Environment {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        build_profile: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
        commit: git_commit(),
        nats_server: bench::nats::nats_server().ok().map(|n| n.version),
        crates: crate_versions(),
        cpu_pinning: false,
        target: config.target.name().into(),
        command: config.command.clone(),
        started_unix_ms: started,
    };
    anyhow::ensure!(!config.policies.is_empty(), "no policy to run: --policies needs at least one");
    let mut policies: Vec<Policy> = Vec::new();
    for &p in &config.policies {
        if !policies.contains(&p) {
            policies.push(p);
        }
    }
    let ctx = Ctx {
        profile: config.profile.clone(),
        dir: dir.clone(),
        target: config.target.clone(),
        policy: Policy::Naive,
        brokers: config.brokers,
        replicas: config.replicas,
        shards: config.shards,
    };
    // By default each target runs what it can, and the long scenarios only in `--full`.
    let runs_here =
        |s: Scenario| s.runs_by_default_on(&config.target) && (!s.is_long() || config.profile.long_scenarios);
    let chosen: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|&s| if config.scenarios.is_empty() { runs_here(s) } else { config.scenarios.contains(&s) })
        .collect();
    let steps = plan(&chosen, &config.modes, &policies, config.profile.rounds);
    let mut results = Results {
        version: RESULTS_VERSION,
        environment,
        profile: config.profile.clone(),
        modes: config.modes.clone(),
        floor: None,
        scenarios: Vec::new(),
        targets: Vec::new(),
        complexity: Complexity::of_this_build(),
        run_order: Vec::new(),
        policies: policies.clone(),
        brokers: config.brokers,
        replicas: config.replicas,
        shards: config.shards,
    };
    let suite_start = Instant::now();
    for (i, &(scenario, variant, round)) in steps.iter().enumerate() {
        progress(i, steps.len(), &scenario, variant, suite_start);
        let start = Instant::now();
        let (mode, policy) = (variant.map(|(m, _)| m), variant.map_or(Policy::Naive, |(_, p)| p));
        results.run_order.push(Ran { scenario, mode, round, policy });
        match mode {
            None => results.floor = Some(scenarios::floor(&ctx).await.with_context(|| "scenario floor")?),
            Some(mode) => {
                // A later round runs in run dirs of its own; the variant's policy is
                // every service's.
                let dir = if round > 1 { ctx.dir.join(format!("round-{round}")) } else { ctx.dir.clone() };
                let ctx = Ctx { dir, policy, ..ctx.with_replicas(ctx.replicas, ctx.shards) };
                let label = variant_label(mode, policy);
                let mut result = scenarios::run(&ctx, scenario, mode)
                    .await
                    .with_context(|| format!("scenario {scenario} ({label}, round {round})"))?;
                result.policy = policy;
                result.round = round;
                result.seconds = start.elapsed().as_secs_f64();
                results.scenarios.push(result);
            }
        }
        // Keep what is done so far: a later failure or Ctrl-C loses only the rest.
        write(&dir, &results)?;
    }
    progress(steps.len(), steps.len(), &"done", None, suite_start);
    eprintln!();
    results.targets = targets(&results);
    let path = write(&dir, &results)?;
    Ok((results, path))
}

fn write(dir: &Path, results: &Results) -> anyhow::Result<PathBuf> {
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn progress(
    done: usize,
    total: usize,
    scenario: &dyn std::fmt::Display,
    variant: Option<(Mode, Policy)>,
    start: Instant,
) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    let what = variant.map_or(scenario.to_string(), |(m, p)| format!("{scenario} ({})", variant_label(m, p)));
    eprint!(
        "\r[{}{}] {done}/{total} {:>4}s  {what:<32}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        start.elapsed().as_secs()
    );
    if done < total {
        eprintln!();
    }
}

pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

/// Versions of the crates the figures depend on, from the Cargo.lock built with.
fn crate_versions() -> BTreeMap<String, String> {
    const LOCK: &str = include_str!("../../../Cargo.lock");
    const WANTED: [&str; 7] = ["tonic", "prost", "async-nats", "sled", "tokio", "hdrhistogram", "h2"];
    let mut versions = BTreeMap::new();
    let mut name = None;
    for line in LOCK.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if WANTED.contains(&n.as_str()) {
                versions.insert(n, v.trim_matches('"').to_owned());
            }
        }
    }
    versions
}

/// What the soak's checker found that must be 0, per mode: "soak (async): lost 2, wrong 1".
pub fn soak_failures(results: &Results) -> Vec<String> {
    results
        .scenarios
        .iter()
        .filter_map(|s| {
            let failures = s.soak.as_ref()?.failures();
            (!failures.is_empty()).then(|| format!("{} ({}): {}", s.scenario, s.label(), failures.join(", ")))
        })
        .collect()
}

impl TargetCheck {
    /// A target met when `measured` is at most `limit`.
    fn at_most(target: impl Into<String>, measured: f64, limit: f64, how: impl Into<String>) -> Self {
        Self { target: target.into(), measured, limit, met: measured <= limit, how: how.into() }
    }

    /// A target met when `measured` is at least `limit`.
    fn at_least(target: impl Into<String>, measured: f64, limit: f64, how: impl Into<String>) -> Self {
        Self { target: target.into(), measured, limit, met: measured >= limit, how: how.into() }
    }
}

/// Where the run stands against the issue's targets; each limit is stated once, in the
/// check that compares with it.
pub fn targets(results: &Results) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let Some(floor) = &results.floor else { return checks };
    let echo = floor.grpc_echo.p50_us as f64;
    let seq = |mode: Mode| results.scenario(Scenario::Steady, mode).and_then(|s| s.sequential.as_ref());
    if let Some(l) = seq(Mode::Async) {
        checks.push(TargetCheck::at_most(
            "async UserOrders p50 <= 1.25 x gRPC echo p50",
            l.user_orders.p50_us as f64,
            1.25 * echo,
            format!("sequential UserOrders (steady) vs the floor's health-check echo ({} µs)", floor.grpc_echo.p50_us),
        ));
    }
    if let Some(l) = seq(Mode::Sync) {
        checks.push(TargetCheck::at_most(
            "sync UserOrders p50 <= 1.25 x 3 gRPC echoes",
            l.user_orders.p50_us as f64,
            1.25 * 3.0 * echo,
            "sequential UserOrders (steady): client→query, then users and orders together, then products",
        ));
    }
    let floor_sum = (floor.js_publish_ack.p50_us + floor.js_delivery.p50_us + floor.sled_txn2_flush.p50_us) as f64;
    if let Some(p) = seq(Mode::Async).and_then(|l| l.propagation.as_ref()) {
        checks.push(TargetCheck::at_most(
            "async sequential staleness p50 <= 2 x (publish+ack + delivery + 2-tree txn flush)",
            p.p50_us as f64,
            2.0 * floor_sum,
            "PlaceOrder acknowledged → send time of the first UserOrders that showed it, one write at a time \
             (steady), vs the floor's JetStream and sled figures",
        ));
    }
    if let Some(s) = results.scenario(Scenario::Steady, Mode::Async).and_then(|s| s.staleness.as_ref()) {
        checks.push(TargetCheck::at_most(
            "async staleness p99 <= 20 ms at steady load",
            s.visible.p99_us as f64,
            20_000.0,
            format!("staleness probe during the steady rates: {}", s.measure.label()),
        ));
    }
    checks.push(TargetCheck::at_least(
        "generator ceiling >= 0.9 x 64-in-flight echo throughput",
        floor.generator_ceiling_per_s,
        0.9 * floor.echo_64_in_flight_per_s,
        "highest rate of the open-loop ladder (25/50/75/90 % of the closed-loop echo rate) kept on schedule",
    ));
    checks.push(TargetCheck::at_most(
        "generator send-time error <= 1 % of the schedule",
        100.0 * floor.generator_noop.late_share(),
        1.0,
        "share of requests sent more than 1 ms late by the open loop against a no-op at the echo rate",
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_alternate_abba_and_latency_scenarios_repeat() {
        let (s, a) = ((Mode::Sync, Policy::Naive), (Mode::Async, Policy::Naive));
        use Scenario::{Floor, KillDependency, Steady};
        let order = plan(&[Floor, Steady, KillDependency], &[Mode::Sync, Mode::Async], &[Policy::Naive], 2);
        assert_eq!(
            order,
            vec![
                (Floor, None, 1),
                (Steady, Some(s), 1),
                (Steady, Some(a), 1),
                (Steady, Some(a), 2),
                (Steady, Some(s), 2),
                (KillDependency, Some(s), 1),
                (KillDependency, Some(a), 1),
            ]
        );
    }

    /// Each request/reply mode runs once per policy, async and the monolith once; the
    /// variants' order flips from one scenario (or round) to the next.
    #[test]
    fn policies_multiply_the_request_reply_modes_only_and_flip_abba() {
        use Policy::{Hardened, Naive, RetryStorm};
        use Scenario::{FanOut, KillDependency, OrdersPerUser, OverloadBlip, Steady, Storage};
        let modes = [Mode::Sync, Mode::Async, Mode::BusRpc, Mode::Monolith];
        let policies = [Naive, Hardened, RetryStorm];
        let forward = vec![
            (Mode::Sync, Naive),
            (Mode::Sync, Hardened),
            (Mode::Sync, RetryStorm),
            (Mode::Async, Naive),
            (Mode::BusRpc, Naive),
            (Mode::BusRpc, Hardened),
            (Mode::BusRpc, RetryStorm),
            (Mode::Monolith, Naive),
        ];
        assert_eq!(variants(&modes, &policies), forward);
        let order = plan(&[Steady, KillDependency, OverloadBlip], &modes, &policies, 2);
        let of = |scenario: Scenario, round: usize| -> Vec<(Mode, Policy)> {
            order.iter().filter(|(s, _, r)| *s == scenario && *r == round).filter_map(|(_, v, _)| *v).collect()
        };
        let backward: Vec<_> = forward.iter().rev().copied().collect();
        assert_eq!(of(Steady, 1), forward);
        assert_eq!(of(Steady, 2), backward);
        assert_eq!(of(KillDependency, 1), forward);
        assert_eq!(of(OverloadBlip, 1), backward);
        assert_eq!(order.len(), 4 * forward.len());
        // Storage and fan-out: no failure, no overload, one run per mode, under naive
        // even when the policies asked leave it out.
        let storage = plan(&[Storage, FanOut], &modes, &[Hardened], 2);
        assert!(storage.iter().all(|(_, v, _)| v.is_some_and(|(_, p)| p == Naive)), "{storage:?}");
        assert_eq!(storage.len(), 2 * modes.len());
        // Orders-per-user grows one call's answer: retry-storm's per-try timeout can
        // meet it, so it runs per policy.
        assert_eq!(plan(&[OrdersPerUser], &modes, &policies, 2).len(), forward.len());
        // Naive alone is the suite as it was: one variant per mode.
        assert_eq!(variants(&modes, &[Naive]), modes.map(|m| (m, Naive)).to_vec());
        assert_eq!(variant_label(Mode::BusRpc, RetryStorm), "bus-rpc retry-storm");
        assert_eq!(variant_label(Mode::Sync, Naive), "sync");
    }

    /// A result without a policy (written before the axis) reads as naive, and the
    /// lookup by (scenario, mode) keeps meaning the naive run.
    #[test]
    fn results_record_the_policy_and_old_ones_read_as_naive() {
        let old: ScenarioResult = serde_json::from_str(
            r#"{"scenario":"steady","mode":"sync","seconds":1.0,"loads":{},"sequential":null,"faults":[],
                "staleness":null,"convergence":null,"losses":null,"resources":{},"storage":null,
                "fanout":null,"note":null}"#,
        )
        .expect("an old result reads");
        assert_eq!(old.policy, Policy::Naive);
        let hardened = ScenarioResult { policy: Policy::Hardened, note: Some("h".into()), ..old.clone() };
        let json = serde_json::to_string(&hardened).unwrap();
        assert!(json.contains(r#""policy":"hardened""#), "{json}");
        let back: ScenarioResult = serde_json::from_str(&json).unwrap();
        assert_eq!(back.policy, Policy::Hardened);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let mut r: Results = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert!(r.policies.is_empty() && r.policies() == vec![Policy::Naive] && !r.has_policy_axis());
        r.scenarios = vec![hardened, old];
        r.policies = vec![Policy::Naive, Policy::Hardened];
        assert_eq!(r.scenario(Scenario::Steady, Mode::Sync).and_then(|s| s.note.clone()), None);
        let h = r.scenario_with(Scenario::Steady, Mode::Sync, Policy::Hardened).expect("the hardened run");
        assert_eq!(h.note.as_deref(), Some("h"));
        assert!(r.has_policy_axis());
        let labels: Vec<String> = r.by_variant(Scenario::Steady).into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, ["sync", "sync hardened"]);
    }

    #[test]
    fn stack_names_stay_short_enough_for_swarm_and_distinct() {
        assert_eq!(stack_name("cascadebench1t2", "kill-dependencysync"), "cascadebench1t2killdependencysync");
        let base = "cascadebench4194304t999999";
        let (a, b) = (
            stack_name(base, "pause-dependencybus-rpc-retry-storm"),
            stack_name(base, "pause-dependencybus-rpc-hardened"),
        );
        assert!(a.len() <= 50 && b.len() <= 50, "{a} {b}");
        assert_ne!(a, b);
        // The longest service name is within the 63 characters swarm allows.
        assert!(format!("{a}_products").len() <= 63 && format!("{a}_monolith").len() <= 63);
        assert_eq!(a, stack_name(base, "pause-dependencybus-rpc-retry-storm"), "the same name every time");
        // A prefix that is not ASCII is cut by characters, not in the middle of one.
        let odd = stack_name(&"é".repeat(40), "kill-dependencysync");
        assert!(odd.starts_with(&"é".repeat(40)) && odd.chars().count() == 50, "{odd}");
    }

    /// A restart step on swarm carries when the component served again; the fault's
    /// window ends there when swarm was quicker than the schedule, and the line says how
    /// long each component did not serve.
    #[test]
    fn self_heals_are_recorded_and_end_the_fault_window() {
        let event = |t_ms: u64, action: &str, self_healed: Option<SelfHealed>| FaultEvent {
            t_ms,
            action: action.into(),
            result: scenarios::OK.into(),
            planned_ms: Some(t_ms),
            effective_ms: Some(t_ms),
            fault: None,
            writes_in_flight: None,
            self_healed,
        };
        let healed = |serving_again_ms, gap_ms| SelfHealed {
            serving_again_ms,
            healthy_ms: serving_again_ms + 300,
            gap_ms,
            until_healthy_ms: gap_ms + 300,
        };
        let mut s = ScenarioResult {
            faults: vec![
                event(1000, "kill users", None),
                event(4000, "restart users", Some(healed(2500, 1500))),
                event(5000, "kill products", None),
                event(6000, "restart products", Some(healed(6800, 1800))),
            ],
            ..Default::default()
        };
        let windows = crate::report::verdicts::fault_windows(&s);
        assert_eq!(windows, vec![(1000, 2500, "users killed".into()), (5000, 6000, "products killed".into())]);
        assert_eq!(
            s.describe_self_heals().as_deref(),
            Some("users 1.50 s (healthy 1.80 s), products 1.80 s (healthy 2.10 s)")
        );
        let json = serde_json::to_string(&s.faults[1]).unwrap();
        assert!(json.contains(r#""self_healed":{"serving_again_ms":2500,"healthy_ms":2800,"gap_ms":1500"#), "{json}");
        assert!(!serde_json::to_string(&s.faults[0]).unwrap().contains("self_healed"), "absent off swarm");
        s.faults = (0..6).map(|i| event(i, "restart query", Some(healed(i, 1000 + 100 * i)))).collect();
        assert_eq!(
            s.describe_self_heals().as_deref(),
            Some("6 times: p50 1.20 s (healthy 1.50 s), max 1.50 s (healthy 1.80 s)")
        );
        s.faults.iter_mut().for_each(|e| e.self_healed = None);
        assert_eq!(s.describe_self_heals(), None);
    }
}
