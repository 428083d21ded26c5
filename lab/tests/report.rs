//! The report, rendered from a recorded results file (`fixtures/results.json`, a real
//! quick run): every section is there, the verdicts follow the figures, the HTML is
//! self-contained and opens in headless Chromium, and `--compare` flags regressions.

use std::path::Path;

use common::config::Mode;

use lab::{
    report::{self, verdicts::Verdict},
    suite::{Results, Scenario},
};

/// A quick run recorded before rounds, the staleness probe's send-time measure, the
/// all-requests figures and the soak: what older results files look like.
fn fixture() -> Results {
    read_fixture("results-old.json")
}

/// Today's quick run, recorded (`lab bench`, default quick profile).
fn quick_run() -> Results {
    read_fixture("results.json")
}

fn read_fixture(name: &str) -> Results {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture parses")
}

/// The fixture with what today's suite records and the fixture predates: the latency
/// slow-dependency added (its fault line says 20 ms), and for chaos the kind of each
/// fault and the writes it met in flight (here: every kill met one).
fn recorded() -> Results {
    let mut r = fixture();
    for s in &mut r.scenarios {
        if s.scenario == Scenario::SlowDependency {
            s.added_latency_us = Some(20_000);
        }
        if s.scenario == Scenario::Chaos {
            for e in s.faults.iter_mut().filter(|e| e.action.starts_with("kill")) {
                e.fault = Some(lab::suite::FaultKind::Kill);
                e.writes_in_flight = Some(1);
            }
        }
    }
    r
}

fn verdict(r: &Results, claim_starts: &str) -> Verdict {
    report::verdicts::judge(r).into_iter().find(|c| c.claim.starts_with(claim_starts)).expect("claim").verdict
}

/// Named as on the command line: `scenario(r, "chaos", "sync")`.
fn scenario<'a>(r: &'a mut Results, name: &str, mode: &str) -> &'a mut lab::suite::ScenarioResult {
    let (name, mode) = (name.parse::<Scenario>().unwrap(), mode_named(mode));
    r.scenarios.iter_mut().find(|s| s.scenario == name && s.mode == mode).expect("scenario in fixture")
}

fn mode_named(mode: &str) -> Mode {
    <Mode as clap::ValueEnum>::from_str(mode, false).unwrap()
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
    for needle in
        ["time (s)", "requests/s", "latency (ms)", "p99 (ms)", "sync OK/s", "async OK/s", "users killed", "MB"]
    {
        assert!(html.contains(needle), "no {needle:?} in any chart");
    }
}

#[test]
fn verdicts_follow_the_figures() {
    let r = recorded();
    assert_eq!(verdict(&r, "sync: if any inter-service"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "sync: a request is only as fast"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "async: data is duplicated"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "an acknowledged write is never lost"), Verdict::NotRefuted { runs: 1 });

    // Had sync kept serving while users was down, the claim would be refuted.
    let mut flipped = recorded();
    for bucket in &mut scenario(&mut flipped, "kill-dependency", "sync").loads.get_mut("run").unwrap().timeline {
        bucket.ok += bucket.errors.values().sum::<u64>();
        bucket.errors.clear();
    }
    assert_eq!(verdict(&flipped, "sync: if any inter-service"), Verdict::Refuted);

    // Had the added latency not reached sync UserOrders…
    let mut flipped = recorded();
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
    let mut flipped = recorded();
    scenario(&mut flipped, "chaos", "async").losses.as_mut().unwrap().lost = 1;
    assert_eq!(verdict(&flipped, "an acknowledged write is never lost"), Verdict::Refuted);
    let md = report::render(&flipped).markdown;
    assert!(md.contains("async lost 1 of"), "the words follow the data");

    // A scenario missing from the run makes its claim inconclusive, saying why.
    let mut partial = fixture();
    partial.scenarios.retain(|s| s.scenario != Scenario::Storage);
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
        result.scenario = Scenario::Soak;
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
    assert_eq!(verdict(&r, "an acknowledged write is never lost"), Verdict::NotRefuted { runs: 1 });
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

/// "Never lost" holds only as far as the chaos run could have refuted it: faults carried
/// out, orders acknowledged, kills that met writes in flight; and "never" is not
/// refuted in N runs, not confirmed. Numbers quoted by verdicts and the Method come
/// from the results.
#[test]
fn verdicts_check_their_preconditions() {
    const NEVER_LOST: &str = "an acknowledged write is never lost";
    let inconclusive = |r: &Results, claim: &str, why: &str| match verdict(r, claim) {
        Verdict::Inconclusive(reason) => assert!(reason.contains(why), "{reason:?} does not say {why:?}"),
        other => panic!("{claim}: {other:?}, expected inconclusive because {why}"),
    };
    let r = recorded();
    assert_eq!(verdict(&r, NEVER_LOST), Verdict::NotRefuted { runs: 1 });
    let md = report::render(&r).markdown;
    assert!(md.contains("**not refuted in 1 run**"), "{md}");

    // The fixture predates fault kinds and in-flight counts: it shows nothing.
    inconclusive(&fixture(), NEVER_LOST, "no fault was carried out");
    // Faults that did not happen.
    let mut failed = recorded();
    for e in &mut scenario(&mut failed, "chaos", "async").faults {
        e.result = "error: not running".into();
    }
    inconclusive(&failed, NEVER_LOST, "async: no fault was carried out");
    // Nothing acknowledged.
    let mut silent = recorded();
    scenario(&mut silent, "chaos", "sync").losses.as_mut().unwrap().acknowledged_orders = 0;
    inconclusive(&silent, NEVER_LOST, "sync: no write was acknowledged");
    // Kills that met no write in flight.
    let mut idle = recorded();
    for e in &mut scenario(&mut idle, "chaos", "sync").faults {
        e.writes_in_flight = e.writes_in_flight.map(|_| 0);
    }
    inconclusive(&idle, NEVER_LOST, "sync: no fault took effect while writes were in flight");
    // A loss refutes it whatever the preconditions.
    scenario(&mut idle, "chaos", "async").losses.as_mut().unwrap().lost = 1;
    assert_eq!(verdict(&idle, NEVER_LOST), Verdict::Refuted);
    // Two chaos runs per mode: not refuted in 2.
    let mut twice = recorded();
    let again: Vec<_> = twice.scenarios.iter().filter(|s| s.scenario == Scenario::Chaos).cloned().collect();
    twice.scenarios.extend(again);
    assert_eq!(verdict(&twice, NEVER_LOST), Verdict::NotRefuted { runs: 2 });
    assert_eq!(verdict(&twice, NEVER_LOST).word(), "not refuted in 2 runs");

    // The latency slow-dependency added comes from the results: unrecorded, no verdict…
    inconclusive(&fixture(), "sync: a request is only as fast", "not in these results");
    // …and another figure changes the sentence and the verdict.
    let mut doubled = recorded();
    for mode in ["sync", "async"] {
        scenario(&mut doubled, "slow-dependency", mode).added_latency_us = Some(40_000);
    }
    let claim = report::verdicts::judge(&doubled).into_iter().find(|c| c.claim.starts_with("sync: a request")).unwrap();
    assert!(claim.sentence.starts_with("With 40 ms added"), "{}", claim.sentence);
    assert!(matches!(claim.verdict, Verdict::Inconclusive(_)), "about half of 40 ms reached sync: {:?}", claim.verdict);

    // The Method's workload mix is the recorded one, or said to be unrecorded.
    assert!(report::render(&fixture()).markdown.contains("not recorded in these results"));
    let mut mixed = fixture();
    mixed.profile.mix = Some(lab::workload::Mix { user_orders: 70, place_order: 20, update_price: 10 });
    let md = report::render(&mixed).markdown;
    assert!(md.contains("Workload: 70% `UserOrders`, 20% `PlaceOrder`, 10% `UpdatePrice` over"), "{md}");
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
        scenario: scenario.parse().unwrap(),
        mode: Some(mode_named(mode)),
        round,
        policy: common::config::Policy::Naive,
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
    for label in ["users killed", "products killed", "sync p99, successes", "async p99, successes"] {
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

/// The create-then-use figure (steady) shows in the steady table and the summary line,
/// and the "harder to understand" verdict cites it from the results: a client must
/// handle "not yet".
#[test]
fn create_then_use_is_reported_and_cited_by_the_understanding_verdict() {
    let figure = |refused: usize, micros: u64| {
        let mut recorder = bench::Recorder::default();
        for _ in 0..100 {
            recorder.record(std::time::Duration::from_micros(micros), "OK");
        }
        lab::latency::CreateThenUse {
            sequences: 100,
            users_created: 100,
            refused_first: refused,
            accepted: 100,
            retries: 2 * refused,
            retry_first_us: 500,
            retry_budget_ms: 1000,
            until_accepted: recorder.summary(),
        }
    };
    let mut r = fixture();
    let before = report::verdicts::judge(&r).into_iter().find(|c| c.claim == "async: harder to understand").unwrap();
    assert!(!before.sentence.contains("ordering for them"), "the fixture has no such figure");
    scenario(&mut r, "steady", "sync").create_then_use = Some(figure(0, 900));
    scenario(&mut r, "steady", "async").create_then_use = Some(figure(47, 1140));
    let md = report::render(&r).markdown;
    assert!(
        md.contains("| create-then-use: first order refused (FAILED_PRECONDITION), of the users just created | 0% (0 of 100) | 47.0% (47 of 100) |"),
        "{md}"
    );
    assert!(md.contains("| create-then-use: user acknowledged → order accepted p50 / p99 (ms), retries included | 0.90 / 0.90 | 1.14 / 1.14 |"));
    let claim = report::verdicts::judge(&r).into_iter().find(|c| c.claim == "async: harder to understand").unwrap();
    assert!(
        matches!(&claim.verdict, Verdict::Inconclusive(why) if why.contains("a client must handle \"not yet\": 47.0% of first orders")),
        "{:?}",
        claim.verdict
    );
    assert!(claim.sentence.contains("accepted 1.14 ms after the user's acknowledgement at p50"), "{}", claim.sentence);
    let summary = lab::suite::summary::text(&r);
    assert!(
        summary.contains("create-then-use: first order refused 47 of 100 new users, accepted 100 of 100"),
        "{summary}"
    );
}

/// The recorded quick run reads right where the issue found figures that measured
/// something else: sync's staleness is 0 at every percentile, by measurement; sync has
/// no convergence figure; both modes' chaos met the same victims at the same planned
/// times; the timelines carry every request's p99; the latency scenarios ran in two
/// rounds, their order recorded; and the report draws the all-requests line.
#[test]
fn the_recorded_quick_run_reads_right() {
    let r = quick_run();
    for s in r.runs(Scenario::Steady, Mode::Sync) {
        let probe = &s.staleness.as_ref().expect("the probe ran").visible;
        assert!(probe.ok > 0, "the probe measured something: {probe:?}");
        assert_eq!((probe.p50_us, probe.p99_us, probe.max_us), (0, 0, 0), "sync reads its own writes");
        let sequential = s.sequential.as_ref().unwrap().propagation.as_ref().expect("sequential staleness");
        assert_eq!((sequential.p50_us, sequential.p99_us), (0, 0));
    }
    let stale_async = r.scenario(Scenario::Steady, Mode::Async).unwrap().staleness.as_ref().unwrap();
    assert!(stale_async.stale > 0, "async was seen stale at least once: {stale_async:?}");
    for scenario in [Scenario::KillDependency, Scenario::Chaos] {
        assert!(
            r.scenario(scenario, Mode::Sync).unwrap().convergence.is_none(),
            "{scenario}: sync has nothing to converge"
        );
        assert!(r.scenario(scenario, Mode::Async).unwrap().convergence.is_some(), "{scenario}: async converges");
    }
    let victims = |mode| -> Vec<(String, Option<u64>)> {
        r.scenario(Scenario::Chaos, mode)
            .unwrap()
            .faults
            .iter()
            .filter(|e| !e.action.ends_with("nats"))
            .map(|e| (e.action.clone(), e.planned_ms))
            .collect()
    };
    assert_eq!(victims(Mode::Sync), victims(Mode::Async), "one schedule for both modes");
    assert!(!victims(Mode::Sync).is_empty());
    let run = &r.scenario(Scenario::KillDependency, Mode::Sync).unwrap().loads["run"];
    assert!(run.timeline.iter().any(|b| b.p99_all_us > 0), "buckets carry every request's p99");
    for mode in [Mode::Sync, Mode::Async] {
        assert_eq!(r.runs(Scenario::Steady, mode).count(), 2, "{mode}: two rounds");
    }
    assert!(!r.run_order.is_empty());
    let rendered = report::render(&r);
    let p99 = chart(&rendered, "kill-dependency-p99.svg");
    assert!(texts(p99).iter().any(|(_, t)| t == "sync p99, all requests"), "the all-requests line is drawn");
    assert!(rendered.markdown.contains("## Spread across rounds"));
}

/// The bus-rpc claim is computed from the data: inconclusive without bus-rpc in the
/// run; confirmed when bus-rpc loses its availability with the dependency as sync does;
/// refuted when it keeps serving; and bus-rpc gets a column in the scenario tables.
#[test]
fn the_bus_rpc_claim_follows_the_bus_rpc_figures() {
    const CLAIM: &str = "an event bus used as request/reply";
    let r = quick_run();
    assert!(
        matches!(verdict(&r, CLAIM), Verdict::Inconclusive(why) if why.contains("bus-rpc was not in this run")),
        "{:?}",
        verdict(&r, CLAIM)
    );
    let with_bus = |like: Mode| {
        let mut r = quick_run();
        for scenario in [Scenario::KillDependency, Scenario::SlowDependency, Scenario::Steady] {
            let mut bus = r.scenario(scenario, like).unwrap().clone();
            bus.mode = Mode::BusRpc;
            r.scenarios.push(bus);
        }
        r.modes.push(Mode::BusRpc);
        r
    };
    let coupled = with_bus(Mode::Sync);
    assert_eq!(verdict(&coupled, CLAIM), Verdict::Confirmed);
    assert!(report::render(&coupled).markdown.contains("| figure | sync | async | bus-rpc |"));
    assert_eq!(verdict(&with_bus(Mode::Async), CLAIM), Verdict::Refuted);

    // Each figure in its mode's cell: bus-rpc's own, with its latency as a multiple of sync's.
    let claim = report::verdicts::judge(&coupled).into_iter().find(|c| c.claim.starts_with(CLAIM)).unwrap();
    let bus = claim.cell(Mode::BusRpc).unwrap();
    assert!(bus.contains("kill-dependency: 3.7% served while users killed"), "{bus}");
    assert!(bus.contains("slow-dependency: UserOrders p50 +27 ms"), "{bus}");
    assert!(bus.contains("sequential UserOrders p50 1.22 ms (1.00× sync)"), "{bus}");
    assert!(bus.contains("kill-broker: -"), "bus-rpc's kill-broker is not in this run: {bus}");
    assert!(claim.cell(Mode::Sync).unwrap().contains("kill-broker: does not apply: sync mode has no broker"));
    assert!(claim
        .cell(Mode::Async)
        .unwrap()
        .starts_with("kill-broker: 100.0% of all requests served while nats killed"));
    assert!(
        claim.sentence.contains("the broker's death was not measured (kill-broker in bus-rpc mode)"),
        "{}",
        claim.sentence
    );

    // The broker's death, where bus-rpc ran it, in its cell and the sentence.
    let mut broker = coupled.clone();
    let mut killed = broker.scenario(Scenario::KillBroker, Mode::Async).unwrap().clone();
    killed.mode = Mode::BusRpc;
    broker.scenarios.push(killed);
    let claim = report::verdicts::judge(&broker).into_iter().find(|c| c.claim.starts_with(CLAIM)).unwrap();
    assert!(claim
        .cell(Mode::BusRpc)
        .unwrap()
        .contains("kill-broker: 100.0% of all requests served while nats killed, UserOrders 100.0% over the run"));
    assert!(
        claim.sentence.contains("with the broker killed bus-rpc had 100.0% of all requests served"),
        "{}",
        claim.sentence
    );

    // The coupling in part: failing with the dependency, but not slowed by it.
    let mut half = coupled.clone();
    let slowed_like_async = half.scenario(Scenario::SlowDependency, Mode::Async).unwrap().clone();
    half.scenarios.retain(|s| (s.scenario, s.mode) != (Scenario::SlowDependency, Mode::BusRpc));
    half.scenarios.push(lab::suite::ScenarioResult { mode: Mode::BusRpc, ..slowed_like_async });
    assert!(
        matches!(verdict(&half, CLAIM), Verdict::Inconclusive(why) if why.contains("bus-rpc failed with the dependency as sync did; the slow hop's latency did not reach its caller")),
        "{:?}",
        verdict(&half, CLAIM)
    );

    // A scenario missing in bus-rpc mode: inconclusive, saying which.
    let mut partial = coupled.clone();
    partial.scenarios.retain(|s| (s.scenario, s.mode) != (Scenario::SlowDependency, Mode::BusRpc));
    assert!(
        matches!(verdict(&partial, CLAIM), Verdict::Inconclusive(why) if why == "not in this run: slow-dependency in bus-rpc mode"),
        "{:?}",
        verdict(&partial, CLAIM)
    );
}

/// The monolith's colour in the charts.
const MONOLITH: &str = "#785AAA";

/// The recorded quick run with bus-rpc (the sync call graph: its figures are sync's, its
/// broker's death async's) and the monolith (steady and storage of its own; every fault
/// scenario did not apply to it, as the suite records it) added.
fn four_modes() -> Results {
    use lab::suite::scenarios::{does_not_apply, DOES_NOT_APPLY};
    let mut r = quick_run();
    let mut added = Vec::new();
    for s in r.scenarios.iter().filter(|s| s.mode == Mode::Sync) {
        let like = if s.scenario == Scenario::KillBroker { Mode::Async } else { Mode::Sync };
        let bus = r.runs(s.scenario, like).find(|x| x.round == s.round).unwrap().clone();
        added.push(lab::suite::ScenarioResult { mode: Mode::BusRpc, ..bus });
        let mut mono = lab::suite::ScenarioResult { mode: Mode::Monolith, ..s.clone() };
        let component = match s.scenario {
            Scenario::KillDependency => Some("users"),
            Scenario::PauseDependency | Scenario::SlowDependency => Some("products"),
            Scenario::KillQuery => Some("query"),
            _ => None,
        };
        if let Some(component) = component {
            let reason = does_not_apply(Mode::Monolith, component);
            for e in &mut mono.faults {
                e.result = reason.clone();
            }
            mono.note =
                Some(format!("{reason}: the fault had nothing to act on, so the figures are of the load alone"));
        }
        if s.scenario == Scenario::KillBroker {
            mono.note = Some(format!("{DOES_NOT_APPLY}monolith mode has no broker: the fault has nothing to act on"));
        }
        if s.scenario == Scenario::Chaos {
            // Chaos kills the monolith where it kills a service it serves.
            for e in &mut mono.faults {
                e.action = e.action.replace("users", "monolith").replace("products", "monolith");
                e.action = e.action.replace("orders", "monolith").replace("query", "monolith");
            }
        }
        if s.scenario == Scenario::Storage {
            mono.storage = Some([("monolith".to_string(), 2_000_000)].into());
            mono.logical_storage = Some([("monolith".to_string(), [("orders".to_string(), 400_000)].into())].into());
        }
        added.push(mono);
    }
    r.scenarios.extend(added);
    r.modes = vec![Mode::Sync, Mode::Async, Mode::BusRpc, Mode::Monolith];
    r
}

/// The claims table has a column per mode of the run, in its order; each cell is that
/// mode's figure, or why the claim cannot concern it. A two-mode run keeps two columns.
#[test]
fn the_claims_have_a_cell_per_mode() {
    let md = report::render(&quick_run()).markdown;
    assert!(md.contains("| claim | sync | async | verdict |"), "two modes, two columns");

    let r = four_modes();
    let md = report::render(&r).markdown;
    assert!(md.contains("| claim | sync | async | bus-rpc | monolith | verdict |"), "{md}");
    let claims = report::verdicts::judge(&r);
    for c in &claims {
        let modes: Vec<Mode> = c.cells.iter().map(|(m, _)| *m).collect();
        assert_eq!(modes, r.modes, "{}", c.claim);
        let row = md.lines().find(|l| l.starts_with(&format!("| {} |", c.claim))).expect("a row per claim");
        assert_eq!(row.matches(" | ").count(), 5, "claim, four modes, verdict: {row}");
    }
    let cell = |claim: &str, mode: Mode| {
        claims.iter().find(|c| c.claim.starts_with(claim)).unwrap().cell(mode).unwrap().to_string()
    };
    // Each mode's own figures…
    assert_eq!(cell("sync: if any inter-service", Mode::BusRpc), "3.7% served while users killed");
    assert_eq!(cell("sync: if any inter-service", Mode::Async), "100.0% served while users killed");
    assert_eq!(cell("sync: a request is only as fast", Mode::BusRpc), "UserOrders p50 +27 ms");
    // …or why the claim cannot concern the mode.
    assert_eq!(
        cell("sync: if any inter-service", Mode::Monolith),
        "does not apply: monolith mode has no users process"
    );
    assert_eq!(
        cell("sync: a request is only as fast", Mode::Monolith),
        "does not apply: monolith mode has no products process"
    );
    assert!(cell("sync: the service that asks others", Mode::Monolith)
        .starts_with("does not apply: monolith mode has no query service of its own"));
    assert_eq!(cell("sync: the service that asks others", Mode::BusRpc), "query: 0 bytes");
    assert_eq!(cell("async: data is duplicated", Mode::Monolith), "0.40 MB logical");
    assert!(cell("an event bus used as request/reply", Mode::Monolith).starts_with("does not apply: one process"));
    // The verdicts are still the figures'.
    assert_eq!(verdict(&r, "sync: if any inter-service"), Verdict::Confirmed);
    assert_eq!(verdict(&r, "an event bus used as request/reply"), Verdict::Confirmed);

    // "Never lost" holds for every mode the kills applied to (the monolith's chaos kills
    // the monolith): a loss in bus-rpc or in the monolith refutes it.
    const NEVER_LOST: &str = "an acknowledged write is never lost";
    assert_eq!(verdict(&r, NEVER_LOST), verdict(&quick_run(), NEVER_LOST));
    assert!(cell(NEVER_LOST, Mode::Monolith).starts_with("0 lost of"), "{}", cell(NEVER_LOST, Mode::Monolith));
    for mode in ["bus-rpc", "monolith"] {
        let mut lost = r.clone();
        scenario(&mut lost, "chaos", mode).losses.as_mut().unwrap().lost = 1;
        assert_eq!(verdict(&lost, NEVER_LOST), Verdict::Refuted, "{mode}");
        let claim = report::verdicts::judge(&lost).into_iter().find(|c| c.claim.starts_with(NEVER_LOST)).unwrap();
        assert!(claim.sentence.contains(&format!("; {mode} lost 1 of")), "{}", claim.sentence);
        let m = <Mode as clap::ValueEnum>::from_str(mode, false).unwrap();
        assert!(claim.cell(m).unwrap().starts_with("1 lost of"), "{mode}");
    }
}

/// The price of distribution: each headline figure of the monolith, and every other
/// mode's ÷ it, both sides measured; where one is not, the cell says what is missing.
#[test]
fn the_price_of_distribution_divides_by_the_monolith() {
    assert!(!report::render(&quick_run()).markdown.contains("price of distribution"), "no monolith, no price");

    let mut r = four_modes();
    fn steady(r: &mut Results, mode: Mode) -> &mut lab::suite::ScenarioResult {
        r.scenarios.iter_mut().find(|s| s.scenario == Scenario::Steady && s.mode == mode).unwrap()
    }
    for (mode, p50_us, ok_per_s, cpu_s, served) in [
        (Mode::Monolith, 400, 5000.0, 2.0, 10_000),
        (Mode::Sync, 1_200, 2500.0, 3.0, 5_000),
        (Mode::Async, 600, 4000.0, 4.0, 8_000),
        (Mode::BusRpc, 1_600, 2000.0, 2.4, 4_000),
    ] {
        let s = steady(&mut r, mode);
        s.sequential.as_mut().unwrap().user_orders.p50_us = p50_us;
        let saturation = s.loads.get_mut("saturation").unwrap();
        saturation.ok_per_s = ok_per_s;
        saturation.all.ok = served;
        s.saturation_cpu_s = Some(cpu_s);
    }
    // Async's CPU over the saturation run alone was not recorded.
    steady(&mut r, Mode::Async).saturation_cpu_s = None;
    let md = report::render(&r).markdown;
    let compact = md.find("## The price of distribution, at a glance").expect("the compact table near the top");
    assert!(compact < md.find("## Scenarios").unwrap(), "near the top");
    assert!(md.contains("| figure | monolith | sync ÷ monolith | async ÷ monolith | bus-rpc ÷ monolith |"), "{md}");
    assert!(md.contains("| sequential UserOrders p50 (ms) | 0.40 | 3.00× | 1.50× | 4.00× |"), "{md}");
    assert!(
        md.contains("| saturation throughput (requests served/s, closed loop) | 5000 | 0.50× | 0.80× | 0.40× |"),
        "{md}"
    );
    // CPU per request: monolith 200 µs, sync 600 µs, bus-rpc 600 µs; async unrecorded.
    let cpu = md
        .lines()
        .find(|l| l.starts_with("| CPU per request in the saturation run (µs: CPU of every service and broker process over that run and async's catching up with it ÷ the requests it served) | 200 | 3.00× |"))
        .expect("CPU per request row");
    assert!(cpu.contains("| no ratio: the CPU of the saturation run alone is not in these results | 3.00× |"), "{cpu}");
    assert!(
        md.contains("| saturation: CPU seconds of the services and broker over that run alone; per request it served (µs) | 3.00; 600 | - | 2.40; 600 | 2.00; 200 |"),
        "the steady table gives the CPU itself: {md}"
    );
    // Bytes on disk: monolith 2 MB; logical 0.4 MB.
    assert!(md.contains("| bytes on disk (MB: file sizes, broker store included) | 2.00 |"), "{md}");
    assert!(md.contains("| logical bytes (MB: keys + values in the services' sled trees) | 0.40 |"), "{md}");
    // The full section: the figures themselves beside the ratios, and the latency saved.
    assert!(md.contains("## The price of distribution\n"), "{md}");
    assert!(
        md.contains("| sequential UserOrders p50 (ms) | 0.40 | 1.20 | 3.00× | 0.60 | 1.50× | 1.60 | 4.00× |"),
        "{md}"
    );
    assert!(md.contains("sync 1.20 ms, of which the monolith saves 67%"), "{md}");

    // Without the monolith's storage, no ratio, and the cell says why.
    r.scenarios.retain(|s| (s.scenario, s.mode) != (Scenario::Storage, Mode::Monolith));
    let md = report::render(&r).markdown;
    assert!(md.contains("| bytes on disk (MB: file sizes, broker store included) | not measured: storage was not run in monolith mode | no ratio: monolith: storage was not run in monolith mode |"), "{md}");
}

/// The headline chart opens the report, above the claims table: a group of bars per
/// fault window, a bar per mode, and for a mode the fault did not apply to no bar but
/// "n/a"; beside them sequential UserOrders p50.
#[test]
fn the_headline_chart_has_a_group_per_fault_and_no_bar_where_a_fault_did_not_apply() {
    let r = four_modes();
    let rendered = report::render(&r);
    let md = &rendered.markdown;
    let chart_at = md.find("![headline](charts/headline.svg)").expect("the headline chart");
    assert!(chart_at < md.find("## Summary: the claims, judged").unwrap(), "above the claims table");
    assert!(rendered.html.find("<figure><svg").unwrap() < rendered.html.find("<table>").unwrap(), "inline, first");
    let svg = chart(&rendered, "headline.svg");
    let labels: Vec<String> = texts(svg).into_iter().map(|(_, t)| t).collect();
    for window in ["users killed", "products killed", "products paused", "nats killed", "query killed"] {
        assert_eq!(labels.iter().filter(|t| *t == window).count(), 1, "one group for {window}: {labels:?}");
    }
    for axis in ["served (% of requests sent in the window)", "sequential UserOrders p50 (ms)", "UserOrders p50"] {
        assert!(labels.iter().any(|t| t == axis), "no {axis:?}: {labels:?}");
    }
    // The monolith: its legend swatch and its latency bar, no bar for the five fault
    // windows (none applied to it), and five "n/a"; sync has no broker: one more.
    let filled = |colour: &str| svg.split("<rect ").skip(1).filter(|r| attr(r, "fill") == colour).count();
    assert_eq!(filled(MONOLITH), 2, "{svg}");
    assert_eq!(labels.iter().filter(|t| *t == "n/a").count(), 6, "{labels:?}");
    // Sync: legend, latency, and four windows (a zero is a bar, and sync served some).
    assert_eq!(filled(&format!("#{:02X}{:02X}{:02X}", 214, 96, 77)), 6);

    // Older results without the note: sync's broker fault, skipped, is still "n/a".
    let svg = chart(&report::render(&quick_run()), "headline.svg").to_string();
    assert_eq!(texts(&svg).iter().filter(|(_, t)| t == "n/a").count(), 1, "{svg}");

    // A run without fault scenarios says so where their bars would be.
    let mut steady_only = four_modes();
    steady_only.scenarios.retain(|s| s.scenario == Scenario::Steady);
    let svg = chart(&report::render(&steady_only), "headline.svg").to_string();
    assert!(texts(&svg).iter().any(|(_, t)| t == "no fault scenario in this run"), "{svg}");
}

/// A mode a scenario's faults did not apply to (the monolith has no users process to
/// kill) gets its reason in the scenario's section, not a column of numbers that were
/// measured without the fault.
#[test]
fn a_scenario_that_did_not_apply_to_a_mode_gives_the_reason_not_numbers() {
    let mut r = quick_run();
    let mut mono = r.scenario(Scenario::KillDependency, Mode::Sync).unwrap().clone();
    mono.mode = Mode::Monolith;
    mono.note = Some(format!("{}monolith mode has no users process", lab::suite::scenarios::DOES_NOT_APPLY));
    r.scenarios.push(mono);
    r.modes.push(Mode::Monolith);
    let md = report::render(&r).markdown;
    let section = &md[md.find("### kill-dependency").unwrap()..];
    let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
    assert!(section.contains("| figure | sync | async |"), "{section}");
    assert!(!section.contains("| monolith |"), "no column of numbers for the monolith: {section}");
    assert!(section.contains("monolith: does not apply: monolith mode has no users process"), "{section}");
}

/// overload-blip's figures for one variant, on a load borrowed from the fixture.
fn blip_result(
    load: &bench::load::LoadReport,
    mode: Mode,
    policy: common::config::Policy,
    during_calls: u64,
    recovery: lab::suite::blip::Recovery,
) -> lab::suite::ScenarioResult {
    use lab::suite::blip::{Blip, Phase, LOAD};
    let phase = |name: &str, from_ms, to_ms, rpcs_sent, retries_sent| Phase {
        name: name.into(),
        from_ms,
        to_ms,
        client_requests: 400,
        ok: 380,
        rpcs_sent,
        retries_sent,
        breaker_rejections: 0,
        requests_shed: 0,
    };
    let calls = if mode == Mode::Async { 0 } else { 1000 };
    lab::suite::ScenarioResult {
        scenario: Scenario::OverloadBlip,
        mode,
        policy,
        loads: [(LOAD.to_string(), load.clone())].into(),
        blip: Some(Blip {
            saturation_ok_per_s: 1000.0,
            saturation_clients: 64,
            saturation_ms: 1000,
            drain_ms: 0,
            sustained_ok_per_s: 1000.0,
            load_share: 0.7,
            offered_per_s: 700.0,
            fault: "slow products 50 0".into(),
            from_ms: 2000,
            to_ms: 4000,
            phases: vec![
                phase("before", 0, 2000, calls, 0),
                phase("during", 2000, 4000, during_calls, during_calls.saturating_sub(calls)),
                phase("after", 4000, 9000, calls, 0),
            ],
            recovery,
        }),
        ..Default::default()
    }
}

/// A run with policies: a column per variant in each scenario's table, the Policies
/// section with what each policy recovered of async's lead, the overload-blip chart
/// (every variant) and table, and the degraded claim judged from the hardened run.
#[test]
fn a_policy_run_has_a_column_per_variant_and_a_policies_section() {
    use common::config::Policy;
    use lab::suite::blip::Recovery;
    const DEGRADED: &str = "sync with degradation (hardened)";
    let mut r = quick_run();
    let naive_verdict = verdict(&r, "sync: if any inter-service");
    assert!(matches!(verdict(&r, DEGRADED), Verdict::Inconclusive(why) if why.contains("hardened sync run is not")));
    assert!(!report::render(&r).markdown.contains("## Policies"), "naive alone: no Policies section");

    r.policies = vec![Policy::Naive, Policy::Hardened, Policy::RetryStorm];
    // Hardened: while products was down every request sent got an answer (UserOrders
    // partial); retry-storm: as naive.
    let mut hardened = scenario(&mut r, "kill-dependency", "sync").clone();
    hardened.policy = Policy::Hardened;
    let (from, to, _) = report::verdicts::fault_windows(&hardened)
        .into_iter()
        .find(|(_, _, what)| what == "products killed")
        .expect("the fixture kills products");
    let run = hardened.loads.get_mut("run").unwrap();
    for b in run.timeline.iter_mut().filter(|b| b.t_ms >= from && b.t_ms < to) {
        b.ok += b.errors.values().sum::<u64>();
        b.errors.clear();
    }
    hardened.partial_answers.insert("run".into(), 150);
    let mut storm = scenario(&mut r, "kill-dependency", "sync").clone();
    storm.policy = Policy::RetryStorm;
    let load = storm.loads["run"].clone();
    r.scenarios.extend([
        hardened,
        storm,
        blip_result(&load, Mode::Sync, Policy::Naive, 1000, Recovery::Recovered { after_ms: 100 }),
        blip_result(&load, Mode::Sync, Policy::Hardened, 1100, Recovery::Recovered { after_ms: 300 }),
        blip_result(&load, Mode::Sync, Policy::RetryStorm, 3800, Recovery::NotRecovered { within_ms: 5000 }),
        blip_result(&load, Mode::Async, Policy::Naive, 0, Recovery::Recovered { after_ms: 0 }),
    ]);

    // The naive claim is still the naive run's; the degraded one is refuted in part.
    assert_eq!(verdict(&r, "sync: if any inter-service"), naive_verdict);
    let claim = report::verdicts::judge(&r).into_iter().find(|c| c.claim.starts_with(DEGRADED)).unwrap();
    assert_eq!(claim.verdict, Verdict::Refuted, "{}", claim.sentence);
    assert!(claim.sentence.contains("150 of its `UserOrders` answers were partial"), "{}", claim.sentence);
    assert!(claim.cell(Mode::Sync).unwrap().contains("100.0% while products killed; 150 partial"), "{claim:?}");

    let rendered = report::render(&r);
    let md = &rendered.markdown;
    let section = |name: &str| {
        let at = md.find(&format!("\n### {name}\n")).unwrap_or_else(|| panic!("no section {name}"));
        let rest = &md[at + 5..];
        rest[..rest.find("\n#").unwrap_or(rest.len())].to_string()
    };
    let kill = section("kill-dependency");
    assert!(kill.contains("| figure | sync | sync hardened | sync retry-storm | async |"), "{kill}");
    assert!(
        kill.contains("| run: UserOrders answered partial (degraded: no product details), among the OK | - | 150 |")
    );
    // The Policies section: what the hardened chain recovered of async's lead while
    // products was down, beside the naive and retry-storm chains.
    let policies = &md[md.find("## Policies").expect("a Policies section")..];
    assert!(policies.contains("| figure | sync | sync hardened | sync retry-storm | async |"), "{policies}");
    let row = policies.lines().find(|l| l.starts_with("| kill-dependency: served while products killed")).unwrap();
    let cells: Vec<&str> = row.split(" | ").collect();
    assert!(cells[2].starts_with("100.0%; recovers "), "{row}");
    assert!(cells[3].contains("; recovers 0%") || cells[3].contains("no lead"), "retry-storm is naive here: {row}");
    let blip = section("overload-blip");
    assert!(blip.contains("![overload-blip-goodput](charts/overload-blip-goodput.svg)"), "{blip}");
    let storm_row = blip.lines().find(|l| l.starts_with("| sync retry-storm |")).expect("a row per variant");
    assert!(storm_row.contains("did not recover within the run (5.0 s after the blip)"), "{storm_row}");
    assert!(storm_row.contains("2.50 / 9.50 / 2.50"), "calls per client request by phase: {storm_row}");
    assert!(blip.lines().any(|l| l.starts_with("| async |") && l.contains("0.00 / 0.00 / 0.00")), "{blip}");
    let goodput = chart(&rendered, "overload-blip-goodput.svg");
    for legend in ["sync", "sync hardened", "sync retry-storm (dashed)", "async", "blip: slow products 50 0"] {
        assert!(texts(goodput).iter().any(|(_, t)| t == legend), "no legend {legend:?}: {:?}", texts(goodput));
    }
    // A variant's colour is a shade of its mode's.
    let (sync, hardened) = (report::charts::mode_color("sync"), report::charts::mode_color("sync hardened"));
    assert_ne!(sync, hardened);
    assert_ne!(report::charts::mode_color("sync retry-storm"), sync);
    // The headline chart has a group of bars per variant too, each policy's own.
    let headline = chart(&rendered, "headline.svg");
    for legend in ["sync", "sync hardened", "sync retry-storm", "async"] {
        assert!(texts(headline).iter().any(|(_, t)| t == legend), "no legend {legend:?}: {:?}", texts(headline));
    }
}

/// A run on a broker cluster: the Method says so, a cluster scenario's table gives the
/// share served while each node was down, labelled with the role it had, where the
/// stream was before and after and the outboxes' peak; the floor puts replication's
/// price beside the single server's, or says why it could not.
#[test]
fn a_cluster_run_reports_each_node_down_by_its_role_and_the_price_of_replication() {
    use lab::{
        suite::{cluster::ClusterRun, floor::Replicated},
        topology::cluster::{Placement, Replica},
    };
    let mut r = quick_run();
    assert!(r.floor.is_some(), "the quick run has a floor");
    assert!(report::render(&r)
        .markdown
        .contains("replicated JetStream: not measured (results from before it was added)"));
    let floor = r.floor.as_mut().unwrap();
    let mut slower = floor.js_publish_ack.clone();
    slower.p50_us = 3 * floor.js_publish_ack.p50_us;
    floor.replicated =
        Some(Replicated { nodes: 3, replicas: 3, js_publish_ack: slower, js_delivery: floor.js_delivery.clone() });
    r.brokers = 3;
    let mut node_down = scenario(&mut r, "kill-broker", "async").clone();
    node_down.scenario = Scenario::KillBrokerNode;
    node_down.faults[0].action = "kill nats-2 (the stream's leader)".into();
    node_down.faults[1].action = "restart nats-2".into();
    let placement = |leader: &str, followers: [&str; 2]| Placement {
        leader: Some(leader.into()),
        followers: followers.map(|name| Replica { name: name.into(), current: true, offline: false }).to_vec(),
        replicas: 3,
    };
    node_down.cluster = Some(ClusterRun {
        nodes: 3,
        meta_leader_before: Some("nats-1".into()),
        before: Some(placement("nats-2", ["nats-1", "nats-3"])),
        after: Some(placement("nats-3", ["nats-1", "nats-2"])),
        outbox_peak: Some(42),
    });
    r.scenarios.push(node_down);
    let md = report::render(&r).markdown;
    assert!(md.contains("a 3-node JetStream cluster (`--brokers 3`)"), "the Method names the cluster");
    let section = md.split("### kill-broker-node").nth(1).expect("a section of its own");
    let section = section.split("\n### ").next().unwrap_or_default();
    let row =
        |label: &str| section.lines().find(|l| l.starts_with(&format!("| {label}"))).unwrap_or_default().to_owned();
    let first = row("availability while the first fault lasted");
    assert!(first.contains("nats-2 killed (the stream's leader)"), "{first}");
    let placements = row("event stream before the load → after the repairs");
    assert!(
        placements.contains("R3, leader nats-2, followers [nats-1 current, nats-3 current] → R3, leader nats-3"),
        "{placements}"
    );
    assert!(
        row("most events waiting in the outboxes").contains("| 42 |"),
        "{}",
        row("most events waiting in the outboxes")
    );
    assert!(md.contains("publish+ack R1 p50") && md.contains("(×3.00 at p50)"), "the floor's R1 beside R3");
}
