//! The query service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use common::config::{Mode, ServiceArgs};

#[derive(Parser)]
#[command(about = "Cascade query service (D): UserOrders")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// Where the answer comes from.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// The users service (sync mode).
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: SocketAddr,
    /// The orders service (sync mode).
    #[arg(long, env = "CASCADE_ORDERS_ADDR")]
    orders_addr: SocketAddr,
    /// The products service (sync mode).
    #[arg(long, env = "CASCADE_PRODUCTS_ADDR")]
    products_addr: SocketAddr,
}

#[tokio::main]
async fn main() {
    common::telemetry::init();
    common::exit_on_error(serve(Args::parse()).await);
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let shutdown = common::shutdown::on_signal()?;
    let listener = common::serve::bind(args.service.listen).await?;
    let source = match args.mode {
        Mode::Sync => query::sync::GrpcSource::new(args.users_addr, args.orders_addr, args.products_addr),
    };
    query::run(listener, &args.service, source, shutdown).await
}
