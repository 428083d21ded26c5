//! Clients of a running topology's public API: the client every figure the lab
//! reports is measured with (the floor's echo, the sequential latencies, the load
//! engine's requests), so its own cost is kept to one task hop per request; see
//! [`Conn`]. A service that runs as several instances is reached through
//! [`Balanced`], over one [`Conn`] per instance: round robin over the query service's
//! replicas, and by the shard an id names over an owner's shards.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use common::{
    names::{ORDERS, PRODUCTS, QUERY, USERS},
    proto::{
        orders_client::OrdersClient, products_client::ProductsClient, query_client::QueryClient,
        users_client::UsersClient,
    },
};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};

use crate::topology::TopologyFile;

/// One reused HTTP/2 connection per service instance (shard or replica).
#[derive(Clone)]
pub struct Clients {
    pub users: UsersClient<Balanced>,
    pub products: ProductsClient<Balanced>,
    pub orders: OrdersClient<Balanced>,
    /// Balanced over every instance of the query service (one is a plain [`Conn`]).
    pub query: QueryClient<Balanced>,
    /// The balancer under `query`, kept for its counters and its replicas.
    query_balancer: Balanced,
    /// The balancers under the owners' clients (users, products, orders), for their
    /// counters.
    owner_balancers: [Balanced; 3],
}

impl Clients {
    pub fn new(users: SocketAddr, products: SocketAddr, orders: SocketAddr, query: SocketAddr) -> Self {
        Self::with_instances(&[users], &[products], &[orders], &[query])
    }

    /// Clients of every instance: the owners' shards (in shard order), to which each
    /// request goes by the id it names, and the query replicas, to which `UserOrders`
    /// go round robin.
    pub fn with_instances(
        users: &[SocketAddr],
        products: &[SocketAddr],
        orders: &[SocketAddr],
        queries: &[SocketAddr],
    ) -> Self {
        let conns = |addrs: &[SocketAddr]| addrs.iter().map(|&a| Conn::lazy(a)).collect();
        let [users, products, orders] = [users, products, orders].map(|a| Balanced::by_shard(conns(a)));
        let query = Balanced::over(conns(queries));
        Self {
            users: UsersClient::with_origin(users.clone(), users.origin()),
            products: ProductsClient::with_origin(products.clone(), products.origin()),
            orders: OrdersClient::with_origin(orders.clone(), orders.origin()),
            query: QueryClient::with_origin(query.clone(), query.origin()),
            query_balancer: query,
            owner_balancers: [users, products, orders],
        }
    }

    pub fn for_topology(file: &TopologyFile) -> Result<Self, crate::topology::TopologyError> {
        let [users, products, orders, queries] = [USERS, PRODUCTS, ORDERS, QUERY].map(|s| file.addresses(s));
        Ok(Self::with_instances(&users?, &products?, &orders?, &queries?))
    }

    /// The balancer of `service`'s instances (its counters), if the lab has one for it.
    pub fn balancer(&self, service: &str) -> Option<&Balanced> {
        match service {
            USERS => Some(&self.owner_balancers[0]),
            PRODUCTS => Some(&self.owner_balancers[1]),
            ORDERS => Some(&self.owner_balancers[2]),
            QUERY => Some(&self.query_balancer),
            _ => None,
        }
    }

    /// One client per query instance, each sending to that instance alone (on the
    /// connection [`Clients::query`] uses for it): how a checker reads every
    /// replica's view.
    pub fn query_instances(&self) -> Vec<QueryClient<Balanced>> {
        (self.query_balancer.inner.replicas.iter())
            .map(|r| {
                let one = Balanced::over(vec![r.conn.clone()]);
                QueryClient::with_origin(one.clone(), one.origin())
            })
            .collect()
    }

    /// The balancer under [`Clients::query`] (its counters).
    pub fn query_balancer(&self) -> &Balanced {
        &self.query_balancer
    }
}

/// Waits until the gRPC health service at `addr` says SERVING.
pub async fn wait_serving(addr: impl std::fmt::Display, timeout: Duration) -> Result<(), String> {
    let mut client = HealthClient::new(common::channel(addr));
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
        request.set_timeout(Duration::from_secs(1));
        match client.check(request).await {
            Ok(response) if response.get_ref().status() == ServingStatus::Serving => return Ok(()),
            Ok(response) => last = format!("status {:?}", response.get_ref().status()),
            Err(status) => last = status.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("not SERVING after {} s: {last}", timeout.as_secs()))
}

/// The lab's gRPC connection to one service: one HTTP/2 connection driven by `h2`
/// directly, under the tonic-generated clients.
///
/// Why not tonic's `Channel`: a `Channel` hands every request to a tower `Buffer`
/// worker task, which hands it to hyper's dispatch task, which hands it to the h2
/// connection task: three task hops (on a multi-thread runtime, often three thread
/// wake-ups) per request, paid in every latency the lab reports and in its
/// throughput ceiling. Here the calling task itself opens the stream on the shared h2
/// connection and sends the (already encoded, unary) message with END_STREAM; only the
/// connection task that does the socket I/O stands between it and the wire.
///
/// What `Channel` did that this keeps: it connects lazily and again after the
/// connection broke (a killed or restarted service is `UNAVAILABLE` for the requests
/// it broke, not forever), with a 1 s connect timeout and `TCP_NODELAY`. Like
/// `Channel`, it sends the request's `grpc-timeout` and leaves enforcing it to the
/// caller (the workload's `bench::within`), so a server that answers at its deadline
/// is heard, naming the hop that failed.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    addr: SocketAddr,
    /// The live connection's handle (cloned per request) and its generation, so a
    /// request that saw it break clears this one and not a newer one.
    live: std::sync::Mutex<Option<(u64, h2::client::SendRequest<Bytes>)>>,
    /// Held while connecting: 64 requests that find no connection open one, not 64.
    connecting: tokio::sync::Mutex<u64>,
}

/// How long a connection attempt may take (as `common::channel`'s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Conn {
    /// A lazily connecting connection to `addr`.
    pub fn lazy(addr: SocketAddr) -> Self {
        Self {
            inner: Arc::new(ConnInner {
                addr,
                live: std::sync::Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
            }),
        }
    }

    /// The origin the tonic clients put in front of every method path.
    pub fn origin(&self) -> http::Uri {
        format!("http://{}", self.inner.addr).parse().expect("http://IP:PORT is a valid URI")
    }

    fn cached(&self) -> Option<(u64, h2::client::SendRequest<Bytes>)> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The live connection, opening one if there is none.
    async fn sender(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), tonic::Status> {
        if let Some(live) = self.cached() {
            return Ok(live);
        }
        let mut generation = self.inner.connecting.lock().await;
        if let Some(live) = self.cached() {
            return Ok(live);
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            tonic::Status::unavailable(format!("cannot connect to {}: {e}", self.inner.addr))
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(self.inner.addr))
            .await
            .map_err(|_| unavailable(&format!("no answer in {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unavailable(&e))?;
        tcp.set_nodelay(true).map_err(|e| unavailable(&e))?;
        let (sender, connection) = h2::client::Builder::new()
            // Small unary messages: a large connection window spares WINDOW_UPDATEs.
            .initial_connection_window_size(1 << 20)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| unavailable(&e))?;
        *generation += 1;
        let (addr, this_generation, conn) = (self.inner.addr, *generation, Arc::downgrade(&self.inner));
        tokio::spawn(async move {
            // Its end is seen by the requests on it; this says why, and forgets the
            // connection at once, so the next request (after a service was killed and
            // restarted, say) opens a new one instead of failing on the dead one.
            if let Err(e) = connection.await {
                tracing::debug!(%addr, error = %e, "connection ended");
            }
            if let Some(inner) = conn.upgrade() {
                Conn { inner }.broken(this_generation);
            }
        });
        *self.inner.live.lock().unwrap_or_else(|e| e.into_inner()) = Some((*generation, sender.clone()));
        Ok((*generation, sender))
    }

    /// Forgets connection `generation` (it broke), unless a newer one replaced it.
    fn broken(&self, generation: u64) {
        let mut live = self.inner.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.as_ref().is_some_and(|(g, _)| *g == generation) {
            *live = None;
        }
    }

    async fn send(self, request: http::Request<tonic::body::Body>) -> Result<http::Response<RecvBody>, tonic::Status> {
        let (parts, body) = request.into_parts();
        // A unary request's body is one encoded message, ready at once.
        let message = http_body_util::BodyExt::collect(body).await?.to_bytes();
        let ready = self.ready().await?;
        self.send_on(ready, parts, message).await
    }

    /// The live connection (opened if there is none), ready for one more stream. An
    /// error here means nothing was sent.
    async fn ready(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), tonic::Status> {
        let (generation, sender) = self.sender().await?;
        let sender = sender.ready().await.map_err(|e| {
            self.broken(generation);
            connection_error(self.inner.addr, e)
        })?;
        Ok((generation, sender))
    }

    /// Sends one unary request on a connection [`Conn::ready`] gave.
    async fn send_on(
        &self,
        (generation, mut sender): (u64, h2::client::SendRequest<Bytes>),
        parts: http::request::Parts,
        message: Bytes,
    ) -> Result<http::Response<RecvBody>, tonic::Status> {
        let lost = |e: h2::Error| {
            self.broken(generation);
            connection_error(self.inner.addr, e)
        };
        let end = message.is_empty();
        let (response, mut stream) = sender.send_request(http::Request::from_parts(parts, ()), end).map_err(lost)?;
        if !end {
            // h2 queues what the stream's window does not take yet.
            stream.send_data(message, true).map_err(lost)?;
        }
        let response = response.await.map_err(|e| {
            if e.is_io() || e.is_go_away() {
                self.broken(generation);
            }
            connection_error(self.inner.addr, e)
        })?;
        Ok(response.map(|recv| RecvBody { recv, data_done: false }))
    }
}

/// How long a replica the balancer could not reach is skipped before a request tries
/// it again.
pub const DOWN_FOR: Duration = Duration::from_millis(250);

/// The lab's client of a service that runs as several instances: a round robin over
/// one [`Conn`] per replica that skips a replica it could not reach ([`Balanced::over`]),
/// or over an owner's shards, routing by id ([`Balanced::by_shard`]).
///
/// Why not tonic's `Channel::balance_list`: the lab does not use `Channel` at all (see
/// [`Conn`]: its task hops would be paid in every figure), and `balance_list` takes an
/// endpoint out of rotation only once its connection has failed, not when a call on it
/// did; this does the same on the lab's own connections, with what it does written here.
///
/// Each request goes to the next replica in turn. A replica whose connection cannot be
/// opened (refused: the process is dead) or is found gone before the request is sent
/// is marked down for [`DOWN_FOR`], and the request moves to the next replica: it was
/// never sent, so moving it cannot do anything twice (gRPC's own clients retry such a
/// request transparently too). A request that was sent and then lost its connection
/// (the replica died under it) fails `UNAVAILABLE`, as it would from any client that
/// does not retry, and marks its replica down as well. A marked replica is skipped until
/// its time is up (unless every replica is marked); then the next request that picks it
/// tries to connect again, so a restarted replica is back in rotation within
/// [`DOWN_FOR`]. A frozen replica (SIGSTOP) keeps its connection: nothing marks it down,
/// and the requests it gets run to their deadline. With one replica it is that replica's
/// [`Conn`] and nothing more.
///
/// By shard: a request whose message names an entity first (`GetUser`'s id,
/// `PlaceOrder`'s and `ListOrdersByUser`'s user, `UpdatePrice`'s and `GetProduct`'s
/// product, `GetProducts`' first product) goes to the shard that holds it and nowhere
/// else (no other shard could answer it); an id naming a shard that does not run is
/// `NOT_FOUND`. A create names no entity yet: it goes round robin like a replica's
/// request, so creates go on while a shard is down, on the shards that are not.
#[derive(Clone)]
pub struct Balanced {
    inner: Arc<BalancedInner>,
}

struct BalancedInner {
    replicas: Vec<Replica>,
    /// Whether the instances are an owner's shards (requests naming an id go to its shard).
    by_shard: bool,
    /// The round robin's position.
    next: AtomicUsize,
    /// What the `*_us` fields count from.
    epoch: Instant,
    moved: AtomicU64,
    marked_down: AtomicU64,
    failed: AtomicU64,
    /// When a request last failed `UNAVAILABLE` here, µs from `epoch` (0: never).
    last_failed_us: AtomicU64,
}

struct Replica {
    conn: Conn,
    /// Skipped until then, µs from the epoch (0: not marked).
    down_until_us: AtomicU64,
}

/// What a [`Balanced`] client did since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BalancerCounts {
    pub replicas: usize,
    /// Requests sent to another replica than the one whose turn it was, because that
    /// one was marked down or could not be reached.
    pub moved: u64,
    /// Times a replica was marked down.
    pub marked_down: u64,
    /// Requests that failed `UNAVAILABLE` here (sent, then the connection was lost; or
    /// no replica could be reached).
    pub failed: u64,
}

impl Balanced {
    /// A round robin over `conns` (at least one).
    pub fn over(conns: Vec<Conn>) -> Self {
        Self::new(conns, false)
    }

    /// Over an owner's shards, `conns[i]` being shard `i` (at least one).
    pub fn by_shard(conns: Vec<Conn>) -> Self {
        Self::new(conns, true)
    }

    fn new(conns: Vec<Conn>, by_shard: bool) -> Self {
        assert!(!conns.is_empty(), "a balancer needs a replica");
        let replicas = conns.into_iter().map(|conn| Replica { conn, down_until_us: AtomicU64::new(0) }).collect();
        Self {
            inner: Arc::new(BalancedInner {
                replicas,
                by_shard,
                next: AtomicUsize::new(0),
                epoch: Instant::now(),
                moved: AtomicU64::new(0),
                marked_down: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                last_failed_us: AtomicU64::new(0),
            }),
        }
    }

    /// The origin of the tonic clients (the first replica's; servers do not look at it).
    pub fn origin(&self) -> http::Uri {
        self.inner.replicas[0].conn.origin()
    }

    pub fn counts(&self) -> BalancerCounts {
        let i = &self.inner;
        BalancerCounts {
            replicas: i.replicas.len(),
            moved: i.moved.load(Ordering::Relaxed),
            marked_down: i.marked_down.load(Ordering::Relaxed),
            failed: i.failed.load(Ordering::Relaxed),
        }
    }

    /// When a request last failed `UNAVAILABLE` here (several replicas only).
    pub fn last_failure(&self) -> Option<Instant> {
        match self.inner.last_failed_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.inner.epoch + Duration::from_micros(us)),
        }
    }

    async fn send(self, request: http::Request<tonic::body::Body>) -> Result<http::Response<RecvBody>, tonic::Status> {
        let inner = &self.inner;
        let n = inner.replicas.len();
        if n == 1 {
            return inner.replicas[0].conn.clone().send(request).await;
        }
        let (parts, body) = request.into_parts();
        let message = http_body_util::BodyExt::collect(body).await?.to_bytes();
        let creates = parts.uri.path().rsplit('/').next().is_some_and(|m| m.starts_with("Create"));
        if inner.by_shard && !creates {
            // No id (or a malformed one): shard 1, whose validation says what is wrong.
            let id = first_string(&message).unwrap_or_default();
            let index = common::ids::Shard::of_id(&id).unwrap_or(0);
            let Some(shard) = inner.replicas.get(index) else {
                return Err(tonic::Status::not_found(format!("{id} names shard {}, which does not run", index + 1)));
            };
            let result = match shard.conn.ready().await {
                Ok(ready) => shard.conn.send_on(ready, parts, message).await,
                Err(status) => Err(status),
            };
            if matches!(&result, Err(status) if status.code() == tonic::Code::Unavailable) {
                inner.failed_now();
            }
            return result;
        }
        let first = inner.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = inner.now_us();
        let down = |i: &usize| inner.replicas[*i].down_until_us.load(Ordering::Relaxed) > now;
        // In turn, those not marked down first; then the marked ones (if every replica
        // is marked, one of them may be back).
        let turn = (0..n).map(|k| (first + k) % n);
        let order: Vec<usize> = turn.clone().filter(|i| !down(i)).chain(turn.filter(down)).collect();
        let mut unreachable = None;
        for i in order {
            let replica = &inner.replicas[i];
            match replica.conn.ready().await {
                Ok(ready) => {
                    if i != first {
                        inner.moved.fetch_add(1, Ordering::Relaxed);
                    }
                    // The mark as this request found it: a success clears only that one,
                    // not a mark another request set while this one was in flight.
                    let mark = replica.down_until_us.load(Ordering::Relaxed);
                    let result = replica.conn.send_on(ready, parts, message).await;
                    match &result {
                        Err(status) if status.code() == tonic::Code::Unavailable => {
                            inner.mark_down(i);
                            inner.failed_now();
                        }
                        _ if mark != 0 => {
                            let _ =
                                replica.down_until_us.compare_exchange(mark, 0, Ordering::Relaxed, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    return result;
                }
                Err(status) => {
                    inner.mark_down(i);
                    unreachable = Some(status);
                }
            }
        }
        inner.failed_now();
        Err(unreachable.unwrap_or_else(|| tonic::Status::unavailable("no replica to send to")))
    }
}

/// The first field of the protobuf message in a gRPC frame (`message`), if it is a
/// string (field 1, length-delimited) and comes first: where every request of the
/// owners' APIs that names an entity names it.
fn first_string(message: &[u8]) -> Option<String> {
    let body = message.get(5..)?;
    let (&tag, mut rest) = body.split_first()?;
    if tag != 0x0a {
        return None;
    }
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        len |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return rest.get(..len).and_then(|s| std::str::from_utf8(s).ok()).map(str::to_owned);
        }
    }
    None
}

impl BalancedInner {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn mark_down(&self, i: usize) {
        self.replicas[i].down_until_us.store(self.now_us() + DOWN_FOR.as_micros() as u64, Ordering::Relaxed);
        self.marked_down.fetch_add(1, Ordering::Relaxed);
    }

    fn failed_now(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.last_failed_us.store(self.now_us(), Ordering::Relaxed);
    }
}

/// The gRPC transport of a client over the lab's own connections: readiness is per
/// request (the h2 handle's `ready`, inside `send`), so `poll_ready` is always ready.
macro_rules! grpc_transport {
    ($type:ty) => {
        impl tower_service::Service<http::Request<tonic::body::Body>> for $type {
            type Response = http::Response<RecvBody>;
            type Error = tonic::Status;
            type Future =
                std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, tonic::Status>> + Send>>;

            fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), tonic::Status>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
                Box::pin(self.clone().send(request))
            }
        }
    };
}

grpc_transport!(Balanced);
grpc_transport!(Conn);

/// An h2 error as the status tonic's own transport would give: a reset stream keeps
/// its HTTP/2 code's mapping, a lost connection is `UNAVAILABLE`.
fn connection_error(addr: SocketAddr, e: h2::Error) -> tonic::Status {
    if e.is_reset() && !e.is_go_away() {
        tonic::Status::from_error(Box::new(e))
    } else {
        tonic::Status::unavailable(format!("connection to {addr}: {e}"))
    }
}

/// A response body read straight off its h2 stream: the data frames (each one's
/// flow-control capacity given back as it is read), then the trailers that carry
/// the gRPC status.
pub struct RecvBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        use std::task::Poll;
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let given_back = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(given_back.map(|()| http_body::Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
