//! The comparison report: `report.md` (reads as plain Markdown, charts as SVG files
//! beside it) and a self-contained `report.html` (inline CSS and SVG, no fetches),
//! both rendered from a results JSON. `lab report` re-renders any run; `lab report
//! --compare OLD NEW` shows what changed.

pub mod charts;
pub mod format;
pub mod price;
pub mod verdicts;

use std::{
    fmt::Write,
    path::{Path, PathBuf},
};

use common::config::{Mode, Policy};

use crate::suite::{probe, Results, Scenario, ScenarioResult};
use format::{ms_value, percent, percent_one_decimal};

/// A rendered report: Markdown, HTML, and the charts as (file name, SVG).
pub struct Rendered {
    pub markdown: String,
    pub html: String,
    pub charts: Vec<(String, String)>,
}

/// Collects the document once, then writes it as Markdown and as HTML.
enum Block {
    Heading(u8, String),
    Para(String),
    Table(Vec<String>, Vec<Vec<String>>),
    Chart(String, String),
    Code(String),
}

pub fn render(r: &Results) -> Rendered {
    let blocks = document(r);
    let mut md = String::new();
    let mut body = String::new();
    let mut charts = Vec::new();
    for block in &blocks {
        match block {
            Block::Heading(level, text) => {
                writeln!(md, "{} {text}\n", "#".repeat(*level as usize)).ok();
                writeln!(body, "<h{level}>{}</h{level}>", inline_html(text)).ok();
            }
            Block::Para(text) => {
                writeln!(md, "{text}\n").ok();
                writeln!(body, "<p>{}</p>", inline_html(text)).ok();
            }
            Block::Table(head, rows) => {
                // A cell must not end its row early: pipes escaped, line breaks folded.
                let cell = |c: &String| c.replace('|', "\\|").replace(['\n', '\r'], " ");
                writeln!(md, "| {} |", head.iter().map(cell).collect::<Vec<_>>().join(" | ")).ok();
                writeln!(md, "|{}", " --- |".repeat(head.len())).ok();
                for row in rows {
                    writeln!(md, "| {} |", row.iter().map(cell).collect::<Vec<_>>().join(" | ")).ok();
                }
                writeln!(md).ok();
                body.push_str("<table><thead><tr>");
                for h in head {
                    write!(body, "<th>{}</th>", inline_html(h)).ok();
                }
                body.push_str("</tr></thead><tbody>");
                for row in rows {
                    body.push_str("<tr>");
                    for cell in row {
                        write!(body, "<td>{}</td>", inline_html(cell)).ok();
                    }
                    body.push_str("</tr>");
                }
                body.push_str("</tbody></table>\n");
            }
            Block::Chart(name, svg) => {
                writeln!(md, "![{name}](charts/{name}.svg)\n").ok();
                writeln!(body, "<figure>{svg}</figure>").ok();
                charts.push((format!("{name}.svg"), svg.clone()));
            }
            Block::Code(text) => {
                writeln!(md, "```\n{text}\n```\n").ok();
                writeln!(body, "<pre>{}</pre>", escape(text)).ok();
            }
        }
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cascade report</title><style>{CSS}</style></head><body>\n{body}</body></html>\n"
    );
    Rendered { markdown: md, html, charts }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}figure{margin:1em 0}pre{background:#f6f6f6;padding:8px;overflow-x:auto}code{background:#f3f3f3;padding:0 3px}\
.confirmed{color:#1a7f37;font-weight:600}.refuted{color:#c62828;font-weight:600}.inconclusive{color:#8a6d00;font-weight:600}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Markdown's `code` and **bold** as HTML, the rest escaped; verdict words coloured.
fn inline_html(text: &str) -> String {
    let mut out = String::new();
    let mut bold = false;
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            write!(out, "<code>{part}</code>").ok();
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j > 0 {
                    out.push_str(if bold { "</b>" } else { "<b>" });
                    bold = !bold;
                }
                out.push_str(piece);
            }
        }
    }
    if bold {
        out.push_str("</b>");
    }
    for word in ["confirmed", "refuted", "inconclusive"] {
        out = out.replace(&format!("<b>{word}"), &format!("<b class=\"{word}\">{word}"));
    }
    // "not refuted in N runs" reads as a pass, held only as far as the runs went.
    out = out.replace("<b>not refuted", "<b class=\"confirmed\">not refuted");
    out
}

fn document(r: &Results) -> Vec<Block> {
    use Block::*;
    let mut d = Vec::new();
    let e = &r.environment;
    d.push(Heading(1, "Cascade: synchronous chains vs asynchronous events, measured".into()));
    d.push(Para(format!(
        "The same shop built {} ways ({}) and run side by side on one machine ({} cores, {} build, target `{}`, commit `{}`, {} profile). Every figure below was measured by this run; every verdict is computed from those figures.",
        r.modes.len(),
        r.modes.iter().map(|&m| format::mode_description(m)).collect::<Vec<_>>().join("; "),
        e.cores, e.build_profile, e.target, e.commit, r.profile.name
    )));

    if let Some(svg) = headline_chart(r) {
        d.push(Chart("headline".into(), svg));
        d.push(Para(format!(
            "Left: the share of requests sent while each fault lasted (kill-dependency, pause-dependency, kill-broker, kill-query; round 1) that succeeded. Right: sequential `UserOrders` p50 (steady, round 1), lower is better. `{NOT_APPLICABLE}`: the fault does not apply to the mode (it has no such process); `{NOT_MEASURED}`: not measured in this run."
        )));
    }

    d.push(Heading(2, "Summary: the claims, judged".into()));
    let claims = verdicts::judge(r);
    let mut head = vec!["claim".to_string()];
    head.extend(r.modes.iter().map(|m| m.to_string()));
    head.push("verdict".into());
    d.push(Table(
        head,
        claims
            .iter()
            .map(|c| {
                let mut row = vec![c.claim.to_string()];
                row.extend(c.cells.iter().map(|(_, cell)| cell.clone()));
                row.push(format!("**{}**", c.verdict.word()));
                row
            })
            .collect(),
    ));
    for c in &claims {
        d.push(Para(format!("**{}** — {} ({})", c.verdict.word(), c.sentence, c.evidence)));
    }
    let price = price::of_distribution(r);
    if let Some(table) = price.as_deref().and_then(price::compact) {
        d.push(Heading(2, "The price of distribution, at a glance".into()));
        let naive = if r.has_policy_axis() { " Sync's and bus-rpc's are their naive runs'." } else { "" };
        d.push(Para(format!("Each mode's figure ÷ the monolith's (one process, one database, in-process calls), from this run; the section \"The price of distribution\" below gives the figures themselves.{naive}")));
        d.push(table);
    }

    d.push(Heading(2, "Scenarios".into()));
    for name in r.scenarios_ran() {
        d.push(Heading(3, name.to_string()));
        d.push(Para(name.description().into()));
        // A column per variant the run had (each mode, and sync and bus-rpc once per
        // policy: `sync hardened`; results name them in the order asked), but for a
        // mode the scenario's faults did not apply to: its figures are of the load
        // alone, so it gets its reason below instead of numbers.
        let labelled = r.by_variant(name);
        let ran: Vec<(&str, &ScenarioResult)> = labelled.iter().map(|(label, s)| (label.as_str(), *s)).collect();
        let applies = |x: &ScenarioResult| {
            !x.note.as_deref().is_some_and(|n| n.starts_with(crate::suite::scenarios::DOES_NOT_APPLY))
        };
        let modes: Vec<(&str, &ScenarioResult)> = ran.iter().copied().filter(|(_, x)| applies(x)).collect();
        let rows = figures(&modes);
        if !rows.is_empty() {
            let mut head = vec!["figure".to_string()];
            head.extend(modes.iter().map(|(m, _)| m.to_string()));
            d.push(Table(head, rows));
        }
        if let Some(table) = soak_table(&modes) {
            d.push(table);
        }
        if name == Scenario::KillReplica {
            if let Some(text) = replica_against_single(r, &modes) {
                d.push(Para(text));
            }
        }
        curve_blocks(&modes, &mut d);
        blip_blocks(&modes, &mut d);
        scenario_charts(name.name(), &modes, &mut d);
        for (mode, x) in &ran {
            if let Some(note) = &x.note {
                d.push(Para(format!("{mode}: {note}")));
            }
        }
    }

    if r.has_policy_axis() {
        d.push(Heading(2, "Policies".into()));
        d.push(Para(format!(
            "Sync and bus-rpc ran under each policy asked for ({}), each on a fresh topology, in the same ABBA order as the modes; async and the monolith make no inter-service calls and ran once, and storage and fan-out, which no policy changes, ran every mode once under naive. Where a policy's figure is beside its mode's naive one and async's, the cell says how much of async's lead over the naive chain the policy recovered: (policy − naive) ÷ (async − naive), 100 % = as good as async, 0 % = no better than naive, below 0 = worse. The cost of hardening in the steady state is each figure ÷ the naive chain's.",
            r.policies().iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        )));
        if let Some(table) = policies_table(r) {
            d.push(table);
        }
    }

    if let Some(price) = &price {
        d.push(Heading(2, "The price of distribution".into()));
        d.push(Para(price::method(r)));
        d.extend(price::full(price));
    }

    if let Some(table) = spread_table(r) {
        d.push(Heading(2, "Spread across rounds".into()));
        d.push(Para("The latency scenarios ran in several rounds, the modes' order flipped each time (see Method). The tables above show round 1; here each headline figure is given as min–max over every round, with the rounds' values in the order they ran.".into()));
        d.push(table);
    }

    if !r.targets.is_empty() {
        d.push(Heading(2, "Targets".into()));
        d.push(Table(
            vec!["target".into(), "measured".into(), "limit".into(), "".into(), "how".into()],
            r.targets
                .iter()
                .map(|t| {
                    vec![
                        t.target.clone(),
                        format!("{:.1}", t.measured),
                        format!("{:.1}", t.limit),
                        if t.met { "met".into() } else { "**missed**".into() },
                        t.how.clone(),
                    ]
                })
                .collect(),
        ));
    }

    d.push(Heading(2, "Method".into()));
    let p = &r.profile;
    d.push(Para(format!(
        "Workload: {} over {} users, {} products and {} seeded orders (seed {}), per-request deadline {} ms, one reused HTTP/2 connection per service. Open-loop load: requests leave on a fixed schedule and every latency is counted from the intended send time (no coordinated omission); the client enforces each request's deadline itself, so none is recorded past it; latencies are given for successes only and for all requests (a failure at its elapsed time; a request shed by the generator is counted, not timed); HDR histograms; timelines in 100 ms buckets. Steady rates {:?}/s for {} s each; fault scenarios at {}/s; chaos for {} s. Every scenario runs in each mode on a fresh topology of real processes (and a real nats-server). {}",
        p.mix.map_or("a mix of `UserOrders`, `PlaceOrder` and `UpdatePrice` not recorded in these results".into(), |m| format!(
            "{}% `UserOrders`, {}% `PlaceOrder`, {}% `UpdatePrice`",
            m.user_orders, m.place_order, m.update_price
        )),
        p.seed.users, p.seed.products, p.seed.orders, p.seed.seed, p.deadline_ms, p.steady_rates, p.steady_secs, p.fault_rate, p.chaos_secs, run_order(r)
    )));
    if e.target == "swarm" {
        d.push(Para("Swarm target: each component is one replica of a service of a stack on a single-node Docker Swarm, which replaces a task whatever ends it. A restart step after a kill starts nothing: it waits until swarm's next task is healthy, and records when the component answered again on its published port and when its task was healthy; a fault's window ends there when swarm was quicker than the schedule.".into()));
    }
    d.push(Para(format!(
        "Machine: {} cores, CPU pinning {}; build {}; nats-server {} (JetStream file storage, acknowledges before fsync: a killed broker loses nothing, a crashed host could lose its last writes); crates {}.",
        e.cores,
        if e.cpu_pinning { "on" } else { "off" },
        e.build_profile,
        e.nats_server.as_deref().unwrap_or("-"),
        e.crates.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    )));
    // Only where a cluster was started: a scenario that did not apply to any mode of
    // the run started none.
    let on_a_cluster: Vec<String> = r
        .scenarios_ran()
        .into_iter()
        .filter(|s| s.needs_cluster() && r.scenarios.iter().any(|x| x.scenario == *s && x.cluster.is_some()))
        .map(|s| s.to_string())
        .collect();
    let stream = match r.modes.contains(&Mode::Async) {
        true => ", the event stream replicated 3 times",
        false => "",
    };
    d.push(Para(match r.brokers {
        1 if on_a_cluster.is_empty() => "Broker (async and bus-rpc): one nats-server.".to_owned(),
        1 => format!("Broker (async and bus-rpc): one nats-server; {} ran on a three-node JetStream cluster of its own{stream}.", on_a_cluster.join(" and ")),
        n => format!("Broker (async and bus-rpc): a {n}-node JetStream cluster (`--brokers {n}`) in every scenario, the services given every node's address and the event stream (with its durable consumers) replicated {n} times; `nats` in a fault schedule (kill-broker, chaos, soak) names every node at once."),
    }));
    let replicated = r.scenarios_ran().contains(&Scenario::KillReplica);
    let replicas = match r.replicas {
        1 if !replicated => None,
        1 => Some( "Query service: one instance, but in kill-replica, which ran two replicas (each with its own data dir and, in async mode, its own durable consumer), the lab's client sending `UserOrders` round robin to both and skipping a replica it could not reach.".to_owned()),
        n => Some(format!("Query service: {n} replicas in every scenario but the monolith's (kill-replica: 2), each with its own data dir and, in async mode, its own durable consumer, the lab's client sending `UserOrders` round robin to them and skipping a replica it could not reach; `query` in a fault schedule (kill-query, chaos, soak) names every replica at once, and convergence compares each replica's view.")),
    };
    d.extend(replicas.map(Para));
    let shards = match r.shards {
        1 if !replicated => None,
        1 => Some("Owners (users, products, orders): one instance each, the single writer of its store, but in kill-replica, which ran each as two shards (see below).".to_owned()),
        n => Some(format!("Owners (users, products, orders): {n} shards each in every scenario but the monolith's (kill-replica: 2); an owner's name in a fault schedule names every shard at once.")),
    };
    if let Some(shards) = shards {
        d.push(Para(format!("{shards} A shard is the single writer of the entities whose ids name it (the first hex digit of the id); the lab's client and every calling service send a request to the shard its id names, and a create to any live shard. Orders are partitioned by their user, orders shard K holding the orders of users shard K's users, so a user's orders are listed by one shard. In async mode each orders shard keeps every user and product from a durable consumer of its own.")));
    }
    let measure = r.scenarios.iter().find_map(|s| s.staleness.as_ref()).map(|st| st.measure);
    if measure == Some(probe::Measure::FirstReadSent) {
        d.push(Para(format!(
            "Staleness, {}: a probe places an order every {} ms (open loop, whatever the earlier probes are doing), and each probe reads `UserOrders` for its user on its own schedule (every {}–{} ms, growing while the order does not show) until it shows. A probe's staleness is from the write's acknowledgement to the send time of the first read that showed it, 0 if the first read after the acknowledgement did; a failed read counts as not showing it. Its resolution is the gap back to the send time of the last read that did not show it. Probe orders join the acknowledged orders the loss checker holds the view to.",
            probe::Measure::FirstReadSent.label(),
            probe::EVERY.as_millis(),
            probe::READ_EVERY_MIN.as_millis(),
            probe::READ_EVERY_MAX.as_millis(),
        )));
    } else if let Some(old) = measure {
        d.push(Para(format!("Staleness in this file was measured as {} (one probe at a time), before issue 10: it includes one read and cannot be 0.", old.label())));
    }
    if let Some(f) = &r.floor {
        d.push(Para(format!(
            "Floor, same run (p50): loopback TCP round trip {} ms, one gRPC hop {} ms, JetStream publish+ack {} ms, delivery to a consumer {} ms, sled insert+flush {} ms, two-tree transaction+flush {} ms ({}). Load generator: a bare echo takes {:.0} requests/s from 64 closed-loop clients; the open loop kept its schedule up to {:.0}/s against it (it shares the 2 cores with the server), and {:.0}/s against a no-op.",
            ms_value(f.tcp_rtt.p50_us), ms_value(f.grpc_echo.p50_us), ms_value(f.js_publish_ack.p50_us), ms_value(f.js_delivery.p50_us), ms_value(f.sled_flush.p50_us), ms_value(f.sled_txn2_flush.p50_us),
            f.sled_filesystem.as_ref().map_or_else(|| "filesystem not recorded".to_owned(), |fs| format!("in the run dir: {fs}")),
            f.echo_64_in_flight_per_s, f.generator_ceiling_per_s, f.generator_noop.ok_per_s
        )));
        d.push(Para(format!("The lab's own client against an independent one, same run: {}.", f.peer_comparison())));
        d.push(Para(format!(
            "The price of replication, same run (the floor's own stream, one message at a time; a replicated publish is acknowledged once a majority of the replicas has it): {}.",
            f.replication_comparison()
        )));
    }
    d.push(Para("Reproduce:".into()));
    d.push(Code(format!("cargo build --release --workspace && {}", e.command)));
    d
}

/// The fault scenarios of the headline chart, in its order.
const HEADLINE_FAULTS: [Scenario; 4] =
    [Scenario::KillDependency, Scenario::PauseDependency, Scenario::KillBroker, Scenario::KillQuery];

/// What the headline chart shows where a mode has no bar: the fault did not apply to
/// it, or it was not measured.
pub const NOT_APPLICABLE: &str = "n/a";
pub const NOT_MEASURED: &str = "no data";

/// The headline chart: per variant (each mode, and sync and bus-rpc once per policy of
/// the run), the share of requests served while each fault window
/// of the fault scenarios lasted (round 1), and sequential UserOrders p50 (steady, round
/// 1). `None` when the run has neither.
fn headline_chart(r: &Results) -> Option<String> {
    // Every window of every fault scenario that ran, labelled as recorded ("users
    // killed"), in the order they first appear.
    let mut windows: Vec<(Scenario, String)> = Vec::new();
    for scenario in HEADLINE_FAULTS {
        for &mode in &r.modes {
            for (_, _, what) in r.scenario(scenario, mode).map(verdicts::fault_windows).unwrap_or_default() {
                if !windows.iter().any(|(s, w)| *s == scenario && *w == what) {
                    windows.push((scenario, what));
                }
            }
        }
    }
    // A group of bars per variant: each mode, and sync and bus-rpc once per policy.
    let variants: Vec<(Mode, Policy, String)> =
        r.variants().into_iter().map(|(m, p)| (m, p, crate::suite::variant_label(m, p))).collect();
    let served: Vec<(&str, Vec<charts::Bar>)> = variants
        .iter()
        .map(|(mode, policy, label)| {
            let bars = windows
                .iter()
                .map(|(scenario, what)| {
                    if verdicts::does_not_apply(r, *scenario, *mode).is_some() {
                        return Err(NOT_APPLICABLE.to_string());
                    }
                    let s = r.scenario_with(*scenario, *mode, *policy).ok_or_else(|| NOT_MEASURED.to_string())?;
                    verdicts::fault_windows(s)
                        .into_iter()
                        .find(|(_, _, w)| w == what)
                        .and_then(|(from, to, _)| verdicts::availability_between(s, from, to))
                        .map(|share| 100.0 * share)
                        .ok_or_else(|| NOT_MEASURED.to_string())
                })
                .collect();
            (label.as_str(), bars)
        })
        .collect();
    let p50: Vec<(&str, charts::Bar)> = variants
        .iter()
        .map(|(mode, policy, label)| {
            let seq = r.scenario_with(Scenario::Steady, *mode, *policy).and_then(|s| s.sequential.as_ref());
            (label.as_str(), seq.map(|l| l.user_orders.p50_us as f64 / 1000.0).ok_or_else(|| NOT_MEASURED.to_string()))
        })
        .collect();
    if windows.is_empty() && p50.iter().all(|(_, v)| v.is_err()) {
        return None;
    }
    let labels: Vec<String> = windows.into_iter().map(|(_, what)| what).collect();
    Some(charts::headline(
        "Per variant: requests served while each fault lasted, and UserOrders latency",
        &labels,
        &served,
        &p50,
    ))
}

/// The order the scenarios ran in, as the results recorded it.
fn run_order(r: &Results) -> String {
    if r.run_order.is_empty() {
        return "The order the scenarios and modes ran in was not recorded in these results.".into();
    }
    // Consecutive runs of one scenario and round are one group: "steady (round 2) async → sync".
    let mut groups: Vec<(Scenario, usize, Vec<String>)> = Vec::new();
    for ran in &r.run_order {
        let label = ran.mode.map(|m| crate::suite::variant_label(m, ran.policy));
        match groups.last_mut() {
            Some((s, round, modes)) if *s == ran.scenario && *round == ran.round => modes.extend(label),
            _ => groups.push((ran.scenario, ran.round, label.into_iter().collect())),
        }
    }
    let rounds = r.run_order.iter().map(|x| x.round).max().unwrap_or(1);
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(s, round, modes)| {
            let round = if rounds > 1 { format!(" (round {round})") } else { String::new() };
            if modes.is_empty() {
                format!("{s}{round}")
            } else {
                format!("{s}{round} {}", modes.join(" → "))
            }
        })
        .collect();
    format!("Order as run (recorded): {}.", parts.join("; "))
}

/// The headline figures of one scenario run, in ms or requests/s, for the spread
/// across rounds.
fn headlines(s: &ScenarioResult) -> Vec<(String, f64)> {
    let in_ms = |us: u64| us as f64 / 1000.0;
    let mut h = Vec::new();
    if let Some(l) = &s.sequential {
        h.push(("sequential UserOrders p50 (ms)".to_string(), in_ms(l.user_orders.p50_us)));
        h.push(("sequential PlaceOrder p50 (ms)".to_string(), in_ms(l.place_order.p50_us)));
        if let Some(p) = &l.propagation {
            h.push(("sequential staleness p50 (ms)".to_string(), in_ms(p.p50_us)));
        }
    }
    if let Some(st) = &s.staleness {
        h.push(("staleness probe p50 (ms)".to_string(), in_ms(st.visible.p50_us)));
        h.push(("staleness probe p99 (ms)".to_string(), in_ms(st.visible.p99_us)));
    }
    for (name, l) in &s.loads {
        h.push((format!("{name}: OK/s"), l.ok_per_s));
        if let Some(o) = l.ops.get("UserOrders") {
            h.push((format!("{name}: UserOrders p50 (ms)"), in_ms(o.p50_us)));
            h.push((format!("{name}: UserOrders p99 (ms)"), in_ms(o.p99_us)));
        }
    }
    let p50 = |load: &str| s.loads.get(load)?.ops.get("UserOrders").map(|o| o.p50_us as i64);
    if let (Some(slowed), Some(baseline)) = (p50("slowed"), p50("baseline")) {
        h.push(("UserOrders p50 slowed − baseline (ms)".to_string(), (slowed - baseline) as f64 / 1000.0));
    }
    h
}

/// Every headline figure of a scenario that ran in more than one round, per mode:
/// min–max over the rounds, and each round's value in run order.
fn spread_table(r: &Results) -> Option<Block> {
    let mut rows = Vec::new();
    for name in r.scenarios_ran() {
        for (mode, policy) in r.variants() {
            let runs: Vec<&ScenarioResult> = r.runs_with(name, mode, policy).collect();
            if runs.len() < 2 {
                continue;
            }
            let per_run: Vec<Vec<(String, f64)>> = runs.iter().map(|s| headlines(s)).collect();
            for (label, _) in &per_run[0] {
                let values: Vec<f64> =
                    per_run.iter().filter_map(|h| h.iter().find(|(l, _)| l == label).map(|(_, v)| *v)).collect();
                let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let each: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
                rows.push(vec![
                    name.to_string(),
                    crate::suite::variant_label(mode, policy),
                    label.clone(),
                    format!("{lo:.2}–{hi:.2}"),
                    each.join(", "),
                ]);
            }
        }
    }
    (!rows.is_empty()).then(|| {
        Block::Table(
            vec!["scenario".into(), "mode".into(), "figure".into(), "min–max".into(), "each round".into()],
            rows,
        )
    })
}

/// The side-by-side figures of one scenario.
fn figures(modes: &[(&str, &ScenarioResult)]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&ScenarioResult) -> Option<String>| {
        let cells: Vec<Option<String>> = modes.iter().map(|(_, s)| f(s)).collect();
        if cells.iter().any(Option::is_some) {
            let mut r = vec![label.to_string()];
            r.extend(cells.into_iter().map(|c| c.unwrap_or_else(|| "-".into())));
            rows.push(r);
        }
    };
    row("sequential UserOrders p50 / p99 (ms)", &|s| {
        s.sequential
            .as_ref()
            .map(|l| format!("{} / {}", ms_value(l.user_orders.p50_us), ms_value(l.user_orders.p99_us)))
    });
    row("sequential PlaceOrder p50 / p99 (ms)", &|s| {
        s.sequential
            .as_ref()
            .map(|l| format!("{} / {}", ms_value(l.place_order.p50_us), ms_value(l.place_order.p99_us)))
    });
    row("create-then-use: first order refused (FAILED_PRECONDITION), of the users just created", &|s| {
        s.create_then_use
            .as_ref()
            .map(|c| format!("{} ({} of {})", percent(c.refused_share()), c.refused_first, c.users_created))
    });
    row("create-then-use: user acknowledged → order accepted p50 / p99 (ms), retries included", &|s| {
        s.create_then_use
            .as_ref()
            .map(|c| format!("{} / {}", ms_value(c.until_accepted.p50_us), ms_value(c.until_accepted.p99_us)))
    });
    row("create-then-use: accepted within the retry budget (first wait, doubling; most waited)", &|s| {
        s.create_then_use.as_ref().map(|c| {
            format!(
                "{} of {} ({:.1} ms, doubling; {} ms), {} retries",
                c.accepted,
                c.sequences,
                c.retry_first_us as f64 / 1000.0,
                c.retry_budget_ms,
                c.retries
            )
        })
    });
    row("latency added in front of the slowed dependency (ms)", &|s| s.added_latency_us.map(ms_value));
    row("faults carried out; of them, with writes in flight when they took effect", &|s| {
        let done: Vec<_> =
            s.faults.iter().filter(|e| e.fault.is_some() && e.result == crate::suite::scenarios::OK).collect();
        let counted: Vec<u64> = done.iter().filter_map(|e| e.writes_in_flight).collect();
        (!done.is_empty()).then(|| {
            if counted.len() < done.len() {
                format!("{}; not recorded", done.len())
            } else {
                format!("{}; {}", done.len(), counted.iter().filter(|&&n| n > 0).count())
            }
        })
    });
    row("sequential staleness: ack → first read showing it sent, p50 / p99 (ms)", &|s| {
        s.sequential.as_ref()?.propagation.as_ref().map(|p| format!("{} / {}", ms_value(p.p50_us), ms_value(p.p99_us)))
    });
    let mut loads: Vec<String> = modes.iter().flat_map(|(_, s)| s.loads.keys().cloned()).collect();
    loads.sort_by_key(|k| {
        (k == "saturation", k.trim_start_matches("rate-").parse::<f64>().map(|x| x as u64).unwrap_or(0), k.clone())
    });
    loads.dedup();
    for name in &loads {
        row(&format!("{name}: OK/s"), &|s| s.loads.get(name).map(|l| format!("{:.0}", l.ok_per_s)));
        for op in ["UserOrders", "PlaceOrder"] {
            row(&format!("{name}: {op} p50 / p99 / p99.9 / max (ms), successes only"), &|s| {
                s.loads.get(name)?.ops.get(op).map(|o| {
                    format!(
                        "{} / {} / {} / {}",
                        ms_value(o.p50_us),
                        ms_value(o.p99_us),
                        ms_value(o.p999_us),
                        ms_value(o.max_us)
                    )
                })
            });
            row(
                &format!("{name}: {op} p50 / p99 / p99.9 / max (ms), all requests (failures at their elapsed time)"),
                &|s| {
                    let a = s.loads.get(name)?.ops.get(op)?.all_requests.as_ref()?;
                    Some(format!(
                        "{} / {} / {} / {}",
                        ms_value(a.p50_us),
                        ms_value(a.p99_us),
                        ms_value(a.p999_us),
                        ms_value(a.max_us)
                    ))
                },
            );
            row(&format!("{name}: {op} availability"), &|s| {
                s.loads.get(name)?.ops.get(op).map(|o| percent_one_decimal(o.availability()))
            });
        }
        row(&format!("{name}: errors"), &|s| {
            let l = s.loads.get(name)?;
            let errors: Vec<String> =
                l.all.outcomes.iter().filter(|(k, _)| k.as_str() != "OK").map(|(k, v)| format!("{k} {v}")).collect();
            Some(if errors.is_empty() { "none".into() } else { errors.join(", ") })
        });
        row(&format!("{name}: failures took p50 / max (ms)"), &|s| {
            let l = s.loads.get(name)?;
            (l.all.ok < l.all.attempted)
                .then(|| format!("{} / {}", ms_value(l.all.failed_p50_us), ms_value(l.all.failed_max_us)))
        });
        row(&format!("{name}: most in flight"), &|s| s.loads.get(name).map(|l| l.max_in_flight.to_string()));
        row(&format!("{name}: generator send lag p50 / p99 / max (ms); sent > 1 ms late"), &|s| {
            let l = s.loads.get(name).filter(|l| l.kind == "open")?;
            Some(format!(
                "{} / {} / {}; {} ({} of {})",
                ms_value(l.send_lag.p50_us),
                ms_value(l.send_lag.p99_us),
                ms_value(l.send_lag.max_us),
                percent(l.late_share()),
                l.send_lag.late_over_1ms,
                l.scheduled
            ))
        });
    }
    let mut counted: Vec<String> = modes.iter().flat_map(|(_, s)| s.partial_answers.keys().cloned()).collect();
    counted.sort();
    counted.dedup();
    for name in &counted {
        row(&format!("{name}: UserOrders answered partial (degraded: no product details), among the OK"), &|s| {
            s.partial_answers.get(name).map(u64::to_string)
        });
    }
    row("availability while the first fault lasted", &|s| {
        let (from, to, what) = verdicts::fault_windows(s).into_iter().next()?;
        verdicts::availability_between(s, from, to).map(|a| format!("{} ({what})", percent_one_decimal(a)))
    });
    row("availability while each fault lasted", &|s| {
        let windows = verdicts::fault_windows(s);
        (windows.len() > 1).then(|| {
            let each: Vec<String> = windows
                .into_iter()
                .filter_map(|(from, to, what)| {
                    verdicts::availability_between(s, from, to).map(|a| format!("{} ({what})", percent_one_decimal(a)))
                })
                .collect();
            each.join("; ")
        })
    });
    row("broker cluster: nodes; JetStream meta leader before the load", &|s| {
        let c = s.cluster.as_ref()?;
        Some(format!("{}; {}", c.nodes, c.meta_leader_before.as_deref().unwrap_or("none")))
    });
    row("event stream before the load → after the repairs (replicas, leader, followers)", &|s| {
        let c = s.cluster.as_ref()?;
        Some(format!("{} → {}", c.before.as_ref()?.describe(), c.after.as_ref().map_or("-".into(), |p| p.describe())))
    });
    row(
        &format!(
            "most events waiting in the outboxes at once during the load (Admin.Stats, read every {} ms)",
            crate::suite::cluster::OUTBOX_EVERY.as_millis()
        ),
        &|s| s.cluster.as_ref()?.outbox_peak.map(|n| n.to_string()),
    );
    row("query replicas; shards of each owner; the instances killed alone, in turn", &|s| {
        let q = s.replicas.as_ref()?;
        let killed: Vec<&str> = q.kills.iter().map(|k| k.instance.as_str()).collect();
        let killed = if killed.is_empty() { "none".to_owned() } else { killed.join(", ") };
        Some(format!("{}; {}; {killed}", q.replicas, q.shards))
    });
    let per_kill = |s: &ScenarioResult, figure: &dyn Fn(&crate::suite::replicas::ReplicaKill) -> String| {
        let q = s.replicas.as_ref().filter(|q| !q.kills.is_empty())?;
        Some(q.kills.iter().map(|k| format!("{} {}", k.instance, figure(k))).collect::<Vec<_>>().join("; "))
    };
    row("requests the lab's client sent straight to the killed instance's service that failed UNAVAILABLE at its connection while it was down (a replica: sent to it before the balancer dropped it; a shard: those naming an entity it holds, not the ones a service in between failed for it), and from its kill to the last of them (ms)", &|s| {
        per_kill(s, &|k| {
            let last = k.errors_for_ms.map_or("none failed".to_owned(), |ms| format!("last at {ms} ms"));
            format!("{} ({last})", k.failed_while_down)
        })
    });
    row("requests whose turn was the killed instance's, sent to another while it was down (a query replica's, an owner's creates: never sent to it)", &|s| {
        per_kill(s, &|k| k.moved_while_down.to_string())
    });
    row("requests failed UNAVAILABLE at that balancer from the restart to the next kill (or the end)", &|s| {
        per_kill(s, &|k| k.failed_after_restart.to_string())
    });
    row(&format!("staleness p50 / p99 (ms): {}", probe::Measure::FirstReadSent.label()), &|s| {
        s.staleness.as_ref().map(|st| {
            let old = match st.measure {
                probe::Measure::FirstReadSent => String::new(),
                old => format!(" (older file: {})", old.label()),
            };
            format!("{} / {}{old}", ms_value(st.visible.p50_us), ms_value(st.visible.p99_us))
        })
    });
    row("staleness resolution p50 / p99 (ms): last read that did not show it → first that did", &|s| {
        let r = s.staleness.as_ref()?.resolution.as_ref()?;
        Some(format!("{} / {}", ms_value(r.p50_us), ms_value(r.p99_us)))
    });
    row("probes stale on their first read / visible; reads per probe mean, max; reads failed", &|s| {
        let st = s.staleness.as_ref()?;
        let reads = st.reads_per_probe?;
        Some(format!(
            "{} / {}; {:.1}, {}; {} (a probe every {} ms)",
            st.stale, st.visible.ok, reads.mean, reads.max, st.reads_failed, st.every_ms
        ))
    });
    row("probe writes never visible", &|s| s.staleness.as_ref().map(|st| st.never_visible.to_string()));
    row("converged: last repair → end of the clean comparison (ms, ± one comparison)", &|s| match &s.convergence {
        Some(c) if c.clean_at_first_check => Some(format!(
            "{} (clean at the first check: by {} ms; it began {} ms after the repair)",
            c.converged,
            c.time_ms,
            c.first_check_ms.unwrap_or(0)
        )),
        Some(c) => Some(format!("{} ({} ± {} ms)", c.converged, c.time_ms, c.resolution_ms)),
        None => s.losses.as_ref().map(|_| "not applicable".into()),
    });
    row("missing / extra / wrong rows", &|s| {
        s.convergence.as_ref().map(|c| format!("{} / {} / {}", c.diff.missing, c.diff.extra, c.diff.wrong))
    });
    row("acknowledged orders lost / duplicated / phantom; dead letters", &|s| {
        s.losses.as_ref().map(|l| {
            format!("{} / {} / {} of {}; {}", l.lost, l.duplicated, l.phantom, l.acknowledged_orders, l.dead_letters)
        })
    });
    row("RPCs per UserOrders / PlaceOrder / UpdatePrice", &|s| {
        let f = s.fanout.as_ref()?;
        let g = |op: &str| f.rpcs_per_request.get(op).copied().unwrap_or(0.0);
        Some(format!("{:.2} / {:.2} / {:.2}", g("UserOrders"), g("PlaceOrder"), g("UpdatePrice")))
    });
    row("events published / applied per write", &|s| {
        s.fanout.as_ref().map(|f| format!("{:.2} / {:.2}", f.events_published_per_write, f.events_applied_per_write))
    });
    row("logical bytes (keys + values in sled trees)", &|s| {
        s.logical_totals().map(|per| {
            format!(
                "{} ({})",
                per.values().sum::<u64>(),
                per.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            )
        })
    });
    row("bytes on disk (file sizes)", &|s| {
        s.storage.as_ref().map(|b| {
            format!(
                "{} ({})",
                b.values().sum::<u64>(),
                b.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            )
        })
    });
    row("CPU seconds of the services and broker (a restarted process from its start)", &|s| {
        (!s.resources.is_empty()).then(|| format!("{:.2}", s.resources.values().map(|u| u.cpu_s).sum::<f64>()))
    });
    row("saturation: CPU seconds of the services and broker over that run alone; per request it served (µs)", &|s| {
        let cpu = s.saturation_cpu_s?;
        Some(
            price::cpu_per_request_us(s)
                .map_or_else(|why| format!("{cpu:.2}; {why}"), |us| format!("{cpu:.2}; {us:.0}")),
        )
    });
    row("CPU seconds of the lab process (load generator, probe, checker)", &|s| {
        s.generator_cpu_s.map(|cpu| format!("{cpu:.2}"))
    });
    let mib = |kib: u64| format!("{:.0}", kib as f64 / 1024.0);
    row(
        &format!(
            "peak RSS during the load, VmRSS sampled every {} ms (MiB)",
            crate::suite::resources::SAMPLE_EVERY.as_millis()
        ),
        &|s| {
            let peaks: Vec<String> =
                s.resources.iter().filter_map(|(k, u)| Some(format!("{k} {}", mib(u.load_peak_rss_kib?)))).collect();
            (!peaks.is_empty()).then(|| peaks.join(", "))
        },
    );
    row("lifetime peak RSS, seeding included (VmHWM, MiB)", &|s| {
        (!s.resources.is_empty()).then(|| {
            s.resources.iter().map(|(k, u)| format!("{k} {}", mib(u.peak_rss_kib))).collect::<Vec<_>>().join(", ")
        })
    });
    row("faults applied", &|s| {
        // A long schedule (the soak's) is summed up; every step is in the results file.
        if s.faults.len() > 12 {
            let ok = s.faults.iter().filter(|f| f.result == crate::suite::scenarios::OK).count();
            return Some(format!(
                "{} steps (faults and repairs), {ok} done; each is listed in results.json",
                s.faults.len()
            ));
        }
        (!s.faults.is_empty()).then(|| {
            s.faults
                .iter()
                .map(|f| format!("{} at {:.1} s ({})", f.action, f.t_ms as f64 / 1000.0, f.result))
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    row("swarm target: task replaced by swarm, fault → serving again", &|s| s.describe_self_heals());
    rows
}

/// kill-replica beside the scenarios that kill a whole service, per variant that ran
/// both (round 1): the share of requests served while one of two instances was down
/// against while every instance was (kill-dependency for users and products,
/// kill-query for query; nothing kills orders alone).
fn replica_against_single(r: &Results, modes: &[(&str, &ScenarioResult)]) -> Option<String> {
    let windows = |s: &ScenarioResult| -> Vec<(String, f64)> {
        let windows = verdicts::fault_windows(s).into_iter();
        windows.filter_map(|(from, to, what)| Some((what, verdicts::availability_between(s, from, to)?))).collect()
    };
    let parts: Vec<String> = modes
        .iter()
        .filter_map(|(label, replica)| {
            let singles: Vec<(String, f64)> = [Scenario::KillDependency, Scenario::KillQuery]
                .into_iter()
                .filter_map(|scenario| r.scenario_with(scenario, replica.mode, replica.policy))
                .flat_map(windows)
                .collect();
            let rows: Vec<String> = windows(replica)
                .into_iter()
                .map(|(what, two)| {
                    let service = what.split_once(' ').map_or(what.as_str(), |(t, _)| t);
                    let service = common::names::replica_of(service).unwrap_or(service);
                    let kind = if service == common::names::QUERY { "replicas" } else { "shards" };
                    let single = singles.iter().find(|(w, _)| w.split_once(' ').is_some_and(|(t, _)| t == service));
                    let against = single.map_or(String::new(), |(w, one)| {
                        format!(" against {} while {w} (every instance of it)", percent_one_decimal(*one))
                    });
                    format!("{} while {what} (one of two {kind}){against}", percent_one_decimal(two))
                })
                .collect();
            (!rows.is_empty()).then(|| format!("{label}: {}", rows.join(", ")))
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "Requests served (every request of the mix counted, as in the availability rows), against kill-dependency and kill-query of the same run: {}.",
            parts.join("; ")
        )
    })
}

/// The soak's figures, a row per mode.
fn soak_table(modes: &[(&str, &ScenarioResult)]) -> Option<Block> {
    let rows: Vec<Vec<String>> = modes
        .iter()
        .filter_map(|(mode, s)| {
            let k = s.soak.as_ref()?;
            let kinds =
                ["kill", "pause", "restart"].map(|kind| k.faults_done.get(kind).copied().unwrap_or(0).to_string());
            let by_rpc = |m: &std::collections::BTreeMap<String, usize>| {
                m.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
            };
            Some(vec![
                mode.to_string(),
                format!("{} ({})", k.faults(), kinds.join(" / ")),
                k.broker_faults_skipped.to_string(),
                k.faults_failed.to_string(),
                format!("{:.0}% ({} of {})", 100.0 * k.in_flight_share(), k.faults_with_writes_in_flight, k.faults()),
                format!("{} ({})", k.acknowledged_writes(), by_rpc(&k.acknowledged)),
                format!("{} ({})", k.in_doubt_writes(), by_rpc(&k.in_doubt)),
                k.lost.to_string(),
                k.duplicated.to_string(),
                k.phantom.to_string(),
                k.wrong.to_string(),
                k.dead_letters.to_string(),
                s.convergence.as_ref().map_or("-".into(), |c| {
                    format!(
                        "{} ({} ms, ±{} ms)",
                        if c.converged { "yes" } else { "**no**" },
                        c.time_ms,
                        c.resolution_ms
                    )
                }),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| {
        let head = [
            "mode",
            "faults done (kill / pause / restart)",
            "broker faults skipped (no broker)",
            "faults failed or not applied",
            "faults that took effect with writes in flight",
            "writes acknowledged",
            "writes in doubt (error or timeout)",
            "lost",
            "duplicated",
            "phantom rows",
            "wrong",
            "dead letters",
            "view = owners after the last repair (± one comparison)",
        ];
        Block::Table(head.map(String::from).to_vec(), rows)
    })
}

/// The load curve's and the orders-per-user curve's tables and charts, for the modes
/// that have them.
fn curve_blocks(modes: &[(&str, &ScenarioResult)], d: &mut Vec<Block>) {
    use crate::suite::curves::{knee, Knee};
    let curves: Vec<(&str, &crate::suite::curves::LoadCurve)> =
        modes.iter().filter_map(|(m, s)| Some((*m, s.load_curve.as_ref()?))).collect();
    if !curves.is_empty() {
        d.push(Block::Para(format!(
            "Latencies are counted from each request's intended send time, over all requests (a failure at its elapsed time; a request the generator shed is counted, not timed). Each rung lasted {} s at a fraction of the saturation that mode's own closed-loop run measured, on the same topology, lowest first; before each rung, async's outboxes and consumers were let drain. By the rule used here, {}. The data grows as the ladder climbs: every rung's `PlaceOrder`s add orders.",
            curves[0].1.step_ms as f64 / 1000.0,
            crate::suite::curves::KNEE_RULE
        )));
        d.push(Block::Table(
            [
                "mode",
                "saturation: ok/s of the closed-loop run (clients, s)",
                "knee: offered rate (× saturation)",
                "past the knee (the next rung)",
            ]
            .map(String::from)
            .to_vec(),
            curves
                .iter()
                .map(|(m, c)| {
                    let (at, past) = c.describe_knee();
                    vec![
                        m.to_string(),
                        format!(
                            "{:.0} ({}, {:.1} s)",
                            c.saturation_ok_per_s,
                            c.saturation_clients,
                            c.saturation_ms as f64 / 1000.0
                        ),
                        at,
                        past,
                    ]
                })
                .collect(),
        ));
        let lines: Vec<charts::Curve> = curves
            .iter()
            .map(|(m, c)| charts::Curve {
                mode: m,
                points: c
                    .rungs
                    .iter()
                    .map(|r| (r.offered_per_s, r.all_p50_us as f64 / 1000.0, r.all_p99_us as f64 / 1000.0))
                    .collect(),
                mark: match knee(&c.rungs) {
                    Knee::At(i) => Some(c.rungs[i].offered_per_s),
                    Knee::NoRungs | Knee::BelowLowest => None,
                },
            })
            .collect();
        d.push(Block::Chart(
            "load-curve".into(),
            charts::load_curve("load-curve: latency of all requests against offered load (knee circled)", &lines),
        ));
        let head = [
            "mode",
            "× saturation",
            "offered (req/s)",
            "ok/s",
            "all requests p50 / p99 (ms)",
            "successes p50 / p99 (ms)",
            "failed",
            "shed by the generator",
            "sent > 1 ms late",
            "orders added",
        ];
        let rows = curves
            .iter()
            .flat_map(|(m, c)| {
                c.rungs.iter().map(move |r| {
                    vec![
                        m.to_string(),
                        format!("{:.2}", r.fraction),
                        format!("{:.0}", r.offered_per_s),
                        format!("{:.0}", r.goodput_per_s),
                        format!("{} / {}", ms_value(r.all_p50_us), ms_value(r.all_p99_us)),
                        format!("{} / {}", ms_value(r.ok_p50_us), ms_value(r.ok_p99_us)),
                        percent(r.failed_share),
                        percent(r.shed_share),
                        percent(r.late_share),
                        r.orders_placed.to_string(),
                    ]
                })
            })
            .collect();
        d.push(Block::Table(head.map(String::from).to_vec(), rows));
    }
    let sizes: Vec<(&str, &Vec<crate::suite::curves::OrdersPerUser>)> =
        modes.iter().filter_map(|(m, s)| Some((*m, s.orders_per_user.as_ref()?))).collect();
    if !sizes.is_empty() {
        d.push(Block::Para(format!(
            "Each read is sent when the last has answered; its latency is from send to answer, of the successes. The chain of sync and bus-rpc asks `orders.ListOrdersByUser` for pages of up to {} orders, so its calls per read grow by one for every {} orders the user has; async's query service and the monolith answer without calling another service.",
            common::names::MAX_ORDERS_PAGE_SIZE,
            common::names::MAX_ORDERS_PAGE_SIZE
        )));
        let lines: Vec<charts::Curve> = sizes
            .iter()
            .map(|(m, points)| charts::Curve {
                mode: m,
                points: points
                    .iter()
                    .map(|p| (p.orders as f64, p.reads.p50_us as f64 / 1000.0, p.reads.p99_us as f64 / 1000.0))
                    .collect(),
                mark: None,
            })
            .collect();
        d.push(Block::Chart(
            "orders-per-user".into(),
            charts::count_curve(
                "orders-per-user: sequential UserOrders latency against the user's orders",
                "orders the user has (log scale)",
                "UserOrders latency (ms), successes",
                &lines,
            ),
        ));
        let mut rows = Vec::new();
        let mut all: Vec<usize> = sizes.iter().flat_map(|(_, p)| p.iter().map(|x| x.orders)).collect();
        all.sort_unstable();
        all.dedup();
        for size in all {
            for (m, points) in &sizes {
                let Some(p) = points.iter().find(|p| p.orders == size) else { continue };
                let hops: Vec<String> = p.calls_by_hop.iter().map(|(h, n)| format!("{h} {n:.2}")).collect();
                rows.push(vec![
                    size.to_string(),
                    m.to_string(),
                    p.items.to_string(),
                    format!("{} / {}", ms_value(p.reads.p50_us), ms_value(p.reads.p99_us)),
                    format!("{} of {}", p.reads.ok, p.reads.attempted),
                    if hops.is_empty() {
                        format!("{:.2}", p.calls_per_read)
                    } else {
                        format!("{:.2} ({})", p.calls_per_read, hops.join(", "))
                    },
                    p.visible_after_ms.to_string(),
                ]);
            }
        }
        d.push(Block::Table(
            [
                "orders of the user",
                "mode",
                "items in the reply",
                "UserOrders p50 / p99 (ms), successes",
                "reads ok",
                "inter-service calls per read (by hop), counted by the services",
                "last order acknowledged → all shown (ms)",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        ));
    }
}

/// How a policy's figure is set beside its mode's naive one.
#[derive(Clone, Copy)]
enum Beside {
    /// The share of async's lead over the naive chain it recovered, when that lead is
    /// at least this large.
    Recovered { least_lead: f64 },
    /// Its ratio to the naive chain's (a cost).
    Ratio,
    /// Alone.
    Alone,
}

/// The share of async's lead over the naive chain that a policy recovered: (policy −
/// naive) ÷ (async − naive); `None` when the lead is below `least_lead`.
pub fn recovered(naive: f64, policy: f64, r#async: f64, least_lead: f64) -> Option<f64> {
    let lead = r#async - naive;
    (lead.abs() >= least_lead && lead != 0.0).then(|| (policy - naive) / lead)
}

/// The Policies section's table: a row per figure, a column per variant of the run.
fn policies_table(r: &Results) -> Option<Block> {
    let variants = r.variants();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |label: String,
                   scenario: Scenario,
                   beside: Beside,
                   figure: &dyn Fn(&ScenarioResult) -> Option<f64>,
                   show: &dyn Fn(f64) -> String| {
        let value = |m: Mode, p: Policy| r.scenario_with(scenario, m, p).and_then(figure);
        let cells: Vec<String> = variants
            .iter()
            .map(|&(m, p)| {
                if let Some(reason) = verdicts::does_not_apply(r, scenario, m) {
                    return reason;
                }
                let Some(v) = value(m, p) else { return "-".into() };
                let naive = value(m, Policy::Naive).filter(|_| p != Policy::Naive);
                match (beside, naive) {
                    (Beside::Recovered { least_lead }, Some(naive)) => match value(Mode::Async, Policy::Naive) {
                        Some(a) => match recovered(naive, v, a, least_lead) {
                            Some(share) => format!("{}; recovers {} of async's lead", show(v), percent(share)),
                            None => format!("{}; async had no lead to recover", show(v)),
                        },
                        None => show(v),
                    },
                    (Beside::Ratio, Some(naive)) if naive > 0.0 => format!("{} ({:.2}× naive)", show(v), v / naive),
                    _ => show(v),
                }
            })
            .collect();
        if cells.iter().any(|c| c != "-" && !c.starts_with(crate::suite::scenarios::DOES_NOT_APPLY)) {
            let mut cells = cells;
            cells.insert(0, label);
            rows.push(cells);
        }
    };
    let share = |v: f64| percent_one_decimal(v);
    for scenario in HEADLINE_FAULTS.into_iter().chain([Scenario::Partition]) {
        let mut windows: Vec<String> = Vec::new();
        for &(m, p) in &variants {
            for (_, _, what) in r.scenario_with(scenario, m, p).map(verdicts::fault_windows).unwrap_or_default() {
                if !windows.contains(&what) {
                    windows.push(what);
                }
            }
        }
        for what in &windows {
            row(
                format!("{scenario}: served while {what} (of the requests sent in the window)"),
                scenario,
                Beside::Recovered { least_lead: 0.01 },
                &|s| verdicts::served_while(s, what),
                &share,
            );
        }
    }
    row(
        format!("{}: UserOrders answered partial (degraded), over the run", Scenario::KillDependency),
        Scenario::KillDependency,
        Beside::Alone,
        &|s| s.partial_answers.get("run").map(|&n| n as f64),
        &|v| format!("{v:.0}"),
    );
    row(
        format!("{}: UserOrders p50 added by the slowed dependency (ms)", Scenario::SlowDependency),
        Scenario::SlowDependency,
        Beside::Recovered { least_lead: 100.0 },
        &verdicts::slowed_minus_baseline,
        &|us| ms_value(us),
    );
    row(
        format!("{}: sequential UserOrders p50 (ms)", Scenario::Steady),
        Scenario::Steady,
        Beside::Ratio,
        &|s| s.sequential.as_ref().map(|l| l.user_orders.p50_us as f64),
        &|us| ms_value(us),
    );
    row(
        format!("{}: saturation, successes/s of the closed-loop run", Scenario::Steady),
        Scenario::Steady,
        Beside::Ratio,
        &|s| s.loads.get("saturation").map(|l| l.ok_per_s),
        &|v| format!("{v:.0}"),
    );
    row(
        format!("{}: CPU µs of the services and broker per request served, over the saturation run", Scenario::Steady),
        Scenario::Steady,
        Beside::Ratio,
        &|s| price::cpu_per_request_us(s).ok(),
        &|v| format!("{v:.0}"),
    );
    row(
        format!("{}: inter-service calls per client request during the blip", Scenario::OverloadBlip),
        Scenario::OverloadBlip,
        Beside::Alone,
        &|s| s.blip.as_ref()?.phases.iter().find(|p| p.name == "during")?.amplification(),
        &|v| format!("{v:.2}"),
    );
    (!rows.is_empty()).then(|| {
        let mut head = vec!["figure".to_string()];
        head.extend(variants.iter().map(|&(m, p)| crate::suite::variant_label(m, p)));
        Block::Table(head, rows)
    })
}

/// overload-blip's goodput chart (every variant on one page) and table.
fn blip_blocks(modes: &[(&str, &ScenarioResult)], d: &mut Vec<Block>) {
    use crate::suite::blip::{self, Phase};
    let blips: Vec<(&str, &ScenarioResult, &blip::Blip)> =
        modes.iter().filter_map(|(m, s)| Some((*m, *s, s.blip.as_ref()?))).collect();
    let Some(&(_, first_run, first)) = blips.first() else { return };
    let secs = |ms: u64| ms as f64 / 1000.0;
    let end_ms = first_run.loads.get(blip::LOAD).map_or(first.to_ms, |l| l.duration_ms);
    d.push(Block::Para(format!(
        "Each variant on a fresh topology: its saturation measured by {} closed-loop clients for {:.1} s; then the lab waits until the work that run left behind is done (async's outboxes, broker and consumers; nothing in the request/reply modes) and takes the rate the variant sustains as the run's successes ÷ (its length + that drain), so that work a reply leaves behind is paid for (results from before this say so: they took the saturation itself); then the workload open-loop at {:.2} × the sustained rate; after {:.1} s, `{}` on products' proxy (in bus-rpc mode on its link to the broker too) for {:.1} s, then healed, and {:.1} s more (as run in {}). Goodput: successes per second in each 100 ms bucket, by intended send time. Calls per client request: the inter-service calls the services sent over the phase (`Admin.Stats` `rpcs_sent`: every attempt, retries included; a call an open breaker refused is not sent) ÷ the client requests intended in the phase and sent. By the rule used here, {}.",
        first.saturation_clients,
        secs(first.saturation_ms),
        first.load_share,
        secs(first.from_ms),
        first.fault,
        secs(first.to_ms.saturating_sub(first.from_ms)),
        secs(end_ms.saturating_sub(first.to_ms)),
        blips[0].0,
        blip::RECOVERY_RULE
    )));
    let timelines: Vec<(&str, u64, &[bench::load::Bucket])> = blips
        .iter()
        .filter_map(|(m, s, _)| {
            let l = s.loads.get(blip::LOAD)?;
            Some((*m, l.timeline_bucket_ms, l.timeline.as_slice()))
        })
        .collect();
    let window = vec![(secs(first.from_ms), secs(first.to_ms), format!("blip: {}", first.fault))];
    d.push(Block::Chart(
        "overload-blip-goodput".into(),
        charts::goodput(
            "overload-blip: goodput per 100 ms (successes/s by intended send time), blip shaded",
            &timelines,
            &window,
        ),
    ));
    let phases = |b: &blip::Blip, f: &dyn Fn(&Phase) -> String| b.phases.iter().map(f).collect::<Vec<_>>().join(" / ");
    let total = |b: &blip::Blip, f: fn(&Phase) -> u64| b.phases.iter().map(f).sum::<u64>().to_string();
    let rows = blips
        .iter()
        .map(|(m, s, b)| {
            vec![
                m.to_string(),
                match b.sustained_ok_per_s > 0.0 {
                    true => format!(
                        "{:.0} → {:.0} (drained in {} ms) → {:.0}",
                        b.saturation_ok_per_s, b.sustained_ok_per_s, b.drain_ms, b.offered_per_s
                    ),
                    false => {
                        format!("{:.0} → not measured (older results) → {:.0}", b.saturation_ok_per_s, b.offered_per_s)
                    }
                },
                b.recovery.describe(),
                phases(b, &|p| p.amplification().map_or("-".into(), |a| format!("{a:.2}"))),
                phases(b, &|p| p.retries_sent.to_string()),
                total(b, |p| p.breaker_rejections),
                total(b, |p| p.requests_shed),
                phases(b, &|p| format!("{} of {}", p.ok, p.client_requests)),
                s.partial_answers.get(blip::LOAD).map_or("-".into(), u64::to_string),
            ]
        })
        .collect();
    d.push(Block::Table(
        [
            "variant",
            "saturation (ok/s) → sustained (ok/s) → offered (req/s)",
            "recovery after the blip",
            "inter-service calls per client request, before / during / after",
            "retries sent, before / during / after",
            "calls refused by an open breaker (not sent)",
            "requests shed by a server at its limit",
            "client requests ok of sent, before / during / after",
            "UserOrders answered partial",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    ));
}

fn scenario_charts(name: &str, modes: &[(&str, &ScenarioResult)], d: &mut Vec<Block>) {
    let with_run: Vec<(&str, &ScenarioResult)> =
        modes.iter().copied().filter(|(_, s)| s.loads.contains_key("run")).collect();
    if !with_run.is_empty() {
        let timelines: Vec<(&str, u64, &[bench::load::Bucket])> = with_run
            .iter()
            .map(|(m, s)| {
                let l = &s.loads["run"];
                (*m, l.timeline_bucket_ms, l.timeline.as_slice())
            })
            .collect();
        let windows: Vec<(f64, f64, String)> = with_run
            .iter()
            .find(|(_, s)| !verdicts::fault_windows(s).is_empty())
            .map(|(_, s)| {
                verdicts::fault_windows(s)
                    .into_iter()
                    .map(|(a, b, w)| (a as f64 / 1000.0, b as f64 / 1000.0, w))
                    .collect()
            })
            .unwrap_or_default();
        d.push(Block::Chart(
            format!("{name}-throughput"),
            charts::timeline(&format!("{name}: successes and errors per second (faults shaded)"), &timelines, &windows),
        ));
        d.push(Block::Chart(
            format!("{name}-p99"),
            charts::p99_timeline(
                &format!("{name}: p99 per 100 ms, of successes (a gap: none succeeded) and of all requests"),
                &timelines,
                &windows,
            ),
        ));
    }
    if name == "steady" {
        let mut series = Vec::new();
        for (m, s) in modes {
            if let Some(l) = &s.sequential {
                series.push((format!("{m} UserOrders"), *m, &l.user_orders));
                series.push((format!("{m} PlaceOrder"), *m, &l.place_order));
            }
        }
        if !series.is_empty() {
            d.push(Block::Chart(
                "steady-spectrum".into(),
                charts::spectrum("steady: sequential latency by percentile", &series),
            ));
        }
        // Bars on a linear scale: a staleness of 0 (a mode that reads its own writes) is
        // a figure, and a log scale cannot draw it.
        let staleness: Vec<(&str, &probe::Staleness)> =
            modes.iter().filter_map(|(m, s)| Some((*m, s.staleness.as_ref()?))).collect();
        if let Some((_, first)) = staleness.first() {
            let percentiles: Vec<String> = ["p50", "p90", "p99", "p99.9", "max"].map(String::from).to_vec();
            let values: Vec<(&str, Vec<f64>)> = staleness
                .iter()
                .map(|(m, st)| {
                    let v = &st.visible;
                    (*m, [v.p50_us, v.p90_us, v.p99_us, v.p999_us, v.max_us].map(|us| us as f64 / 1000.0).to_vec())
                })
                .collect();
            d.push(Block::Chart(
                "steady-staleness".into(),
                charts::bars(&format!("steady: staleness, {}", first.measure.label()), &percentiles, &values, "ms"),
            ));
        }
    }
    if name == "storage" {
        let mut components: Vec<String> =
            modes.iter().flat_map(|(_, s)| s.storage.iter().flat_map(|b| b.keys().cloned())).collect();
        components.sort();
        components.dedup();
        let values: Vec<(&str, Vec<f64>)> = modes
            .iter()
            .filter_map(|(m, s)| {
                let b = s.storage.as_ref()?;
                Some((*m, components.iter().map(|c| b.get(c).copied().unwrap_or(0) as f64 / 1e6).collect()))
            })
            .collect();
        if !values.is_empty() {
            d.push(Block::Chart(
                "storage".into(),
                charts::bars("storage: bytes on disk (file sizes) per component", &components, &values, "MB"),
            ));
        }
        let logical: Vec<(&str, Vec<f64>)> = modes
            .iter()
            .filter_map(|(m, s)| {
                let per = s.logical_totals()?;
                Some((*m, components.iter().map(|c| per.get(c).copied().unwrap_or(0) as f64 / 1e6).collect()))
            })
            .collect();
        if !logical.is_empty() {
            d.push(Block::Chart(
                "storage-logical".into(),
                charts::bars(
                    "storage: logical bytes (keys + values in sled trees) per component",
                    &components,
                    &logical,
                    "MB",
                ),
            ));
        }
    }
}

/// Writes `report.md`, `report.html` and `charts/*.svg` into `dir`.
pub fn write(r: &Results, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let rendered = render(r);
    let charts = dir.join("charts");
    std::fs::create_dir_all(&charts)?;
    for (name, svg) in &rendered.charts {
        std::fs::write(charts.join(name), svg)?;
    }
    let (md, html) = (dir.join("report.md"), dir.join("report.html"));
    std::fs::write(&md, &rendered.markdown)?;
    std::fs::write(&html, &rendered.html)?;
    Ok((md, html))
}

/// How much worse a figure may get before it is flagged: 20 %.
const REGRESSION_SHARE: f64 = 0.2;

/// Which way a compared figure improves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Better {
    /// A cost: latency.
    Lower,
    /// A benefit: availability.
    Higher,
}

/// The one rule for "regression", behind both a row's flag and the count in the
/// summary line (see [`Comparison::row`]): a figure more than 20 % worse (from 0, any
/// growth of a cost), or any count of losses that grew.
enum Change<'a> {
    Figure { old: f64, new: f64, better: Better },
    Losses { old: &'a [u64], new: &'a [u64] },
}

impl Change<'_> {
    fn is_regression(&self) -> bool {
        match *self {
            // From nothing, any growth of a cost is a regression.
            Change::Figure { old: 0.0, new, better } => better == Better::Lower && new > 0.0,
            Change::Figure { old, new, better: Better::Lower } => (new - old) / old > REGRESSION_SHARE,
            Change::Figure { old, new, better: Better::Higher } => (new - old) / old < -REGRESSION_SHARE,
            Change::Losses { old, new } => new.iter().zip(old).any(|(new, old)| new > old),
        }
    }

    /// The "change" cell: the relative change of a figure (0 from 0), nothing for counts.
    fn cell(&self) -> String {
        match *self {
            Change::Figure { old, new, .. } => {
                format!("{:+.0}%", if old == 0.0 { 0.0 } else { 100.0 * (new - old) / old })
            }
            Change::Losses { .. } => String::new(),
        }
    }
}

/// The compare table being written, and how many of its rows it flagged.
struct Comparison {
    out: String,
    regressions: usize,
}

impl Comparison {
    /// One row; flagged, and counted, exactly when its change is a regression.
    fn row(&mut self, n: &ScenarioResult, figure: &str, old: &str, new: &str, change: Change) {
        let regressed = change.is_regression();
        self.regressions += usize::from(regressed);
        let cell = match (change.cell(), regressed) {
            (cell, false) => cell,
            (cell, true) if cell.is_empty() => "**regression**".into(),
            (cell, true) => format!("{cell} **regression**"),
        };
        writeln!(self.out, "| {} | {} | {figure} | {old} | {new} | {cell} |", n.scenario, n.label()).ok();
    }

    /// A row for a figure both runs have; none if either lacks it.
    fn figure(&mut self, n: &ScenarioResult, figure: &str, old: Option<f64>, new: Option<f64>, better: Better) {
        if let (Some(old), Some(new)) = (old, new) {
            self.row(n, figure, &format!("{old:.2}"), &format!("{new:.2}"), Change::Figure { old, new, better });
        }
    }

    /// A row of loss counts, written "a / b / …".
    fn losses(&mut self, n: &ScenarioResult, figure: &str, old: &[u64], new: &[u64]) {
        let show = |counts: &[u64]| counts.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
        self.row(n, figure, &show(old), &show(new), Change::Losses { old, new });
    }
}

/// What changed between two runs: the headline latencies, availabilities and losses
/// side by side, with regressions (more than 20 % worse, or any new loss) flagged.
pub fn compare(old: &Results, new: &Results) -> String {
    let e = |r: &Results| {
        format!("{} ({} target, {} build)", r.environment.commit, r.environment.target, r.environment.build_profile)
    };
    let mut table = Comparison { out: String::new(), regressions: 0 };
    writeln!(table.out, "# Cascade: {} → {}\n", e(old), e(new)).ok();
    writeln!(table.out, "| scenario | mode | figure | old | new | change |\n| --- | --- | --- | --- | --- | --- |")
        .ok();
    for n in &new.scenarios {
        let Some(o) = old
            .scenarios
            .iter()
            .find(|o| (&o.scenario, &o.mode, o.policy, o.round) == (&n.scenario, &n.mode, n.policy, n.round))
        else {
            continue;
        };
        let seq = |s: &ScenarioResult, f: fn(&crate::latency::Latencies) -> u64| {
            s.sequential.as_ref().map(|l| f(l) as f64 / 1000.0)
        };
        table.figure(
            n,
            "sequential UserOrders p50 (ms)",
            seq(o, |l| l.user_orders.p50_us),
            seq(n, |l| l.user_orders.p50_us),
            Better::Lower,
        );
        table.figure(
            n,
            "sequential PlaceOrder p50 (ms)",
            seq(o, |l| l.place_order.p50_us),
            seq(n, |l| l.place_order.p50_us),
            Better::Lower,
        );
        for (name, load) in &n.loads {
            if let Some(before) = o.loads.get(name) {
                table.figure(
                    n,
                    &format!("{name}: p99 of successes (ms)"),
                    Some(before.all.p99_us as f64 / 1000.0),
                    Some(load.all.p99_us as f64 / 1000.0),
                    Better::Lower,
                );
                // Only where both runs timed every request.
                let all_p99 = |s: &bench::Summary| s.all_requests.as_ref().map(|a| a.p99_us as f64 / 1000.0);
                table.figure(
                    n,
                    &format!("{name}: p99 of all requests (ms)"),
                    all_p99(&before.all),
                    all_p99(&load.all),
                    Better::Lower,
                );
                table.figure(
                    n,
                    &format!("{name}: availability"),
                    Some(before.all.availability()),
                    Some(load.all.availability()),
                    Better::Higher,
                );
            }
        }
        if let (Some(a), Some(b)) = (&o.losses, &n.losses) {
            let counts =
                |l: &crate::suite::Losses| [l.lost as u64, l.duplicated as u64, l.phantom as u64, l.dead_letters];
            table.losses(n, "lost / duplicated / phantom / dead letters", &counts(a), &counts(b));
        }
        if let (Some(a), Some(b)) = (&o.soak, &n.soak) {
            let counts = |k: &crate::suite::soak::Soak| {
                [k.lost as u64, k.duplicated as u64, k.phantom as u64, k.wrong as u64, k.dead_letters]
            };
            table.losses(n, "soak lost / duplicated / phantom / wrong / dead letters", &counts(a), &counts(b));
        }
    }
    let Comparison { mut out, regressions } = table;
    writeln!(out, "\n{regressions} regression(s) flagged (20 % worse, or any new loss).").ok();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regression_rule_reads_a_cost_a_benefit_and_losses() {
        let cost = |old, new| Change::Figure { old, new, better: Better::Lower }.is_regression();
        let benefit = |old, new| Change::Figure { old, new, better: Better::Higher }.is_regression();
        assert!(cost(1.0, 1.21) && !cost(1.0, 1.2) && !cost(1.0, 0.5));
        assert!(cost(0.0, 0.01), "a cost that grew from nothing");
        assert!(benefit(1.0, 0.79) && !benefit(1.0, 0.8) && !benefit(0.0, 0.0));
        assert!(Change::Losses { old: &[0, 0], new: &[0, 1] }.is_regression());
        assert!(!Change::Losses { old: &[2, 1], new: &[1, 1] }.is_regression());
    }

    /// The summary line counts exactly the rows it flags. Before, a duplicated order
    /// counted in the summary while its row ("lost / phantom") showed no flag.
    #[test]
    fn the_summary_counts_the_rows_it_flags() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-old.json");
        let old: Results = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture parses");
        let mut new = old.clone();
        let chaos = new.scenarios.iter_mut().find(|s| s.losses.is_some()).expect("a scenario with losses");
        chaos.losses.as_mut().expect("losses").duplicated += 1;
        let table = compare(&old, &new);
        let flagged: Vec<&str> = table.lines().filter(|l| l.contains("**regression**")).collect();
        assert_eq!(flagged.len(), 1, "{table}");
        assert!(
            flagged[0].contains("lost / duplicated / phantom / dead letters | 0 / 0 / 0 / 0 | 0 / 1 / 0 / 0 |"),
            "{table}"
        );
        assert!(table.contains("\n1 regression(s) flagged"), "{table}");
    }
}
