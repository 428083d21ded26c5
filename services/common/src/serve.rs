//! Bind outside, serve inside: a binary binds its listener first (so a port in use is a
//! clear start-up error and tests can bind `127.0.0.1:0`), then [`serve_until_shutdown`] serves the API
//! with gRPC health and reflection until the shutdown token fires. Under the hardened
//! policy the server sheds what exceeds `--max-in-flight` ([`shedding_limit`]).

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    codegen::{http, Service},
    server::NamedService,
    service::Routes,
    transport::{server::TcpIncoming, Server},
    Status,
};

/// What tonic's router needs of a generated gRPC server.
pub trait GrpcService:
    Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
    + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

const ADMIN_SERVICE: &str = "cascade.v1.Admin";
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_SERVICES: [&str; 2] =
    ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Binds `addr`, with an error that says what to do when the port is taken.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; another process holds this port: stop it or choose another --listen (port 0 picks a free one)"
        } else {
            ""
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}{hint}"))
    })
}

/// The gRPC services one process serves on its listener: a service binary serves one,
/// the monolith all four. Health, reflection and `Admin.Stats` are added by
/// [`serve_until_shutdown`].
pub struct Services {
    routes: Routes,
    names: Vec<&'static str>,
}

impl Services {
    pub fn new<S: GrpcService>(service: S) -> Self
    where
        S::Future: Send + 'static,
    {
        Self { routes: Routes::new(service), names: vec![S::NAME] }
    }

    /// Serves `service` too, on the same listener.
    pub fn and<S: GrpcService>(mut self, service: S) -> Self
    where
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self.names.push(S::NAME);
        self
    }

    /// The full names of the services (`cascade.v1.Users`, …), in the order added.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// Serves `services` (plus `grpc.health.v1`, server reflection and `Admin.Stats`) on an already-bound
/// listener until `shutdown` is cancelled: the gRPC server alone, nothing before or after. Health says SERVING from the start, which is
/// true because the listener is bound: connections made now wait in its backlog.
/// If `addr_file` is given, the bound address is written there once serving starts.
async fn serve_grpc(
    listener: TcpListener,
    services: Services,
    addr_file: Option<&Path>,
    limit: Option<Arc<Semaphore>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in &services.names {
        reporter.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    let (reflection_v1, reflection_v1alpha) =
        (reflection(&services.names).build_v1()?, reflection(&services.names).build_v1alpha()?);
    if let Some(path) = addr_file {
        write_addr_file(path, addr)?;
    }
    let shown = services.names.join(", ");
    tracing::info!(%addr, service = %shown, "ready");
    let routes = services
        .routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(crate::proto::admin_server::AdminServer::new(crate::stats::AdminApi));
    let serving = Server::builder().layer(ShedLayer { limit }).add_routes(routes).serve_with_incoming_shutdown(
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        shutdown.clone().cancelled_owned(),
    );
    // Graceful shutdown stops accepting, lets requests in flight finish and waits for
    // every connection to close; a caller's idle connection may never close (hyper
    // waits on it), so the drain is bounded: past it, the connections are dropped, as a
    // crash would drop them. Every acknowledged write is on disk already.
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        served = serving => served?,
        () = drained => tracing::info!(service = %shown, "connections still open {DRAIN:?} after shutdown began: dropped"),
    }
    tracing::info!(service = %shown, "stopped serving");
    Ok(())
}

/// The hardened policy's limit on the requests one server works on at once
/// (`--max-in-flight`); none under the other policies.
pub fn shedding_limit(args: &crate::config::ServiceArgs) -> Option<Arc<Semaphore>> {
    (args.policy == crate::config::Policy::Hardened).then(|| Arc::new(Semaphore::new(args.max_in_flight as usize)))
}

/// What a shed request is answered (and counted in `Admin.Stats`).
pub fn shed_status() -> Status {
    crate::stats::request_shed();
    Status::resource_exhausted("overloaded: this service is at its limit of requests in flight; shed, not queued")
}

/// Load shedding on the gRPC server (hardened policy): a request that finds the server
/// at its limit is answered `RESOURCE_EXHAUSTED` at once instead of waiting in a queue
/// that could outlast its deadline. tower's `ConcurrencyLimit` + `LoadShed` do the same
/// per connection; this limit is the whole server's, and it leaves health, reflection
/// and `Admin.Stats` alone, so the lab can still watch and count an overloaded service.
#[derive(Clone)]
struct ShedLayer {
    limit: Option<Arc<Semaphore>>,
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, limit: self.limit.clone() }
    }
}

#[derive(Clone)]
struct Shed<S> {
    inner: S,
    limit: Option<Arc<Semaphore>>,
}

/// Requests under these path prefixes are never shed.
const NEVER_SHED: [&str; 3] = ["/grpc.health.", "/grpc.reflection.", "/cascade.v1.Admin/"];

impl<S, B> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let exempt = NEVER_SHED.iter().any(|prefix| request.uri().path().starts_with(prefix));
        let permit = match &self.limit {
            Some(limit) if !exempt => match limit.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return futures::future::ready(Ok(shed_status().into_http())).boxed(),
            },
            _ => None,
        };
        let answer = self.inner.call(request);
        async move {
            let answered = answer.await;
            drop(permit);
            answered
        }
        .boxed()
    }
}

/// How long a service stopping waits for its connections to close by themselves.
pub const DRAIN: Duration = Duration::from_secs(1);

/// Server reflection, served in both versions of the protocol: newer clients (grpcurl)
/// speak `grpc.reflection.v1`, Postman, Python's grpcio-reflection and older grpcurl only
/// `v1alpha`. A `Builder` is consumed by its `build_*` and is not `Clone`: call this
/// once per version. Each version advertises exactly what this
/// process serves, both reflection services included, and can describe them: the
/// builder would add only its own version's descriptors, so both are registered here
/// (the crate's own registration of one of them is then skipped as a duplicate file).
fn reflection(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        // All four Cascade services: `with_service_name` narrows what is advertised.
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .with_service_name(ADMIN_SERVICE)
        .with_service_name(HEALTH_SERVICE);
    for name in names.iter().copied().chain(REFLECTION_SERVICES) {
        builder = builder.with_service_name(name);
    }
    builder
}

/// A service's whole life after binding: serve until `shutdown`, then stop its event
/// tasks or bus responders (if any) and flush its store (if it has one), whatever
/// ended the serving.
pub async fn serve_until_shutdown<S: GrpcService>(
    listener: TcpListener,
    service: S,
    args: &crate::config::ServiceArgs,
    broker: Broker,
    db: Option<&sled::Db>,
    shutdown: CancellationToken,
) -> Result<(), ServeError>
where
    S::Future: Send + 'static,
{
    serve_all_until_shutdown(listener, Services::new(service), args, broker, db, shutdown).await
}

/// [`serve_until_shutdown`] for several services on one listener (the monolith).
pub async fn serve_all_until_shutdown(
    listener: TcpListener,
    services: Services,
    args: &crate::config::ServiceArgs,
    broker: Broker,
    db: Option<&sled::Db>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Broker::Bus(bus) = &broker {
        bus.ready().await;
    }
    crate::stats::set_policy(args.policy);
    let limit = shedding_limit(args);
    let served = serve_grpc(listener, services, args.addr_file.as_deref(), limit, shutdown.clone()).await;
    shutdown.cancel();
    match broker {
        Broker::None => {}
        Broker::Events(events) => events.stop().await,
        Broker::Bus(bus) => bus.stop().await,
    }
    if let Some(db) = db {
        crate::store::flush(db).await.map_err(ServeError::FinalFlush)?;
    }
    served
}

/// What a service does with the broker besides serving gRPC, stopped before the final
/// flush: nothing (sync), events (async), or answering its internal RPCs (bus-rpc).
pub enum Broker {
    None,
    Events(crate::broker::Events),
    Bus(crate::bus::Bus),
}

impl From<Option<crate::broker::Events>> for Broker {
    fn from(events: Option<crate::broker::Events>) -> Self {
        events.map_or(Broker::None, Broker::Events)
    }
}

/// What every service binary's `main` calls: logging, options, a runtime, the shutdown
/// signal, the bound listener; then `serve`. An error ends the process with status 1
/// and its message as the last line of output.
pub fn run_service_binary<A, F, Fut, E>(listen: fn(&A) -> SocketAddr, serve: F)
where
    A: clap::Parser,
    F: FnOnce(A, TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display + From<std::io::Error>,
{
    crate::telemetry::init();
    let args = A::parse();
    let result = tokio::runtime::Runtime::new().map_err(E::from).and_then(|runtime| {
        runtime.block_on(async {
            let shutdown = crate::shutdown::on_signal()?;
            let listener = bind(listen(&args)).await?;
            serve(args, listener, shutdown).await
        })
    });
    crate::exit_on_error(result);
}

/// Writes the address to a temporary file and renames it, so a reader never sees half.
fn write_addr_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addr.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Why [`serve_until_shutdown`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Serving stopped, but the store's last writes may not be on disk.
    #[error("final flush: {0}")]
    FinalFlush(#[source] crate::store::FlushError),
}
