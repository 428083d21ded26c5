//! The monolith binary: parse options, bind, serve all four services until
//! SIGTERM/Ctrl-C.

use clap::Parser;
use common::config::ServiceArgs;

#[derive(Parser)]
#[command(about = "Cascade monolith: Users, Products, Orders and Query in one process, from one database")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() {
    common::serve::run_service_binary(
        |args: &Args| args.service.listen,
        |args, listener, shutdown| async move { monolith::run(listener, &args.service, shutdown).await },
    );
}
