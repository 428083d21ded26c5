//! The policies (`--policy naive|hardened|retry-storm`) on real processes, over gRPC
//! and over the bus: retry-storm's attempts counted by the caller, hardened's partial
//! answer when products is gone (naive's error beside it), its circuit breaker counted
//! in `Admin.Stats`, and its load shedding. The pure logic (budget, backoff, breaker
//! states) is unit-tested in `common::resilience`.

mod support;

use std::time::Duration;

use common::{
    config::{Mode, Policy},
    names::{PRODUCTS, QUERY},
    proto::{
        admin_client::AdminClient, CreateProductRequest, CreateUserRequest, PlaceOrderRequest, Product, StatsRequest,
        StatsResponse, User, UserOrdersRequest,
    },
};
use support::{assert_status, req, Lab};
use tonic::Code;

const T: Duration = Duration::from_secs(5);
const REQUEST_REPLY: [Mode; 2] = [Mode::Sync, Mode::BusRpc];

/// One user, one product, one order.
async fn fixture(lab: &Lab) -> (User, Product) {
    let mut c = lab.clients.clone();
    let user = CreateUserRequest { name: "Ada".into(), email: "ada@example.test".into() };
    let user = c.users.create_user(req(user, T)).await.unwrap().into_inner();
    let product = CreateProductRequest { title: "Lamp".into(), price_cents: 1999 };
    let product = c.products.create_product(req(product, T)).await.unwrap().into_inner();
    let order = PlaceOrderRequest { user_id: user.id.clone(), product_id: product.id.clone(), quantity: 2 };
    c.orders.place_order(req(order, T)).await.unwrap();
    (user, product)
}

async fn start(mode: Mode, policy: Policy) -> Lab {
    support::start_with(mode, |c| c.policy = policy).await
}

async fn stats(lab: &Lab, service: &str) -> StatsResponse {
    let mut admin = AdminClient::new(common::channel(lab.topology.address(service).unwrap()));
    admin.stats(req(StatsRequest {}, T)).await.unwrap().into_inner()
}

fn count(map: &std::collections::HashMap<String, u64>, key: &str) -> u64 {
    map.get(key).copied().unwrap_or(0)
}

const GET_PRODUCTS: &str = "products.GetProducts";

/// With products killed, one `UserOrders` (it must fail `UNAVAILABLE`, naming products):
/// query's Stats right before and right after it.
async fn one_read_with_products_dead(mode: Mode, policy: Policy) -> (StatsResponse, StatsResponse) {
    let mut lab = start(mode, policy).await;
    let (user, _) = fixture(&lab).await;
    lab.topology.kill(PRODUCTS).unwrap();
    let before = stats(&lab, QUERY).await;
    let mut query = lab.clients.query.clone();
    let read = query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await;
    assert_status(read, Code::Unavailable, "products");
    (before, stats(&lab, QUERY).await)
}

#[tokio::test]
async fn retry_storm_sends_four_attempts_per_call_to_a_dead_dependency_within_the_deadline() {
    for mode in REQUEST_REPLY {
        let (before, after) = one_read_with_products_dead(mode, Policy::RetryStorm).await;
        assert_eq!(after.policy, "retry-storm", "{mode}");
        let sent = count(&after.rpcs_sent, GET_PRODUCTS) - count(&before.rpcs_sent, GET_PRODUCTS);
        let retries = count(&after.retries_sent, GET_PRODUCTS) - count(&before.retries_sent, GET_PRODUCTS);
        assert_eq!((sent, retries), (4, 3), "{mode}: one call and 3 retries of {GET_PRODUCTS}: {after:?}");
    }
}

#[tokio::test]
async fn naive_sends_one_attempt_and_fails_unavailable_without_products() {
    for mode in REQUEST_REPLY {
        let (before, after) = one_read_with_products_dead(mode, Policy::Naive).await;
        assert_eq!(count(&after.rpcs_sent, GET_PRODUCTS) - count(&before.rpcs_sent, GET_PRODUCTS), 1, "{mode}");
        assert!(after.retries_sent.is_empty() && after.breaker_rejections.is_empty(), "{mode}: {after:?}");
        assert_eq!(after.policy, "naive");
    }
}

#[tokio::test]
async fn hardened_query_answers_partial_without_products_then_its_breaker_opens() {
    for mode in REQUEST_REPLY {
        let mut lab = start(mode, Policy::Hardened).await;
        let (user, product) = fixture(&lab).await;
        let mut query = lab.clients.query.clone();
        let full = query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await.unwrap();
        let full = full.into_inner();
        assert!(!full.partial && full.partial_reason.is_empty(), "{mode}: {full:?}");
        assert_eq!(full.items[0].current_price_cents, 1999);

        lab.topology.kill(PRODUCTS).unwrap();
        let mut reasons = Vec::new();
        for _ in 0..10 {
            let answer = query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await;
            let answer =
                answer.unwrap_or_else(|status| panic!("{mode}: hardened failed instead of degrading: {status}"));
            let answer = answer.into_inner();
            assert!(answer.partial, "{mode}: {answer:?}");
            assert_eq!(answer.user.as_ref().map(|u| u.id.as_str()), Some(user.id.as_str()));
            let rows: Vec<_> = answer
                .items
                .iter()
                .map(|i| {
                    (i.product_id.as_str(), i.title.as_str(), i.unit_price_cents, i.current_price_cents, i.quantity)
                })
                .collect();
            assert_eq!(rows, [(product.id.as_str(), "", 1999, 0, 2)], "{mode}: the order, without product details");
            reasons.push(answer.partial_reason);
        }
        assert!(reasons[0].contains("products"), "{mode}: {reasons:?}");
        // Consecutive failures open the breaker: later answers come without a call.
        assert!(reasons.last().unwrap().contains("circuit open for products"), "{mode}: {reasons:?}");
        let stats = stats(&lab, QUERY).await;
        assert_eq!(stats.policy, "hardened");
        assert!(count(&stats.breaker_rejections, PRODUCTS) > 0, "{mode}: {stats:?}");
        assert!(count(&stats.retries_sent, GET_PRODUCTS) > 0, "{mode}: UNAVAILABLE is retried: {stats:?}");

        // Products back: after the cool-down a probe closes the breaker and answers are full again.
        lab.topology.restart(PRODUCTS).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let answer = query.user_orders(req(UserOrdersRequest { user_id: user.id.clone() }, T)).await;
            let answer = answer.unwrap().into_inner();
            if !answer.partial {
                assert_eq!(answer.items[0].current_price_cents, 1999);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{mode}: still partial: {}", answer.partial_reason);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_hardened_service_at_its_limit_sheds_the_excess_with_resource_exhausted_instead_of_queueing() {
    for mode in REQUEST_REPLY {
        let mut lab = support::start_with(mode, |c| {
            c.policy = Policy::Hardened;
            c.proxied = vec![PRODUCTS.into()];
            c.env = vec![(QUERY.into(), "CASCADE_MAX_IN_FLIGHT".into(), "1".into())];
        })
        .await;
        let (user, _) = fixture(&lab).await;
        let slow = lab::proxy::Faults { latency: Duration::from_millis(400), ..Default::default() };
        lab.topology.set_faults(PRODUCTS, slow).unwrap();
        let (mut first, mut second) = (lab.clients.query.clone(), lab.clients.query.clone());
        let ask = || req(UserOrdersRequest { user_id: user.id.clone() }, T);
        let (a, b) = tokio::join!(first.user_orders(ask()), second.user_orders(ask()));
        let mut codes =
            [a.map(|_| Code::Ok).unwrap_or_else(|s| s.code()), b.map(|_| Code::Ok).unwrap_or_else(|s| s.code())];
        codes.sort_by_key(|c| *c as i32);
        assert_eq!(codes, [Code::Ok, Code::ResourceExhausted], "{mode}: one served, one shed (not queued)");
        assert_eq!(stats(&lab, QUERY).await.requests_shed, 1, "{mode}");
        lab.topology.set_faults(PRODUCTS, lab::proxy::Faults::default()).unwrap();
        // Under the limit again: served.
        lab.clients.query.clone().user_orders(ask()).await.unwrap();
    }
}

/// `lab bench --scenario overload-blip --modes sync --policies naive,retry-storm`, with
/// a tiny profile: both variants run on topologies of their own, the results record
/// each one's policy, and during the blip retry-storm's services send more calls per
/// client request than naive's (counts from `Admin.Stats`, not speeds). The blip here
/// resets products' connections: every call to it fails at once, and retry-storm
/// retries each such failure, so the counts do not hang on how loaded the machine is
/// (a slowdown makes errors, and so retries, only where the load and the added
/// latency push calls past their deadlines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_blip_counts_retry_storms_amplification_per_policy() {
    use lab::suite::{blip::Recovery, Scenario};
    let dir = tempfile::tempdir().unwrap();
    let mut profile = lab::suite::Profile::quick(7);
    profile.seed = lab::seed::SeedConfig { users: 20, products: 10, orders: 40, seed: 7 };
    profile.saturation_clients = 16;
    profile.curve_step_secs = 0.5;
    profile.blip_load_share = 0.5;
    profile.blip_phases_secs = [1.0, 1.0, 1.5];
    profile.blip_fault = "reset products".into();
    let config = lab::suite::SuiteConfig {
        profile,
        scenarios: vec![Scenario::OverloadBlip],
        modes: vec![Mode::Sync],
        policies: vec![Policy::Naive, Policy::RetryStorm],
        runs: dir.path().to_path_buf(),
        command: "test".into(),
        target: lab::topology::Target::Process,
        brokers: 1,
        replicas: 1,
        shards: 1,
    };
    let (results, path) = lab::suite::run(config).await.expect("the suite runs");
    assert_eq!(results.policies, [Policy::Naive, Policy::RetryStorm]);
    let reread = lab::suite::Results::read(&path).expect("the results file reads back");
    let policies: Vec<Policy> = reread.scenarios.iter().map(|s| s.policy).collect();
    assert_eq!(policies, [Policy::Naive, Policy::RetryStorm], "one run per policy, in plan order");
    let during = |policy: Policy| {
        let s = reread.scenario_with(Scenario::OverloadBlip, Mode::Sync, policy).expect("a run per policy");
        let blip = s.blip.as_ref().expect("the blip's figures");
        assert_eq!(blip.phases.len(), 3, "{blip:?}");
        assert_eq!(blip.fault, "reset products");
        assert!(blip.from_ms < blip.to_ms, "{blip:?}");
        assert!(!matches!(blip.recovery, Recovery::NoBaseline), "goodput before the blip: {blip:?}");
        assert!(s.faults.iter().all(|f| f.result == "ok"), "{:?}", s.faults);
        blip.phases[1].clone()
    };
    let (naive, storm) = (during(Policy::Naive), during(Policy::RetryStorm));
    assert!(naive.client_requests > 0 && storm.client_requests > 0, "{naive:?} {storm:?}");
    assert_eq!(naive.retries_sent, 0, "naive never retries: {naive:?}");
    assert!(storm.retries_sent > 0, "retry-storm retried: {storm:?}");
    let (a, b) = (naive.amplification().unwrap(), storm.amplification().unwrap());
    assert!(b > a, "calls per client request during the blip: retry-storm {b:.2}, naive {a:.2}");
    // The lookup by (scenario, mode) is the naive run's.
    assert_eq!(reread.scenario(Scenario::OverloadBlip, Mode::Sync).map(|s| s.policy), Some(Policy::Naive));
    let md = lab::report::render(&reread).markdown;
    assert!(md.contains("| variant | saturation (ok/s) → sustained (ok/s) → offered (req/s) |"), "{md}");
    let sync = reread.scenario(Scenario::OverloadBlip, Mode::Sync).and_then(|s| s.blip.as_ref()).unwrap();
    assert!(
        sync.sustained_ok_per_s > 0.0 && sync.sustained_ok_per_s <= sync.saturation_ok_per_s,
        "the sustained rate counts the drain in: {sync:?}"
    );
    assert!((sync.offered_per_s - 0.5 * sync.sustained_ok_per_s).abs() < 1e-6, "{sync:?}");
    assert!(md.contains("\n| sync retry-storm | "), "a row per variant: {md}");
    assert!(md.contains("## Policies"), "{md}");
}

/// The monolith makes no call between services for the blip to slow down: it says so at
/// once, without starting a topology or measuring a load that could not show anything.
#[tokio::test]
async fn overload_blip_does_not_apply_to_the_monolith() {
    use lab::suite::Scenario;
    let dir = tempfile::tempdir().unwrap();
    let config = lab::suite::SuiteConfig {
        profile: lab::suite::Profile::quick(7),
        scenarios: vec![Scenario::OverloadBlip],
        modes: vec![Mode::Monolith],
        policies: vec![Policy::Naive, Policy::Hardened],
        runs: dir.path().to_path_buf(),
        command: "test".into(),
        target: lab::topology::Target::Process,
        brokers: 1,
        replicas: 1,
        shards: 1,
    };
    let (results, _) = lab::suite::run(config).await.expect("the suite runs");
    assert_eq!(results.scenarios.len(), 1, "one run: the monolith has no policy variants");
    let s = &results.scenarios[0];
    let note = s.note.as_deref().unwrap_or_default();
    assert!(note.starts_with(lab::suite::scenarios::DOES_NOT_APPLY), "{note}");
    assert!(note.contains("no call between services"), "{note}");
    assert!(s.blip.is_none() && s.loads.is_empty(), "nothing measured: {s:?}");
    assert_eq!(s.faults.len(), 1);
    assert_eq!(s.faults[0].action, "slow products 50 0");
}
