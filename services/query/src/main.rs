//! The query service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::{PeerAddr, ServiceArgs};

#[derive(Parser)]
#[command(about = "Cascade query service (D): UserOrders")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The users service (sync mode).
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: Option<PeerAddr>,
    /// The orders service (sync mode).
    #[arg(long, env = "CASCADE_ORDERS_ADDR")]
    orders_addr: Option<PeerAddr>,
    /// The products service (sync mode).
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: Option<PeerAddr>,
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
            query::run(listener, &args.service, peers, shutdown).await
        },
    );
}
