//! The suite's own instruments, against real processes: the loss checker catches an
//! event that was really dropped, and the fan-out counts come from the services.

mod support;

use std::{sync::Arc, time::Duration};

use common::{
    config::Mode,
    events::{ORDER_PLACED, STREAM},
    proto::PlaceOrderRequest,
};
use lab::{
    seed::Seeded,
    suite::{Prepared, Scenario},
};
use support::{populate, req, settle};

/// An acknowledged order whose event is deleted from the stream before the query
/// service could read it: the checker must report it lost, and the view unconverged.
#[tokio::test]
async fn the_checker_detects_a_dropped_event() {
    let mut lab = support::start(Mode::Async).await;
    let (users, products) = populate(&lab, 2, 1).await;
    // (The checker gets 2 s to see the view converge; it never will.)
    settle(&lab, 3).await;
    let mut c = lab.clients.clone();
    let kept = c
        .orders
        .place_order(req(
            PlaceOrderRequest { user_id: users[0].clone(), product_id: products[0].clone(), quantity: 1 },
            Duration::from_secs(5),
        ))
        .await
        .unwrap()
        .into_inner();
    settle(&lab, 4).await;

    lab.topology.kill("query").unwrap();
    let dropped = c
        .orders
        .place_order(req(
            PlaceOrderRequest { user_id: users[1].clone(), product_id: products[0].clone(), quantity: 1 },
            Duration::from_secs(5),
        ))
        .await
        .unwrap()
        .into_inner();
    let js = async_nats::jetstream::new(async_nats::connect(lab.topology.nats_url().unwrap()).await.unwrap());
    let stream = js.get_stream(STREAM).await.unwrap();
    // Wait for the relay to publish it, then take it out of the stream.
    let seq = loop {
        match stream.get_last_raw_message_by_subject(ORDER_PLACED).await {
            Ok(m) if m.sequence >= 5 => break m.sequence,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert!(stream.delete_message(seq).await.unwrap());
    lab.topology.restart("query").await.unwrap();

    let support::Lab { topology, clients, dir: _dir } = lab;
    let seeded = Arc::new(Seeded { user_ids: users, product_ids: products, order_ids: Vec::new() });
    let prepared = Prepared { topology, clients, seeded };
    let acked = [kept.id.clone(), dropped.id.clone()];
    let (convergence, losses) = lab::suite::scenarios::check(
        &prepared,
        &prepared.seeded.user_ids,
        &acked,
        tokio::time::Instant::now(),
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(losses.acknowledged_orders, 2);
    assert_eq!(losses.lost, 1, "{losses:?}");
    assert_eq!((losses.duplicated, losses.phantom), (0, 0));
    assert!(!convergence.converged);
    assert_eq!(convergence.diff.missing, 1);
    assert!(convergence.diff.examples[0].contains(&dropped.id), "{:?}", convergence.diff.examples);
}

/// `lab bench --scenario fan-out` (all four modes by default): the inter-service calls
/// per request are what the code does (sync and bus-rpc UserOrders = 3 hops, PlaceOrder
/// = 2; async and the monolith none), counted by the services, and async publishes one
/// event per write.
#[test]
fn fan_out_is_counted_by_the_services() {
    let runs = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["bench", "--scenario", "fan-out", "--runs"])
        .arg(runs.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = std::fs::read_dir(runs.path()).unwrap().next().unwrap().unwrap().path();
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["version"], 1);
    let scenarios = results["scenarios"].as_array().unwrap();
    let fanout = |mode: &str| scenarios.iter().find(|s| s["mode"] == mode).unwrap()["fanout"].clone();
    let (sync, r#async) = (fanout("sync"), fanout("async"));
    // bus-rpc carries sync's call graph over the broker: the same calls, counted alike;
    // the monolith makes none.
    assert_eq!(fanout("bus-rpc")["rpcs_by_hop"], sync["rpcs_by_hop"]);
    for op in ["UserOrders", "PlaceOrder", "UpdatePrice"] {
        assert_eq!(fanout("monolith")["rpcs_per_request"][op], 0.0, "{op}");
    }
    assert_eq!(sync["rpcs_per_request"]["UserOrders"], 3.0);
    assert_eq!(sync["rpcs_per_request"]["PlaceOrder"], 2.0);
    assert_eq!(sync["rpcs_per_request"]["UpdatePrice"], 0.0);
    assert_eq!(sync["rpcs_by_hop"]["UserOrders"]["products.GetProducts"], 1.0);
    assert_eq!(sync["events_published_per_write"], 0.0);
    for op in ["UserOrders", "PlaceOrder", "UpdatePrice"] {
        assert_eq!(r#async["rpcs_per_request"][op], 0.0, "{op}");
    }
    assert_eq!(r#async["events_published_per_write"], 1.0);
    // PlaceOrder reaches query only; UpdatePrice reaches orders and query.
    assert_eq!(r#async["events_applied_per_write"], 1.5);
}

/// The truth is built by the lab from the owners' raw answers: for known data it gives
/// exactly the expected rows (every order, oldest first, its price at order time, the
/// product's current title and price), nothing for a user with no orders, and `None`
/// for a user the owners do not have.
#[tokio::test]
async fn the_truth_builder_gives_the_expected_rows() {
    use common::proto::{UpdatePriceRequest, UserOrderItem};
    let lab = support::start(Mode::Sync).await;
    let (users, products) = populate(&lab, 3, 2).await;
    let mut c = lab.clients.clone();
    let mut placed = Vec::new();
    for (user, product, quantity) in [(0, 0, 2), (0, 1, 1), (1, 1, 3)] {
        let message =
            PlaceOrderRequest { user_id: users[user].clone(), product_id: products[product].clone(), quantity };
        placed.push(c.orders.place_order(req(message, Duration::from_secs(5))).await.unwrap().into_inner());
    }
    let message = UpdatePriceRequest { id: products[1].clone(), price_cents: 999 };
    c.products.update_price(req(message, Duration::from_secs(5))).await.unwrap();

    let truth = support::truth(&lab);
    // `populate` names product i "Product i" at 100 + i cents.
    let row = |i: usize, product: usize, quantity: u32, current: i64| UserOrderItem {
        order_id: placed[i].id.clone(),
        product_id: products[product].clone(),
        title: format!("Product {product}"),
        unit_price_cents: 100 + product as i64,
        current_price_cents: current,
        quantity,
        placed_at_unix_ms: placed[i].placed_at_unix_ms,
    };
    let first = truth.user_orders(&users[0]).await.unwrap().expect("user 0 exists");
    assert_eq!(first.user.unwrap().name, "User 0");
    assert_eq!(first.items, vec![row(0, 0, 2, 100), row(1, 1, 1, 999)]);
    let second = truth.user_orders(&users[1]).await.unwrap().expect("user 1 exists");
    assert_eq!(second.items, vec![row(2, 1, 3, 999)]);
    assert!(truth.user_orders(&users[2]).await.unwrap().expect("user 2 exists").items.is_empty());
    assert_eq!(truth.user_orders("usr-00000000000000ff").await.unwrap(), None);
}

/// The steady scenario records the CPU of its saturation run alone: every service and
/// broker process (the broker is sampled), read right before and right after that run,
/// so less than the scenario's whole, which also ran an open-loop rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_records_the_cpu_of_the_saturation_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = small_ctx(dir.path());
    ctx.profile.steady_rates = vec![100.0];
    ctx.profile.steady_secs = 1.0;
    ctx.profile.sequential = 50;
    ctx.profile.saturation_clients = 8;
    let steady = lab::suite::scenarios::run(&ctx, Scenario::Steady, Mode::Async).await.expect("steady runs");
    let served = steady.loads["saturation"].all.ok;
    let cpu = steady.saturation_cpu_s.expect("the saturation run's CPU is recorded");
    assert!(served > 0, "the saturation run served requests");
    assert!(cpu > 0.0, "the services served {served} requests on no CPU");
    assert!(steady.resources.contains_key("nats"), "the broker is sampled: {:?}", steady.resources.keys());
    let whole: f64 = steady.resources.values().map(|u| u.cpu_s).sum();
    assert!(cpu < whole, "the saturation run alone ({cpu} s) is less than the scenario's whole ({whole} s)");
}

/// A small profile for scenario runs in tests.
fn small_ctx(dir: &std::path::Path) -> lab::suite::Ctx {
    let mut profile = lab::suite::Profile::quick(7);
    profile.seed = lab::seed::SeedConfig { users: 20, products: 10, orders: 40, seed: 7 };
    profile.fault_rate = 100.0;
    profile.chaos_secs = 5.0;
    lab::suite::Ctx::on_processes(profile, dir)
}

/// Chaos gives both modes one schedule: the same service victims at the same planned
/// times; the broker's kills come from their own stream, skipped in sync mode (no
/// broker) and carried out in async mode; every fault records the writes it met.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_modes_chaos_schedules_list_the_same_victims() {
    use lab::suite::scenarios::SKIPPED_NO_BROKER;
    let dir = tempfile::tempdir().unwrap();
    let ctx = small_ctx(dir.path());
    let sync = lab::suite::scenarios::run(&ctx, Scenario::Chaos, Mode::Sync).await.unwrap();
    let r#async = lab::suite::scenarios::run(&ctx, Scenario::Chaos, Mode::Async).await.unwrap();
    let services = |r: &lab::suite::ScenarioResult| {
        r.faults
            .iter()
            .filter(|f| !f.action.ends_with(common::names::NATS))
            .map(|f| (f.planned_ms, f.action.clone()))
            .collect::<Vec<_>>()
    };
    assert!(!services(&sync).is_empty(), "{:?}", sync.faults);
    assert_eq!(services(&sync), services(&r#async), "the same service victims at the same times");
    let broker = |r: &lab::suite::ScenarioResult| {
        r.faults
            .iter()
            .filter(|f| f.action.ends_with(common::names::NATS))
            .map(|f| f.result.clone())
            .collect::<Vec<_>>()
    };
    let (sb, ab) = (broker(&sync), broker(&r#async));
    assert_eq!(sb.len(), ab.len(), "the same broker steps in both modes");
    assert!(sb.iter().all(|r| r == SKIPPED_NO_BROKER), "{sb:?}");
    assert!(ab.iter().all(|r| r == "ok"), "{ab:?}");
    // Create-then-use runs through the faults in every mode: sync asks the owner, so a
    // user it acknowledged is never refused as unknown.
    for (mode, r) in [(Mode::Sync, &sync), (Mode::Async, &r#async)] {
        let c = r.create_then_use.as_ref().unwrap_or_else(|| panic!("{mode}: no create-then-use"));
        assert!(c.sequences > 1 && c.users_created > 0, "{mode}: {c:?}");
        if mode == Mode::Sync {
            assert_eq!(c.refused_first, 0, "{c:?}");
        }
    }
    // Every step carries when it was issued and when the call that carried it out
    // returned (a restart: once the process is ready again).
    for f in sync.faults.iter().chain(&r#async.faults) {
        assert!(f.effective_ms >= Some(f.t_ms), "{f:?}");
        assert!(f.planned_ms <= Some(f.t_ms), "issued before it was planned: {f:?}");
        // Every fault (not a repair) records the workload's writes in flight when it
        // took effect, so the "never lost" verdict can tell whether a kill met a write.
        assert_eq!(f.writes_in_flight.is_some(), f.fault.is_some(), "{f:?}");
    }
    assert!(r#async.faults.iter().any(|f| f.fault.is_some() && f.result == "ok"), "{:?}", r#async.faults);
    // Resources of real processes, some of them restarted: every component was sampled
    // during the load, and the lab process's own CPU is there beside theirs.
    for r in [&sync, &r#async] {
        assert!(!r.resources.is_empty());
        for (component, usage) in &r.resources {
            assert!(usage.load_peak_rss_kib.is_some_and(|kib| kib > 0), "{component}: {usage:?}");
            assert!(usage.load_peak_rss_kib <= Some(usage.peak_rss_kib), "{component}: within the lifetime peak");
        }
        assert!(r.generator_cpu_s.is_some_and(|cpu| cpu > 0.0), "{:?}", r.generator_cpu_s);
    }
}

/// A frozen (SIGSTOPped) service under open-loop load: the client gives up at its own
/// deadline, so no recorded latency outlives it, and the hung requests show in the
/// all-requests tail at about the deadline while the success-only tail stays fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_service_shows_in_the_all_requests_tail_at_the_deadline() {
    use bench::load::{open_loop, OpenLoop};
    use lab::workload::{Mix, Workload};

    let mut lab = support::start(Mode::Sync).await;
    let (users, products) = populate(&lab, 3, 3).await;
    let seeded = Arc::new(Seeded { user_ids: users, product_ids: products, order_ids: Vec::new() });
    // UserOrders goes to query, which is frozen; UpdatePrice goes to products alone.
    let mix = Mix { user_orders: 50, place_order: 0, update_price: 50 };
    let deadline = Duration::from_millis(300);
    let mut workload = Workload::new(lab.clients.clone(), seeded, mix, deadline, 7);
    lab.topology.pause("query").unwrap();
    // Thaw query long after the load, so a client that does not give up by itself
    // gets its (late) answer then instead of hanging the test.
    let load =
        tokio::spawn(open_loop(OpenLoop::new(50.0, Duration::from_secs(1)), move |_| workload.next_request(), None));
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.topology.resume("query").unwrap();
    let report = load.await.unwrap();

    let reads = &report.ops["UserOrders"];
    assert_eq!(reads.ok, 0, "query was frozen: {:?}", reads.outcomes);
    assert!(reads.outcomes["DEADLINE_EXCEEDED"] > 0, "{:?}", reads.outcomes);
    // No request's recorded latency exceeds the deadline plus a margin for the
    // generator's own send lag and the timer.
    let margin = Duration::from_millis(150);
    let recorded_max = report.all.max_us.max(report.all.failed_max_us);
    assert!(recorded_max <= (deadline + margin).as_micros() as u64, "a request was recorded at {recorded_max} µs");
    // Half the requests hung until the deadline: the all-requests p99 sits there…
    let all = report.all.all_requests.as_ref().expect("all-requests figures");
    assert_eq!(all.count, report.all.attempted, "every request is timed");
    let near = (deadline.as_micros() as u64)..=(deadline + margin).as_micros() as u64;
    assert!(near.contains(&all.p99_us), "all-requests p99 {} µs, deadline {deadline:?}", all.p99_us);
    // …while the successes (UpdatePrice, which needs products alone) never waited for it.
    assert!(report.all.ok > 0, "{:?}", report.all.outcomes);
    assert!(report.all.p99_us < near.start() / 2, "success-only p99 {} µs", report.all.p99_us);
}

/// Create a user, then at once order for them: sync never refuses the first order (it
/// asks the user's owner); async may ("not yet": orders has not heard of the user),
/// and a client that retries gets every order accepted. Both record the figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_use_is_refused_only_while_async_has_not_heard_of_the_user() {
    const N: usize = 50;
    for mode in [Mode::Sync, Mode::Async] {
        let lab = support::start(mode).await;
        let (_, products) = populate(&lab, 0, 3).await;
        // Orders' replica knows the products: only the new users can be "not yet".
        settle(&lab, 3).await;
        let seeded = Seeded { user_ids: Vec::new(), product_ids: products, order_ids: Vec::new() };
        let c = lab::latency::create_then_use(&lab.clients, &seeded, N, Duration::ZERO, 5).await.unwrap();
        assert_eq!((c.sequences, c.users_created, c.accepted), (N, N, N), "{mode}: {c:?}");
        assert_eq!(c.until_accepted.ok, N as u64, "{mode}: every acceptance is timed: {c:?}");
        let share = c.refused_share();
        match mode {
            Mode::Sync | Mode::BusRpc | Mode::Monolith => {
                assert_eq!((c.refused_first, c.retries), (0, 0), "{mode} asks the owner: {c:?}")
            }
            Mode::Async => assert!((0.0..=1.0).contains(&share), "async: {share}"),
        }
        eprintln!("{mode}: refused first {share:.2}, until accepted p50 {} µs", c.until_accepted.p50_us);
    }
}

/// The storage scenario reports logical bytes (keys + values per sled tree) beside
/// file sizes: the owners hold data, the sync query service holds none, and the async
/// query service's copy grows with the orders it applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_reports_logical_bytes_per_component() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = small_ctx(dir.path());
    let storage = Scenario::Storage;
    ctx.profile.storage_seed = lab::seed::SeedConfig { users: 10, products: 5, orders: 10, seed: 7 };
    let sync = lab::suite::scenarios::run(&ctx, storage, Mode::Sync).await.expect("sync storage runs");
    let few = lab::suite::scenarios::run(&ctx, storage, Mode::Async).await.expect("async storage runs");
    ctx.dir = dir.path().join("more");
    ctx.profile.storage_seed.orders = 60;
    let more = lab::suite::scenarios::run(&ctx, storage, Mode::Async).await.expect("async storage runs again");

    let totals = |s: &lab::suite::ScenarioResult| s.logical_totals().expect("logical bytes measured");
    for result in [&sync, &few, &more] {
        let totals = totals(result);
        for owner in ["users", "products", "orders"] {
            assert!(totals[owner] > 0, "{owner} holds data: {totals:?}");
        }
        assert!(result.storage.as_ref().expect("bytes on disk measured")["users"] > 0);
    }
    assert_eq!(totals(&sync).get("query").copied().unwrap_or(0), 0, "the sync query service stores nothing");
    let (few_query, more_query) = (totals(&few)["query"], totals(&more)["query"]);
    assert!(few_query > 0, "the async query service keeps a copy");
    assert!(more_query > few_query, "6× the orders, yet the query copy went from {few_query} to {more_query} bytes");

    // The report of a run whose storage scenario is this one labels both figures.
    let mut results: lab::suite::Results =
        serde_json::from_str(include_str!("fixtures/results.json")).expect("the fixture loads");
    results.scenarios.retain(|s| s.scenario != storage);
    results.scenarios.extend([sync, few]);
    let markdown = lab::report::render(&results).markdown;
    assert!(markdown.contains("| logical bytes (keys + values in sled trees) |"), "{markdown}");
    assert!(markdown.contains("| bytes on disk (file sizes) |"), "{markdown}");
    assert!(markdown.contains("logical bytes (keys + values in the services' sled trees"), "{markdown}");
}

/// A repair that a slow step pushed past the end of the load (seen under Compose: a
/// restart waiting for readiness delayed the next kill, and its restart came after the
/// load) is still carried out: a fault is never left in place, and the scenario does
/// not fail for it. A fault that had not started by then is listed as not applied.
#[tokio::test]
async fn a_repair_planned_past_the_end_of_the_load_is_still_carried_out() {
    use common::names::{PRODUCTS, USERS};
    use lab::{
        control::Action,
        suite::{
            scenarios::{Step, NOT_APPLIED, OK},
            FaultKind,
        },
    };
    let (mut prepared, workload, _dir) = sync_topology_under_load().await;
    let ms = Duration::from_millis;
    let steps = vec![
        Step { at: ms(100), action: Action::Kill, target: USERS, starts: Some(FaultKind::Kill) },
        Step { at: ms(1500), action: Action::Restart, target: USERS, starts: None },
        Step { at: ms(1600), action: Action::Kill, target: PRODUCTS, starts: Some(FaultKind::Kill) },
        Step { at: ms(1700), action: Action::Restart, target: PRODUCTS, starts: None },
    ];
    let (report, events) = run_steps(&mut prepared, workload, ms(500), steps).await;
    assert!(report.duration_ms < 1500, "the load ends before the repair: {} ms", report.duration_ms);
    let results: Vec<(&str, &str)> = events.iter().map(|e| (e.action.as_str(), e.result.as_str())).collect();
    assert_eq!(
        results,
        [("kill users", OK), ("restart users", OK), ("kill products", NOT_APPLIED), ("restart products", NOT_APPLIED)]
    );
    assert!(events[1].effective_ms.unwrap() >= 1500, "the repair waits for its planned time: {:?}", events[1]);
    lab::client::wait_serving(prepared.topology.address(USERS).unwrap(), Duration::from_secs(5))
        .await
        .expect("users was restarted");
}

/// A step that takes longer than planned (a restart waits until its service serves)
/// delays the later steps and the load's end by as much: the next fault keeps its
/// planned length instead of being cut short, and the load still runs its planned tail
/// after the last step.
#[tokio::test]
async fn a_slow_step_delays_the_rest_of_the_schedule_and_the_load() {
    use common::names::{PRODUCTS, USERS};
    use lab::{
        control::Action,
        suite::{
            scenarios::{Step, OK},
            FaultKind,
        },
    };
    let (mut prepared, workload, _dir) = sync_topology_under_load().await;
    let ms = Duration::from_millis;
    // The restart of users takes at least its process's start-up, far more than 1 ms.
    let steps = vec![
        Step { at: ms(100), action: Action::Restart, target: USERS, starts: Some(FaultKind::Restart) },
        Step { at: ms(101), action: Action::Kill, target: PRODUCTS, starts: Some(FaultKind::Kill) },
        Step { at: ms(301), action: Action::Restart, target: PRODUCTS, starts: None },
    ];
    // The load is planned to end 50 ms after the restart begins, long before any
    // restart is done: it must wait for the restart, not end under it.
    let (report, events) = run_steps(&mut prepared, workload, ms(150), steps).await;
    assert!(events.iter().all(|e| e.result == OK), "{events:?}");
    let (restart_users, kill, restart) = (&events[0], &events[1], &events[2]);
    // Usually tens of ms or more (a process's start-up): what the later steps wait for.
    let late = restart_users.effective_ms.unwrap().saturating_sub(101);
    assert!(
        restart.t_ms - kill.effective_ms.unwrap() >= 195,
        "products stays down for its planned 200 ms: {kill:?} then {restart:?}"
    );
    assert!(report.duration_ms + 5 >= 150 + late, "the load is extended by the delay: {} ms", report.duration_ms);
}

/// The floor measures the lab's own client beside an independent one: with h2load
/// installed, its figures are there, positive, for the same request counts as the
/// lab's client; without it, the floor says so instead of leaving a blank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_puts_an_independent_client_beside_the_labs() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = small_ctx(dir.path());
    let floor = lab::suite::scenarios::floor(&ctx).await.unwrap();
    assert!(floor.grpc_echo.ok > 0 && floor.echo_64_in_flight_per_s > 0.0, "{:?}", floor.grpc_echo);
    // Replication's price beside the single server's: the same counts on a three-node
    // cluster with the floor's stream R3.
    let replicated = floor.replicated.as_ref().unwrap_or_else(|| panic!("{:?}", floor.replicated_missing));
    assert_eq!((replicated.nodes, replicated.replicas), (3, 3));
    for (one, three) in
        [(&floor.js_publish_ack, &replicated.js_publish_ack), (&floor.js_delivery, &replicated.js_delivery)]
    {
        assert_eq!(three.ok, one.ok, "as many as on one server");
        assert!(three.ok == ctx.profile.sequential as u64 && three.p50_us > 0, "{three:?}");
    }
    assert!(floor.replication_comparison().contains("R3 p50"), "{}", floor.replication_comparison());
    let installed = std::process::Command::new(lab::suite::floor::PEER).arg("--version").output().is_ok();
    if !installed {
        assert_eq!(floor.peer, None);
        assert!(floor.peer_missing.as_deref().is_some_and(|r| r.contains("not installed")), "{:?}", floor.peer_missing);
        assert!(floor.peer_comparison().contains("not installed"));
        return;
    }
    let peer = floor.peer.as_ref().unwrap_or_else(|| panic!("h2load is installed: {:?}", floor.peer_missing));
    assert_eq!(floor.peer_missing, None);
    assert_eq!(peer.sequential.requests, ctx.profile.sequential as u64, "as many as the lab's sequential echo");
    assert_eq!(peer.sequential.succeeded, peer.sequential.requests);
    assert_eq!(peer.in_flight_64.succeeded, peer.in_flight_64.requests);
    assert!(peer.in_flight_64.requests > 0);
    for run in [&peer.sequential, &peer.in_flight_64] {
        assert!(run.req_per_s > 0.0 && run.min_us > 0.0 && run.mean_us >= run.min_us, "{run:?}");
    }
    assert!(floor.peer_comparison().contains("h2load"), "{}", floor.peer_comparison());
}

/// A sync topology with two users and a product, and a workload over them (a 500 ms
/// deadline), for running fault steps by hand.
async fn sync_topology_under_load() -> (Prepared, lab::workload::Workload, support::RunDir) {
    let lab = support::start(Mode::Sync).await;
    let (users, products) = populate(&lab, 2, 1).await;
    let support::Lab { topology, clients, dir } = lab;
    let seeded = Arc::new(Seeded { user_ids: users, product_ids: products, order_ids: Vec::new() });
    let prepared = Prepared { topology, clients, seeded };
    let workload = lab::workload::Workload::new(
        prepared.clients.clone(),
        prepared.seeded.clone(),
        lab::workload::Mix::default(),
        Duration::from_millis(500),
        1,
    );
    (prepared, workload, dir)
}

/// `steps` applied during an open loop of 50 requests/s for `length`.
async fn run_steps(
    prepared: &mut Prepared,
    workload: lab::workload::Workload,
    length: Duration,
    steps: Vec<lab::suite::scenarios::Step>,
) -> (bench::load::LoadReport, Vec<lab::suite::FaultEvent>) {
    let mut sampler = lab::suite::resources::Sampler::new();
    let config = bench::load::OpenLoop::new(50.0, length);
    lab::suite::scenarios::load_during(prepared, workload, config, steps, &mut sampler, None, &mut |_| {}).await
}

/// Chaos in the monolith kills the monolith: each service fault of the one schedule is
/// carried out on the process that serves that service, at the same planned time, and
/// no acknowledged order is lost across those kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_in_the_monolith_kills_the_monolith_at_the_same_times() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = small_ctx(dir.path());
    let monolith = lab::suite::scenarios::run(&ctx, Scenario::Chaos, Mode::Monolith).await.unwrap();
    let (steps, _) = lab::suite::schedule::schedule(
        ctx.profile.seed.seed,
        &lab::suite::scenarios::CHAOS,
        lab::suite::schedule::Until::Before(Duration::from_secs_f64(ctx.profile.chaos_secs)),
    );
    let planned: Vec<u64> =
        steps.iter().filter(|s| s.target != common::names::NATS).map(|s| s.at.as_millis() as u64).collect();
    let done: Vec<(u64, &str, &str)> = (monolith.faults.iter())
        .filter(|f| !f.action.ends_with(common::names::NATS))
        .map(|f| (f.planned_ms.unwrap(), f.action.as_str(), f.result.as_str()))
        .collect();
    assert!(!planned.is_empty());
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), planned, "the same planned times: {done:?}");
    for (_, action, result) in &done {
        assert!(action.ends_with("monolith") && *result == "ok", "{action}: {result}");
    }
    let note = monolith.note.as_deref().unwrap_or_default();
    assert!(!note.starts_with(lab::suite::scenarios::DOES_NOT_APPLY), "the faults applied: {note}");
    let losses = monolith.losses.expect("the checker ran");
    assert!(losses.acknowledged_orders > 0, "{losses:?}");
    assert!(losses.is_clean(), "{losses:?}");
    let served = monolith.loads["run"].all.availability();
    assert!(served < 1.0, "every request succeeded ({served}) though the one process was killed");
}
