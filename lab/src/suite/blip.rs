//! `overload-blip`: the metastability scenario. The mode's saturation is measured by a
//! short closed-loop run (as the load curve does), then the workload runs open-loop at
//! a share of it: a while at normal, a short fault on products' proxy (by default 50 ms
//! added; in bus-rpc mode on its link to the broker too), then normal again for long
//! enough to see whether goodput comes back. The services count what they sent
//! (`Admin.Stats`), so the calls per client request before, during and after the blip
//! are theirs, retries included.

use std::time::Duration;

use bench::load::{open_loop_for, Bucket, Length, LoadReport, OpenLoop, SHED};
use common::{
    config::Mode,
    proto::{admin_client::AdminClient, StatsRequest},
};
use serde::{Deserialize, Serialize};

use super::{
    resources::{Sampler, SAMPLE_EVERY},
    scenarios::{self, does_not_apply, OK},
    Ctx, FaultEvent, Prepared, Scenario, ScenarioResult,
};
use crate::{
    control::{self, Action},
    topology::{Target, TopologyError},
};

/// The load run's name in [`ScenarioResult::loads`] (the saturation run is "saturation").
pub const LOAD: &str = "blip";

/// Goodput is back when it is at least this share of the mean before the blip.
pub const RECOVERED_SHARE: f64 = 0.9;
/// Buckets per window of the recovery rule (100 ms each: 0.5 s).
pub const RECOVERY_WINDOW: usize = 5;

/// The recovery rule, for the report: [`recovery`] computes exactly this.
pub const RECOVERY_RULE: &str = "recovery time runs from the end of the blip (the heal taking effect) to the start of the first 100 ms bucket that is itself back (goodput, successes by intended send time, at least 90 % of the mean goodput of the buckets before the blip) and from which on every 0.5 s window (five buckets, sliding) averages at least that, to the end of the run, with at least one whole window starting there (a bucket back only in the run's last 0.4 s does not count): one noisy bucket does not undo a recovery, a lasting shortfall does";
/// What overload-blip measured in one variant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Blip {
    /// Successes per second of the closed-loop run that measured the saturation, its
    /// clients and its length.
    pub saturation_ok_per_s: f64,
    pub saturation_clients: usize,
    pub saturation_ms: u64,
    /// How long the work the saturation run left behind took to finish after it
    /// (async's outboxes, broker and consumers; 0 elsewhere), and the rate the variant
    /// sustains with it counted: the run's successes ÷ (its length + this drain).
    #[serde(default)]
    pub drain_ms: u64,
    #[serde(default)]
    pub sustained_ok_per_s: f64,
    /// The open loop's rate as a share of the sustained rate, and the rate.
    pub load_share: f64,
    pub offered_per_s: f64,
    /// The fault on the proxy during the blip, as a control line (`slow products 50 0`).
    pub fault: String,
    /// When the fault took effect and when the heal did, in ms from the start of the load.
    pub from_ms: u64,
    pub to_ms: u64,
    /// Before, during and after the blip.
    pub phases: Vec<Phase>,
    pub recovery: Recovery,
}

/// One phase of the load, with what the services counted over it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// "before", "during" or "after".
    pub name: String,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Client requests intended in the phase and sent (the generator's sheds excluded),
    /// and of them the successes.
    pub client_requests: u64,
    pub ok: u64,
    /// `Admin.Stats` deltas over the phase, summed over the processes: inter-service
    /// calls sent (every attempt, retries included), of them retries, calls refused by
    /// an open breaker (not sent), and requests shed by a server at its limit.
    pub rpcs_sent: u64,
    pub retries_sent: u64,
    pub breaker_rejections: u64,
    pub requests_shed: u64,
}

impl Phase {
    /// Inter-service calls sent per client request of the phase.
    pub fn amplification(&self) -> Option<f64> {
        (self.client_requests > 0).then(|| self.rpcs_sent as f64 / self.client_requests as f64)
    }
}

/// When goodput came back after the blip, by [`RECOVERY_RULE`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Recovery {
    /// Back this long after the blip ended (to the bucket width: 100 ms).
    Recovered { after_ms: u64 },
    /// Not back by the end of the run, this long after the blip ended.
    NotRecovered { within_ms: u64 },
    /// Nothing succeeded before the blip: nothing to come back to.
    #[default]
    NoBaseline,
}

impl Recovery {
    pub fn describe(&self) -> String {
        match self {
            Recovery::Recovered { after_ms } => format!("{after_ms} ms"),
            Recovery::NotRecovered { within_ms } => {
                format!("did not recover within the run ({:.1} s after the blip)", *within_ms as f64 / 1000.0)
            }
            Recovery::NoBaseline => "no goodput before the blip to recover to".into(),
        }
    }
}

/// The recovery of a timeline (`buckets` of `width_ms`, by intended send time) after a
/// blip over [`blip.0`, `blip.1`) ms, in a run of `end_ms`: see [`RECOVERY_RULE`]. Only
/// whole buckets count (the last one may be cut short by the end of the run), and a
/// bucket can be where recovery starts only if a whole window starts there.
pub fn recovery(buckets: &[Bucket], width_ms: u64, blip: (u64, u64), end_ms: u64) -> Recovery {
    let width_ms = width_ms.max(1);
    let whole: Vec<&Bucket> = buckets.iter().filter(|b| b.t_ms + width_ms <= end_ms).collect();
    let before: Vec<u64> = whole.iter().filter(|b| b.t_ms + width_ms <= blip.0).map(|b| b.ok).collect();
    if before.is_empty() || before.iter().all(|&ok| ok == 0) {
        return Recovery::NoBaseline;
    }
    let threshold = RECOVERED_SHARE * before.iter().sum::<u64>() as f64 / before.len() as f64;
    // Buckets that end after the heal took effect, in order.
    let after: Vec<f64> = whole.iter().filter(|b| b.t_ms + width_ms > blip.1).map(|b| b.ok as f64).collect();
    let starts: Vec<u64> = whole.iter().filter(|b| b.t_ms + width_ms > blip.1).map(|b| b.t_ms).collect();
    let windows_back: Vec<bool> =
        after.windows(RECOVERY_WINDOW).map(|w| w.iter().sum::<f64>() / w.len() as f64 >= threshold).collect();
    // The first start from which on every window is back, and which is back itself.
    let mut from = None;
    for i in (0..windows_back.len()).rev() {
        if !windows_back[i] {
            break;
        }
        if after[i] >= threshold {
            from = Some(i);
        }
    }
    match from {
        Some(i) => Recovery::Recovered { after_ms: starts[i].saturating_sub(blip.1) },
        None => Recovery::NotRecovered { within_ms: end_ms.saturating_sub(blip.1) },
    }
}

/// The counters of every process that amplification is made of.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    rpcs: u64,
    retries: u64,
    rejections: u64,
    shed: u64,
}

/// Reads every service process's `Admin.Stats` once (a monolith, which serves all four
/// services, once; each query replica) and sums the counters.
async fn counts(prepared: &Prepared) -> anyhow::Result<Counts> {
    let mut c = Counts::default();
    for service in prepared.topology.service_processes() {
        let address = service.public_address();
        let mut admin = AdminClient::new(common::channel(address));
        let s = admin.stats(StatsRequest {}).await?.into_inner();
        c.rpcs += s.rpcs_sent.values().sum::<u64>();
        c.retries += s.retries_sent.values().sum::<u64>();
        c.rejections += s.breaker_rejections.values().sum::<u64>();
        c.shed += s.requests_shed;
    }
    Ok(c)
}

/// The blip's fault, from the profile: one of the proxy's (slow, blackhole, reset).
pub fn fault(line: &str) -> anyhow::Result<(Action, String)> {
    let (action, target) =
        Action::parse(line).map_err(|e| anyhow::anyhow!("overload-blip's fault {line:?} is not a fault: {e}"))?;
    anyhow::ensure!(
        matches!(action, Action::Slow { .. } | Action::Blackhole | Action::Reset),
        "overload-blip's fault must be one of the proxy's (slow, blackhole, reset), not {line:?}"
    );
    Ok((action, target))
}

/// The rate that a run of `run_ms` serving `ok_per_s` sustains when the work it left
/// behind, which took `drain_ms` to finish, is counted in its time.
pub fn sustained_rate(ok_per_s: f64, run_ms: u64, drain_ms: u64) -> f64 {
    // The share first: at most 1 (exactly 1 without a drain), so the rate never comes
    // out above `ok_per_s` by rounding (`x * 507.0 / 507.0` can).
    ok_per_s * (run_ms as f64 / (run_ms + drain_ms).max(1) as f64)
}

/// Samples resources until `at`.
async fn sample_until(sampler: &mut Sampler, prepared: &Prepared, at: tokio::time::Instant) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(at) => return,
            _ = tick.tick() => sampler.sample_load(&prepared.topology.file()),
        }
    }
}

/// Carries out `action` on `target` as a step of the blip: its event, and whether it
/// took effect.
async fn step(
    prepared: &mut Prepared,
    action: &Action,
    target: &str,
    start: tokio::time::Instant,
    planned: Duration,
) -> FaultEvent {
    let ms = |at: tokio::time::Instant| at.duration_since(start).as_millis() as u64;
    let issued = tokio::time::Instant::now();
    let result = match control::apply(&mut prepared.topology, action, target).await {
        Ok(()) => OK.to_owned(),
        Err(TopologyError::NoSuchComponent { mode, component }) => does_not_apply(mode, &component),
        Err(e) => format!("error: {e}"),
    };
    FaultEvent {
        t_ms: ms(issued),
        action: action.line(target),
        result,
        planned_ms: Some(planned.as_millis() as u64),
        effective_ms: Some(ms(tokio::time::Instant::now())),
        fault: None,
        writes_in_flight: None,
        self_healed: None,
    }
}

/// Requests intended in [`from`, `to`) ms and sent, and of them the successes.
fn sent_between(report: &LoadReport, from: u64, to: u64) -> (u64, u64) {
    report.timeline.iter().filter(|b| b.t_ms >= from && b.t_ms < to).fold((0, 0), |(sent, ok), b| {
        let failed: u64 = b.errors.iter().filter(|(k, _)| k.as_str() != SHED).map(|(_, n)| n).sum();
        (sent + b.ok + failed, ok + b.ok)
    })
}

/// `overload-blip` in `mode`.
pub async fn run(ctx: &Ctx, mode: Mode) -> anyhow::Result<ScenarioResult> {
    let p = &ctx.profile;
    if ctx.target != Target::Process {
        return Ok(ScenarioResult {
            note: Some("the blip is a fault of the lab's proxy, on the process target".into()),
            ..Default::default()
        });
    }
    let (action, target) = fault(&p.blip_fault)?;
    if mode == Mode::Monolith {
        return Ok(scenarios::no_call_between_services(mode, &action, &target));
    }
    let [before, during, after] = p.blip_phases_secs;
    anyhow::ensure!(
        [before, during, after].iter().all(|s| s.is_finite() && *s > 0.0),
        "overload-blip's phases must be positive seconds: {:?}",
        p.blip_phases_secs
    );
    anyhow::ensure!(
        p.blip_load_share.is_finite() && p.blip_load_share > 0.0,
        "overload-blip's load share must be positive: {}",
        p.blip_load_share
    );
    let what = format!("overload-blip ({mode}, {})", ctx.policy);
    let mut prepared = ctx.prepare(Scenario::OverloadBlip.name(), mode, &[target.as_str()], p.seed).await?;
    let mut sampler = Sampler::new();
    let saturation = super::curves::saturation(&prepared, p, Duration::from_secs_f64(p.curve_step_secs), &what).await?;
    // The load starts from a settled system: what the saturation run left queued
    // (async's outboxes and consumers) is not charged to it, but its time is: the
    // rate the load is a share of is what the variant sustains, not what it replies to.
    let drain_ms = scenarios::drain(&prepared, Duration::from_secs(60)).await?.as_millis() as u64;
    let sustained = sustained_rate(saturation.ok_per_s, saturation.duration_ms, drain_ms);
    let offered = p.blip_load_share * sustained;
    eprintln!(
        "  {what}: saturation {:.0} ok/s, {sustained:.0}/s sustained (drained in {drain_ms} ms); {offered:.0}/s for {before} s, `{}` for {during} s, then {after} s",
        saturation.ok_per_s, p.blip_fault
    );
    let mut workload = prepared.workload(p, p.seed.seed);
    let partial = workload.partial_answers();
    let length = Duration::from_secs_f64(before + during + after);
    let c0 = counts(&prepared).await?;
    let start = tokio::time::Instant::now();
    let mut load = tokio::spawn(open_loop_for(
        OpenLoop::new(offered, length),
        Length::new(length),
        move |_| workload.next_request(),
        None,
    ));
    let planned = Duration::from_secs_f64(before);
    sample_until(&mut sampler, &prepared, start + planned).await;
    let c1 = counts(&prepared).await?;
    let slowed = step(&mut prepared, &action, &target, start, planned).await;
    let from_ms = slowed.effective_ms.unwrap_or(slowed.t_ms);
    let heal_at = start + Duration::from_millis(from_ms) + Duration::from_secs_f64(during);
    sample_until(&mut sampler, &prepared, heal_at).await;
    let healed = step(&mut prepared, &Action::Heal, &target, start, heal_at.duration_since(start)).await;
    let to_ms = healed.effective_ms.unwrap_or(healed.t_ms);
    let c2 = counts(&prepared).await?;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let report = loop {
        tokio::select! {
            report = &mut load => break report?,
            _ = tick.tick() => sampler.sample_load(&prepared.topology.file()),
        }
    };
    let c3 = counts(&prepared).await?;
    sampler.sample(&prepared.topology.file());
    let end_ms = report.duration_ms;
    let phase = |name: &str, (from, to): (u64, u64), (a, b): (Counts, Counts)| {
        let (client_requests, ok) = sent_between(&report, from, to);
        Phase {
            name: name.into(),
            from_ms: from,
            to_ms: to,
            client_requests,
            ok,
            rpcs_sent: b.rpcs.saturating_sub(a.rpcs),
            retries_sent: b.retries.saturating_sub(a.retries),
            breaker_rejections: b.rejections.saturating_sub(a.rejections),
            requests_shed: b.shed.saturating_sub(a.shed),
        }
    };
    let phases = vec![
        phase("before", (0, from_ms), (c0, c1)),
        phase("during", (from_ms, to_ms), (c1, c2)),
        phase("after", (to_ms, end_ms.max(to_ms)), (c2, c3)),
    ];
    let blip = Blip {
        saturation_ok_per_s: saturation.ok_per_s,
        saturation_clients: p.saturation_clients,
        saturation_ms: saturation.duration_ms,
        drain_ms,
        sustained_ok_per_s: sustained,
        load_share: p.blip_load_share,
        offered_per_s: offered,
        fault: action.line(&target),
        from_ms,
        to_ms,
        phases,
        recovery: recovery(&report.timeline, report.timeline_bucket_ms, (from_ms, to_ms), end_ms),
    };
    let added_latency_us = match action {
        Action::Slow { latency, .. } => Some(latency.as_micros() as u64),
        _ => None,
    };
    let mut result = ScenarioResult { blip: Some(blip), added_latency_us, ..Default::default() };
    result.partial_answers.insert(LOAD.into(), partial.load(std::sync::atomic::Ordering::Relaxed));
    result.loads.insert("saturation".into(), saturation);
    result.loads.insert(LOAD.into(), report);
    result.faults = vec![slowed, healed];
    result.note = scenarios::faults_did_not_apply(&result.faults);
    result.set_resources(&sampler);
    prepared.topology.stop()?;
    scenarios::ensure_applied(&result.faults)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline of 100 ms buckets with these successes.
    fn timeline(ok: &[u64]) -> Vec<Bucket> {
        ok.iter()
            .enumerate()
            .map(|(i, &ok)| Bucket { t_ms: 100 * i as u64, ok, errors: Default::default(), p99_us: 0, p99_all_us: 0 })
            .collect()
    }

    #[test]
    fn goodput_that_comes_back_and_stays_recovers_when_it_came_back() {
        // 10 a bucket before the blip (0–300 ms), none during it (300–500 ms), then
        // back at 9 (90 %: enough) from the bucket at 700 ms on.
        let buckets = timeline(&[10, 10, 10, 0, 0, 2, 5, 9, 10, 9, 10, 10, 10]);
        assert_eq!(recovery(&buckets, 100, (300, 500), 1300), Recovery::Recovered { after_ms: 200 });
        // One noisy bucket after coming back does not undo the recovery: the windows
        // over it still average 90 % (one hardened run read "did not recover" while
        // serving 99.5 %, by a rule of every bucket).
        let noisy = timeline(&[10, 10, 10, 0, 0, 10, 10, 6, 10, 10, 10, 10, 10]);
        assert_eq!(recovery(&noisy, 100, (300, 500), 1300), Recovery::Recovered { after_ms: 0 });
        // A lasting dip after coming back does: recovery counts from after it.
        let dip = timeline(&[10, 10, 10, 0, 0, 10, 10, 3, 3, 10, 10, 10, 10, 10]);
        assert_eq!(recovery(&dip, 100, (300, 500), 1400), Recovery::Recovered { after_ms: 400 });
        // Never down: back at once (the bucket the heal fell in counts).
        let flat = timeline(&[10; 11]);
        assert_eq!(recovery(&flat, 100, (300, 550), 1100), Recovery::Recovered { after_ms: 0 });
    }

    #[test]
    fn goodput_that_stays_down_did_not_recover() {
        // Retries keep the system busy after the cause is gone: 5 a bucket to the end.
        let storm = timeline(&[10, 10, 10, 0, 0, 5, 5, 5, 5, 5, 5]);
        let r = recovery(&storm, 100, (300, 500), 1100);
        assert_eq!(r, Recovery::NotRecovered { within_ms: 600 });
        assert!(r.describe().starts_with("did not recover within the run"), "{}", r.describe());
        // Back only in the last buckets, too few for a whole window: not recovered.
        let late = timeline(&[10, 10, 10, 0, 0, 5, 5, 5, 10, 10, 10]);
        assert_eq!(recovery(&late, 100, (300, 500), 1100), Recovery::NotRecovered { within_ms: 600 });
        // Back for a while, then down for good: a search for the first good window
        // would call this recovered; the rule asks for every later window.
        let relapse = timeline(&[10, 10, 10, 0, 0, 10, 10, 10, 10, 10, 3, 3, 3, 3, 3]);
        assert_eq!(recovery(&relapse, 100, (300, 500), 1500), Recovery::NotRecovered { within_ms: 1000 });
        // The last bucket cut short by the end of the run does not count.
        let cut = timeline(&[10, 10, 10, 0, 0, 5, 10, 10, 10, 10, 10]);
        assert_eq!(recovery(&cut, 100, (300, 500), 1050), Recovery::NotRecovered { within_ms: 550 });
        // Nothing before the blip: nothing to come back to.
        assert_eq!(recovery(&timeline(&[0, 0, 0, 5, 5]), 100, (300, 400), 500), Recovery::NoBaseline);
    }

    #[test]
    fn the_sustained_rate_counts_the_drain_in_the_time() {
        assert_eq!(sustained_rate(6000.0, 1000, 0), 6000.0);
        assert_eq!(sustained_rate(6000.0, 1000, 500), 4000.0);
    }

    #[test]
    fn the_blip_is_a_fault_of_the_proxy() {
        assert!(matches!(fault("slow products 50 0"), Ok((Action::Slow { .. }, t)) if t == "products"));
        assert!(fault("reset products").is_ok());
        let kill = fault("kill products").unwrap_err().to_string();
        assert!(kill.contains("one of the proxy's"), "{kill}");
        assert!(fault("slow").is_err());
        assert!(fault("slow products fifty").unwrap_err().to_string().contains("not a fault"));
    }
}
