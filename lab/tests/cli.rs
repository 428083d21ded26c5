//! The `lab` binary as a user runs it: `up` starts and stops the whole topology and
//! leaves no process behind (also when the lab itself is SIGKILLed); `seed` and
//! `latency` work against it; mistakes get errors that say what to do.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use lab::topology::{RunsAs, TopologyFile, TOPOLOGY_FILE};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn lab_up(run_dir: &Path, extra: &[&str]) -> Child {
    Command::new(LAB)
        .args(["up", "--run-dir"])
        .arg(run_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lab starts")
}

/// Waits for `lab up` to write its topology with `processes` processes.
fn wait_topology(run_dir: &Path, lab: &mut Child, processes: usize) -> TopologyFile {
    let start = Instant::now();
    loop {
        if let Ok(file) = TopologyFile::read(run_dir) {
            if file.lab_pid == lab.id() && file.services.len() == processes {
                return file;
            }
        }
        assert!(lab.try_wait().unwrap().is_none(), "lab up exited early");
        assert!(start.elapsed() < Duration::from_secs(30), "no topology.json after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if the process is gone (or a zombie nobody has reaped yet: dead either way).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_dead(pids: &[u32]) {
    let start = Instant::now();
    while !pids.iter().all(|&p| dead(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still alive: {:?}",
            pids.iter().filter(|&&p| !dead(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(LAB).args(args).output().expect("lab runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn up_seed_latency_then_sigterm_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut lab = lab_up(&run_dir, &[]);
    let file = wait_topology(&run_dir, &mut lab, 4);
    let mut pids: Vec<u32> = file.services.iter().map(|s| s.pid).collect();
    assert!(pids.iter().all(|&p| !dead(p)));
    let names: Vec<&str> = file.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["users", "products", "orders", "query"]);
    for s in &file.services {
        assert!(s.address.ip().is_loopback());
        assert!(s.data_dir.starts_with(&run_dir), "{:?}", s.data_dir);
        match &s.runs_as {
            RunsAs::Process { log } => assert!(log.starts_with(&run_dir) && log.is_file(), "{log:?}"),
            other => panic!("a process recorded as {other:?}"),
        }
    }

    let run_dir_arg = run_dir.to_str().unwrap();
    let seeded = run(&["seed", "--run-dir", run_dir_arg, "--users", "5", "--products", "3", "--orders", "12"]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    let seed: lab::seed::Seeded = serde_json::from_slice(&std::fs::read(run_dir.join("seed.json")).unwrap()).unwrap();
    assert_eq!((seed.user_ids.len(), seed.product_ids.len(), seed.order_ids.len()), (5, 3, 12));
    let measured = run(&["latency", "--run-dir", run_dir_arg, "--requests", "20"]);
    assert!(measured.status.success(), "{}", stderr(&measured));
    let table = String::from_utf8_lossy(&measured.stdout);
    assert!(table.contains("UserOrders") && table.contains("{\"OK\": 20}"), "{table}");

    // Faults through the control socket: a partition needs containers; a kill and a
    // restart are carried out, and the restarted process is recorded.
    let partition = run(&["partition", "users", "--run-dir", run_dir_arg]);
    assert!(!partition.status.success());
    assert!(stderr(&partition).contains("needs the compose target"), "{}", stderr(&partition));
    let unknown = run(&["kill", "billing", "--run-dir", run_dir_arg]);
    assert!(stderr(&unknown).contains("no component named \"billing\""), "{}", stderr(&unknown));
    let killed = run(&["kill", "products", "--run-dir", run_dir_arg]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    wait_dead(&[pids[1]]);
    let restarted = run(&["restart", "products", "--run-dir", run_dir_arg]);
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    let products = TopologyFile::read(&run_dir).unwrap().services.remove(1);
    assert!(products.pid != pids[1] && !dead(products.pid), "products after restart: {products:?}");
    pids[1] = products.pid;

    // A second lab on the same run dir is refused.
    let second = run(&["up", "--run-dir", run_dir_arg]);
    assert!(!second.status.success());
    assert!(stderr(&second).contains("already running"), "{}", stderr(&second));

    // A service started by hand on a data dir in use says so.
    let users_data = &file.services[0].data_dir;
    let bin = lab::topology::default_bin_dir().join("users");
    let out = Command::new(bin).arg("--data-dir").arg(users_data).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("locked by another process"), "{}", stderr(&out));

    kill(Pid::from_raw(lab.id() as i32), Signal::SIGTERM).unwrap();
    let status = lab.wait().unwrap();
    assert!(status.success(), "lab up exited with {status}");
    wait_dead(&pids);
}

#[test]
fn a_monolith_is_one_process_that_serves_every_service_and_a_fault_on_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut lab = lab_up(&run_dir, &["--mode", "monolith"]);
    let file = wait_topology(&run_dir, &mut lab, 5);
    let names: Vec<&str> = file.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["monolith", "users", "products", "orders", "query"]);
    let monolith = &file.services[0];
    assert!(!dead(monolith.pid) && monolith.served_by.is_none());
    for s in &file.services[1..] {
        assert_eq!((s.address, s.pid, s.served_by.as_deref()), (monolith.address, monolith.pid, Some("monolith")));
    }
    let run_dir_arg = run_dir.to_str().unwrap();
    let seeded = run(&["seed", "--run-dir", run_dir_arg, "--users", "3", "--products", "2", "--orders", "5"]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    let refused = run(&["kill", "users", "--run-dir", run_dir_arg]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("monolith mode has no separate users process"), "{}", stderr(&refused));
    assert!(!dead(monolith.pid), "nothing was killed");
    let killed = run(&["kill", "monolith", "--run-dir", run_dir_arg]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    wait_dead(&[monolith.pid]);
    let restarted = run(&["restart", "monolith", "--run-dir", run_dir_arg]);
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    let pid = TopologyFile::read(&run_dir).unwrap().services[0].pid;
    assert!(pid != monolith.pid && !dead(pid));
    let measured = run(&["latency", "--run-dir", run_dir_arg, "--requests", "10"]);
    assert!(measured.status.success(), "{}", stderr(&measured));

    kill(Pid::from_raw(lab.id() as i32), Signal::SIGTERM).unwrap();
    assert!(lab.wait().unwrap().success());
    wait_dead(&[pid]);
}

#[test]
fn async_topology_including_the_broker_dies_with_a_sigkilled_lab() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut lab = lab_up(&run_dir, &["--mode", "async"]);
    let file = wait_topology(&run_dir, &mut lab, 5);
    assert_eq!(file.services[0].name, "nats");
    assert_eq!(file.nats_url.as_deref(), Some(format!("nats://{}", file.services[0].address).as_str()));
    let pids: Vec<u32> = file.services.iter().map(|s| s.pid).collect();
    // A paused process too: SIGTERM could not reach it, SIGKILL does.
    kill(Pid::from_raw(pids[2] as i32), Signal::SIGSTOP).unwrap();
    lab.kill().unwrap();
    lab.wait().unwrap();
    wait_dead(&pids);
}

#[test]
fn up_passes_its_policy_to_every_service_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut lab = lab_up(&run_dir, &["--mode", "sync", "--policy", "retry-storm"]);
    let file = wait_topology(&run_dir, &mut lab, 4);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for service in &file.services {
        let stats = runtime.block_on(async {
            let mut admin = common::proto::admin_client::AdminClient::new(common::channel(service.address));
            admin.stats(common::proto::StatsRequest {}).await
        });
        assert_eq!(stats.unwrap().into_inner().policy, "retry-storm", "{}", service.name);
    }
    lab.kill().unwrap();
    lab.wait().unwrap();
    wait_dead(&file.services.iter().map(|s| s.pid).collect::<Vec<_>>());

    let out = run(&["up", "--run-dir", dir.path().join("b").to_str().unwrap(), "--policy", "careful"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("careful") && err.contains("hardened") && err.contains("retry-storm"), "{err}");
}

#[test]
fn clear_errors_for_missing_binaries_busy_ports_and_no_topology() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(LAB)
        .args(["up", "--run-dir"])
        .arg(dir.path().join("a"))
        .env("CASCADE_BIN_DIR", empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found") && stderr(&out).contains("cargo build"), "{}", stderr(&out));

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = run(&["up", "--run-dir", dir.path().join("b").to_str().unwrap(), "--base-port", &port]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("users exited during start-up") && err.contains("in use"), "{err}");

    let out = run(&["seed", "--run-dir", dir.path().join("nothing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is `lab up` running"), "{}", stderr(&out));
    assert!(!dir.path().join("b").join(TOPOLOGY_FILE).exists());
}

#[test]
fn a_blip_load_share_that_is_not_a_share_is_refused_with_what_to_give() {
    for bad in ["0", "-0.5", "3", "half", "NaN"] {
        let share = format!("--blip-load-share={bad}");
        let out = run(&["bench", "--scenario", "overload-blip", &share]);
        assert!(!out.status.success(), "{bad}");
        let err = stderr(&out);
        assert!(err.contains("--blip-load-share") && err.contains("such as 0.5"), "{bad}: {err}");
    }
}
