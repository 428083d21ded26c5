//! Connecting to NATS and making sure the stream exists.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Mode, ServiceArgs},
    consumer::Projection,
    events,
    outbox::Outbox,
};

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
    shutdown: CancellationToken,
}

/// Why a service could not join the broker.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("--nats-url is required in async mode")]
    NoUrl,
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

impl Events {
    /// In async mode, connects `service` to the broker; `None` in sync mode.
    pub async fn start(
        args: &ServiceArgs,
        service: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, EventsError> {
        if args.mode != Mode::Async {
            return Ok(None);
        }
        let url = args.nats_url.as_deref().ok_or(EventsError::NoUrl)?;
        let client = connect(url, service).await?;
        Ok(Some(Self { client, tasks: tokio::task::JoinSet::new(), shutdown: shutdown.clone() }))
    }

    fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client.clone())
    }

    /// Publishes `outbox` to the stream until shutdown (see [`crate::outbox`]).
    pub fn relay(&mut self, outbox: Outbox) {
        crate::stats::watch_outbox(&outbox);
        self.tasks.spawn(crate::outbox::relay(outbox, self.jetstream(), self.shutdown.clone()));
    }

    /// Applies `subjects` to `projection` through the durable consumer `name` until
    /// shutdown (see [`crate::consumer`]).
    pub fn consume<P: Projection>(&mut self, name: &'static str, subjects: &'static [&'static str], projection: P) {
        let js = self.jetstream();
        self.tasks.spawn(crate::consumer::consume(js, name, subjects, projection, self.shutdown.clone()));
    }

    /// Waits for every task to end (after shutdown), then drains the connection.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
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
