//! Connecting to NATS and making sure the stream exists.

use std::{sync::OnceLock, time::Duration};

use async_nats::jetstream::{self, stream};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Mode, ServiceArgs},
    consumer::Projection,
    events,
    outbox::Outbox,
};

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish, unless
/// `--duplicate-window-ms` says otherwise.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// This process's duplicate window, set once by [`Events::start`].
static DUPLICATE_WINDOW: OnceLock<Duration> = OnceLock::new();

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

/// The configuration of the stream every event goes to. File storage, because an
/// acknowledged event must survive a broker restart.
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: events::STREAM.to_owned(),
        subjects: vec![events::STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: *DUPLICATE_WINDOW.get().unwrap_or(&DEFAULT_DUPLICATE_WINDOW),
        ..Default::default()
    }
}

/// Why the stream or a consumer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot create the stream: {0}")]
    Create(#[from] jetstream::context::CreateStreamError),
    #[error("cannot update the stream: {0}")]
    Update(jetstream::context::UpdateStreamError),
    #[error("{0}")]
    Misconfigured(String),
}

/// The stream, created if missing (the broker may have come back without its data),
/// and brought back to [`stream_config`] if someone changed its subjects or duplicate
/// window. Storage cannot change in place: a stream kept in memory is refused with a
/// clear error rather than used, since it would lose acknowledged events on a restart.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<stream::Stream, BrokerError> {
    let wanted = stream_config();
    let stream = js.get_or_create_stream(wanted.clone()).await?;
    let have = &stream.cached_info().config;
    if have.storage != wanted.storage {
        return Err(BrokerError::Misconfigured(format!(
            "stream {} uses {:?} storage, but Cascade needs {:?} (an acknowledged event must survive a broker \
             restart); delete the stream and restart the services to recreate it",
            wanted.name, have.storage, wanted.storage
        )));
    }
    if have.subjects != wanted.subjects || have.duplicate_window != wanted.duplicate_window {
        tracing::warn!(
            stream = %wanted.name,
            subjects = ?have.subjects,
            duplicate_window_ms = have.duplicate_window.as_millis() as u64,
            "stream found with another configuration; updating it"
        );
        js.update_stream(&wanted).await.map_err(BrokerError::Update)?;
        return js.get_stream(&wanted.name).await.map_err(|e| BrokerError::Misconfigured(e.to_string()));
    }
    Ok(stream)
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
        if DUPLICATE_WINDOW.set(Duration::from_millis(args.duplicate_window_ms)).is_err() {
            tracing::debug!("duplicate window already set");
        }
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
