//! What each process costs to run, read from the OS: CPU seconds (user + system,
//! from `/proc/<pid>/stat`) and peak resident memory (`VmHWM` in `/proc/<pid>/status`).
//! A component restarted during a scenario is several pids; their costs add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topology::TopologyFile;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub cpu_s: f64,
    pub peak_rss_kib: u64,
}

/// Samples taken during a scenario.
#[derive(Default)]
pub struct Sampler {
    /// pid → (component, first CPU seconds seen, last CPU seconds seen, peak RSS).
    pids: BTreeMap<u32, (String, f64, f64, u64)>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ: 100 on Linux for
/// every architecture the lab runs on).
fn ticks_per_second() -> f64 {
    100.0
}

/// (CPU seconds, peak RSS KiB) of a live process.
fn read(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some((ticks / ticks_per_second(), hwm))
}

impl Sampler {
    /// Reads every live process of `topology` now.
    pub fn sample(&mut self, topology: &TopologyFile) {
        for service in &topology.services {
            if service.pid == 0 {
                continue;
            }
            if let Some((cpu, rss)) = read(service.pid) {
                let entry = self.pids.entry(service.pid).or_insert((service.name.clone(), cpu, cpu, 0));
                entry.2 = cpu;
                entry.3 = entry.3.max(rss);
            }
        }
    }

    /// CPU used between the first and last samples, and peak RSS, per component.
    pub fn usage(&self) -> BTreeMap<String, Usage> {
        let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
        for (name, first, last, rss) in self.pids.values() {
            let u = usage.entry(name.clone()).or_default();
            u.cpu_s += last - first;
            u.peak_rss_kib = u.peak_rss_kib.max(*rss);
        }
        usage
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
        let (cpu, rss) = read(std::process::id()).expect("own /proc entry");
        assert!(cpu >= 0.0);
        assert!(rss > 0);
    }
}
