//! Fault injection for tests: ways to hold a crash window open long enough that a
//! test can land a real SIGKILL inside it, instead of hoping to hit a window of a few
//! hundred microseconds. Off unless its environment variable is set; production
//! configurations never set it.
//!
//! - `CASCADE_FAILPOINT_WRITE_FLUSH_DELAY_MS=N`: every write waits N ms between
//!   committing its sled transaction (in memory) and flushing it to disk, and sled's
//!   own background flush is turned off, so the write stays committed but not durable
//!   for the whole N ms: the state a SIGKILL at the worst instant finds.

use std::{sync::OnceLock, time::Duration};

pub const WRITE_FLUSH_DELAY_ENV: &str = "CASCADE_FAILPOINT_WRITE_FLUSH_DELAY_MS";

/// The delay between commit and flush, if the failpoint is set.
pub fn write_flush_delay() -> Option<Duration> {
    static DELAY: OnceLock<Option<Duration>> = OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms = std::env::var(WRITE_FLUSH_DELAY_ENV).ok()?.parse::<u64>().ok()?;
        tracing::warn!(ms, "failpoint: writes wait between commit and flush; background flush off");
        Some(Duration::from_millis(ms))
    })
}

/// Where a write has committed and is about to flush: waits if the failpoint is set.
pub async fn before_write_flush() {
    if let Some(delay) = write_flush_delay() {
        tokio::time::sleep(delay).await;
    }
}
