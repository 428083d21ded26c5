//! The staleness probe: how long a reader could still read the old state after a write
//! was acknowledged.
//!
//! Probes run open loop: every [`EVERY`] a new probe places an order, whatever the
//! earlier probes are doing, and each probe then polls `UserOrders` on its own
//! schedule until the order shows (or [`PATIENCE`] has passed). So an outage holds as
//! many probes as it lasted, and weighs in the percentiles for as long as it lasted.
//!
//! One probe's staleness is the time from the acknowledgement to the **send time** of
//! the first read that showed the order, and 0 if the first read after the
//! acknowledgement showed it. A read that did not show it (an answer without it, or a
//! failed read: the reader could not see the write) brackets the staleness from below;
//! the width of the bracket, from the send time of the last read that did not show it to
//! that of the first that did, is the probe's resolution. A mode that reads its own
//! writes shows 0 by measurement whenever its reads succeed. Acknowledged probe orders
//! join the loss checker's list.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bench::{Recorder, Summary};
use common::proto::{PlaceOrderRequest, UserOrdersRequest};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{client::Clients, seed::Seeded};

/// How long one probe polls for its order to show.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// A new probe every this long (open loop).
pub const EVERY: Duration = Duration::from_millis(50);
/// A probe's first wait between reads; it grows by half on every read that does not
/// show the order, up to [`READ_EVERY_MAX`], so a long outage does not flood the
/// services with reads (each probe's resolution says what this cost).
pub const READ_EVERY_MIN: Duration = Duration::from_millis(2);
pub const READ_EVERY_MAX: Duration = Duration::from_millis(100);
/// The deadline of a probe's write and of each of its reads, enforced here too: a read
/// of a frozen service ends as a failed read, not a hung probe.
const DEADLINE: Duration = Duration::from_secs(1);

/// What the figures measure: old results files measured until the reply arrived.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Acknowledgement → the reply of the first read that showed the write (a closed
    /// loop of probes): includes one full read, never 0. Files written before issue 10.
    #[default]
    ReplyArrived,
    /// Acknowledgement → the send time of the first read that showed the write (0 if
    /// the first read after the acknowledgement did), probes on a schedule.
    FirstReadSent,
}

impl Measure {
    /// The label of the figure.
    pub fn label(self) -> &'static str {
        match self {
            Measure::ReplyArrived => "acknowledged → reply of the first read that showed it (includes one read)",
            Measure::FirstReadSent => "acknowledged → first read sent that showed it",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Staleness {
    /// The staleness of the probes whose order showed, as [`Staleness::measure`] says.
    pub visible: Summary,
    /// Probe writes that were not acknowledged (the write itself failed).
    pub writes_failed: u64,
    /// Acknowledged probe writes that never showed within the patience.
    pub never_visible: u64,
    #[serde(default)]
    pub measure: Measure,
    /// Probes whose first read after the acknowledgement did not show the write.
    #[serde(default)]
    pub stale: u64,
    /// Each probe's bracket width: send time of the last read that did not show the
    /// write to that of the first that did (from the acknowledgement for a probe whose
    /// first read showed it).
    #[serde(default)]
    pub resolution: Option<Summary>,
    /// Reads per probe (of the probes that showed): mean and max.
    #[serde(default)]
    pub reads_per_probe: Option<Reads>,
    /// Reads that failed (counted as not showing the write).
    #[serde(default)]
    pub reads_failed: u64,
    /// The schedule: a probe every `every_ms`.
    #[serde(default)]
    pub every_ms: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Reads {
    pub mean: f64,
    pub max: u64,
}

/// One probe's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    WriteFailed,
    NeverVisible { reads_failed: u64 },
    Visible { staleness: Duration, resolution: Duration, reads: u64, reads_failed: u64 },
}

impl Staleness {
    /// The figures of these probes.
    pub fn of(samples: &[Sample]) -> Self {
        let (mut staleness, mut resolution) = (Recorder::default(), Recorder::default());
        let mut s = Staleness {
            visible: staleness.summary(),
            writes_failed: 0,
            never_visible: 0,
            measure: Measure::FirstReadSent,
            stale: 0,
            resolution: None,
            reads_per_probe: None,
            reads_failed: 0,
            every_ms: EVERY.as_millis() as u64,
        };
        let (mut reads, mut max_reads, mut visible) = (0u64, 0u64, 0u64);
        for sample in samples {
            match *sample {
                Sample::WriteFailed => s.writes_failed += 1,
                Sample::NeverVisible { reads_failed } => {
                    s.never_visible += 1;
                    s.reads_failed += reads_failed;
                }
                Sample::Visible { staleness: st, resolution: r, reads: n, reads_failed } => {
                    staleness.record(st, "OK");
                    resolution.record(r, "OK");
                    s.stale += u64::from(!st.is_zero());
                    s.reads_failed += reads_failed;
                    (reads, max_reads, visible) = (reads + n, max_reads.max(n), visible + 1);
                }
            }
        }
        s.visible = staleness.summary();
        s.resolution = Some(resolution.summary());
        s.reads_per_probe = Some(Reads { mean: reads as f64 / visible.max(1) as f64, max: max_reads });
        s
    }
}

/// Probes on the schedule until `stop`, then waits for the probes in flight to see
/// their writes (or give up). Acknowledged probe orders are added to `acked`.
pub async fn run(
    clients: Clients,
    seeded: Arc<Seeded>,
    acked: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
) -> Staleness {
    let mut probes = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(EVERY);
    // Late ticks are not made up in a burst: the schedule resumes.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    for i in 0usize.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let user_id = seeded.user_ids[i % seeded.user_ids.len()].clone();
        let product_id = seeded.product_ids[i % seeded.product_ids.len()].clone();
        probes.spawn(probe(clients.clone(), user_id, product_id, acked.clone()));
        // Collect the finished ones as we go, so the set stays small.
        while let Some(done) = probes.try_join_next() {
            samples.push(done.expect("probe task"));
        }
    }
    while let Some(done) = probes.join_next().await {
        samples.push(done.expect("probe task"));
    }
    Staleness::of(&samples)
}

/// One probe: a write, then reads until it shows.
async fn probe(mut clients: Clients, user_id: String, product_id: String, acked: Arc<Mutex<Vec<String>>>) -> Sample {
    let message = PlaceOrderRequest { user_id: user_id.clone(), product_id, quantity: 1 };
    let placed = bench::call(DEADLINE, message, |r| clients.orders.place_order(r)).await;
    let acknowledged = Instant::now();
    let order_id = match placed {
        Ok(order) => order.id,
        Err(_) => return Sample::WriteFailed,
    };
    acked.lock().unwrap_or_else(|e| e.into_inner()).push(order_id.clone());
    // The send time of the last read that did not show the write.
    let mut last_miss: Option<Instant> = None;
    let (mut reads, mut reads_failed) = (0u64, 0u64);
    let mut wait = READ_EVERY_MIN;
    loop {
        let sent = Instant::now();
        reads += 1;
        let request = UserOrdersRequest { user_id: user_id.clone() };
        match bench::call(DEADLINE, request, |r| clients.query.user_orders(r)).await {
            Ok(answer) if answer.items.iter().any(|item| item.order_id == order_id) => {
                return Sample::Visible {
                    staleness: if last_miss.is_some() { sent - acknowledged } else { Duration::ZERO },
                    resolution: sent - last_miss.unwrap_or(acknowledged),
                    reads,
                    reads_failed,
                };
            }
            Ok(_) => {}
            Err(_) => reads_failed += 1,
        }
        last_miss = Some(sent);
        if acknowledged.elapsed() > PATIENCE {
            return Sample::NeverVisible { reads_failed };
        }
        tokio::time::sleep_until(sent + wait).await;
        wait = (wait * 3 / 2).min(READ_EVERY_MAX);
    }
}
