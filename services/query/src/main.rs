//! The query service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade query service (D): UserOrders")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The users service (sync mode).
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: Option<SocketAddr>,
    /// The orders service (sync mode).
    #[arg(long, env = "CASCADE_ORDERS_ADDR")]
    orders_addr: Option<SocketAddr>,
    /// The products service (sync mode).
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: Option<SocketAddr>,
}

fn main() {
    common::serve::main(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move {
            let peers = query::Peers { users: args.users_addr, orders: args.orders_addr, products: args.products_addr };
            query::run(listener, &args.service, peers, shutdown).await
        },
    );
}
