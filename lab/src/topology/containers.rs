//! The container backend: the topology as a Docker Compose project ([`super::compose`]),
//! each component a container publishing its port on loopback, its data on a volume;
//! faults are `docker` commands, and a partition takes a container off the network.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use common::names::{NATS, NATS_NODES};

use super::{
    compose::{Compose, ComposeError},
    processes::DistinctPorts,
    Component, Config, Kind, Operation, Result, RunsAs, TopologyError,
};

/// One container of the project.
#[derive(Debug)]
struct Container {
    name: &'static str,
    /// Its id (names differ between Compose v1 and v2; ids survive `docker start`).
    id: String,
    /// The host port it publishes (given again to `docker start`'s readiness check).
    port: u16,
    /// Host pid of its main process, as of its last start (0 if unknown).
    pid: u32,
}

/// The containers of a topology. Dropping it takes the project down, unless
/// [`Containers::stop`] already did.
#[derive(Debug)]
pub(super) struct Containers {
    /// `None` once the project is down.
    compose: Option<Compose>,
    project: String,
    members: Vec<Container>,
}

/// Starts the project with a host port of our choosing per component, and waits until
/// each is ready.
pub(super) async fn start(config: &Config, image: &str, project: &str) -> Result<(Vec<Component>, Containers)> {
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
    // Every host port distinct (a port reserved twice would fail `compose up`).
    let mut taken = DistinctPorts::default();
    let mut distinct = || taken.next();
    let mut ports = Vec::new();
    for name in &names {
        ports.push((*name, distinct()?));
    }
    let mut monitors = Vec::new();
    if config.mode.uses_broker() && config.brokers > 1 {
        for name in nodes {
            monitors.push((*name, distinct()?));
        }
    }
    let (run_dir, image, project_name, mode, policy) =
        (config.run_dir.clone(), image.to_owned(), project.to_owned(), config.mode, config.policy);
    let (ports_for_up, monitors_for_up) = (ports.clone(), monitors.clone());
    // If this future is dropped (Ctrl-C) or `up` fails, the guard takes down whatever
    // came up; an `up` still running then takes itself down when it ends.
    let mut guard =
        UpGuard { project: Compose::existing(&run_dir, project), armed: true, cancelled: Default::default() };
    let cancelled = guard.cancelled.clone();
    let (compose, found) = tokio::task::spawn_blocking(move || {
        let compose = Compose::up(&run_dir, &project_name, &image, mode, policy, &ports_for_up, &monitors_for_up)?;
        if cancelled.load(Ordering::SeqCst) {
            compose.down()?;
            return Err(ComposeError::Failed { command: "compose up".into(), detail: "cancelled".into() });
        }
        let mut found: Vec<(String, u32, PathBuf)> = Vec::new();
        for (name, _) in &ports_for_up {
            found.push((compose.container(name), compose.pid(name), compose.data_dir(name)?));
        }
        Ok((compose, found))
    })
    .await??;
    guard.armed = false;
    let mut components = Vec::new();
    let mut members = Vec::new();
    for ((name, port), (id, pid, data_dir)) in ports.into_iter().zip(found) {
        let kind = if nodes.contains(&name) { Kind::Broker } else { Kind::Service };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut component = Component::container(name, kind, address, data_dir);
        component.monitor = (monitors.iter().find(|(node, _)| *node == name))
            .map(|(_, port)| SocketAddr::from(([127, 0, 0, 1], *port)));
        components.push(component);
        members.push(Container { name, id, port, pid });
    }
    Ok((components, Containers { project: compose.project.clone(), compose: Some(compose), members }))
}

/// Takes a Compose project down unless disarmed (see [`start`]).
struct UpGuard {
    project: Compose,
    armed: bool,
    cancelled: Arc<AtomicBool>,
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        if self.armed {
            self.cancelled.store(true, Ordering::SeqCst);
            if let Err(e) = self.project.down() {
                tracing::warn!(project = self.project.project, error = %e, "cleanup after an unfinished compose up");
            }
        }
    }
}

/// The `docker` command that carries out `operation` on the container of `name`.
fn run(compose: &Compose, name: &str, operation: Operation) -> std::result::Result<(), ComposeError> {
    match operation {
        Operation::Kill => compose.kill(name),
        Operation::Freeze => compose.pause(name),
        Operation::Thaw => compose.unpause(name),
        Operation::Partition => compose.partition(name),
        Operation::Reconnect => compose.reconnect(name),
    }
}

impl Containers {
    pub(super) fn project(&self) -> &str {
        &self.project
    }

    fn compose(&self) -> Result<&Compose> {
        self.compose.as_ref().ok_or_else(|| TopologyError::NotRunning { service: format!("project {}", self.project) })
    }

    fn member(&mut self, name: &str) -> Result<&mut Container> {
        self.members.iter_mut().find(|c| c.name == name).ok_or_else(|| TopologyError::UnknownService(name.to_owned()))
    }

    pub(super) fn pid(&self, name: &str) -> Option<u32> {
        self.members.iter().find(|c| c.name == name).map(|c| c.pid).filter(|&pid| pid != 0)
    }

    pub(super) fn runs_as(&self, name: &str) -> RunsAs {
        let container = self.members.iter().find(|c| c.name == name).map(|c| c.id.clone()).unwrap_or_default();
        RunsAs::Container { container }
    }

    /// Carries out `operation` here, on the calling thread.
    pub(super) fn operate(&mut self, name: &'static str, operation: Operation) -> Result<()> {
        Ok(run(self.compose()?, name, operation)?)
    }

    /// Carries out `operation` on a blocking thread.
    pub(super) async fn operate_off_runtime(&self, name: &'static str, operation: Operation) -> Result<()> {
        let compose = self.compose()?.clone();
        Ok(tokio::task::spawn_blocking(move || run(&compose, name, operation)).await??)
    }

    /// `docker start`, then waits until it is ready again.
    pub(super) async fn restart(&mut self, name: &'static str) -> Result<()> {
        let compose = self.compose()?.clone();
        let port = self.member(name)?.port;
        let pid = tokio::task::spawn_blocking(move || {
            compose.start(name, port)?;
            Ok::<_, ComposeError>(compose.pid(name))
        })
        .await??;
        self.member(name)?.pid = pid;
        Ok(())
    }

    /// Unpauses, starts and reconnects `name`, as its state asks.
    pub(super) async fn recover(&mut self, name: &'static str) -> Result<()> {
        let compose = self.compose()?.clone();
        match compose.state(name).as_str() {
            "paused" => compose.unpause(name)?,
            "running" => {}
            _ => self.restart(name).await?,
        }
        if !compose.connected(name) {
            compose.reconnect(name)?;
        }
        Ok(())
    }

    /// Removes the containers, the network and the volumes.
    pub(super) fn stop(&mut self) -> Result<()> {
        if let Some(compose) = &self.compose {
            compose.down()?;
            // Taken only once down: a failed `down` is tried again on drop.
            self.compose = None;
        }
        Ok(())
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if let Some(compose) = self.compose.take() {
            if let Err(e) = compose.down() {
                tracing::warn!(project = compose.project, error = %e, "could not take the compose project down on drop");
            }
        }
    }
}
