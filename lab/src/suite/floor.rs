//! The floor: what the machine itself costs, measured in the same run as everything
//! else, so every other figure can be read as a multiple of it. All sequential, one
//! request at a time:
//!
//! - `tcp_rtt`: 64 bytes to an echo task and back on loopback (tokio, in process);
//! - `grpc_echo`: a gRPC health check of the users service (a real process, no
//!   storage touched): one bare tonic hop;
//! - `js_publish_ack`: a JetStream publish until its PubAck, on the topology's broker
//!   (a stream of its own);
//! - `js_delivery`: from the start of a publish until a durable pull consumer holds the
//!   message (then acked): one hop through the broker;
//! - `sled_flush`: an insert and a flush; `sled_txn2_flush`: a two-tree transaction
//!   and a flush (what an outbox write and an event apply cost). Both in a directory
//!   of the run dir, on the filesystem the services' data dirs are on (a system temp
//!   dir may be tmpfs, where a flush costs nothing), whose type is recorded.
//!
//! And the generator's own ceiling: how many health checks 64 concurrent closed-loop
//! clients get through, then the open-loop generator asked for that rate.

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

/// Measures the floor; the sled figures in a new directory under `sled_dir`, which
/// should be on the services' filesystem.
pub async fn measure(
    sled_dir: &std::path::Path,
    grpc: std::net::SocketAddr,
    nats_url: &str,
    n: usize,
    ceiling_time: Duration,
) -> anyhow::Result<Floor> {
    // Raw TCP.
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
    let tcp_rtt = recorder.summary();
    drop(stream);
    echo.abort();

    // One bare gRPC hop.
    let health = HealthClient::new(common::channel(grpc));
    let check = |mut client: HealthClient<tonic::transport::Channel>| async move {
        client.check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
    };
    let grpc_echo = time(n, || {
        let client = health.clone();
        async move { Ok(check(client).await?) }
    })
    .await?;

    // JetStream.
    let js = jetstream::new(async_nats::connect(nats_url).await?);
    let floor_stream = js
        .get_or_create_stream(stream::Config {
            name: "FLOOR".into(),
            subjects: vec!["floor.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let payload = bytes::Bytes::from(vec![1u8; 128]);
    let js_publish_ack = time(n, || {
        let (js, payload) = (js.clone(), payload.clone());
        async move {
            js.publish("floor.ack", payload).await?.await?;
            Ok(())
        }
    })
    .await?;
    let consumer: pull::Stream = floor_stream
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
    let mut consumer = consumer;
    let mut recorder = Recorder::default();
    for _ in 0..n {
        let start = Instant::now();
        let ack = js.publish("floor.delivery", payload.clone()).await?;
        let message = consumer.next().await.ok_or_else(|| anyhow::anyhow!("floor consumer ended"))??;
        message.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
        recorder.record(start.elapsed(), "OK");
        ack.await?;
    }
    let js_delivery = recorder.summary();

    // sled.
    let dir = tempfile::tempdir_in(sled_dir)?;
    let sled_filesystem = filesystem(dir.path());
    let db = sled::open(dir.path())?;
    let (a, b) = (db.open_tree("a")?, db.open_tree("b")?);
    let mut key = 0u64;
    let value = [9u8; 96];
    let sled_flush = time(n, || {
        key += 1;
        let (a, db) = (&a, &db);
        async move {
            a.insert(key.to_be_bytes(), &value[..])?;
            common::store::flush(db).await?;
            Ok(())
        }
    })
    .await?;
    let sled_txn2_flush = time(n, || {
        key += 1;
        let (a, b, db) = (&a, &b, &db);
        async move {
            (a, b)
                .transaction(|(a, b)| {
                    a.insert(&key.to_be_bytes(), &value[..])?;
                    b.insert(&key.to_be_bytes(), &value[..])?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| anyhow::anyhow!("transaction: {e:?}"))?;
            common::store::flush(db).await?;
            Ok(())
        }
    })
    .await?;
    drop((a, b, db));

    // The generator's ceiling.
    let saturated = {
        let health = health.clone();
        closed_loop(64, ceiling_time, move |_| {
            let client = health.clone();
            ("echo", async move { bench::outcome(&check(client).await) })
        })
        .await
    };
    let echo_64_in_flight_per_s = saturated.ok_per_s;
    let mut generator_ladder = Vec::new();
    let mut generator_ceiling_per_s = 0.0;
    for share in [0.25, 0.5, 0.75, 0.9] {
        let health = health.clone();
        let rate = (share * echo_64_in_flight_per_s).max(1.0);
        let report = open_loop(
            OpenLoop::new(rate, ceiling_time),
            move |_| {
                let client = health.clone();
                ("echo", async move { bench::outcome(&check(client).await) })
            },
            None,
        )
        .await;
        if kept_schedule(&report) {
            generator_ceiling_per_s = rate;
        }
        generator_ladder.push(report);
    }
    let generator_noop =
        open_loop(OpenLoop::new(echo_64_in_flight_per_s.max(1.0), ceiling_time), |_| ("noop", async { "OK" }), None)
            .await;
    Ok(Floor {
        tcp_rtt,
        grpc_echo,
        js_publish_ack,
        js_delivery,
        sled_flush,
        sled_txn2_flush,
        sled_filesystem,
        echo_64_in_flight_per_s,
        generator_ladder,
        generator_ceiling_per_s,
        generator_noop,
    })
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

    #[test]
    fn this_directory_has_a_filesystem() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("dir in the crate");
        let fs = filesystem(dir.path()).expect("a mount holds it");
        // The crate's directory is under some mount point other than a pseudo one.
        assert!(fs.contains(" at /"), "{fs}");
        assert!(!fs.starts_with("proc "), "{fs}");
    }
}
