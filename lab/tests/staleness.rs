//! The staleness probe against real processes: a mode that reads its own writes shows
//! no staleness, and an outage weighs as long as it lasted.

mod support;

use std::{sync::Arc, time::Duration};

use common::{config::Mode, names::QUERY};
use lab::seed::Seeded;
use support::{populate, settle};
use tokio_util::sync::CancellationToken;

async fn seeded(lab: &support::Lab) -> Arc<Seeded> {
    let (user_ids, product_ids) = populate(lab, 3, 2).await;
    settle(lab, 5).await;
    Arc::new(Seeded { user_ids, product_ids, order_ids: Vec::new() })
}

/// Sync mode reads the owners on every query: the first read after an acknowledged
/// order already shows it, so staleness is 0 at every percentile.
#[tokio::test]
async fn a_sync_probe_reports_no_staleness() {
    let lab = support::start(Mode::Sync).await;
    let seeded = seeded(&lab).await;
    let stop = CancellationToken::new();
    let acked = Arc::default();
    let probe = tokio::spawn(lab::suite::probe::run(lab.clients.clone(), seeded, Arc::clone(&acked), stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let staleness = probe.await.unwrap();
    assert!(staleness.visible.ok >= 5, "{staleness:?}");
    assert_eq!(
        (staleness.visible.p50_us, staleness.visible.p99_us, staleness.visible.max_us),
        (0, 0, 0),
        "{staleness:?}"
    );
    assert_eq!(staleness.never_visible, 0);
    assert_eq!(staleness.stale, 0);
    // Every acknowledged probe order is in the list the loss checker holds the view to.
    assert_eq!(acked.lock().unwrap().len() as u64, staleness.visible.ok);
}

/// Async mode with the query service killed for a second while probes are written:
/// every probe written during the outage is stale until the service is back, so the
/// outage yields many stale samples, not one.
#[tokio::test]
async fn an_outage_yields_stale_samples_for_as_long_as_it_lasts() {
    let mut lab = support::start(Mode::Async).await;
    let seeded = seeded(&lab).await;
    let stop = CancellationToken::new();
    let acked = Arc::default();
    let probe = tokio::spawn(lab::suite::probe::run(lab.clients.clone(), seeded, Arc::clone(&acked), stop.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    lab.topology.kill(QUERY).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.topology.restart(QUERY).await.unwrap();
    stop.cancel();
    let staleness = probe.await.unwrap();
    // Probes go out on a schedule, so a one-second outage holds many of them.
    assert!(staleness.visible.ok >= 10, "{staleness:?}");
    // Most were written during the outage and waited for its end.
    assert!(staleness.visible.p50_us >= 300_000, "{staleness:?}");
    assert!(staleness.stale >= 10, "{staleness:?}");
    assert_eq!(staleness.never_visible, 0);
}
