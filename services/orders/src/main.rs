//! The orders service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::{PeerList, ServiceArgs};

#[derive(Parser)]
#[command(about = "Cascade orders service (C): PlaceOrder, ListOrdersByUser")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The users service (sync mode); its shards comma-separated, in shard order.
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: Option<PeerList>,
    /// The products service (sync mode); its shards comma-separated, in shard order.
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: Option<PeerList>,
}

fn main() {
    common::serve::run_service_binary(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move {
            let peers = orders::Peers { users: args.users_addr.clone(), products: args.products_addr.clone() };
            orders::run(listener, &args.service, peers, shutdown).await
        },
    );
}
