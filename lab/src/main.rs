//! The `lab` command: start a topology, seed it, measure it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::config::Mode;
use lab::{
    client::Clients,
    control::Action,
    latency::{self, Latencies},
    seed::{self, SeedConfig, Seeded, SEED_FILE},
    topology::{Deployment, Topology, TopologyFile},
};

const DEFAULT_RUN_DIR: &str = "runs/latest";

#[derive(Parser)]
#[command(name = "lab", about = "Cascade: synchronous gRPC chains vs asynchronous events, measured")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the four services as separate processes and keep them up until Ctrl-C.
    Up {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Fill a running topology through the public API (deterministic for a given seed).
    Seed {
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        #[command(flatten)]
        amounts: SeedArgs,
    },
    /// Sequential UserOrders and PlaceOrder latency against a running, seeded topology.
    Latency {
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        /// Requests per operation.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Against a running `lab up`: open-loop load at a fixed rate with a live
    /// per-second view (throughput, errors by code, p99), until Ctrl-C.
    Load {
        #[arg(long, default_value = DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        /// Requests per second.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Per-request deadline.
        #[arg(long, default_value_t = 1000)]
        deadline_ms: u64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// SIGKILL a component of a running `lab up` (users, products, orders, query, nats).
    Kill(ComponentArg),
    /// SIGSTOP a component: it freezes with its sockets open.
    Pause(ComponentArg),
    /// SIGCONT a paused component.
    Resume(ComponentArg),
    /// Start a killed component again (same address, same data).
    Restart(ComponentArg),
    /// Add latency (and jitter) on a service's fault proxy (`lab up --proxy NAME`).
    Slow {
        #[command(flatten)]
        component: ComponentArg,
        #[arg(long, default_value_t = 50)]
        latency_ms: u64,
        #[arg(long, default_value_t = 0)]
        jitter_ms: u64,
    },
    /// Make a service's proxy swallow every byte (callers can only time out).
    Blackhole(ComponentArg),
    /// Reset every connection through a service's proxy, and new ones.
    Reset(ComponentArg),
    /// Remove every proxy fault of a service.
    Heal(ComponentArg),
    /// Cut a component off the others' network (compose target).
    Partition(ComponentArg),
    /// Undo `lab partition`.
    Reconnect(ComponentArg),
    /// Build the container image of the compose target from the built binaries.
    Image {
        /// Build FROM scratch with the binaries' libraries copied from this machine,
        /// for an engine that cannot pull (no registry); otherwise FROM
        /// debian:bookworm-slim.
        #[arg(long)]
        offline: bool,
        #[arg(long, default_value = lab::compose::DEFAULT_IMAGE)]
        tag: String,
    },
    /// Exit 0 if the gRPC health service at ADDR says SERVING (the image's health check).
    Health {
        addr: String,
        #[arg(long, default_value_t = 2)]
        timeout_s: u64,
    },
    /// The benchmark suite: every scenario in each mode, the same seed and workload;
    /// results JSON under --runs (quick: about 5 minutes on 2 cores). Exits with status
    /// 1 when the soak's checker finds anything lost, duplicated, phantom, wrong or
    /// dead-lettered.
    Bench {
        /// Longer runs, more rates, more data.
        #[arg(long)]
        full: bool,
        /// Run only this scenario (repeatable): floor, steady, slow-dependency,
        /// kill-dependency, pause-dependency, kill-broker, kill-query, partition
        /// (compose target), chaos, soak (long: in --full or when named), storage,
        /// fan-out.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Service faults per mode in the soak.
        #[arg(long, default_value_t = lab::suite::soak::DEFAULT_FAULTS)]
        kills: usize,
        #[arg(long, value_enum, value_delimiter = ',', default_value = "sync,async")]
        modes: Vec<Mode>,
        /// Parent folder of the run's topologies and results.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        deploy: DeployArgs,
    },
    /// Render a results JSON as report.md and report.html (beside it, or in --out);
    /// with --compare, show what changed between two results files.
    Report {
        /// The results file (`runs/bench-<time>/results.json`).
        results: PathBuf,
        /// A newer results file to compare `results` with.
        #[arg(long)]
        compare: Option<PathBuf>,
        /// Where to write the report (default: beside the results file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The modes side by side: for each round, each mode on a fresh topology (seeded
    /// alike), then sequential UserOrders and PlaceOrder latency and the propagation
    /// delay (write acknowledged → visible in UserOrders). Writes results JSON.
    Compare {
        #[arg(long, value_enum, value_delimiter = ',', default_value = "sync,async")]
        modes: Vec<Mode>,
        /// Rounds; modes alternate inside each, so drifts of a noisy machine hit both.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        /// Parent folder of the comparison's run dirs and results.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        #[command(flatten)]
        amounts: SeedArgs,
        /// Sequential requests per operation per round.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Orders whose propagation delay is measured, per round.
        #[arg(long, default_value_t = 300)]
        writes: usize,
    },
}

/// The component a fault command acts on.
#[derive(clap::Args)]
struct ComponentArg {
    /// users, products, orders, query, or nats.
    component: String,
    #[arg(long, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

#[derive(clap::Args)]
struct StartArgs {
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// Folder for the services' data dirs, logs and topology.json.
    #[arg(long, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Delete the run dir's data first.
    #[arg(long)]
    fresh: bool,
    /// Listen on consecutive ports from here (users, products, orders, query) instead
    /// of ephemeral ones.
    #[arg(long)]
    base_port: Option<u16>,
    /// Deadline the services apply to requests that carry none.
    #[arg(long)]
    default_deadline_ms: Option<u64>,
    /// Put a fault proxy in front of this service (repeatable; `all` for every one),
    /// for `lab slow|blackhole|reset|heal`.
    #[arg(long = "proxy")]
    proxies: Vec<String>,
    #[command(flatten)]
    deploy: DeployArgs,
}

#[derive(clap::Args, Clone)]
struct DeployArgs {
    /// Local processes, or containers under Docker Compose (build the image first with
    /// `lab image`).
    #[arg(long, value_enum, default_value_t = TargetKind::Process)]
    target: TargetKind,
    /// The image of the compose target.
    #[arg(long, default_value = lab::compose::DEFAULT_IMAGE)]
    image: String,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Process,
    Compose,
}

impl DeployArgs {
    /// The deployment, with a Compose project name unique to this run.
    fn target(&self, label: &str) -> Deployment {
        match self.target {
            TargetKind::Process => Deployment::Process,
            TargetKind::Compose => Deployment::Compose {
                image: self.image.clone(),
                project: format!(
                    "{}{label}{}t{}",
                    compose_prefix(),
                    std::process::id(),
                    common::ids::now_unix_ms() % 1_000_000
                ),
            },
        }
    }
}

/// Compose project names start with this (`CASCADE_COMPOSE_PREFIX`, default "cascade"),
/// so every container, network and volume of the lab can be found and removed.
fn compose_prefix() -> String {
    std::env::var("CASCADE_COMPOSE_PREFIX").unwrap_or_else(|_| "cascade".into())
}

impl StartArgs {
    fn options(&self) -> lab::up::Options {
        lab::up::Options {
            mode: self.mode,
            run_dir: self.run_dir.clone(),
            fresh: self.fresh,
            base_port: self.base_port,
            default_deadline_ms: self.default_deadline_ms,
            proxies: self.proxies.clone(),
            deployment: self.deploy.target(self.mode.as_str()),
        }
    }
}

/// Sends one fault command to the `lab up` of the component's run dir.
async fn control(component: &ComponentArg, action: Action) -> anyhow::Result<()> {
    let line = action.line(&component.component);
    lab::control::send(&component.run_dir, &line).await?;
    println!("{line}: done");
    Ok(())
}

#[derive(clap::Args)]
struct SeedArgs {
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value_t = 50)]
    products: usize,
    #[arg(long, default_value_t = 500)]
    orders: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SeedArgs {
    fn config(&self) -> SeedConfig {
        SeedConfig { users: self.users, products: self.products, orders: self.orders, seed: self.seed }
    }
}

#[tokio::main]
async fn main() {
    // The lab's own chatter stays out of its progress output unless RUST_LOG asks.
    common::telemetry::init_with_default("warn");
    common::exit_on_error(dispatch(Cli::parse()).await);
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up { start } => Ok(lab::up::run(start.options()).await?),
        Command::Seed { run_dir, amounts } => {
            let file = TopologyFile::read(&run_dir)?;
            run_seed(&run_dir, &Clients::for_topology(&file)?, amounts.config()).await.map(|_| ())
        }
        Command::Latency { run_dir, requests, seed } => {
            let file = TopologyFile::read(&run_dir)?;
            let seeded = read_seeded(&run_dir)?;
            let latencies = run_latency(&Clients::for_topology(&file)?, &seeded, requests, seed).await?;
            print_latencies(&file.mode, &latencies);
            Ok(())
        }
        Command::Load { run_dir, rate, seconds, deadline_ms, seed } => {
            let file = TopologyFile::read(&run_dir)?;
            let load = lab::live::Load { rate, seconds, deadline: Duration::from_millis(deadline_ms), seed };
            Ok(lab::live::run(&run_dir, &file, read_seeded(&run_dir)?, load).await?)
        }
        Command::Kill(t) => control(&t, Action::Kill).await,
        Command::Pause(t) => control(&t, Action::Pause).await,
        Command::Resume(t) => control(&t, Action::Resume).await,
        Command::Restart(t) => control(&t, Action::Restart).await,
        Command::Slow { component, latency_ms, jitter_ms } => {
            let slow =
                Action::Slow { latency: Duration::from_millis(latency_ms), jitter: Duration::from_millis(jitter_ms) };
            control(&component, slow).await
        }
        Command::Blackhole(t) => control(&t, Action::Blackhole).await,
        Command::Reset(t) => control(&t, Action::Reset).await,
        Command::Heal(t) => control(&t, Action::Heal).await,
        Command::Partition(t) => control(&t, Action::Partition).await,
        Command::Reconnect(t) => control(&t, Action::Reconnect).await,
        Command::Image { offline, tag } => {
            eprintln!(
                "building image {tag} ({}) …",
                if offline { "FROM scratch, offline" } else { "FROM debian:bookworm-slim" }
            );
            let bin_dir = lab::topology::default_bin_dir();
            let size = tokio::task::spawn_blocking(move || {
                lab::compose::build_image(&bin_dir, &tag, offline).map(|s| (s, tag))
            })
            .await??;
            println!("image {}: {:.1} MB", size.1, size.0 as f64 / 1e6);
            Ok(())
        }
        Command::Health { addr, timeout_s } => {
            let addr: common::config::PeerAddr = addr.parse().map_err(anyhow::Error::msg)?;
            lab::client::wait_serving(addr, Duration::from_secs(timeout_s)).await.map_err(anyhow::Error::msg)
        }
        Command::Bench { full, scenarios, kills, modes, runs, seed, deploy } => {
            for s in &scenarios {
                if !lab::suite::SCENARIOS.contains(&s.as_str()) {
                    anyhow::bail!("--scenario {s}: no such scenario; they are {}", lab::suite::SCENARIOS.join(", "));
                }
            }
            let mut profile = if full { lab::suite::Profile::full(seed) } else { lab::suite::Profile::quick(seed) };
            profile.soak_faults = kills;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let target = deploy.target("bench");
            if let lab::topology::Target::Compose { image, .. } = &target {
                lab::compose::preflight(image.as_str())?;
            }
            let config = lab::suite::SuiteConfig { profile, scenarios, modes, runs, command, target };
            let shutdown = common::shutdown::on_signal()?;
            let (results, path) = tokio::select! {
                done = lab::suite::run(config) => done?,
                _ = shutdown.cancelled() => anyhow::bail!("interrupted; the scenarios finished so far are in the run's results.json"),
            };
            print!("{}", lab::suite::summary::text(&results));
            println!("results: {}", path.display());
            let dir = path.parent().unwrap_or(Path::new("."));
            let (_, html) = lab::report::write(&results, dir)
                .with_context(|| format!("cannot write the report in {}", dir.display()))?;
            println!("report: {}", html.display());
            let failures = lab::suite::soak_failures(&results);
            anyhow::ensure!(failures.is_empty(), "the soak's checker found: {}", failures.join("; "));
            Ok(())
        }
        Command::Report { results, compare, out } => {
            let old = read_results(&results)?;
            if let Some(newer) = compare {
                print!("{}", lab::report::compare(&old, &read_results(&newer)?));
                return Ok(());
            }
            let dir = out.unwrap_or_else(|| results.parent().unwrap_or(Path::new(".")).to_path_buf());
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let (md, html) = lab::report::write(&old, &dir)
                .with_context(|| format!("cannot write the report in {}", dir.display()))?;
            println!("report: {}\nreport: {}", md.display(), html.display());
            Ok(())
        }
        Command::Compare { modes, rounds, runs, amounts, requests, writes } => {
            compare(&modes, rounds, &runs, &amounts, requests, writes).await
        }
    }
}

/// Starts a topology (the lab's own main thread spawns the services: see
/// `lab::up::start`).
async fn start(args: &StartArgs) -> anyhow::Result<Topology> {
    Ok(lab::up::start(&args.options()).await?)
}

async fn run_seed(run_dir: &Path, clients: &Clients, config: SeedConfig) -> anyhow::Result<Seeded> {
    eprintln!(
        "seeding {} users, {} products, {} orders (seed {}) …",
        config.users, config.products, config.orders, config.seed
    );
    let seeded = seed::seed(clients, config, |phase, n| eprintln!("  {phase}: {n} created")).await?;
    let path = run_dir.join(SEED_FILE);
    std::fs::write(&path, serde_json::to_string(&seeded)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("seeded; ids in {}", path.display());
    Ok(seeded)
}

fn read_results(path: &Path) -> anyhow::Result<lab::suite::Results> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}: pass the results.json a `lab bench` run printed", path.display()))?;
    let results: lab::suite::Results =
        serde_json::from_str(&text).with_context(|| format!("{} is not a Cascade results file", path.display()))?;
    anyhow::ensure!(
        results.version == lab::suite::RESULTS_VERSION,
        "{} has results version {}; this lab reads version {}",
        path.display(),
        results.version,
        lab::suite::RESULTS_VERSION
    );
    Ok(results)
}

fn read_seeded(run_dir: &Path) -> anyhow::Result<Seeded> {
    let path = run_dir.join(SEED_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {}: run `lab seed --run-dir {}` first", path.display(), run_dir.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a seed file", path.display()))
}

async fn run_latency(clients: &Clients, seeded: &Seeded, requests: usize, seed: u64) -> anyhow::Result<Latencies> {
    eprintln!("measuring {requests} sequential UserOrders, then {requests} sequential PlaceOrder …");
    latency::sequential(clients, seeded, requests, seed).await
}

fn print_latencies(label: &str, l: &Latencies) {
    print_header();
    print_rows(label, l);
}

fn print_header() {
    println!(
        "{:<9} {:<12} {:>9} {:>9} {:>9} {:>9}  outcomes",
        "mode", "operation", "p50 µs", "p90 µs", "p99 µs", "max µs"
    );
}

/// One line per operation; `visible` is the propagation delay when it was measured.
fn print_rows(label: &str, l: &Latencies) {
    let rows = [
        ("UserOrders", Some(&l.user_orders)),
        ("PlaceOrder", Some(&l.place_order)),
        ("visible", l.propagation.as_ref()),
    ];
    for (name, s) in rows.into_iter().filter_map(|(name, s)| Some((name, s?))) {
        println!(
            "{label:<9} {name:<12} {:>9} {:>9} {:>9} {:>9}  {:?}",
            s.p50_us, s.p90_us, s.p99_us, s.max_us, s.outcomes
        );
    }
}

/// One measured round of one mode.
#[derive(serde::Serialize)]
struct Round {
    round: usize,
    mode: String,
    run_dir: PathBuf,
    latencies: Latencies,
}

/// Where and how a comparison ran, so its figures can be judged and repeated.
#[derive(serde::Serialize)]
struct Environment {
    cores: usize,
    build_profile: &'static str,
    commit: String,
    nats_server: Option<String>,
    command: String,
}

async fn compare(
    modes: &[Mode],
    rounds: usize,
    runs: &Path,
    amounts: &SeedArgs,
    requests: usize,
    writes: usize,
) -> anyhow::Result<()> {
    let shutdown = common::shutdown::on_signal()?;
    let dir = runs.join(format!("compare-{}", common::ids::now_unix_ms()));
    let environment = Environment {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        build_profile: if cfg!(debug_assertions) { "debug" } else { "release" },
        commit: lab::suite::git_commit(),
        nats_server: modes.contains(&Mode::Async).then(bench::nats::nats_server).transpose()?.map(|n| n.version),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut results = Vec::new();
    let total = rounds * modes.len();
    for round in 1..=rounds {
        for &mode in modes {
            eprintln!("[{}/{total}] round {round}, {mode} mode", results.len() + 1);
            let run_dir = dir.join(format!("round-{round}-{mode}"));
            let args = StartArgs {
                mode,
                run_dir: run_dir.clone(),
                fresh: true,
                base_port: None,
                default_deadline_ms: None,
                proxies: Vec::new(),
                deploy: DeployArgs { target: TargetKind::Process, image: lab::compose::DEFAULT_IMAGE.into() },
            };
            let mut topology = start(&args).await?;
            let clients = Clients::for_topology(&topology.file())?;
            let work = async {
                let seeded = run_seed(&run_dir, &clients, amounts.config()).await?;
                let mut latencies = run_latency(&clients, &seeded, requests, 7).await?;
                eprintln!("measuring the propagation delay of {writes} orders …");
                latencies.propagation = Some(latency::propagation(&clients, &seeded, writes, 11).await?);
                anyhow::Ok(latencies)
            };
            let outcome = tokio::select! {
                result = work => result,
                _ = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
            };
            topology.stop()?;
            let latencies = outcome?;
            print_latencies(mode.as_str(), &latencies);
            results.push(Round { round, mode: mode.to_string(), run_dir, latencies });
        }
    }
    println!();
    println!("all rounds ({} cores, {} build):", environment.cores, environment.build_profile);
    print_header();
    for r in &results {
        print_rows(&format!("{}#{}", r.mode, r.round), &r.latencies);
    }
    let path = dir.join("results.json");
    let json = serde_json::json!({ "version": 1, "environment": environment, "rounds": results });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("results: {}", path.display());
    Ok(())
}
