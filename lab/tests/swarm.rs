//! The swarm target on this machine's Docker engine: the image built offline, the
//! topology deployed as a stack on a single-node swarm (initialised by the lab when the
//! engine's is inactive), a request answered through it, a killed service's task
//! replaced by swarm (the lab only waits), pause on the current task (a partition is
//! refused), kill-dependency through `lab bench --target swarm` with the self-healing
//! recorded, a three-node broker cluster of swarm services losing its stream leader's
//! task, then a follower's (`--brokers 3`), and the engine left as found: no stack,
//! container, network or volume of the test, and the swarm as it was.
//!
//! A swarm is state of the whole engine, so these tests hold a machine-wide lock (an
//! abstract unix socket, released with the process) while they run: not two at once,
//! in this binary or in another run's.

mod support;

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixListener},
    },
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{
    config::Mode,
    proto::{GetUserRequest, UserOrdersRequest},
};
use lab::{
    client::Clients,
    report::verdicts::{availability_between, fault_windows},
    suite::{Results, Scenario},
    topology::{RunsAs, TopologyFile},
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const LAB: &str = env!("CARGO_BIN_EXE_lab");
/// Deploys, heals and removals are slow on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(180);

/// Waits for the machine-wide lock of the swarm tests.
fn engine_lock() -> UnixListener {
    let name = SocketAddr::from_abstract_name(b"cascade-swarm-tests").expect("an abstract name");
    let start = Instant::now();
    loop {
        match UnixListener::bind_addr(&name) {
            Ok(lock) => return lock,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(start.elapsed() < Duration::from_secs(1800), "another swarm test held the engine for 30 min");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("cannot take the swarm tests' lock: {e}"),
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn lab(args: &[&str], prefix: &str) -> Output {
    Command::new(LAB).args(args).env("CASCADE_COMPOSE_PREFIX", prefix).output().expect("lab runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the test must leave as it found: the swarm's state, and whether the networks
/// swarm creates exist.
#[derive(Debug, PartialEq, Eq)]
struct Engine {
    swarm: String,
    ingress: bool,
    gwbridge: bool,
}

fn engine() -> Engine {
    let networks = docker(&["network", "ls", "--format", "{{.Name}}"]);
    Engine {
        swarm: docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]),
        ingress: networks.lines().any(|n| n == "ingress"),
        gwbridge: networks.lines().any(|n| n == "docker_gwbridge"),
    }
}

/// What is left of the test's stacks: services, containers, networks and volumes whose
/// names start with the prefix (empty when all is gone).
fn leftovers(prefix: &str) -> Vec<String> {
    let filter = format!("name={prefix}");
    let mut left = Vec::new();
    if engine().swarm == "active" {
        left.extend(
            docker(&["service", "ls", "--format", "{{.Name}}", "--filter", &filter]).lines().map(str::to_owned),
        );
    }
    left.extend(docker(&["ps", "-a", "--format", "{{.Names}}", "--filter", &filter]).lines().map(str::to_owned));
    left.extend(docker(&["network", "ls", "--format", "{{.Name}}", "--filter", &filter]).lines().map(str::to_owned));
    left.extend(docker(&["volume", "ls", "--format", "{{.Name}}", "--filter", &filter]).lines().map(str::to_owned));
    left.retain(|l| !l.is_empty());
    left
}

/// The test's engine lock, image and names; on drop (passed or failed) removes whatever
/// of the test is left, and leaves a swarm the test's lab initialised and did not leave.
struct Fixture {
    prefix: String,
    image: String,
    before: Engine,
    _lock: UnixListener,
}

impl Fixture {
    /// Takes the lock, notes the engine's state, builds the image offline.
    fn new(name: &str) -> Self {
        let lock = engine_lock();
        // The trailing "x" keeps this run's prefix from matching another run's names.
        let prefix = format!("cascadeswarm{name}{}x", std::process::id());
        let image = format!("cascade:swarmtest-{name}-{}", std::process::id());
        let fixture = Fixture { prefix, image, before: engine(), _lock: lock };
        let built = lab(&["image", "--offline", "--tag", &fixture.image], &fixture.prefix);
        assert!(built.status.success(), "image build: {}", stderr(&built));
        fixture
    }

    /// Nothing of the test is left, and the swarm is as it was (`log`: what the lab
    /// said, for the failure message).
    fn assert_left_as_found(&self, log: &str) {
        assert_eq!(leftovers(&self.prefix), Vec::<String>::new(), "left behind; the lab said: {log}");
        assert_eq!(engine(), self.before, "the engine's swarm as found; the lab said: {log}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if engine().swarm == "active" {
            for stack in docker(&["stack", "ls", "--format", "{{.Name}}"]).lines() {
                if stack.starts_with(&self.prefix) {
                    docker(&["stack", "rm", stack]);
                }
            }
        }
        let filter = format!("name={}", self.prefix);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker(&["ps", "-aq", "--filter", &filter]).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
        }
        for id in docker(&["ps", "-aq", "--filter", &filter]).split_whitespace() {
            docker(&["rm", "-f", "-v", id]);
        }
        for net in docker(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker(&["network", "rm", net]);
        }
        for vol in docker(&["volume", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker(&["volume", "rm", "-f", vol]);
        }
        docker(&["rmi", "-f", &self.image]);
        let now = engine();
        if self.before.swarm == "inactive" && now.swarm == "active" {
            docker(&["swarm", "leave", "--force"]);
        }
        if !self.before.gwbridge && engine().gwbridge {
            docker(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// A running `lab up`, stopped (SIGTERM, then waited for) if the test fails before it
/// does: so the stack goes before the fixture looks for what is left.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

/// Waits for `lab up` to write its topology with `components` components and to
/// listen on its control socket.
fn wait_topology(run_dir: &Path, lab: &mut Child, components: usize) -> TopologyFile {
    let start = Instant::now();
    loop {
        if let Ok(file) = TopologyFile::read(run_dir) {
            let listening = run_dir.join(lab::control::CONTROL_SOCKET).exists();
            if file.lab_pid == lab.id() && file.services.len() == components && listening {
                return file;
            }
        }
        assert!(lab.try_wait().unwrap().is_none(), "lab up exited early");
        assert!(start.elapsed() < PATIENCE, "no topology.json after {} s", PATIENCE.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn container(file: &TopologyFile, name: &str) -> String {
    let record = file.services.iter().find(|s| s.name == name).expect("recorded");
    match &record.runs_as {
        RunsAs::Container { container } => container.clone(),
        other => panic!("{name} recorded as {other:?}"),
    }
}

/// The orders the view shows for `users`, once it shows at least `at_least` of them
/// (async: once the events arrived).
async fn view(clients: &Clients, users: &[String], at_least: usize) -> usize {
    let mut query = clients.query.clone();
    let start = Instant::now();
    loop {
        let mut shown = Ok(0);
        for user in users {
            let request = UserOrdersRequest { user_id: user.to_owned() };
            match bench::call(Duration::from_secs(2), request, |r| query.user_orders(r)).await {
                Ok(answer) => shown = shown.map(|n| n + answer.items.len()),
                Err(status) => shown = Err(status),
            }
        }
        match shown {
            Ok(n) if n >= at_least => return n,
            other => assert!(start.elapsed() < Duration::from_secs(60), "UserOrders of {users:?}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stack_serves_a_killed_task_is_replaced_by_swarm_and_the_engine_is_left_as_found() {
    let fixture = Fixture::new("up");
    let runs = tempfile::tempdir().unwrap();
    let run_dir = runs.path().join("run");
    let run_dir_arg = run_dir.to_str().unwrap();
    let mut up = Up(Command::new(LAB)
        .args(["up", "--target", "swarm", "--image", &fixture.image, "--mode", "async", "--run-dir", run_dir_arg])
        .env("CASCADE_COMPOSE_PREFIX", &fixture.prefix)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(runs.path().join("up.log")).unwrap())
        .spawn()
        .expect("lab starts"));
    let file = wait_topology(&run_dir, &mut up.0, 5);
    assert_eq!(file.target, "swarm");
    let stack = file.swarm_stack.clone().expect("the stack recorded");
    assert!(stack.starts_with(&fixture.prefix), "{stack}");
    assert_eq!(engine().swarm, "active");
    for s in &file.services {
        assert!(s.address.ip().is_loopback() && s.pid != 0, "{s:?}");
        assert!(!container(&file, &s.name).is_empty());
        assert!(s.data_dir.is_absolute() && s.data_dir.ends_with("_data"), "{s:?}");
    }

    // A request through query answers: seeded through the public API, and the orders
    // reach the view by events.
    let seeded =
        lab(&["seed", "--run-dir", run_dir_arg, "--users", "3", "--products", "3", "--orders", "9"], &fixture.prefix);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    let seed: lab::seed::Seeded = serde_json::from_slice(&std::fs::read(run_dir.join("seed.json")).unwrap()).unwrap();
    let clients = Clients::for_topology(&file).unwrap();
    assert_eq!(view(&clients, &seed.user_ids, 9).await, 9, "every seeded order in the view");

    // Killed: its task's container is dead, and the lab starts nothing; swarm replaces
    // the task, and the restart only waits for the new one to serve.
    let killed = container(&file, "users");
    let out = lab(&["kill", "users", "--run-dir", run_dir_arg], &fixture.prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(docker(&["inspect", "--format", "{{.State.Status}}", &killed]), "exited");
    let out = lab(&["restart", "users", "--run-dir", run_dir_arg], &fixture.prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = TopologyFile::read(&run_dir).unwrap();
    let replaced = container(&file, "users");
    assert_ne!(replaced, killed, "a new task's container");
    let service = format!("{stack}_users");
    assert_eq!(
        docker(&["inspect", "--format", "{{index .Config.Labels \"com.docker.swarm.service.name\"}}", &replaced]),
        service
    );
    let tasks = docker(&["service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", &service]);
    assert!(tasks.lines().any(|t| t.starts_with("Failed") && t.contains("137")), "the killed task: {tasks}");
    assert!(tasks.lines().any(|t| t.starts_with("Running")), "its replacement: {tasks}");
    // It serves again, on the same address, with its data (the volume).
    let mut users = Clients::for_topology(&file).unwrap().users;
    let ada = GetUserRequest { id: seed.user_ids[0].clone() };
    let got = bench::call(Duration::from_secs(5), ada, |r| users.get_user(r)).await.expect("the seeded user");
    assert_eq!(got.id, seed.user_ids[0]);
    assert_eq!(view(&clients, &seed.user_ids, 9).await, 9);

    // Pause acts on the current task's container, and is undone; a partition is refused
    // (swarm would not find the task by name again).
    let products = container(&file, "products");
    let out = lab(&["pause", "products", "--run-dir", run_dir_arg], &fixture.prefix);
    assert!(out.status.success(), "pause: {}", stderr(&out));
    assert_eq!(docker(&["inspect", "--format", "{{.State.Status}}", &products]), "paused");
    let out = lab(&["resume", "products", "--run-dir", run_dir_arg], &fixture.prefix);
    assert!(out.status.success(), "resume: {}", stderr(&out));
    assert_eq!(docker(&["inspect", "--format", "{{.State.Status}}", &products]), "running");
    let out = lab(&["partition", "products", "--run-dir", run_dir_arg], &fixture.prefix);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("a partition is not on the swarm target"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--target compose"), "says where partitions run: {}", stderr(&out));
    assert_eq!(container(&TopologyFile::read(&run_dir).unwrap(), "products"), products, "the same task");
    assert_eq!(view(&clients, &seed.user_ids, 9).await, 9);

    // SIGTERM: the stack goes, volumes and network too, and the swarm is left if the
    // lab initialised it.
    kill(Pid::from_raw(up.0.id() as i32), Signal::SIGTERM).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = up.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < PATIENCE, "lab up still running {} s after SIGTERM", PATIENCE.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(runs.path().join("up.log")).unwrap_or_default();
    assert!(status.success(), "lab up exited with {status}: {log}");
    fixture.assert_left_as_found(&log);
}

#[test]
fn kill_dependency_on_swarm_records_how_long_swarm_took_to_replace_each_task() {
    let fixture = Fixture::new("bench");
    let runs = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--target",
        "swarm",
        "--image",
        &fixture.image,
        "--scenario",
        "kill-dependency",
        "--modes",
        "async,sync",
        "--runs",
        runs.path().to_str().unwrap(),
    ];
    let out = lab(&args, &fixture.prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("swarm replaced (fault → serving again): users "), "{printed}");
    fixture.assert_left_as_found(&stderr(&out));

    let dir = std::fs::read_dir(runs.path()).unwrap().next().unwrap().unwrap().path();
    let results: Results = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.environment.target, "swarm");
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("Swarm target: each component is one replica"), "the method says what ran");
    assert!(report.contains("swarm target: task replaced by swarm, fault → serving again"), "the self-heals' row");
    for mode in [Mode::Async, Mode::Sync] {
        let s = results.scenario(Scenario::KillDependency, mode).expect("ran");
        // Each kill's restart step waited for the task swarm started, and says when it
        // served: after the kill, and healthy no earlier than serving.
        let kills: Vec<_> = s.faults.iter().filter(|e| e.action.starts_with("kill")).collect();
        let restarts: Vec<_> = s.faults.iter().filter(|e| e.action.starts_with("restart")).collect();
        assert_eq!((kills.len(), restarts.len()), (2, 2), "{:?}", s.faults);
        for (k, r) in kills.iter().zip(&restarts) {
            let healed = r.self_healed.unwrap_or_else(|| panic!("{mode}: {} without its self-heal", r.action));
            assert!(healed.gap_ms > 0 && healed.until_healthy_ms >= healed.gap_ms, "{mode}: {healed:?}");
            assert!(healed.serving_again_ms > k.t_ms, "{mode}: served again before its kill: {k:?} {healed:?}");
            assert!(r.effective_ms.unwrap() >= healed.healthy_ms, "{mode}: the step waited for the healthy task");
        }
        let (from, to, what) = fault_windows(s).into_iter().next().expect("a fault window");
        let served = availability_between(s, from, to).expect("requests in the window");
        match mode {
            Mode::Sync => assert!(served <= 0.5, "sync served {served} while {what}: it should lose availability"),
            _ => {
                assert!(served >= 0.95, "async served {served} while {what}: it should keep serving");
                let losses = s.losses.as_ref().unwrap();
                assert_eq!((losses.lost, losses.duplicated, losses.phantom), (0, 0, 0), "{losses:?}");
                assert!(s.convergence.as_ref().unwrap().converged);
            }
        }
    }

    // The broker as a three-node cluster of swarm services, the stream R3: its leader's
    // task, then a follower's, killed; swarm replaces each (the restart step waits), and
    // the stream is whole again with nothing acknowledged lost.
    let runs = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--target",
        "swarm",
        "--image",
        &fixture.image,
        "--brokers",
        "3",
        "--scenario",
        "kill-broker-node",
        "--modes",
        "async",
        "--runs",
        runs.path().to_str().unwrap(),
    ];
    let out = lab(&args, &fixture.prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    fixture.assert_left_as_found(&stderr(&out));
    let results = support::kill_broker_node_results(runs.path());
    let s = results.scenario(Scenario::KillBrokerNode, Mode::Async).expect("ran");
    for restart in s.faults.iter().filter(|f| f.action.starts_with("restart")) {
        assert!(restart.self_healed.is_some(), "swarm replaced the node's task: {restart:?}");
    }
}

#[test]
fn the_swarm_target_says_what_is_missing_before_touching_the_swarm() {
    let prefix = format!("cascadeswarmerr{}x", std::process::id());
    let run_dir = tempfile::tempdir().unwrap();
    let out = Command::new(LAB)
        .args(["up", "--target", "swarm", "--run-dir"])
        .arg(run_dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("CASCADE_COMPOSE_PREFIX", &prefix)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no Docker engine"), "{}", stderr(&out));

    // Checked before the swarm is initialised: an engine whose swarm is inactive stays so.
    let _lock = engine_lock();
    let before = engine();
    let out =
        lab(&["bench", "--target", "swarm", "--image", "cascade:never-built", "--scenario", "kill-query"], &prefix);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cascade:never-built is not built") && err.contains("lab image"), "{err}");
    assert_eq!(engine(), before);
}
