//! Fills a running topology through its public API, deterministically: the same seed
//! gives the same users, products, prices and order choices.

use std::time::Duration;

use anyhow::Context;
use common::proto::{CreateProductRequest, CreateUserRequest, PlaceOrderRequest};
use futures::{stream, StreamExt, TryStreamExt};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::Clients;

/// Requests in flight while seeding: enough to overlap the flushes.
const CONCURRENCY: usize = 16;
/// Per-request deadline while seeding.
const DEADLINE: Duration = Duration::from_secs(10);
/// The file a seed run writes its ids to, inside the run dir.
pub const SEED_FILE: &str = "seed.json";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SeedConfig {
    pub users: usize,
    pub products: usize,
    pub orders: usize,
    pub seed: u64,
}

/// The ids the services generated, for later commands to use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seeded {
    pub user_ids: Vec<String>,
    pub product_ids: Vec<String>,
    pub order_ids: Vec<String>,
}

/// Creates the users, then the products, then the orders; `progress` is told after
/// each phase (phase name, count done).
pub async fn seed(
    clients: &Clients,
    config: SeedConfig,
    mut progress: impl FnMut(&str, usize),
) -> anyhow::Result<Seeded> {
    if config.orders > 0 && (config.users == 0 || config.products == 0) {
        anyhow::bail!("orders need at least one user and one product: pass --users and --products > 0");
    }
    let mut rng = StdRng::seed_from_u64(config.seed);

    let user_ids: Vec<String> = stream::iter(0..config.users)
        .map(|i| {
            let mut client = clients.users.clone();
            async move {
                let message = CreateUserRequest { name: format!("User {i}"), email: format!("user{i}@example.test") };
                bench::call(DEADLINE, message, |r| client.create_user(r)).await.map(|u| u.id)
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .context("CreateUser failed while seeding")?;
    progress("users", user_ids.len());

    let prices: Vec<i64> = (0..config.products).map(|_| rng.random_range(100..=100_000)).collect();
    let product_ids: Vec<String> = stream::iter(prices.into_iter().enumerate())
        .map(|(i, price_cents)| {
            let mut client = clients.products.clone();
            async move {
                let message = CreateProductRequest { title: format!("Product {i}"), price_cents };
                bench::call(DEADLINE, message, |r| client.create_product(r)).await.map(|p| p.id)
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .context("CreateProduct failed while seeding")?;
    progress("products", product_ids.len());

    let choices: Vec<PlaceOrderRequest> = (0..config.orders)
        .map(|_| PlaceOrderRequest {
            user_id: user_ids[rng.random_range(0..user_ids.len())].clone(),
            product_id: product_ids[rng.random_range(0..product_ids.len())].clone(),
            quantity: rng.random_range(1..=5),
        })
        .collect();
    let order_ids: Vec<String> = stream::iter(choices)
        .map(|message| {
            let mut client = clients.orders.clone();
            async move {
                // In async mode orders' replica may not have the new users and products
                // yet; a real client would retry such an order, and so does the seeder.
                let start = std::time::Instant::now();
                loop {
                    match bench::call(DEADLINE, message.clone(), |r| client.place_order(r)).await {
                        Err(status)
                            if status.code() == tonic::Code::FailedPrecondition && start.elapsed() < DEADLINE =>
                        {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        result => break result.map(|o| o.id),
                    }
                }
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await
        .context("PlaceOrder failed while seeding")?;
    progress("orders", order_ids.len());

    Ok(Seeded { user_ids, product_ids, order_ids })
}

/// Seeds a running topology with progress on stderr, and records the ids in the run
/// dir's [`SEED_FILE`] for later commands.
pub async fn seed_run_dir(run_dir: &std::path::Path, clients: &Clients, config: SeedConfig) -> anyhow::Result<Seeded> {
    eprintln!(
        "seeding {} users, {} products, {} orders (seed {}) …",
        config.users, config.products, config.orders, config.seed
    );
    let seeded = seed(clients, config, |phase, n| eprintln!("  {phase}: {n} created")).await?;
    let path = run_dir.join(SEED_FILE);
    std::fs::write(&path, serde_json::to_string(&seeded)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("seeded; ids in {}", path.display());
    Ok(seeded)
}

impl Seeded {
    /// The ids `lab seed` recorded in `run_dir`.
    pub fn read(run_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = run_dir.join(SEED_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read {}: run `lab seed --run-dir {}` first", path.display(), run_dir.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a seed file", path.display()))
    }
}
