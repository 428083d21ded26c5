//! The headline figures of a results file, as plain text for the terminal.

use std::fmt::Write;

use super::Results;
use crate::report::format::{ms, percent, percent_one_decimal};

pub fn text(r: &Results) -> String {
    let mut out = String::new();
    let e = &r.environment;
    writeln!(
        out,
        "\n{} suite, {} cores, {} build, commit {}, nats-server {}{}",
        r.profile.name,
        e.cores,
        e.build_profile,
        e.commit,
        e.nats_server.as_deref().unwrap_or("-"),
        if r.brokers > 1 { format!(" ({}-node cluster, stream R{})", r.brokers, r.brokers) } else { String::new() }
    )
    .ok();
    if let Some(f) = &r.floor {
        writeln!(
            out,
            "floor (p50): tcp {}  gRPC echo {}  JetStream publish+ack {}  delivery {}  sled flush {}  2-tree txn+flush {}",
            ms(f.tcp_rtt.p50_us),
            ms(f.grpc_echo.p50_us),
            ms(f.js_publish_ack.p50_us),
            ms(f.js_delivery.p50_us),
            ms(f.sled_flush.p50_us),
            ms(f.sled_txn2_flush.p50_us)
        )
        .ok();
        let ladder: Vec<String> = f
            .generator_ladder
            .iter()
            .map(|l| {
                format!("{:.0}→{:.0} ({} late)", l.target_rate.unwrap_or(0.0), l.ok_per_s, percent(l.late_share()))
            })
            .collect();
        writeln!(
            out,
            "generator: echo with 64 in flight {:.0}/s; open loop asked→got {}; kept up to {:.0}/s; no-op {:.0}/s",
            f.echo_64_in_flight_per_s,
            ladder.join(", "),
            f.generator_ceiling_per_s,
            f.generator_noop.ok_per_s
        )
        .ok();
        writeln!(out, "{}", f.peer_comparison()).ok();
        writeln!(out, "{}", f.replication_comparison()).ok();
    }
    for s in &r.scenarios {
        let round = if s.round > 1 { format!(" r{}", s.round) } else { String::new() };
        write!(out, "{:<17} {:<5}{round}", s.scenario, s.label()).ok();
        // A scenario whose faults had nothing to act on says so first: its figures are
        // of the load alone.
        if let Some(note) = s.note.as_deref().filter(|n| n.starts_with(super::scenarios::DOES_NOT_APPLY)) {
            write!(out, " | {note}").ok();
        }
        if let Some(l) = &s.sequential {
            write!(
                out,
                " seq UserOrders p50 {} p99 {} | PlaceOrder p50 {} p99 {}",
                ms(l.user_orders.p50_us),
                ms(l.user_orders.p99_us),
                ms(l.place_order.p50_us),
                ms(l.place_order.p99_us)
            )
            .ok();
            if let Some(p) = &l.propagation {
                write!(out, " | stale p50 {} p99 {}", ms(p.p50_us), ms(p.p99_us)).ok();
            }
        }
        if let Some(c) = &s.create_then_use {
            write!(
                out,
                " | create-then-use: first order refused {} of {} new users, accepted {} of {}, user acked → order accepted p50 {} p99 {}",
                c.refused_first,
                c.users_created,
                c.accepted,
                c.sequences,
                ms(c.until_accepted.p50_us),
                ms(c.until_accepted.p99_us)
            )
            .ok();
        }
        for (name, load) in &s.loads {
            let reads = load.ops.get("UserOrders");
            let writes = load.ops.get("PlaceOrder");
            write!(
                out,
                " | {name}: {:.0} ok/s, UserOrders {} p99 {} successes only",
                load.ok_per_s,
                percent_one_decimal(reads.map_or(1.0, |x| x.availability())),
                ms(reads.map_or(0, |x| x.p99_us)),
            )
            .ok();
            // Results recorded before every request was timed have no such figure.
            if let Some(all) = reads.and_then(|x| x.all_requests.as_ref()) {
                write!(out, " / {} all requests", ms(all.p99_us)).ok();
            }
            // A run without PlaceOrder (the soak's reads) has no figure for it.
            if let Some(w) = writes {
                write!(out, ", PlaceOrder {}", percent_one_decimal(w.availability())).ok();
            }
            if load.kind == "open" {
                write!(out, ", send lag p99 {} ({} late)", ms(load.send_lag.p99_us), percent(load.late_share())).ok();
            }
        }
        if let Some(q) = s.replicas.as_ref().filter(|q| !q.kills.is_empty()) {
            let kills: Vec<String> = (q.kills.iter())
                .map(|k| {
                    format!(
                        "{} killed: {} failed at the balancer, {} moved",
                        k.instance, k.failed_while_down, k.moved_while_down
                    )
                })
                .collect();
            write!(out, " | {} replicas, {} shards; {}", q.replicas, q.shards, kills.join("; ")).ok();
        }
        if let Some(st) = &s.staleness {
            write!(
                out,
                " | staleness p50 {} p99 {}{} stale {} of {} never {}",
                ms(st.visible.p50_us),
                ms(st.visible.p99_us),
                st.resolution.as_ref().map_or(String::new(), |r| format!(" (±{} at p99)", ms(r.p99_us))),
                st.stale,
                st.visible.ok,
                st.never_visible
            )
            .ok();
        }
        match &s.convergence {
            Some(c) if c.clean_at_first_check => {
                write!(
                    out,
                    " | converged {}: clean at the first check, within {} ms of the last repair",
                    c.converged, c.time_ms
                )
                .ok();
            }
            Some(c) => {
                write!(
                    out,
                    " | converged {} in {} ms (±{} ms) after the last repair",
                    c.converged, c.time_ms, c.resolution_ms
                )
                .ok();
            }
            None if s.losses.is_some() => {
                write!(out, " | convergence not applicable").ok();
            }
            None => {}
        }
        if let Some(heals) = s.describe_self_heals() {
            write!(out, " | swarm replaced (fault → serving again): {heals}").ok();
        }
        if let Some(l) = &s.losses {
            write!(
                out,
                " | lost {} dup {} phantom {} dead letters {} of {} acked",
                l.lost, l.duplicated, l.phantom, l.dead_letters, l.acknowledged_orders
            )
            .ok();
        }
        if let Some(k) = &s.soak {
            let kinds: Vec<String> = k.faults_done.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            write!(
                out,
                " | faults {} ({}), {} broker skipped, {} failed, {:.0}% with writes in flight | writes acked {} in doubt {} | lost {} dup {} phantom {} wrong {} dead letters {}",
                k.faults(),
                kinds.join(" "),
                k.broker_faults_skipped,
                k.faults_failed,
                100.0 * k.in_flight_share(),
                k.acknowledged_writes(),
                k.in_doubt_writes(),
                k.lost,
                k.duplicated,
                k.phantom,
                k.wrong,
                k.dead_letters
            )
            .ok();
        }
        if let Some(b) = &s.storage {
            let total: u64 = b.values().sum();
            write!(out, " | disk (file sizes) {:.1} MB: {:?}", total as f64 / 1e6, b).ok();
        }
        if let Some(per) = s.logical_totals() {
            let total: u64 = per.values().sum();
            write!(out, " | logical (keys + values) {:.2} MB: {:?}", total as f64 / 1e6, per).ok();
        }
        if let Some(f) = &s.fanout {
            write!(
                out,
                " | RPCs/request {:?}, events published/write {:.2}, applied/write {:.2}",
                f.rpcs_per_request, f.events_published_per_write, f.events_applied_per_write
            )
            .ok();
        }
        if let Some(c) = &s.load_curve {
            let (at, past) = c.describe_knee();
            write!(
                out,
                " | saturation {:.0} ok/s ({} clients); knee {at}; past it: {past}",
                c.saturation_ok_per_s, c.saturation_clients
            )
            .ok();
        }
        for (name, n) in s.partial_answers.iter().filter(|(_, n)| **n > 0) {
            write!(out, " | {name}: {n} partial UserOrders answers (among the OK)").ok();
        }
        if let Some(b) = &s.blip {
            let amplification: Vec<String> = b
                .phases
                .iter()
                .map(|ph| format!("{} {}", ph.name, ph.amplification().map_or("-".into(), |a| format!("{a:.2}"))))
                .collect();
            let sum = |f: fn(&super::blip::Phase) -> u64| b.phases.iter().map(f).sum::<u64>();
            write!(
                out,
                " | blip `{}` at {:.0}/s ({:.2} × sustained {:.0} ok/s, saturation {:.0}): recovery {}; calls per request {}; retries {}, breaker rejections {}, shed {}",
                b.fault,
                b.offered_per_s,
                b.load_share,
                b.sustained_ok_per_s,
                b.saturation_ok_per_s,
                b.recovery.describe(),
                amplification.join(", "),
                sum(|ph| ph.retries_sent),
                sum(|ph| ph.breaker_rejections),
                sum(|ph| ph.requests_shed)
            )
            .ok();
        }
        if let Some(points) = &s.orders_per_user {
            for p in points {
                write!(
                    out,
                    " | {} orders: UserOrders p50 {} p99 {}, {} items, {:.2} calls/read",
                    p.orders,
                    ms(p.reads.p50_us),
                    ms(p.reads.p99_us),
                    p.items,
                    p.calls_per_read
                )
                .ok();
            }
        }
        writeln!(out).ok();
    }
    for t in &r.targets {
        writeln!(
            out,
            "target {} — {}: measured {:.1}, limit {:.1}",
            if t.met { "met   " } else { "MISSED" },
            t.target,
            t.measured,
            t.limit
        )
        .ok();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{scenarios::DOES_NOT_APPLY, Scenario, ScenarioResult};
    use common::config::Mode;

    #[test]
    fn a_scenario_that_did_not_apply_says_so_on_its_line() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let mut r: Results = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let note = format!("{DOES_NOT_APPLY}monolith mode has no users process");
        r.scenarios = vec![ScenarioResult {
            scenario: Scenario::KillDependency,
            mode: Mode::Monolith,
            note: Some(note.clone()),
            ..Default::default()
        }];
        let line = text(&r).lines().find(|l| l.starts_with("kill-dependency")).unwrap().to_owned();
        assert!(line.contains(&note), "{line}");
    }
}
