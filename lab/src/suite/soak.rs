//! The soak: many seeded random faults per mode under load, then a checker that holds
//! the system to the history of every write it acknowledged.
//!
//! - **Faults.** One schedule from the seed for every mode: at the same planned times
//!   the same service (users, products, orders, query) is SIGKILLed and restarted
//!   after 50–500 ms, SIGSTOPped and resumed after 50–500 ms, or restarted on its data
//!   dir. Broker faults come from a second random stream, so the service faults are
//!   identical across modes; in sync mode a broker fault has nothing to act on and is
//!   reported as skipped, not counted as done. A fault waits a little for a write to
//!   be in flight before it is issued, and records the writes in flight when it took
//!   effect.
//! - **Load.** The usual open-loop reads (`UserOrders`) at the fault rate, and a few
//!   writer tasks ([`crate::history`]) that create users and products, change prices
//!   and place orders, recording each write as acknowledged (with its reply) or in
//!   doubt.
//! - **Checker** ([`audit`]). After every fault is repaired: the time until the query
//!   view equals the owners' answer; then, with the replicas settled, every
//!   acknowledged user, product price and order against the owners, the query view
//!   and orders' replica (probed by placing one order per product); rows no write
//!   explains; duplicated applies; dead letters.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use bench::load::OpenLoop;
use common::{
    config::Mode,
    names::{replica_of, MONOLITH, QUERY},
    proto::{CreateUserRequest, GetProductRequest, GetUserRequest, Order, PlaceOrderRequest, Product, User},
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    resources::Sampler,
    scenarios::{
        converge, drain, last_repair, load_during, read_view, stats, Step, CONVERGE_WITHIN, OK, SKIPPED_NO_BROKER,
    },
    schedule::{Shape, Until},
    Convergence, Ctx, FaultEvent, FaultKind, Prepared, ScenarioResult,
};
use crate::{
    history::{Entry, History, Op, Outcome, Reply, Writers},
    workload::{Mix, Workload},
};

/// Service faults per mode unless `--kills` says otherwise.
pub const DEFAULT_FAULTS: usize = 200;
/// Progress is printed every this many faults.
const PROGRESS_EVERY: usize = 20;
/// Time allowed for a restart in the schedule: the next fault is planned after it.
const RESTART_ALLOWANCE: Duration = Duration::from_millis(300);
/// Concurrent writer tasks and how they pace themselves.
const WRITER_TASKS: usize = 3;
const WRITER_MAX_PAUSE_MS: u64 = 8;
/// How many examples of each finding the results keep.
const EXAMPLES: usize = 20;

/// What the soak did and what its checker found, in one mode.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Soak {
    /// Service faults the schedule asked for (`--kills`).
    pub faults_planned: usize,
    /// Faults carried out (service and broker), by kind: kill, pause, restart.
    pub faults_done: BTreeMap<String, usize>,
    /// Broker faults in a mode without a broker: no-ops, not counted as done.
    pub broker_faults_skipped: usize,
    /// Faults that failed or that the load outlived (not counted as done).
    pub faults_failed: usize,
    /// Faults done with at least one write outstanding at the instant the call that
    /// carried them out returned.
    pub faults_with_writes_in_flight: usize,
    /// Writes of the writers acknowledged, by RPC.
    pub acknowledged: BTreeMap<String, usize>,
    /// Writes that ended in an error or a timeout, by RPC: they may or may not have
    /// happened.
    pub in_doubt: BTreeMap<String, usize>,
    /// Acknowledged users, products, price changes and orders missing, counted once
    /// per place they are missing from (the owner, the view, orders' replica).
    pub lost: usize,
    /// Duplicated effects: rows the view shows more than once, plus query's persisted
    /// first-time `OrderPlaced` applies beyond the distinct orders its view holds.
    pub duplicated: usize,
    /// Rows of the view that no acknowledged or in-doubt write explains.
    pub phantom: usize,
    /// Users, products and orders present with a field that differs from what was
    /// acknowledged (a price, a quantity, a name), counted once per place (the owner,
    /// the view, orders' replica).
    pub wrong: usize,
    /// Sum of every service's `dead_letters` (Admin.Stats).
    pub dead_letters: u64,
    pub dead_letter_reasons: Vec<String>,
    /// query's persisted first-time `OrderPlaced` applies (0 in sync mode, where it
    /// keeps nothing).
    pub orders_applied: u64,
    /// Distinct orders in the view of every known user.
    pub orders_in_view: usize,
    /// What was checked: acknowledged users, products and orders (seed included) and
    /// the checker's own probe orders (one per product and orders shard).
    pub users_checked: usize,
    pub products_checked: usize,
    pub orders_checked: usize,
    pub probe_orders: usize,
    /// Findings by check and place ("lost order (view)", "wrong price (orders' replica)", …).
    pub findings: BTreeMap<String, usize>,
    /// The first few findings, for humans.
    pub examples: Vec<String>,
}

impl Soak {
    pub fn faults(&self) -> usize {
        self.faults_done.values().sum()
    }

    pub fn acknowledged_writes(&self) -> usize {
        self.acknowledged.values().sum()
    }

    pub fn in_doubt_writes(&self) -> usize {
        self.in_doubt.values().sum()
    }

    /// Share of the faults done that landed while writes were in flight.
    pub fn in_flight_share(&self) -> f64 {
        self.faults_with_writes_in_flight as f64 / self.faults().max(1) as f64
    }

    /// The figures that must be 0 and are not, as "lost 2" etc.
    pub fn failures(&self) -> Vec<String> {
        [
            ("lost", self.lost as u64),
            ("duplicated", self.duplicated as u64),
            ("phantom", self.phantom as u64),
            ("wrong", self.wrong as u64),
            ("dead letters", self.dead_letters),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect()
    }

    fn find(&mut self, what: &str, example: String) {
        *self.findings.entry(what.to_owned()).or_default() += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(format!("{what}: {example}"));
        }
    }
}

/// The soak's faults: kill (restarted after 50–500 ms), pause (resumed after
/// 50–500 ms) or restart on its data dir, 5 : 3 : 2.
pub const SHAPE: Shape = Shape {
    salt: 0x50A4_5E41,
    kinds: &[(FaultKind::Kill, 5), (FaultKind::Pause, 3), (FaultKind::Restart, 2)],
    down_ms: 50..=500,
    restart_allowance: RESTART_ALLOWANCE,
    gap_ms: 50..250,
    broker_first_ms: 1000..3000,
    broker_gap_ms: 2000..5000,
};

/// The soak's schedule for `faults` service faults from `seed`, and the planned time of
/// its last step. It does not depend on the mode: in sync mode the broker steps are
/// skipped when they come.
pub fn schedule(seed: u64, faults: usize) -> (Vec<Step>, Duration) {
    super::schedule::schedule(seed, &SHAPE, Until::Faults(faults))
}

/// The soak scenario in one mode.
pub async fn run(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    let mut prepared = ctx.prepare(super::Scenario::Soak.name(), mode, &[], p.seed).await?;
    let baseline = History::read_baseline(&prepared.clients, &prepared.seeded).await?;
    let history = Arc::new(History::new(baseline));
    let (steps, last) = schedule(p.seed.seed, p.soak_faults);
    let steps = super::schedule::in_mode(steps, mode);
    // Room for restarts slower than the schedule allows; a step the load outlives is
    // reported as not applied.
    let length = last + (last / 8).max(Duration::from_secs(3));
    let writers = Writers {
        tasks: WRITER_TASKS,
        mix: Default::default(),
        deadline_ms: p.deadline_ms,
        max_pause_ms: WRITER_MAX_PAUSE_MS,
        seed: p.seed.seed,
    };
    let stop = CancellationToken::new();
    let mut writing = writers.spawn(&prepared.clients, history.clone(), stop.clone());
    let reads = Mix { user_orders: 100, place_order: 0, update_price: 0 };
    let workload = Workload::new(prepared.clients.clone(), prepared.seeded.clone(), reads, p.deadline(), p.seed.seed);
    let mut sampler = Sampler::new();
    let started = Instant::now();
    let mut done = 0usize;
    let planned = steps.iter().filter(|s| s.starts.is_some()).count();
    let mut progress = |e: &FaultEvent| {
        if e.fault.is_some() {
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) || done == planned {
                eprintln!(
                    "  soak ({mode}): {done}/{planned} faults of the schedule reached (broker ones included), {} writes sent, {} s",
                    history.started(),
                    started.elapsed().as_secs()
                );
            }
        }
    };
    let (report, events) = load_during(
        &mut prepared,
        workload,
        OpenLoop::new(p.fault_rate, length),
        steps,
        &mut sampler,
        Some(history.in_flight()),
        &mut progress,
    )
    .await;
    stop.cancel();
    while let Some(ended) = writing.join_next().await {
        ended?;
    }
    prepared.topology.recover().await?;
    // Convergence is timed from the last repair that took effect; if one did not,
    // `recover` made it, just now.
    let repaired = last_repair(&events).map_or_else(Instant::now, |ms| started + Duration::from_millis(ms));
    eprintln!(
        "  soak ({mode}): repaired; checking {} writes against the owners, the view and orders' replica …",
        history.started()
    );
    let (convergence, mut soak) = audit(&prepared, &history, repaired, CONVERGE_WITHIN).await?;
    count_faults(&mut soak, &events, p.soak_faults);
    sampler.sample(&prepared.topology.file());
    let mut result = ScenarioResult::default();
    result.loads.insert("run".into(), report);
    result.faults = events;
    result.set_resources(&sampler);
    result.convergence = Some(convergence);
    result.soak = Some(soak);
    if mode == Mode::Sync {
        result.note = Some("sync mode has no broker: its broker faults are skipped and not counted".into());
    }
    if mode == Mode::Monolith {
        result.note = Some(
            "does not apply: monolith mode has no separate service processes and no broker: its faults are \
             skipped and not counted"
                .into(),
        );
    }
    prepared.topology.stop()?;
    Ok(result)
}

fn count_faults(soak: &mut Soak, events: &[FaultEvent], planned: usize) {
    soak.faults_planned = planned;
    for e in events {
        let Some(kind) = e.fault else { continue };
        if e.result == OK {
            *soak.faults_done.entry(kind.as_str().to_owned()).or_default() += 1;
            if e.writes_in_flight.unwrap_or(0) > 0 {
                soak.faults_with_writes_in_flight += 1;
            }
        } else if e.result == SKIPPED_NO_BROKER {
            soak.broker_faults_skipped += 1;
        } else if e.result.starts_with(super::scenarios::DOES_NOT_APPLY) {
            // A fault on a service the mode runs inside another process (monolith):
            // neither done nor failed; the result's note says so.
        } else {
            soak.faults_failed += 1;
        }
    }
}

/// What the history says each product's price must be.
#[derive(Default)]
struct PriceHistory {
    title: String,
    /// Every acknowledged version and its price: a version acknowledged with two
    /// prices is an identity reused (after a crash erased the first).
    versions: BTreeMap<u64, i64>,
    /// The acknowledged (version, price) with the highest version.
    newest: (u64, i64),
    /// Prices an in-doubt `UpdatePrice` asked for: one of them may have won, with a
    /// version above `newest`.
    in_doubt: BTreeSet<i64>,
    /// Every price it may ever have had, for orders whose reply was lost.
    any: BTreeSet<i64>,
}

/// The checker. Times convergence of the view of every known user from `since`
/// (giving up `within` after it), waits for the replicas to settle, probes orders'
/// replica with one order per product (for a checker user it creates on each users
/// shard, so that every orders shard's replica is probed), then compares
/// the owners, the view and the replica with `history`. The soak's fault figures are
/// left for the caller.
pub async fn audit(
    prepared: &Prepared,
    history: &History,
    since: Instant,
    within: Duration,
) -> anyhow::Result<(Convergence, Soak)> {
    let mut soak = Soak::default();
    let entries = history.entries();
    for e in &entries {
        let counts = if e.acknowledged().is_some() { &mut soak.acknowledged } else { &mut soak.in_doubt };
        *counts.entry(e.op.name().to_owned()).or_default() += 1;
    }
    let mut users_known = history.known_users();
    let convergence = converge(prepared, &users_known, since, within).await?;
    drain(prepared, within).await?;

    // Orders' replica cannot be read through the API: place one order per product and
    // read the unit price it was given; with orders as shards, each keeping a replica of
    // its own, one per product on every shard (a checker user of each shard's).
    let mut c = prepared.clients.clone();
    let deadline = Duration::from_secs(5);
    let patience = Instant::now() + within;
    // (The monolith has no orders process of its own: one checker.)
    let shards = prepared.topology.instances_of(common::names::ORDERS).count().max(1);
    // Every checker user created (each is checked like any user), and the one per shard
    // that places the probes.
    let mut created: Vec<User> = Vec::new();
    let mut checkers: Vec<String> = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    while covered.len() < shards {
        let message = CreateUserRequest { name: "Soak checker".into(), email: "checker@example.test".into() };
        match bench::call(deadline, message, |r| c.users.create_user(r)).await {
            // Creates go round robin over the users shards: one checker per shard.
            Ok(user) => {
                let new_shard = covered.insert(common::ids::Shard::of_id(&user.id).unwrap_or(0));
                if new_shard {
                    checkers.push(user.id.clone());
                }
                created.push(user);
                if covered.len() == shards {
                    break;
                }
                anyhow::ensure!(Instant::now() < patience, "no checker user created on each of {shards} shards");
                if !new_shard {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(status) if Instant::now() > patience => anyhow::bail!("cannot create the checker users: {status}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    drain(prepared, within).await?;
    let products = history.known_products();
    let mut probes: Vec<(String, Order)> = Vec::new();
    // A probe whose answer was lost may have placed an order all the same.
    let mut probes_in_doubt: Vec<PlaceOrderRequest> = Vec::new();
    for (product_id, checker) in products.iter().flat_map(|p| checkers.iter().map(move |c| (p, c))) {
        let message = PlaceOrderRequest { user_id: checker.clone(), product_id: product_id.clone(), quantity: 1 };
        let order = loop {
            match bench::call(deadline, message.clone(), |r| c.orders.place_order(r)).await {
                Ok(order) => break Some(order),
                Err(status)
                    if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                        && Instant::now() < patience =>
                {
                    probes_in_doubt.push(message.clone());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // Settled, yet the replica (sync: the owner) does not have it.
                Err(status) => {
                    soak.find("lost product (orders' replica)", format!("{product_id}: {status}"));
                    break None;
                }
            }
        };
        if let Some(order) = order {
            probes.push((product_id.clone(), order));
        }
    }
    soak.probe_orders = probes.len();
    drain(prepared, within).await?;

    // What the history owes.
    let all: Vec<&Entry> = history.baseline.iter().chain(entries.iter()).collect();
    let mut prices: HashMap<String, PriceHistory> = HashMap::new();
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    let mut orders: BTreeMap<String, Order> = BTreeMap::new();
    let mut in_doubt_orders: Vec<&PlaceOrderRequest> = Vec::new();
    let mut conflicts: Vec<String> = Vec::new();
    for e in &all {
        match (&e.op, &e.outcome) {
            (Op::CreateUser(_), Outcome::Acknowledged(Reply::User(u))) => {
                if let Some(earlier) = users.insert(u.id.clone(), u.clone()) {
                    conflicts.push(format!("user id acknowledged twice: {earlier:?} and {u:?}"));
                }
            }
            (Op::CreateProduct(_) | Op::UpdatePrice(_), Outcome::Acknowledged(Reply::Product(p))) => {
                let h = prices.entry(p.id.clone()).or_default();
                if matches!(e.op, Op::CreateProduct(_)) {
                    h.title = p.title.clone();
                }
                if p.version > h.newest.0 {
                    h.newest = (p.version, p.price_cents);
                }
                h.any.insert(p.price_cents);
                if let Some(earlier) = h.versions.insert(p.version, p.price_cents) {
                    if earlier != p.price_cents {
                        conflicts.push(format!(
                            "{} v{} acknowledged at {earlier} and at {}",
                            p.id, p.version, p.price_cents
                        ));
                    }
                }
            }
            (Op::UpdatePrice(m), Outcome::InDoubt(_)) => {
                let h = prices.entry(m.id.clone()).or_default();
                h.in_doubt.insert(m.price_cents);
                h.any.insert(m.price_cents);
            }
            (Op::PlaceOrder(_), Outcome::Acknowledged(Reply::Order(o))) => {
                if let Some(earlier) = orders.insert(o.id.clone(), o.clone()) {
                    conflicts.push(format!("order id acknowledged twice: {earlier:?} and {o:?}"));
                }
            }
            (Op::PlaceOrder(m), Outcome::InDoubt(_)) => in_doubt_orders.push(m),
            _ => {}
        }
    }
    for conflict in conflicts {
        soak.find("wrong acknowledgement (identity reused)", conflict);
    }
    for checker in created {
        users_known.push(checker.id.clone());
        users.insert(checker.id.clone(), checker);
    }
    for (_, o) in &probes {
        orders.insert(o.id.clone(), o.clone());
    }

    // Users: at their owner and in the view.
    let view = read_view(prepared, &users_known).await?;
    let mut query = prepared.clients.query.clone();
    for (id, user) in &users {
        soak.users_checked += 1;
        match bench::call(deadline, GetUserRequest { id: id.clone() }, |r| c.users.get_user(r)).await {
            Ok(got) if &got == user => {}
            Ok(got) => soak.find("wrong user (owner)", format!("{got:?} != {user:?}")),
            Err(status) if status.code() == tonic::Code::NotFound => soak.find("lost user (owner)", id.clone()),
            Err(status) => anyhow::bail!("the checker cannot read user {id}: {status}"),
        }
        let request = common::proto::UserOrdersRequest { user_id: id.clone() };
        match bench::call(deadline, request, |r| query.user_orders(r)).await {
            Ok(got) if got.user.as_ref() == Some(user) => {}
            Ok(got) => soak.find("wrong user (view)", format!("{:?} != {user:?}", got.user)),
            Err(status) if status.code() == tonic::Code::NotFound => soak.find("lost user (view)", id.clone()),
            Err(status) => anyhow::bail!("the checker cannot read the view of {id}: {status}"),
        }
    }

    // Products: the price the history allows, at the owner, in the view and in orders'
    // replica.
    let mut accepted: HashMap<String, i64> = HashMap::new();
    for product_id in &products {
        let Some(h) = prices.get(product_id) else { continue };
        soak.products_checked += 1;
        let (version, price) = h.newest;
        match bench::call(deadline, GetProductRequest { id: product_id.clone() }, |r| c.products.get_product(r)).await {
            Ok(got) => {
                let Product { price_cents, version: v, title, .. } = got;
                if v < version {
                    soak.find(
                        "lost price change (owner)",
                        format!("{product_id} at version {v}, acknowledged {version}"),
                    );
                } else if v == version && price_cents != price {
                    soak.find("wrong price (owner)", format!("{product_id} v{v}: {price_cents} != {price}"));
                } else if v > version && !h.in_doubt.contains(&price_cents) {
                    soak.find(
                        "wrong price (owner)",
                        format!("{product_id} v{v} > acknowledged v{version}, at {price_cents}: no write asked for it"),
                    );
                } else if v > version {
                    // An in-doubt change that did happen, after the last acknowledged one.
                    accepted.insert(product_id.clone(), price_cents);
                }
                if title != h.title {
                    soak.find("wrong product (owner)", format!("{product_id}: title {title:?} != {:?}", h.title));
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                soak.find("lost product (owner)", product_id.clone())
            }
            Err(status) => anyhow::bail!("the checker cannot read product {product_id}: {status}"),
        }
        accepted.entry(product_id.clone()).or_insert(price);
    }
    for (product_id, order) in &probes {
        let want = accepted.get(product_id).copied();
        if want.is_some_and(|w| w != order.unit_price_cents) {
            soak.find(
                "wrong price (orders' replica)",
                format!("{product_id}: {} != {}", order.unit_price_cents, want.unwrap_or_default()),
            );
        }
    }
    let mut view_prices: BTreeSet<&str> = BTreeSet::new();
    for (_, item) in &view {
        if let Some(&want) = accepted.get(&item.product_id) {
            if item.current_price_cents != want && view_prices.insert(item.product_id.as_str()) {
                soak.find(
                    "wrong price (view)",
                    format!("{}: current {} != {want}", item.product_id, item.current_price_cents),
                );
            }
        }
    }

    // Orders: every acknowledged one exactly once, as acknowledged; every other row
    // explained by an in-doubt order.
    let mut rows: BTreeMap<&str, Vec<(&str, &common::proto::UserOrderItem)>> = BTreeMap::new();
    for (user_id, item) in &view {
        rows.entry(item.order_id.as_str()).or_default().push((user_id.as_str(), item));
    }
    soak.orders_in_view = rows.len();
    for (id, seen) in &rows {
        if seen.len() > 1 {
            soak.duplicated += seen.len() - 1;
            soak.find("duplicated row (view)", format!("order {id} shown {} times", seen.len()));
        }
    }
    for (id, order) in &orders {
        soak.orders_checked += 1;
        let Some(&(user_id, item)) = rows.get(id.as_str()).and_then(|r| r.first()) else {
            soak.find("lost order (view)", format!("{id} of {}", order.user_id));
            continue;
        };
        let title = prices.get(&order.product_id).map(|h| h.title.as_str());
        if user_id != order.user_id
            || item.product_id != order.product_id
            || item.quantity != order.quantity
            || item.unit_price_cents != order.unit_price_cents
            || item.placed_at_unix_ms != order.placed_at_unix_ms
            || title.is_some_and(|t| t != item.title)
        {
            soak.find("wrong order (view)", format!("{item:?} of {user_id} != {order:?}"));
        }
    }
    let mut unexplained = in_doubt_orders;
    unexplained.extend(probes_in_doubt.iter());
    for (id, seen) in &rows {
        if orders.contains_key(*id) {
            continue;
        }
        let (user_id, item) = seen[0];
        let explains = |m: &&PlaceOrderRequest| {
            m.user_id == user_id && m.product_id == item.product_id && m.quantity == item.quantity
        };
        match unexplained.iter().position(explains) {
            Some(i) => {
                unexplained.swap_remove(i);
                let possible = prices.get(&item.product_id).is_some_and(|h| h.any.contains(&item.unit_price_cents));
                if !possible {
                    soak.find(
                        "wrong order (view)",
                        format!("{id}: unit price {} was never a price of {}", item.unit_price_cents, item.product_id),
                    );
                }
            }
            None => soak.find("phantom row (view)", format!("{item:?} of {user_id}")),
        }
    }

    // Dead letters and double applies, as the services count them.
    let stats = stats(prepared).await?;
    for s in stats.values() {
        soak.dead_letters += s.dead_letters;
        soak.dead_letter_reasons.extend(s.dead_letter_reasons.iter().take(EXAMPLES).cloned());
    }
    // Each query instance applies every order once to its own view (with replicas, the
    // most any of them applied; the monolith's own count in monolith mode).
    let query_like = |name: &str| name == QUERY || name == MONOLITH || replica_of(name) == Some(QUERY);
    soak.orders_applied =
        stats.iter().filter(|(name, _)| query_like(name)).map(|(_, s)| s.orders_applied).max().unwrap_or(0);
    if soak.orders_applied as usize > soak.orders_in_view {
        let extra = soak.orders_applied as usize - soak.orders_in_view;
        soak.duplicated += extra;
        soak.findings.insert("duplicated apply (query)".into(), extra);
        soak.examples.push(format!(
            "duplicated apply (query): {} first-time applies, {} distinct orders in the view",
            soak.orders_applied, soak.orders_in_view
        ));
    }
    for (what, n) in &soak.findings {
        if what.starts_with("lost") {
            soak.lost += n;
        } else if what.starts_with("wrong") {
            soak.wrong += n;
        } else if what.starts_with("phantom") {
            soak.phantom += n;
        }
    }
    Ok((convergence, soak))
}
