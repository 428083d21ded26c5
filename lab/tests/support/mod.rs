//! Test support: a real topology (the service binaries as processes) in a temporary
//! run dir on ephemeral loopback ports.
#![allow(dead_code)]

use std::time::Duration;

use common::config::Mode;
use lab::{
    client::Clients,
    topology::{Config, Topology},
};
use tempfile::TempDir;

pub struct Lab {
    pub topology: Topology,
    pub clients: Clients,
    /// Kept so the run dir lives as long as the test.
    pub dir: TempDir,
}

pub async fn start(mode: Mode) -> Lab {
    start_with(mode, |_| {}).await
}

/// Like [`start`], with the topology's configuration adjusted by `adjust` first.
pub async fn start_with(mode: Mode, adjust: impl FnOnce(&mut Config)) -> Lab {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(mode, dir.path().join("run"));
    adjust(&mut config);
    let topology = Topology::start(config).await.expect("topology starts");
    let clients = Clients::for_topology(&topology.file()).expect("clients");
    Lab { topology, clients, dir }
}

impl Lab {
    /// New clients (fresh connections), e.g. after a restart.
    pub fn reconnect(&mut self) {
        self.clients = Clients::for_topology(&self.topology.file()).expect("clients");
    }
}

/// A request with an explicit deadline.
pub fn req<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Asserts a gRPC error's code and that its message mentions `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: tonic::Code, needle: &str) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "message: {}", status.message());
    assert!(status.message().contains(needle), "{:?} does not mention {needle:?}", status.message());
}

/// In async mode, waits until the stream holds `events` events and every consumer has
/// applied them (the replicas are then as fresh as they can be); in sync mode there is
/// nothing to wait for.
pub async fn settle(lab: &Lab, events: u64) {
    if let Some(url) = lab.topology.nats_url() {
        lab::convergence::wait_settled(&url, events, Duration::from_secs(30)).await.expect("replicas settle");
    }
}

/// The truth for convergence checks: built by the lab from the owners' raw answers.
pub fn truth(lab: &Lab) -> lab::convergence::Truth {
    lab::convergence::Truth::of(&lab.topology).expect("owners have addresses")
}

/// Waits until the query view equals the truth for `user_ids` (async mode: settles
/// first, then compares, until clean or `timeout`). Returns the last comparison.
pub async fn converge(lab: &Lab, min_events: u64, user_ids: &[String], timeout: Duration) -> lab::convergence::Diff {
    let truth = truth(lab);
    let start = std::time::Instant::now();
    loop {
        settle(lab, min_events).await;
        let diff = lab::convergence::compare(&lab.clients, &truth, user_ids).await.expect("comparison runs");
        if diff.is_clean() || start.elapsed() > timeout {
            return diff;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates `n` users and `m` products; returns their ids.
pub async fn populate(lab: &Lab, n: usize, m: usize) -> (Vec<String>, Vec<String>) {
    use common::proto::{CreateProductRequest, CreateUserRequest};
    let mut c = lab.clients.clone();
    let mut users = Vec::new();
    for i in 0..n {
        let message = CreateUserRequest { name: format!("User {i}"), email: format!("u{i}@example.test") };
        users.push(c.users.create_user(req(message, Duration::from_secs(5))).await.unwrap().into_inner().id);
    }
    let mut products = Vec::new();
    for i in 0..m {
        let message = CreateProductRequest { title: format!("Product {i}"), price_cents: 100 + i as i64 };
        products.push(c.products.create_product(req(message, Duration::from_secs(5))).await.unwrap().into_inner().id);
    }
    (users, products)
}
