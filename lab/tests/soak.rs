//! The soak against real processes: a short one in each mode finds nothing lost, and
//! its checker does catch what it is there to catch (a forged acknowledgement, a
//! wrong price, an order no write explains, an identity acknowledged twice).

use std::time::Duration;

use common::{
    config::Mode,
    proto::{Order, PlaceOrderRequest, Product, UpdatePriceRequest},
};
use lab::{
    history::{Entry, History, Op, Outcome, Reply},
    seed::SeedConfig,
    suite::{scenarios::SKIPPED_NO_BROKER, soak, Ctx, Profile, Scenario, ScenarioResult},
};

/// A small, short soak: 12 service faults.
const FAULTS: usize = 12;

fn ctx(dir: &std::path::Path) -> Ctx {
    let mut profile = Profile::quick(7);
    profile.seed = SeedConfig { users: 20, products: 10, orders: 40, seed: 7 };
    profile.fault_rate = 100.0;
    profile.soak_faults = FAULTS;
    Ctx::on_processes(profile, dir)
}

#[track_caller]
fn assert_clean(r: &ScenarioResult) {
    let s = r.soak.as_ref().expect("soak figures");
    let mode = &r.mode;
    assert_eq!(s.failures(), Vec::<String>::new(), "{mode}: {:?}", s.examples);
    assert_eq!((s.lost, s.duplicated, s.phantom, s.wrong, s.dead_letters), (0, 0, 0, 0, 0), "{mode}");
    assert_eq!(s.faults_failed, 0, "{mode}: {:?}", r.faults.iter().filter(|f| f.result != "ok").collect::<Vec<_>>());
    assert!(s.faults() >= FAULTS, "{mode}: {:?}", s.faults_done);
    assert!(s.faults_with_writes_in_flight > 0, "{mode}: no fault landed while writes were in flight");
    assert!(s.acknowledged_writes() > 0, "{mode}: nothing acknowledged");
    assert!(s.acknowledged.contains_key("PlaceOrder") && s.acknowledged.contains_key("UpdatePrice"), "{mode}");
    assert!(s.orders_checked > 0 && s.products_checked > 0 && s.users_checked > 0, "{mode}");
    assert_eq!(s.probe_orders, s.products_checked, "{mode}: one probe order per product");
    let convergence = r.convergence.as_ref().expect("convergence");
    assert!(convergence.converged, "{mode}: {:?}", convergence.diff);
}

/// Both modes get the same service faults at the same planned times, every one
/// carried out and repaired, and the checker finds nothing missing, doubled, unexplained
/// or wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_loses_nothing_in_either_mode() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let sync = lab::suite::scenarios::run(&ctx, Scenario::Soak, Mode::Sync).await.unwrap();
    let r#async = lab::suite::scenarios::run(&ctx, Scenario::Soak, Mode::Async).await.unwrap();
    assert_clean(&sync);
    assert_clean(&r#async);

    let plan = |r: &ScenarioResult| r.faults.iter().map(|f| (f.planned_ms, f.action.clone())).collect::<Vec<_>>();
    assert_eq!(plan(&sync), plan(&r#async), "one schedule for both modes");
    let (s, a) = (sync.soak.as_ref().unwrap(), r#async.soak.as_ref().unwrap());
    // The service faults are the same; sync skips the broker's, async carries them out.
    let broker = sync.faults.iter().filter(|f| f.result == SKIPPED_NO_BROKER && f.fault.is_some()).count();
    assert_eq!(s.broker_faults_skipped, broker);
    assert_eq!(s.faults(), FAULTS);
    assert_eq!(a.faults(), FAULTS + broker);
    assert_eq!(a.broker_faults_skipped, 0);
    for f in sync.faults.iter().chain(&r#async.faults) {
        assert!(f.effective_ms >= Some(f.t_ms), "{f:?}");
    }
}

/// The checker probes every replica of orders: with orders as two shards (async), one
/// probe order per product on each (a checker user of each users shard); in the
/// monolith, with no orders process of its own, one per product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_probes_every_orders_shard_and_the_monolith() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let sharded = ctx.with_replicas(1, 2);
    let r#async = lab::suite::scenarios::run(&sharded, Scenario::Soak, Mode::Async).await.unwrap();
    let s = r#async.soak.as_ref().expect("soak figures");
    assert_eq!(s.failures(), Vec::<String>::new(), "{:?}", s.examples);
    assert_eq!(s.probe_orders, 2 * s.products_checked, "one probe order per product on each orders shard");
    let monolith = lab::suite::scenarios::run(&ctx, Scenario::Soak, Mode::Monolith).await.unwrap();
    let m = monolith.soak.as_ref().expect("soak figures");
    assert_eq!(m.failures(), Vec::<String>::new(), "{:?}", m.examples);
    assert!(m.products_checked > 0 && m.probe_orders == m.products_checked, "{m:?}");
}

/// The checker against a history with planted faults: an acknowledged order the system
/// never saw is lost, a price the system never had is wrong at the owner, in the view
/// and in orders' replica, and an order placed behind the history's back is a phantom.
#[tokio::test]
async fn the_checker_catches_a_forged_order_a_wrong_price_and_a_phantom() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let seed = SeedConfig { users: 3, products: 2, orders: 4, seed: 3 };
    let mut prepared = ctx.prepare("planted", Mode::Sync, &[], seed).await.unwrap();
    let (user, product) = (prepared.seeded.user_ids[0].clone(), prepared.seeded.product_ids[0].clone());
    // The history says the first product was created at a price one cent above the one
    // it really has.
    let mut baseline = History::read_baseline(&prepared.clients, &prepared.seeded).await.unwrap();
    let created = baseline
        .iter_mut()
        .find_map(|e| match &mut e.outcome {
            Outcome::Acknowledged(Reply::Product(p)) if p.id == product => Some(p),
            _ => None,
        })
        .unwrap();
    created.price_cents += 1;
    let history = History::new(baseline);
    let mut c = prepared.clients.clone();
    let deadline = Duration::from_secs(5);

    // A real write, through the history: nothing to find.
    let op = Op::PlaceOrder(PlaceOrderRequest { user_id: user.clone(), product_id: product.clone(), quantity: 2 });
    assert!(matches!(history.send(&mut c, op, deadline).await, Outcome::Acknowledged(_)));
    // An "acknowledged" order that does not exist.
    let forged = Order {
        id: "ord-00000000deadbeef".into(),
        user_id: user.clone(),
        product_id: product.clone(),
        quantity: 1,
        unit_price_cents: 123,
        placed_at_unix_ms: 1,
    };
    let request = PlaceOrderRequest { user_id: user.clone(), product_id: product.clone(), quantity: 1 };
    history.record(Entry { op: Op::PlaceOrder(request), outcome: Outcome::Acknowledged(Reply::Order(forged)) });
    // An order nobody recorded.
    let unrecorded =
        PlaceOrderRequest { user_id: prepared.seeded.user_ids[1].clone(), product_id: product, quantity: 3 };
    bench::call(deadline, unrecorded, |r| c.orders.place_order(r)).await.unwrap();

    let (_, found) =
        soak::audit(&prepared, &history, tokio::time::Instant::now(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.lost, 1, "{:?}", found.examples);
    assert_eq!(found.findings.get("lost order (view)"), Some(&1));
    assert!(found.examples.iter().any(|e| e.contains("ord-00000000deadbeef")), "{:?}", found.examples);
    assert_eq!(found.wrong, 3, "{:?}", found.examples);
    for place in ["owner", "view", "orders' replica"] {
        assert_eq!(found.findings.get(&format!("wrong price ({place})")), Some(&1), "{:?}", found.findings);
    }
    assert_eq!(found.phantom, 1, "{:?}", found.examples);
    assert_eq!((found.duplicated, found.dead_letters), (0, 0));
    assert_eq!(found.acknowledged.get("PlaceOrder"), Some(&2));
    assert_eq!(found.failures().len(), 3, "{:?}", found.failures());

    // Two acknowledgements of one version of a product at different prices: the
    // system reused an identity, whatever it holds now.
    let second = prepared.seeded.product_ids[1].clone();
    let reused = Product { id: second.clone(), title: "Product 1".into(), price_cents: 1, version: 1 };
    let request = UpdatePriceRequest { id: second, price_cents: 1 };
    history.record(Entry { op: Op::UpdatePrice(request), outcome: Outcome::Acknowledged(Reply::Product(reused)) });
    let (_, found) =
        soak::audit(&prepared, &history, tokio::time::Instant::now(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.findings.get("wrong acknowledgement (identity reused)"), Some(&1), "{:?}", found.examples);
    prepared.topology.stop().unwrap();
}
