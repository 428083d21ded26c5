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
/// This process's stream replicas (`--stream-replicas`), set once by [`Events::start`].
static REPLICAS: OnceLock<usize> = OnceLock::new();

/// The servers of a `--nats-url`: one URL, or several of one cluster comma-separated.
pub fn servers(url: &str) -> Vec<String> {
    url.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Connects to `url` (one server, or several comma-separated: see [`servers`]),
/// starting even if no broker is there yet (writes then wait in the outbox) and
/// reconnecting forever, quickly, to whichever of them answers when the one it is on
/// goes away. Only the servers given are used: a cluster's members advertise their own
/// addresses, which would let a client behind a fault proxy go around it.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    // No server at all: the URL as given, which fails to parse with the client's error.
    let servers = Some(servers(url)).filter(|s| !s.is_empty()).unwrap_or_else(|| vec![url.to_owned()]);
    async_nats::ConnectOptions::new()
        .name(name)
        .ignore_discovered_servers()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(1))
        .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(20) as u64))
        .event_callback(|event| async move { tracing::info!(%event, "nats connection") })
        .connect(servers)
        .await
}

/// The configuration of the stream every event goes to. File storage, because an
/// acknowledged event must survive a broker restart; on a cluster, as many replicas as
/// `--stream-replicas` says (an event is acknowledged once a majority of them has it).
/// Durable consumers are created without a replica count of their own, so they take
/// the stream's.
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: events::STREAM.to_owned(),
        subjects: vec![events::STREAM_SUBJECTS.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: *DUPLICATE_WINDOW.get().unwrap_or(&DEFAULT_DUPLICATE_WINDOW),
        num_replicas: *REPLICAS.get().unwrap_or(&1),
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
/// and brought back to [`stream_config`] if someone changed its subjects, duplicate
/// window or replicas. Storage cannot change in place: a stream kept in memory is refused with a
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
    // The server reports a stream created without a count as 1 replica.
    let replicas = have.num_replicas.max(1);
    if have.subjects != wanted.subjects
        || have.duplicate_window != wanted.duplicate_window
        || replicas != wanted.num_replicas
    {
        tracing::warn!(
            stream = %wanted.name,
            subjects = ?have.subjects,
            duplicate_window_ms = have.duplicate_window.as_millis() as u64,
            replicas,
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
        if REPLICAS.set(usize::from(args.stream_replicas)).is_err() {
            tracing::debug!("stream replicas already set");
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
    pub fn consume<P: Projection>(
        &mut self,
        name: impl Into<String>,
        subjects: &'static [&'static str],
        projection: P,
    ) {
        let js = self.jetstream();
        self.tasks.spawn(crate::consumer::consume(js, name.into(), subjects, projection, self.shutdown.clone()));
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_nats_url_names_one_server_or_several_comma_separated() {
        assert_eq!(super::servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            super::servers("nats://127.0.0.1:1, nats://127.0.0.1:2,nats://127.0.0.1:3,"),
            ["nats://127.0.0.1:1", "nats://127.0.0.1:2", "nats://127.0.0.1:3"]
        );
        assert!(super::servers(" , ").is_empty());
    }
}
