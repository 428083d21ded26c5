//! Test support: a real topology (the service binaries as processes) in a temporary
//! run dir on ephemeral loopback ports.
//!
//! The run dir goes away with the test, unless the test fails: then it is kept, and its
//! path and the tail of every process's log are printed with the failure, so the
//! failure can be read. `CASCADE_KEEP_RUNS=1` keeps every run dir.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::config::Mode;
use lab::{
    client::Clients,
    topology::{Config, Topology},
};
use tempfile::TempDir;

pub struct Lab {
    pub topology: Topology,
    pub clients: Clients,
    /// Kept so the run dir lives as long as the test (and past it, if the test fails).
    /// Declared last: it is dropped after the topology has stopped, logs complete.
    pub dir: RunDir,
}

/// Set to `1` to keep every test's run dir, passed or failed.
pub const KEEP_RUNS_VAR: &str = "CASCADE_KEEP_RUNS";
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 20;

/// A temporary run dir that is removed when dropped, unless the thread is panicking (a
/// failed assert, a failed `expect`, also while the topology starts) or
/// [`KEEP_RUNS_VAR`] is `1`: then it stays, and says where it is.
pub struct RunDir {
    /// `None` once kept.
    dir: Option<TempDir>,
}

impl RunDir {
    pub fn new() -> Self {
        Self { dir: Some(tempfile::tempdir().expect("temp dir")) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("a run dir is only kept when dropped").path()
    }

    fn keep_always() -> bool {
        std::env::var(KEEP_RUNS_VAR).is_ok_and(|v| v == "1")
    }
}

impl Default for RunDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if !failed && !Self::keep_always() {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        if !failed {
            eprintln!("run dir kept ({KEEP_RUNS_VAR}=1): {}", path.display());
            return;
        }
        eprintln!("test failed; run dir kept: {}", path.display());
        for log in logs_under(&path, 3) {
            let shown = log.strip_prefix(&path).unwrap_or(&log).display();
            eprintln!("--- last {LOG_TAIL_LINES} lines of {shown} ---");
            eprintln!("{}", lab::topology::tail(&log, LOG_TAIL_LINES));
        }
    }
}

/// The log files of a run dir (each process writes `<run>/<name>/log`), sorted; `depth`
/// bounds the walk.
fn logs_under(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut logs = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return logs };
    for entry in entries.map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            logs.extend(logs_under(&path, depth - 1));
        } else if path.file_name().is_some_and(|n| n == "log") || path.extension().is_some_and(|e| e == "log") {
            logs.push(path);
        }
    }
    logs.sort();
    logs
}

pub async fn start(mode: Mode) -> Lab {
    start_with(mode, |_| {}).await
}

/// Like [`start`], with the topology's configuration adjusted by `adjust` first.
pub async fn start_with(mode: Mode, adjust: impl FnOnce(&mut Config)) -> Lab {
    let dir = RunDir::new();
    let mut config = Config::new(mode, dir.path().join("run"));
    adjust(&mut config);
    let topology = Topology::start(config).await.expect("topology starts");
    let clients = Clients::for_topology(&topology.file()).expect("clients");
    Lab { topology, clients, dir }
}

impl Lab {
    /// New clients (fresh connections), e.g. after a restart.
    pub fn reconnect(&mut self) {
        self.clients = Clients::for_topology(&self.topology.file()).expect("clients");
    }
}

/// A request with an explicit deadline.
pub fn req<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Asserts a gRPC error's code and that its message mentions `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "message: {}", status.message());
    assert!(status.message().contains(needle), "{:?} does not mention {needle:?}", status.message());
}

/// In async mode, waits until the stream holds `events` events and every consumer has
/// applied them (the replicas are then as fresh as they can be); in sync mode there is
/// nothing to wait for.
pub async fn settle(lab: &Lab, events: u64) {
    if let Some(url) = lab.topology.events_url() {
        lab::convergence::wait_settled(&url, events, Duration::from_secs(30)).await.expect("replicas settle");
    }
}

/// The truth for convergence checks: built by the lab from the owners' raw answers.
pub fn truth(lab: &Lab) -> lab::convergence::Truth {
    lab::convergence::Truth::of(&lab.clients)
}

/// Waits until the query view equals the truth for `user_ids` (async mode: settles
/// first, then compares, until clean or `timeout`). Returns the last comparison.
pub async fn converge(lab: &Lab, min_events: u64, user_ids: &[String], timeout: Duration) -> lab::convergence::Diff {
    let truth = truth(lab);
    let start = std::time::Instant::now();
    loop {
        settle(lab, min_events).await;
        let diff = lab::convergence::compare(&lab.clients, &truth, user_ids).await.expect("comparison runs");
        if diff.is_clean() || start.elapsed() > timeout {
            return diff;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `n` users and `m` products; returns their ids.
pub async fn populate(lab: &Lab, n: usize, m: usize) -> (Vec<String>, Vec<String>) {
    use common::proto::{CreateProductRequest, CreateUserRequest};
    let mut c = lab.clients.clone();
    let mut users = Vec::new();
    for i in 0..n {
        let message = CreateUserRequest { name: format!("User {i}"), email: format!("u{i}@example.test") };
        users.push(c.users.create_user(req(message, Duration::from_secs(5))).await.unwrap().into_inner().id);
    }
    let mut products = Vec::new();
    for i in 0..m {
        let message = CreateProductRequest { title: format!("Product {i}"), price_cents: 100 + i as i64 };
        products.push(c.products.create_product(req(message, Duration::from_secs(5))).await.unwrap().into_inner().id);
    }
    (users, products)
}

/// The results of a `lab bench --brokers 3 --scenario kill-broker-node` run into `runs`
/// (a container target), after the checks every target shares: three broker
/// components `nats-1` … `nats-3`; in async, every fault carried out, the stream's
/// leader killed and then a follower, the stream R3 and whole before and after,
/// nothing acknowledged lost and the view converged.
pub fn kill_broker_node_results(runs: &Path) -> lab::suite::Results {
    use lab::{suite::Scenario, topology::TopologyFile};
    let dir = std::fs::read_dir(runs).unwrap().next().unwrap().unwrap().path();
    let results: lab::suite::Results =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    let file = TopologyFile::read(&dir.join("kill-broker-node-async")).expect("the topology was recorded");
    let nodes: Vec<&str> = file.services.iter().map(|s| s.name.as_str()).filter(|n| n.starts_with("nats")).collect();
    assert_eq!(nodes, ["nats-1", "nats-2", "nats-3"], "three broker components");
    let s = results.scenario(Scenario::KillBrokerNode, Mode::Async).expect("async ran");
    assert!(s.faults.iter().all(|f| f.result == "ok"), "{:?}", s.faults);
    let kills: Vec<&str> =
        s.faults.iter().filter(|f| f.action.starts_with("kill")).map(|f| f.action.as_str()).collect();
    assert!(
        kills.len() == 2 && kills[0].contains("the stream's leader") && kills[1].contains("a follower"),
        "{kills:?}"
    );
    let cluster = s.cluster.as_ref().expect("the cluster is recorded");
    assert!(cluster.before.as_ref().is_some_and(|p| p.is_whole() && p.replicas == 3), "{cluster:?}");
    assert!(cluster.after.as_ref().is_some_and(|p| p.is_whole() && p.replicas == 3), "{cluster:?}");
    let losses = s.losses.as_ref().unwrap();
    assert!(losses.is_clean() && losses.acknowledged_orders > 0, "{losses:?}");
    assert!(s.convergence.as_ref().is_some_and(|c| c.converged), "{:?}", s.convergence);
    results
}
