//! The Compose target: the same topology as containers, built from `docker/Dockerfile`
//! and run from `docker/compose.yml`, with faults done the container way: `docker
//! kill` (SIGKILL), `docker start`, `docker pause/unpause`, and a fault only containers
//! give, a network partition (`docker network disconnect/connect`). This module wraps
//! the `docker` and `docker-compose` commands; `topology::containers` is the backend
//! built on it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::names::{MONOLITH, NATS, NATS_NODES};

/// The files of `docker/`, built into the lab so it works from any folder.
pub const DOCKERFILE: &str = include_str!("../../../docker/Dockerfile");
pub const COMPOSE_FILE: &str = include_str!("../../../docker/compose.yml");
/// The image `lab image` builds and the compose target runs, unless told otherwise.
pub const DEFAULT_IMAGE: &str = "cascade:latest";
/// Where each service listens inside its container.
pub const SERVICE_PORT: u16 = 50051;
const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no Docker engine answers (`docker version`: {0}); install Docker and start its daemon, or use the process target")]
    NoEngine(String),
    #[error("image {0} is not built: run `lab image --offline` (no registry) or `lab image`, or pass --image")]
    NoImage(String),
    #[error("docker-compose is not installed (it is Debian's docker-compose package)")]
    NoCompose,
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("{0} did not become healthy within {1} s")]
    Unhealthy(String, u64),
}

/// Runs a command; its stdout on success, a `Failed` with its stderr otherwise.
pub(super) fn run(program: &str, args: &[&str], env: &[(String, String)]) -> Result<String, ComposeError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program).args(args).envs(env.iter().map(|(k, v)| (k, v))).output().map_err(|e| {
        if program == "docker-compose" {
            ComposeError::NoCompose
        } else {
            ComposeError::Failed { command: shown.clone(), detail: e.to_string() }
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(ComposeError::Failed { command: shown, detail: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

/// Fails clearly when there is no engine or no image.
pub fn preflight(image: &str) -> Result<(), ComposeError> {
    run("docker", &["version", "--format", "{{.Server.Version}}"], &[])
        .map_err(|e| ComposeError::NoEngine(e.to_string()))?;
    run("docker", &["image", "inspect", "--format", "{{.Id}}", image], &[])
        .map_err(|_| ComposeError::NoImage(image.to_owned()))?;
    Ok(())
}

/// A deployment of the topology under Compose.
#[derive(Debug, Clone)]
pub struct Compose {
    pub project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
    profiles: Vec<String>,
    /// Container ids by service, resolved once after `up` (names differ between
    /// Compose v1 and v2; ids survive `docker start`).
    containers: std::collections::BTreeMap<String, String>,
}

impl Compose {
    /// Writes the compose file into `run_dir` and starts the project with the given
    /// host ports; waits until every service is healthy. With `monitors` (each cluster
    /// node's host port for its monitoring endpoint), the broker is a three-node
    /// JetStream cluster (profile `cluster`): its nodes start first, and the services
    /// only once it has a meta leader (they create the R3 stream as they start).
    pub fn up(
        run_dir: &Path,
        project: &str,
        image: &str,
        mode: common::config::Mode,
        policy: common::config::Policy,
        ports: &[(&str, u16)],
        monitors: &[(&str, u16)],
    ) -> Result<Self, ComposeError> {
        preflight(image)?;
        let file = run_dir.join("compose.yml");
        std::fs::write(&file, COMPOSE_FILE).map_err(|e| ComposeError::Failed {
            command: format!("write {}", file.display()),
            detail: e.to_string(),
        })?;
        let mut env = vec![
            ("CASCADE_IMAGE".to_owned(), image.to_owned()),
            ("CASCADE_MODE".to_owned(), mode.to_string()),
            ("CASCADE_POLICY".to_owned(), policy.to_string()),
        ];
        let var = |name: &str, what: &str| format!("{}_{what}", name.to_uppercase().replace('-', "_"));
        for (name, port) in ports {
            env.push((var(name, "PORT"), port.to_string()));
        }
        for (name, port) in monitors {
            env.push((var(name, "MONITOR_PORT"), port.to_string()));
        }
        // Always set, so that a variable of the caller's own shell never reaches the
        // containers through the compose file's defaults.
        let cluster = !monitors.is_empty() && mode.uses_broker();
        let (urls, stream_replicas) = match cluster {
            true => (NATS_NODES.map(|n| format!("nats://{n}:4222")).join(","), NATS_NODES.len()),
            false => (format!("nats://{NATS}:4222"), 1),
        };
        env.push(("CASCADE_NATS_URL".to_owned(), urls));
        env.push(("CASCADE_STREAM_REPLICAS".to_owned(), stream_replicas.to_string()));
        // The broker's profile is named after the first mode that used it (a cluster's,
        // `cluster`); the monolith has its own, and is the only service started in its mode.
        let profiles = match mode {
            common::config::Mode::Monolith => vec![MONOLITH.to_owned()],
            _ if cluster => vec!["cluster".to_owned()],
            m if m.uses_broker() => vec!["async".to_owned()],
            _ => Vec::new(),
        };
        let mut compose = Self { project: project.to_owned(), file, env, profiles, containers: Default::default() };
        // A project of the same name left by a crashed run must not lend its data.
        compose.compose(&["down", "-v", "--remove-orphans", "-t", "1"])?;
        if cluster {
            compose.compose(&[&["up", "-d"][..], &NATS_NODES].concat())?;
            let node_ports = ports.iter().filter(|(name, _)| NATS_NODES.contains(name));
            for (name, port) in node_ports {
                compose.wait_ready(name, *port)?;
            }
            let monitors: Vec<SocketAddr> =
                monitors.iter().map(|(_, port)| SocketAddr::from(([127, 0, 0, 1], *port))).collect();
            let within = super::CLUSTER_READY_WITHIN;
            // Called on a blocking thread of the lab's runtime (see `containers::start`).
            let leader =
                tokio::runtime::Handle::current().block_on(super::cluster::wait_meta_leader(&monitors, within));
            leader.map_err(|detail| ComposeError::Failed { command: "wait for a meta leader".into(), detail })?;
        }
        match mode {
            common::config::Mode::Monolith => compose.compose(&["up", "-d", MONOLITH])?,
            _ => compose.compose(&["up", "-d"])?,
        };
        for (name, _) in ports {
            let id = compose.compose(&["ps", "-q", name])?;
            let id = id.lines().next().unwrap_or_default().trim().to_owned();
            if id.is_empty() {
                return Err(ComposeError::Failed {
                    command: format!("docker-compose ps -q {name}"),
                    detail: "no container".into(),
                });
            }
            compose.containers.insert(name.to_string(), id);
        }
        for (name, port) in ports {
            compose.wait_ready(name, *port)?;
        }
        Ok(compose)
    }

    /// A handle on a project started from `run_dir` (to take it down).
    pub fn existing(run_dir: &Path, project: &str) -> Self {
        Self {
            project: project.to_owned(),
            file: run_dir.join("compose.yml"),
            env: Vec::new(),
            profiles: vec!["async".to_owned(), "cluster".to_owned(), MONOLITH.to_owned()],
            containers: Default::default(),
        }
    }

    fn compose(&self, args: &[&str]) -> Result<String, ComposeError> {
        let file = self.file.display().to_string();
        let mut all = vec!["-p", &self.project, "-f", &file];
        for p in &self.profiles {
            all.extend(["--profile", p]);
        }
        all.extend_from_slice(args);
        run("docker-compose", &all, &self.env)
    }

    /// The container of a service (its id once resolved; v1's name before that).
    pub fn container(&self, name: &str) -> String {
        self.containers.get(name).cloned().unwrap_or_else(|| format!("{}_{name}_1", self.project))
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// Healthy (services), or accepting TCP (the broker).
    pub fn wait_ready(&self, name: &str, port: u16) -> Result<(), ComposeError> {
        let start = Instant::now();
        while start.elapsed() < HEALTHY_WITHIN {
            let ready = if name == NATS || NATS_NODES.contains(&name) {
                nats_greets(port)
            } else {
                run("docker", &["inspect", "--format", "{{.State.Health.Status}}", &self.container(name)], &[])
                    .is_ok_and(|s| s == "healthy")
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ComposeError::Unhealthy(name.to_owned(), HEALTHY_WITHIN.as_secs()))
    }

    /// The host pid of a component's main process (0 if it is not running).
    pub fn pid(&self, name: &str) -> u32 {
        run("docker", &["inspect", "--format", "{{.State.Pid}}", &self.container(name)], &[])
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The host folder of the volume mounted at the container's `/data`.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, ComposeError> {
        let format = r#"{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}"#;
        let source = run("docker", &["inspect", "--format", format, &self.container(name)], &[])?;
        if source.is_empty() {
            return Err(ComposeError::Failed {
                command: format!("docker inspect {}", self.container(name)),
                detail: "no volume mounted at /data".into(),
            });
        }
        Ok(PathBuf::from(source))
    }

    pub fn kill(&self, name: &str) -> Result<(), ComposeError> {
        run("docker", &["kill", "--signal", "KILL", &self.container(name)], &[]).map(drop)
    }

    pub fn start(&self, name: &str, port: u16) -> Result<(), ComposeError> {
        run("docker", &["start", &self.container(name)], &[])?;
        self.wait_ready(name, port)
    }

    pub fn pause(&self, name: &str) -> Result<(), ComposeError> {
        run("docker", &["pause", &self.container(name)], &[]).map(drop)
    }

    pub fn unpause(&self, name: &str) -> Result<(), ComposeError> {
        run("docker", &["unpause", &self.container(name)], &[]).map(drop)
    }

    /// Cuts the container off the project's network: its peers can no longer reach it,
    /// nor it them.
    pub fn partition(&self, name: &str) -> Result<(), ComposeError> {
        run("docker", &["network", "disconnect", &self.network(), &self.container(name)], &[]).map(drop)
    }

    /// Undoes [`Compose::partition`], restoring the service-name alias.
    pub fn reconnect(&self, name: &str) -> Result<(), ComposeError> {
        run("docker", &["network", "connect", "--alias", name, &self.network(), &self.container(name)], &[]).map(drop)
    }

    /// Whether the container is attached to the project's network.
    pub fn connected(&self, name: &str) -> bool {
        run("docker", &["inspect", "--format", "{{json .NetworkSettings.Networks}}", &self.container(name)], &[])
            .is_ok_and(|n| n.contains(&self.network()))
    }

    /// Whether the container is running (and not paused).
    pub fn state(&self, name: &str) -> String {
        run("docker", &["inspect", "--format", "{{.State.Status}}", &self.container(name)], &[]).unwrap_or_default()
    }

    /// Removes the containers, the network and the volumes.
    pub fn down(&self) -> Result<(), ComposeError> {
        self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]).map(drop)
    }
}

/// Whether a NATS server answers on the host port: its first bytes are `INFO `. (A
/// bare TCP connect would also succeed against Docker's port proxy before the server
/// listens.)
pub(super) fn nats_greets(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) else { return false };
    if stream.set_read_timeout(Some(Duration::from_millis(500))).is_err() {
        return false;
    }
    let mut greeting = [0u8; 5];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO "
}

/// Why `lab image` could not build the image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0} not found: build with `cargo build --release --workspace` first")]
    BinaryMissing(PathBuf),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Broker(#[from] bench::nats::BrokerError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
    let context = context.to_string();
    move |source| ImageError::Io { context, source }
}

/// Builds the image: stages the binaries (debug info stripped) and nats-server in a
/// context next to the binaries, and with `offline` also their shared libraries, then
/// `docker build`s `docker/Dockerfile` with BASE=scratch (offline) or the public base.
/// Returns the image's size in bytes.
pub fn build_image(bin_dir: &Path, tag: &str, offline: bool) -> Result<u64, ImageError> {
    run("docker", &["version", "--format", "{{.Server.Version}}"], &[])
        .map_err(|e| ComposeError::NoEngine(e.to_string()))?;
    let context = bin_dir.join("docker-context");
    if context.exists() {
        std::fs::remove_dir_all(&context).map_err(io(format!("cannot delete {}", context.display())))?;
    }
    let bin = context.join("rootfs/usr/local/bin");
    for dir in [bin.clone(), context.join("rootfs/data")] {
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    }
    let nats = bench::nats::nats_server()?;
    let mut programs: Vec<PathBuf> =
        ["users", "products", "orders", "query", MONOLITH, "lab"].iter().map(|n| bin_dir.join(n)).collect();
    programs.push(nats.path.clone());
    for program in &programs {
        if !program.is_file() {
            return Err(ImageError::BinaryMissing(program.clone()));
        }
        let target = bin.join(program.file_name().expect("a file name"));
        // Debug info is most of a binary's size and of no use in the image.
        let stripped = Command::new("objcopy").arg("--strip-debug").arg(program).arg(&target).status();
        if !stripped.is_ok_and(|s| s.success()) {
            std::fs::copy(program, &target).map_err(io(format!("cannot copy {}", program.display())))?;
        }
    }
    if offline {
        for program in &programs {
            for lib in shared_libraries(program)? {
                let target = context.join("rootfs").join(lib.strip_prefix("/").unwrap_or(&lib));
                let parent = target.parent().expect("a parent");
                std::fs::create_dir_all(parent).map_err(io(format!("cannot create {}", parent.display())))?;
                std::fs::copy(&lib, &target).map_err(io(format!("cannot copy {}", lib.display())))?;
            }
        }
    }
    let dockerfile = context.join("Dockerfile");
    std::fs::write(&dockerfile, DOCKERFILE).map_err(io(format!("cannot write {}", dockerfile.display())))?;
    let context_arg = context.display().to_string();
    let mut args = vec!["build", "-q", "-t", tag];
    if offline {
        args.extend(["--build-arg", "BASE=scratch"]);
    }
    args.push(&context_arg);
    run("docker", &args, &[])?;
    let size = run("docker", &["image", "inspect", "--format", "{{.Size}}", tag], &[])?;
    Ok(size.parse().unwrap_or(0))
}

/// The shared libraries `ldd` lists for `program` (none for a static binary).
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out =
        Command::new("ldd").arg(program).output().map_err(io(format!("cannot run ldd on {}", program.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}
