//! Logging through `tracing`, to stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    init_with_default("info,h2=warn,tower=warn");
}

/// As [`init`], with another filter when `RUST_LOG` is unset.
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (in tests that run several services in one process) keeps the first.
    if tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init().is_err() {
        tracing::debug!("tracing already initialised");
    }
}
