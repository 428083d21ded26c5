//! `lab up`: a topology started on either backend and kept up until SIGTERM or Ctrl-C,
//! while `lab kill|pause|restart|…` from other terminals reach it through its control
//! socket ([`crate::control`]). This process owns every component, so it can restart
//! them and take them all down on exit.

use std::{path::PathBuf, time::Duration};

use common::{
    config::{Mode, Policy},
    names::SERVICES,
};

use crate::{
    control::{self, CONTROL_SOCKET},
    topology::{Config, Deployment, RunsAs, Topology, TopologyError, TopologyFile, TOPOLOGY_FILE},
};

/// How often the loop checks for a process that exited by itself.
const REAP_EVERY: Duration = Duration::from_millis(500);
/// How long one control connection may take: a client that never finishes its line
/// must not hold the lab (a restart takes at most 20 s).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a topology from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// The services' `--policy`.
    pub policy: Policy,
    /// Folder of the components' data, logs and `topology.json`.
    pub run_dir: PathBuf,
    /// Delete the run dir's data first.
    pub fresh: bool,
    pub base_port: Option<u16>,
    pub default_deadline_ms: Option<u64>,
    /// Services that get a fault proxy; `all` for every one.
    pub proxies: Vec<String>,
    pub deployment: Deployment,
    /// Broker servers (1, or a cluster of 3) in the modes that have a broker.
    pub brokers: usize,
    /// Instances of the query service (1 to 5; not in monolith mode).
    pub replicas: usize,
    /// Shards of each owner.
    pub shards: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{} is in use by a running lab (pid {pid}); not deleting it", run_dir.display())]
    RunDirInUse { run_dir: PathBuf, pid: u32 },
    #[error("--proxy {0}: no such service (users, products, orders, query, or all)")]
    UnknownProxy(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Starts a topology as `options` say (the caller's thread spawns the processes: see
/// `die_with_parent` in the process backend; call it from the main thread).
pub async fn start(options: &Options) -> Result<Topology, UpError> {
    let run_dir = &options.run_dir;
    if options.fresh && run_dir.exists() {
        if let Ok(file) = TopologyFile::read(run_dir) {
            if file.lab_alive() {
                return Err(UpError::RunDirInUse { run_dir: run_dir.clone(), pid: file.lab_pid });
            }
        }
        std::fs::remove_dir_all(run_dir)
            .map_err(|source| UpError::Io { context: format!("cannot delete {}", run_dir.display()), source })?;
    }
    let mut config = Config::new(options.mode, run_dir);
    config.policy = options.policy;
    config.target = options.deployment.clone();
    config.base_port = options.base_port;
    config.default_deadline_ms = options.default_deadline_ms;
    config.brokers = options.brokers;
    config.replicas = options.replicas;
    config.shards = options.shards;
    config.proxied = if options.proxies.iter().any(|p| p == "all") {
        SERVICES.iter().map(|s| s.to_string()).collect()
    } else {
        if let Some(unknown) = options.proxies.iter().find(|p| !SERVICES.contains(&p.as_str())) {
            return Err(UpError::UnknownProxy(unknown.clone()));
        }
        options.proxies.clone()
    };
    let mut brokers = match options.brokers {
        n if n > 1 && options.mode.uses_broker() => format!(", a {n}-node JetStream cluster"),
        _ => String::new(),
    };
    if options.replicas > 1 && options.mode != Mode::Monolith {
        brokers.push_str(&format!(", {} query replicas", options.replicas));
    }
    if options.shards > 1 && options.mode != Mode::Monolith {
        brokers.push_str(&format!(", {} shards of each owner", options.shards));
    }
    eprintln!("starting the {} topology ({} policy{brokers}) in {} …", options.mode, options.policy, run_dir.display());
    Ok(Topology::start(config).await?)
}

/// `lab up`: starts the topology, prints where everything is, then serves the control
/// socket until SIGTERM or Ctrl-C, and stops every component.
pub async fn run(options: Options) -> Result<(), UpError> {
    let io = |context: &str| {
        let context = context.to_owned();
        move |source| UpError::Io { context, source }
    };
    let shutdown = common::shutdown::on_signal().map_err(io("cannot watch for SIGTERM and SIGINT"))?;
    let mut topology = start(&options).await?;
    let run_dir = &options.run_dir;
    println!("{} topology up (run dir {}):", options.mode, run_dir.display());
    for s in topology.file().services {
        let output = match &s.runs_as {
            RunsAs::Process { log } => format!("log {}", log.display()),
            RunsAs::Container { container } => format!("`docker logs {container}`"),
        };
        let listens = s.direct_address.unwrap_or(s.address);
        println!("  {:<9} {}  pid {:<7} {output}", s.name, listens, s.pid);
    }
    println!("topology file: {}", run_dir.join(TOPOLOGY_FILE).display());
    println!(
        "Ctrl-C stops every service; `lab kill|pause|resume|restart|slow … --run-dir {}` act on them.",
        run_dir.display()
    );
    let socket = run_dir.join(CONTROL_SOCKET);
    let control = control::bind(run_dir).map_err(io(&format!("cannot bind {}", socket.display())))?;
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    match tokio::time::timeout(CONTROL_TIMEOUT, control::handle(&mut topology, stream)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(%error, "control connection failed"),
                        Err(_) => tracing::warn!("control connection timed out"),
                    }
                }
                Err(error) => tracing::warn!(%error, "control socket accept failed"),
            },
            _ = tick.tick() => {
                for (name, status) in topology.reap_exited() {
                    tracing::warn!(service = name, %status, "service exited");
                }
            }
        }
    }
    eprintln!("stopping …");
    topology.stop()?;
    if let Err(error) = std::fs::remove_file(&socket) {
        tracing::debug!(%error, "control socket already gone");
    }
    eprintln!("all services stopped");
    Ok(())
}
