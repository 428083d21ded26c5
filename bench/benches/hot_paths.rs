//! Criterion benches of the hot paths: event encode/decode, applying an event to the
//! query view (sled transaction + flush), the outbox relay's publish rate to a real
//! nats-server with JetStream, and one gRPC round trip on loopback.
//!
//! `cargo bench -p bench --bench hot_paths` (nats-server: found or installed as the
//! lab does, see `bench::nats`).

use std::{
    net::TcpListener as StdListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    consumer::Projection,
    events,
    outbox::Outbox,
    proto::{Envelope, Order, Product},
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use sled::Transactional;

fn order(i: u64) -> Order {
    Order {
        id: format!("ord-{i:016x}"),
        user_id: format!("usr-{:016x}", i % 100),
        product_id: format!("prd-{:016x}", i % 50),
        quantity: 2,
        unit_price_cents: 1999,
        placed_at_unix_ms: 1_700_000_000_000 + i,
    }
}

fn codec(c: &mut Criterion) {
    let envelope = events::order_placed(&order(7));
    let bytes = envelope.encode_to_vec();
    let mut group = c.benchmark_group("event");
    group.bench_function("encode", |b| b.iter(|| envelope.encode_to_vec()));
    group.bench_function("decode", |b| b.iter(|| Envelope::decode(bytes.as_slice()).expect("decodes")));
    group.finish();
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let view = query::events::View::open(dir.path()).expect("view opens");
    let product = Product { id: format!("prd-{:016x}", 1), title: "Lamp".into(), price_cents: 1999, version: 1 };
    view.apply(&events::product_created(&product)).expect("applies");
    let mut i = 0;
    let mut group = c.benchmark_group("projection");
    group.measurement_time(Duration::from_secs(4)).sample_size(40);
    group.bench_function("apply OrderPlaced + flush", |b| {
        b.iter(|| {
            i += 1;
            view.apply(&events::order_placed(&order(i))).expect("applies");
            view.db().flush().expect("flush");
        })
    });
    // What the async read costs without the network: the user and their 5 orders.
    let user = common::proto::User {
        id: order(0).user_id,
        name: "Ada".into(),
        email: "ada@example.test".into(),
        created_at_unix_ms: 1,
    };
    view.apply(&events::user_created(&user)).expect("applies");
    for n in 1..=5 {
        let mut o = order(n * 100);
        o.product_id = product.id.clone();
        view.apply(&events::order_placed(&o)).expect("applies");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    group.bench_function("UserOrders read (5 orders, no network)", |b| {
        b.iter(|| {
            let deadline = common::deadline::Deadline::after(Duration::from_secs(1));
            let answer = runtime.block_on(query::Source::user_orders(&view, &user.id, deadline)).expect("answers");
            assert_eq!(answer.items.len(), 5);
        })
    });
    group.finish();
}

/// A nats-server with JetStream in a temporary store, killed on drop.
struct Broker {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(|_| ())) {
            eprintln!("cannot stop nats-server: {e}");
        }
    }
}

fn broker() -> Broker {
    let nats = bench::nats::nats_server().expect("nats-server");
    let store = tempfile::tempdir().expect("temp dir");
    // A free port: bound then released (a bench, not a test running in parallel).
    let port = StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let child = Command::new(nats.path)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server starts");
    let url = format!("nats://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "nats-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Broker { child, url, _store: store }
}

fn relay(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = broker();
    let js = runtime.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&broker.url).await.expect("connects"));
        common::broker::ensure_stream(&js).await.expect("stream");
        js
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(dir.path()).expect("sled");
    let outbox = Outbox::open(&db, true).expect("outbox");
    let scratch = db.open_tree("scratch").expect("tree");
    let mut next = 0u64;
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(5)).sample_size(20);
    group.bench_function("publish outbox records with PubAck", |b| {
        b.iter_custom(|iters| {
            for _ in 0..iters {
                next += 1;
                let envelope = events::order_placed(&order(next));
                let key = outbox.next_key().expect("key");
                (&scratch, outbox.tree()).transaction(|(_, o)| outbox.stage(o, key, &envelope)).expect("stages");
            }
            let start = Instant::now();
            let published = runtime.block_on(common::outbox::publish_pending(&outbox, &js)).expect("publishes");
            assert_eq!(published as u64, iters);
            start.elapsed()
        })
    });
    group.finish();
}

fn grpc(c: &mut Criterion) {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        HealthClient::new(common::channel(addr))
    });
    c.bench_function("grpc round trip (health check, loopback)", |b| {
        b.iter(|| {
            let mut client = client.clone();
            runtime.block_on(async move {
                client.check(HealthCheckRequest { service: String::new() }).await.expect("answers")
            })
        })
    });
}

criterion_group!(benches, codec, apply, relay, grpc);
criterion_main!(benches);
