//! The query service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::{
    config::{PeerList, ServiceArgs},
    events::QUERY_CONSUMER,
};

#[derive(Parser)]
#[command(about = "Cascade query service (D): UserOrders")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The users service (sync mode); its shards comma-separated, in shard order.
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: Option<PeerList>,
    /// The orders service (sync mode); its shards comma-separated, in shard order.
    #[arg(long, env = "CASCADE_ORDERS_ADDR")]
    orders_addr: Option<PeerList>,
    /// The products service (sync mode); its shards comma-separated, in shard order.
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: Option<PeerList>,
    /// The durable consumer that feeds this instance's view (async mode). Each replica
    /// of the query service needs its own (`query-1`, `query-2`, …): replicas sharing
    /// one would split its events between their views.
    #[arg(long, env = "CASCADE_CONSUMER_NAME", default_value = QUERY_CONSUMER, value_parser = consumer_name)]
    consumer_name: String,
}

/// A durable consumer name JetStream accepts: letters, digits, `-` and `_`, at most 64.
fn consumer_name(text: &str) -> Result<String, String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if text.is_empty() || text.len() > 64 || !text.chars().all(fine) {
        return Err(format!(
            "{text:?} is not a durable consumer name: use 1 to 64 letters, digits, '-' or '_' (e.g. query-2)"
        ));
    }
    Ok(text.to_owned())
}

fn main() {
    common::serve::run_service_binary(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move {
            let peers = query::Peers {
                users: args.users_addr.clone(),
                orders: args.orders_addr.clone(),
                products: args.products_addr.clone(),
            };
            query::run_as(listener, &args.service, peers, &args.consumer_name, shutdown).await
        },
    );
}
