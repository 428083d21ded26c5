//! The Cascade workload: a fixed mix of `UserOrders` reads and `PlaceOrder` /
//! `UpdatePrice` writes over seeded data, chosen by a seeded generator, each request
//! with its own deadline (sent as `grpc-timeout` and enforced by the client itself, so
//! no request outlives it), over reused HTTP/2 connections. It feeds the load engines of
//! `bench::load`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bench::{call, outcome};
use common::proto::{PlaceOrderRequest, UpdatePriceRequest, UserOrdersRequest};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{client::Clients, history::InFlight, seed::Seeded};

pub const USER_ORDERS: &str = "UserOrders";
pub const PLACE_ORDER: &str = "PlaceOrder";
pub const UPDATE_PRICE: &str = "UpdatePrice";

/// Shares of each operation, in percent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Mix {
    pub user_orders: u32,
    pub place_order: u32,
    pub update_price: u32,
}

impl Default for Mix {
    /// Mostly reads, as the query side of a shop is.
    fn default() -> Self {
        Self { user_orders: 80, place_order: 15, update_price: 5 }
    }
}

/// A request of the workload, ready to send.
pub type Request = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// Makes the requests of a run.
pub struct Workload {
    clients: Clients,
    seeded: Arc<Seeded>,
    mix: Mix,
    deadline: Duration,
    rng: StdRng,
    /// Ids of the orders acknowledged during the run, for the loss checker.
    acked_orders: Arc<Mutex<Vec<String>>>,
    /// Writes (`PlaceOrder`, `UpdatePrice`) sent and not answered yet: a fault records
    /// how many it met.
    writes_in_flight: InFlight,
    /// `UserOrders` answers that succeeded marked partial (degraded: no product details).
    partial_answers: Arc<AtomicU64>,
}

impl Workload {
    pub fn new(clients: Clients, seeded: Arc<Seeded>, mix: Mix, deadline: Duration, seed: u64) -> Self {
        Self {
            clients,
            seeded,
            mix,
            deadline,
            rng: StdRng::seed_from_u64(seed),
            acked_orders: Default::default(),
            writes_in_flight: InFlight::default(),
            partial_answers: Arc::default(),
        }
    }

    /// How many of this workload's `UserOrders` succeeded with a partial answer (each
    /// is also an `OK`: the client got an answer, without product details).
    pub fn partial_answers(&self) -> Arc<AtomicU64> {
        self.partial_answers.clone()
    }

    /// Where acknowledged order ids are collected.
    pub fn acked_orders(&self) -> Arc<Mutex<Vec<String>>> {
        self.acked_orders.clone()
    }

    /// The counter of this workload's writes in flight.
    pub fn writes_in_flight(&self) -> InFlight {
        self.writes_in_flight.clone()
    }

    /// The next request: its operation and the future that sends it.
    pub fn next_request(&mut self) -> (&'static str, Request) {
        let total = self.mix.user_orders + self.mix.place_order + self.mix.update_price;
        let pick = self.rng.random_range(0..total.max(1));
        let user_id = self.seeded.user_ids[self.rng.random_range(0..self.seeded.user_ids.len())].clone();
        let product_id = self.seeded.product_ids[self.rng.random_range(0..self.seeded.product_ids.len())].clone();
        let deadline = self.deadline;
        if pick < self.mix.user_orders {
            let mut query = self.clients.query.clone();
            let partial = self.partial_answers.clone();
            (
                USER_ORDERS,
                Box::pin(async move {
                    let result = call(deadline, UserOrdersRequest { user_id }, |r| query.user_orders(r)).await;
                    if result.as_ref().is_ok_and(|answer| answer.partial) {
                        partial.fetch_add(1, Ordering::Relaxed);
                    }
                    outcome(&result)
                }),
            )
        } else if pick < self.mix.user_orders + self.mix.place_order {
            let mut orders = self.clients.orders.clone();
            let acked = self.acked_orders.clone();
            let in_flight = self.writes_in_flight.clone();
            let quantity = self.rng.random_range(1..=5);
            let message = PlaceOrderRequest { user_id, product_id, quantity };
            (
                PLACE_ORDER,
                Box::pin(async move {
                    let result = in_flight.during(call(deadline, message, |r| orders.place_order(r))).await;
                    if let Ok(order) = &result {
                        acked.lock().unwrap_or_else(|p| p.into_inner()).push(order.id.clone());
                    }
                    outcome(&result)
                }),
            )
        } else {
            let mut products = self.clients.products.clone();
            let in_flight = self.writes_in_flight.clone();
            let message = UpdatePriceRequest { id: product_id, price_cents: self.rng.random_range(100..=100_000) };
            (
                UPDATE_PRICE,
                Box::pin(async move {
                    outcome(&in_flight.during(call(deadline, message, |r| products.update_price(r))).await)
                }),
            )
        }
    }
}
