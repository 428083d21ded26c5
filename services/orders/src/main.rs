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

#[tokio::main]
async fn main() {
    common::telemetry::init();
    common::exit_on_error(serve(Args::parse()).await);
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let shutdown = common::shutdown::on_signal()?;
    let listener = common::serve::bind(args.service.listen).await?;
    let peers = orders::Peers { users: args.users_addr, products: args.products_addr };
    orders::run(listener, &args.service, peers, shutdown).await
}
