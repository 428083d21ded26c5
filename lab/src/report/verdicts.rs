//! The claims of the learner's notes (and the design's table), each judged from the
//! measured figures. No verdict is written by hand: change the data and the words
//! change.

use common::config::{Mode, Policy};

use super::format::{ms_rounded, ms_signed, percent_one_decimal};
use crate::{
    control::Action,
    latency::CreateThenUse,
    suite::{
        scenarios::{skipped_by_design, DOES_NOT_APPLY, OK, SKIPPED_NO_BROKER},
        Results, Scenario, ScenarioResult,
    },
};

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Confirmed,
    /// A claim about every case ("never") that the runs could have refuted and did
    /// not: that is all a finite number of runs can say of it.
    NotRefuted {
        runs: usize,
    },
    Refuted,
    Inconclusive(String),
}

impl Verdict {
    pub fn word(&self) -> String {
        match self {
            Verdict::Confirmed => "confirmed".into(),
            Verdict::NotRefuted { runs } => format!("not refuted in {runs} run{}", if *runs == 1 { "" } else { "s" }),
            Verdict::Refuted => "refuted".into(),
            Verdict::Inconclusive(why) => format!("inconclusive ({why})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub claim: &'static str,
    /// What measured it: the scenarios, and anything else the claim rests on.
    pub evidence: String,
    /// One cell per mode of the run, in the order of `results.modes`: that mode's
    /// figures, "-" where they were not measured, or why the claim cannot concern it.
    pub cells: Vec<(Mode, String)>,
    pub verdict: Verdict,
    /// One sentence with the numbers.
    pub sentence: String,
}

impl Claim {
    /// The cell of `mode`, if the run had it.
    pub fn cell(&self, mode: Mode) -> Option<&str> {
        self.cells.iter().find(|(m, _)| *m == mode).map(|(_, c)| c.as_str())
    }
}

/// A cell per mode of the run, in its order.
fn per_mode(r: &Results, cell: impl Fn(Mode) -> String) -> Vec<(Mode, String)> {
    r.modes.iter().map(|&m| (m, cell(m))).collect()
}

/// Why `scenario`'s faults did not apply to `mode`, as the run recorded it ("does not
/// apply: monolith mode has no users process"); `None` if they applied or it did not run.
/// Results from before the note was written say it in their fault steps: each fault
/// skipped by design (sync's "skipped: no broker in this mode").
pub fn does_not_apply(r: &Results, scenario: Scenario, mode: Mode) -> Option<String> {
    let s = r.scenario(scenario, mode)?;
    if let Some(reason) = s.note.as_deref().and_then(|n| n.strip_prefix(DOES_NOT_APPLY)) {
        return Some(format!("{DOES_NOT_APPLY}{}", reason.split([':', ';']).next().unwrap_or(reason).trim()));
    }
    let starts_fault =
        |e: &&crate::suite::FaultEvent| Action::parse(&e.action).is_ok_and(|(a, _)| a.window().is_some());
    let faults: Vec<&crate::suite::FaultEvent> = s.faults.iter().filter(starts_fault).collect();
    if faults.is_empty() || !faults.iter().all(|e| skipped_by_design(&e.result)) {
        return None;
    }
    Some(match faults[0].result.as_str() {
        SKIPPED_NO_BROKER => format!("{DOES_NOT_APPLY}{mode} mode has no broker"),
        other => other.to_string(),
    })
}

/// A mode's cell from its run of `scenario`: why the scenario did not apply to it, "-"
/// where it did not run or `figure` finds nothing, else `figure`.
fn scenario_cell(
    r: &Results,
    scenario: Scenario,
    mode: Mode,
    figure: impl Fn(&ScenarioResult) -> Option<String>,
) -> String {
    if let Some(reason) = does_not_apply(r, scenario, mode) {
        return reason;
    }
    r.scenario(scenario, mode).and_then(figure).unwrap_or_else(|| "-".into())
}

/// A change in ms with its sign, whole ms from 10 ms up: "+27 ms", "-0.76 ms".
fn ms_change(us: f64) -> String {
    if us >= 0.0 {
        format!("+{}", ms_rounded(us))
    } else {
        format!("-{}", ms_rounded(-us))
    }
}

/// The window in which `target` was down (from its kill/pause to its restart/resume),
/// in ms from the start of the load.
pub fn fault_windows(s: &ScenarioResult) -> Vec<(u64, u64, String)> {
    let mut windows = Vec::new();
    for (i, e) in s.faults.iter().enumerate() {
        let Ok((action, target)) = Action::parse(&e.action) else { continue };
        // Each fault ends with its own repair.
        let Some((repair, how)) = action.window() else { continue };
        if e.result != OK {
            continue;
        }
        let repair = repair.line(&target);
        let end = s.faults[i + 1..]
            .iter()
            .find(|f| f.result == OK && f.action == repair)
            // On swarm a component can serve again before its restart step is due: its
            // window ends there.
            .map_or_else(
                || s.loads.get("run").map_or(e.t_ms, |l| l.duration_ms),
                |f| f.self_healed.map_or(f.t_ms, |h| h.serving_again_ms.min(f.t_ms)),
            );
        // A fault on a role of a broker cluster says which after its target:
        // `kill nats-2 (the stream's leader)` is "nats-2 killed (the stream's leader)".
        let role = e.action.splitn(3, ' ').nth(2).filter(|rest| rest.starts_with('('));
        windows.push((e.t_ms, end, format!("{target} {how}{}", role.map(|r| format!(" {r}")).unwrap_or_default())));
    }
    windows
}

/// Share of requests intended inside [from, to) ms that succeeded.
pub fn availability_between(s: &ScenarioResult, from: u64, to: u64) -> Option<f64> {
    let run = s.loads.get("run")?;
    let (mut ok, mut all) = (0u64, 0u64);
    for b in run.timeline.iter().filter(|b| b.t_ms >= from && b.t_ms + run.timeline_bucket_ms <= to) {
        ok += b.ok;
        all += b.ok + b.errors.values().sum::<u64>();
    }
    (all > 0).then(|| ok as f64 / all as f64)
}

/// Share of requests served while the window recorded as `what` ("products killed")
/// lasted.
pub fn served_while(s: &ScenarioResult, what: &str) -> Option<f64> {
    let (from, to, _) = fault_windows(s).into_iter().find(|(_, _, w)| w == what)?;
    availability_between(s, from, to)
}

/// A mode's cell: the share served while the first fault of `scenario` lasted.
fn served_in_first_window(r: &Results, scenario: Scenario, mode: Mode) -> String {
    scenario_cell(r, scenario, mode, |s| {
        first_window_availability(s).map(|(a, what, _)| format!("{} served while {what}", percent_one_decimal(a)))
    })
}

/// UserOrders p50 of the slow-dependency scenario's slowed phase less its baseline's, µs.
pub fn slowed_minus_baseline(s: &ScenarioResult) -> Option<f64> {
    let p50 = |phase: &str| s.loads.get(phase)?.ops.get("UserOrders").map(|o| o.p50_us as f64);
    Some(p50("slowed")? - p50("baseline")?)
}

/// A mode's cell: how much UserOrders p50 rose with the dependency slowed.
fn slowed_cell(r: &Results, mode: Mode) -> String {
    scenario_cell(r, Scenario::SlowDependency, mode, |s| {
        slowed_minus_baseline(s).map(|d| format!("UserOrders p50 {}", ms_change(d)))
    })
}

/// Availability while the first fault of a scenario lasted.
fn first_window_availability(s: &ScenarioResult) -> Option<(f64, String, u64)> {
    let (from, to, what) = fault_windows(s).into_iter().next()?;
    Some((availability_between(s, from, to)?, what, to - from))
}

/// Every claim, in the order of the notes; each judged by its own function.
pub fn judge(r: &Results) -> Vec<Claim> {
    vec![
        sync_fails_whole(r),
        sync_degraded_fails_whole(r),
        sync_as_slow_as_slowest_hop(r),
        sync_web_of_requests(r),
        async_query_independent_and_fast(r),
        duplication(r),
        sync_asker_needs_no_database(r),
        async_harder_to_understand(r),
        never_lost(r),
        bus_request_reply_is_sync(r),
    ]
}

/// UserOrders' p50 of `mode`'s sequential run in the steady scenario, in µs.
fn sequential_user_orders_p50(r: &Results, mode: Mode) -> Option<f64> {
    r.scenario(Scenario::Steady, mode)?.sequential.as_ref().map(|l| l.user_orders.p50_us as f64)
}

/// A failing dependency fails the whole sync request.
fn sync_fails_whole(r: &Results) -> Claim {
    const CLAIM: &str = "sync: if any inter-service request fails, the whole request fails";
    let (ks, ka) =
        (r.scenario(Scenario::KillDependency, Mode::Sync), r.scenario(Scenario::KillDependency, Mode::Async));
    let Some(((s, what, len), (a, _, _))) =
        ks.and_then(first_window_availability).zip(ka.and_then(first_window_availability))
    else {
        return missing(r, CLAIM, Scenario::KillDependency);
    };
    let reads = |x: Option<&ScenarioResult>| {
        x.and_then(|x| x.loads.get("run")?.ops.get("UserOrders").map(|o| o.availability()))
    };
    Claim {
        claim: CLAIM,
        evidence: Scenario::KillDependency.to_string(),
        cells: per_mode(r, |m| served_in_first_window(r, Scenario::KillDependency, m)),
        verdict: if s <= 0.2 && a >= 0.95 {
            Verdict::Confirmed
        } else if s >= 0.95 {
            Verdict::Refuted
        } else {
            Verdict::Inconclusive("the modes did not separate clearly".into())
        },
        sentence: format!(
            "While {what} for {:.1} s, sync served {} of all requests (UpdatePrice, which needs no other service, is what got through) and async {}; over the whole run UserOrders succeeded {} (sync) vs {} (async).",
            len as f64 / 1000.0,
            percent_one_decimal(s),
            percent_one_decimal(a),
            reads(ks).map_or("-".into(), percent_one_decimal),
            reads(ka).map_or("-".into(), percent_one_decimal)
        ),
    }
}

/// The claim of [`sync_fails_whole`], for sync with degradation (the hardened policy,
/// which answers `UserOrders` without product details while products is down).
const DEGRADED: &str = "sync with degradation (hardened): if any inter-service request fails, the whole request fails";

/// The first claim again, for sync under the hardened policy: its partial answers can
/// refute it in part (while products is down), at the price of answers the client must
/// handle; while users is down it has nothing to degrade to.
fn sync_degraded_fails_whole(r: &Results) -> Claim {
    const USERS_DOWN: &str = "users killed";
    const PRODUCTS_DOWN: &str = "products killed";
    let run = |mode: Mode, policy: Policy| r.scenario_with(Scenario::KillDependency, mode, policy);
    let partial = |s: &ScenarioResult| s.partial_answers.get("run").copied();
    let describe = |s: &ScenarioResult| {
        let served = |what: &str| served_while(s, what).map_or("-".into(), percent_one_decimal);
        let partial = partial(s).map_or(String::new(), |n| format!("; {n} partial UserOrders answers"));
        format!(
            "{} served while {USERS_DOWN}, {} while {PRODUCTS_DOWN}{partial}",
            served(USERS_DOWN),
            served(PRODUCTS_DOWN)
        )
    };
    let cells = per_mode(r, |m| {
        if let Some(reason) = does_not_apply(r, Scenario::KillDependency, m) {
            return reason;
        }
        // The request/reply modes' hardened runs; the others have no policy.
        let policy = if crate::suite::has_policies(m) { Policy::Hardened } else { Policy::Naive };
        run(m, policy).map_or("-".into(), describe)
    });
    let Some(h) = run(Mode::Sync, Policy::Hardened) else {
        return Claim {
            claim: DEGRADED,
            evidence: format!("{} with `--policies hardened`", Scenario::KillDependency),
            cells,
            verdict: Verdict::Inconclusive("the hardened sync run is not in this run".into()),
            sentence: format!(
                "Not measured in this run: it needs scenario {} in sync mode under the hardened policy (`lab bench --policies naive,hardened`).",
                Scenario::KillDependency
            ),
        };
    };
    let naive = run(Mode::Sync, Policy::Naive);
    let (Some(users), Some(products)) = (served_while(h, USERS_DOWN), served_while(h, PRODUCTS_DOWN)) else {
        return Claim {
            claim: DEGRADED,
            evidence: Scenario::KillDependency.to_string(),
            cells,
            verdict: Verdict::Inconclusive("the hardened run has no window with users and with products down".into()),
            sentence: "The hardened sync run did not record both fault windows (users killed, products killed).".into(),
        };
    };
    let partial = partial(h);
    let verdict = match partial {
        None => Verdict::Inconclusive("partial answers were not counted in these results".into()),
        Some(n) if products >= 0.5 && n > 0 => Verdict::Refuted,
        Some(_) if products <= 0.2 => Verdict::Confirmed,
        Some(_) => Verdict::Inconclusive("degradation served only part of the requests".into()),
    };
    let naive_products = naive.and_then(|s| served_while(s, PRODUCTS_DOWN));
    let refuted = if verdict == Verdict::Refuted { "Refuted in part. " } else { "" };
    Claim {
        claim: DEGRADED,
        evidence: format!("{} (sync naive and hardened)", Scenario::KillDependency),
        cells,
        verdict,
        sentence: format!(
            "{refuted}While products was down, hardened sync served {} of all requests (naive sync: {}); over the run {} of its `UserOrders` answers were partial (`partial = true`: every order, but no title and no current price), answers the client must recognise and handle. While users was down it served {}: without the user there is nothing to degrade to.",
            percent_one_decimal(products),
            naive_products.map_or("-".into(), percent_one_decimal),
            partial.map_or("an uncounted number".into(), |n| n.to_string()),
            percent_one_decimal(users)
        ),
    }
}

/// A request is only as fast as its slowest hop.
fn sync_as_slow_as_slowest_hop(r: &Results) -> Claim {
    const CLAIM: &str = "sync: a request is only as fast as its slowest hop";
    let delta = |mode: Mode| r.scenario(Scenario::SlowDependency, mode).and_then(slowed_minus_baseline);
    // What the proxy added, as the run recorded it.
    let added = r.scenario(Scenario::SlowDependency, Mode::Sync).and_then(|s| s.added_latency_us).map(|us| us as f64);
    match (delta(Mode::Sync), delta(Mode::Async), added) {
        (Some(_), Some(_), None) => Claim {
            verdict: Verdict::Inconclusive("the latency added is not in these results".into()),
            sentence: "The latency the proxy added was not recorded in these results, so the rise cannot be compared with it.".into(),
            ..missing(r, CLAIM, Scenario::SlowDependency)
        },
        (Some(s), Some(a), Some(added)) => Claim {
            claim: CLAIM,
            evidence: Scenario::SlowDependency.to_string(),
            cells: per_mode(r, |m| slowed_cell(r, m)),
            verdict: if s >= 0.8 * added && a.abs() < 0.2 * added {
                Verdict::Confirmed
            } else if s < 0.2 * added {
                Verdict::Refuted
            } else {
                Verdict::Inconclusive("the added latency only partly reached sync".into())
            },
            sentence: format!(
                "With {} added in front of products, sync UserOrders p50 rose by {} ({:.0}% of it); async changed by {}.",
                ms_rounded(added),
                ms_rounded(s),
                100.0 * s / added,
                ms_signed(a)
            ),
        },
        _ => missing(r, CLAIM, Scenario::SlowDependency),
    }
}

/// A web of requests: inter-service calls per client request, counted by the services.
fn sync_web_of_requests(r: &Results) -> Claim {
    const CLAIM: &str = "sync: a web of requests grows";
    let rpcs =
        |mode: Mode, op: &str| r.scenario(Scenario::FanOut, mode)?.fanout.as_ref()?.rpcs_per_request.get(op).copied();
    let (Some(s), Some(a), Some(sp)) =
        (rpcs(Mode::Sync, "UserOrders"), rpcs(Mode::Async, "UserOrders"), rpcs(Mode::Sync, "PlaceOrder"))
    else {
        return missing(r, CLAIM, Scenario::FanOut);
    };
    let echo = r.floor.as_ref().map(|f| f.grpc_echo.p50_us as f64);
    let depth = match (sequential_user_orders_p50(r, Mode::Sync), echo) {
        (Some(p), Some(e)) if e > 0.0 => format!(" Sync UserOrders took {:.1} gRPC echoes ({}).", p / e, ms_rounded(p)),
        _ => String::new(),
    };
    Claim {
        claim: CLAIM,
        evidence: Scenario::FanOut.to_string(),
        cells: per_mode(r, |m| {
            scenario_cell(r, Scenario::FanOut, m, |x| {
                let per = &x.fanout.as_ref()?.rpcs_per_request;
                let (u, p) = (per.get("UserOrders")?, per.get("PlaceOrder")?);
                Some(format!("{u:.1} RPCs per UserOrders, {p:.1} per PlaceOrder"))
            })
        }),
        verdict: if s >= 2.0 && s > a { Verdict::Confirmed } else { Verdict::Refuted },
        sentence: format!("Counted in the services: each sync UserOrders made {s:.1} inter-service calls and each PlaceOrder {sp:.1}; async made {a:.1}.{depth}"),
    }
}

/// The async query service has no runtime dependency and is fast.
fn async_query_independent_and_fast(r: &Results) -> Claim {
    const CLAIM: &str = "async: the query service has zero runtime dependencies and is fast";
    let killed = r.scenario(Scenario::KillDependency, Mode::Async).and_then(first_window_availability);
    let (Some((a, what, _)), Some(ps), Some(pa)) =
        (killed, sequential_user_orders_p50(r, Mode::Sync), sequential_user_orders_p50(r, Mode::Async))
    else {
        return missing(r, CLAIM, Scenario::KillDependency);
    };
    Claim {
        claim: CLAIM,
        evidence: format!("{}, {}", Scenario::KillDependency, Scenario::Steady),
        cells: per_mode(r, |m| {
            let p50 = sequential_user_orders_p50(r, m).map_or("-".into(), ms_rounded);
            format!("{}; UserOrders p50 {p50}", served_in_first_window(r, Scenario::KillDependency, m))
        }),
        verdict: match (a >= 0.99, a < 0.9, pa < ps) {
            (true, _, true) => Verdict::Confirmed,
            (_, true, _) => Verdict::Refuted,
            (true, _, false) => Verdict::Inconclusive("it kept answering, but was not faster".into()),
            (false, false, _) => Verdict::Inconclusive("it answered most, not all, requests during the fault".into()),
        },
        sentence: format!(
            "Async answered {} of requests while {what}, and its UserOrders took {} at p50 against {} for the sync chain ({:.1}× faster).",
            percent_one_decimal(a),
            ms_rounded(pa),
            ms_rounded(ps),
            ps / pa.max(1.0)
        ),
    }
}

/// The sync querying service needs no database.
fn sync_asker_needs_no_database(r: &Results) -> Claim {
    const CLAIM: &str = "sync: the service that asks others needs no database of its own";
    let disk =
        |mode: Mode| r.scenario(Scenario::Storage, mode)?.storage.as_ref().map(|b| b.values().sum::<u64>() as f64);
    let query_disk = |mode: Mode| query_bytes(r.scenario(Scenario::Storage, mode)?.storage.as_ref()?);
    match (query_disk(Mode::Sync), query_disk(Mode::Async)) {
        // Sizes of zero everywhere would mean nothing was measured, not no database.
        (Some(s), Some(a)) if disk(Mode::Sync).is_some_and(|t| t > 0.0) => Claim {
            claim: CLAIM,
            evidence: Scenario::Storage.to_string(),
            cells: per_mode(r, |m| {
                scenario_cell(r, Scenario::Storage, m, |x| {
                    let bytes = x.storage.as_ref()?;
                    // A mode without a query process of its own (the monolith): its one
                    // database serves every API.
                    Some(match query_bytes(bytes) {
                        Some(b) if b < 100_000 => format!("query: {b} bytes"),
                        Some(b) => format!("query: {:.1} MB", b as f64 / 1e6),
                        None => format!("{DOES_NOT_APPLY}{m} mode has no query service of its own (one process, one database for every API)"),
                    })
                })
            }),
            verdict: if s == 0 { Verdict::Confirmed } else { Verdict::Refuted },
            sentence: format!(
                "The sync query service wrote {s} bytes; the async one kept its own copy of {:.1} MB.",
                a as f64 / 1e6
            ),
        },
        _ => missing(r, CLAIM, Scenario::Storage),
    }
}

/// The query service's bytes in a storage figure: its one instance's, or (with
/// `--replicas`) the sum over its replicas; `None` where it has none of its own.
fn query_bytes(bytes: &std::collections::BTreeMap<String, u64>) -> Option<u64> {
    let of_query =
        |name: &str| name == common::names::QUERY || common::names::replica_of(name) == Some(common::names::QUERY);
    let mut parts = bytes.iter().filter(|(name, _)| of_query(name)).map(|(_, &b)| b).peekable();
    parts.peek().is_some().then(|| parts.sum())
}

/// "Not yet", as a client sees it: the first order for a user just created refused,
/// and how long until one was accepted.
fn not_yet_words(c: &CreateThenUse) -> String {
    format!(
        "{} of first orders for a user just created refused, accepted {} after the user's acknowledgement at p50 ({} at p99)",
        percent_one_decimal(c.refused_share()),
        ms_rounded(c.until_accepted.p50_us),
        ms_rounded(c.until_accepted.p99_us)
    )
}

/// Harder to understand, by proxy: code, processes, staleness, and "not yet".
fn async_harder_to_understand(r: &Results) -> Claim {
    const CLAIM: &str = "async: harder to understand";
    let lines = |m: Mode| r.complexity.lines.get(m.as_str()).copied();
    let processes = |m: Mode| r.scenario(Scenario::Steady, m).map(|s| s.resources.len());
    let stale =
        r.scenario(Scenario::Steady, Mode::Async).and_then(|s| s.staleness.as_ref()).map(|s| s.visible.p99_us as f64);
    // A client must handle "not yet": an order for a user just created may be refused.
    let not_yet = |m: Mode| r.scenario(Scenario::Steady, m).and_then(|s| s.create_then_use.as_ref());
    let cell = |c: Option<&CreateThenUse>| c.map_or(String::new(), |c| format!("; {}", not_yet_words(c)));
    let (Some(ls), Some(la), Some(ps), Some(pa)) =
        (lines(Mode::Sync), lines(Mode::Async), processes(Mode::Sync), processes(Mode::Async))
    else {
        return missing(r, CLAIM, Scenario::Steady);
    };
    Claim {
        claim: CLAIM,
        evidence: format!("{} (processes, staleness, create-then-use); code", Scenario::Steady),
        cells: per_mode(r, |m| {
            let lines = lines(m).map_or("communication code not counted".into(), |l| {
                format!("{l} lines of communication code")
            });
            let processes = match processes(m) {
                Some(1) => "1 process".into(),
                Some(n) => format!("{n} processes"),
                None => "processes not counted".into(),
            };
            format!("{lines}, {processes}{}", cell(not_yet(m)))
        }),
        verdict: if la > ls && pa > ps {
            let handle = match (not_yet(Mode::Sync), not_yet(Mode::Async)) {
                (Some(s), Some(a)) if a.refused_first > s.refused_first => {
                    format!("; and a client must handle \"not yet\": {} (sync: {})", not_yet_words(a), percent_one_decimal(s.refused_share()))
                }
                _ => String::new(),
            };
            Verdict::Inconclusive(format!("understanding is not measurable; its proxies are larger in async: {:.1}× the code, one more process, and a reader sees data up to {} old at p99{handle}", la as f64 / ls.max(1) as f64, stale.map_or("-".into(), ms_rounded)))
        } else {
            Verdict::Inconclusive("understanding is not measurable, and its proxies do not favour sync".into())
        },
        sentence: format!(
            "Communication code: {ls} lines in sync, {la} in async (outbox, relay, consumers, events); processes: {ps} vs {pa}.{}",
            match (not_yet(Mode::Sync), not_yet(Mode::Async)) {
                (Some(s), Some(a)) => format!(
                    " Creating a user and ordering for them at once ({} times, retrying while refused): async {}; sync {}.",
                    a.sequences,
                    not_yet_words(a),
                    not_yet_words(s)
                ),
                _ => String::new(),
            }
        ),
    }
}

/// Nothing acknowledged is lost: the soak when it ran, else chaos (orders only).
fn never_lost(r: &Results) -> Claim {
    if r.scenarios.iter().any(|s| s.soak.is_some()) {
        never_lost_by_soak(r)
    } else {
        never_lost_by_chaos(r)
    }
}

/// The event bus as request/reply ("approach 1"): does bus-rpc inherit sync's coupling,
/// (a) failing while a dependency is down and (b) passing the slow hop's latency on to
/// its caller? Judged on those two, beside what the bus adds: latency over gRPC, and
/// the broker as a new single point of failure. Measured in bus-rpc mode beside sync
/// (and async, for the broker), when the run had them.
fn bus_request_reply_is_sync(r: &Results) -> Claim {
    const CLAIM: &str = "an event bus used as request/reply is \"basically sync\"";
    let (sync, bus) = (Mode::Sync, Mode::BusRpc);
    let evidence = [Scenario::KillDependency, Scenario::SlowDependency, Scenario::Steady, Scenario::KillBroker]
        .map(|s| s.to_string())
        .join(", ");
    if !r.modes.contains(&bus) {
        return Claim {
            evidence,
            sentence: format!(
                "Not measured in this run: it needs {}, {}, {} and {} in sync and bus-rpc mode (`lab bench --modes sync,async,bus-rpc`).",
                Scenario::KillDependency,
                Scenario::SlowDependency,
                Scenario::Steady,
                Scenario::KillBroker
            ),
            verdict: Verdict::Inconclusive("bus-rpc was not in this run".into()),
            ..missing(r, CLAIM, Scenario::KillDependency)
        };
    }
    let window = |m: Mode| r.scenario(Scenario::KillDependency, m).and_then(first_window_availability);
    let slowed = |m: Mode| r.scenario(Scenario::SlowDependency, m).and_then(slowed_minus_baseline);
    let added = r.scenario(Scenario::SlowDependency, bus).and_then(|s| s.added_latency_us).map(|us| us as f64);
    let p50 = |m: Mode| sequential_user_orders_p50(r, m);
    // The broker's death where it applied: all requests served while it was down, and
    // UserOrders over the whole run (the timeline does not split by operation).
    let broker = |m: Mode| {
        if does_not_apply(r, Scenario::KillBroker, m).is_some() {
            return None;
        }
        let s = r.scenario(Scenario::KillBroker, m)?;
        let (from, to, what) = fault_windows(s).into_iter().next()?;
        let reads = s.loads.get("run")?.ops.get("UserOrders")?.availability();
        Some(format!(
            "{} of all requests served while {what}, UserOrders {} over the run",
            percent_one_decimal(availability_between(s, from, to)?),
            percent_one_decimal(reads)
        ))
    };
    let cells = per_mode(r, |m| {
        if m == Mode::Monolith {
            return format!("{DOES_NOT_APPLY}one process: no calls between services for a bus to carry");
        }
        let mut parts = Vec::new();
        // The coupling and the latency concern the call chains; async answers from its
        // own store and stands beside them for the broker alone.
        if m != Mode::Async {
            parts.push(format!(
                "{}: {}",
                Scenario::KillDependency,
                served_in_first_window(r, Scenario::KillDependency, m)
            ));
            parts.push(format!("{}: {}", Scenario::SlowDependency, slowed_cell(r, m)));
            let ratio = match (m, p50(m), p50(sync)) {
                (Mode::BusRpc, Some(b), Some(s)) if s > 0.0 => format!(" ({:.2}× sync)", b / s),
                _ => String::new(),
            };
            parts.push(format!("sequential UserOrders p50 {}{ratio}", p50(m).map_or("-".into(), ms_rounded)));
        }
        let killed = does_not_apply(r, Scenario::KillBroker, m).or_else(|| broker(m)).unwrap_or_else(|| "-".into());
        parts.push(format!("{}: {killed}", Scenario::KillBroker));
        parts.join("; ")
    });

    let mut absent = Vec::new();
    for (scenario, m, measured) in [
        (Scenario::KillDependency, sync, window(sync).is_some()),
        (Scenario::KillDependency, bus, window(bus).is_some()),
        (Scenario::SlowDependency, sync, slowed(sync).is_some()),
        (Scenario::SlowDependency, bus, slowed(bus).is_some() && added.is_some()),
    ] {
        if !measured {
            absent.push(format!("{scenario} in {m} mode"));
        }
    }
    let (Some((s, what, len)), Some((b, _, _)), Some(ds), Some(db), Some(added)) =
        (window(sync), window(bus), slowed(sync), slowed(bus), added)
    else {
        return Claim {
            claim: CLAIM,
            evidence,
            cells,
            verdict: Verdict::Inconclusive(format!("not in this run: {}", absent.join(", "))),
            sentence: format!("Not measured in this run: {}.", absent.join(", ")),
        };
    };
    // Each part of the coupling: inherited (true), not (false), or in between (None).
    let fails_with = if s <= 0.2 && b <= 0.2 {
        Some(true)
    } else if b >= 0.95 {
        Some(false)
    } else {
        None
    };
    let slows_with = if db >= 0.8 * added {
        Some(true)
    } else if db < 0.2 * added {
        Some(false)
    } else {
        None
    };
    let verdict = match (fails_with, slows_with) {
        (Some(true), Some(true)) => Verdict::Confirmed,
        (Some(false), Some(false)) => Verdict::Refuted,
        _ => {
            let failing = match fails_with {
                Some(true) => "bus-rpc failed with the dependency as sync did",
                Some(false) => "bus-rpc kept serving with the dependency down",
                None => "bus-rpc served part of its requests with the dependency down",
            };
            let slowing = match slows_with {
                Some(true) => "the slow hop's latency reached its caller",
                Some(false) => "the slow hop's latency did not reach its caller",
                None => "only part of the slow hop's latency reached its caller",
            };
            Verdict::Inconclusive(format!("the coupling held in part: {failing}; {slowing}"))
        }
    };
    let latency = match (p50(bus), p50(sync)) {
        (Some(b), Some(s)) if s > 0.0 => format!(
            "bus-rpc's sequential UserOrders p50 was {} against sync's {} ({:.2}×)",
            ms_rounded(b),
            ms_rounded(s),
            b / s
        ),
        _ => format!("its latency over gRPC was not measured ({} in sync and bus-rpc mode)", Scenario::Steady),
    };
    let broker_words = match broker(bus) {
        Some(bus_words) => format!(
            "with the broker killed bus-rpc had {bus_words} (async: {}; sync has no broker)",
            broker(Mode::Async).unwrap_or_else(|| "not in this run".into())
        ),
        None => format!("the broker's death was not measured ({} in bus-rpc mode)", Scenario::KillBroker),
    };
    Claim {
        claim: CLAIM,
        evidence,
        cells,
        verdict,
        sentence: format!(
            "While {what} for {:.1} s, sync served {} of all requests and the same call graph over NATS request/reply {}; with {} added in front of products, UserOrders p50 changed by {} in sync and {} in bus-rpc; and the bus adds to it: {latency}, and {broker_words}.",
            len as f64 / 1000.0,
            percent_one_decimal(s),
            percent_one_decimal(b),
            ms_rounded(added),
            ms_change(ds),
            ms_change(db),
        ),
    }
}

const NEVER_LOST: &str = "an acknowledged write is never lost (every mode the kills apply to, under random kills)";

/// What a checker that found nothing proves: nothing unless faults were carried out,
/// writes acknowledged, and faults took effect while writes were in flight (a kill
/// that meets no write cannot lose one). The reason it proves nothing, if so.
fn unproven(faults: usize, acknowledged: usize, faults_on_writes: usize) -> Option<&'static str> {
    if faults == 0 {
        Some("no fault was carried out")
    } else if acknowledged == 0 {
        Some("no write was acknowledged")
    } else if faults_on_writes == 0 {
        Some("no fault took effect while writes were in flight")
    } else {
        None
    }
}

/// Runs of `scenario` the claim rests on: the fewest of any of `modes`.
fn runs(r: &Results, scenario: Scenario, modes: impl IntoIterator<Item = Mode>) -> usize {
    modes.into_iter().map(|m| r.runs(scenario, m).count()).min().unwrap_or(0)
}

/// The modes of the run besides sync and async that `scenario`'s faults applied to (bus-rpc,
/// and the monolith where chaos and the soak kill it): a "never" claim holds for them too.
fn other_modes_under(r: &Results, scenario: Scenario) -> Vec<Mode> {
    r.modes
        .iter()
        .copied()
        .filter(|&m| m != Mode::Sync && m != Mode::Async && does_not_apply(r, scenario, m).is_none())
        .collect()
}

/// Faults of a scenario carried out, and of those, how many took effect while writes
/// were in flight (a fault whose count was not recorded counts as none).
fn faults_done(s: &ScenarioResult) -> (usize, usize) {
    let done: Vec<_> =
        s.faults.iter().filter(|e| e.fault.is_some() && e.result == crate::suite::scenarios::OK).collect();
    (done.len(), done.iter().filter(|e| e.writes_in_flight.unwrap_or(0) > 0).count())
}

/// The chaos scenario's checker: acknowledged orders against the view. Not refuted
/// (never "confirmed": a finite run cannot show "never") only when both modes ran under
/// faults that met writes in flight and acknowledged some.
fn never_lost_by_chaos(r: &Results) -> Claim {
    // Sync has no convergence figure (not applicable): its losses alone decide.
    let chaos = |mode: Mode| {
        let s = r.scenario(Scenario::Chaos, mode)?;
        Some((s.losses.clone()?, s.convergence.clone(), faults_done(s)))
    };
    match (chaos(Mode::Sync), chaos(Mode::Async)) {
        (Some((ls, cs, fs)), Some((la, Some(ca), fa))) => {
            let clean = |l: &crate::suite::Losses, c: Option<&crate::suite::Convergence>| {
                l.is_clean() && c.is_none_or(|c| c.converged)
            };
            let cs = cs.as_ref();
            let ca = &ca;
            let faults =
                |(done, on_writes): (usize, usize)| format!("{done} faults, {on_writes} with writes in flight");
            // Beside sync and async, every other mode the faults applied to (bus-rpc).
            let others: Vec<_> = other_modes_under(r, Scenario::Chaos)
                .into_iter()
                .filter_map(|m| chaos(m).map(|(l, c, f)| (m, l, c, f)))
                .collect();
            let why: Vec<String> = [(Mode::Sync, &ls, fs), (Mode::Async, &la, fa)]
                .into_iter()
                .chain(others.iter().map(|(m, l, _, f)| (*m, l, *f)))
                .filter_map(|(m, l, (done, on_writes))| {
                    Some(format!("{m}: {}", unproven(done, l.acknowledged_orders, on_writes)?))
                })
                .collect();
            let others_clean = others.iter().all(|(_, l, c, _)| clean(l, c.as_ref()));
            let others_words: String = others
                .iter()
                .map(|(m, l, _, f)| {
                    format!(
                        "; {m} lost {} of {} ({} dead letters; {})",
                        l.lost,
                        l.acknowledged_orders,
                        l.dead_letters,
                        faults(*f)
                    )
                })
                .collect();
            let modes = [Mode::Sync, Mode::Async].into_iter().chain(others.iter().map(|(m, ..)| *m));
            Claim {
                claim: NEVER_LOST,
                evidence: Scenario::Chaos.to_string(),
                cells: per_mode(r, |m| {
                    scenario_cell(r, Scenario::Chaos, m, |x| {
                        let l = x.losses.as_ref()?;
                        // A mode whose view is assembled on every read has nothing to converge.
                        let converged = x.convergence.as_ref().map_or("not applicable".into(), |c| c.describe());
                        Some(format!("{} lost of {}, converged {converged}; {}", l.lost, l.acknowledged_orders, faults(faults_done(x))))
                    })
                }),
                verdict: if !(clean(&ls, cs) && clean(&la, Some(ca)) && others_clean) {
                    Verdict::Refuted
                } else if !why.is_empty() {
                    Verdict::Inconclusive(why.join("; "))
                } else {
                    Verdict::NotRefuted { runs: runs(r, Scenario::Chaos, modes) }
                },
                sentence: format!(
                    "Under random SIGKILLs ({} in async, {} in sync), async lost {} of {} acknowledged orders, duplicated {}, showed {} phantom rows, set {} events aside as dead letters, and its view equalled the truth {}; sync lost {} of {} ({} dead letters){others_words}.",
                    faults(fa), faults(fs), la.lost, la.acknowledged_orders, la.duplicated, la.phantom, la.dead_letters, ca.describe(), ls.lost, ls.acknowledged_orders, ls.dead_letters
                ),
            }
        }
        _ => missing(r, NEVER_LOST, Scenario::Chaos),
    }
}

/// The soak's checker: every acknowledged write (users, products, prices, orders)
/// against the owners, the view and orders' replica. It is not refuted (never
/// "confirmed") only by a soak that did what it claims to test: faults carried out,
/// writes acknowledged, and faults that took effect while writes were in flight.
fn never_lost_by_soak(r: &Results) -> Claim {
    let soak =
        |mode: Mode| r.scenario(Scenario::Soak, mode).and_then(|s| Some((s.soak.as_ref()?, s.convergence.as_ref()?)));
    let cell = |mode: Mode| {
        soak(mode).map_or("-".into(), |(k, c)| {
            format!(
                "{} lost, {} duplicated, {} phantom, {} wrong, {} dead letters of {} acknowledged writes; {} faults ({:.0}% with writes in flight); converged {}",
                k.lost,
                k.duplicated,
                k.phantom,
                k.wrong,
                k.dead_letters,
                k.acknowledged_writes(),
                k.faults(),
                100.0 * k.in_flight_share(),
                c.converged
            )
        })
    };
    // Sync, async, and every other mode the soak's faults applied to (bus-rpc).
    let ran: Vec<(Mode, &crate::suite::soak::Soak, &crate::suite::Convergence)> = [Mode::Sync, Mode::Async]
        .into_iter()
        .chain(other_modes_under(r, Scenario::Soak))
        .filter_map(|m| soak(m).map(|(k, c)| (m, k, c)))
        .collect();
    let failed: Vec<String> = ran
        .iter()
        .filter_map(|(m, k, c)| {
            let mut what = k.failures();
            if !c.converged {
                what.push("the view never equalled the owners".into());
            }
            (!what.is_empty()).then(|| format!("{m}: {}", what.join(", ")))
        })
        .collect();
    let not_shown: Vec<String> = ran
        .iter()
        .filter_map(|(m, k, _)| {
            let why = unproven(k.faults(), k.acknowledged_writes(), k.faults_with_writes_in_flight)?;
            Some(format!("{m}: {why}"))
        })
        .collect();
    let verdict = if !failed.is_empty() {
        Verdict::Refuted
    } else if ran.len() < 2 {
        Verdict::Inconclusive("the soak ran in one mode only".into())
    } else if !not_shown.is_empty() {
        Verdict::Inconclusive(not_shown.join("; "))
    } else {
        Verdict::NotRefuted { runs: runs(r, Scenario::Soak, ran.iter().map(|(m, ..)| *m)) }
    };
    let sentence = if failed.is_empty() {
        let each: Vec<String> = ran.iter().map(|(m, ..)| format!("{m}: {}.", cell(*m))).collect();
        format!(
            "After seeded random kills, pauses and restarts, with the replicas settled, the checker compared every acknowledged user, price and order with the owners, the query view and orders' replica. {}",
            each.join(" ")
        )
    } else {
        format!("The soak's checker found: {}.", failed.join("; "))
    };
    let cells = per_mode(r, |m| does_not_apply(r, Scenario::Soak, m).unwrap_or_else(|| cell(m)));
    Claim { claim: NEVER_LOST, evidence: Scenario::Soak.to_string(), cells, verdict, sentence }
}

fn missing(r: &Results, claim: &'static str, scenario: Scenario) -> Claim {
    Claim {
        claim,
        evidence: scenario.to_string(),
        cells: per_mode(r, |_| "-".into()),
        verdict: Verdict::Inconclusive(format!("scenario {scenario} was not in this run")),
        sentence: format!("Not measured in this run: it needs scenario {scenario} in both modes."),
    }
}

/// Data is duplicated in async, on logical bytes where the results have them, else on bytes on disk.
fn duplication(r: &Results) -> Claim {
    const CLAIM: &str = "async: data is duplicated (extra storage, extra db)";
    let storage = |mode: Mode| r.scenario(Scenario::Storage, mode);
    let logical = |mode: Mode| Some(storage(mode)?.logical_totals()?.values().sum::<u64>() as f64);
    let disk = |mode: Mode| storage(mode)?.storage.as_ref().map(|b| b.values().sum::<u64>() as f64);
    let (figures, what, unit, figure): (_, _, _, &dyn Fn(Mode) -> Option<f64>) =
        match (logical(Mode::Sync), logical(Mode::Async)) {
            (Some(s), Some(a)) => (
                Some((s, a)),
                "logical bytes (keys + values in the services' sled trees; the broker's stream not included)",
                "logical",
                &logical,
            ),
            _ => (
                disk(Mode::Sync).zip(disk(Mode::Async)),
                "bytes on disk (file sizes, broker store included; these results have no logical figure)",
                "on disk",
                &disk,
            ),
        };
    match figures {
        Some((s, a)) if s > 0.0 => Claim {
            claim: CLAIM,
            evidence: Scenario::Storage.to_string(),
            cells: per_mode(r, |m| {
                scenario_cell(r, Scenario::Storage, m, |_| figure(m).map(|b| format!("{:.2} MB {unit}", b / 1e6)))
            }),
            verdict: if a > 1.2 * s { Verdict::Confirmed } else { Verdict::Refuted },
            sentence: format!(
                "For the same data async kept {:.1}× the {what} of sync ({:.2} MB vs {:.2} MB).",
                a / s,
                a / 1e6,
                s / 1e6
            ),
        },
        _ => missing(r, CLAIM, Scenario::Storage),
    }
}
