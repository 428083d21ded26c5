//! The products service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade products service (B): CreateProduct, UpdatePrice, GetProduct, GetProducts")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() {
    common::telemetry::init();
    common::exit_on_error(serve(Args::parse()).await);
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let shutdown = common::shutdown::on_signal()?;
    let listener = common::serve::bind(args.service.listen).await?;
    products::run(listener, &args.service, shutdown).await
}
