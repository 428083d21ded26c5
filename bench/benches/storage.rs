//! What durability costs: a sled insert left to the background flusher, the same
//! insert flushed before returning (what every Cascade write does before it replies),
//! and the async mode's write (entity + outbox record in one transaction, flushed).
//!
//! `cargo bench -p bench --bench storage`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sled::Transactional;

fn storage(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(dir.path()).expect("sled opens");
    let entities = db.open_tree("entities").expect("tree");
    let outbox = db.open_tree("outbox").expect("tree");
    let value = vec![7u8; 96];
    let mut key = 0u64;
    let mut group = c.benchmark_group("sled");
    group.measurement_time(Duration::from_secs(4)).sample_size(40);
    group.bench_function("insert, no flush", |b| {
        b.iter(|| {
            key += 1;
            entities.insert(key.to_be_bytes(), value.as_slice()).expect("insert");
        })
    });
    group.bench_function("insert + flush", |b| {
        b.iter(|| {
            key += 1;
            entities.insert(key.to_be_bytes(), value.as_slice()).expect("insert");
            db.flush().expect("flush");
        })
    });
    group.bench_function("entity + outbox transaction + flush", |b| {
        b.iter(|| {
            key += 1;
            (&entities, &outbox)
                .transaction(|(e, o)| {
                    e.insert(&key.to_be_bytes(), value.as_slice())?;
                    o.insert(&key.to_be_bytes(), value.as_slice())?;
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .expect("transaction");
            db.flush().expect("flush");
        })
    });
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
