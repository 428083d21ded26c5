//! The report, rendered from a recorded results file (`fixtures/results.json`, a real
//! quick run): every section is there, the verdicts follow the figures, the HTML is
//! self-contained and opens in headless Chromium, and `--compare` flags regressions.

use std::path::Path;

use lab::{
    report::{self, verdicts::Verdict},
    suite::Results,
};

fn fixture() -> Results {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture parses")
}

fn verdict(r: &Results, claim_starts: &str) -> Verdict {
    report::verdicts::judge(r).into_iter().find(|c| c.claim.starts_with(claim_starts)).expect("claim").verdict
}

fn scenario<'a>(r: &'a mut Results, name: &str, mode: &str) -> &'a mut lab::suite::ScenarioResult {
    r.scenarios.iter_mut().find(|s| s.scenario == name && s.mode == mode).expect("scenario in fixture")
}

#[test]
fn every_section_is_there_and_the_html_is_self_contained() {
    let r = fixture();
    let rendered = report::render(&r);
    let md = &rendered.markdown;
    for section in
        ["# Cascade", "## Summary: the claims, judged", "## Scenarios", "## Targets", "## Method", "Reproduce:"]
    {
        assert!(md.contains(section), "missing {section}");
    }
    for s in &r.scenarios {
        assert!(md.contains(&format!("### {}", s.scenario)), "missing scenario {}", s.scenario);
    }
    for claim in report::verdicts::judge(&r) {
        assert!(md.contains(claim.claim), "missing claim {}", claim.claim);
    }
    assert!(md.contains("![kill-dependency-throughput](charts/kill-dependency-throughput.svg)"));
    assert!(md.contains(&r.environment.command));

    let html = &rendered.html;
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.matches("<svg").count() >= 10, "charts are inline");
    for fetch in ["<script", "<link", "src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(fetch), "the page would fetch: {fetch}");
    }
    // Charts have axes with units, and legends.
    for needle in [
        "time (s)",
        "requests/s",
        "latency (ms)",
        "p99 of successes (ms)",
        "sync OK/s",
        "async OK/s",
        "users killed",
        "MB",
    ] {
        assert!(html.contains(needle), "no {needle:?} in any chart");
    }
}

#[test]
fn verdicts_follow_the_figures() {
    let r = fixture();
    assert_eq!(verdict(&r, "sync: if any inter-service"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "sync: a request is only as fast"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "async: data is duplicated"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "an acknowledged write is never lost"), Verdict::Confirmed);

    // Had sync kept serving while users was down, the claim would be refuted.
    let mut flipped = fixture();
    for bucket in &mut scenario(&mut flipped, "kill-dependency", "sync").loads.get_mut("run").unwrap().timeline {
        bucket.ok += bucket.errors.values().sum::<u64>();
        bucket.errors.clear();
    }
    assert_eq!(verdict(&flipped, "sync: if any inter-service"), Verdict::Refuted);

    // Had the added latency not reached sync UserOrders…
    let mut flipped = fixture();
    let slow = scenario(&mut flipped, "slow-dependency", "sync");
    let baseline = slow.loads["baseline"].ops["UserOrders"].p50_us;
    slow.loads.get_mut("slowed").unwrap().ops.get_mut("UserOrders").unwrap().p50_us = baseline;
    assert_eq!(verdict(&flipped, "sync: a request is only as fast"), Verdict::Refuted);

    // Had async stored less than sync…
    let mut flipped = fixture();
    for bytes in scenario(&mut flipped, "storage", "async").storage.as_mut().unwrap().values_mut() {
        *bytes = 1;
    }
    assert_eq!(verdict(&flipped, "async: data is duplicated"), Verdict::Refuted);

    // The duplication verdict rests on logical bytes where the results have them: the
    // same file sizes, but async's stores holding no more than sync's, refute it.
    let mut logical = fixture();
    let trees = |bytes: u64| {
        let component = std::collections::BTreeMap::from([("records".to_string(), bytes)]);
        Some(["users", "products", "orders"].map(|c| (c.to_string(), component.clone())).into())
    };
    scenario(&mut logical, "storage", "sync").logical_storage = trees(1000);
    scenario(&mut logical, "storage", "async").logical_storage = trees(1000);
    assert_eq!(verdict(&fixture(), "async: data is duplicated"), Verdict::Confirmed, "on disk, async is larger");
    assert_eq!(verdict(&logical, "async: data is duplicated"), Verdict::Refuted);
    let md = report::render(&logical).markdown;
    assert!(md.contains("the logical bytes (keys + values in the services' sled trees"), "{md}");
    assert!(md.contains("0.00 MB logical"), "the claim's cells say which figure: {md}");

    // Had chaos lost an acknowledged order…
    let mut flipped = fixture();
    scenario(&mut flipped, "chaos", "async").losses.as_mut().unwrap().lost = 1;
    assert_eq!(verdict(&flipped, "an acknowledged write is never lost"), Verdict::Refuted);
    let md = report::render(&flipped).markdown;
    assert!(md.contains("async lost 1 of"), "the words follow the data");

    // A scenario missing from the run makes its claim inconclusive, saying why.
    let mut partial = fixture();
    partial.scenarios.retain(|s| s.scenario != "storage");
    assert!(
        matches!(verdict(&partial, "async: data is duplicated"), Verdict::Inconclusive(why) if why.contains("storage"))
    );
}

/// With a soak in the results, the "never lost" claim rests on it: confirmed only when
/// faults were carried out, writes acknowledged and faults landed on writes in flight;
/// refuted by any loss; and the soak gets a table row per mode.
#[test]
fn the_never_lost_claim_uses_the_soak_when_there_is_one() {
    let soak = |mode: &str| {
        let mut result = scenario(&mut fixture(), "chaos", mode).clone();
        result.scenario = "soak".into();
        result.soak = Some(lab::suite::soak::Soak {
            faults_planned: 200,
            faults_done: [("kill".to_string(), 100), ("pause".to_string(), 60), ("restart".to_string(), 40)].into(),
            faults_with_writes_in_flight: 150,
            acknowledged: [("PlaceOrder".to_string(), 5000), ("UpdatePrice".to_string(), 2000)].into(),
            ..Default::default()
        });
        result
    };
    let mut r = fixture();
    r.scenarios.extend([soak("sync"), soak("async")]);
    assert_eq!(verdict(&r, "an acknowledged write is never lost"), Verdict::Confirmed);
    let md = report::render(&r).markdown;
    assert!(md.contains("### soak"), "the soak has a section");
    assert!(md.contains("| sync | 200 (100 / 60 / 40) | 0 | 0 | 75% (150 of 200) | 7000 "), "{md}");

    // Faults that never met a write in flight prove nothing.
    let mut idle = r.clone();
    scenario(&mut idle, "soak", "async").soak.as_mut().unwrap().faults_with_writes_in_flight = 0;
    assert!(matches!(
        verdict(&idle, "an acknowledged write is never lost"),
        Verdict::Inconclusive(why) if why.contains("in flight")
    ));
    // Nor do writes nobody acknowledged.
    let mut silent = r.clone();
    scenario(&mut silent, "soak", "sync").soak.as_mut().unwrap().acknowledged.clear();
    assert!(matches!(verdict(&silent, "an acknowledged write is never lost"), Verdict::Inconclusive(_)));
    // A wrong price refutes it, even though chaos lost nothing.
    let mut wrong = r.clone();
    scenario(&mut wrong, "soak", "async").soak.as_mut().unwrap().wrong = 1;
    assert_eq!(verdict(&wrong, "an acknowledged write is never lost"), Verdict::Refuted);
    assert!(report::render(&wrong).markdown.contains("async: wrong 1"));
    assert!(report::compare(&r, &wrong).contains("1 regression(s)"));
    assert_eq!(lab::suite::soak_failures(&wrong), vec!["soak (async): wrong 1".to_string()]);
}

#[test]
fn compare_flags_regressions() {
    let old = fixture();
    let mut new = fixture();
    let run = scenario(&mut new, "kill-query", "async").loads.get_mut("run").unwrap();
    run.all.p99_us *= 3;
    let same = report::compare(&old, &old);
    assert!(same.contains("0 regression(s)"), "{same}");
    let changed = report::compare(&old, &new);
    assert!(changed.contains("run: p99 of successes (ms)"), "{changed}");
    assert!(!changed.contains("p99 of all requests"), "the fixture never timed every request: {changed}");
    assert!(changed.contains("**regression**"), "{changed}");
    assert!(changed.contains("1 regression(s)"), "{changed}");
}

/// The HTML opens in headless Chromium (Debian's `chromium`, installed by `.ci/run`)
/// and a screenshot of it is produced.
#[test]
fn the_html_opens_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (_, html) = report::write(&fixture(), dir.path()).unwrap();
    let shot = dir.path().join("report.png");
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is not installed: `apt-get install chromium` (.ci/run does)");
    let out = std::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,3000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Uncaught") && !stderr.contains("CONSOLE"), "page errors: {stderr}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 50_000, "a blank page would be tiny: {} bytes", png.len());
}

/// The fixture predates the staleness probe's send-time measure: its staleness loads,
/// and is labelled as what it measured (until the reply arrived), not as the new figure.
#[test]
fn staleness_says_what_was_measured() {
    let mut r = fixture();
    let old = report::render(&r).markdown;
    assert!(old.contains("older file: acknowledged → reply of the first read that showed it"), "old label");
    assert!(old.contains("before issue 10"));
    for s in r.scenarios.iter_mut().filter_map(|s| s.staleness.as_mut()) {
        s.measure = lab::suite::probe::Measure::FirstReadSent;
    }
    let new = report::render(&r).markdown;
    assert!(new.contains("staleness p50 / p99 (ms): acknowledged → first read sent that showed it"));
    assert!(!new.contains("older file"));
    assert!(new.contains("send time of the first read that showed it"));
}

/// The Method section describes the order that ran, as the results recorded it (the
/// old fixture did not record one, and the report says so rather than assume), and a
/// scenario run in two rounds gets its headline figures' spread.
#[test]
fn the_method_tells_the_recorded_order_and_rounds_give_a_spread() {
    let mut r = fixture();
    assert!(r.run_order.is_empty() && r.scenarios.iter().all(|s| s.round == 1), "old results load with defaults");
    assert!(report::render(&r).markdown.contains("was not recorded"));
    assert!(!report::render(&r).markdown.contains("## Spread across rounds"));

    let mut again = scenario(&mut r, "steady", "async").clone();
    again.round = 2;
    if let Some(seq) = again.sequential.as_mut() {
        seq.user_orders.p50_us += 250;
    }
    r.scenarios.push(again);
    let ran = |scenario: &str, mode: &str, round| lab::suite::Ran {
        scenario: scenario.into(),
        mode: Some(mode.into()),
        round,
    };
    r.run_order = vec![ran("steady", "sync", 1), ran("steady", "async", 1), ran("steady", "async", 2)];
    let md = report::render(&r).markdown;
    assert!(md.contains("Order as run (recorded): steady (round 1) sync → async; steady (round 2) async."), "{md}");
    assert!(md.contains("## Spread across rounds"));
    let p50 = scenario(&mut r, "steady", "async").sequential.as_ref().unwrap().user_orders.p50_us as f64 / 1000.0;
    let row = format!("| steady | async | sequential UserOrders p50 (ms) | {p50:.2}–{:.2} |", p50 + 0.25);
    assert!(md.contains(&row), "{row} not in the report");
}

/// Each load says how well the generator kept its schedule, with a small late share
/// printed as itself rather than rounded to 0; and latency comes twice, labelled
/// "successes only" and "all requests", the latter only where it was measured.
#[test]
fn send_lag_and_both_latency_figures_are_labelled() {
    let mut r = fixture();
    let run = scenario(&mut r, "kill-dependency", "sync").loads.get_mut("run").unwrap();
    run.send_lag.late_over_1ms = 9;
    run.scheduled = 1000;
    let md = report::render(&r).markdown;
    assert!(md.contains("run: generator send lag p50 / p99 / max (ms); sent > 1 ms late"), "{md}");
    assert!(md.contains("0.90% (9 of 1000)"), "a 0.9 % late share must not read as 0");
    assert!(md.contains("UserOrders p50 / p99 / p99.9 / max (ms), successes only"));
    // The fixture predates the all-requests figures: no row that would show zeros.
    assert!(!md.contains("all requests (failures at their elapsed time)"));

    let ops = &mut scenario(&mut r, "kill-dependency", "sync").loads.get_mut("run").unwrap().ops;
    ops.get_mut("UserOrders").unwrap().all_requests = Some(bench::Percentiles {
        count: 10,
        p50_us: 1_000,
        p90_us: 2_000,
        p99_us: 500_000,
        p999_us: 500_000,
        max_us: 501_000,
    });
    let md = report::render(&r).markdown;
    let row = md
        .lines()
        .find(|l| {
            l.contains("run: UserOrders p50 / p99 / p99.9 / max (ms), all requests (failures at their elapsed time)")
        })
        .expect("all-requests row");
    assert!(row.contains("1.00 / 500.00 / 500.00 / 501.00"), "{row}");
    let summary = lab::suite::summary::text(&r);
    assert!(summary.contains("successes only / 500.00 ms all requests"), "{summary}");
}

/// The `<text>` elements of an SVG: (x, text).
fn texts(svg: &str) -> Vec<(f64, String)> {
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let x = attr(t, "x").parse().unwrap();
            let body = t.split_once('>').unwrap().1.split("</text>").next().unwrap();
            (x, body.trim().to_string())
        })
        .collect()
}

fn attr<'a>(element: &'a str, name: &str) -> &'a str {
    element
        .split_once(&format!(" {name}=\""))
        .or_else(|| element.split_once(&format!("{name}=\"")))
        .unwrap()
        .1
        .split('"')
        .next()
        .unwrap()
}

/// The polylines of an SVG drawn in `stroke`: their points.
fn polylines(svg: &str, stroke: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline ")
        .skip(1)
        .filter(|p| attr(p, "stroke") == stroke)
        .map(|p| {
            attr(p, "points")
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

fn chart<'a>(rendered: &'a report::Rendered, name: &str) -> &'a str {
    &rendered.charts.iter().find(|(n, _)| n == name).expect("chart").1
}

/// kill-dependency's sync run had buckets without a single success: its p99 line
/// breaks there instead of drawing a line across; each fault window has its own shade
/// and its own label; the legend sits right of the plot, off the data.
#[test]
fn charts_show_gaps_as_gaps_and_windows_apart_with_the_legend_off_the_data() {
    let rendered = report::render(&fixture());
    let svg = chart(&rendered, "kill-dependency-p99.svg");
    let plot_right = (report::charts::W - report::charts::LEGEND_W) as f64;
    let sync = format!("#{:02X}{:02X}{:02X}", 214, 96, 77);
    let segments: Vec<Vec<(f64, f64)>> =
        polylines(svg, &sync).into_iter().filter(|p| p.iter().all(|(x, _)| *x < plot_right)).collect();
    assert!(segments.len() >= 2, "the sync p99 line must break over the buckets without successes: {segments:?}");
    // 90 buckets over ~634 px: no drawn step may be wider than about one bucket.
    let widest = segments.iter().flat_map(|s| s.windows(2).map(|w| w[1].0 - w[0].0)).fold(0.0, f64::max);
    assert!(widest <= 10.0, "a line spans a gap: a step of {widest} px");

    let shades: std::collections::BTreeSet<&str> =
        svg.split("<rect ").skip(1).filter(|r| attr(r, "opacity") == "0.3").map(|r| attr(r, "fill")).collect();
    assert_eq!(shades.len(), 2, "two fault windows, two shades: {shades:?}");
    let labels = texts(svg);
    for label in ["users killed", "products killed", "sync p99", "async p99"] {
        let (x, _) = labels.iter().find(|(_, t)| t == label).unwrap_or_else(|| panic!("no legend entry {label:?}"));
        assert!(*x >= plot_right, "legend entry {label:?} at x {x} is on the plot");
    }
    // The throughput chart shares the shades and labels.
    let throughput = chart(&rendered, "kill-dependency-throughput.svg");
    assert!(texts(throughput).iter().any(|(x, t)| t == "products killed" && *x >= plot_right));
}

/// Percentile spectra in the HdrHistogram style: many points, on an axis of 1/(1−p)
/// labelled 50%, 90%, 99%, 99.9%.
#[test]
fn spectra_have_many_points_on_a_nines_axis() {
    let mut r = fixture();
    let mut recorder = bench::Recorder::default();
    for us in 1..=10_000u64 {
        recorder.record(std::time::Duration::from_micros(100 + us / 10), "OK");
    }
    scenario(&mut r, "steady", "sync").sequential.as_mut().unwrap().user_orders = recorder.summary();
    let rendered = report::render(&r);
    let svg = chart(&rendered, "steady-spectrum.svg");
    let ticks: Vec<String> = texts(svg).into_iter().map(|(_, t)| t).collect();
    for tick in ["50%", "90%", "99%", "99.9%"] {
        assert!(ticks.contains(&tick.to_string()), "no {tick} tick: {ticks:?}");
    }
    let sync = format!("#{:02X}{:02X}{:02X}", 214, 96, 77);
    let longest = polylines(svg, &sync).iter().map(Vec::len).max().unwrap_or(0);
    assert!(longest >= 30, "the spectrum has {longest} points");
}
