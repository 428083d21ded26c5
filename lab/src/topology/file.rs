//! `topology.json`: what `lab up` records in its run dir so that other commands (`lab
//! seed`, `lab load`, …) and people find the components, whichever backend runs them.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Result, TopologyError};

/// The file a topology is described in, inside its run dir.
pub const TOPOLOGY_FILE: &str = "topology.json";

/// The whole topology as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopologyFile {
    pub mode: String,
    /// "process", "compose" or "swarm" ([`super::Deployment::name`]).
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub compose_project: Option<String>,
    /// The swarm target's stack (`docker stack ps <stack>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_stack: Option<String>,
    /// The broker's client URL (async mode).
    pub nats_url: Option<String>,
    pub run_dir: PathBuf,
    /// The process that started (and will stop) the components.
    pub lab_pid: u32,
    pub services: Vec<ServiceRecord>,
}

/// One component (service or broker) as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// Where callers reach it.
    pub address: SocketAddr,
    /// Where it really listens, when a fault proxy stands in front of it.
    #[serde(default)]
    pub direct_address: Option<SocketAddr>,
    /// Host pid of its main process (a container's too); 0 while it is not running.
    pub pid: u32,
    /// The host folder its data is in: the process's data dir, or the mountpoint of the
    /// container's volume.
    pub data_dir: PathBuf,
    /// What runs it, and where its output goes.
    #[serde(flatten)]
    pub runs_as: RunsAs,
    /// Set when this is a service served by another component (monolith mode: the four
    /// services, each recorded at the monolith's address): not a process of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

/// What runs a component: a process of the lab, or a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunsAs {
    /// A child process of the lab; its stdout and stderr go to `log`.
    Process { log: PathBuf },
    /// A container (its id); `docker logs <container>` shows its output.
    Container { container: String },
}

impl TopologyFile {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(TOPOLOGY_FILE);
        let text = fs::read_to_string(&path).map_err(|source| TopologyError::Io {
            context: format!("cannot read {} (is `lab up` running with this --run-dir?)", path.display()),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| TopologyError::NotATopologyFile { path, source })
    }

    /// Writes the file of `run_dir` atomically (a reader never sees half of it).
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(TOPOLOGY_FILE);
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_string_pretty(self).expect("a topology serialises");
        fs::write(&tmp, json)
            .map_err(|source| TopologyError::Io { context: format!("cannot write {}", tmp.display()), source })?;
        fs::rename(&tmp, &path)
            .map_err(|source| TopologyError::Io { context: format!("cannot write {}", path.display()), source })
    }

    pub fn address(&self, service: &str) -> Result<SocketAddr> {
        self.services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.address)
            .ok_or_else(|| TopologyError::UnknownService(service.to_owned()))
    }

    /// Where callers reach every instance of `service`: its one address, or with
    /// replicas (`query-1`, …) each replica's, in order.
    pub fn addresses(&self, service: &str) -> Result<Vec<SocketAddr>> {
        let all: Vec<SocketAddr> = (self.services.iter())
            .filter(|s| s.name == service || common::names::replica_of(&s.name) == Some(service))
            .map(|s| s.address)
            .collect();
        match all.is_empty() {
            true => Err(TopologyError::UnknownService(service.to_owned())),
            false => Ok(all),
        }
    }

    /// Whether the lab that wrote this file is still alive.
    pub fn lab_alive(&self) -> bool {
        super::processes::pid_alive(self.lab_pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(runs_as: RunsAs) -> ServiceRecord {
        ServiceRecord {
            name: "users".into(),
            address: "127.0.0.1:7000".parse().unwrap(),
            direct_address: None,
            pid: 42,
            data_dir: "run/users/data".into(),
            runs_as,
            served_by: None,
        }
    }

    #[test]
    fn a_process_record_keeps_its_log_and_a_container_record_names_its_container() {
        let process = record(RunsAs::Process { log: "run/users/log".into() });
        let json = serde_json::to_value(&process).unwrap();
        assert_eq!(json["log"], "run/users/log");
        assert!(json.get("container").is_none());
        let back: ServiceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.runs_as, process.runs_as);

        let container = record(RunsAs::Container { container: "0123abcd".into() });
        let json = serde_json::to_value(&container).unwrap();
        assert_eq!(json["container"], "0123abcd");
        assert!(json.get("log").is_none(), "a container has no log file: {json}");
        let back: ServiceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.runs_as, container.runs_as);
    }

    #[test]
    fn a_record_with_neither_log_nor_container_is_refused() {
        let mut json = serde_json::to_value(record(RunsAs::Process { log: "l".into() })).unwrap();
        json.as_object_mut().unwrap().remove("log");
        assert!(serde_json::from_value::<ServiceRecord>(json).is_err());
    }
}
