//! The floor: what the machine itself costs, measured in the same run as everything
//! else, so every other figure can be read as a multiple of it. All sequential, one
//! request at a time:
//!
//! - `tcp_rtt`: 64 bytes to an echo task and back on loopback (tokio, in process);
//! - `grpc_echo`: a gRPC health check of the users service (a real process, no
//!   storage touched), sent by the lab's own client ([`crate::client::Conn`]): one
//!   bare gRPC hop;
//! - `js_publish_ack`: a JetStream publish until its PubAck, on the topology's broker
//!   (a stream of its own);
//! - `js_delivery`: from the start of a publish until a durable pull consumer holds the
//!   message (then acked): one hop through the broker;
//! - `replicated`: the same two on a three-node JetStream cluster with the floor's
//!   stream replicated 3 times (its consumer with it), beside the single server's: what
//!   replication costs a write (the leader acknowledges once a majority has it) and a
//!   delivery;
//! - `sled_flush`: an insert and a flush; `sled_txn2_flush`: a two-tree transaction
//!   and a flush (what an outbox write and an event apply cost). Both in a directory
//!   of the run dir, on the filesystem the services' data dirs are on (a system temp
//!   dir may be tmpfs, where a flush costs nothing), whose type is recorded.
//!
//! And the generator's own ceiling: how many health checks 64 concurrent closed-loop
//! clients get through, then the open-loop generator asked for that rate.
//!
//! Beside the lab's own client, an independent one: `h2load` (nghttp2), when it is on
//! PATH, sends the same health check as raw gRPC frames, one at a time and then with 64
//! streams in flight on one connection, as many requests as the lab's client sent. The
//! ratio of the two is what the lab's client adds to every latency it reports.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use bench::{
    load::{closed_loop, open_loop, LoadReport, OpenLoop},
    Recorder, Summary,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

use crate::report::format::ms_fine;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Floor {
    pub tcp_rtt: Summary,
    pub grpc_echo: Summary,
    pub js_publish_ack: Summary,
    pub js_delivery: Summary,
    pub sled_flush: Summary,
    pub sled_txn2_flush: Summary,
    /// Where the sled figures were measured: "<fs type> <device> at <mount point>" of
    /// the run dir, from `/proc/self/mountinfo` (`None` if unreadable, or in results
    /// from before it was recorded).
    #[serde(default)]
    pub sled_filesystem: Option<String>,
    /// Health checks per second with 64 in flight (closed loop).
    pub echo_64_in_flight_per_s: f64,
    /// The open-loop generator against the same echo at rising shares of that rate
    /// (25, 50, 75, 90 %): where it keeps its schedule and where it stops.
    pub generator_ladder: Vec<LoadReport>,
    /// The highest rate of the ladder kept: ≥ 99 % of the asked rate answered OK and
    /// ≤ 1 % of requests sent more than 1 ms late.
    pub generator_ceiling_per_s: f64,
    /// The open-loop generator against a no-op (no network): its own dispatch ceiling.
    pub generator_noop: LoadReport,
    /// An independent client, `h2load`, against the same health check with the same
    /// request counts, right after the lab's own client: what the lab's client costs
    /// beyond the server. `None` when it did not run (see `peer_missing`) and in results
    /// from before it was measured.
    #[serde(default)]
    pub peer: Option<Peer>,
    /// Why `peer` is `None` (e.g. "h2load not installed"); `None` when it ran or in
    /// results from before it was measured.
    #[serde(default)]
    pub peer_missing: Option<String>,
    /// JetStream publish+ack and delivery on a three-node cluster, the stream R3 (`None`
    /// when not measured: see `replicated_missing`, and in results from before it was).
    #[serde(default)]
    pub replicated: Option<Replicated>,
    /// Why `replicated` is `None` (the cluster did not form, …).
    #[serde(default)]
    pub replicated_missing: Option<String>,
}

/// `js_publish_ack` and `js_delivery` again, on a cluster with a replicated stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Replicated {
    /// Broker nodes in the cluster.
    pub nodes: usize,
    /// Replicas of the floor's stream (and its consumer).
    pub replicas: usize,
    pub js_publish_ack: Summary,
    pub js_delivery: Summary,
}

/// Measures JetStream publish+ack and delivery, `n` each, on the cluster at `nats_url`
/// (several servers, comma-separated) with the floor's stream replicated `replicas`
/// times.
pub async fn measure_replicated(nats_url: &str, nodes: usize, replicas: usize, n: usize) -> anyhow::Result<Replicated> {
    let js = jetstream::new(async_nats::connect(common::broker::servers(nats_url)).await?);
    let js_publish_ack = js_publish_ack(&js, n, replicas).await?;
    let js_delivery = js_delivery(&js, n, replicas).await?;
    Ok(Replicated { nodes, replicas, js_publish_ack, js_delivery })
}

/// The program the floor runs as the independent client (Debian's `nghttp2-client`).
pub const PEER: &str = "h2load";

/// h2load's figures beside the lab client's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    /// `h2load --version`'s first line.
    pub version: String,
    /// One connection, one request at a time (`-c1 -m1`), as many as `grpc_echo`.
    pub sequential: PeerRun,
    /// One connection, 64 streams in flight (`-c1 -m64`), as many requests as the lab's
    /// closed loop got through for `echo_64_in_flight_per_s`.
    pub in_flight_64: PeerRun,
}

/// One h2load run, as its summary printed it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerRun {
    /// The command line, for repeating it.
    pub command: String,
    pub requests: u64,
    /// Answered with HTTP 2xx (h2load does not read the gRPC status in the trailers).
    pub succeeded: u64,
    /// Requests per second over the run (h2load's "finished in …, N req/s").
    pub req_per_s: f64,
    /// "time for request": from sending to the end of the answer, per request.
    pub min_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

/// Whether an open-loop run kept its schedule.
pub fn kept_schedule(report: &LoadReport) -> bool {
    let asked = report.target_rate.unwrap_or(0.0);
    report.ok_per_s >= 0.99 * asked && report.late_share() <= 0.01
}

async fn time<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Summary>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut recorder = Recorder::default();
    for _ in 0..n {
        let start = Instant::now();
        f().await?;
        recorder.record(start.elapsed(), "OK");
    }
    Ok(recorder.summary())
}

/// Measures the floor, one figure after another (each below); the sled figures in a new
/// directory under `sled_dir`, which should be on the services' filesystem.
pub async fn measure(
    sled_dir: &std::path::Path,
    grpc: std::net::SocketAddr,
    nats_url: &str,
    n: usize,
    ceiling_time: Duration,
) -> anyhow::Result<Floor> {
    let tcp_rtt = tcp_rtt(n).await?;
    // With the lab's own client, the one the workload measures with.
    let conn = crate::client::Conn::lazy(grpc);
    let health = HealthClient::with_origin(conn.clone(), conn.origin());
    let grpc_echo = grpc_echo(&health, n).await?;
    let js = jetstream::new(async_nats::connect(common::broker::servers(nats_url)).await?);
    let js_publish_ack = js_publish_ack(&js, n, 1).await?;
    let js_delivery = js_delivery(&js, n, 1).await?;
    let sled = Sled::measure(sled_dir, n).await?;
    let saturated = echo_64_in_flight(&health, ceiling_time).await;
    let echo_64_in_flight_per_s = saturated.ok_per_s;
    // The independent client right after the lab's, with the same request counts.
    let (peer, peer_missing) = match peer(grpc, n as u64, saturated.scheduled).await {
        Ok(peer) => (Some(peer), None),
        Err(reason) => (None, Some(reason.to_string())),
    };
    let (generator_ladder, generator_ceiling_per_s) =
        generator_ladder(&health, echo_64_in_flight_per_s, ceiling_time).await;
    let generator_noop = generator_noop(echo_64_in_flight_per_s, ceiling_time).await;
    Ok(Floor {
        tcp_rtt,
        grpc_echo,
        js_publish_ack,
        js_delivery,
        sled_flush: sled.flush,
        sled_txn2_flush: sled.txn2_flush,
        sled_filesystem: sled.filesystem,
        echo_64_in_flight_per_s,
        generator_ladder,
        generator_ceiling_per_s,
        generator_noop,
        peer,
        peer_missing,
        // Measured on a cluster of its own by the caller.
        replicated: None,
        replicated_missing: None,
    })
}

/// Raw TCP: 64 bytes to an echo task and back on loopback, `n` times.
async fn tcp_rtt(n: usize) -> anyhow::Result<Summary> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut recorder = Recorder::default();
    for _ in 0..n {
        let start = Instant::now();
        let mut buf = [7u8; 64];
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
        recorder.record(start.elapsed(), "OK");
    }
    drop(stream);
    echo.abort();
    Ok(recorder.summary())
}

/// The health client the gRPC figures and the generator's ceiling use.
type Health = HealthClient<crate::client::Conn>;

/// One health check of the whole server: a bare gRPC hop, no storage touched.
async fn check(mut client: Health) -> Result<(), tonic::Status> {
    client.check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

/// One bare gRPC hop, `n` times in a row.
async fn grpc_echo(health: &Health, n: usize) -> anyhow::Result<Summary> {
    time(n, || {
        let client = health.clone();
        async move { Ok(check(client).await?) }
    })
    .await
}

/// The floor's own stream on the topology's broker, with `replicas` copies.
async fn floor_stream(js: &jetstream::Context, replicas: usize) -> anyhow::Result<stream::Stream> {
    Ok(js
        .get_or_create_stream(stream::Config {
            name: "FLOOR".into(),
            subjects: vec!["floor.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await?)
}

/// The payload of every floor message.
fn floor_payload() -> bytes::Bytes {
    bytes::Bytes::from(vec![1u8; 128])
}

/// A JetStream publish until its PubAck, `n` times in a row.
async fn js_publish_ack(js: &jetstream::Context, n: usize, replicas: usize) -> anyhow::Result<Summary> {
    floor_stream(js, replicas).await?;
    let payload = floor_payload();
    time(n, || {
        let (js, payload) = (js.clone(), payload.clone());
        async move {
            js.publish("floor.ack", payload).await?.await?;
            Ok(())
        }
    })
    .await
}

/// From the start of a publish until a durable pull consumer holds the message (then
/// acked), `n` times in a row.
async fn js_delivery(js: &jetstream::Context, n: usize, replicas: usize) -> anyhow::Result<Summary> {
    let mut consumer: pull::Stream = floor_stream(js, replicas)
        .await?
        .get_or_create_consumer(
            "floor",
            pull::Config {
                durable_name: Some("floor".into()),
                filter_subject: "floor.delivery".into(),
                ..Default::default()
            },
        )
        .await?
        .messages()
        .await?;
    let payload = floor_payload();
    let mut recorder = Recorder::default();
    for _ in 0..n {
        let start = Instant::now();
        let ack = js.publish("floor.delivery", payload.clone()).await?;
        let message = consumer.next().await.ok_or_else(|| anyhow::anyhow!("floor consumer ended"))??;
        message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        recorder.record(start.elapsed(), "OK");
        ack.await?;
    }
    Ok(recorder.summary())
}

/// The sled figures, from one database in a directory of the run dir.
struct Sled {
    flush: Summary,
    txn2_flush: Summary,
    filesystem: Option<String>,
}

impl Sled {
    async fn measure(sled_dir: &std::path::Path, n: usize) -> anyhow::Result<Sled> {
        let dir = tempfile::tempdir_in(sled_dir)?;
        let filesystem = filesystem(dir.path());
        let db = sled::open(dir.path())?;
        let (a, b) = (db.open_tree("a")?, db.open_tree("b")?);
        let flush = sled_flush(&db, &a, n, 1).await?;
        // Fresh keys after the first figure's.
        let txn2_flush = sled_txn2_flush(&db, (&a, &b), n, n as u64 + 1).await?;
        Ok(Sled { flush, txn2_flush, filesystem })
    }
}

/// The value every sled figure writes.
const SLED_VALUE: [u8; 96] = [9u8; 96];

/// An insert and a flush, `n` times, with the keys from `first_key` on.
async fn sled_flush(db: &sled::Db, tree: &sled::Tree, n: usize, first_key: u64) -> anyhow::Result<Summary> {
    let mut key = first_key;
    time(n, || {
        let k = key;
        key += 1;
        async move {
            tree.insert(k.to_be_bytes(), &SLED_VALUE[..])?;
            common::store::flush(db).await?;
            Ok(())
        }
    })
    .await
}

/// A two-tree transaction and a flush (what an outbox write and an event apply cost),
/// `n` times, with the keys from `first_key` on.
async fn sled_txn2_flush(
    db: &sled::Db,
    trees: (&sled::Tree, &sled::Tree),
    n: usize,
    first_key: u64,
) -> anyhow::Result<Summary> {
    let mut key = first_key;
    time(n, || {
        let k = key;
        key += 1;
        async move {
            trees
                .transaction(|(a, b)| {
                    a.insert(&k.to_be_bytes(), &SLED_VALUE[..])?;
                    b.insert(&k.to_be_bytes(), &SLED_VALUE[..])?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| anyhow::anyhow!("transaction: {e:?}"))?;
            common::store::flush(db).await?;
            Ok(())
        }
    })
    .await
}

/// Health checks from 64 closed-loop clients for `how_long`.
async fn echo_64_in_flight(health: &Health, how_long: Duration) -> LoadReport {
    let health = health.clone();
    closed_loop(64, how_long, move |_| {
        let client = health.clone();
        ("echo", async move { bench::outcome(&check(client).await) })
    })
    .await
}

/// The open-loop generator against the echo at 25, 50, 75 and 90 % of `echo_rate`: each
/// rung, and the highest rate whose schedule it kept (0 if none).
async fn generator_ladder(health: &Health, echo_rate: f64, how_long: Duration) -> (Vec<LoadReport>, f64) {
    let mut ladder = Vec::new();
    let mut ceiling = 0.0;
    for share in [0.25, 0.5, 0.75, 0.9] {
        let health = health.clone();
        let rate = (share * echo_rate).max(1.0);
        let report = open_loop(
            OpenLoop::new(rate, how_long),
            move |_| {
                let client = health.clone();
                ("echo", async move { bench::outcome(&check(client).await) })
            },
            None,
        )
        .await;
        if kept_schedule(&report) {
            ceiling = rate;
        }
        ladder.push(report);
    }
    (ladder, ceiling)
}

/// The open-loop generator against a no-op (no network) at `rate`: its own dispatch
/// ceiling.
async fn generator_noop(rate: f64, how_long: Duration) -> LoadReport {
    open_loop(OpenLoop::new(rate.max(1.0), how_long), |_| ("noop", async { "OK" }), None).await
}

/// The gRPC frame h2load sends as every request's body: no compression flag, a
/// length of 0, and no bytes, since `HealthCheckRequest { service: "" }` (the whole
/// server's health, as the lab's own client asks) encodes to nothing in protobuf.
const HEALTH_CHECK_FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// Runs h2load against the health check at `grpc`: `sequential` requests one at a time,
/// then `in_flight` requests with 64 streams in flight, on one connection each time.
/// `Err` is the reason it did not run (not installed, failed, unexpected output).
pub async fn peer(grpc: std::net::SocketAddr, sequential: u64, in_flight: u64) -> Result<Peer, PeerError> {
    let version = match tokio::process::Command::new(PEER).arg("--version").output().await {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned(),
        Ok(out) => return Err(PeerError::Version(out.status)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PeerError::NotInstalled),
        Err(e) => return Err(PeerError::CannotRun(e)),
    };
    let body = tempfile::NamedTempFile::new().map_err(PeerError::BodyFile)?;
    std::fs::write(body.path(), HEALTH_CHECK_FRAME).map_err(PeerError::BodyFile)?;
    let run = |streams: u64, requests: u64| {
        let args: Vec<String> = vec![
            "-c1".into(),
            format!("-m{streams}"),
            format!("-n{}", requests.max(1)),
            "-d".into(),
            body.path().display().to_string(),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
            format!("http://{grpc}/grpc.health.v1.Health/Check"),
        ];
        async move {
            let command = format!(
                "{PEER} {}",
                args.iter()
                    .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() })
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let child = tokio::process::Command::new(PEER).args(&args).kill_on_drop(true).output();
            let out = match tokio::time::timeout(PEER_TIMEOUT, child).await {
                Err(_) => return Err(PeerError::Timeout { command }),
                Ok(Err(source)) => return Err(PeerError::Spawn { command, source }),
                Ok(Ok(out)) => out,
            };
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                return Err(PeerError::Failed { command, status: out.status, stderr });
            }
            Ok(parse_h2load(&String::from_utf8_lossy(&out.stdout), command)?)
        }
    };
    let sequential = run(1, sequential).await?;
    let in_flight_64 = run(64, in_flight).await?;
    Ok(Peer { version, sequential, in_flight_64 })
}

/// Longest an h2load run may take (a stalled server must not hang the floor).
const PEER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the independent client gave no figures; recorded as `Floor::peer_missing`.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{PEER} not installed (Debian package nghttp2-client)")]
    NotInstalled,
    #[error("`{PEER} --version` exited with {0}")]
    Version(std::process::ExitStatus),
    #[error("cannot run {PEER}: {0}")]
    CannotRun(std::io::Error),
    #[error("request body file: {0}")]
    BodyFile(std::io::Error),
    #[error("`{command}` did not finish in {} s", PEER_TIMEOUT.as_secs())]
    Timeout { command: String },
    #[error("`{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("`{command}` exited with {status}: {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
    #[error("h2load output: {0}")]
    Output(#[from] H2loadOutputError),
}

/// What was unexpected in h2load's output.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum H2loadOutputError {
    #[error("no line starting {0:?}")]
    MissingLine(&'static str),
    #[error("cannot read {what} in {line:?}")]
    Unreadable { what: &'static str, line: String },
}

/// Reads h2load's summary: the "finished in" line (req/s), the "requests:" counts and
/// the "time for request:" min, max and mean.
pub fn parse_h2load(output: &str, command: String) -> Result<PeerRun, H2loadOutputError> {
    let line = |prefix: &'static str| {
        output.lines().map(str::trim).find(|l| l.starts_with(prefix)).ok_or(H2loadOutputError::MissingLine(prefix))
    };
    let unreadable = |what: &'static str, line: &str| H2loadOutputError::Unreadable { what, line: line.to_owned() };

    // finished in 1.36s, 1470.07 req/s, 54.65KB/s
    let finished = line("finished in")?;
    let req_per_s = finished
        .split(", ")
        .find_map(|part| part.strip_suffix(" req/s"))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .ok_or_else(|| unreadable("req/s", finished))?;

    // requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests_line = line("requests:")?;
    let count = |word: &'static str| {
        requests_line["requests:".len()..]
            .split(',')
            .find_map(|part| {
                let mut it = part.split_whitespace();
                let (n, w) = (it.next()?, it.next()?);
                (w == word).then(|| n.parse::<u64>().ok()).flatten()
            })
            .ok_or_else(|| unreadable(word, requests_line))
    };
    let (requests, succeeded) = (count("total")?, count("succeeded")?);

    // time for request:      338us     18.15ms       668us       805us    96.20%
    let time_line = line("time for request:")?;
    let fields: Vec<f64> = time_line["time for request:".len()..]
        .split_whitespace()
        .take(3)
        .map(duration_us)
        .collect::<Option<_>>()
        .ok_or_else(|| unreadable("min, max, mean", time_line))?;
    let [min_us, max_us, mean_us] = fields[..] else { return Err(unreadable("min, max, mean", time_line)) };
    Ok(PeerRun { command, requests, succeeded, req_per_s, min_us, mean_us, max_us })
}

/// h2load's durations ("338us", "18.15ms", "1.02s") in µs.
fn duration_us(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    number.parse::<f64>().ok().filter(|n| n.is_finite()).map(|n| n * scale)
}

impl Floor {
    /// JetStream on one server beside a replicated stream on a cluster, for the console
    /// and the report: p50 and p99 of publish+ack and of delivery, R1 and R3 (the R3
    /// figure also as a multiple of R1's p50); or why there is no cluster figure.
    pub fn replication_comparison(&self) -> String {
        let Some(r) = &self.replicated else {
            return match &self.replicated_missing {
                Some(reason) => format!("replicated JetStream: not measured ({reason})"),
                None => "replicated JetStream: not measured (results from before it was added)".to_owned(),
            };
        };
        let pair = |one: &Summary, many: &Summary| {
            format!(
                "R1 p50 {} p99 {}, R{} p50 {} p99 {} (×{:.2} at p50)",
                ms_fine(one.p50_us as f64),
                ms_fine(one.p99_us as f64),
                r.replicas,
                ms_fine(many.p50_us as f64),
                ms_fine(many.p99_us as f64),
                if one.p50_us > 0 { many.p50_us as f64 / one.p50_us as f64 } else { 0.0 }
            )
        };
        format!(
            "JetStream, one server vs a {}-node cluster with the stream R{}: publish+ack {}; delivery {}",
            r.nodes,
            r.replicas,
            pair(&self.js_publish_ack, &r.js_publish_ack),
            pair(&self.js_delivery, &r.js_delivery)
        )
    }

    /// The lab's client beside the independent one, for the console and the report:
    /// sequential means (h2load reports no median) and 64-in-flight rates, each with the
    /// lab's figure as a multiple of the peer's; or why there is no peer figure.
    pub fn peer_comparison(&self) -> String {
        let Some(peer) = &self.peer else {
            return match &self.peer_missing {
                Some(reason) => format!("independent client: none ({reason})"),
                None => "independent client: not measured (results from before it was added)".to_owned(),
            };
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("×{:.2}", a / b) } else { "×-".to_owned() };
        format!(
            "lab client vs {} (same health check, same request counts): one at a time mean {} vs {} (lab {}; lab p50 {}, {} min {}); 64 in flight on one connection {:.0}/s vs {:.0}/s (lab {})",
            peer.version,
            ms_fine(self.grpc_echo.mean_us),
            ms_fine(peer.sequential.mean_us),
            ratio(self.grpc_echo.mean_us, peer.sequential.mean_us),
            ms_fine(self.grpc_echo.p50_us),
            PEER,
            ms_fine(peer.sequential.min_us),
            self.echo_64_in_flight_per_s,
            peer.in_flight_64.req_per_s,
            ratio(self.echo_64_in_flight_per_s, peer.in_flight_64.req_per_s),
        )
    }
}

/// `value` as a multiple of `floor` (0 when the floor is 0).
pub fn multiple(value: u64, floor: u64) -> f64 {
    if floor == 0 {
        0.0
    } else {
        value as f64 / floor as f64
    }
}

/// "<fs type> <device> at <mount point>" of the mount holding `path` (the mount point
/// that is the longest prefix of its canonical path in `/proc/self/mountinfo`).
pub fn filesystem(path: &std::path::Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo
        .lines()
        .filter_map(parse_mount)
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.len())
        .map(|m| format!("{} {} at {}", m.fs_type, m.source, m.point))
}

struct Mount {
    point: String,
    fs_type: String,
    source: String,
}

/// One line of `/proc/<pid>/mountinfo`: the mount point is the 5th field; the type
/// and source follow the " - " separator (optional fields come before it).
fn parse_mount(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    // Spaces in a mount point are written as \040.
    let point = before.split(' ').nth(4)?.replace("\\040", " ");
    let mut after = after.split(' ');
    let fs_type = after.next()?.to_owned();
    let source = after.next()?.to_owned();
    Some(Mount { point, fs_type, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mountinfo_line_gives_its_point_type_and_source() {
        let line = "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue";
        let mount = parse_mount(line).expect("parses");
        assert_eq!(
            (mount.point.as_str(), mount.fs_type.as_str(), mount.source.as_str()),
            ("/mnt/my disk", "ext3", "/dev/root")
        );
    }

    /// h2load 1.52's summary, captured against the users service's health check.
    const H2LOAD_OUTPUT: &str = "starting benchmark...
spawning thread #0: 1 total client(s). 2000 total requests
Application protocol: h2c
progress: 10% done
progress: 100% done

finished in 1.36s, 1470.07 req/s, 54.65KB/s
requests: 2000 total, 2000 started, 2000 done, 1998 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 1998 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 74.36KB (76141) total, 5.94KB (6081) headers (space savings 95.72%), 13.67KB (14000) data
                     min         max         mean         sd        +/- sd
time for request:      338us     18.15ms       1.02s       805us    96.20%
time for connect:      663us       663us       663us         0us   100.00%
time to 1st byte:     7.64ms      7.64ms      7.64ms         0us   100.00%
req/s           :    1470.64     1470.64     1470.64        0.00   100.00%
";

    #[test]
    fn h2load_output_gives_its_rate_counts_and_request_times() {
        let run = parse_h2load(H2LOAD_OUTPUT, "h2load …".into()).expect("parses");
        assert_eq!((run.requests, run.succeeded), (2000, 1998));
        assert_eq!(run.req_per_s, 1470.07);
        assert_eq!((run.min_us, run.max_us, run.mean_us), (338.0, 18_150.0, 1_020_000.0));
    }

    #[test]
    fn unexpected_h2load_output_says_what_was_missing_or_unreadable() {
        let no_times = H2LOAD_OUTPUT.replace("time for request", "time per request");
        assert_eq!(parse_h2load(&no_times, String::new()), Err(H2loadOutputError::MissingLine("time for request:")));
        let bad_unit = H2LOAD_OUTPUT.replace("338us", "338ns");
        let err = parse_h2load(&bad_unit, String::new()).expect_err("ns is no h2load unit");
        assert!(err.to_string().contains("min, max, mean") && err.to_string().contains("338ns"), "{err}");
        let no_rate = H2LOAD_OUTPUT.replace("1470.07 req/s", "fast");
        assert!(matches!(
            parse_h2load(&no_rate, String::new()),
            Err(H2loadOutputError::Unreadable { what: "req/s", .. })
        ));
        assert_eq!(parse_h2load("", String::new()), Err(H2loadOutputError::MissingLine("finished in")));
    }

    /// The reasons are recorded as `peer_missing`: their words stay those of the
    /// results already written.
    #[test]
    fn why_the_peer_did_not_run_reads_as_before() {
        assert_eq!(PeerError::NotInstalled.to_string(), "h2load not installed (Debian package nghttp2-client)");
        let output = PeerError::from(H2loadOutputError::MissingLine("finished in"));
        assert_eq!(output.to_string(), "h2load output: no line starting \"finished in\"");
        let timeout = PeerError::Timeout { command: "h2load -c1".into() };
        assert_eq!(timeout.to_string(), "`h2load -c1` did not finish in 120 s");
    }

    #[test]
    fn this_directory_has_a_filesystem() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("dir in the crate");
        let fs = filesystem(dir.path()).expect("a mount holds it");
        // The crate's directory is under some mount point other than a pseudo one.
        assert!(fs.contains(" at /"), "{fs}");
        assert!(!fs.starts_with("proc "), "{fs}");
    }
}
