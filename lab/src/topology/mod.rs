//! A topology: the four services (plus, in async mode, a real `nats-server` with
//! JetStream), each with its own data, and the means to stop, kill, pause and restart
//! any of them. What runs them is a [`Backend`], chosen once in [`Topology::start`]:
//!
//! - [`processes`]: OS processes on loopback started by the lab, faults by real
//!   signals (SIGKILL, SIGSTOP/SIGCONT, SIGTERM);
//! - [`containers`]: containers under Docker Compose ([`compose`]), faults the
//!   container way (`docker kill`, `pause`, `start`) plus network partitions;
//! - [`swarm`]: a stack on a single-node Docker Swarm ([`stack`]), faults on each
//!   service's current task, which swarm replaces by itself ([`SelfHeal`]).
//!
//! The rest of the lab sees one [`Topology`]: components with addresses, a fault
//! proxy where asked ([`crate::proxy`]), and [`file::TopologyFile`], what `lab up`
//! records for other commands. Components start in dependency order (nats, users,
//! products, orders, query), because a service is given the addresses of what it
//! calls; a restarted one gets back the address it had, so its callers need not be
//! told anything.
//!
//! The broker is one `nats-server` (component `nats`), or on the process target a
//! three-node JetStream cluster ([`cluster`]: components `nats-1` … `nats-3`, and
//! `nats` then names all three at once), whose every node the services are given.
//!
//! The query service runs as one instance (`query`), or on the process target as
//! replicas (`--replicas query=N`: components `query-1` … `query-N`, each with its own
//! data dir and, in async mode, its own durable consumer; `query` then names them all),
//! which the lab's client balances over ([`crate::client::Balanced`]). The owners
//! (users, products, orders) run once each, or on the process target as shards
//! (`--replicas owners=N`: `users-1` … `users-N` and so on, each the single writer of its
//! part of the entities, see `common::ids::Shard`; the owner's name then names them
//! all), which every caller addresses by the shard an id names.

pub mod cluster;
pub mod compose;
mod containers;
pub mod file;
mod processes;
pub mod stack;
mod swarm;

use std::{
    fs::{self, File},
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    config::{Mode, Policy},
    events::STREAM,
    names::{MONOLITH, NATS, ORDERS, QUERY, QUERY_REPLICAS, SERVICES},
};

use self::{compose::ComposeError, containers::Containers, processes::Processes, stack::SwarmError, swarm::Swarm};
pub use self::{
    file::{RunsAs, ServiceRecord, TopologyFile, TOPOLOGY_FILE},
    swarm::SelfHeal,
};
use crate::proxy::{Faults, Proxy};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("service binary {0} not found: build the services first with `cargo build --release --workspace` (or point CASCADE_BIN_DIR at the folder that holds them)")]
    BinaryMissing(PathBuf),
    #[error("a topology is already running from {run_dir} (lab pid {pid}): stop it (Ctrl-C in its terminal) or choose another --run-dir")]
    AlreadyRunning { run_dir: PathBuf, pid: u32 },
    #[error("{service} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    DiedAtStart { service: String, status: String, log: String, tail: String },
    #[error("{service} was not serving within {secs} s; see {log}")]
    StartTimeout { service: String, secs: u64, log: String },
    #[error("{service} at {address} bound its port but is not SERVING: {reason}")]
    NotServing { service: String, address: SocketAddr, reason: String },
    #[error("no component named {0:?}; they are users, products, orders, query (with --replicas: users-1 …, query-1 …, the service's name then naming them all), and in async and bus-rpc modes the broker: nats, or on a cluster (--brokers 3) nats-1, nats-2, nats-3 (nats then names all three)")]
    UnknownService(String),
    #[error("{service} runs as {} instances ({}): name one of them", replicas.len(), replicas.join(", "))]
    Replicated { service: String, replicas: Vec<String> },
    #[error("--replicas {0}: a service runs as 1 to {max} instances", max = QUERY_REPLICAS.len())]
    Replicas(usize),
    #[error("--replicas {0} needs the process target for now: the container targets run one container per service (drop --replicas, or use --target process)")]
    ReplicasNeedProcesses(usize),
    #[error("--brokers {0}: the broker runs as 1 server or as a cluster of 3")]
    Brokers(usize),
    #[error("the {nodes}-node JetStream cluster was not ready within {secs} s: {detail}; see the nodes' logs under {run_dir}")]
    ClusterNotReady { nodes: usize, secs: u64, detail: String, run_dir: String },
    #[error("{0} has no fault proxy: start the topology with --proxy {0} (or --proxy all)")]
    NotProxied(String),
    #[error("{service} is not running")]
    NotRunning { service: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{path} is not a topology file: {source}")]
    NotATopologyFile { path: PathBuf, source: serde_json::Error },
    #[error("cannot signal {service}: {source}")]
    Signal { service: String, source: nix::Error },
    #[error("a blocking task of the topology failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Broker(#[from] bench::nats::BrokerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("{0} needs the compose target (`--target compose`): processes on one host share one network")]
    NeedsCompose(String),
    /// A component this mode does not run as a process of its own (`users` in monolith
    /// mode): a fault on it does not apply. The suite records it as such.
    #[error("{mode} mode has no separate {component} process; act on {MONOLITH} instead (e.g. `lab kill {MONOLITH}`)")]
    NoSuchComponent { mode: Mode, component: String },
}

type Result<T, E = TopologyError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TopologyError {
    let context = context.into();
    move |source| TopologyError::Io { context, source }
}

/// How to start a topology.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Passed to every service as `--policy` (how the request/reply modes meet
    /// failure; see `common::resilience`).
    pub policy: Policy,
    pub run_dir: PathBuf,
    /// Where the service binaries are.
    pub bin_dir: PathBuf,
    /// If set, services listen on base_port, base_port+1, … (users, products, orders,
    /// query, then the broker; query replicas past the first from base_port+7);
    /// otherwise on ephemeral ports.
    pub base_port: Option<u16>,
    /// Passed to every service as `--default-deadline-ms`.
    pub default_deadline_ms: Option<u64>,
    /// Services that get a fault proxy in front of them (processes only).
    pub proxied: Vec<String>,
    /// Local processes, containers under Compose, or a stack on Swarm (the `--target`
    /// flag).
    pub target: Deployment,
    /// Extra environment of one service's process (service name, variable, value): how
    /// tests set a [`common::failpoint`] on one service only (processes only).
    pub env: Vec<(String, String, String)>,
    /// Broker servers in the modes that have a broker: 1, or a JetStream cluster of 3
    /// (process target only) whose stream the async services keep with 3 replicas.
    pub brokers: usize,
    /// Instances of the query service: 1 (`query`), or up to five replicas `query-1` …
    /// (process target only; the monolith has none of its own).
    pub replicas: usize,
    /// Shards of each owner (users, products, orders alike): 1, or up to five
    /// (`users-1` …; process target only, not the monolith). Orders are partitioned by
    /// their user, so orders shard K holds the orders of users shard K's users.
    pub shards: usize,
}

impl Config {
    pub fn new(mode: Mode, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            mode,
            policy: Policy::Naive,
            run_dir: run_dir.into(),
            bin_dir: default_bin_dir(),
            base_port: None,
            default_deadline_ms: None,
            proxied: Vec::new(),
            target: Deployment::Process,
            env: Vec::new(),
            brokers: 1,
            replicas: 1,
            shards: 1,
        }
    }
}

/// What runs the topology (the `--target` flag: a deployment, not a goal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// Every component a process of this machine, started by the lab.
    Process,
    /// Containers of `image`, under Compose project `project`.
    Compose { image: String, project: String },
    /// Services of `image` in the stack `stack`, on the engine's single-node swarm
    /// (active: see [`stack::Session`]).
    Swarm { image: String, stack: String },
}

/// The earlier name of [`Deployment`], which the suite still uses.
pub type Target = Deployment;

impl Deployment {
    /// As recorded in `topology.json` and the results.
    pub fn name(&self) -> &'static str {
        match self {
            Deployment::Process => "process",
            Deployment::Compose { .. } => "compose",
            Deployment::Swarm { .. } => "swarm",
        }
    }
}

/// What a component is, which decides how it is told where to listen and how the lab
/// knows it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Cascade service: `--listen`/`--addr-file`, then gRPC health.
    Service,
    /// nats-server: `-p`/`--ports_file_dir`, then its greeting.
    Broker,
}

/// One component of the topology (a service or the broker), whatever runs it.
#[derive(Debug)]
pub struct Component {
    pub name: &'static str,
    pub kind: Kind,
    /// Where it listens on this host (a container: its published port).
    pub address: SocketAddr,
    /// The host folder its data is in: the process's data dir, or the mountpoint of
    /// the container's volume.
    pub data_dir: PathBuf,
    /// A cluster node's monitoring endpoint (`/jsz`); `None` elsewhere.
    pub monitor: Option<SocketAddr>,
    /// The fault proxy callers go through, if it has one.
    proxy: Option<Proxy>,
    /// In bus-rpc mode, the fault proxies between a proxied service and the broker (one
    /// per node), which carry the other services' calls to it: the same faults as
    /// [`Self::proxy`].
    broker_link: Vec<Proxy>,
}

impl Component {
    /// A container's component (compose, swarm): at its published port, no proxy, no
    /// cluster monitor.
    fn container(name: &'static str, kind: Kind, address: SocketAddr, data_dir: PathBuf) -> Self {
        Self { name, kind, address, data_dir, monitor: None, proxy: None, broker_link: Vec::new() }
    }

    /// Its fault proxies: in front of it, and on its link to the broker.
    fn proxies(&self) -> impl Iterator<Item = &Proxy> {
        self.proxy.iter().chain(&self.broker_link)
    }

    /// Where callers reach it: its proxy if it has one, else itself.
    pub fn public_address(&self) -> SocketAddr {
        self.proxy.as_ref().map_or(self.address, Proxy::addr)
    }
}

/// A fault, or its repair, on one component: what a backend carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Dies at once, whatever it was doing (SIGKILL, `docker kill`).
    Kill,
    /// Freezes with its sockets open, a grey failure (SIGSTOP, `docker pause`).
    Freeze,
    /// Undoes [`Operation::Freeze`].
    Thaw,
    /// Cut off the others' network (containers only).
    Partition,
    /// Undoes [`Operation::Partition`].
    Reconnect,
}

/// The two ways of running a topology; every per-component fault goes through here.
#[derive(Debug)]
enum Backend {
    Processes(Processes),
    Containers(Containers),
    Swarm(Swarm),
}

impl Backend {
    fn operate(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        match self {
            Backend::Processes(p) => p.operate(name, operation),
            Backend::Containers(c) => c.operate(name, operation),
            Backend::Swarm(s) => s.operate(name, operation),
        }
    }

    /// Like [`Backend::operate`], without holding a runtime worker while it waits.
    async fn operate_off_runtime(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        match self {
            // A signal is sent at once.
            Backend::Processes(p) => p.operate(name, operation),
            Backend::Containers(c) => c.operate_off_runtime(name, operation).await,
            Backend::Swarm(s) => s.operate_off_runtime(name, operation).await,
        }
    }

    async fn restart(&mut self, name: &'static str) -> Result<()> {
        match self {
            Backend::Processes(p) => p.restart(name).await,
            Backend::Containers(c) => c.restart(name).await,
            Backend::Swarm(s) => s.restart(name).await,
        }
    }

    /// Back to running, thawed and connected, whatever was done to it.
    async fn recover(&mut self, name: &'static str) -> Result<()> {
        match self {
            Backend::Processes(p) => p.recover(name).await,
            Backend::Containers(c) => c.recover(name).await,
            Backend::Swarm(s) => s.recover(name).await,
        }
    }

    fn stop_one(&mut self, name: &'static str) -> Result<()> {
        match self {
            Backend::Processes(p) => p.stop_one(name),
            Backend::Containers(_) | Backend::Swarm(_) => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<()> {
        match self {
            Backend::Processes(p) => p.stop(),
            Backend::Containers(c) => c.stop(),
            Backend::Swarm(s) => s.stop(),
        }
    }

    fn reap_exited(&mut self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Processes(p) => p.reap_exited(),
            // A container that exits shows up in `recover` (its state), not here; swarm
            // replaces a task that ends.
            Backend::Containers(_) | Backend::Swarm(_) => Vec::new(),
        }
    }

    fn pid(&self, name: &str) -> Option<u32> {
        match self {
            Backend::Processes(p) => p.pid(name),
            Backend::Containers(c) => c.pid(name),
            Backend::Swarm(s) => s.pid(name),
        }
    }

    fn runs_as(&self, name: &str) -> RunsAs {
        match self {
            Backend::Processes(p) => p.runs_as(name),
            Backend::Containers(c) => c.runs_as(name),
            Backend::Swarm(s) => s.runs_as(name),
        }
    }

    fn compose_project(&self) -> Option<String> {
        match self {
            Backend::Containers(c) => Some(c.project().to_owned()),
            Backend::Processes(_) | Backend::Swarm(_) => None,
        }
    }

    fn swarm_stack(&self) -> Option<String> {
        match self {
            Backend::Swarm(s) => Some(s.stack_name().to_owned()),
            Backend::Processes(_) | Backend::Containers(_) => None,
        }
    }

    fn take_self_heal(&mut self, name: &str) -> Option<SelfHeal> {
        match self {
            Backend::Swarm(s) => s.take_self_heal(name),
            Backend::Processes(_) | Backend::Containers(_) => None,
        }
    }
}

/// A running topology. Dropping it kills every component it started.
#[derive(Debug)]
pub struct Topology {
    pub config: Config,
    pub services: Vec<Component>,
    backend: Backend,
}

impl Topology {
    /// Starts every component of `config.mode` on the backend `config.target` names and
    /// waits until each is ready.
    pub async fn start(config: Config) -> Result<Self> {
        if let Ok(existing) = TopologyFile::read(&config.run_dir) {
            if existing.lab_alive() && existing.lab_pid != std::process::id() {
                return Err(TopologyError::AlreadyRunning { run_dir: config.run_dir.clone(), pid: existing.lab_pid });
            }
        }
        for name in programs(config.mode) {
            let bin = config.bin_dir.join(name);
            if !bin.is_file() {
                return Err(TopologyError::BinaryMissing(bin));
            }
        }
        if config.brokers != 1 && config.brokers != 3 {
            return Err(TopologyError::Brokers(config.brokers));
        }
        for count in [config.replicas, config.shards] {
            if !(1..=QUERY_REPLICAS.len()).contains(&count) {
                return Err(TopologyError::Replicas(count));
            }
            if count > 1 && config.target != Deployment::Process {
                return Err(TopologyError::ReplicasNeedProcesses(count));
            }
        }
        fs::create_dir_all(&config.run_dir).map_err(io_err(format!("cannot create {}", config.run_dir.display())))?;
        let mut config = config;
        if !config.mode.uses_broker() {
            // Nothing to replicate: no broker runs in this mode.
            config.brokers = 1;
        }
        if config.mode == Mode::Monolith && (config.replicas > 1 || config.shards > 1) {
            // One process serves every service: there is no process to replicate.
            tracing::info!(replicas = config.replicas, shards = config.shards, "monolith mode: no replicas");
            config.replicas = 1;
            config.shards = 1;
        }
        if config.mode == Mode::Monolith && !config.proxied.is_empty() {
            // Nothing travels between the services to put a proxy on; a fault on one of
            // them is refused as not applying (`NoSuchComponent`).
            tracing::info!(proxied = ?config.proxied, "monolith mode: no fault proxies between services");
            config.proxied.clear();
        }
        let (services, backend) = match &config.target {
            Deployment::Process => {
                let (services, processes) = processes::start(&config).await?;
                (services, Backend::Processes(processes))
            }
            Deployment::Compose { image, project } => {
                let (services, containers) = containers::start(&config, image, project).await?;
                (services, Backend::Containers(containers))
            }
            Deployment::Swarm { image, stack } => {
                let (services, swarm) = swarm::start(&config, image, stack).await?;
                (services, Backend::Swarm(swarm))
            }
        };
        let topology = Topology { config, services, backend };
        topology.write_file()?;
        topology.wait_brokers_ready(CLUSTER_READY_WITHIN).await?;
        Ok(topology)
    }

    /// What `topology.json` holds for this topology.
    pub fn file(&self) -> TopologyFile {
        TopologyFile {
            target: self.config.target.name().to_owned(),
            compose_project: self.backend.compose_project(),
            swarm_stack: self.backend.swarm_stack(),
            mode: self.config.mode.to_string(),
            nats_url: self.nats_url(),
            run_dir: self.config.run_dir.clone(),
            lab_pid: std::process::id(),
            services: self.records(),
        }
    }

    /// One record per component; in monolith mode also one per service it serves, at
    /// its address (`served_by` names it), so clients find every service as in the
    /// other modes.
    fn records(&self) -> Vec<ServiceRecord> {
        let record = |s: &Component, name: &str, served_by: Option<&str>| ServiceRecord {
            name: name.to_owned(),
            address: s.public_address(),
            direct_address: s.proxy.as_ref().map(|_| s.address),
            pid: self.backend.pid(s.name).unwrap_or(0),
            data_dir: s.data_dir.clone(),
            runs_as: self.backend.runs_as(s.name),
            served_by: served_by.map(str::to_owned),
        };
        let mut records: Vec<ServiceRecord> = self.services.iter().map(|s| record(s, s.name, None)).collect();
        if let Some(monolith) = self.services.iter().find(|s| s.name == MONOLITH) {
            records.extend(SERVICES.iter().map(|name| record(monolith, name, Some(MONOLITH))));
        }
        records
    }

    fn write_file(&self) -> Result<()> {
        self.file().write(&self.config.run_dir)
    }

    /// The component called `name`, by its `'static` name: the one a fault acts on. In
    /// monolith mode a service is no component of its own ([`TopologyError::NoSuchComponent`]).
    fn name_of(&self, name: &str) -> Result<&'static str> {
        if self.config.mode == Mode::Monolith && SERVICES.contains(&name) {
            return Err(TopologyError::NoSuchComponent { mode: self.config.mode, component: name.to_owned() });
        }
        Ok(self.service(name)?.name)
    }

    /// The components `name` stands for: itself, or on a cluster, for `nats`, every
    /// node (the broker as a whole), and for a service that runs as several instances
    /// (replicas, shards), every instance.
    fn names_of(&self, name: &str) -> Result<Vec<&'static str>> {
        if name == NATS && self.is_cluster() {
            return Ok(self.brokers().map(|b| b.name).collect());
        }
        if self.config.mode != Mode::Monolith && SERVICES.contains(&name) && self.instances_of(name).count() > 1 {
            return Ok(self.instances_of(name).map(|q| q.name).collect());
        }
        Ok(vec![self.name_of(name)?])
    }

    /// The instances of `service`: itself, or its replicas or shards `<service>-1` …
    /// (none in monolith mode).
    pub fn instances_of<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Component> + 'a {
        (self.services.iter()).filter(move |s| s.name == service || common::names::replica_of(s.name) == Some(service))
    }

    /// The instances of the query service: `query`, or its replicas `query-1` …
    pub fn query_instances(&self) -> impl Iterator<Item = &Component> {
        self.instances_of(QUERY)
    }

    /// Every service process (not the broker): in monolith mode the one monolith.
    pub fn service_processes(&self) -> impl Iterator<Item = &Component> {
        self.services.iter().filter(|s| s.kind == Kind::Service)
    }

    /// The durable consumers the services keep (async mode): one per instance of
    /// orders and of query, named as the instance is (`orders`, or `orders-1` …; `query`,
    /// or `query-1` …).
    pub fn consumers(&self) -> Vec<String> {
        if self.config.mode != Mode::Async {
            return Vec::new();
        }
        let names = self.instances_of(ORDERS).chain(self.query_instances());
        names.map(|c| c.name.to_owned()).collect()
    }

    /// Carries out `operation` on `name` (on each node, for a cluster's `nats`; the
    /// first error after trying them all). On the compose target the `docker` command
    /// runs on a blocking thread, so it does not hold a runtime worker (the load's and
    /// the probe's tasks run there); a signal is sent at once.
    pub async fn operate(&mut self, name: &str, operation: Operation) -> Result<()> {
        let mut first_error = None;
        for name in self.names_of(name)? {
            if let Err(e) = self.backend.operate_off_runtime(name, operation).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Carries out `operation` at once on `name` (each node, for a cluster's `nats`).
    fn operate_now(&mut self, name: &str, operation: Operation) -> Result<()> {
        let mut first_error = None;
        for name in self.names_of(name)? {
            if let Err(e) = self.backend.operate(name, operation) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// SIGKILL (or `docker kill`): the component dies at once, whatever it was doing.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        self.operate_now(name, Operation::Kill)
    }

    /// SIGSTOP (or `docker pause`): the component freezes with its sockets open (a grey
    /// failure).
    pub fn pause(&mut self, name: &str) -> Result<()> {
        self.operate_now(name, Operation::Freeze)
    }

    /// Undoes [`Topology::pause`].
    pub fn resume(&mut self, name: &str) -> Result<()> {
        self.operate_now(name, Operation::Thaw)
    }

    /// Cuts `name` off the network of the others (compose target).
    pub fn partition(&mut self, name: &str) -> Result<()> {
        self.operate_now(name, Operation::Partition)
    }

    /// Undoes [`Topology::partition`].
    pub fn reconnect(&mut self, name: &str) -> Result<()> {
        self.operate_now(name, Operation::Reconnect)
    }

    /// Starts a killed (or stopped) component again on its old address and data (a
    /// cluster node: its old ports, configuration and store; for a cluster's `nats`,
    /// every node). It returns once the process accepts connections; a node rejoining
    /// its cluster catches up after that (see [`Topology::wait_brokers_ready`]). On the
    /// swarm target the lab starts nothing: it waits for swarm's next task of a killed
    /// component to serve (a running one's task is stopped first); see
    /// [`Topology::take_self_heal`].
    pub async fn restart(&mut self, name: &str) -> Result<()> {
        for name in self.names_of(name)? {
            self.backend.restart(name).await?;
            tracing::info!(service = name, "restarted");
        }
        self.write_file()
    }

    /// The swarm target: when a fault last ended `name`'s task and when swarm's next
    /// one served, once (`None` on the other targets, and until it has served).
    pub fn take_self_heal(&mut self, name: &str) -> Option<SelfHeal> {
        let name = self.name_of(name).ok()?;
        self.backend.take_self_heal(name)
    }

    /// Undoes every fault: restarts what is dead, resumes what is paused, reconnects
    /// what is cut off, heals proxies.
    pub async fn recover(&mut self) -> Result<()> {
        for (name, status) in self.reap_exited() {
            tracing::warn!(service = name, %status, "had exited by itself");
        }
        let names: Vec<&'static str> = self.services.iter().map(|s| s.name).collect();
        for name in names {
            self.backend.recover(name).await?;
            self.service(name)?.proxies().for_each(Proxy::heal);
        }
        self.write_file()?;
        self.wait_brokers_ready(CLUSTER_READY_WITHIN).await
    }

    /// Stops one component (SIGTERM, SIGKILL after a grace period); nothing to do for a
    /// container, which only [`Topology::stop`] takes down.
    pub fn stop_one(&mut self, name: &str) -> Result<()> {
        for name in self.names_of(name)? {
            self.backend.stop_one(name)?;
        }
        Ok(())
    }

    /// Stops every component, callers before callees (the broker last), so nothing
    /// logs needless errors.
    pub fn stop(&mut self) -> Result<()> {
        self.backend.stop()
    }

    /// A component that exited without being told to: its name and exit status.
    pub fn reap_exited(&mut self) -> Vec<(&'static str, String)> {
        self.backend.reap_exited()
    }

    /// The broker's client URL, in the modes that have one (async, bus-rpc): on a
    /// cluster every node's, comma-separated (as `--nats-url` takes them).
    pub fn nats_url(&self) -> Option<String> {
        let nodes: Vec<SocketAddr> = self.brokers().map(|b| b.address).collect();
        (!nodes.is_empty()).then(|| nats_url_of(&nodes))
    }

    /// The broker's servers: one, or every node of a cluster.
    pub fn brokers(&self) -> impl Iterator<Item = &Component> {
        self.services.iter().filter(|s| s.kind == Kind::Broker)
    }

    /// Whether the broker is a cluster of several nodes.
    pub fn is_cluster(&self) -> bool {
        self.brokers().count() > 1
    }

    /// The JetStream meta group's leader, as a majority of the cluster's nodes say it
    /// (`None` while there is none, on a single broker, or in a mode without one).
    pub async fn meta_leader(&self) -> Option<String> {
        let nodes: Vec<SocketAddr> = self.brokers().filter_map(|b| b.monitor).collect();
        if nodes.is_empty() {
            return None;
        }
        cluster::agreed_leader(&nodes).await.ok()
    }

    /// Where the event stream lives on the cluster (async mode): its leader and the
    /// other replicas, from stream info.
    pub async fn stream_placement(&self) -> Result<cluster::Placement, String> {
        let url = self.events_url().ok_or("no event stream in this mode")?;
        let client = cluster::connect(&url).await?;
        cluster::placement(&async_nats::jetstream::new(client), STREAM).await
    }

    /// [`Topology::stream_placement`] once the stream is whole, or as it last was after
    /// `within`: a replica that was current a moment ago can fall behind again for a
    /// moment (seen once under Compose, right after the repairs), which a single read
    /// would record as the state the repairs left.
    pub async fn whole_stream_placement(&self, within: Duration) -> Result<cluster::Placement, String> {
        let start = tokio::time::Instant::now();
        loop {
            let placement = self.stream_placement().await;
            match &placement {
                Ok(p) if !p.is_whole() && start.elapsed() < within => {}
                Err(_) if start.elapsed() < within => {}
                _ => return placement,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// On a cluster (nothing to do otherwise), waits until a majority of its nodes
    /// agree on a JetStream meta leader, every node answers, and in async mode the event
    /// stream exists with its leader and every other replica current and online, and so
    /// do both durable consumers.
    pub async fn wait_brokers_ready(&self, within: Duration) -> Result<()> {
        if !self.is_cluster() {
            return Ok(());
        }
        let nodes = self.brokers().count();
        let start = tokio::time::Instant::now();
        let mut last;
        loop {
            last = self.cluster_state().await;
            match &last {
                Ok(()) => return Ok(()),
                Err(_) if start.elapsed() < within => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(detail) => {
                    return Err(TopologyError::ClusterNotReady {
                        nodes,
                        secs: within.as_secs(),
                        detail: detail.clone(),
                        run_dir: self.config.run_dir.display().to_string(),
                    })
                }
            }
        }
    }

    /// `Ok` if the cluster is whole (see [`Topology::wait_brokers_ready`]), else why not.
    async fn cluster_state(&self) -> std::result::Result<(), String> {
        let nodes: Vec<(&str, SocketAddr)> = self.brokers().filter_map(|b| Some((b.name, b.monitor?))).collect();
        for (name, monitor) in &nodes {
            let view = cluster::meta_view(*monitor).await.map_err(|e| format!("{name}: {e}"))?;
            if view.cluster_size < nodes.len() as u64 {
                return Err(format!("{name} sees a meta group of {} of {} nodes", view.cluster_size, nodes.len()));
            }
        }
        let monitors: Vec<SocketAddr> = nodes.iter().map(|(_, m)| *m).collect();
        cluster::agreed_leader(&monitors).await?;
        if self.config.mode == Mode::Async {
            let url = self.events_url().ok_or("no event stream in this mode")?;
            let js = async_nats::jetstream::new(cluster::connect(&url).await?);
            let placement = cluster::placement(&js, STREAM).await?;
            if !placement.is_whole() || placement.replicas != nodes.len() {
                return Err(format!("stream {STREAM} is not whole: {}", placement.describe()));
            }
            // The durable consumers, which the services create, are kept by the
            // stream's nodes too: each needs a leader and its replicas current.
            for consumer in self.consumers() {
                let placement = cluster::consumer_placement(&js, STREAM, &consumer, nodes.len()).await?;
                if !placement.is_whole() {
                    return Err(format!("consumer {consumer} is not whole: {}", placement.describe()));
                }
            }
        }
        Ok(())
    }

    /// The broker's client URL where the services keep replicas fed by JetStream events
    /// (async mode): where there is a stream to wait on.
    pub fn events_url(&self) -> Option<String> {
        self.nats_url().filter(|_| self.config.mode == Mode::Async)
    }

    /// The component called `name`, or (monolith mode) the one that serves the service
    /// `name`. With replicas, `query` is several components: refused, naming them.
    pub fn service(&self, name: &str) -> Result<&Component> {
        let name = match self.config.mode {
            Mode::Monolith if SERVICES.contains(&name) => MONOLITH,
            _ => name,
        };
        self.services.iter().find(|s| s.name == name).ok_or_else(|| {
            let replicas: Vec<String> = self.instances_of(name).map(|q| q.name.to_owned()).collect();
            match replicas.is_empty() {
                true => TopologyError::UnknownService(name.to_owned()),
                false => TopologyError::Replicated { service: name.to_owned(), replicas },
            }
        })
    }

    /// Where callers reach `name` (through its proxy, if it has one).
    pub fn address(&self, name: &str) -> Result<SocketAddr> {
        Ok(self.service(name)?.public_address())
    }

    /// Sets the faults of `name`'s proxies (in bus-rpc mode, on its link to the broker
    /// as well; for a replicated `query`, every replica's).
    pub fn set_faults(&mut self, name: &str, faults: Faults) -> Result<()> {
        for name in self.names_of(name)? {
            let service = self.service(name)?;
            if service.proxy.is_none() {
                return Err(TopologyError::NotProxied(name.to_owned()));
            }
            service.proxies().for_each(|proxy| proxy.set(faults));
        }
        Ok(())
    }
}

/// How long a cluster may take to be whole after a start or a repair.
pub const CLUSTER_READY_WITHIN: Duration = Duration::from_secs(30);

/// The client URL of `servers`, comma-separated (as `--nats-url` takes several).
pub fn nats_url_of(servers: &[SocketAddr]) -> String {
    servers.iter().map(|s| format!("nats://{s}")).collect::<Vec<_>>().join(",")
}

/// The programs a topology of `mode` runs (besides the broker): the four services, or
/// the monolith.
pub fn programs(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Monolith => &[MONOLITH],
        _ => &SERVICES,
    }
}

/// The service processes a topology of `mode` with `replicas` query instances and
/// `shards` of each owner runs, in start order, as (program, component name): a
/// program once per instance (`users-1` …, `query-1` …), or once under its own name.
pub fn instances(mode: Mode, replicas: usize, shards: usize) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for &program in programs(mode) {
        let count = if program == QUERY { replicas } else { shards };
        match common::names::instance_names(program) {
            Some(names) if count > 1 => out.extend(names.iter().take(count).map(|&name| (program, name))),
            _ => out.push((program, program)),
        }
    }
    out
}

/// The folder of the service binaries: `CASCADE_BIN_DIR` if set, else the folder of the
/// running executable (for a test binary in `target/<profile>/deps`, its parent).
pub fn default_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CASCADE_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The last `n` lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::from("(no log)");
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(std::result::Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
