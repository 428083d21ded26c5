//! The Swarm backend: the topology as a stack on a single-node swarm ([`super::stack`]),
//! one replica per component, each publishing its port on the host and keeping its
//! data on a volume of its own. A fault acts on the container of the component's current
//! task. Swarm, not the lab, replaces a task that ended (restart policy `any`): a killed
//! component comes back by itself. The lab watches it from the kill on and records when
//! it served again ([`SelfHeal`]); a restart waits for that instead of starting
//! anything (a restart of a running component stops its task, and swarm starts the next).
//! No partitions here ([`SwarmError::NoPartition`]).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::names::{NATS, NATS_NODES};
use tokio::sync::oneshot::{self, error::TryRecvError};

use super::{
    compose::nats_greets,
    processes::reserve_port,
    stack::{Readiness, Stack, SwarmError},
    Component, Config, Kind, Operation, Result, RunsAs, TopologyError,
};

/// How long a component may take to serve after the deploy, or again after a fault.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How often a watcher asks whether a component serves again.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// A component's self-healing: its task ended by a fault, then swarm's next task of it
/// serving, then healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfHeal {
    /// When the fault took effect (`docker kill`, or `docker stop` for a restart,
    /// returned).
    pub down_at: Instant,
    /// When the new task first answered on the published port: gRPC health SERVING (the
    /// broker: its greeting).
    pub serving_at: Instant,
    /// When its container was then first seen healthy and swarm reported its task
    /// running (the broker, which has no health check: running).
    pub healthy_at: Instant,
}

impl SelfHeal {
    /// How long the component did not answer on its published port.
    pub fn gap(&self) -> Duration {
        self.serving_at.saturating_duration_since(self.down_at)
    }

    /// From the fault until swarm had a healthy task again.
    pub fn until_healthy(&self) -> Duration {
        self.healthy_at.saturating_duration_since(self.down_at)
    }
}

/// What a watcher saw: the new task serving, then healthy, its container and pid.
#[derive(Debug)]
struct Serving {
    at: Instant,
    healthy_at: Instant,
    container: String,
    pid: u32,
}

/// A component whose task a fault ended, until the lab has taken note of its next one.
#[derive(Debug)]
struct Down {
    /// "kill" or "restart".
    fault: &'static str,
    at: Instant,
    /// Its watcher's answer.
    serving: oneshot::Receiver<std::result::Result<Serving, String>>,
}

/// One component of the stack.
#[derive(Debug)]
struct Member {
    name: &'static str,
    kind: Kind,
    /// The host port it publishes, the same for every task.
    port: u16,
    /// Its current task's container.
    container: String,
    /// Host pid of that container's main process (0 if unknown).
    pid: u32,
    down: Option<Down>,
    /// Killed, and no restart (or recovery) since: a restart then only waits for swarm's
    /// next task, which may be serving already.
    killed: bool,
    /// The last self-heal, until [`Swarm::take_self_heal`] takes it.
    healed: Option<SelfHeal>,
}

/// The stack of a topology. Dropping it removes the stack, unless [`Swarm::stop`]
/// already did.
#[derive(Debug)]
pub(super) struct Swarm {
    /// `None` once removed.
    stack: Option<Stack>,
    name: String,
    members: Vec<Member>,
}

/// Runs a blocking `docker` call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, SwarmError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// A free port for a component to publish: free on loopback (below the ephemeral range,
/// see [`reserve_port`]) and on every interface, as swarm publishes there; not one of
/// `taken`.
fn host_port(taken: &[(&str, u16)]) -> Result<u16> {
    for _ in 0..50 {
        let port = reserve_port()?;
        if !taken.iter().any(|(_, p)| *p == port) && std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(TopologyError::Io {
        context: "no port free on every interface below the ephemeral range".into(),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

/// Deploys the stack with a host port of our choosing per component (read back from
/// `docker service inspect`), and waits until each one's task is running and healthy
/// and it answers the lab's readiness check on that port.
pub(super) async fn start(config: &Config, image: &str, stack: &str) -> Result<(Vec<Component>, Swarm)> {
    let mut names: Vec<&'static str> = Vec::new();
    // The broker: one server, or the nodes of a cluster, each with a monitoring port.
    let nodes: &[&'static str] = match config.brokers {
        1 => &[NATS],
        n => NATS_NODES.get(..n).ok_or(TopologyError::Brokers(n))?,
    };
    if config.mode.uses_broker() {
        names.extend(nodes);
    }
    names.extend(super::programs(config.mode));
    let mut ports: Vec<(&'static str, u16)> = Vec::new();
    for name in &names {
        let port = host_port(&ports)?;
        ports.push((*name, port));
    }
    let mut monitors: Vec<(&'static str, u16)> = Vec::new();
    if config.mode.uses_broker() && config.brokers > 1 {
        for name in nodes {
            let port = host_port(&[&ports[..], &monitors[..]].concat())?;
            monitors.push((*name, port));
        }
    }
    // If this future is dropped (Ctrl-C) or a step fails, the guard removes whatever was
    // deployed; a deploy still running then removes its stack itself when it ends.
    let mut guard = RemoveGuard { stack: Stack::named(stack), armed: true, cancelled: Default::default() };
    let cancelled = guard.cancelled.clone();
    let (run_dir, image, stack_name, mode, policy, asked, asked_monitors) = (
        config.run_dir.clone(),
        image.to_owned(),
        stack.to_owned(),
        config.mode,
        config.policy,
        ports.clone(),
        monitors.clone(),
    );
    let stack = blocking(move || {
        let stack = Stack::deploy(&run_dir, &stack_name, &image, mode, policy, &asked, &asked_monitors)?;
        if cancelled.load(Ordering::SeqCst) {
            stack.remove()?;
            return Err(SwarmError::Service { service_name: stack_name, detail: "deploy cancelled".into() });
        }
        for (name, port) in &asked {
            let published = stack.published_port(name)?;
            if published != *port {
                return Err(SwarmError::Service {
                    service_name: stack.service(name),
                    detail: format!("publishes port {published}, not the {port} the stack file asks"),
                });
            }
        }
        Ok(stack)
    })
    .await?;
    let mut components = Vec::new();
    let mut members = Vec::new();
    for (name, port) in ports {
        let kind = if nodes.contains(&name) { Kind::Broker } else { Kind::Service };
        let (container, pid) = ready(&stack, name, kind, port, None).await?;
        let s = stack.clone();
        let data_dir: PathBuf = blocking(move || s.data_dir(name)).await?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut component = Component::container(name, kind, address, data_dir);
        component.monitor = (monitors.iter().find(|(node, _)| *node == name))
            .map(|(_, port)| SocketAddr::from(([127, 0, 0, 1], *port)));
        components.push(component);
        members.push(Member { name, kind, port, container, pid, down: None, killed: false, healed: None });
    }
    guard.armed = false;
    Ok((components, Swarm { name: stack.name.clone(), stack: Some(stack), members }))
}

/// Removes a stack unless disarmed (see [`start`]).
struct RemoveGuard {
    stack: Stack,
    armed: bool,
    cancelled: Arc<AtomicBool>,
}

impl Drop for RemoveGuard {
    fn drop(&mut self) {
        if self.armed {
            self.cancelled.store(true, Ordering::SeqCst);
            if let Err(e) = self.stack.remove() {
                tracing::warn!(stack = self.stack.name, error = %e, "cleanup after an unfinished stack deploy");
            }
        }
    }
}

/// Whether the component answers on its published port: gRPC health SERVING (a
/// service), the NATS greeting (the broker); waits up to `within`.
async fn serving(kind: Kind, port: u16, within: Duration) -> std::result::Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    match kind {
        Kind::Service => crate::client::wait_serving(address, within).await,
        Kind::Broker => {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                if tokio::task::spawn_blocking(move || nats_greets(port)).await.unwrap_or(false) {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("no NATS greeting on {address} within {} s", within.as_secs()));
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
    }
}

/// Waits until `name` has a task whose container is not `old`, healthy (the broker,
/// which has no health check: running) and running for swarm, and it answers on its
/// published port; returns that container and its pid.
async fn ready(stack: &Stack, name: &'static str, kind: Kind, port: u16, old: Option<String>) -> Result<(String, u32)> {
    let deadline = Instant::now() + READY_WITHIN;
    let unready = |detail: String| {
        let s = stack.clone();
        async move {
            let tasks = blocking(move || Ok(s.tasks(name))).await.unwrap_or_default();
            TopologyError::Swarm(SwarmError::Service {
                service_name: stack.service(name),
                detail: format!("{detail}; its tasks: {tasks}"),
            })
        }
    };
    let container = loop {
        let (s, old) = (stack.clone(), old.clone());
        let found = blocking(move || {
            Ok(match s.container(name)? {
                Some(c) if Some(&c) != old.as_ref() => (s.readiness(&c) == Readiness::Ready).then_some(c),
                _ => None,
            })
        })
        .await?;
        if let Some(container) = found {
            break container;
        }
        if Instant::now() > deadline {
            return Err(unready(format!("no healthy task within {} s", READY_WITHIN.as_secs())).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Err(e) = serving(kind, port, deadline.saturating_duration_since(Instant::now())).await {
        return Err(unready(format!("healthy, but not answering on its published port {port}: {e}")).await);
    }
    let s = stack.clone();
    let c = container.clone();
    let pid = blocking(move || Ok(s.pid(&c))).await?;
    Ok((container, pid))
}

/// Watches, on a thread of its own, for `name` to serve again from a task other than
/// `old`'s, then for that task to be healthy: from now on, every [`WATCH_EVERY`], for up
/// to [`READY_WITHIN`].
fn watch(
    stack: Stack,
    name: &'static str,
    kind: Kind,
    port: u16,
    old: String,
) -> oneshot::Receiver<std::result::Result<Serving, String>> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new().name(format!("watch-{name}")).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let result = match runtime {
            Err(e) => Err(format!("no runtime for the watcher: {e}")),
            Ok(runtime) => runtime.block_on(async {
                let deadline = Instant::now() + READY_WITHIN;
                let mut old = old;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(format!("not serving and healthy within {} s", READY_WITHIN.as_secs()));
                    }
                    if serving(kind, port, left).await.is_ok() {
                        let at = Instant::now();
                        // Its new task, not the old one answering before it was gone.
                        if let Ok(Some(container)) = stack.container(name) {
                            if container != old {
                                match healthy(&stack, &container, deadline).await {
                                    Some(healthy_at) => {
                                        let pid = stack.pid(&container);
                                        return Ok(Serving { at, healthy_at, container, pid });
                                    }
                                    // That task ended before it was healthy: the next one.
                                    None => old = container,
                                }
                            }
                        }
                    }
                    tokio::time::sleep(WATCH_EVERY).await;
                }
            }),
        };
        // The receiver is gone when the topology was dropped meanwhile: nobody to tell.
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        tracing::warn!(service = name, error = %e, "cannot start the watcher thread");
    }
    rx
}

/// When `container` was first seen healthy and its task running (the broker's, which
/// has no health check: running), polling every [`WATCH_EVERY`] until `deadline`;
/// `None` if it stopped first, or the deadline passed.
async fn healthy(stack: &Stack, container: &str, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        match stack.readiness(container) {
            Readiness::Ready => return Some(Instant::now()),
            Readiness::Starting => {}
            Readiness::Gone => return None,
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    None
}

/// Partitions are not on this target ([`SwarmError::NoPartition`]).
fn refuse_partitions(operation: Operation) -> Result<()> {
    match operation {
        Operation::Partition | Operation::Reconnect => Err(SwarmError::NoPartition.into()),
        _ => Ok(()),
    }
}

/// The `docker` command that carries out `operation` on `container`.
fn run(stack: &Stack, container: &str, operation: Operation) -> std::result::Result<(), SwarmError> {
    match operation {
        Operation::Kill => stack.kill(container),
        Operation::Freeze => stack.pause(container),
        Operation::Thaw => stack.unpause(container),
        Operation::Partition | Operation::Reconnect => Err(SwarmError::NoPartition),
    }
}

impl Swarm {
    pub(super) fn stack_name(&self) -> &str {
        &self.name
    }

    fn stack(&self) -> Result<&Stack> {
        self.stack.as_ref().ok_or_else(|| TopologyError::NotRunning { service: format!("stack {}", self.name) })
    }

    fn member(&mut self, name: &str) -> Result<&mut Member> {
        self.members.iter_mut().find(|m| m.name == name).ok_or_else(|| TopologyError::UnknownService(name.to_owned()))
    }

    pub(super) fn pid(&self, name: &str) -> Option<u32> {
        self.members.iter().find(|m| m.name == name).map(|m| m.pid).filter(|&pid| pid != 0)
    }

    pub(super) fn runs_as(&self, name: &str) -> RunsAs {
        let container = self.members.iter().find(|m| m.name == name).map(|m| m.container.clone()).unwrap_or_default();
        RunsAs::Container { container }
    }

    /// Takes note of a watcher that has seen its component serving again (without
    /// waiting for one that has not).
    fn poll(&mut self, name: &str) -> Result<()> {
        let member = self.member(name)?;
        let Some(down) = member.down.as_mut() else { return Ok(()) };
        let answer = match down.serving.try_recv() {
            Err(TryRecvError::Empty) => return Ok(()),
            Ok(answer) => answer,
            Err(TryRecvError::Closed) => Err("its watcher ended".into()),
        };
        let Down { fault, at, .. } = member.down.take().expect("checked above");
        self.healed(name, fault, at, answer)
    }

    /// Records what the watcher of a `fault` that took effect `at` answered: the new
    /// task, and the self-heal.
    fn healed(
        &mut self,
        name: &str,
        fault: &'static str,
        at: Instant,
        answer: std::result::Result<Serving, String>,
    ) -> Result<()> {
        let service_name = self.stack()?.service(name);
        let member = self.member(name)?;
        match answer {
            Ok(serving) => {
                let heal = SelfHeal { down_at: at, serving_at: serving.at, healthy_at: serving.healthy_at };
                let (gap_ms, healthy_ms) = (heal.gap().as_millis() as u64, heal.until_healthy().as_millis() as u64);
                tracing::info!(service = name, fault, gap_ms, healthy_ms, "swarm replaced its task; serving again");
                member.container = serving.container;
                member.pid = serving.pid;
                member.healed = Some(heal);
                Ok(())
            }
            Err(detail) => {
                tracing::warn!(service = name, %detail, "not serving again");
                Err(SwarmError::NotHealed {
                    service: name.to_owned(),
                    secs: READY_WITHIN.as_secs(),
                    fault,
                    service_name,
                }
                .into())
            }
        }
    }

    /// The container a fault on `name` acts on: its current task's. Refused while a
    /// fault has ended its task and swarm's next one is not serving yet.
    fn current(&mut self, name: &str) -> Result<String> {
        self.poll(name)?;
        let member = self.member(name)?;
        if let Some(down) = &member.down {
            return Err(TopologyError::NotRunning {
                service: format!("{name} (its task ended by a {}; swarm has not replaced it yet)", down.fault),
            });
        }
        Ok(member.container.clone())
    }

    /// After a kill: the component is down until its watcher sees it serving again.
    fn after_kill(&mut self, name: &'static str, container: String, at: Instant) -> Result<()> {
        let stack = self.stack()?.clone();
        let member = self.member(name)?;
        let serving = watch(stack, name, member.kind, member.port, container);
        member.down = Some(Down { fault: "kill", at, serving });
        member.killed = true;
        member.pid = 0;
        Ok(())
    }

    /// Carries out `operation` here, on the calling thread.
    pub(super) fn operate(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        refuse_partitions(operation)?;
        let container = self.current(name)?;
        run(self.stack()?, &container, operation)?;
        if operation == Operation::Kill {
            self.after_kill(name, container, Instant::now())?;
        }
        Ok(())
    }

    /// Carries out `operation` on a blocking thread.
    pub(super) async fn operate_off_runtime(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        refuse_partitions(operation)?;
        let container = self.current(name)?;
        let (stack, c) = (self.stack()?.clone(), container.clone());
        let done = blocking(move || run(&stack, &c, operation).map(|()| Instant::now())).await?;
        if operation == Operation::Kill {
            self.after_kill(name, container, done)?;
        }
        Ok(())
    }

    /// Waits until swarm's next task of a component a fault ended serves.
    async fn await_heal(&mut self, name: &'static str) -> Result<()> {
        let Some(down) = self.member(name)?.down.take() else { return Ok(()) };
        let Down { fault, at, serving } = down;
        let answer = serving.await.unwrap_or_else(|_| Err("its watcher ended".into()));
        self.healed(name, fault, at, answer)
    }

    /// A killed component: waits until swarm's next task serves (the lab starts
    /// nothing), or returns at once if it already does. A running one: its task stopped
    /// (SIGTERM, SIGKILL after 5 s), then the same wait.
    pub(super) async fn restart(&mut self, name: &'static str) -> Result<()> {
        self.poll(name)?;
        let member = self.member(name)?;
        if !std::mem::take(&mut member.killed) {
            let container = self.member(name)?.container.clone();
            let (stack, c) = (self.stack()?.clone(), container.clone());
            let at = blocking(move || {
                if stack.state(&c) == "paused" {
                    stack.unpause(&c)?;
                }
                stack.stop(&c)?;
                Ok(Instant::now())
            })
            .await?;
            let stack = self.stack()?.clone();
            let member = self.member(name)?;
            let serving = watch(stack, name, member.kind, member.port, container);
            member.down = Some(Down { fault: "restart", at, serving });
            member.pid = 0;
        }
        self.await_heal(name).await
    }

    /// Back to serving and thawed: waits for the next task of a component a fault ended
    /// (or whose task ended by itself), unpauses a paused one.
    pub(super) async fn recover(&mut self, name: &'static str) -> Result<()> {
        self.poll(name)?;
        self.member(name)?.killed = false;
        if self.member(name)?.down.is_some() {
            self.await_heal(name).await?;
        }
        let stack = self.stack()?.clone();
        let member = self.member(name)?;
        let (kind, port, container) = (member.kind, member.port, member.container.clone());
        let (s, c) = (stack.clone(), container.clone());
        let state = blocking(move || Ok(s.state(&c))).await?;
        match state.as_str() {
            "paused" => {
                let (s, c) = (stack.clone(), container.clone());
                blocking(move || s.unpause(&c)).await?;
            }
            "running" => {}
            _ => {
                let (container, pid) = ready(&stack, name, kind, port, Some(container)).await?;
                let member = self.member(name)?;
                member.container = container;
                member.pid = pid;
            }
        }
        Ok(())
    }

    /// The last self-heal of `name` not yet taken: when a fault ended its task, and when
    /// swarm's next one served.
    pub(super) fn take_self_heal(&mut self, name: &str) -> Option<SelfHeal> {
        if let Err(e) = self.poll(name) {
            tracing::warn!(service = name, error = %e, "no self-heal to record");
        }
        self.member(name).ok()?.healed.take()
    }

    /// Removes the stack: its services, network and volumes.
    pub(super) fn stop(&mut self) -> Result<()> {
        if let Some(stack) = &self.stack {
            stack.remove()?;
            // Taken only once removed: a failed removal is tried again on drop.
            self.stack = None;
        }
        Ok(())
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            if let Err(e) = stack.remove() {
                tracing::warn!(stack = stack.name, error = %e, "could not remove the stack on drop");
            }
        }
    }
}
