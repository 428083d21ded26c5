//! The `lab` command: start a topology, seed it, measure it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use common::config::{Mode, Policy};
use lab::{
    client::Clients,
    control::Action,
    latency,
    seed::{self, SeedConfig, Seeded},
    topology::{Deployment, TopologyFile},
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
    /// SIGKILL a component of a running `lab up` (users, products, orders, query, nats;
    /// on a cluster nats-1, nats-2, nats-3, or nats for all three; with query replicas
    /// query-1 … query-N, or query for all of them).
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
    /// results JSON under --runs (quick: about 10 minutes on 2 cores; `--policies naive` about half). Exits with status
    /// 1 when the soak's checker finds anything lost, duplicated, phantom, wrong or
    /// dead-lettered.
    Bench {
        /// Longer runs, more rates, more data.
        #[arg(long)]
        full: bool,
        /// Run only this scenario (repeatable). By default every scenario the target
        /// can run: partition needs the compose target; soak, overload-blip,
        /// kill-broker-node and lose-broker-quorum are long, in --full or when named.
        #[arg(long = "scenario", value_enum)]
        scenarios: Vec<lab::suite::Scenario>,
        /// Service faults per mode in the soak.
        #[arg(long, default_value_t = lab::suite::soak::DEFAULT_FAULTS)]
        kills: usize,
        /// overload-blip's open-loop load as a share of each variant's sustained rate
        /// (default: the profile's, 0.5), e.g. 0.7 for less headroom.
        #[arg(long, value_parser = blip_share)]
        blip_load_share: Option<f64>,
        /// The modes to compare (any subset, comma-separated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "sync,async,bus-rpc,monolith")]
        modes: Vec<Mode>,
        /// The policies sync and bus-rpc run under, each a column of its own (any subset
        /// of naive, hardened, retry-storm, comma-separated; `naive` alone for a shorter
        /// run); async and the monolith make no inter-service calls and run once.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "naive,hardened,retry-storm")]
        policies: Vec<Policy>,
        /// Parent folder of the run's topologies and results.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// The broker of async and bus-rpc modes: 1 nats-server, or 3 in a JetStream
        /// cluster with the event stream replicated 3 times (on every target; ignored in
        /// sync and monolith modes, which run no broker).
        #[arg(long, default_value_t = 1, value_parser = parse_brokers)]
        brokers: usize,
        /// Instances of each service (1 to 5; process target only): `N` for all, or
        /// `query=N`, `owners=N` (comma-separated). Query replicas `query-1` … each keep
        /// their own data dir and (async) durable consumer, the clients balancing over
        /// them; the owners (users, products, orders) run as shards `users-1` …, each the
        /// single writer of the entities whose ids name it, every caller routing by id.
        /// kill-replica runs 2 of each whatever this says; the monolith has no process of
        /// a service's own to replicate.
        #[arg(long, default_value = "1", value_parser = parse_replicas)]
        replicas: Replicas,
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
}

/// The component a fault command acts on.
#[derive(clap::Args)]
struct ComponentArg {
    /// users, products, orders, query, or nats (on a cluster: nats-1, nats-2, nats-3,
    /// or nats for all three; with query replicas: query-1 … query-N, or query for all).
    component: String,
    #[arg(long, default_value = DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

#[derive(clap::Args)]
struct StartArgs {
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    mode: Mode,
    /// How the services' inter-service calls meet failure (sync and bus-rpc):
    /// `naive` (deadlines only), `hardened` (budgeted retries with backoff, circuit
    /// breakers, load shedding, partial answers), `retry-storm` (3 immediate retries).
    #[arg(long, value_enum, default_value_t = Policy::Naive)]
    policy: Policy,
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
    /// The broker of async and bus-rpc modes: 1 nats-server (`nats`), or 3 in a
    /// JetStream cluster (`nats-1`, `nats-2`, `nats-3`) with the event stream replicated
    /// 3 times (on every target; ignored in sync and monolith modes).
    #[arg(long, default_value_t = 1, value_parser = parse_brokers)]
    brokers: usize,
    /// Instances of each service (1 to 5; process target only): `N` for all, or
    /// `query=N`, `owners=N` (comma-separated). Query replicas `query-1` … each keep
    /// their own data dir and (async) durable consumer; the owners (users, products,
    /// orders) run as shards `users-1` …, each the single writer of the entities whose
    /// ids name it, every caller routing by id. A service's name then names all its
    /// instances; the monolith has no process of a service's own to replicate.
    #[arg(long, default_value = "1", value_parser = parse_replicas)]
    replicas: Replicas,
    #[command(flatten)]
    deploy: DeployArgs,
}

/// `--brokers`: 1 or 3, nothing else.
fn parse_brokers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ (1 | 3)) => Ok(n),
        _ => Err(format!(
            "{text:?}: the broker runs as 1 nats-server or as a JetStream cluster of 3 (give --brokers 1 or --brokers 3)"
        )),
    }
}

/// `--replicas`: how many instances of each service run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replicas {
    /// Of the query service (its replicas).
    query: usize,
    /// Of each owner (its shards: users, products and orders alike).
    owners: usize,
}

impl Replicas {
    fn most(self) -> usize {
        self.query.max(self.owners)
    }
}

/// `--replicas`: `N` (every service), or comma-separated `query=N`, `owners=N`, N from 1
/// to 5. The owners shard alike: orders are partitioned by their user (orders shard K
/// holds the orders of users shard K's users), so users and orders must; products keep
/// the count too, to keep one knob.
fn parse_replicas(text: &str) -> Result<Replicas, String> {
    use common::names::{ORDERS, PRODUCTS, QUERY, QUERY_REPLICAS, USERS};
    let count = |n: &str| match n.trim().parse::<usize>() {
        Ok(n) if (1..=QUERY_REPLICAS.len()).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: a service runs as 1 to {} instances (give --replicas N, or query=N and/or owners=N)",
            QUERY_REPLICAS.len()
        )),
    };
    let text = text.trim();
    if !text.contains('=') {
        let n = count(text)?;
        return Ok(Replicas { query: n, owners: n });
    }
    let mut replicas = Replicas { query: 1, owners: 1 };
    for part in text.split(',') {
        let (service, n) = part.split_once('=').ok_or_else(|| format!("{part:?}: give service=N"))?;
        match service.trim() {
            QUERY => replicas.query = count(n)?,
            "owners" => replicas.owners = count(n)?,
            owner @ (USERS | PRODUCTS | ORDERS) => {
                return Err(format!(
                    "{owner} is sharded with the other owners: give owners=N (orders are partitioned by their user, so \
                     users and orders shard alike)"
                ))
            }
            other => {
                return Err(format!(
                    "no service {other:?} to replicate: give --replicas N, or query=N and/or owners=N (users, \
                     products and orders, as shards)"
                ))
            }
        }
    }
    Ok(replicas)
}

/// The instances `lab up` was asked for.
fn self_replicas(options: &lab::up::Options) -> Replicas {
    Replicas { query: options.replicas, owners: options.shards }
}

/// The note for `--replicas` where some of `modes` have no process of a service's own.
fn replicas_note(replicas: Replicas, modes: &[Mode]) -> Option<String> {
    (replicas.most() > 1 && modes.contains(&Mode::Monolith)).then(|| {
        "note: --replicas does not apply to monolith mode (one process serves every service: none of its own to \
         replicate)"
            .to_owned()
    })
}

/// `--replicas` above 1 on a container target: refused, with what to do.
fn replicas_on_target(replicas: Replicas, target: &Deployment) -> anyhow::Result<()> {
    if replicas.most() > 1 && *target != Deployment::Process {
        return Err(lab::topology::TopologyError::ReplicasNeedProcesses(replicas.most()).into());
    }
    Ok(())
}

/// The note for `--brokers` where some of `modes` run no broker, if any.
fn brokers_note(brokers: usize, modes: &[Mode]) -> Option<String> {
    let ignored: Vec<&str> = modes.iter().filter(|m| !m.uses_broker()).map(|m| m.as_str()).collect();
    (brokers > 1 && !ignored.is_empty()).then(|| {
        format!("note: --brokers {brokers} is ignored in {} mode (no broker runs there)", ignored.join(" and "))
    })
}

/// `--blip-load-share`: a share of the sustained rate, above 0 and at most 2.
fn blip_share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|_| format!("{text:?} is not a number; give a share such as 0.5"))?;
    if share.is_finite() && share > 0.0 && share <= 2.0 {
        Ok(share)
    } else {
        Err(format!("{share} is not a share of the sustained rate; give one above 0 and at most 2, such as 0.5"))
    }
}

#[derive(clap::Args, Clone)]
struct DeployArgs {
    /// Local processes, containers under Docker Compose, or a stack on a single-node
    /// Docker Swarm (initialised if the engine's is inactive, and left after); build
    /// the image first with `lab image`.
    #[arg(long, value_enum, default_value_t = TargetKind::Process)]
    target: TargetKind,
    /// The image of the compose and swarm targets.
    #[arg(long, default_value = lab::compose::DEFAULT_IMAGE)]
    image: String,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum TargetKind {
    Process,
    Compose,
    Swarm,
}

impl DeployArgs {
    /// The deployment, with a Compose project (or Swarm stack) name unique to this run.
    fn target(&self, label: &str) -> Deployment {
        let name =
            || format!("{}{label}{}t{}", compose_prefix(), std::process::id(), common::ids::now_unix_ms() % 1_000_000);
        match self.target {
            TargetKind::Process => Deployment::Process,
            TargetKind::Compose => Deployment::Compose { image: self.image.clone(), project: name() },
            TargetKind::Swarm => Deployment::Swarm { image: self.image.clone(), stack: name() },
        }
    }

    /// On the swarm target, the engine's swarm for the run: joined if active, else
    /// initialised now and left when the returned session is dropped (after the run's
    /// stacks are removed). Nothing on the other targets.
    fn swarm_session(&self) -> anyhow::Result<Option<lab::topology::stack::Session>> {
        if self.target != TargetKind::Swarm {
            return Ok(None);
        }
        // No image, no swarm to initialise for nothing.
        lab::compose::preflight(&self.image)?;
        let session = lab::topology::stack::Session::join_or_init()?;
        if session.initialised() {
            eprintln!("initialised a single-node swarm (the engine's was inactive); it is left again at the end");
        }
        Ok(Some(session))
    }
}

/// Compose project and Swarm stack names start with this (`CASCADE_COMPOSE_PREFIX`,
/// default "cascade"), so every container, network and volume of the lab can be found
/// and removed.
fn compose_prefix() -> String {
    std::env::var("CASCADE_COMPOSE_PREFIX").unwrap_or_else(|_| "cascade".into())
}

impl StartArgs {
    fn options(&self) -> lab::up::Options {
        lab::up::Options {
            mode: self.mode,
            policy: self.policy,
            run_dir: self.run_dir.clone(),
            fresh: self.fresh,
            base_port: self.base_port,
            default_deadline_ms: self.default_deadline_ms,
            proxies: self.proxies.clone(),
            deployment: self.deploy.target(self.mode.as_str()),
            brokers: self.brokers,
            replicas: self.replicas.query,
            shards: self.replicas.owners,
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
        Command::Up { start } => {
            let options = start.options();
            replicas_on_target(self_replicas(&options), &options.deployment)?;
            if let Some(note) = brokers_note(options.brokers, &[options.mode]) {
                eprintln!("{note}");
            }
            if let Some(note) = replicas_note(self_replicas(&options), &[options.mode]) {
                eprintln!("{note}");
            }
            // Declared after the checks, dropped last: the swarm is left after the stack
            // is removed.
            let _swarm = start.deploy.swarm_session()?;
            Ok(lab::up::run(options).await?)
        }
        Command::Seed { run_dir, amounts } => {
            let file = TopologyFile::read(&run_dir)?;
            seed::seed_run_dir(&run_dir, &Clients::for_topology(&file)?, amounts.config()).await.map(|_| ())
        }
        Command::Latency { run_dir, requests, seed } => {
            let file = TopologyFile::read(&run_dir)?;
            let seeded = Seeded::read(&run_dir)?;
            eprintln!("measuring {requests} sequential UserOrders, then {requests} sequential PlaceOrder …");
            let latencies = latency::sequential(&Clients::for_topology(&file)?, &seeded, requests, seed).await?;
            print!("{}", latencies.table(&file.mode));
            Ok(())
        }
        Command::Load { run_dir, rate, seconds, deadline_ms, seed } => {
            let file = TopologyFile::read(&run_dir)?;
            let load = lab::live::Load { rate, seconds, deadline: Duration::from_millis(deadline_ms), seed };
            Ok(lab::live::run(&run_dir, &file, Seeded::read(&run_dir)?, load).await?)
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
        Command::Bench {
            full,
            scenarios,
            kills,
            blip_load_share,
            modes,
            policies,
            runs,
            brokers,
            replicas,
            seed,
            deploy,
        } => {
            let mut profile = if full { lab::suite::Profile::full(seed) } else { lab::suite::Profile::quick(seed) };
            profile.soak_faults = kills;
            if let Some(share) = blip_load_share {
                profile.blip_load_share = share;
            }
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let target = deploy.target("bench");
            replicas_on_target(replicas, &target)?;
            if let lab::topology::Target::Compose { image, .. } = &target {
                lab::compose::preflight(image.as_str())?;
            }
            // Dropped after the suite's future (and every stack of it): the swarm is left
            // last, if the lab initialised it.
            let _swarm = deploy.swarm_session()?;
            if let Some(note) = brokers_note(brokers, &modes) {
                eprintln!("{note}");
            }
            if let Some(note) = replicas_note(replicas, &modes) {
                eprintln!("{note}");
            }
            let config = lab::suite::SuiteConfig {
                profile,
                scenarios,
                modes,
                policies,
                runs,
                command,
                target,
                brokers,
                replicas: replicas.query,
                shards: replicas.owners,
            };
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
            let old = lab::suite::Results::read(&results)?;
            if let Some(newer) = compare {
                print!("{}", lab::report::compare(&old, &lab::suite::Results::read(&newer)?));
                return Ok(());
            }
            let dir = out.unwrap_or_else(|| results.parent().unwrap_or(Path::new(".")).to_path_buf());
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let (md, html) = lab::report::write(&old, &dir)
                .with_context(|| format!("cannot write the report in {}", dir.display()))?;
            println!("report: {}\nreport: {}", md.display(), html.display());
            Ok(())
        }
    }
}
