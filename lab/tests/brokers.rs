//! A replicated broker (`--brokers 3`): three real nats-servers in one JetStream
//! cluster on loopback, real services, real SIGKILLs. The cluster forms with the event
//! stream and its durable consumers on every node; a SIGKILL of the stream's leader
//! loses no acknowledged write; the cluster scenarios run end to end in a short
//! profile; and `--brokers` refuses what it cannot do.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    config::Mode,
    events::{ORDERS_CONSUMER, QUERY_CONSUMER, STREAM},
    names::NATS_NODES,
    proto::PlaceOrderRequest,
};
use lab::{
    seed::Seeded,
    suite::{cluster::LEADER, Prepared, Scenario},
};
use support::{populate, req, settle, Lab};
use tokio_util::sync::CancellationToken;

async fn cluster(mode: Mode) -> Lab {
    support::start_with(mode, |c| c.brokers = 3).await
}

/// Three nodes named nats-1…3, each with a configuration of its own; a JetStream meta
/// leader among them; the event stream R3 with its leader and both other replicas
/// current, and both durable consumers replicated with it; every node's URL in the
/// topology file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_forms_with_the_stream_and_its_consumers_on_every_node() {
    let lab = cluster(Mode::Async).await;
    let topology = &lab.topology;
    let nodes: Vec<&str> = topology.brokers().map(|b| b.name).collect();
    assert_eq!(nodes, NATS_NODES);
    assert!(topology.is_cluster());
    for node in NATS_NODES {
        let conf = std::fs::read_to_string(lab.dir.path().join("run").join(node).join("nats.conf")).unwrap();
        assert!(conf.contains(&format!("server_name: \"{node}\"")), "{conf}");
        assert_eq!(conf.matches("nats-route://").count(), 2, "routes to the two others: {conf}");
    }
    let leader = topology.meta_leader().await.expect("a meta leader");
    assert!(NATS_NODES.contains(&leader.as_str()), "{leader}");

    let placement = topology.stream_placement().await.unwrap();
    assert_eq!(placement.replicas, 3, "{}", placement.describe());
    assert!(placement.is_whole(), "{}", placement.describe());
    let mut holders: Vec<String> = placement.followers.iter().map(|r| r.name.clone()).collect();
    holders.extend(placement.leader.clone());
    holders.sort();
    assert_eq!(holders, NATS_NODES, "a replica on every node");

    let url = topology.nats_url().unwrap();
    assert_eq!(url.split(',').count(), 3, "{url}");
    assert_eq!(lab.topology.file().nats_url.as_deref(), Some(url.as_str()));
    let js = async_nats::jetstream::new(async_nats::connect(common::broker::servers(&url)).await.unwrap());
    let stream = js.get_stream(STREAM).await.unwrap();
    for name in [ORDERS_CONSUMER, QUERY_CONSUMER] {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer(name).await.unwrap();
        let info = consumer.info().await.unwrap();
        let cluster = info.cluster.as_ref().expect("a clustered consumer");
        assert!(cluster.leader.is_some(), "{name}: {cluster:?}");
        assert_eq!(cluster.replicas.len(), 2, "{name} is kept by the stream's three nodes: {cluster:?}");
    }
}

/// Acknowledged orders placed before, during and after the SIGKILL of the node that
/// leads the R3 stream (then restarted on its ports and store) are all in the query
/// view, each once; the stream gets another leader meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_stream_loses_nothing_when_its_leader_node_is_sigkilled() {
    let mut lab = cluster(Mode::Async).await;
    let (users, products) = populate(&lab, 4, 2).await;
    settle(&lab, 6).await;

    // One writer placing orders one after another, each acknowledged one recorded with
    // the phase it was acknowledged in.
    let phase = Arc::new(Mutex::new("before"));
    let acked: Arc<Mutex<Vec<(&'static str, String)>>> = Arc::default();
    let stop = CancellationToken::new();
    let writer = {
        let (mut clients, phase, acked, stop) = (lab.clients.clone(), phase.clone(), acked.clone(), stop.clone());
        let (users, products) = (users.clone(), products.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.is_cancelled() {
                let message = PlaceOrderRequest {
                    user_id: users[i % users.len()].clone(),
                    product_id: products[i % products.len()].clone(),
                    quantity: 1,
                };
                let placed = clients.orders.place_order(req(message, Duration::from_secs(2))).await;
                if let Ok(order) = placed {
                    let now = *phase.lock().unwrap();
                    acked.lock().unwrap().push((now, order.into_inner().id));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let count = |p: &str| acked.lock().unwrap().iter().filter(|(x, _)| *x == p).count();
    let wait_for = |p: &'static str, n: usize| {
        let count = &count;
        async move {
            for _ in 0..500 {
                if count(p) >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("fewer than {n} orders acknowledged {p} the kill");
        }
    };
    wait_for("before", 10).await;

    let leader = lab.topology.stream_placement().await.unwrap().leader.expect("the stream has a leader");
    *phase.lock().unwrap() = "during";
    lab.topology.kill(&leader).unwrap();
    wait_for("during", 10).await;
    // Another node leads the stream while the old leader is down.
    let mut new_leader = None;
    for _ in 0..200 {
        if let Ok(p) = lab.topology.stream_placement().await {
            if p.leader.as_ref().is_some_and(|l| *l != leader) {
                new_leader = p.leader;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_leader = new_leader.unwrap_or_else(|| panic!("no other node took over the stream from {leader}"));
    assert_ne!(new_leader, leader);

    lab.topology.restart(&leader).await.unwrap();
    // Back on its own client and monitoring ports (from its configuration file), in its
    // meta group again.
    let node = lab.topology.service(&leader).unwrap();
    tokio::net::TcpStream::connect(node.address).await.expect("the restarted node listens on its old client port");
    let view = lab::topology::cluster::meta_view(node.monitor.unwrap()).await.expect("its old monitoring port answers");
    assert_eq!(view.cluster_size, 3, "{view:?}");
    *phase.lock().unwrap() = "after";
    wait_for("after", 10).await;
    stop.cancel();
    writer.await.unwrap();
    // Back to whole: the restarted node is a current replica again.
    lab.topology.recover().await.expect("the cluster is whole again");
    assert!(lab.topology.stream_placement().await.unwrap().is_whole());

    let acked: Vec<String> = acked.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();
    let support::Lab { topology, clients, dir: _dir } = lab;
    let seeded = Arc::new(Seeded { user_ids: users, product_ids: products, order_ids: Vec::new() });
    let prepared = Prepared { topology, clients, seeded };
    let (convergence, losses) = lab::suite::scenarios::check(
        &prepared,
        &prepared.seeded.user_ids,
        &acked,
        tokio::time::Instant::now(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(convergence.converged, "{:?}", convergence.diff);
    assert_eq!(losses.acknowledged_orders, acked.len());
    assert!(losses.is_clean(), "{losses:?}");
}

/// A short profile for the cluster scenarios.
fn short_ctx(dir: &std::path::Path) -> lab::suite::Ctx {
    let mut profile = lab::suite::Profile::quick(7);
    profile.seed = lab::seed::SeedConfig { users: 10, products: 5, orders: 20, seed: 7 };
    profile.fault_rate = 100.0;
    profile.stretch = 0.5;
    lab::suite::Ctx::on_processes(profile, dir)
}

/// kill-broker-node and lose-broker-quorum, end to end in a short profile (on the
/// cluster of their own though the context says one broker): every fault carried out on
/// the node the cluster named right before, nothing acknowledged lost, the view
/// converged, the stream whole again after; during the lost quorum writes waited in the
/// outboxes; in bus-rpc the meta leader is the leader; sync has no broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scenarios_run_in_a_short_profile() {
    let dir = support::RunDir::new();
    let ctx = short_ctx(dir.path());
    assert_eq!(ctx.brokers, 1);
    let node = |action: &str| action.split_whitespace().nth(1).unwrap_or_default().to_owned();

    let killed = lab::suite::scenarios::run(&ctx, Scenario::KillBrokerNode, Mode::Async).await.unwrap();
    let kills: Vec<&lab::suite::FaultEvent> = killed.faults.iter().filter(|f| f.action.starts_with("kill")).collect();
    assert_eq!(kills.len(), 2, "{:?}", killed.faults);
    assert!(killed.faults.iter().all(|f| f.result == "ok"), "{:?}", killed.faults);
    assert!(kills[0].action.contains("the stream's leader"), "{}", kills[0].action);
    assert!(kills[1].action.contains("a follower"), "{}", kills[1].action);
    assert_ne!(node(&kills[0].action), node(&kills[1].action), "leader and follower are two nodes");
    // Each kill is repaired on the node it hit.
    for kill in &kills {
        let restart = format!("restart {}", node(&kill.action));
        assert!(killed.faults.iter().any(|f| f.action == restart), "{restart}: {:?}", killed.faults);
    }
    let cluster = killed.cluster.as_ref().expect("the cluster is recorded");
    assert_eq!(cluster.nodes, 3);
    assert!(cluster.before.as_ref().is_some_and(|p| p.is_whole()), "{cluster:?}");
    assert!(cluster.after.as_ref().is_some_and(|p| p.is_whole() && p.replicas == 3), "{cluster:?}");
    assert_eq!(cluster.before.as_ref().unwrap().leader.as_deref(), Some(node(&kills[0].action).as_str()));
    let losses = killed.losses.as_ref().unwrap();
    assert!(losses.is_clean() && losses.acknowledged_orders > 0, "{losses:?}");
    assert!(killed.convergence.as_ref().is_some_and(|c| c.converged), "{:?}", killed.convergence);

    let quorum = lab::suite::scenarios::run(&ctx, Scenario::LoseBrokerQuorum, Mode::Async).await.unwrap();
    let kills: Vec<String> =
        quorum.faults.iter().filter(|f| f.action.starts_with("kill")).map(|f| node(&f.action)).collect();
    assert_eq!(kills.len(), 2, "{:?}", quorum.faults);
    assert_ne!(kills[0], kills[1], "two nodes down at once");
    assert!(quorum.faults.iter().all(|f| f.result == "ok"), "{:?}", quorum.faults);
    let cluster = quorum.cluster.as_ref().unwrap();
    assert!(cluster.outbox_peak.is_some_and(|n| n > 0), "writes waited in the outboxes: {cluster:?}");
    assert!(cluster.after.as_ref().is_some_and(|p| p.is_whole()), "{cluster:?}");
    let losses = quorum.losses.as_ref().unwrap();
    assert!(losses.is_clean() && losses.acknowledged_orders > 0, "{losses:?}");
    assert!(quorum.convergence.as_ref().is_some_and(|c| c.converged), "{:?}", quorum.convergence);

    let bus = lab::suite::scenarios::run(&ctx, Scenario::KillBrokerNode, Mode::BusRpc).await.unwrap();
    assert!(bus.faults.iter().all(|f| f.result == "ok"), "{:?}", bus.faults);
    assert!(bus.faults.iter().any(|f| f.action.contains("meta leader")), "{:?}", bus.faults);
    assert_eq!(bus.losses.as_ref().map(|l| l.lost), Some(0));

    let sync = lab::suite::scenarios::run(&ctx, Scenario::KillBrokerNode, Mode::Sync).await.unwrap();
    assert!(sync.note.as_deref().is_some_and(|n| n.starts_with("does not apply: sync mode has no broker")), "{sync:?}");
    assert!(sync.faults.is_empty() && sync.loads.is_empty(), "no run where nothing applies");
    assert!(!LEADER.starts_with("nats"), "a role is no component name");
}

/// `--brokers` takes 1 or 3, the refusal saying what to give.
#[test]
fn brokers_other_than_one_or_three_are_refused() {
    let lab = |args: &[&str]| {
        let run = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(args)
            .arg("--run-dir")
            .arg(run.path())
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = lab(&["up", "--mode", "async", "--brokers", "2"]);
    assert!(!ok);
    assert!(stderr.contains("--brokers 1 or --brokers 3"), "{stderr}");
    let runs = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["bench", "--brokers", "5", "--runs"])
        .arg(runs.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--brokers 1 or --brokers 3"), "{stderr}");
}
