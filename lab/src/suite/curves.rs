//! How cost grows as work grows: latency against offered load (`load-curve`, with each
//! mode's knee) and `UserOrders` latency against the number of orders a user has
//! (`orders-per-user`).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use bench::{
    call,
    load::{LoadReport, OpenLoop, SHED},
    outcome, Recorder, Summary,
};
use common::{
    config::Mode,
    proto::{CreateUserRequest, PlaceOrderRequest, UserOrdersRequest},
};
use futures::{stream, StreamExt};
use serde::{Deserialize, Serialize};

use super::{resources::Sampler, scenarios, Ctx, Scenario, ScenarioResult};
use crate::workload::PLACE_ORDER;

/// Latency against offered load, in one mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadCurve {
    /// Successes per second of the closed-loop run that measured the mode's saturation.
    pub saturation_ok_per_s: f64,
    /// Its concurrent clients, and its length.
    pub saturation_clients: usize,
    pub saturation_ms: u64,
    /// Length of each rung.
    pub step_ms: u64,
    /// One per fraction of the saturation, lowest first.
    pub rungs: Vec<Rung>,
}

/// One open-loop rung of the load curve.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rung {
    /// Of the saturation throughput.
    pub fraction: f64,
    /// Requests per second asked of the open loop.
    pub offered_per_s: f64,
    /// Successes per second over the rung.
    pub goodput_per_s: f64,
    /// Every timed request, failures at their elapsed time (requests shed by the
    /// generator are not timed).
    pub all_p50_us: u64,
    pub all_p99_us: u64,
    /// Successes only.
    pub ok_p50_us: u64,
    pub ok_p99_us: u64,
    /// Requests scheduled, and the shares of them that failed (sent, not OK) and that
    /// the generator shed (too many in flight: never sent).
    pub scheduled: u64,
    pub failed_share: f64,
    pub shed_share: f64,
    /// Share of the requests sent that left more than 1 ms after their intended time:
    /// a high one means the generator, not only the system, could not keep the rate.
    pub late_share: f64,
    /// Orders the rung's PlaceOrders added (the data grows as the ladder climbs).
    pub orders_placed: u64,
}

impl Rung {
    fn of(fraction: f64, report: &LoadReport) -> Self {
        let all = &report.all;
        let shed = all.outcomes.get(SHED).copied().unwrap_or(0);
        let scheduled = report.scheduled.max(1) as f64;
        let every = all.all_requests.clone().unwrap_or_default();
        Self {
            fraction,
            offered_per_s: report.target_rate.unwrap_or(0.0),
            goodput_per_s: report.ok_per_s,
            all_p50_us: every.p50_us,
            all_p99_us: every.p99_us,
            ok_p50_us: all.p50_us,
            ok_p99_us: all.p99_us,
            scheduled: report.scheduled,
            failed_share: all.attempted.saturating_sub(all.ok + shed) as f64 / scheduled,
            shed_share: shed as f64 / scheduled,
            late_share: report.late_share(),
            orders_placed: report.ops.get(PLACE_ORDER).map_or(0, |o| o.ok),
        }
    }

    /// Successes per second as a share of the offered rate.
    pub fn served_share(&self) -> f64 {
        self.goodput_per_s / self.offered_per_s.max(1e-9)
    }
}

/// A rung keeps up when it served at least this share of the offered rate…
pub const KNEE_SERVED: f64 = 0.95;
/// …and its all-requests p99 is at most this many times the lowest rung's.
pub const KNEE_P99_FACTOR: f64 = 3.0;
/// The knee's definition, for the report: [`knee`] computes exactly this.
pub const KNEE_RULE: &str = "the knee is the highest rung such that it and every lower rung served at least 95 % of the offered rate as successes and had an all-requests p99 at most 3× the lowest rung's";

/// Where a mode's knee lies on its ladder (rungs lowest first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knee {
    /// No rungs were measured.
    NoRungs,
    /// Even the lowest rung failed the rule.
    BelowLowest,
    /// The rung at this index; the next one (if any) is past it.
    At(usize),
}

/// The knee of a ladder, by [`KNEE_RULE`]: the rungs are taken lowest first.
pub fn knee(rungs: &[Rung]) -> Knee {
    let Some(lowest) = rungs.first() else { return Knee::NoRungs };
    let limit = KNEE_P99_FACTOR * lowest.all_p99_us as f64;
    let keeps_up = |r: &Rung| r.served_share() >= KNEE_SERVED && r.all_p99_us as f64 <= limit;
    match rungs.iter().take_while(|r| keeps_up(r)).count() {
        0 => Knee::BelowLowest,
        n => Knee::At(n - 1),
    }
}

impl LoadCurve {
    /// The knee and what happened past it, in words.
    pub fn describe_knee(&self) -> (String, String) {
        let ms = crate::report::format::ms;
        let percent = crate::report::format::percent;
        match knee(&self.rungs) {
            Knee::NoRungs => ("no rungs measured".into(), "-".into()),
            Knee::BelowLowest => {
                let r = &self.rungs[0];
                (
                    format!("below the lowest rung ({:.0}/s, {:.2} × saturation)", r.offered_per_s, r.fraction),
                    format!(
                        "even the lowest rung served {} of its offered rate, all-requests p99 {}, {} sent > 1 ms late by the generator",
                        percent(r.served_share()),
                        ms(r.all_p99_us),
                        percent(r.late_share)
                    ),
                )
            }
            Knee::At(i) => {
                let r = &self.rungs[i];
                let at = format!("{:.0}/s ({:.2} × saturation)", r.offered_per_s, r.fraction);
                let past = match self.rungs.get(i + 1) {
                    None => "no rung past it: every rung measured kept up".into(),
                    Some(n) => format!(
                        "at {:.0}/s ({:.2} ×): {:.0} ok/s, {} failed, {} shed, all-requests p99 {}, {} sent > 1 ms late by the generator",
                        n.offered_per_s,
                        n.fraction,
                        n.goodput_per_s,
                        percent(n.failed_share),
                        percent(n.shed_share),
                        ms(n.all_p99_us),
                        percent(n.late_share)
                    ),
                };
                (at, past)
            }
        }
    }
}

/// `UserOrders` for one user with a given number of orders, in one mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrdersPerUser {
    /// Orders placed for the user.
    pub orders: usize,
    /// Items in the `UserOrders` reply (every read that succeeded had this many).
    pub items: usize,
    /// The sequential reads: latency from send to answer, outcomes by code.
    pub reads: Summary,
    /// Inter-service calls per read, counted by the services (`Admin.Stats`), in all
    /// and by hop.
    pub calls_per_read: f64,
    pub calls_by_hop: BTreeMap<String, f64>,
    /// From the last order's acknowledgement until a `UserOrders` read showed every
    /// order (0: the first read did).
    pub visible_after_ms: u64,
}

/// Orders in flight while filling a user's history.
const FILL_CONCURRENCY: usize = 16;
/// Deadline of each order placed and of each measured read (a user with many orders
/// takes a slow chain a while in a debug build).
const DEADLINE: Duration = Duration::from_secs(10);
/// How long an order refused as "user not yet known" (async) is retried.
const REFUSED_BUDGET: Duration = Duration::from_secs(10);
/// How long the user's `UserOrders` may take to show every order placed.
const VISIBLE_WITHIN: Duration = Duration::from_secs(60);
/// How long the system may take to settle before a load-curve rung.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// The most a long phase stays silent on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// `load-curve`: the mode's saturation from a short closed-loop run, then the
/// workload open-loop at each of the profile's fractions of it.
pub async fn load_curve(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    anyhow::ensure!(!p.curve_fractions.is_empty(), "the profile has no load-curve fractions");
    anyhow::ensure!(
        p.curve_fractions.iter().all(|f| f.is_finite() && *f > 0.0),
        "load-curve fractions must be positive: {:?}",
        p.curve_fractions
    );
    let step = Duration::from_secs_f64(p.curve_step_secs);
    let mut prepared = ctx.prepare(Scenario::LoadCurve.name(), mode, &[], p.seed).await?;
    let mut sampler = Sampler::new();
    let saturation = saturation(&prepared, p, step, &format!("load-curve ({mode})")).await?;
    eprintln!(
        "  load-curve ({mode}): saturation {:.0} ok/s with {} clients; {} rungs of {:.1} s",
        saturation.ok_per_s,
        p.saturation_clients,
        p.curve_fractions.len(),
        p.curve_step_secs
    );
    let mut fractions = p.curve_fractions.clone();
    fractions.sort_by(f64::total_cmp);
    let mut rungs = Vec::new();
    for (i, &fraction) in fractions.iter().enumerate() {
        // Each rung starts from a settled system: what the run before left queued
        // (async's outboxes and consumers) is not charged to it.
        scenarios::drain(&prepared, SETTLE_WITHIN)
            .await
            .with_context(|| format!("load-curve ({mode}): before the {fraction} × rung"))?;
        let workload = prepared.workload(p, p.seed.seed + i as u64);
        let config = OpenLoop::new(fraction * saturation.ok_per_s, step);
        let (report, _) =
            scenarios::load_during(&mut prepared, workload, config, Vec::new(), &mut sampler, None, &mut |_| {}).await;
        let rung = Rung::of(fraction, &report);
        eprintln!(
            "  load-curve ({mode}): {:.2} × = {:.0}/s offered → {:.0} ok/s, all-requests p99 {}",
            fraction,
            rung.offered_per_s,
            rung.goodput_per_s,
            crate::report::format::ms(rung.all_p99_us)
        );
        rungs.push(rung);
    }
    sampler.sample(&prepared.topology.file());
    let mut result = ScenarioResult::default();
    result.set_resources(&sampler);
    result.load_curve = Some(LoadCurve {
        saturation_ok_per_s: saturation.ok_per_s,
        saturation_clients: p.saturation_clients,
        saturation_ms: saturation.duration_ms,
        step_ms: step.as_millis() as u64,
        rungs,
    });
    prepared.topology.stop()?;
    Ok(result)
}

/// The saturation of a prepared topology: the workload from the profile's closed-loop
/// clients for `length`. Fails (naming `what`) when nothing succeeded: no rate can be
/// built on it.
pub async fn saturation(
    prepared: &super::Prepared,
    p: &super::Profile,
    length: Duration,
    what: &str,
) -> anyhow::Result<LoadReport> {
    let saturation = scenarios::saturation_run(prepared, p, length).await;
    anyhow::ensure!(
        saturation.ok_per_s > 0.0,
        "{what}: the saturation run had no successes ({:?}); no rate to build on it",
        saturation.all.outcomes
    );
    Ok(saturation)
}

/// `orders-per-user`: for each size, a new user with that many orders, then
/// sequential `UserOrders` reads of that user.
pub async fn orders_per_user(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    anyhow::ensure!(!p.orders_per_user.is_empty(), "the profile has no orders-per-user sizes");
    anyhow::ensure!(p.orders_per_user_reads > 0, "orders-per-user needs at least one read per size");
    let prepared = ctx.prepare(Scenario::OrdersPerUser.name(), mode, &[], p.seed).await?;
    anyhow::ensure!(!prepared.seeded.product_ids.is_empty(), "orders-per-user needs seeded products to order");
    let mut sizes = p.orders_per_user.clone();
    sizes.sort_unstable();
    let mut points = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let point = one_size(&prepared, mode, i, size, p.orders_per_user_reads).await?;
        points.push(point);
    }
    let mut prepared = prepared;
    prepared.topology.stop()?;
    Ok(ScenarioResult { orders_per_user: Some(points), ..Default::default() })
}

/// One user with `size` orders: placed, waited for, then read `reads` times.
async fn one_size(
    prepared: &super::Prepared,
    mode: Mode,
    index: usize,
    size: usize,
    reads: usize,
) -> anyhow::Result<OrdersPerUser> {
    let mut users = prepared.clients.users.clone();
    let message = CreateUserRequest {
        name: format!("Orders-per-user {size}"),
        email: format!("orders-per-user-{index}-{size}@example.test"),
    };
    let user_id = call(DEADLINE, message, |r| users.create_user(r))
        .await
        .map_err(|s| anyhow::anyhow!("orders-per-user ({mode}): CreateUser failed: {s}"))?
        .id;
    let products = &prepared.seeded.product_ids;
    let started = Instant::now();
    let placed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut last_said = Instant::now();
    let mut fill = stream::iter(0..size)
        .map(|k| {
            let message = PlaceOrderRequest {
                user_id: user_id.clone(),
                product_id: products[k % products.len()].clone(),
                quantity: 1,
            };
            place_retrying(prepared.clients.orders.clone(), message)
        })
        .buffer_unordered(FILL_CONCURRENCY);
    while let Some(result) = fill.next().await {
        result.map_err(|s| {
            anyhow::anyhow!("orders-per-user ({mode}): PlaceOrder failed for the {size}-order user: {s}")
        })?;
        let n = placed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if last_said.elapsed() >= PROGRESS_EVERY {
            eprintln!("  orders-per-user ({mode}): {n} of {size} orders placed");
            last_said = Instant::now();
        }
    }
    drop(fill);
    let acknowledged = Instant::now();
    // Every order must show before the reads are timed (async: once propagated).
    let mut query = prepared.clients.query.clone();
    let mut first = true;
    let visible_after_ms = loop {
        let request = UserOrdersRequest { user_id: user_id.clone() };
        let shown = call(DEADLINE, request, |r| query.user_orders(r)).await.map(|a| a.items.len());
        if shown.as_ref().is_ok_and(|&n| n >= size) {
            break if first { 0 } else { acknowledged.elapsed().as_millis() as u64 };
        }
        first = false;
        if last_said.elapsed() >= PROGRESS_EVERY {
            let shown = shown.as_ref().map_or_else(|s| format!("a failed read ({})", s.code()), |n| n.to_string());
            eprintln!("  orders-per-user ({mode}): waiting for the user's UserOrders to show {size} orders: {shown}");
            last_said = Instant::now();
        }
        if acknowledged.elapsed() > VISIBLE_WITHIN {
            let shown = shown.map_or_else(|s| format!("the last read failed: {s}"), |n| format!("showed {n}"));
            anyhow::bail!(
                "orders-per-user ({mode}): {} s after the last of {size} orders was acknowledged, the user's UserOrders {shown} of them",
                VISIBLE_WITHIN.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "  orders-per-user ({mode}): {size} orders placed in {:.1} s, all visible; {reads} reads",
        started.elapsed().as_secs_f64()
    );
    let before = scenarios::stats(prepared).await?;
    let mut recorder = Recorder::default();
    let mut items = None;
    for k in 0..reads {
        if last_said.elapsed() >= PROGRESS_EVERY {
            eprintln!("  orders-per-user ({mode}): {k} of {reads} reads of the {size}-order user");
            last_said = Instant::now();
        }
        let request = UserOrdersRequest { user_id: user_id.clone() };
        let sent = Instant::now();
        let answer = call(DEADLINE, request, |r| query.user_orders(r)).await;
        recorder.record(sent.elapsed(), outcome(&answer));
        if let Ok(answer) = answer {
            let n = answer.items.len();
            anyhow::ensure!(
                items.is_none_or(|m| m == n),
                "orders-per-user ({mode}): the {size}-order user's reads disagree: {n} items, then {items:?}"
            );
            items = Some(n);
        }
    }
    let after = scenarios::stats(prepared).await?;
    let hops = scenarios::rpcs_between(&before, &after);
    let per_read = |n: u64| n as f64 / reads as f64;
    Ok(OrdersPerUser {
        orders: size,
        items: items.unwrap_or(0),
        reads: recorder.summary(),
        calls_per_read: per_read(hops.values().sum()),
        calls_by_hop: hops.into_iter().filter(|(_, n)| *n > 0).map(|(hop, n)| (hop, per_read(n))).collect(),
        visible_after_ms,
    })
}

/// Places an order, retrying while it is refused as not yet known (async: orders'
/// replica has not heard of the new user), as create-then-use does.
async fn place_retrying(
    mut orders: common::proto::orders_client::OrdersClient<crate::client::Balanced>,
    message: PlaceOrderRequest,
) -> Result<(), tonic::Status> {
    let start = Instant::now();
    let mut wait = crate::latency::RETRY_FIRST;
    loop {
        match call(DEADLINE, message.clone(), |r| orders.place_order(r)).await {
            Err(s) if s.code() == tonic::Code::FailedPrecondition && start.elapsed() < REFUSED_BUDGET => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            result => return result.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rung offered `offered`/s that served `served` of it, with this all-requests p99.
    fn rung(offered: f64, served: f64, p99_ms: u64) -> Rung {
        Rung {
            fraction: offered / 1000.0,
            offered_per_s: offered,
            goodput_per_s: offered * served,
            all_p99_us: p99_ms * 1000,
            ..Default::default()
        }
    }

    #[test]
    fn the_knee_is_the_last_rung_of_the_unbroken_run_that_keeps_up() {
        let ladder = [
            rung(100.0, 1.0, 2),
            rung(250.0, 0.99, 3),
            rung(500.0, 0.97, 6), // 3× the lowest: still in
            rung(750.0, 0.96, 7), // p99 above 3×: out
            rung(900.0, 1.0, 2),  // keeps up again, but after a rung that did not
            rung(1000.0, 0.5, 400),
        ];
        assert_eq!(knee(&ladder), Knee::At(2));
        // Served too little, though fast.
        let starved = [rung(100.0, 1.0, 2), rung(200.0, 0.94, 2)];
        assert_eq!(knee(&starved), Knee::At(0));
    }

    #[test]
    fn a_ladder_whose_lowest_rung_fails_has_its_knee_below_it() {
        let ladder = [rung(100.0, 0.9, 2), rung(200.0, 1.0, 2)];
        assert_eq!(knee(&ladder), Knee::BelowLowest);
        let curve = LoadCurve { rungs: ladder.to_vec(), ..Default::default() };
        let (at, past) = curve.describe_knee();
        assert!(at.starts_with("below the lowest rung (100/s"), "{at}");
        assert!(past.contains("90.0%"), "{past}");
        assert_eq!(knee(&[]), Knee::NoRungs);
    }

    #[test]
    fn a_ladder_every_rung_of_which_keeps_up_has_its_knee_at_the_top() {
        let ladder = [rung(100.0, 1.0, 2), rung(200.0, 1.0, 3), rung(300.0, 0.95, 6)];
        assert_eq!(knee(&ladder), Knee::At(2));
        let curve = LoadCurve { rungs: ladder.to_vec(), ..Default::default() };
        let (at, past) = curve.describe_knee();
        assert!(at.starts_with("300/s"), "{at}");
        assert!(past.starts_with("no rung past it"), "{past}");
        // One past it: its figures are given.
        let mut more = ladder.to_vec();
        more.push(Rung { failed_share: 0.25, ..rung(400.0, 0.6, 500) });
        let curve = LoadCurve { rungs: more, ..Default::default() };
        let (_, past) = curve.describe_knee();
        assert!(past.contains("at 400/s") && past.contains("240 ok/s") && past.contains("25.0% failed"), "{past}");
        assert!(past.contains("500.00 ms"), "{past}");
    }
}
