//! What each process costs to run, read from the OS every [`SAMPLE_EVERY`] during the load,
//! right before every fault step is issued (after SIGKILL nothing can be read, so a
//! killed process's CPU is counted up to that last read, well under a millisecond
//! before the signal; the rusage of a reaped child would close even that gap, but
//! std's `Child` does not give it) and once at
//! the end:
//!
//! - CPU seconds (user + system, from `/proc/<pid>/stat`). A process that was running
//!   when sampling began counts from its first sample (seeding is not the scenario's);
//!   one started during the scenario (a restart) counts from its start, so its start-up
//!   and catch-up are in. A component restarted during a scenario is several pids;
//!   their costs add up.
//! - Peak RSS during the load: the highest `VmRSS` of the samples taken while load ran
//!   (a spike between two samples can be missed); beside it the lifetime peak
//!   (`VmHWM`), which includes seeding.
//! - The lab process's own CPU (load generator, staleness probe and checker) over the
//!   same samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topology::TopologyFile;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// CPU seconds in the scenario: from the first sample, or from the start of a
    /// process started during it, to its last sample.
    pub cpu_s: f64,
    /// Lifetime peak RSS (`VmHWM`), seeding included.
    pub peak_rss_kib: u64,
    /// The highest `VmRSS` sampled while the scenario's load ran (`None` in results
    /// from before it was recorded, or where no sample fell in a load).
    #[serde(default)]
    pub load_peak_rss_kib: Option<u64>,
}

/// One process as sampled.
#[derive(Debug, Clone)]
struct Process {
    component: String,
    /// CPU seconds the scenario's count starts from: 0 for a process started during
    /// the scenario, its first sample's otherwise.
    from_cpu_s: f64,
    last_cpu_s: f64,
    hwm_kib: u64,
    load_rss_kib: Option<u64>,
}

/// Samples taken during a scenario.
#[derive(Debug)]
pub struct Sampler {
    /// When sampling began, in clock ticks since boot (the unit of a process's start
    /// time in `/proc/<pid>/stat`); `u64::MAX` if unknown (then every process counts
    /// from its first sample).
    began_ticks: u64,
    pids: BTreeMap<u32, Process>,
    /// The lab process's CPU seconds at the first and last samples.
    generator: Option<(f64, f64)>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// How often processes are read while load runs.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ: 100 on Linux for
/// every architecture the lab runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of a live process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    cpu_s: f64,
    /// Start time, in clock ticks since boot.
    start_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Reads a live process's `/proc` entry.
fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse(&stat, &status)
}

/// A [`Reading`] from the text of `/proc/<pid>/stat` and `/proc/<pid>/status`.
fn parse(stat: &str, status: &str) -> Option<Reading> {
    // Fields after the command (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime and starttime are fields 14, 15 and 22 of the whole line: 12, 13
    // and 20 here (1-based), as the first two fields precede the ')'.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)? + field(15)?;
    let kib = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some(Reading {
        cpu_s: ticks as f64 / TICKS_PER_SECOND,
        start_ticks: field(22)?,
        rss_kib: kib("VmRSS:").unwrap_or(0),
        hwm_kib: kib("VmHWM:").unwrap_or(0),
    })
}

/// Seconds since boot, in clock ticks.
fn uptime_ticks() -> Option<u64> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    Some((seconds * TICKS_PER_SECOND) as u64)
}

/// Every process of `topology` once: a service another component serves (monolith
/// mode) is that component's process, not one of its own.
fn components(topology: &TopologyFile) -> impl Iterator<Item = (u32, &str)> {
    topology.services.iter().filter(|s| s.served_by.is_none()).map(|s| (s.pid, s.name.as_str()))
}

impl Sampler {
    /// A sampler whose scenario begins now: processes started from now on count
    /// from their start.
    pub fn new() -> Self {
        Self { began_ticks: uptime_ticks().unwrap_or(u64::MAX), pids: BTreeMap::new(), generator: None }
    }

    /// Reads every live process of `topology` and the lab process now, outside the load.
    pub fn sample(&mut self, topology: &TopologyFile) {
        self.sample_pids(components(topology), false);
    }

    /// Like [`Sampler::sample`], while the load runs: its RSS counts for the load's peak.
    pub fn sample_load(&mut self, topology: &TopologyFile) {
        self.sample_pids(components(topology), true);
    }

    fn sample_pids<'a>(&mut self, pids: impl Iterator<Item = (u32, &'a str)>, in_load: bool) {
        for (pid, component) in pids {
            if pid == 0 {
                continue;
            }
            let Some(now) = read(pid) else { continue };
            let began = self.began_ticks;
            let process = self.pids.entry(pid).or_insert_with(|| Process {
                component: component.to_owned(),
                // Started after sampling began: all its CPU is the scenario's. (Start
                // times are in whole ticks: one started in the same tick counts from
                // its first sample.)
                from_cpu_s: if now.start_ticks > began { 0.0 } else { now.cpu_s },
                last_cpu_s: now.cpu_s,
                hwm_kib: 0,
                load_rss_kib: None,
            });
            process.last_cpu_s = now.cpu_s;
            process.hwm_kib = process.hwm_kib.max(now.hwm_kib);
            if in_load {
                process.load_rss_kib = Some(process.load_rss_kib.unwrap_or(0).max(now.rss_kib));
            }
        }
        if let Some(own) = read(std::process::id()) {
            let first = self.generator.map_or(own.cpu_s, |(first, _)| first);
            self.generator = Some((first, own.cpu_s));
        }
    }

    /// CPU, load-time peak RSS and lifetime peak RSS, per component.
    pub fn usage(&self) -> BTreeMap<String, Usage> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for p in self.pids.values() {
            let u = usage.entry(p.component.clone()).or_default();
            u.cpu_s += p.last_cpu_s - p.from_cpu_s;
            u.peak_rss_kib = u.peak_rss_kib.max(p.hwm_kib);
            if let Some(rss) = p.load_rss_kib {
                u.load_peak_rss_kib = Some(u.load_peak_rss_kib.unwrap_or(0).max(rss));
            }
        }
        usage
    }

    /// CPU seconds of every process sampled so far, summed over components: the
    /// difference of two calls, each after a sample, is what they used in between.
    pub fn cpu_s(&self) -> f64 {
        self.pids.values().map(|p| p.last_cpu_s - p.from_cpu_s).sum()
    }

    /// CPU seconds of the lab process (load generator, probe, checker) between the
    /// first and last samples.
    pub fn generator_cpu_s(&self) -> Option<f64> {
        self.generator.map(|(first, last)| last - first)
    }
}

/// Logical bytes (keys + values) per tree of the sled database in `dir`, by tree name;
/// `None` where `dir` holds no sled database (nothing was ever stored there). Opens the
/// database, so the process that owns it must have stopped: call this only after the
/// topology stopped, and after [`disk_bytes`] (opening may write to the directory).
pub fn logical_bytes(dir: &std::path::Path) -> anyhow::Result<Option<BTreeMap<String, u64>>> {
    // sled writes `conf` when it creates a database; opening a directory without one
    // would create a database and measure it.
    if !dir.join("conf").exists() {
        return Ok(None);
    }
    let db = sled::Config::new().path(dir).open()?;
    let mut trees = BTreeMap::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut bytes = 0u64;
        for entry in tree.iter() {
            let (key, value) = entry?;
            bytes += (key.len() + value.len()) as u64;
        }
        trees.insert(String::from_utf8_lossy(&name).into_owned(), bytes);
    }
    Ok(Some(trees))
}

/// Bytes under `dir`, recursively.
pub fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let own = read(std::process::id()).expect("own /proc entry");
        assert!(own.cpu_s >= 0.0);
        assert!(own.rss_kib > 0 && own.hwm_kib >= own.rss_kib, "{own:?}");
        let now = uptime_ticks().expect("/proc/uptime");
        assert!(own.start_ticks <= now, "{own:?} started after {now}");
    }

    #[test]
    fn parses_a_command_with_spaces_and_parentheses() {
        // Fields 14, 15 (utime, stime) and 22 (starttime) of a made-up stat line.
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 200";
        let status = "Name:\ta\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let reading = parse(stat, status).expect("parses");
        assert_eq!(reading, Reading { cpu_s: 3.0, start_ticks: 12345, rss_kib: 1024, hwm_kib: 2048 });
    }

    /// A child that burns CPU, then sleeps; returns it once it used `ticks` of CPU.
    fn busy_child(ticks: u64) -> std::process::Child {
        let script = "i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); done; sleep 30";
        let mut child = std::process::Command::new("sh").args(["-c", script]).spawn().expect("sh runs");
        while read(child.id()).map_or(0.0, |r| r.cpu_s) < ticks as f64 / TICKS_PER_SECOND {
            assert!(child.try_wait().expect("child status").is_none(), "the child ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    #[test]
    fn a_process_started_during_the_scenario_counts_from_its_start() {
        let mut sampler = Sampler::new();
        // Start times are in whole ticks: let the clock move past the sampler's start.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut restarted = busy_child(5);
        sampler.sample_pids([(restarted.id(), "restarted")].into_iter(), true);
        let used = read(restarted.id()).expect("child alive").cpu_s;
        let usage = sampler.usage();
        restarted.kill().expect("kill");
        restarted.wait().expect("reaped");
        // Its first sample already saw the CPU it used since its start, and counted it.
        assert!(usage["restarted"].cpu_s >= 0.05, "{usage:?}");
        assert!(usage["restarted"].cpu_s <= used, "{usage:?}, used {used}");
        assert!(usage["restarted"].load_peak_rss_kib.is_some_and(|kib| kib > 0), "{usage:?}");
        assert!(sampler.generator_cpu_s().is_some());
    }

    #[test]
    fn a_process_running_before_the_scenario_counts_from_its_first_sample() {
        let mut running = busy_child(5);
        let mut sampler = Sampler::new();
        sampler.sample_pids([(running.id(), "running")].into_iter(), false);
        let usage = sampler.usage();
        running.kill().expect("kill");
        running.wait().expect("reaped");
        // Its CPU before the sampler existed is not the scenario's.
        assert_eq!(usage["running"].cpu_s, 0.0, "{usage:?}");
        assert_eq!(usage["running"].load_peak_rss_kib, None, "sampled outside the load");
    }
}
