//! The compose target on this machine's Docker engine: the image built by the offline
//! path (FROM scratch, nothing pulled), the topology in containers in each mode, a
//! kill-dependency and a partition scenario through `lab --target compose`, a
//! three-node JetStream cluster in containers losing its stream leader, then a
//! follower (`--brokers 3`), the same invariants as the process target, and everything
//! torn down even when it fails.

mod support;

use std::process::{Command, Output};

use common::config::Mode;

use lab::{
    report::verdicts::{availability_between, fault_windows},
    suite::{Results, Scenario},
    topology::{RunsAs, TopologyFile},
};

const LAB: &str = env!("CARGO_BIN_EXE_lab");

fn lab(args: &[&str], prefix: &str) -> Output {
    Command::new(LAB).args(args).env("CASCADE_COMPOSE_PREFIX", prefix).output().expect("lab runs")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes every container, network and volume whose name starts with the prefix,
/// and the image: on success and on failure alike.
struct Cleanup {
    prefix: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("name={}", self.prefix);
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
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kill_partition_and_a_broker_node_under_compose_keep_the_invariants() {
    // The trailing "x" keeps this run's prefix from matching another run's names.
    let prefix = format!("cascadetest{}x", std::process::id());
    let image = format!("cascade:test-{}", std::process::id());
    let _cleanup = Cleanup { prefix: prefix.clone(), image: image.clone() };

    let built = lab(&["image", "--offline", "--tag", &image], &prefix);
    assert!(built.status.success(), "image build: {}", stderr(&built));

    let runs = tempfile::tempdir().unwrap();
    let runs_arg = runs.path().to_str().unwrap();
    let args = [
        "bench",
        "--target",
        "compose",
        "--image",
        &image,
        "--scenario",
        "kill-dependency",
        "--scenario",
        "partition",
        // The policies' variants are the process tests' (policies.rs); here, one per mode.
        "--policies",
        "naive",
        "--runs",
        runs_arg,
    ];
    let out = lab(&args, &prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    for kind in [&["ps", "-aq"][..], &["network", "ls", "-q"][..], &["volume", "ls", "-q"][..]] {
        let mut args = kind.to_vec();
        let filter = format!("name={prefix}");
        args.extend(["--filter", &filter]);
        assert!(docker(&args).trim().is_empty(), "{kind:?} left behind");
    }

    let dir = std::fs::read_dir(runs.path()).unwrap().next().unwrap().unwrap().path();
    let results: Results = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.environment.target, "compose");
    assert!(dir.join("report.html").is_file());
    // Each container is recorded as one: its id and its volume's host folder, no log
    // file (there is none: `docker logs` has its output).
    let file = TopologyFile::read(&dir.join("kill-dependency-async")).expect("the topology was recorded");
    assert_eq!((file.target.as_str(), file.services.len()), ("compose", 5));
    for s in &file.services {
        match &s.runs_as {
            RunsAs::Container { container } => assert!(!container.is_empty(), "{s:?}"),
            other => panic!("a container recorded as {other:?}"),
        }
        assert!(s.data_dir.is_absolute() && s.data_dir.ends_with("_data"), "{s:?}");
    }
    for scenario in [Scenario::KillDependency, Scenario::Partition] {
        let find = |mode: Mode| results.scenario(scenario, mode).expect("scenario ran");
        let window = |mode: Mode| {
            let s = find(mode);
            let (from, to, what) = fault_windows(s).into_iter().next().expect("a fault window");
            (availability_between(s, from, to).expect("requests in the window"), what)
        };
        let (sync, what) = window(Mode::Sync);
        let (r#async, _) = window(Mode::Async);
        let (bus, _) = window(Mode::BusRpc);
        assert!(sync <= 0.5, "{scenario}: sync served {sync} while {what}: it should lose availability");
        assert!(bus <= 0.5, "{scenario}: bus-rpc served {bus} while {what}: it should lose availability, like sync");
        // The monolith has no users container to kill or cut off: said, not measured.
        let note = find(Mode::Monolith).note.as_deref().unwrap_or_default();
        assert!(note.starts_with("does not apply: monolith mode has no users process"), "{scenario}: {note}");
        assert!(r#async >= 0.95, "{scenario}: async served {async} while {what}: it should keep serving");
        let a = find(Mode::Async);
        let losses = a.losses.as_ref().unwrap();
        assert_eq!((losses.lost, losses.duplicated, losses.phantom), (0, 0, 0), "{scenario}: {losses:?}");
        assert!(a.convergence.as_ref().unwrap().converged, "{scenario}: async converged");
        assert!(a.staleness.as_ref().unwrap().never_visible == 0);
    }

    // The broker as a three-node cluster of containers, the stream R3: its leader
    // container, then a follower, `docker kill`ed and started again under load.
    let runs = tempfile::tempdir().unwrap();
    let runs_arg = runs.path().to_str().unwrap();
    let args = [
        "bench",
        "--target",
        "compose",
        "--image",
        &image,
        "--brokers",
        "3",
        "--modes",
        "async,bus-rpc",
        "--scenario",
        "kill-broker-node",
        "--policies",
        "naive",
        "--runs",
        runs_arg,
    ];
    let out = lab(&args, &prefix);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = support::kill_broker_node_results(runs.path());
    let bus = results.scenario(Scenario::KillBrokerNode, Mode::BusRpc).expect("bus-rpc ran");
    assert!(bus.faults.iter().all(|f| f.result == "ok") && bus.faults.iter().any(|f| f.action.contains("meta leader")));
    for kind in [&["ps", "-aq"][..], &["network", "ls", "-q"][..], &["volume", "ls", "-q"][..]] {
        let mut args = kind.to_vec();
        let filter = format!("name={prefix}");
        args.extend(["--filter", &filter]);
        assert!(docker(&args).trim().is_empty(), "{kind:?} left behind by the cluster's run");
    }
}

#[test]
fn the_compose_target_says_what_is_missing() {
    let prefix = format!("cascadeerr{}x", std::process::id());
    let run_dir = tempfile::tempdir().unwrap();
    let out = Command::new(LAB)
        .args(["up", "--target", "compose", "--run-dir"])
        .arg(run_dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("CASCADE_COMPOSE_PREFIX", &prefix)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no Docker engine"), "{}", stderr(&out));

    let out =
        lab(&["bench", "--target", "compose", "--image", "cascade:never-built", "--scenario", "partition"], &prefix);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cascade:never-built is not built") && err.contains("lab image"), "{err}");
}
