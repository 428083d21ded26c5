//! What every Cascade service shares, so that a service crate holds only its own
//! domain and the one file that says how it reaches other services' data.
//!
//! - [`proto`]: the generated `cascade.v1` protobuf and gRPC code (the public API).
//! - [`names`]: service names, id prefixes and other names that must agree everywhere.
//! - [`ids`]: id generation and validation, timestamps.
//! - [`error`]: the domain errors and their one mapping to gRPC statuses.
//! - [`deadline`]: reading the caller's deadline and carrying it to every outbound call.
//! - [`config`]: the command-line options every service binary accepts.
//! - [`resilience`]: the policy axis (naive, hardened, retry-storm) every outbound call
//!   goes through: retries, retry budget, circuit breakers.
//! - [`serve`]: binding, health, reflection, the addr-file handshake with the lab.
//! - [`events`], [`outbox`], [`consumer`], [`broker`]: async mode's events, the
//!   transactional outbox and its relay, the idempotent consumer loop, NATS set-up.
//! - [`bus`]: bus-rpc mode's request/reply over core NATS (subjects, queue groups,
//!   status and deadline headers).
//! - [`dead_letters`]: what a service gave up on, kept with the reason and counted.
//! - [`store`]: opening a service's own sled database and flushing it.
//! - [`failpoint`]: fault injection that holds a crash window open for tests.
//! - [`stats`]: per-process counters behind the `Admin.Stats` RPC.
//! - [`shutdown`]: one cancellation signal for SIGTERM and SIGINT alike.
//! - [`telemetry`]: `tracing` set-up.

pub mod broker;
pub mod bus;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod deadline;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod ids;
pub mod names;
pub mod outbox;
pub mod resilience;
pub mod serve;
pub mod shards;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod telemetry;

/// Generated code of `proto/*.proto` (package `cascade.v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cascade.v1");

    /// Encoded descriptors of every Cascade service, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cascade_descriptor");
}

/// A lazily connecting gRPC channel to `addr` (`HOST:PORT`, already validated as a
/// socket address or a [`config::PeerAddr`]): a dependency that is down at start-up is
/// not an error until a request needs it, and every call retries the connection.
pub fn channel(addr: impl std::fmt::Display) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("an http URI made from a validated HOST:PORT is valid")
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(1))
        .connect_lazy()
}

/// Ends a service binary: on error, logs it and prints it as the last line of output
/// (where the lab looks when a service dies at start-up), then exits with status 1.
pub fn exit_on_error<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "exiting");
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
