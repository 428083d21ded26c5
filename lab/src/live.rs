//! `lab load`: open-loop load at a fixed rate against a running `lab up`, with one line
//! per second (throughput, p50, p99, errors by code) until Ctrl-C or the given time.

use std::{path::Path, sync::Arc, time::Duration};

use bench::load::OpenLoop;

use crate::{
    client::Clients,
    seed::Seeded,
    topology::{TopologyError, TopologyFile},
    workload::{Mix, Workload},
};

/// How long "until Ctrl-C" lasts.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the load is and how long it runs.
#[derive(Debug, Clone)]
pub struct Load {
    /// Requests per second.
    pub rate: f64,
    /// `None`: until Ctrl-C.
    pub seconds: Option<u64>,
    /// Per-request deadline.
    pub deadline: Duration,
    /// Seed of the request mix.
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("the seed in {0} has no users or products: run `lab seed` with --users and --products > 0")]
    EmptySeed(String),
    #[error("cannot watch for SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Runs `load` against the topology of `run_dir` (described by `file`, seeded with
/// `seeded`), printing each second as it ends.
pub async fn run(run_dir: &Path, file: &TopologyFile, seeded: Seeded, load: Load) -> Result<(), LiveError> {
    if seeded.user_ids.is_empty() || seeded.product_ids.is_empty() {
        return Err(LiveError::EmptySeed(run_dir.display().to_string()));
    }
    let mut workload =
        Workload::new(Clients::for_topology(file)?, Arc::new(seeded), Mix::default(), load.deadline, load.seed);
    let shutdown = common::shutdown::on_signal().map_err(LiveError::Signals)?;
    let duration = load.seconds.map_or(FOREVER, Duration::from_secs);
    let (live, mut seconds_rx) = tokio::sync::mpsc::unbounded_channel::<bench::load::Second>();
    println!("open-loop load at {}/s on the {} topology in {}; Ctrl-C stops", load.rate, file.mode, run_dir.display());
    println!("{:>5} {:>8} {:>10} {:>10}  errors", "t (s)", "ok/s", "p50 µs", "p99 µs");
    let printer = tokio::spawn(async move {
        while let Some(second) = seconds_rx.recv().await {
            let s = second.summary;
            let errors: Vec<String> =
                s.outcomes.iter().filter(|(k, _)| k.as_str() != "OK").map(|(k, v)| format!("{k}={v}")).collect();
            println!("{:>5} {:>8} {:>10} {:>10}  {}", second.second, s.ok, s.p50_us, s.p99_us, errors.join(" "));
        }
    });
    let run = bench::load::open_loop(OpenLoop::new(load.rate, duration), move |_| workload.next_request(), Some(live));
    tokio::select! {
        report = run => {
            println!("total: {} scheduled, {:?}", report.scheduled, report.all.outcomes);
        }
        _ = shutdown.cancelled() => println!("stopped"),
    }
    printer.abort();
    Ok(())
}
