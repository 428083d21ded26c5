//! Connecting to NATS and making sure the stream exists.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::events;

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Connects to `url`, starting even if the broker is not there yet (writes then wait
/// in the outbox) and reconnecting forever, quickly, when it goes away.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(1))
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(20) as u64))
        .event_callback(|event| async move { tracing::info!(%event, "nats connection") })
        .connect(url)
        .await
}

/// The stream every event goes to (file storage), created if missing.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    js.get_or_create_stream(stream::Config {
        name: events::STREAM.to_owned(),
        subjects: vec![events::STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
}

/// A service's connection to the broker and the background tasks (relay, consumer)
/// that use it. Tasks watch the service's shutdown token; [`Events::stop`] waits for
/// them and drains the connection.
pub struct Events {
    client: async_nats::Client,
    tasks: tokio::task::JoinSet<()>,
}

impl Events {
    pub async fn connect(url: &str, service: &str) -> Result<Self, async_nats::ConnectError> {
        Ok(Self { client: connect(url, service).await?, tasks: tokio::task::JoinSet::new() })
    }

    pub fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }

    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Waits for every task to end (cancel their token first), then drains.
    pub async fn stop(mut self) {
        while let Some(ended) = self.tasks.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "event task failed");
            }
        }
        if let Err(error) = self.client.drain().await {
            tracing::warn!(%error, "nats drain failed");
        }
    }
}

/// Async mode for an owner service: connect, and relay `outbox` to the stream until
/// `shutdown`. `None` in sync mode.
pub async fn relay_outbox(
    args: &crate::config::ServiceArgs,
    service: &str,
    outbox: crate::outbox::Outbox,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<Events>, Box<dyn std::error::Error + Send + Sync>> {
    if args.mode != crate::config::Mode::Async {
        return Ok(None);
    }
    let mut events = Events::connect(args.require_nats_url()?, service).await?;
    let js = events.jetstream();
    events.spawn(crate::outbox::relay(outbox, js, shutdown.clone()));
    Ok(Some(events))
}
