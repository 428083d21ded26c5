//! A topology: the four services started as separate OS processes on loopback, each
//! with its own data dir under one run dir (plus, in async mode, a real `nats-server`
//! with JetStream and its own store dir), and the means to stop, kill, pause and
//! restart any of them with real signals.
//!
//! Start-up handshake: each service is told `--addr-file`; it writes its bound address
//! there once it listens, and the lab then asks its gRPC health service. So ports can
//! be ephemeral (nothing guesses a free port) and "started" means "answering".
//! The broker says where it listens through its ports file (`--ports_file_dir`).
//! Components start in dependency order (nats, users, products, orders, query),
//! because a service is given the addresses of what it calls. A restarted service gets back
//! the address it had, so its callers need not be told anything.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    config::Mode,
    names::{NATS, ORDERS, PRODUCTS, QUERY, SERVICES, USERS},
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde::{Deserialize, Serialize};

use crate::{
    compose::{Compose, ComposeError},
    proxy::{Faults, Proxy},
};

/// How long a service may take from spawn to SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a service may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The file a topology is described in, inside its run dir.
pub const TOPOLOGY_FILE: &str = "topology.json";

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
    #[error("no component named {0:?}; they are users, products, orders, query (and nats in async mode)")]
    UnknownService(String),
    #[error("{0} has no fault proxy: start the topology with --proxy {0} (or --proxy all)")]
    NotProxied(String),
    #[error("{service} is not running")]
    NotRunning { service: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("cannot signal {service}: {source}")]
    Signal { service: String, source: nix::Error },
    #[error(transparent)]
    Broker(#[from] bench::nats::BrokerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("{0} mode: the lab does not start it yet")]
    ModeNotStarted(Mode),
    #[error("{0} needs the compose target (`--target compose`): processes on one host share one network")]
    NeedsCompose(String),
}

type Result<T, E = TopologyError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TopologyError {
    let context = context.into();
    move |source| TopologyError::Io { context, source }
}

/// What `lab up` records in `topology.json` for other commands (and people) to use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopologyFile {
    pub mode: String,
    /// "process" or "compose".
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub compose_project: Option<String>,
    /// The broker's client URL (async mode).
    pub nats_url: Option<String>,
    pub run_dir: PathBuf,
    /// The process that started (and will stop) the services.
    pub lab_pid: u32,
    pub services: Vec<ServiceRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// Where callers reach it.
    pub address: SocketAddr,
    /// Where it really listens, when a fault proxy stands in front of it.
    #[serde(default)]
    pub direct_address: Option<SocketAddr>,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl TopologyFile {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(TOPOLOGY_FILE);
        let text = fs::read_to_string(&path)
            .map_err(io_err(format!("cannot read {} (is `lab up` running with this --run-dir?)", path.display())))?;
        serde_json::from_str(&text).map_err(|e| TopologyError::Io {
            context: format!("{} is not a topology file", path.display()),
            source: e.into(),
        })
    }

    pub fn address(&self, service: &str) -> Result<SocketAddr, TopologyError> {
        self.services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.address)
            .ok_or_else(|| TopologyError::UnknownService(service.to_owned()))
    }

    /// Whether the lab that wrote this file is still alive.
    pub fn lab_alive(&self) -> bool {
        pid_alive(self.lab_pid)
    }
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0 checks existence and permission without sending anything.
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// How to start a topology.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub run_dir: PathBuf,
    /// Where the service binaries are.
    pub bin_dir: PathBuf,
    /// If set, services listen on base_port, base_port+1, … (users, products, orders,
    /// query); otherwise on ephemeral ports.
    pub base_port: Option<u16>,
    /// Passed to every service as `--default-deadline-ms`.
    pub default_deadline_ms: Option<u64>,
    /// Services that get a fault proxy in front of them.
    pub proxied: Vec<String>,
    /// Local processes, or containers under Compose.
    pub target: Target,
    /// Extra environment of one service's process (service name, variable, value): how
    /// tests set a [`common::failpoint`] on one service only (process target).
    pub env: Vec<(String, String, String)>,
}

/// Where the topology runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every component a process of this machine, started by the lab.
    Process,
    /// Containers of `image`, under Compose project `project`.
    Compose { image: String, project: String },
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Process => "process",
            Target::Compose { .. } => "compose",
        }
    }
}

impl Config {
    pub fn new(mode: Mode, run_dir: impl Into<PathBuf>) -> Self {
        Self {
            mode,
            run_dir: run_dir.into(),
            bin_dir: default_bin_dir(),
            base_port: None,
            default_deadline_ms: None,
            proxied: Vec::new(),
            target: Target::Process,
            env: Vec::new(),
        }
    }
}

/// A free loopback port *below* the kernel's ephemeral range. Ports in that range are
/// also handed out as the local ports of outgoing connections, so a service killed
/// for a while could find its port taken by some client's connection and fail to
/// restart on it; below the range, only a deliberate bind can take it.
fn reserve_port() -> Result<u16> {
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

/// Spawns `service`; when its port was chosen here and another process took it in
/// the meantime (tests start topologies in parallel), tries again with a new one.
async fn spawn_on_chosen_port(service: &mut ServiceProcess, chosen: bool) -> Result<()> {
    let mut attempts = 0;
    loop {
        match spawn_and_wait(service).await {
            Err(TopologyError::DiedAtStart { tail, .. }) if chosen && attempts < 5 && tail.contains("in use") => {
                attempts += 1;
                tracing::info!(service = service.name, port = service.address.port(), "port taken meanwhile; another");
                service.address.set_port(reserve_port()?);
            }
            other => return other,
        }
    }
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

/// What a process is, which decides how it is told where to listen and how the lab
/// knows it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Cascade service: `--listen`/`--addr-file`, then gRPC health.
    Service,
    /// nats-server: `-p`/`--ports_file_dir`, then a TCP connection.
    Broker,
}

/// One process of the topology and how to start it again.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: &'static str,
    pub kind: Kind,
    program: PathBuf,
    pub address: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Arguments apart from where to listen, reused on restart.
    args: Vec<String>,
    /// Extra environment, reused on restart.
    env: Vec<(String, String)>,
    child: Option<Child>,
    paused: bool,
    /// The fault proxy callers go through, if this service has one.
    proxy: Option<Proxy>,
    /// Host pid of the component's process when the lab did not start it (a container).
    pid_hint: u32,
}

impl ServiceProcess {
    /// A process not started yet.
    fn new(
        name: &'static str,
        kind: Kind,
        program: PathBuf,
        address: SocketAddr,
        data_dir: PathBuf,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            kind,
            program,
            address,
            data_dir,
            log,
            args: Vec::new(),
            env: Vec::new(),
            child: None,
            paused: false,
            proxy: None,
            pid_hint: 0,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id).or((self.pid_hint != 0).then_some(self.pid_hint))
    }

    /// Where callers reach it: its proxy if it has one, else itself.
    pub fn public_address(&self) -> SocketAddr {
        self.proxy.as_ref().map_or(self.address, Proxy::addr)
    }
}

/// A fault that only a `docker` command carries out ([`Compose::kill`], …).
pub type ContainerFault = fn(&Compose, &str) -> std::result::Result<(), ComposeError>;

/// A running topology. Dropping it kills every service it started.
#[derive(Debug)]
pub struct Topology {
    pub config: Config,
    pub services: Vec<ServiceProcess>,
    /// The Compose project, on the compose target.
    compose: Option<Compose>,
}

impl Topology {
    /// Starts every service of `config.mode` and waits until each is SERVING.
    pub async fn start(config: Config) -> Result<Self> {
        if config.mode == Mode::BusRpc {
            return Err(TopologyError::ModeNotStarted(config.mode));
        }
        if let Ok(existing) = TopologyFile::read(&config.run_dir) {
            if existing.lab_alive() && existing.lab_pid != std::process::id() {
                return Err(TopologyError::AlreadyRunning { run_dir: config.run_dir.clone(), pid: existing.lab_pid });
            }
        }
        for name in SERVICES {
            let bin = config.bin_dir.join(name);
            if !bin.is_file() {
                return Err(TopologyError::BinaryMissing(bin));
            }
        }
        fs::create_dir_all(&config.run_dir).map_err(io_err(format!("cannot create {}", config.run_dir.display())))?;
        if let Target::Compose { image, project } = &config.target {
            let (image, project) = (image.clone(), project.clone());
            return Self::start_compose(config, &image, &project).await;
        }
        let mut topology = Topology { config, services: Vec::new(), compose: None };
        if topology.config.mode == Mode::Async {
            let nats = bench::nats::nats_server()?;
            let dir = topology.config.run_dir.join(NATS);
            let data_dir = dir.join("store");
            fs::create_dir_all(&data_dir).map_err(io_err(format!("cannot create {}", data_dir.display())))?;
            let port = match topology.config.base_port {
                Some(p) => p + SERVICES.len() as u16,
                None => reserve_port()?,
            };
            let args = ["-a", "127.0.0.1", "-js", "-sd"]
                .map(String::from)
                .into_iter()
                .chain([data_dir.display().to_string()])
                .collect();
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let mut broker = ServiceProcess::new(NATS, Kind::Broker, nats.path, address, data_dir, dir.join("log"));
            broker.args = args;
            spawn_on_chosen_port(&mut broker, topology.config.base_port.is_none()).await?;
            topology.services.push(broker);
        }
        for (i, name) in SERVICES.into_iter().enumerate() {
            let dir = topology.config.run_dir.join(name);
            let data_dir = dir.join("data");
            fs::create_dir_all(&data_dir).map_err(io_err(format!("cannot create {}", data_dir.display())))?;
            let chosen = topology.config.base_port.is_none();
            let public_port = match topology.config.base_port {
                Some(p) => p + i as u16,
                None => reserve_port()?,
            };
            let public = SocketAddr::from(([127, 0, 0, 1], public_port));
            let proxied = topology.config.proxied.iter().any(|p| p == name);
            // A proxied service listens on a port of its own; its proxy takes the public one.
            let listen = if proxied { SocketAddr::from(([127, 0, 0, 1], reserve_port()?)) } else { public };
            let mut args = vec!["--data-dir".to_owned(), data_dir.display().to_string()];
            if let Some(ms) = topology.config.default_deadline_ms {
                args.extend(["--default-deadline-ms".to_owned(), ms.to_string()]);
            }
            args.extend(topology.peer_args(name)?);
            let program = topology.config.bin_dir.join(name);
            let mut service = ServiceProcess::new(name, Kind::Service, program, listen, data_dir, dir.join("log"));
            service.args = args;
            service.env = (topology.config.env.iter())
                .filter(|(service, _, _)| service == name)
                .map(|(_, key, value)| (key.clone(), value.clone()))
                .collect();
            spawn_on_chosen_port(&mut service, chosen || proxied).await?;
            if proxied {
                let proxy = Proxy::start(public, service.address)
                    .await
                    .map_err(io_err(format!("cannot start the fault proxy of {name} on {public}")))?;
                service.proxy = Some(proxy);
            }
            topology.services.push(service);
        }
        topology.write_file()?;
        Ok(topology)
    }

    /// Starts the topology as a Compose project and records it like the process one.
    async fn start_compose(config: Config, image: &str, project: &str) -> Result<Self> {
        let mut names: Vec<&'static str> = Vec::new();
        if config.mode == Mode::Async {
            names.push(NATS);
        }
        names.extend(SERVICES);
        let mut ports = Vec::new();
        for name in &names {
            ports.push((*name, reserve_port()?));
        }
        let (run_dir, image, project, mode) =
            (config.run_dir.clone(), image.to_owned(), project.to_owned(), config.mode.to_string());
        let ports_for_up = ports.clone();
        // If this future is dropped (Ctrl-C) or `up` fails, the guard takes down
        // whatever came up; an `up` still running then takes itself down when it ends.
        let mut guard =
            UpGuard { project: Compose::existing(&run_dir, &project), armed: true, cancelled: Default::default() };
        let cancelled = guard.cancelled.clone();
        let compose = tokio::task::spawn_blocking(move || {
            let compose = Compose::up(&run_dir, &project, &image, &mode, &ports_for_up)?;
            if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
                compose.down()?;
                return Err(ComposeError::Failed { command: "compose up".into(), detail: "cancelled".into() });
            }
            Ok(compose)
        })
        .await
        .map_err(|e| TopologyError::Io { context: "compose up".into(), source: std::io::Error::other(e) })??;
        guard.armed = false;
        let services = ports
            .iter()
            .map(|(name, port)| {
                let kind = if *name == NATS { Kind::Broker } else { Kind::Service };
                let address = SocketAddr::from(([127, 0, 0, 1], *port));
                let volume = PathBuf::from(format!("volume {}_{name}-data", compose.project));
                let log = PathBuf::from(format!("docker logs {}", compose.container(name)));
                let mut service = ServiceProcess::new(name, kind, PathBuf::new(), address, volume, log);
                service.pid_hint = compose.pid(name);
                service
            })
            .collect();
        let topology = Topology { config, services, compose: Some(compose) };
        topology.write_file()?;
        Ok(topology)
    }

    /// Cuts `name` off the network of the others (compose target).
    pub fn partition(&mut self, name: &str) -> Result<()> {
        Ok(self.compose_of(name)?.partition(name)?)
    }

    /// Undoes [`Topology::partition`].
    pub fn reconnect(&mut self, name: &str) -> Result<()> {
        Ok(self.compose_of(name)?.reconnect(name)?)
    }

    /// Carries out a compose-target fault of `name` on a blocking thread, so the
    /// `docker` command it runs does not hold a runtime worker (the load's and the
    /// probe's tasks run there). `None` on the process target.
    pub async fn off_runtime(&self, name: &str, fault: ContainerFault) -> Option<Result<()>> {
        let compose = self.compose.clone()?;
        if let Err(e) = self.service(name) {
            return Some(Err(e));
        }
        let owned = name.to_owned();
        let done = tokio::task::spawn_blocking(move || fault(&compose, &owned)).await;
        Some(match done {
            Ok(result) => result.map_err(TopologyError::from),
            Err(e) => Err(TopologyError::Io { context: format!("docker ({name})"), source: std::io::Error::other(e) }),
        })
    }

    /// The Compose project, for a fault only containers give.
    fn compose_of(&self, name: &str) -> Result<&Compose> {
        self.service(name)?;
        self.compose.as_ref().ok_or_else(|| TopologyError::NeedsCompose("a partition".into()))
    }

    /// The arguments that tell `name` its mode and where its dependencies are: the
    /// services it calls (sync) or the broker (async).
    fn peer_args(&self, name: &str) -> Result<Vec<String>> {
        let mut args = vec!["--mode".to_owned(), self.config.mode.to_string()];
        match self.config.mode {
            Mode::Sync => {
                let deps: &[(&str, &str)] = match name {
                    ORDERS => &[("--users-addr", USERS), ("--products-addr", PRODUCTS)],
                    QUERY => &[("--users-addr", USERS), ("--orders-addr", ORDERS), ("--products-addr", PRODUCTS)],
                    _ => &[],
                };
                for (flag, dep) in deps {
                    args.extend([flag.to_string(), self.service(dep)?.public_address().to_string()]);
                }
            }
            Mode::Async => args.extend(["--nats-url".to_owned(), self.nats_url().expect("the broker starts first")]),
            Mode::BusRpc => return Err(TopologyError::ModeNotStarted(Mode::BusRpc)),
        }
        Ok(args)
    }

    /// The broker's client URL, in async mode.
    pub fn nats_url(&self) -> Option<String> {
        self.services.iter().find(|s| s.kind == Kind::Broker).map(|b| format!("nats://{}", b.address))
    }

    pub fn service(&self, name: &str) -> Result<&ServiceProcess> {
        self.services.iter().find(|s| s.name == name).ok_or_else(|| TopologyError::UnknownService(name.to_owned()))
    }

    fn service_mut(&mut self, name: &str) -> Result<&mut ServiceProcess> {
        self.services.iter_mut().find(|s| s.name == name).ok_or_else(|| TopologyError::UnknownService(name.to_owned()))
    }

    /// Where callers reach `name` (through its proxy, if it has one).
    pub fn address(&self, name: &str) -> Result<SocketAddr> {
        Ok(self.service(name)?.public_address())
    }

    /// Sets the faults of `name`'s proxy.
    pub fn set_faults(&mut self, name: &str, faults: Faults) -> Result<()> {
        let proxy = self.service(name)?.proxy.as_ref().ok_or_else(|| TopologyError::NotProxied(name.to_owned()))?;
        proxy.set(faults);
        Ok(())
    }

    /// What `topology.json` holds for this topology.
    pub fn file(&self) -> TopologyFile {
        TopologyFile {
            target: self.config.target.name().to_owned(),
            compose_project: self.compose.as_ref().map(|c| c.project.clone()),
            mode: self.config.mode.to_string(),
            nats_url: self.nats_url(),
            run_dir: self.config.run_dir.clone(),
            lab_pid: std::process::id(),
            services: self
                .services
                .iter()
                .map(|s| ServiceRecord {
                    name: s.name.to_owned(),
                    address: s.public_address(),
                    direct_address: s.proxy.as_ref().map(|_| s.address),
                    pid: s.pid().unwrap_or(0),
                    data_dir: s.data_dir.clone(),
                    log: s.log.clone(),
                })
                .collect(),
        }
    }

    fn write_file(&self) -> Result<()> {
        let path = self.config.run_dir.join(TOPOLOGY_FILE);
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_string_pretty(&self.file()).expect("a topology serialises");
        fs::write(&tmp, json).map_err(io_err(format!("cannot write {}", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io_err(format!("cannot write {}", path.display())))
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        if let Some(compose) = &self.compose {
            self.service(name)?;
            return Ok(compose.kill(name)?);
        }
        let service = self.service_mut(name)?;
        let child = service.child.as_mut().ok_or_else(|| TopologyError::NotRunning { service: name.to_owned() })?;
        signal(name, child, Signal::SIGKILL)?;
        child.wait().map_err(io_err(format!("cannot reap {name}")))?;
        service.child = None;
        service.paused = false;
        tracing::info!(service = name, "killed (SIGKILL)");
        Ok(())
    }

    /// SIGSTOP: the process freezes with its sockets open (a grey failure).
    pub fn pause(&mut self, name: &str) -> Result<()> {
        self.freeze(name, true)
    }

    /// SIGCONT after [`Topology::pause`].
    pub fn resume(&mut self, name: &str) -> Result<()> {
        self.freeze(name, false)
    }

    fn freeze(&mut self, name: &str, frozen: bool) -> Result<()> {
        if let Some(compose) = &self.compose {
            self.service(name)?;
            let done = if frozen { compose.pause(name) } else { compose.unpause(name) };
            return Ok(done?);
        }
        let service = self.service_mut(name)?;
        let child = service.child.as_ref().ok_or_else(|| TopologyError::NotRunning { service: name.to_owned() })?;
        signal(name, child, if frozen { Signal::SIGSTOP } else { Signal::SIGCONT })?;
        service.paused = frozen;
        tracing::info!(service = name, frozen, "SIGSTOP/SIGCONT");
        Ok(())
    }

    /// Starts a killed (or stopped) service again on its old address and data dir.
    pub async fn restart(&mut self, name: &str) -> Result<()> {
        if let Some(compose) = &self.compose {
            let port = self.service(name)?.address.port();
            let (compose, owned) = (compose.clone(), name.to_owned());
            tokio::task::spawn_blocking(move || compose.start(&owned, port)).await.map_err(|e| {
                TopologyError::Io { context: "docker start".into(), source: std::io::Error::other(e) }
            })??;
            let pid = self.compose.as_ref().map_or(0, |c| c.pid(name));
            self.service_mut(name)?.pid_hint = pid;
            self.write_file()?;
            return Ok(());
        }
        if self.service(name)?.child.is_some() {
            self.stop_one(name)?;
        }
        spawn_and_wait(self.service_mut(name)?).await?;
        self.write_file()?;
        tracing::info!(service = name, "restarted");
        Ok(())
    }

    /// Undoes every fault: restarts what is dead, resumes what is paused, heals proxies.
    pub async fn recover(&mut self) -> Result<()> {
        if let Some(compose) = self.compose.clone() {
            let names: Vec<&'static str> = self.services.iter().map(|s| s.name).collect();
            for name in names {
                match compose.state(name).as_str() {
                    "paused" => compose.unpause(name)?,
                    "running" => {}
                    _ => self.restart(name).await?,
                }
                if !compose.connected(name) {
                    compose.reconnect(name)?;
                }
            }
            return Ok(());
        }
        for (name, status) in self.reap_exited() {
            tracing::warn!(service = name, %status, "had exited by itself");
        }
        let names: Vec<&'static str> = self.services.iter().map(|s| s.name).collect();
        for name in names {
            let service = self.service(name)?;
            if service.child.is_none() {
                self.restart(name).await?;
            } else if service.paused {
                self.resume(name)?;
            }
            if let Some(proxy) = &self.service(name)?.proxy {
                proxy.heal();
            }
        }
        Ok(())
    }

    /// SIGTERM one service, SIGKILL if it has not exited within the grace period.
    pub fn stop_one(&mut self, name: &str) -> Result<()> {
        let service = self.service_mut(name)?;
        let Some(child) = service.child.as_mut() else {
            return Ok(());
        };
        terminate(name, child, service.paused)?;
        service.child = None;
        service.paused = false;
        Ok(())
    }

    /// Stops every process, callers before callees (the broker last), so nothing logs
    /// needless errors.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(compose) = &self.compose {
            compose.down()?;
            // Taken only once down: a failed `down` is tried again on drop.
            self.compose = None;
            return Ok(());
        }
        let names: Vec<&'static str> = self.services.iter().rev().map(|s| s.name).collect();
        let mut first_error = None;
        for name in names {
            if let Err(e) = self.stop_one(name) {
                tracing::warn!(service = name, error = %e, "stop failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A service that exited without being told to: its name and exit status.
    pub fn reap_exited(&mut self) -> Vec<(&'static str, String)> {
        let mut exited = Vec::new();
        for service in &mut self.services {
            if let Some(child) = &mut service.child {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        exited.push((service.name, status.to_string()));
                        service.child = None;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(service = service.name, %error, "cannot check on the process"),
                }
            }
        }
        exited
    }
}

/// Takes a Compose project down unless disarmed (see `Topology::start_compose`).
struct UpGuard {
    project: Compose,
    armed: bool,
    cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        if self.armed {
            self.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Err(e) = self.project.down() {
                tracing::warn!(project = self.project.project, error = %e, "cleanup after an unfinished compose up");
            }
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(compose) = self.compose.take() {
            if let Err(e) = compose.down() {
                tracing::warn!(project = compose.project, error = %e, "could not take the compose project down on drop");
            }
        }
        for service in &mut self.services {
            if let Some(mut child) = service.child.take() {
                if let Err(e) = child.kill().and_then(|()| child.wait().map(|_| ())) {
                    tracing::warn!(service = service.name, error = %e, "could not kill on drop");
                }
            }
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

/// Spawns `service` and waits until it is ready on its address (which becomes the
/// bound one when it was ephemeral).
async fn spawn_and_wait(service: &mut ServiceProcess) -> Result<()> {
    let handshake = service.log.with_file_name(match service.kind {
        Kind::Service => "addr",
        Kind::Broker => "ports",
    });
    match service.kind {
        Kind::Service => remove_if_present(&handshake)?,
        Kind::Broker => {
            fs::create_dir_all(&handshake).map_err(io_err(format!("cannot create {}", handshake.display())))?
        }
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&service.log)
        .map_err(io_err(format!("cannot open {}", service.log.display())))?;
    let log_err = log.try_clone().map_err(io_err("cannot duplicate the log handle"))?;
    let mut command = Command::new(&service.program);
    match service.kind {
        Kind::Service => {
            command.arg("--listen").arg(service.address.to_string()).arg("--addr-file").arg(&handshake);
        }
        Kind::Broker => {
            let port = match service.address.port() {
                0 => "-1".to_owned(),
                port => port.to_string(),
            };
            command.arg("-p").arg(port).arg("--ports_file_dir").arg(&handshake);
        }
    }
    command
        .args(&service.args)
        .envs(service.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in the lab's terminal reaches the lab only,
        // which then stops the services in order.
        .process_group(0);
    die_with_parent(&mut command);
    let child = command.spawn().map_err(io_err(format!("cannot start {}", service.name)))?;
    let pid = child.id();
    service.child = Some(child);
    let start = Instant::now();
    loop {
        if let Some(status) =
            service.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).map(|status| status.to_string())
        {
            service.child = None;
            return Err(TopologyError::DiedAtStart {
                service: service.name.to_owned(),
                status,
                log: service.log.display().to_string(),
                tail: tail(&service.log, 10),
            });
        }
        let announced = match service.kind {
            Kind::Service => fs::read_to_string(&handshake).ok().and_then(|t| t.trim().parse::<SocketAddr>().ok()),
            Kind::Broker => read_ports_file(&handshake, &service.program, pid),
        };
        if let Some(addr) = announced {
            service.address = addr;
            break;
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(TopologyError::StartTimeout {
                service: service.name.to_owned(),
                secs: START_TIMEOUT.as_secs(),
                log: service.log.display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if service.kind == Kind::Service {
        crate::client::wait_serving(service.address, START_TIMEOUT).await.map_err(|e| TopologyError::Io {
            context: format!("{} at {} bound its port but is not SERVING", service.name, service.address),
            source: std::io::Error::other(e),
        })?;
    }
    tracing::info!(service = service.name, address = %service.address, pid, "ready");
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

/// The last `n` lines of a log, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::from("(no log)");
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(std::result::Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
