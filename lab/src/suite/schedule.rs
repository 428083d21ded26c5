//! One seeded fault schedule for every mode, so that the two modes get the same faults:
//! the same service victims at the same planned times, whatever the mode. Broker
//! faults are drawn from a second random stream over the same span, so adding or
//! skipping them cannot shift a service fault; in sync mode (no broker) they are
//! reported as skipped when they come. The soak and chaos are two [`Shape`]s of it.

use std::{
    ops::{Range, RangeInclusive},
    time::Duration,
};

use common::names::{NATS, ORDERS, PRODUCTS, QUERY, USERS};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{scenarios::Step, FaultKind};
use crate::control::Action;

/// The services a schedule picks its victims from, in every mode.
pub const SERVICES: [&str; 4] = [USERS, PRODUCTS, ORDERS, QUERY];

/// What a schedule draws: which faults, how long they last, how far apart.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Mixed into the seed of the service stream (the broker's stream has its own).
    pub salt: u64,
    /// The kinds of fault and their weights.
    pub kinds: &'static [(FaultKind, u32)],
    /// How long a killed or paused victim stays down, ms.
    pub down_ms: RangeInclusive<u64>,
    /// Time planned for a restart to finish before the next fault.
    pub restart_allowance: Duration,
    /// Between the end of one service fault and the next, ms.
    pub gap_ms: Range<u64>,
    /// The broker's first fault, and the gap between its faults, ms.
    pub broker_first_ms: Range<u64>,
    pub broker_gap_ms: Range<u64>,
}

/// Where a schedule ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this many service faults (the broker's faults span the same time).
    Faults(usize),
    /// Every fault (and its repair) planned before this time.
    Before(Duration),
}

/// The schedule's steps as `mode` carries them out: in the monolith a service's fault
/// is a fault of the one process that serves it (killing "users" kills the monolith),
/// at the same planned time, so the monolith meets the same faults as the other modes
/// and its blast radius is measured; elsewhere they are unchanged. (Service faults never
/// overlap, so neither do the monolith's.)
pub fn in_mode(mut steps: Vec<Step>, mode: common::config::Mode) -> Vec<Step> {
    if mode == common::config::Mode::Monolith {
        for step in steps.iter_mut().filter(|s| SERVICES.contains(&s.target)) {
            step.target = common::names::MONOLITH;
        }
    }
    steps
}

/// The steps of a schedule from `seed`, and the planned time of its last step.
pub fn schedule(seed: u64, shape: &Shape, until: Until) -> (Vec<Step>, Duration) {
    let first = Duration::from_millis(500);
    // A fault starts only if its repair (at most `down_ms.end()` later) fits.
    let longest = Duration::from_millis(*shape.down_ms.end());
    let fits = |t: Duration| match until {
        Until::Faults(_) => true,
        Until::Before(end) => t + longest < end,
    };
    let mut steps = Vec::new();
    let mut services = StdRng::seed_from_u64(seed ^ shape.salt);
    let mut t = first;
    let mut n = 0;
    while fits(t) && !matches!(until, Until::Faults(max) if n >= max) {
        let victim = SERVICES[services.random_range(0..SERVICES.len())];
        let busy = fault(&mut services, shape, victim, t, &mut steps);
        t += busy + Duration::from_millis(services.random_range(shape.gap_ms.clone()));
        n += 1;
    }
    let end = match until {
        Until::Faults(_) => t,
        Until::Before(end) => end,
    };
    let mut broker = StdRng::seed_from_u64(seed ^ 0xB40C_E411);
    let mut t = Duration::from_millis(broker.random_range(shape.broker_first_ms.clone()));
    while t < end && fits(t) {
        let busy = fault(&mut broker, shape, NATS, t, &mut steps);
        t += busy + Duration::from_millis(broker.random_range(shape.broker_gap_ms.clone()));
    }
    steps.sort_by_key(|s| s.at);
    let last = steps.iter().map(|s| s.at).max().unwrap_or_default();
    (steps, last)
}

/// One random fault of `victim` at `t`, with its repair: kill (restarted after
/// `down_ms`), pause (resumed after `down_ms`) or restart. Returns the time it keeps
/// the victim busy.
fn fault(rng: &mut StdRng, shape: &Shape, victim: &'static str, t: Duration, steps: &mut Vec<Step>) -> Duration {
    let down = Duration::from_millis(rng.random_range(shape.down_ms.clone()));
    let total: u32 = shape.kinds.iter().map(|(_, w)| w).sum();
    let mut draw = rng.random_range(0..total);
    let kind = shape
        .kinds
        .iter()
        .find(|(_, w)| {
            let hit = draw < *w;
            draw = draw.saturating_sub(*w);
            hit
        })
        .map_or(FaultKind::Kill, |(k, _)| *k);
    let step = |at, action, starts| Step { at, action, target: victim, starts };
    match kind {
        FaultKind::Kill => {
            steps.push(step(t, Action::Kill, Some(kind)));
            steps.push(step(t + down, Action::Restart, None));
            down + shape.restart_allowance
        }
        FaultKind::Pause => {
            steps.push(step(t, Action::Pause, Some(kind)));
            steps.push(step(t + down, Action::Resume, None));
            down
        }
        FaultKind::Restart => {
            steps.push(step(t, Action::Restart, Some(kind)));
            shape.restart_allowance
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        salt: 1,
        kinds: &[(FaultKind::Kill, 1), (FaultKind::Pause, 1)],
        down_ms: 50..=200,
        restart_allowance: Duration::from_millis(100),
        gap_ms: 50..100,
        broker_first_ms: 300..600,
        broker_gap_ms: 500..900,
    };

    #[test]
    fn a_time_bounded_schedule_repairs_every_fault_before_its_end() {
        let end = Duration::from_secs(5);
        let (steps, last) = schedule(3, &SHAPE, Until::Before(end));
        assert!(last < end, "{last:?}");
        let starts = steps.iter().filter(|s| s.starts.is_some()).count();
        let repairs = steps.iter().filter(|s| s.starts.is_none()).count();
        assert_eq!(starts, repairs, "every kill and pause has its repair");
        assert!(steps.iter().any(|s| s.target == NATS), "the broker stream adds faults");
    }

    #[test]
    fn a_count_bounded_schedule_has_that_many_service_faults() {
        let (steps, _) = schedule(3, &SHAPE, Until::Faults(7));
        assert_eq!(steps.iter().filter(|s| s.starts.is_some() && s.target != NATS).count(), 7);
    }
}
