//! The two cost curves against real processes, with a tiny profile: the load curve has
//! every rung, offered rates rising; the orders-per-user curve reads back every order,
//! and the sync chain's calls per read grow with the user's orders while async makes none.

mod support;

use common::{config::Mode, names::MAX_ORDERS_PAGE_SIZE};
use lab::suite::{Profile, Results, Scenario, ScenarioResult};

fn tiny_ctx(dir: &std::path::Path) -> lab::suite::Ctx {
    let mut profile = Profile::quick(7);
    profile.seed = lab::seed::SeedConfig { users: 10, products: 5, orders: 20, seed: 7 };
    profile.saturation_clients = 8;
    profile.curve_fractions = vec![0.5, 0.25, 1.0];
    profile.curve_step_secs = 0.2;
    // One more than a page of ListOrdersByUser: the sync chain needs a second page.
    profile.orders_per_user = vec![3, MAX_ORDERS_PAGE_SIZE as usize + 1];
    profile.orders_per_user_reads = 5;
    lab::suite::Ctx::on_processes(profile, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_curves_in_sync_and_async() {
    let dir = support::RunDir::new();
    let ctx = tiny_ctx(dir.path());
    let mut ran: Vec<ScenarioResult> = Vec::new();
    for mode in [Mode::Sync, Mode::Async] {
        for scenario in [Scenario::LoadCurve, Scenario::OrdersPerUser] {
            let result = lab::suite::scenarios::run(&ctx, scenario, mode)
                .await
                .unwrap_or_else(|e| panic!("{scenario} ({mode}): {e:#}"));
            ran.push(result);
        }
    }
    for r in &ran {
        match r.scenario {
            Scenario::LoadCurve => {
                let c = r.load_curve.as_ref().unwrap_or_else(|| panic!("{}: no load curve", r.mode));
                assert!(c.saturation_ok_per_s > 0.0, "{c:?}");
                let fractions: Vec<f64> = c.rungs.iter().map(|x| x.fraction).collect();
                assert_eq!(fractions, [0.25, 0.5, 1.0], "every rung, lowest first");
                for rung in &c.rungs {
                    let asked = rung.fraction * c.saturation_ok_per_s;
                    assert!((rung.offered_per_s - asked).abs() < 1e-6, "{rung:?} of {}", c.saturation_ok_per_s);
                    assert!(rung.scheduled > 0, "{rung:?}");
                    for share in [rung.failed_share, rung.shed_share, rung.late_share] {
                        assert!((0.0..=1.0).contains(&share), "{rung:?}");
                    }
                }
                assert!(c.rungs.windows(2).all(|w| w[0].offered_per_s < w[1].offered_per_s), "{:?}", c.rungs);
            }
            Scenario::OrdersPerUser => {
                let points = r.orders_per_user.as_ref().unwrap_or_else(|| panic!("{}: no points", r.mode));
                let sizes: Vec<usize> = points.iter().map(|p| p.orders).collect();
                assert_eq!(sizes, [3, 1001]);
                for p in points {
                    assert_eq!(p.items, p.orders, "{}: the reply holds every order: {p:?}", r.mode);
                    assert_eq!((p.reads.ok, p.reads.attempted), (5, 5), "{}: {p:?}", r.mode);
                }
                let calls: Vec<f64> = points.iter().map(|p| p.calls_per_read).collect();
                match r.mode {
                    // GetUser, a page of orders per 1000, GetProducts.
                    Mode::Sync => {
                        assert_eq!(calls, [3.0, 4.0], "{points:?}");
                        assert_eq!(points[1].calls_by_hop["orders.ListOrdersByUser"], 2.0, "{points:?}");
                    }
                    _ => assert_eq!(calls, [0.0, 0.0], "{}: {points:?}", r.mode),
                }
            }
            other => panic!("unexpected scenario {other}"),
        }
    }

    // The report draws both curves for the modes that have them.
    let mut results: Results = serde_json::from_str(include_str!("fixtures/results.json")).expect("the fixture loads");
    results.modes = vec![Mode::Sync, Mode::Async];
    results.scenarios = ran;
    let rendered = lab::report::render(&results);
    let md = &rendered.markdown;
    for needle in [
        "### load-curve",
        "| mode | saturation: ok/s of the closed-loop run (clients, s) | knee: offered rate (× saturation) |",
        "the knee is the highest rung",
        "### orders-per-user",
        "| 1001 | sync | 1001 |",
        "| 1001 | async | 1001 |",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from:\n{md}");
    }
    for chart in ["load-curve.svg", "orders-per-user.svg"] {
        let (_, svg) = rendered.charts.iter().find(|(name, _)| name == chart).expect(chart);
        assert!(svg.contains("<polyline") || svg.contains("<path"), "{chart} draws no line");
        assert!(!svg.contains("could not be drawn"), "{chart}: {svg}");
    }
    let summary = lab::suite::summary::text(&results);
    assert!(summary.lines().any(|l| l.starts_with("load-curve") && l.contains("knee")), "{summary}");
    assert!(summary.lines().any(|l| l.starts_with("orders-per-user") && l.contains("1001 orders")), "{summary}");
}
