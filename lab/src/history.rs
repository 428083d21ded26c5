//! The soak's writers and the history they keep: every write they send is recorded
//! with what came back, so that a checker can later hold the system to what it
//! acknowledged.
//!
//! - An **acknowledged** write carries the service's reply (the id, the version and
//!   price, the unit price of an order): the system promised it happened.
//! - An **in-doubt** write ended in an error or a timeout: it may or may not have
//!   happened (a reply can be lost after the commit), so it may explain an effect the
//!   checker finds, but nothing is owed for it.
//!
//! The writers also count their outstanding writes, so a fault can record whether it
//! landed while writes were in flight, and the known ids grow with every acknowledged
//! creation, so later writes use them (the checker then has something to look for).

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::Context;
use common::proto::{
    CreateProductRequest, CreateUserRequest, GetProductsRequest, GetUserRequest, Order, PlaceOrderRequest, Product,
    UpdatePriceRequest, User,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{client::Clients, seed::Seeded};
use bench::call;

pub const CREATE_USER: &str = "CreateUser";
pub const CREATE_PRODUCT: &str = "CreateProduct";

/// Writes sent and not answered yet, shared by whoever sends them (the soak's writers,
/// the workload) and read by the fault runner, which records how many were in flight
/// at the instant a fault took effect: a kill that meets no write cannot lose one.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst) as u64
    }

    /// Runs `write`, counted as in flight from just before it starts until it ends
    /// (or is dropped: a cancelled write is no longer in flight).
    pub async fn during<F: std::future::Future>(&self, write: F) -> F::Output {
        struct Sent<'a>(&'a AtomicUsize);
        impl Drop for Sent<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        let _sent = Sent(&self.0);
        write.await
    }
}

/// A write as it was sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreateUser(CreateUserRequest),
    CreateProduct(CreateProductRequest),
    UpdatePrice(UpdatePriceRequest),
    PlaceOrder(PlaceOrderRequest),
}

impl Op {
    /// The RPC's name, as the figures count them.
    pub fn name(&self) -> &'static str {
        match self {
            Op::CreateUser(_) => CREATE_USER,
            Op::CreateProduct(_) => CREATE_PRODUCT,
            Op::UpdatePrice(_) => crate::workload::UPDATE_PRICE,
            Op::PlaceOrder(_) => crate::workload::PLACE_ORDER,
        }
    }
}

/// What the service answered to an acknowledged write.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    User(User),
    Product(Product),
    Order(Order),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Acknowledged(Reply),
    /// An error or a timeout (its gRPC code): it may or may not have happened.
    InDoubt(tonic::Code),
}

/// One write and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub op: Op,
    pub outcome: Outcome,
}

impl Entry {
    pub fn acknowledged(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Acknowledged(reply) => Some(reply),
            Outcome::InDoubt(_) => None,
        }
    }
}

/// Ids acknowledged so far, for the writers to use.
#[derive(Debug, Default)]
struct Known {
    users: Vec<String>,
    products: Vec<String>,
}

/// Everything the writers did, plus the state before they started.
#[derive(Debug, Default)]
pub struct History {
    /// What the owners held before the soak (the seed), read back from them while
    /// nothing was failing: acknowledged writes the checker holds the system to as well.
    pub baseline: Vec<Entry>,
    entries: Mutex<Vec<Entry>>,
    known: Mutex<Known>,
    in_flight: InFlight,
    started: AtomicU64,
}

impl History {
    /// A history whose baseline is `baseline` (all acknowledged).
    pub fn new(baseline: Vec<Entry>) -> Self {
        let mut known = Known::default();
        for entry in &baseline {
            match entry.acknowledged() {
                Some(Reply::User(u)) => known.users.push(u.id.clone()),
                Some(Reply::Product(p)) if matches!(entry.op, Op::CreateProduct(_)) => {
                    known.products.push(p.id.clone())
                }
                _ => {}
            }
        }
        Self { baseline, known: Mutex::new(known), ..Default::default() }
    }

    /// Reads the seeded users, products and orders back from their owners.
    pub async fn read_baseline(clients: &Clients, seeded: &Seeded) -> anyhow::Result<Vec<Entry>> {
        const DEADLINE: Duration = Duration::from_secs(10);
        let mut c = clients.clone();
        let mut baseline = Vec::new();
        for id in &seeded.user_ids {
            let user = call(DEADLINE, GetUserRequest { id: id.clone() }, |r| c.users.get_user(r)).await?;
            let op = Op::CreateUser(CreateUserRequest { name: user.name.clone(), email: user.email.clone() });
            baseline.push(Entry { op, outcome: Outcome::Acknowledged(Reply::User(user)) });
        }
        let mut products = Vec::new();
        // Each shard of products is asked for its own.
        for ids in common::shards::by_shard(&seeded.product_ids).into_values() {
            products.extend(call(DEADLINE, GetProductsRequest { ids }, |r| c.products.get_products(r)).await?.products);
        }
        anyhow::ensure!(
            products.len() == seeded.product_ids.len(),
            "products returned {} of the {} seeded products",
            products.len(),
            seeded.product_ids.len()
        );
        for p in products {
            let op = Op::CreateProduct(CreateProductRequest { title: p.title.clone(), price_cents: p.price_cents });
            baseline.push(Entry { op, outcome: Outcome::Acknowledged(Reply::Product(p)) });
        }
        for id in &seeded.user_ids {
            let deadline = common::deadline::Deadline::after(DEADLINE);
            let orders = query::sync::list_orders(&c.orders, id, deadline).await.context("baseline orders")?;
            for o in orders {
                let op = Op::PlaceOrder(PlaceOrderRequest {
                    user_id: o.user_id.clone(),
                    product_id: o.product_id.clone(),
                    quantity: o.quantity,
                });
                baseline.push(Entry { op, outcome: Outcome::Acknowledged(Reply::Order(o)) });
            }
        }
        Ok(baseline)
    }

    pub fn record(&self, entry: Entry) {
        if let Some(reply) = entry.acknowledged() {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            match reply {
                Reply::User(u) => known.users.push(u.id.clone()),
                Reply::Product(p) if matches!(entry.op, Op::CreateProduct(_)) => known.products.push(p.id.clone()),
                _ => {}
            }
        }
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
    }

    /// The writes of the soak so far (not the baseline).
    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes sent and not answered yet.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Writes sent so far (answered or not).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Every user acknowledged so far (baseline included).
    pub fn known_users(&self) -> Vec<String> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).users.clone()
    }

    /// Every product whose creation was acknowledged (baseline included).
    pub fn known_products(&self) -> Vec<String> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).products.clone()
    }

    fn pick(&self, rng: &mut StdRng) -> Option<(String, String)> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.users.is_empty() || known.products.is_empty() {
            return None;
        }
        Some((
            known.users[rng.random_range(0..known.users.len())].clone(),
            known.products[rng.random_range(0..known.products.len())].clone(),
        ))
    }

    /// Sends `op` with `deadline` and records how it ended; the write counts as in
    /// flight from just before it is sent until its answer is in.
    pub async fn send(&self, clients: &mut Clients, op: Op, deadline: Duration) -> Outcome {
        self.started.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .in_flight
            .during(async {
                match op.clone() {
                    Op::CreateUser(m) => call(deadline, m, |r| clients.users.create_user(r)).await.map(Reply::User),
                    Op::CreateProduct(m) => {
                        call(deadline, m, |r| clients.products.create_product(r)).await.map(Reply::Product)
                    }
                    Op::UpdatePrice(m) => {
                        call(deadline, m, |r| clients.products.update_price(r)).await.map(Reply::Product)
                    }
                    Op::PlaceOrder(m) => call(deadline, m, |r| clients.orders.place_order(r)).await.map(Reply::Order),
                }
            })
            .await;
        let outcome = match answer {
            Ok(reply) => Outcome::Acknowledged(reply),
            Err(status) => Outcome::InDoubt(status.code()),
        };
        self.record(Entry { op, outcome: outcome.clone() });
        outcome
    }
}

/// Shares of each write of the soak, in percent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WriteMix {
    pub create_user: u32,
    pub create_product: u32,
    pub update_price: u32,
    pub place_order: u32,
}

impl Default for WriteMix {
    /// Mostly orders and price changes; few new users and products, each of which the
    /// checker reads back one by one.
    fn default() -> Self {
        Self { create_user: 2, create_product: 2, update_price: 26, place_order: 70 }
    }
}

/// How the writers write.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Writers {
    /// Concurrent writer tasks.
    pub tasks: usize,
    pub mix: WriteMix,
    /// Per-write deadline.
    pub deadline_ms: u64,
    /// Each writer pauses between 0 and this long after each write.
    pub max_pause_ms: u64,
    pub seed: u64,
}

impl Writers {
    /// Starts the writers; they write until `stop`, then finish the write in hand.
    pub fn spawn(&self, clients: &Clients, history: Arc<History>, stop: CancellationToken) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..self.tasks {
            let (mut clients, history, stop, w) = (clients.clone(), history.clone(), stop.clone(), *self);
            set.spawn(async move {
                let mut rng = StdRng::seed_from_u64(w.seed.wrapping_add(i as u64));
                let mut n = 0u64;
                while !stop.is_cancelled() {
                    n += 1;
                    let Some(op) = w.next_op(&mut rng, &history, i, n) else { break };
                    history.send(&mut clients, op, Duration::from_millis(w.deadline_ms)).await;
                    let pause = Duration::from_micros(rng.random_range(0..=w.max_pause_ms * 1000));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            });
        }
        set
    }

    /// The next write of writer `i` (its `n`th), from the seeded mix; `None` if there is
    /// no user or product to write about.
    fn next_op(&self, rng: &mut StdRng, history: &History, i: usize, n: u64) -> Option<Op> {
        let m = self.mix;
        let pick = rng.random_range(0..(m.create_user + m.create_product + m.update_price + m.place_order).max(1));
        let (user_id, product_id) = history.pick(rng)?;
        let price_cents = rng.random_range(100..=100_000);
        Some(if pick < m.create_user {
            Op::CreateUser(CreateUserRequest {
                name: format!("Soak user {i}-{n}"),
                email: format!("soak-{i}-{n}@example.test"),
            })
        } else if pick < m.create_user + m.create_product {
            Op::CreateProduct(CreateProductRequest { title: format!("Soak product {i}-{n}"), price_cents })
        } else if pick < m.create_user + m.create_product + m.update_price {
            Op::UpdatePrice(UpdatePriceRequest { id: product_id, price_cents })
        } else {
            Op::PlaceOrder(PlaceOrderRequest { user_id, product_id, quantity: rng.random_range(1..=5) })
        })
    }
}
