//! The users service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade users service (A): CreateUser, GetUser")]
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
    users::run(listener, &args.service, shutdown).await
}
