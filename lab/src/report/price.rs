//! The price of distribution: each headline figure of the monolith (one process, one
//! database, in-process calls) beside every other mode's, and the other mode's ÷ the
//! monolith's. A ratio is given only where both figures were measured.

use common::config::Mode;

use super::Block;
use crate::suite::{Results, Scenario, ScenarioResult};

/// One headline figure, per mode of the run.
#[derive(Debug, Clone)]
pub struct Figure {
    pub label: String,
    /// Per mode of the run, in its order: the figure, or what is missing.
    pub values: Vec<(Mode, Result<f64, String>)>,
    /// How a value is written (its unit is in the label).
    format: fn(f64) -> String,
}

impl Figure {
    fn value(&self, mode: Mode) -> Result<f64, String> {
        self.values
            .iter()
            .find(|(m, _)| *m == mode)
            .map_or_else(|| Err(format!("{mode} was not in this run")), |(_, v)| v.clone())
    }

    /// `mode`'s figure ÷ the monolith's, or what is missing for it.
    pub fn ratio(&self, mode: Mode) -> Result<f64, String> {
        let monolith = self.value(Mode::Monolith).map_err(|why| format!("monolith: {why}"))?;
        let value = self.value(mode)?;
        if monolith <= 0.0 {
            return Err("the monolith's figure is 0".into());
        }
        Ok(value / monolith)
    }

    /// A value as written in a cell: the figure, or "not measured: why".
    fn cell(&self, mode: Mode) -> String {
        self.value(mode).map_or_else(|why| format!("not measured: {why}"), |v| (self.format)(v))
    }

    fn ratio_cell(&self, mode: Mode) -> String {
        self.ratio(mode).map_or_else(|why| format!("no ratio: {why}"), |x| format!("{x:.2}×"))
    }
}

/// What each figure is, for the section's text.
pub fn method(r: &Results) -> String {
    let policies = match r.has_policy_axis() {
        true => " Sync's and bus-rpc's figures here are their naive runs'; what a policy costs on top is in the Policies section.",
        false => "",
    };
    format!(
        "Each headline figure of the monolith (one process serving all four APIs from one sled database, with in-process calls, the same validation and the same flush before every reply), and each other mode's as a multiple of it. Sequential p50s: the steady scenario's first round, one request at a time. Saturation: its closed-loop run ({} clients, as many requests as they get served). CPU per request: the CPU seconds (user + system, from /proc) of every service and broker process, read right before and right after the saturation run (after it, once async's relay, broker and consumers had caught up with it: their work on its writes is counted), ÷ the requests that run served; the lab's own process (the load generator) is not counted. Bytes: the storage scenario (the same seeded data in every mode, then stopped and measured), as file sizes (the broker's store included) and as logical bytes (keys + values in the services' sled trees). A ratio is given only where both figures were measured; otherwise the cell says what is missing.{policies}",
        r.profile.saturation_clients
    )
}

/// The headline figures of a run that had the monolith; `None` without it.
pub fn of_distribution(r: &Results) -> Option<Vec<Figure>> {
    if !r.modes.contains(&Mode::Monolith) {
        return None;
    }
    let figure = |label: &str,
                  scenario: Scenario,
                  format: fn(f64) -> String,
                  value: &dyn Fn(&ScenarioResult) -> Result<f64, String>| Figure {
        label: label.to_string(),
        values: r
            .modes
            .iter()
            .map(|&m| {
                let v = r
                    .scenario(scenario, m)
                    .ok_or_else(|| format!("{scenario} was not run in {m} mode"))
                    .and_then(value);
                (m, v)
            })
            .collect(),
        format,
    };
    let ms = |v: f64| format!("{v:.2}");
    let whole = |v: f64| format!("{v:.0}");
    let sequential = |op: &'static str| {
        move |s: &ScenarioResult| {
            let l = s.sequential.as_ref().ok_or("no sequential run recorded")?;
            let summary = if op == "UserOrders" { &l.user_orders } else { &l.place_order };
            Ok(summary.p50_us as f64 / 1000.0)
        }
    };
    Some(vec![
        figure("sequential UserOrders p50 (ms)", Scenario::Steady, ms, &sequential("UserOrders")),
        figure("sequential PlaceOrder p50 (ms)", Scenario::Steady, ms, &sequential("PlaceOrder")),
        figure("saturation throughput (requests served/s, closed loop)", Scenario::Steady, whole, &|s| {
            Ok(saturation(s)?.ok_per_s)
        }),
        figure(
            "CPU per request in the saturation run (µs: CPU of every service and broker process over that run and async's catching up with it ÷ the requests it served)",
            Scenario::Steady,
            whole,
            &cpu_per_request_us,
        ),
        figure("bytes on disk (MB: file sizes, broker store included)", Scenario::Storage, ms, &|s| {
            let bytes = s.storage.as_ref().ok_or("no file sizes recorded")?;
            Ok(bytes.values().sum::<u64>() as f64 / 1e6)
        }),
        figure("logical bytes (MB: keys + values in the services' sled trees)", Scenario::Storage, ms, &|s| {
            let per = s.logical_totals().ok_or("no logical bytes recorded")?;
            Ok(per.values().sum::<u64>() as f64 / 1e6)
        }),
    ])
}

/// CPU time of every service and broker process over the saturation run (steady) ÷
/// the requests it served, in µs; or what is missing for it.
pub fn cpu_per_request_us(s: &ScenarioResult) -> Result<f64, String> {
    let served = saturation(s)?.all.ok;
    let cpu = s.saturation_cpu_s.ok_or("the CPU of the saturation run alone is not in these results")?;
    if served == 0 {
        return Err("the saturation run served no request".into());
    }
    Ok(cpu * 1e6 / served as f64)
}

/// The saturation run of a steady scenario.
fn saturation(s: &ScenarioResult) -> Result<&bench::load::LoadReport, String> {
    s.loads.get("saturation").ok_or_else(|| "no saturation run recorded".to_string())
}

/// The modes beside the monolith, in the run's order.
fn others(figures: &[Figure]) -> Vec<Mode> {
    figures
        .first()
        .map_or_else(Vec::new, |f| f.values.iter().map(|(m, _)| *m).filter(|m| *m != Mode::Monolith).collect())
}

/// The compact table for the top of the report: the monolith's figure and each other
/// mode's ÷ it.
pub(super) fn compact(figures: &[Figure]) -> Option<Block> {
    if figures.is_empty() {
        return None;
    }
    let others = others(figures);
    let mut head = vec!["figure".to_string(), "monolith".to_string()];
    head.extend(others.iter().map(|m| format!("{m} ÷ monolith")));
    let rows = figures
        .iter()
        .map(|f| {
            let mut row = vec![f.label.clone(), f.cell(Mode::Monolith)];
            row.extend(others.iter().map(|&m| f.ratio_cell(m)));
            row
        })
        .collect();
    Some(Block::Table(head, rows))
}

/// The section: every mode's figure, its ratio to the monolith's, and how much of the
/// sequential UserOrders latency of each other mode the monolith saves.
pub(super) fn full(figures: &[Figure]) -> Vec<Block> {
    let others = others(figures);
    let mut head = vec!["figure".to_string(), "monolith".to_string()];
    for m in &others {
        head.push(m.to_string());
        head.push(format!("{m} ÷ monolith"));
    }
    let rows = figures
        .iter()
        .map(|f| {
            let mut row = vec![f.label.clone(), f.cell(Mode::Monolith)];
            for &m in &others {
                row.push(f.cell(m));
                row.push(f.ratio_cell(m));
            }
            row
        })
        .collect();
    let mut blocks = vec![Block::Table(head, rows)];
    if let Some(latency) = figures.first() {
        let saved: Vec<String> = others
            .iter()
            .filter_map(|&m| {
                let (value, mono) = (latency.value(m).ok()?, latency.value(Mode::Monolith).ok()?);
                (value > 0.0).then(|| {
                    format!("{m} {value:.2} ms, of which the monolith saves {:.0}%", 100.0 * (1.0 - mono / value))
                })
            })
            .collect();
        if let (false, Ok(mono)) = (saved.is_empty(), latency.value(Mode::Monolith)) {
            blocks.push(Block::Para(format!(
                "Sequential UserOrders p50 against the monolith's {mono:.2} ms: {}.",
                saved.join("; ")
            )));
        }
    }
    blocks
}
