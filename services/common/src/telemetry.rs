//! Logging through `tracing`, to stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,h2=warn,tower=warn"));
    // A second init (in tests that run several services in one process) keeps the first.
    if tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init().is_err() {
        tracing::debug!("tracing already initialised");
    }
}
