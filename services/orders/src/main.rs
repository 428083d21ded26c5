//! The orders service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade orders service (C): PlaceOrder, ListOrdersByUser")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The users service (sync mode).
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: Option<SocketAddr>,
    /// The products service (sync mode).
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: Option<SocketAddr>,
}

fn main() {
    common::serve::main(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move {
            let peers = orders::Peers { users: args.users_addr, products: args.products_addr };
            orders::run(listener, &args.service, peers, shutdown).await
        },
    );
}
