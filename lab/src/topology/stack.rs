//! The Swarm target's `docker` side: the single-node swarm the lab joins (or initialises
//! and later leaves), a stack file written for one mode, `docker stack deploy` and
//! `docker stack rm`, and the container of each service's current task, which the
//! faults act on (`docker kill`, `stop`, `pause/unpause`; no partition: see
//! [`SwarmError::NoPartition`]). `topology::swarm` is the backend built on it.
//!
//! Two things of this engine shape the file: it has no IPVS, so neither the ingress
//! routing mesh nor a service's virtual IP answers; the services are published in host
//! mode (a port of the lab's choosing, on every interface: swarm cannot bind one
//! address) and found by DNS round robin (`endpoint_mode: dnsrr`), which names the
//! current task's address. And it has no registry: the stack is deployed with
//! `--resolve-image never`, which a single-node swarm runs from the local image.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{
    config::{Mode, Policy},
    names::{NATS, NATS_NODES},
};

use super::compose::{preflight, run, ComposeError, SERVICE_PORT};

/// Where nats-server listens inside its container.
pub const NATS_PORT: u16 = 4222;
/// The stack's overlay network (attachable: `docker run --network <stack>_cascade` can
/// join it).
const NETWORK: &str = "cascade";
/// The label swarm puts on everything a stack creates.
const STACK_LABEL: &str = "com.docker.stack.namespace";
/// The label of a task's container naming its service.
const SERVICE_LABEL: &str = "com.docker.swarm.service.name";
/// The bridge swarm creates for published ports and outbound traffic; left behind by
/// `docker swarm leave`, so removed with it when the lab created it.
const GWBRIDGE: &str = "docker_gwbridge";
/// How long a stack may take to go away (its containers stop, then its network and
/// volumes are removed).
const REMOVED_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Docker(#[from] ComposeError),
    #[error("the Docker engine's swarm is inactive: `lab up|bench --target swarm` initialise a single-node one (and leave it after); or run `docker swarm init --advertise-addr 127.0.0.1` first")]
    Inactive,
    #[error("the Docker engine is in a swarm but not a manager of it (state {0:?}): a stack is deployed from a manager; run the lab on one, or `docker swarm leave` first")]
    NotManager(String),
    #[error("the Docker engine's swarm has {0} nodes: the lab deploys its stack on one (the image is local, and it talks to the tasks on this machine's loopback); run it on an engine whose swarm is inactive (it initialises a single-node one) or has this node alone")]
    SeveralNodes(usize),
    #[error("{service} was not serving again within {secs} s of its {fault}: swarm did not replace its task (`docker service ps --no-trunc {service_name}` says why)")]
    NotHealed { service: String, secs: u64, fault: &'static str, service_name: String },
    #[error("{service} has no running task (`docker service ps --no-trunc {service_name}` says why)")]
    NoTask { service: String, service_name: String },
    #[error("service {service_name}: {detail}")]
    Service { service_name: String, detail: String },
    #[error("a partition is not on the swarm target: a task's container taken off the overlay network (`docker network disconnect`) drops out of swarm's service discovery, and reconnected it is still not found by name, so it could not be undone; partitions run on the compose target (`--target compose`)")]
    NoPartition,
    #[error("stack {stack} was not removed within {secs} s: {left}")]
    NotRemoved { stack: String, secs: u64, left: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn docker(args: &[&str]) -> Result<String, SwarmError> {
    Ok(run("docker", args, &[])?)
}

/// The engine's swarm state and whether this node manages it: `("inactive", false)`,
/// `("active", true)`, …
fn swarm_state() -> Result<(String, bool), SwarmError> {
    docker(&["version", "--format", "{{.Server.Version}}"])
        .map_err(|e| SwarmError::Docker(ComposeError::NoEngine(e.to_string())))?;
    let info = docker(&["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])?;
    let mut words = info.split_whitespace();
    let state = words.next().unwrap_or_default().to_owned();
    Ok((state, words.next() == Some("true")))
}

/// Fails unless this engine manages an active swarm and has the image.
pub fn preflight_swarm(image: &str) -> Result<(), SwarmError> {
    match swarm_state()? {
        (state, true) if state == "active" => {}
        (state, _) if state == "inactive" => return Err(SwarmError::Inactive),
        (state, _) => return Err(SwarmError::NotManager(state)),
    }
    preflight(image)?;
    Ok(())
}

/// The swarm the lab's stacks run on: the engine's own if it is active (left as it
/// is), else a single-node swarm initialised here and left again by [`Session::leave`]
/// (or on drop), with the gateway bridge it created: the engine is left as found.
#[derive(Debug)]
pub struct Session {
    /// Whether this session initialised the swarm (and so leaves it).
    initialised: bool,
    /// Whether `docker_gwbridge` existed before the swarm was initialised.
    had_gwbridge: bool,
}

impl Session {
    /// Joins the engine's active swarm, or initialises one when it is inactive.
    pub fn join_or_init() -> Result<Self, SwarmError> {
        match swarm_state()? {
            (state, true) if state == "active" => {
                // One node only: a task placed on another would have neither the local
                // image nor a port on this machine's loopback.
                let nodes = docker(&["node", "ls", "-q"])?.split_whitespace().count();
                if nodes > 1 {
                    return Err(SwarmError::SeveralNodes(nodes));
                }
                return Ok(Self { initialised: false, had_gwbridge: true });
            }
            (state, _) if state == "inactive" => {}
            (state, _) => return Err(SwarmError::NotManager(state)),
        }
        let had_gwbridge = docker(&["network", "inspect", "--format", "{{.Id}}", GWBRIDGE]).is_ok();
        // On loopback: one node, nothing to reach from elsewhere.
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"])?;
        tracing::info!("initialised a single-node swarm (left again when the lab ends)");
        Ok(Self { initialised: true, had_gwbridge })
    }

    /// Whether this session initialised the swarm it will leave.
    pub fn initialised(&self) -> bool {
        self.initialised
    }

    /// Leaves the swarm if this session initialised it and no other stack's services
    /// run on it (another lab's, started meanwhile: it keeps the swarm, and says so).
    pub fn leave(&mut self) -> Result<(), SwarmError> {
        if !self.initialised {
            return Ok(());
        }
        self.initialised = false;
        let services = docker(&["service", "ls", "--format", "{{.Name}}"])?;
        if !services.is_empty() {
            tracing::warn!(services = %services.replace('\n', " "), "not leaving the swarm the lab initialised: other services run on it");
            return Ok(());
        }
        docker(&["swarm", "leave", "--force"])?;
        if !self.had_gwbridge {
            // In use for a moment by the last containers' teardown.
            let deadline = Instant::now() + Duration::from_secs(30);
            while docker(&["network", "inspect", "--format", "{{.Id}}", GWBRIDGE]).is_ok() {
                match docker(&["network", "rm", GWBRIDGE]) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        tracing::info!("left the swarm the lab initialised");
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            tracing::warn!(error = %e, "could not leave the swarm the lab initialised: `docker swarm leave --force`");
        }
    }
}

/// How far a task's container is (see [`Stack::readiness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Healthy (or running, without a health check), and its task running for swarm.
    Ready,
    /// Not yet.
    Starting,
    /// Stopped, or gone.
    Gone,
}

/// A stack of the topology on the swarm.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
}

impl Stack {
    /// A handle on the stack called `name` (deployed or not).
    pub fn named(name: &str) -> Self {
        Self { name: name.to_owned() }
    }

    /// Writes the stack file of `mode` into `run_dir` (`stack.yml`) and deploys it,
    /// each component publishing its port on the host port given; a stack of the same
    /// name left by a crashed run is removed first, volumes and all.
    pub fn deploy(
        run_dir: &Path,
        name: &str,
        image: &str,
        mode: Mode,
        policy: Policy,
        ports: &[(&str, u16)],
        monitors: &[(&str, u16)],
    ) -> Result<Self, SwarmError> {
        preflight_swarm(image)?;
        let stack = Self::named(name);
        stack.remove()?;
        let file = run_dir.join("stack.yml");
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        std::fs::write(&file, stack_file(image, mode, policy, &log, ports, monitors))
            .map_err(|source| SwarmError::Write { path: file.clone(), source })?;
        let file = file.display().to_string();
        docker(&["stack", "deploy", "--resolve-image", "never", "-c", &file, name])?;
        Ok(stack)
    }

    /// The swarm service of a component: `<stack>_<name>`.
    pub fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.name)
    }

    /// The host port a service publishes, read back from `docker service inspect`.
    pub fn published_port(&self, name: &str) -> Result<u16, SwarmError> {
        let service = self.service(name);
        let ports = docker(&[
            "service",
            "inspect",
            "--format",
            "{{range .Endpoint.Ports}}{{.TargetPort}}:{{.PublishedPort}} {{end}}",
            &service,
        ])?;
        let target = if is_broker(name) { NATS_PORT } else { SERVICE_PORT };
        ports
            .split_whitespace()
            .filter_map(|pair| pair.split_once(':'))
            .find(|(t, _)| t.parse() == Ok(target))
            .and_then(|(_, p)| p.parse().ok())
            .ok_or(SwarmError::Service { service_name: service, detail: format!("publishes no port for {target}") })
    }

    /// The container of the service's current task (the newest, if one is still
    /// stopping), running or paused; `None` between tasks.
    pub fn container(&self, name: &str) -> Result<Option<String>, SwarmError> {
        let filter = format!("label={SERVICE_LABEL}={}", self.service(name));
        let ids = docker(&["ps", "-q", "--no-trunc", "--filter", &filter])?;
        Ok(ids.lines().next().map(str::to_owned))
    }

    /// The service's latest tasks, for error messages: name, state and error of each.
    pub fn tasks(&self, name: &str) -> String {
        let format = "{{.Name}} {{.CurrentState}} {{.Error}}";
        let tasks = docker(&["service", "ps", "--no-trunc", "--format", format, &self.service(name)]);
        tasks.map_or_else(|e| e.to_string(), |t| t.lines().take(3).collect::<Vec<_>>().join("; "))
    }

    /// How far the task of `container` is: [`Readiness::Ready`] once its health check
    /// passed (the broker, which has none: once it runs) and swarm reports the task
    /// running, which it does a moment after the health check.
    pub fn readiness(&self, container: &str) -> Readiness {
        let format = r#"{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{index .Config.Labels "com.docker.swarm.task.id"}}"#;
        let Ok(out) = docker(&["inspect", "--format", format, container]) else { return Readiness::Gone };
        let words: Vec<&str> = out.split_whitespace().collect();
        match words.as_slice() {
            ["running", "healthy" | "none", task] => {
                let state = docker(&["inspect", "--type", "task", "--format", "{{.Status.State}}", task]);
                if state.is_ok_and(|s| s == "running") {
                    Readiness::Ready
                } else {
                    Readiness::Starting
                }
            }
            ["running" | "created" | "restarting", ..] => Readiness::Starting,
            _ => Readiness::Gone,
        }
    }

    /// "running", "paused", "exited", … ("" if it is gone).
    pub fn state(&self, container: &str) -> String {
        docker(&["inspect", "--format", "{{.State.Status}}", container]).unwrap_or_default()
    }

    /// The host pid of the container's main process (0 if it is not running).
    pub fn pid(&self, container: &str) -> u32 {
        docker(&["inspect", "--format", "{{.State.Pid}}", container]).ok().and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    /// The host folder of a component's volume (`<stack>_<name>-data`), which every task
    /// of it mounts at `/data`.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, SwarmError> {
        let volume = format!("{}_{name}-data", self.name);
        Ok(PathBuf::from(docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume])?))
    }

    pub fn kill(&self, container: &str) -> Result<(), SwarmError> {
        docker(&["kill", "--signal", "KILL", container]).map(drop)
    }

    /// SIGTERM, SIGKILL after 5 s (the stack's stop grace period).
    pub fn stop(&self, container: &str) -> Result<(), SwarmError> {
        docker(&["stop", "-t", "5", container]).map(drop)
    }

    pub fn pause(&self, container: &str) -> Result<(), SwarmError> {
        docker(&["pause", container]).map(drop)
    }

    pub fn unpause(&self, container: &str) -> Result<(), SwarmError> {
        docker(&["unpause", container]).map(drop)
    }

    /// Removes the stack and waits until it is gone: `docker stack rm`, then (once its
    /// containers have stopped) its network and its volumes, which `stack rm` leaves.
    pub fn remove(&self) -> Result<(), SwarmError> {
        let label = format!("label={STACK_LABEL}={}", self.name);
        let list = |what: &[&str]| -> Result<Vec<String>, SwarmError> {
            let mut args = what.to_vec();
            args.extend(["-q", "--filter", &label]);
            Ok(docker(&args)?.split_whitespace().map(str::to_owned).collect())
        };
        if !list(&["service", "ls"])?.is_empty() {
            // It fails (after removing the services) when a network is still in use by
            // a stopping task: removed below, once the containers are gone.
            if let Err(e) = docker(&["stack", "rm", &self.name]) {
                if !list(&["service", "ls"])?.is_empty() {
                    return Err(e);
                }
            }
        }
        let deadline = Instant::now() + REMOVED_WITHIN;
        let not_removed =
            |left: String| SwarmError::NotRemoved { stack: self.name.clone(), secs: REMOVED_WITHIN.as_secs(), left };
        loop {
            let containers = list(&["ps", "-a"])?;
            if containers.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(not_removed(format!("containers {}", containers.join(" "))));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // `stack rm` gives up on a network its stopping tasks still used.
        loop {
            let networks = list(&["network", "ls"])?;
            let volumes = list(&["volume", "ls"])?;
            if networks.is_empty() && volumes.is_empty() {
                return Ok(());
            }
            for network in &networks {
                let _ = docker(&["network", "rm", network]);
            }
            for volume in &volumes {
                let _ = docker(&["volume", "rm", "-f", volume]);
            }
            if Instant::now() > deadline {
                return Err(not_removed(format!("networks {networks:?}, volumes {volumes:?}")));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether the component `name` is the broker or a node of its cluster.
fn is_broker(name: &str) -> bool {
    name == NATS || NATS_NODES.contains(&name)
}

/// Where a cluster node's monitoring endpoint listens inside its container.
pub const MONITOR_PORT: u16 = 8222;
/// Where a cluster node listens for its peers' routes inside its container.
const CLUSTER_PORT: u16 = 6222;

/// The stack file of `mode`: nats-server (modes with a broker) and the services (or
/// the monolith), each one replica that swarm restarts whatever ends it, with its data
/// on a volume of its own, its port published in host mode on `ports`' host port, on
/// one attachable overlay network where DNS round robin finds it by name. With
/// `monitors` (each node's host port for its monitoring endpoint), the broker is a
/// three-node JetStream cluster, `nats-1` … `nats-3`, each naming itself, routing to the
/// other two by name and advertising no container address to clients; the services get
/// every node and keep the stream R3.
pub fn stack_file(
    image: &str,
    mode: Mode,
    policy: Policy,
    log: &str,
    ports: &[(&str, u16)],
    monitors: &[(&str, u16)],
) -> String {
    let nodes: Vec<&str> = monitors.iter().map(|(name, _)| *name).collect();
    let nats_url = match nodes.is_empty() {
        true => format!("nats://{NATS}:{NATS_PORT}"),
        false => nodes.iter().map(|n| format!("nats://{n}:{NATS_PORT}")).collect::<Vec<_>>().join(","),
    };
    let stream_replicas = nodes.len().max(1);
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut out = format!(
        "# The Cascade topology as a Docker Swarm stack ({mode} mode, {policy} policy), written by\n\
         # `lab up|bench --target swarm` and deployed with\n\
         # `docker stack deploy --resolve-image never -c stack.yml <stack>` on a single-node swarm.\n\
         version: \"3.8\"\n\
         services:\n"
    );
    for (name, port) in ports {
        let (command, target) = if *name == NATS {
            (format!("[\"nats-server\", \"-js\", \"-sd\", \"/data\", \"-p\", \"{NATS_PORT}\"]"), NATS_PORT)
        } else if nodes.contains(name) {
            let routes: Vec<String> =
                nodes.iter().filter(|n| *n != name).map(|n| format!("nats://{n}:{CLUSTER_PORT}")).collect();
            let args = [
                "nats-server",
                "-js",
                "-sd",
                "/data",
                "-p",
                &NATS_PORT.to_string(),
                "-m",
                &MONITOR_PORT.to_string(),
                "--server_name",
                name,
                "--cluster_name",
                super::cluster::CLUSTER_NAME,
                "--cluster",
                &format!("nats://0.0.0.0:{CLUSTER_PORT}"),
                "--no_advertise=true",
                "--routes",
                &routes.join(","),
            ]
            .map(q);
            (format!("[{}]", args.join(", ")), NATS_PORT)
        } else {
            (format!("[{}]", q(name)), SERVICE_PORT)
        };
        out += &format!("  {name}:\n    image: {}\n    command: {command}\n", q(image));
        if !is_broker(name) {
            out += &format!(
                "    environment:\n\
                 \x20     CASCADE_MODE: {}\n\
                 \x20     CASCADE_POLICY: {}\n\
                 \x20     CASCADE_LISTEN: \"0.0.0.0:{SERVICE_PORT}\"\n\
                 \x20     CASCADE_DATA_DIR: /data\n\
                 \x20     CASCADE_NATS_URL: {}\n\
                 \x20     CASCADE_STREAM_REPLICAS: \"{stream_replicas}\"\n\
                 \x20     CASCADE_USERS_ADDR: \"users:{SERVICE_PORT}\"\n\
                 \x20     CASCADE_PRODUCTS_ADDR: \"products:{SERVICE_PORT}\"\n\
                 \x20     CASCADE_ORDERS_ADDR: \"orders:{SERVICE_PORT}\"\n\
                 \x20     RUST_LOG: {}\n\
                 \x20   healthcheck:\n\
                 \x20     test: [\"CMD\", \"lab\", \"health\", \"127.0.0.1:{SERVICE_PORT}\"]\n\
                 \x20     interval: 1s\n\
                 \x20     timeout: 3s\n\
                 \x20     retries: 60\n",
                q(mode.as_str()),
                q(&policy.to_string()),
                q(&nats_url),
                q(log),
            );
        }
        let monitor = (monitors.iter().find(|(node, _)| node == name))
            .map(|(_, m)| format!(", {{target: {MONITOR_PORT}, published: {m}, protocol: tcp, mode: host}}"))
            .unwrap_or_default();
        out += &format!(
            "    volumes: [\"{name}-data:/data\"]\n\
             \x20   ports: [{{target: {target}, published: {port}, protocol: tcp, mode: host}}{monitor}]\n\
             \x20   networks: [{NETWORK}]\n\
             \x20   stop_grace_period: 5s\n\
             \x20   deploy:\n\
             \x20     replicas: 1\n\
             \x20     endpoint_mode: dnsrr\n\
             \x20     restart_policy: {{condition: any, delay: 0s}}\n"
        );
    }
    out += &format!("networks:\n  {NETWORK}:\n    driver: overlay\n    attachable: true\nvolumes:\n");
    for (name, _) in ports {
        out += &format!("  {name}-data:\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_file_has_one_replica_per_component_restarted_whatever_ends_it() {
        let ports = [(NATS, 4100), ("users", 4101), ("products", 4102), ("orders", 4103), ("query", 4104)];
        let file = stack_file("cascade:test", Mode::Async, Policy::Hardened, "info", &ports, &[]);
        assert_eq!(file.matches("    deploy:\n      replicas: 1\n").count(), 5, "{file}");
        assert_eq!(file.matches("restart_policy: {condition: any, delay: 0s}").count(), 5);
        assert_eq!(file.matches("endpoint_mode: dnsrr").count(), 5);
        assert!(file.contains("ports: [{target: 4222, published: 4100, protocol: tcp, mode: host}]"), "{file}");
        assert!(file.contains("ports: [{target: 50051, published: 4104, protocol: tcp, mode: host}]"), "{file}");
        assert!(file.contains("CASCADE_MODE: \"async\"") && file.contains("CASCADE_POLICY: \"hardened\""), "{file}");
        assert!(file.contains("  cascade:\n    driver: overlay\n    attachable: true\n"), "{file}");
        // The broker has no gRPC health check; every service has one.
        assert_eq!(file.matches("healthcheck:").count(), 4);
        assert!(file.contains("  query-data:\n") && file.contains("  nats-data:\n"));

        let monolith = stack_file("cascade:test", Mode::Monolith, Policy::Naive, "info", &[("monolith", 4105)], &[]);
        assert!(monolith.contains("  monolith:\n") && !monolith.contains("  users:\n"), "{monolith}");
        assert!(!monolith.contains("nats-server"));
    }

    /// With monitors, the broker is three nodes, each naming itself and routing to the
    /// other two by name, its monitoring port published beside its client port; the
    /// services get all three and keep the stream R3.
    #[test]
    fn a_cluster_stack_has_three_nodes_routing_to_each_other() {
        let ports = [("nats-1", 4100), ("nats-2", 4101), ("nats-3", 4102), ("users", 4103)];
        let monitors = [("nats-1", 4200), ("nats-2", 4201), ("nats-3", 4202)];
        let file = stack_file("cascade:test", Mode::Async, Policy::Naive, "info", &ports, &monitors);
        assert!(file.contains("\"--server_name\", \"nats-2\""), "{file}");
        assert!(file.contains("\"--routes\", \"nats://nats-1:6222,nats://nats-3:6222\""), "{file}");
        assert!(file.contains("{target: 4222, published: 4101, protocol: tcp, mode: host}, {target: 8222, published: 4201, protocol: tcp, mode: host}"), "{file}");
        assert!(
            file.contains("CASCADE_NATS_URL: \"nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222\""),
            "{file}"
        );
        assert!(file.contains("CASCADE_STREAM_REPLICAS: \"3\""), "{file}");
        assert_eq!(file.matches("healthcheck:").count(), 1, "the nodes have none");
    }
}
