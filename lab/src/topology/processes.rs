//! The process backend: every component an OS process of this machine on loopback,
//! each with its own data dir and log under the run dir, started by the lab and hit
//! with real signals.
//!
//! Start-up handshake: each service is told `--addr-file`; it writes its bound address
//! there once it listens, and the lab then asks its gRPC health service. So ports can
//! be ephemeral (nothing guesses a free port) and "started" means "answering". The
//! broker says where it listens through its ports file (`--ports_file_dir`).

use std::{
    fs::{self, OpenOptions},
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    config::Mode,
    names::{NATS, NATS_NODES, ORDERS, PRODUCTS, QUERY, SERVICES, USERS},
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::Deserialize;

use super::{
    cluster::{self, Node},
    io_err, tail, Component, Config, Kind, Operation, Result, RunsAs, TopologyError,
};
use crate::proxy::Proxy;

/// How long a service may take from spawn to SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a service may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One process of the topology and how to start it again.
#[derive(Debug)]
struct Process {
    name: &'static str,
    kind: Kind,
    program: PathBuf,
    /// Where it listens (the address it announced, kept for restarts).
    address: SocketAddr,
    log: PathBuf,
    /// Arguments apart from where to listen, reused on restart.
    args: Vec<String>,
    /// Extra environment, reused on restart.
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Whether it was SIGSTOPped (and not SIGCONTinued since).
    paused: bool,
}

/// The processes of a topology. Dropping it kills every one still running.
#[derive(Debug, Default)]
pub(super) struct Processes {
    members: Vec<Process>,
}

/// Starts every component of `config` as a process, each once the ones it calls are
/// ready. On an error, the processes started so far are killed (by drop).
pub(super) async fn start(config: &Config) -> Result<(Vec<Component>, Processes)> {
    let mut processes = Processes::default();
    let mut components: Vec<Component> = Vec::new();
    let chosen = config.base_port.is_none();
    if config.mode.uses_broker() {
        let nats = bench::nats::nats_server()?;
        if config.brokers > 1 {
            start_cluster(config, &nats.path, &mut processes, &mut components).await?;
        } else {
            let dir = config.run_dir.join(NATS);
            let data_dir = dir.join("store");
            fs::create_dir_all(&data_dir).map_err(io_err(format!("cannot create {}", data_dir.display())))?;
            let port = match config.base_port {
                Some(p) => p + SERVICES.len() as u16,
                None => reserve_port()?,
            };
            let args = ["-a", "127.0.0.1", "-js", "-sd"]
                .map(String::from)
                .into_iter()
                .chain([data_dir.display().to_string()])
                .collect();
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let mut broker = Process::new(NATS, Kind::Broker, nats.path, address, dir.join("log"));
            broker.args = args;
            spawn_on_chosen_port(&mut broker, chosen).await?;
            components.push(Component {
                name: NATS,
                kind: Kind::Broker,
                address: broker.address,
                data_dir,
                monitor: None,
                proxy: None,
                broker_link: Vec::new(),
            });
            processes.members.push(broker);
        }
    }
    let mut extra_instances = 0;
    for (program, name) in super::instances(config.mode, config.replicas, config.shards) {
        // The first instance of each service keeps its own offset; the others follow.
        let first = name == program || name.ends_with("-1");
        let offset = match first {
            true => SERVICES.iter().position(|s| *s == program).unwrap_or(0) as u16,
            false => {
                extra_instances += 1;
                (SERVICES.len() + NATS_NODES.len() + extra_instances - 1) as u16
            }
        };
        let dir = config.run_dir.join(name);
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir).map_err(io_err(format!("cannot create {}", data_dir.display())))?;
        let public_port = match config.base_port {
            Some(p) => p + offset,
            None => reserve_port()?,
        };
        let public = SocketAddr::from(([127, 0, 0, 1], public_port));
        // A proxy asked for `query` stands in front of every replica.
        let proxied = config.proxied.iter().any(|p| p == name || p == program);
        // A proxied service listens on a port of its own; its proxy takes the public one.
        let listen = if proxied { SocketAddr::from(([127, 0, 0, 1], reserve_port()?)) } else { public };
        let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
        args.extend(["--policy".to_owned(), config.policy.to_string()]);
        if let Some(ms) = config.default_deadline_ms {
            args.extend(["--default-deadline-ms".to_owned(), ms.to_string()]);
        }
        // In bus-rpc mode the other services reach a proxied one through the broker, so
        // its link to the broker gets a fault proxy too.
        // (One proxy per node of a cluster, so the link has the fault whichever node the
        // service is connected to.)
        let mut broker_link = Vec::new();
        if config.mode == Mode::BusRpc && proxied {
            for broker in components.iter().filter(|c| c.kind == Kind::Broker) {
                let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
                broker_link.push(
                    Proxy::start(any_port, broker.address)
                        .await
                        .map_err(io_err(format!("cannot start the fault proxy of {name}'s link to the broker")))?,
                );
            }
        }
        let broker_via: Vec<SocketAddr> = broker_link.iter().map(Proxy::addr).collect();
        args.extend(peer_args(config.mode, program, &components, &broker_via)?);
        if config.mode == Mode::Async && name != program && program == QUERY {
            // A replica's view is fed by a durable consumer of its own, named as it is:
            // replicas sharing one would split its events between them.
            args.extend(["--consumer-name".to_owned(), name.to_owned()]);
        }
        if config.mode == Mode::BusRpc && config.shards > 1 {
            // Callers over the bus route by id over this many shards of each owner.
            args.extend(["--owner-shards".to_owned(), config.shards.to_string()]);
        }
        if name != program && program != QUERY {
            // A shard (its durable consumer, in async mode, is then named as it is).
            let number = name.rsplit_once('-').map_or("1", |(_, n)| n);
            args.extend(["--shard".to_owned(), number.to_owned()]);
        }
        let mut service = Process::new(name, Kind::Service, config.bin_dir.join(program), listen, dir.join("log"));
        service.args = args;
        service.env = (config.env.iter())
            .filter(|(service, _, _)| service == name || service == program)
            .map(|(_, key, value)| (key.clone(), value.clone()))
            .collect();
        spawn_on_chosen_port(&mut service, chosen || proxied).await?;
        let proxy = match proxied {
            true => Some(
                Proxy::start(public, service.address)
                    .await
                    .map_err(io_err(format!("cannot start the fault proxy of {name} on {public}")))?,
            ),
            false => None,
        };
        components.push(Component {
            name,
            kind: Kind::Service,
            address: service.address,
            data_dir,
            monitor: None,
            proxy,
            broker_link,
        });
        processes.members.push(service);
    }
    Ok((components, processes))
}

/// Starts the nodes of a JetStream cluster of `config.brokers` (`nats-1`, …): every
/// port chosen first and written into each node's configuration file (see
/// [`cluster`](super::cluster)), then each node started. A node whose port was taken
/// meanwhile gets new ones, and every file is written again.
async fn start_cluster(
    config: &Config,
    program: &Path,
    processes: &mut Processes,
    components: &mut Vec<Component>,
) -> Result<()> {
    let names = NATS_NODES.get(..config.brokers).ok_or(TopologyError::Brokers(config.brokers))?;
    let mut nodes = Vec::new();
    // Every port the cluster is given, so that no two of them are the same.
    let mut ports = DistinctPorts::default();
    let mut distinct = || ports.next();
    for (i, &name) in names.iter().enumerate() {
        let dir = config.run_dir.join(name);
        let store = dir.join("store");
        fs::create_dir_all(&store).map_err(io_err(format!("cannot create {}", store.display())))?;
        let client_port = match config.base_port {
            Some(p) => p + (SERVICES.len() + i) as u16,
            None => distinct()?,
        };
        nodes.push(Node { name, dir, store, client_port, cluster_port: distinct()?, monitor_port: distinct()? });
    }
    let write = |nodes: &[Node]| {
        cluster::write_configs(nodes)
            .map_err(io_err(format!("cannot write the cluster's configuration files in {}", config.run_dir.display())))
    };
    write(&nodes)?;
    for i in 0..nodes.len() {
        let address = SocketAddr::from(([127, 0, 0, 1], nodes[i].client_port));
        let mut process =
            Process::new(nodes[i].name, Kind::Broker, program.to_path_buf(), address, nodes[i].dir.join("log"));
        process.args = vec!["-a".into(), "127.0.0.1".into(), "-c".into(), nodes[i].config_file().display().to_string()];
        let mut attempts = 0;
        loop {
            match spawn_and_wait(&mut process).await {
                // A port taken meanwhile: the ones the lab chose are chosen again (with
                // --base-port, the client port is the user's and stays).
                Err(TopologyError::DiedAtStart { tail, .. }) if attempts < 5 && tail.contains("in use") => {
                    attempts += 1;
                    tracing::info!(node = nodes[i].name, "a port taken meanwhile; new ones");
                    if config.base_port.is_none() {
                        nodes[i].client_port = distinct()?;
                    }
                    nodes[i].cluster_port = distinct()?;
                    nodes[i].monitor_port = distinct()?;
                    process.address.set_port(nodes[i].client_port);
                    write(&nodes)?;
                }
                other => break other?,
            }
        }
        components.push(Component {
            name: nodes[i].name,
            kind: Kind::Broker,
            address: process.address,
            data_dir: nodes[i].store.clone(),
            monitor: Some(nodes[i].monitor()),
            proxy: None,
            broker_link: Vec::new(),
        });
        processes.members.push(process);
    }
    // The services create the stream as they start, which needs a meta leader: without
    // one their first request would wait out its whole timeout.
    let monitors: Vec<SocketAddr> = nodes.iter().map(Node::monitor).collect();
    cluster::wait_meta_leader(&monitors, super::CLUSTER_READY_WITHIN).await.map_err(|detail| {
        TopologyError::ClusterNotReady {
            nodes: nodes.len(),
            secs: super::CLUSTER_READY_WITHIN.as_secs(),
            detail,
            run_dir: config.run_dir.display().to_string(),
        }
    })?;
    Ok(())
}

/// The arguments that tell `name` its mode and where its dependencies are: the
/// services it calls (sync) or the broker, every node of a cluster (async, bus-rpc: at
/// `broker_via` if given, proxies in front of the nodes), among those already started;
/// the monolith has none. On a cluster, async services keep the stream with as many
/// replicas as there are nodes.
fn peer_args(mode: Mode, name: &str, started: &[Component], broker_via: &[SocketAddr]) -> Result<Vec<String>> {
    // Every instance of `dep` (its shards, in order), comma-separated.
    let find = |dep: &str| {
        let all: Vec<String> = (started.iter())
            .filter(|c| c.name == dep || common::names::replica_of(c.name) == Some(dep))
            .map(|c| c.public_address().to_string())
            .collect();
        match all.is_empty() {
            true => Err(TopologyError::UnknownService(dep.to_owned())),
            false => Ok(all.join(",")),
        }
    };
    let mut args = vec!["--mode".to_owned(), mode.to_string()];
    match mode {
        Mode::Sync => {
            let deps: &[(&str, &str)] = match name {
                ORDERS => &[("--users-addr", USERS), ("--products-addr", PRODUCTS)],
                QUERY => &[("--users-addr", USERS), ("--orders-addr", ORDERS), ("--products-addr", PRODUCTS)],
                _ => &[],
            };
            for (flag, dep) in deps {
                args.extend([flag.to_string(), find(dep)?]);
            }
        }
        Mode::Async | Mode::BusRpc => {
            let nodes: Vec<SocketAddr> = started.iter().filter(|c| c.kind == Kind::Broker).map(|c| c.address).collect();
            if nodes.is_empty() {
                return Err(TopologyError::UnknownService(NATS.to_owned()));
            }
            let brokers = if broker_via.is_empty() { &nodes[..] } else { broker_via };
            args.extend(["--nats-url".to_owned(), super::nats_url_of(brokers)]);
            if mode == Mode::Async && nodes.len() > 1 {
                args.extend(["--stream-replicas".to_owned(), nodes.len().to_string()]);
            }
        }
        // One process: nothing to find.
        Mode::Monolith => {}
    }
    Ok(args)
}

impl Process {
    /// A process not started yet.
    fn new(name: &'static str, kind: Kind, program: PathBuf, address: SocketAddr, log: PathBuf) -> Self {
        Self { name, kind, program, address, log, args: Vec::new(), env: Vec::new(), child: None, paused: false }
    }
}

impl Processes {
    fn member(&mut self, name: &str) -> Result<&mut Process> {
        self.members.iter_mut().find(|p| p.name == name).ok_or_else(|| TopologyError::UnknownService(name.to_owned()))
    }

    pub(super) fn pid(&self, name: &str) -> Option<u32> {
        self.members.iter().find(|p| p.name == name)?.child.as_ref().map(Child::id)
    }

    pub(super) fn runs_as(&self, name: &str) -> RunsAs {
        let log = self.members.iter().find(|p| p.name == name).map(|p| p.log.clone()).unwrap_or_default();
        RunsAs::Process { log }
    }

    /// Kill: SIGKILL and reap. Freeze/thaw: SIGSTOP/SIGCONT. A partition needs
    /// containers.
    pub(super) fn operate(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        let process = self.member(name)?;
        let not_running = || TopologyError::NotRunning { service: name.to_owned() };
        match operation {
            Operation::Kill => {
                let child = process.child.as_mut().ok_or_else(not_running)?;
                signal(name, child, Signal::SIGKILL)?;
                child.wait().map_err(io_err(format!("cannot reap {name}")))?;
                process.child = None;
                process.paused = false;
                tracing::info!(service = name, "killed (SIGKILL)");
            }
            Operation::Freeze | Operation::Thaw => {
                let frozen = operation == Operation::Freeze;
                let child = process.child.as_ref().ok_or_else(not_running)?;
                signal(name, child, if frozen { Signal::SIGSTOP } else { Signal::SIGCONT })?;
                process.paused = frozen;
                tracing::info!(service = name, frozen, "SIGSTOP/SIGCONT");
            }
            Operation::Partition | Operation::Reconnect => {
                return Err(TopologyError::NeedsCompose("a partition".into()));
            }
        }
        Ok(())
    }

    /// Starts `name` again on its old address and data dir (stopping it first if it runs).
    pub(super) async fn restart(&mut self, name: &'static str) -> Result<()> {
        self.stop_one(name)?;
        spawn_and_wait(self.member(name)?).await
    }

    /// Restarts `name` if it is dead, resumes it if it is paused.
    pub(super) async fn recover(&mut self, name: &'static str) -> Result<()> {
        let process = self.member(name)?;
        if process.child.is_none() {
            self.restart(name).await
        } else if process.paused {
            self.operate(name, Operation::Thaw)
        } else {
            Ok(())
        }
    }

    /// SIGTERM one process, SIGKILL if it has not exited within the grace period.
    pub(super) fn stop_one(&mut self, name: &'static str) -> Result<()> {
        let process = self.member(name)?;
        let Some(child) = process.child.as_mut() else {
            return Ok(());
        };
        terminate(name, child, process.paused)?;
        process.child = None;
        process.paused = false;
        Ok(())
    }

    /// Stops every process, in the reverse of the start order.
    pub(super) fn stop(&mut self) -> Result<()> {
        let names: Vec<&'static str> = self.members.iter().rev().map(|p| p.name).collect();
        let mut first_error = None;
        for name in names {
            if let Err(e) = self.stop_one(name) {
                tracing::warn!(service = name, error = %e, "stop failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A process that exited without being told to: its name and exit status.
    pub(super) fn reap_exited(&mut self) -> Vec<(&'static str, String)> {
        let mut exited = Vec::new();
        for process in &mut self.members {
            if let Some(child) = &mut process.child {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        exited.push((process.name, status.to_string()));
                        process.child = None;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(service = process.name, %error, "cannot check on the process"),
                }
            }
        }
        exited
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for process in &mut self.members {
            if let Some(mut child) = process.child.take() {
                if let Err(e) = child.kill().and_then(|()| child.wait().map(|_| ())) {
                    tracing::warn!(service = process.name, error = %e, "could not kill on drop");
                }
            }
        }
    }
}

/// Whether a process exists (signal 0 checks existence and permission without
/// sending anything).
pub(super) fn pid_alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Ports of [`reserve_port`] that are also distinct from each other: every port a
/// topology's components are given at once.
#[derive(Default)]
pub(super) struct DistinctPorts(std::collections::HashSet<u16>);

impl DistinctPorts {
    pub(super) fn next(&mut self) -> Result<u16> {
        loop {
            let port = reserve_port()?;
            if self.0.insert(port) {
                return Ok(port);
            }
        }
    }
}

/// A free loopback port *below* the kernel's ephemeral range. Ports in that range are
/// also handed out as the local ports of outgoing connections, so a component killed
/// for a while could find its port taken by some client's connection and fail to
/// restart on it; below the range, only a deliberate bind can take it.
pub(super) fn reserve_port() -> Result<u16> {
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (1024u16.max(low / 2), low.saturating_sub(1));
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rand::Rng::random_range(&mut rng, from..=to);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(TopologyError::Io {
        context: format!("no free port between {from} and {to}"),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

/// Spawns `process`; when its port was chosen here and another process took it in
/// the meantime (tests start topologies in parallel), tries again with a new one.
async fn spawn_on_chosen_port(process: &mut Process, chosen: bool) -> Result<()> {
    let mut attempts = 0;
    loop {
        match spawn_and_wait(process).await {
            Err(TopologyError::DiedAtStart { tail, .. }) if chosen && attempts < 5 && tail.contains("in use") => {
                attempts += 1;
                tracing::info!(service = process.name, port = process.address.port(), "port taken meanwhile; another");
                process.address.set_port(reserve_port()?);
            }
            other => return other,
        }
    }
}

fn signal(name: &str, child: &Child, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(child.id() as i32), sig)
        .map_err(|source| TopologyError::Signal { service: name.to_owned(), source })
}

fn terminate(name: &str, child: &mut Child, paused: bool) -> Result<()> {
    signal(name, child, Signal::SIGTERM)?;
    if paused {
        // A stopped process only sees SIGTERM once it runs again.
        signal(name, child, Signal::SIGCONT)?;
    }
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if child.try_wait().map_err(io_err(format!("cannot wait for {name}")))?.is_some() {
            tracing::debug!(service = name, "stopped");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::warn!(service = name, "did not stop within the grace period; SIGKILL");
    signal(name, child, Signal::SIGKILL)?;
    child.wait().map_err(io_err(format!("cannot reap {name}")))?;
    Ok(())
}

/// Spawns `process` and waits until it is ready on its address (which becomes the
/// bound one when it was ephemeral).
async fn spawn_and_wait(process: &mut Process) -> Result<()> {
    let handshake = process.log.with_file_name(match process.kind {
        Kind::Service => "addr",
        Kind::Broker => "ports",
    });
    match process.kind {
        Kind::Service => remove_if_present(&handshake)?,
        Kind::Broker => {
            fs::create_dir_all(&handshake).map_err(io_err(format!("cannot create {}", handshake.display())))?
        }
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&process.log)
        .map_err(io_err(format!("cannot open {}", process.log.display())))?;
    let log_err = log.try_clone().map_err(io_err("cannot duplicate the log handle"))?;
    let mut command = Command::new(&process.program);
    match process.kind {
        Kind::Service => {
            command.arg("--listen").arg(process.address.to_string()).arg("--addr-file").arg(&handshake);
        }
        Kind::Broker => {
            let port = match process.address.port() {
                0 => "-1".to_owned(),
                port => port.to_string(),
            };
            command.arg("-p").arg(port).arg("--ports_file_dir").arg(&handshake);
        }
    }
    command
        .args(&process.args)
        .envs(process.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in the lab's terminal reaches the lab only,
        // which then stops the services in order.
        .process_group(0);
    die_with_parent(&mut command);
    let child = command.spawn().map_err(io_err(format!("cannot start {}", process.name)))?;
    let pid = child.id();
    process.child = Some(child);
    let start = Instant::now();
    loop {
        if let Some(status) =
            process.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).map(|status| status.to_string())
        {
            process.child = None;
            return Err(TopologyError::DiedAtStart {
                service: process.name.to_owned(),
                status,
                log: process.log.display().to_string(),
                tail: tail(&process.log, 10),
            });
        }
        let announced = match process.kind {
            Kind::Service => fs::read_to_string(&handshake).ok().and_then(|t| t.trim().parse::<SocketAddr>().ok()),
            Kind::Broker => read_ports_file(&handshake, &process.program, pid),
        };
        if let Some(addr) = announced {
            process.address = addr;
            break;
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(TopologyError::StartTimeout {
                service: process.name.to_owned(),
                secs: START_TIMEOUT.as_secs(),
                log: process.log.display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if process.kind == Kind::Service {
        crate::client::wait_serving(process.address, START_TIMEOUT).await.map_err(|reason| {
            TopologyError::NotServing { service: process.name.to_owned(), address: process.address, reason }
        })?;
    }
    tracing::info!(service = process.name, address = %process.address, pid, "ready");
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_err(format!("cannot remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}

/// nats-server writes `<executable>_<pid>.ports` (JSON with its client URLs) once it
/// accepts connections.
fn read_ports_file(dir: &Path, program: &Path, pid: u32) -> Option<SocketAddr> {
    #[derive(Deserialize)]
    struct Ports {
        nats: Vec<String>,
    }
    let exe = program.file_name()?.to_string_lossy();
    let text = fs::read_to_string(dir.join(format!("{exe}_{pid}.ports"))).ok()?;
    let ports: Ports = serde_json::from_str(&text).ok()?;
    ports.nats.iter().find_map(|url| url.strip_prefix("nats://")?.parse().ok())
}

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies, so that
/// services never outlive a lab that was itself killed (SIGKILL rather than SIGTERM,
/// because a SIGSTOPped child would sit on SIGTERM forever; every acknowledged write is
/// already flushed, so SIGKILL loses nothing). Spawn from a long-lived thread.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
