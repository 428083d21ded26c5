//! Several instances of a service (`--replicas`): real query replicas and owner shards
//! beside a real nats-server, real SIGKILLs. Every query replica serves `UserOrders`
//! itself; in async mode each keeps its view from a durable consumer of its own, so a
//! replica killed and restarted catches up alone; the lab's client keeps serving while
//! one replica is dead. Owner shards each hold the entities whose ids name them, every
//! caller routing by id, so with one shard dead the other's entities are still served.
//! The CLI refuses what it cannot run; kill-replica runs end to end in a short profile.

mod support;

use std::time::Duration;

use common::{
    config::Mode,
    names::{QUERY, QUERY_REPLICAS},
    proto::{
        admin_client::AdminClient, query_client::QueryClient, users_client::UsersClient, GetUserRequest,
        PlaceOrderRequest, StatsRequest, UserOrdersRequest,
    },
};
use lab::{
    control::Action,
    suite::{replicas::VICTIMS, Scenario},
    topology::TopologyError,
};

/// The query replica kill-replica kills.
const VICTIM: &str = VICTIMS[3];
use support::{populate, req, Lab};

async fn replicated(mode: Mode, replicas: usize) -> Lab {
    support::start_with(mode, |c| c.replicas = replicas).await
}

/// A client of one replica alone.
fn replica(lab: &Lab, name: &str) -> QueryClient<tonic::transport::Channel> {
    QueryClient::new(common::channel(lab.topology.address(name).expect("a replica")))
}

/// `UserOrders` of `user` from one replica: its order ids, or the error's code.
async fn orders_of(lab: &Lab, name: &str, user: &str) -> Result<Vec<String>, tonic::Code> {
    let answer = replica(lab, name)
        .user_orders(req(UserOrdersRequest { user_id: user.to_owned() }, Duration::from_secs(5)))
        .await
        .map_err(|s| s.code())?;
    Ok(answer.into_inner().items.into_iter().map(|i| i.order_id).collect())
}

async fn place(lab: &Lab, user: &str, product: &str) -> String {
    let message = PlaceOrderRequest { user_id: user.to_owned(), product_id: product.to_owned(), quantity: 1 };
    let mut orders = lab.clients.orders.clone();
    orders.place_order(req(message, Duration::from_secs(5))).await.expect("order placed").into_inner().id
}

/// Calls `UserOrders`-making inter-service RPCs one replica has sent (sync mode).
async fn rpcs_sent(lab: &Lab, name: &str) -> u64 {
    let mut admin = AdminClient::new(common::channel(lab.topology.address(name).unwrap()));
    admin.stats(StatsRequest {}).await.unwrap().into_inner().rpcs_sent.values().sum()
}

/// In sync and bus-rpc mode (where the query service keeps nothing), two replicas named
/// query-1 and query-2, each with its own data dir, both answer `UserOrders` directly
/// with the same rows; `query` alone names both (a fault on it hits each), and asking
/// for its one address is refused, naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_query_replicas_both_serve() {
    for mode in [Mode::Sync, Mode::BusRpc] {
        let mut lab = replicated(mode, 2).await;
        let names: Vec<&str> = lab.topology.query_instances().map(|q| q.name).collect();
        assert_eq!(names, QUERY_REPLICAS[..2], "{mode}");
        let dirs: Vec<_> = lab.topology.query_instances().map(|q| q.data_dir.clone()).collect();
        assert_ne!(dirs[0], dirs[1], "{mode}: a data dir each");
        let file = lab.topology.file();
        assert_eq!(file.addresses(QUERY).unwrap().len(), 2, "{mode}");
        match lab.topology.address(QUERY) {
            Err(e @ TopologyError::Replicated { .. }) => assert!(e.to_string().contains("query-1, query-2"), "{e}"),
            other => panic!("{mode}: expected the replicas named, got {other:?}"),
        }

        let (users, products) = populate(&lab, 1, 1).await;
        let order = place(&lab, &users[0], &products[0]).await;
        for name in &names {
            assert_eq!(
                orders_of(&lab, name, &users[0]).await,
                Ok(vec![order.clone()]),
                "{mode}: {name} answers itself"
            );
        }

        // `query` names both: killed, neither answers; restarted, both do.
        lab.topology.kill(QUERY).unwrap();
        for name in &names {
            assert_eq!(orders_of(&lab, name, &users[0]).await, Err(tonic::Code::Unavailable), "{mode}: {name}");
        }
        lab.topology.restart(QUERY).await.unwrap();
        for name in &names {
            assert_eq!(orders_of(&lab, name, &users[0]).await, Ok(vec![order.clone()]), "{mode}: {name} is back");
        }
    }
}

/// In async mode each replica's view is fed by a durable consumer of its own: with
/// query-2 SIGKILLed, orders placed meanwhile reach query-1's view while query-2's
/// consumer holds them pending; restarted on its data dir, query-2 catches up from its
/// own consumer and its view equals query-1's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_async_replica_keeps_its_own_view_and_catches_up_after_a_kill() {
    let mut lab = replicated(Mode::Async, 2).await;
    assert_eq!(lab.topology.consumers(), ["orders", "query-1", "query-2"]);
    let (users, products) = populate(&lab, 2, 2).await;
    let mut placed = vec![place(&lab, &users[0], &products[0]).await];
    let url = lab.topology.events_url().unwrap();
    let consumers = lab.topology.consumers();
    lab::convergence::wait_settled_for(&url, 5, &consumers, Duration::from_secs(30)).await.expect("settles");
    for name in ["query-1", "query-2"] {
        assert_eq!(orders_of(&lab, name, &users[0]).await, Ok(placed.clone()), "{name}");
    }

    lab::control::apply(&mut lab.topology, &Action::Kill, "query-2").await.unwrap();
    for i in 0..5 {
        placed.push(place(&lab, &users[0], &products[i % 2]).await);
    }
    // query-1 has them all; query-2's consumer keeps them for it.
    lab::convergence::wait_settled_for(&url, 10, &consumers[..2], Duration::from_secs(30)).await.expect("query-1");
    assert_eq!(orders_of(&lab, "query-1", &users[0]).await, Ok(placed.clone()));
    assert_eq!(orders_of(&lab, "query-2", &users[0]).await, Err(tonic::Code::Unavailable));
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let stream = js.get_stream(common::events::STREAM).await.unwrap();
    let pending = |name: &'static str| {
        let stream = stream.clone();
        async move {
            let mut c: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer(name).await.unwrap();
            let info = c.info().await.unwrap();
            info.num_pending + info.num_ack_pending as u64
        }
    };
    assert_eq!(pending("query-1").await, 0);
    assert_eq!(pending("query-2").await, 5, "the five orders wait for query-2 in its own consumer");
    // (Pending here counts both: not delivered yet, or delivered and not acknowledged.)

    lab::control::apply(&mut lab.topology, &Action::Restart, "query-2").await.unwrap();
    let start = std::time::Instant::now();
    loop {
        if orders_of(&lab, "query-2", &users[0]).await == Ok(placed.clone()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "query-2 did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab::convergence::wait_settled_for(&url, 10, &consumers, Duration::from_secs(30)).await.expect("both settled");
    // Each view, read from its replica alone, equals the truth.
    let truth = support::truth(&lab);
    for (i, view) in lab.clients.query_instances().into_iter().enumerate() {
        let diff = lab::convergence::compare_view(view, &truth, &users).await.unwrap();
        assert!(diff.is_clean(), "query-{}: {diff:?}", i + 1);
    }
}

/// The lab's client balances `UserOrders` over both replicas (each sends calls to the
/// owners, sync mode) and keeps serving when one is SIGKILLed: requests in flight on it
/// may fail while the balancer notices, then every request succeeds (moved to the
/// other replica while the dead one cannot be reached); once restarted, the replica
/// gets requests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_client_keeps_serving_when_a_replica_is_sigkilled() {
    let mut lab = replicated(Mode::Sync, 2).await;
    let (users, products) = populate(&lab, 3, 2).await;
    place(&lab, &users[0], &products[0]).await;
    let read = |lab: &Lab, n: usize| {
        let (query, user) = (lab.clients.query.clone(), users[0].clone());
        async move {
            let mut failed = 0;
            for _ in 0..n {
                let message = UserOrdersRequest { user_id: user.clone() };
                let mut query = query.clone();
                if bench::call(Duration::from_secs(2), message, |r| query.user_orders(r)).await.is_err() {
                    failed += 1;
                }
            }
            failed
        }
    };
    assert_eq!(read(&lab, 20).await, 0);
    let (one, two) = (rpcs_sent(&lab, "query-1").await, rpcs_sent(&lab, "query-2").await);
    assert!(one > 0 && two > 0, "both replicas got requests: {one} and {two} calls to the owners");

    // Reads keep going, 8 at a time, while query-2 is killed under them.
    let load = {
        let reads: Vec<_> = (0..8).map(|_| tokio::spawn(read(&lab, 60))).collect();
        async move { futures::future::join_all(reads).await.into_iter().map(Result::unwrap).sum::<usize>() }
    };
    let kill = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        lab.topology.kill(VICTIM).unwrap();
    };
    let (during, ()) = tokio::join!(load, kill);
    let counts = lab.clients.query_balancer().counts();
    assert!(counts.marked_down > 0, "the dead replica was marked down: {counts:?} ({during} reads failed)");
    // Noticed: from here on every request succeeds, the dead replica skipped or its
    // requests moved to the live one, also once its mark has run out and it is tried
    // again (refused: moved).
    tokio::time::sleep(lab::client::DOWN_FOR).await;
    let moved = lab.clients.query_balancer().counts().moved;
    assert_eq!(read(&lab, 100).await, 0, "after the kill: {:?}", lab.clients.query_balancer().counts());
    let now = lab.clients.query_balancer().counts();
    assert!(now.moved >= moved + 40, "query-2's turns went to query-1: {now:?}");

    lab.topology.restart(VICTIM).await.unwrap();
    tokio::time::sleep(lab::client::DOWN_FOR).await;
    assert_eq!(read(&lab, 40).await, 0);
    assert!(rpcs_sent(&lab, VICTIM).await > 0, "the restarted replica is back in rotation");
}

/// Counts past 5, an owner alone (owners shard together), an unknown service and
/// replicas on the compose target are refused, each saying what to give; `query=N` and
/// `owners=N` are taken.
#[test]
fn bad_replica_counts_an_owner_alone_or_compose_are_refused() {
    let lab = |args: &[&str]| {
        let run = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab")).args(args).arg(run.path()).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for owner in ["users", "products", "orders"] {
        let (ok, stderr) = lab(&["up", "--replicas", &format!("{owner}=2"), "--run-dir"]);
        assert!(!ok);
        let said = format!("{owner} is sharded with the other owners: give owners=N");
        assert!(stderr.contains(&said), "{stderr}");
    }
    let (ok, stderr) = lab(&["bench", "--replicas", "users=2", "--runs"]);
    assert!(!ok && stderr.contains("users is sharded with the other owners"), "{stderr}");
    for bad in ["6", "0", "query=9", "owners=0", "two"] {
        let (ok, stderr) = lab(&["up", "--replicas", bad, "--run-dir"]);
        assert!(!ok && stderr.contains("a service runs as 1 to 5 instances"), "{bad}: {stderr}");
    }
    let (ok, stderr) = lab(&["up", "--replicas", "nope=2", "--run-dir"]);
    assert!(!ok && stderr.contains("no service \"nope\" to replicate"), "{stderr}");
    for replicas in ["query=2", "owners=2", "2"] {
        let (ok, stderr) = lab(&["up", "--replicas", replicas, "--target", "compose", "--run-dir"]);
        assert!(!ok && stderr.contains("needs the process target"), "{replicas}: {stderr}");
    }
}

/// `GetUser` of `user` through the lab's client (routed to its shard): the user's id,
/// or the error's code.
async fn get_user(lab: &Lab, user: &str) -> Result<String, tonic::Code> {
    let mut users = lab.clients.users.clone();
    let answer = users.get_user(req(GetUserRequest { id: user.to_owned() }, Duration::from_secs(2))).await;
    answer.map(|u| u.into_inner().id).map_err(|s| s.code())
}

/// Owners as two shards, in every mode with services: the lab's creates land on both
/// (each id naming its shard), every request is routed by id (through orders and
/// query too, over gRPC or the bus), and `UserOrders` answers users of both shards. A
/// shard asked for another's entity says where it is. With `users-2` SIGKILLed, sync
/// and bus-rpc still serve shard 1's users and fail shard 2's (only shard 2 holds
/// them), while new users are created on shard 1; async's query and orders keep
/// serving both from their own copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_owners_serve_by_id_and_a_dead_shard_takes_only_its_own() {
    for mode in [Mode::Sync, Mode::BusRpc, Mode::Async] {
        let mut lab = support::start_with(mode, |c| c.shards = 2).await;
        let names: Vec<&str> = lab.topology.service_processes().map(|c| c.name).collect();
        assert_eq!(names[..6], ["users-1", "users-2", "products-1", "products-2", "orders-1", "orders-2"], "{mode}");
        if mode == Mode::Async {
            assert_eq!(lab.topology.consumers(), ["orders-1", "orders-2", "query"]);
        }
        let (users, products) = populate(&lab, 4, 4).await;
        let shard = |id: &str| common::ids::Shard::of_id(id).unwrap();
        assert_eq!(users.iter().map(|u| shard(u)).collect::<Vec<_>>(), [0, 1, 0, 1], "{mode}: {users:?}");
        assert_eq!(products.iter().map(|p| shard(p)).collect::<Vec<_>>(), [0, 1, 0, 1], "{mode}: {products:?}");
        // Every user orders a product of the other shard and one of its own.
        let mut placed = vec![Vec::new(); users.len()];
        for (i, user) in users.iter().enumerate() {
            for product in [&products[(i + 1) % 4], &products[i]] {
                // Async: the order's shard must first hear of a just-created user and product.
                let start = std::time::Instant::now();
                let order = loop {
                    let message = PlaceOrderRequest { user_id: user.clone(), product_id: product.clone(), quantity: 1 };
                    let mut orders = lab.clients.orders.clone();
                    match bench::call(Duration::from_secs(10), message, |r| orders.place_order(r)).await {
                        Ok(order) => break order.id,
                        Err(status) if mode == Mode::Async && start.elapsed() < Duration::from_secs(10) => {
                            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("{mode}: {status:?}"),
                    }
                };
                placed[i].push(order);
                assert_eq!(shard(placed[i].last().unwrap()), shard(user), "{mode}: an order lives with its user");
            }
        }
        if let Some(url) = lab.topology.events_url() {
            let consumers = lab.topology.consumers();
            lab::convergence::wait_settled_for(&url, 16, &consumers, Duration::from_secs(30)).await.expect("settles");
        }
        for (i, user) in users.iter().enumerate() {
            assert_eq!(orders_of(&lab, QUERY, user).await, Ok(placed[i].clone()), "{mode}: {user}");
        }

        // An id naming a shard that does not run is nobody's: NOT_FOUND, not a dependency
        // down (bus-rpc's callers are told the count: the bus has no address list).
        let ghost = "usr-4000000000000001";
        assert_eq!(orders_of(&lab, QUERY, ghost).await, Err(tonic::Code::NotFound), "{mode}");

        // Asked straight for another shard's user, a shard says where it is.
        let mut first = UsersClient::new(common::channel(lab.topology.address("users-1").unwrap()));
        let wrong = first.get_user(req(GetUserRequest { id: users[1].clone() }, Duration::from_secs(2))).await;
        let status = wrong.expect_err("users-1 does not hold a users-2 user");
        assert_eq!(status.code(), tonic::Code::NotFound, "{mode}");
        assert!(status.message().contains("is held by shard 2 of users, not by this one (users-1)"), "{status:?}");

        lab.topology.kill("users-2").unwrap();
        for (i, user) in users.iter().enumerate() {
            let expect_served = mode == Mode::Async || shard(user) == 0;
            let answer = orders_of(&lab, QUERY, user).await;
            assert_eq!(answer.is_ok(), expect_served, "{mode}: {user} with users-2 dead: {answer:?}");
            let direct = get_user(&lab, user).await;
            assert_eq!(direct.is_ok(), shard(user) == 0, "{mode}: GetUser {user} with users-2 dead: {direct:?}");
            if i == 0 {
                assert_eq!(direct, Ok(user.clone()));
            }
        }
        // New users go on being created, on the live shard.
        let (more, _) = populate(&lab, 3, 0).await;
        assert!(more.iter().all(|u| shard(u) == 0), "{mode}: {more:?}");
        lab.topology.restart("users-2").await.unwrap();
        assert_eq!(get_user(&lab, &users[1]).await, Ok(users[1].clone()), "{mode}: users-2 is back with its data");
        // `users` names both shards.
        match lab.topology.address("users") {
            Err(e @ TopologyError::Replicated { .. }) => assert!(e.to_string().contains("users-1, users-2"), "{e}"),
            other => panic!("{mode}: expected the shards named, got {other:?}"),
        }
    }
}

/// kill-replica in a short profile: two instances of every service whatever the
/// context says, users-2, products-2, orders-2 and query-2 killed and restarted in
/// turn. While query-2 was down the clients were kept served; in async, while any was,
/// but for the writes naming a dead shard's entity (its reads never ask an owner); in
/// sync a dead shard took its own entities' requests and only those. Nothing acknowledged lost, each replica's view equal to the truth in
/// async; the monolith has no replica to kill (no run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_replica_runs_in_a_short_profile() {
    let dir = support::RunDir::new();
    let mut profile = lab::suite::Profile::quick(7);
    profile.seed = lab::seed::SeedConfig { users: 10, products: 5, orders: 20, seed: 7 };
    profile.fault_rate = 100.0;
    profile.stretch = 0.5;
    let ctx = lab::suite::Ctx::on_processes(profile, dir.path());
    assert_eq!(ctx.replicas, 1);
    for mode in [Mode::Async, Mode::Sync] {
        let result = lab::suite::scenarios::run(&ctx, Scenario::KillReplica, mode).await.unwrap();
        let actions: Vec<String> = result.faults.iter().map(|f| format!("{} {}", f.action, f.result)).collect();
        let expected: Vec<String> =
            VICTIMS.iter().flat_map(|v| [format!("kill {v} ok"), format!("restart {v} ok")]).collect();
        assert_eq!(actions, expected, "{mode}");
        let replicas = result.replicas.as_ref().expect("the replicas are recorded");
        assert_eq!((replicas.replicas, replicas.shards), (2, 2), "{mode}: {replicas:?}");
        let killed: Vec<&str> = replicas.kills.iter().map(|k| k.instance.as_str()).collect();
        assert_eq!(killed, VICTIMS, "{mode}: {replicas:?}");
        assert!(replicas.kills.iter().all(|k| k.failed_after_restart == 0), "{mode}: {replicas:?}");
        // Orders are placed straight on their user's shard: those for orders-2 failed.
        assert!(replicas.kills[2].failed_while_down > 0, "{mode}: {replicas:?}");
        let windows = lab::report::verdicts::fault_windows(&result);
        let what: Vec<&str> = windows.iter().map(|w| w.2.as_str()).collect();
        assert_eq!(what, VICTIMS.map(|v| format!("{v} killed")), "{mode}");
        let served: Vec<f64> = (windows.iter())
            .map(|(from, to, _)| lab::report::verdicts::availability_between(&result, *from, *to).unwrap())
            .collect();
        assert!(served[3] > 0.9, "{mode}: {served:?} served; one of two query replicas down: {replicas:?}");
        if mode == Mode::Async {
            // Reads never ask an owner; only writes naming a dead shard's entity fail
            // (a price of products-2's, an order of orders-2's users), and new users
            // are created on users-1.
            assert!(served[0] > 0.9 && served.iter().all(|&s| s > 0.75), "{mode}: {served:?}");
        } else {
            // With users-2 dead, its users' reads and orders fail, the others' pass.
            assert!(served[0] > 0.25 && served[0] < 0.9, "{mode}: {served:?}");
        }
        let losses = result.losses.as_ref().unwrap();
        assert!(losses.is_clean() && losses.acknowledged_orders > 0, "{mode}: {losses:?}");
        match mode {
            Mode::Async => {
                assert!(result.convergence.as_ref().is_some_and(|c| c.converged), "{:?}", result.convergence)
            }
            _ => assert!(result.convergence.is_none()),
        }
        // Each instance ran as a process of its own.
        for name in VICTIMS.iter().flat_map(|v| [v.replace("-2", "-1"), v.to_string()]) {
            assert!(result.resources.contains_key(&name), "{mode}: {name}");
        }
    }
    let monolith = lab::suite::scenarios::run(&ctx, Scenario::KillReplica, Mode::Monolith).await.unwrap();
    assert!(monolith.note.as_deref().is_some_and(|n| n.starts_with("does not apply: monolith")), "{monolith:?}");
    assert!(monolith.faults.is_empty() && monolith.loads.is_empty(), "no run where nothing applies");
}

/// The report's kill-replica section: what the balancers did, per mode and per instance
/// killed, and the share served while one of two replicas was down beside kill-query's
/// (one instance) from the same results; the Method says which scenario ran replicas
/// and shards. (A recorded quick run, its kill-query copied as a kill-replica whose
/// every request was served.)
#[test]
fn the_report_sets_kill_replica_beside_kill_query() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
    let mut r: lab::suite::Results = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut added = Vec::new();
    for single in r.scenarios.iter().filter(|s| s.scenario == Scenario::KillQuery) {
        let mut replica = single.clone();
        replica.scenario = Scenario::KillReplica;
        for f in &mut replica.faults {
            f.action = f.action.replace("query", VICTIM);
        }
        for bucket in &mut replica.loads.get_mut("run").unwrap().timeline {
            bucket.ok += bucket.errors.values().sum::<u64>();
            bucket.errors.clear();
        }
        let kill = lab::suite::replicas::ReplicaKill {
            instance: VICTIM.into(),
            failed_while_down: 3,
            errors_for_ms: Some(4),
            moved_while_down: 120,
            failed_after_restart: 0,
        };
        replica.replicas =
            Some(lab::suite::replicas::ReplicaRun { replicas: 2, shards: 2, kills: vec![kill], ..Default::default() });
        added.push(replica);
    }
    assert_eq!(added.len(), 2, "the fixture has kill-query in sync and async");
    r.scenarios.extend(added);
    let md = lab::report::render(&r).markdown;
    let section = md.split("### kill-replica").nth(1).expect("a kill-replica section");
    let instances =
        "| query replicas; shards of each owner; the instances killed alone, in turn | 2; 2; query-2 | 2; 2; query-2 |";
    assert!(section.contains(instances), "{section}");
    assert!(
        section.contains("| query-2 3 (last at 4 ms) | query-2 3 (last at 4 ms) |"),
        "failed while down: {section}"
    );
    assert!(section.contains("| query-2 120 | query-2 120 |"), "moved: {section}");
    assert!(section.contains("sync: 100.0% while query-2 killed (one of two replicas) against"), "{section}");
    assert!(section.contains("while query killed (every instance of it)"), "{section}");
    assert!(md.contains("but in kill-replica, which ran two replicas"), "the Method names it");
    assert!(md.contains("but in kill-replica, which ran each as two shards"), "the Method names the shards");
}
