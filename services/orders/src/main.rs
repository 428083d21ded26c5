//! The orders service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use std::net::SocketAddr;

use clap::Parser;
use common::config::{Mode, ServiceArgs};

#[derive(Parser)]
#[command(about = "Cascade orders service (C): PlaceOrder, ListOrdersByUser")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// How orders learns about users and products.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// The users service (sync mode).
    #[arg(long, env = "CASCADE_USERS_ADDR")]
    users_addr: SocketAddr,
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
    let directory = match args.mode {
        Mode::Sync => orders::sync::GrpcDirectory::new(args.users_addr, args.products_addr),
    };
    orders::run(listener, &args.service, directory, shutdown).await
}
