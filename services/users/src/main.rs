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
async fn main() -> anyhow::Result<()> {
    common::telemetry::init();
    let args = Args::parse();
    let shutdown = common::shutdown::on_signal()?;
    let listener = common::serve::bind(args.service.listen).await?;
    users::run(listener, &args.service, shutdown).await
}
