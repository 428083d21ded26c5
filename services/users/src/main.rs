//! The users service binary: parse options, bind, serve until SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade users service (A): CreateUser, GetUser")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() {
    common::serve::run_service_binary(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move { users::run(listener, &args.service, shutdown).await },
    );
}
