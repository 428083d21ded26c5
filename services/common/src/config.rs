//! Command-line options every service binary accepts (each binary adds the addresses
//! of the services it depends on).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::names::DEFAULT_DEADLINE_MS;

#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Address to listen on; port 0 picks a free one (see --addr-file).
    #[arg(long, default_value = "127.0.0.1:0", env = "CASCADE_LISTEN")]
    pub listen: SocketAddr,

    /// This service's own data directory (its sled database). No other service opens it.
    #[arg(long, env = "CASCADE_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Once the listener is bound, write its address to this file (atomically). The
    /// lab waits for it, which is how it learns an ephemeral port without racing.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,

    /// Deadline applied to a request whose client sent no `grpc-timeout`.
    #[arg(long, default_value_t = DEFAULT_DEADLINE_MS, env = "CASCADE_DEFAULT_DEADLINE_MS")]
    pub default_deadline_ms: u64,

    /// How services get each other's data.
    #[arg(long, value_enum, default_value_t = Mode::Sync, env = "CASCADE_MODE")]
    pub mode: Mode,

    /// The NATS server (async and bus-rpc modes); several servers of one cluster
    /// comma-separated (`nats://a:4222,nats://b:4222`): the connection moves to another
    /// when the one it is on goes away.
    #[arg(long, env = "CASCADE_NATS_URL")]
    pub nats_url: Option<String>,

    /// How many servers of a JetStream cluster keep a copy of the event stream, and
    /// with it of its durable consumers (async mode): 1 on a single broker, 3 on a
    /// three-node cluster. A stream found with another count is updated to this one.
    #[arg(
        long,
        default_value_t = 1,
        env = "CASCADE_STREAM_REPLICAS",
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub stream_replicas: u8,

    /// How long the stream remembers an event id to drop a repeated publish (async
    /// mode). Correctness does not depend on it (consumers skip what they applied); tests
    /// shorten it to show replays past the window.
    /// (0 is refused: the server would take it as "its default", 2 min).
    #[arg(
        long,
        default_value_t = crate::broker::DEFAULT_DUPLICATE_WINDOW.as_millis() as u64,
        env = "CASCADE_DUPLICATE_WINDOW_MS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub duplicate_window_ms: u64,

    /// How this service's outbound calls (gRPC or bus-rpc) and its server meet
    /// failure: `naive` (deadlines only), `hardened`, `retry-storm`. See
    /// `common::resilience`.
    #[arg(long, value_enum, default_value_t = Policy::Naive, env = "CASCADE_POLICY")]
    pub policy: Policy,

    /// Requests this service works on at once before it sheds the next with
    /// `RESOURCE_EXHAUSTED` (hardened policy only; per server: the gRPC listener, and
    /// the bus responders of bus-rpc mode).
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_IN_FLIGHT,
        env = "CASCADE_MAX_IN_FLIGHT",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_in_flight: u32,

    /// Which shard of its owner's entities this instance is the single writer of
    /// (users, products and orders; 1 to 5): its ids start with the shard's index, and
    /// it refuses a request for an id of another shard. Orders are partitioned by
    /// their user, so orders shard K holds the orders of users shard K's users. Left
    /// out: the one instance of an unsharded owner (shard 1's ids, an unsuffixed
    /// durable consumer).
    #[arg(long, env = "CASCADE_SHARD")]
    pub shard: Option<crate::ids::Shard>,

    /// How many shards each owner runs as: what a caller routes over in bus-rpc mode,
    /// where an id naming a shard past them is `NOT_FOUND` (nobody holds it), as in sync
    /// mode, whose address lists (`--users-addr a,b`) say the count themselves.
    #[arg(
        long,
        default_value_t = 1,
        env = "CASCADE_OWNER_SHARDS",
        value_parser = clap::value_parser!(u8).range(1..=crate::ids::Shard::MAX as i64)
    )]
    pub owner_shards: u8,
}

/// The hardened policy's default [`ServiceArgs::max_in_flight`]: twice the lab's 64
/// closed-loop clients, so a steady run is never shed, while a queue that would
/// outlive the deadline is.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 128;

impl ServiceArgs {
    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    /// This instance's shard (the first of an unsharded owner).
    pub fn shard(&self) -> crate::ids::Shard {
        self.shard.unwrap_or_default()
    }

    /// The durable consumer of a service named `base` (async mode): `base` itself, or
    /// for a shard `base-K`, so that shards of one owner each get every event.
    pub fn consumer_name(&self, base: &str) -> String {
        match self.shard {
            None => base.to_owned(),
            Some(shard) => format!("{base}-{}", shard.number()),
        }
    }
}

/// How services get each other's data: the lab's one independent variable.
#[derive(
    clap::ValueEnum,
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// gRPC request chains at request time.
    #[default]
    Sync,
    /// Events over NATS JetStream into each consumer's own store.
    Async,
    /// The sync call graph carried over core NATS request/reply (no JetStream).
    #[value(name = "bus-rpc")]
    BusRpc,
    /// One process serving all four APIs from one database, with in-process calls:
    /// the floor that shows what distribution costs.
    Monolith,
}

impl Mode {
    /// Whether its services talk through a NATS broker (JetStream events, or core NATS
    /// request/reply), which the topology then starts first.
    pub fn uses_broker(self) -> bool {
        matches!(self, Mode::Async | Mode::BusRpc)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
            Mode::BusRpc => "bus-rpc",
            Mode::Monolith => "monolith",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a service meets failure in the request/reply modes (sync, bus-rpc): the lab's
/// policy axis. Async and the monolith make no inter-service calls; there it changes
/// nothing but the server's shedding.
#[derive(
    clap::ValueEnum,
    Debug,
    Default,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Deadline propagation only: one attempt per call, no breaker, no shedding.
    #[default]
    Naive,
    /// What a careful team deploys: budgeted retries with backoff for idempotent
    /// calls, a circuit breaker per dependency, load shedding, degraded answers.
    Hardened,
    /// What a hurried team deploys: up to 3 immediate retries per call on any error.
    #[value(name = "retry-storm")]
    RetryStorm,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Naive => "naive",
            Policy::Hardened => "hardened",
            Policy::RetryStorm => "retry-storm",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service binary was started in monolith mode, where the `monolith` binary serves
/// every service in one process.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("monolith mode has no separate {0} process: run the `monolith` binary, which serves all four services")]
pub struct ServedByMonolith(pub &'static str);

impl ServiceArgs {
    /// Refuses monolith mode in a binary of one service (`name`).
    pub fn refuse_monolith(&self, name: &'static str) -> Result<(), ServedByMonolith> {
        match self.mode {
            Mode::Monolith => Err(ServedByMonolith(name)),
            _ => Ok(()),
        }
    }
}

/// A mode that talks through NATS was started without `--nats-url`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("--nats-url is required in {0} mode")]
pub struct MissingNatsUrl(pub Mode);

/// Where a dependency listens: `HOST:PORT`, with HOST an IP address or a DNS name (a
/// Compose service name, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr(String);

impl std::str::FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        port.parse::<u16>().map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
        let host_ok = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
        if !host_ok {
            return Err(format!("{s:?}: {host:?} is not a host name or IP address"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The instances of a dependency, comma-separated (`users-1:50051,users-2:50051`): one,
/// or the shards of a sharded owner in shard order (the first is shard 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(pub Vec<PeerAddr>);

impl std::str::FromStr for PeerList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let peers = s.split(',').map(str::trim).map(str::parse).collect::<Result<Vec<PeerAddr>, _>>()?;
        if peers.len() > crate::ids::Shard::MAX {
            return Err(format!("{s:?}: at most {} shards", crate::ids::Shard::MAX));
        }
        Ok(Self(peers))
    }
}

impl From<std::net::SocketAddr> for PeerList {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self(vec![addr.into()])
    }
}

impl From<std::net::SocketAddr> for PeerAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self(addr.to_string())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Mode, PeerAddr, Policy, ServiceArgs};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServiceArgs,
    }

    #[test]
    fn a_duplicate_window_of_zero_is_refused() {
        let parse = |window: &str| Cli::try_parse_from(["svc", "--data-dir", "d", "--duplicate-window-ms", window]);
        assert_eq!(parse("1500").unwrap().args.duplicate_window_ms, 1500);
        let error = parse("0").err().expect("0 is refused").to_string();
        assert!(error.contains("duplicate-window-ms"), "{error}");
    }

    #[test]
    fn stream_replicas_default_to_one_and_stay_within_what_jetstream_allows() {
        let parse = |extra: &[&str]| Cli::try_parse_from([&["svc", "--data-dir", "d"], extra].concat());
        assert_eq!(parse(&[]).unwrap().args.stream_replicas, 1);
        assert_eq!(parse(&["--stream-replicas", "3"]).unwrap().args.stream_replicas, 3);
        for bad in ["0", "6", "three"] {
            let error = parse(&["--stream-replicas", bad]).err().expect("refused").to_string();
            assert!(error.contains("stream-replicas"), "{bad}: {error}");
        }
    }

    #[test]
    fn bus_rpc_is_spelled_alike_on_the_command_line_and_in_json() {
        let parse = |mode: &str| Cli::try_parse_from(["svc", "--data-dir", "d", "--mode", mode]);
        assert_eq!(parse("bus-rpc").unwrap().args.mode, Mode::BusRpc);
        assert!(parse("bus_rpc").is_err());
        assert_eq!(Mode::BusRpc.as_str(), "bus-rpc");
        assert_eq!(Mode::BusRpc.to_string(), "bus-rpc");
        assert_eq!(serde_json::to_string(&Mode::BusRpc).unwrap(), "\"bus-rpc\"");
        assert_eq!(serde_json::from_str::<Mode>("\"async\"").unwrap(), Mode::Async);
    }

    #[test]
    fn policies_are_spelled_alike_on_the_command_line_and_in_json_and_naive_is_the_default() {
        let parse = |extra: &[&str]| Cli::try_parse_from([&["svc", "--data-dir", "d"], extra].concat());
        assert_eq!(parse(&[]).unwrap().args.policy, Policy::Naive);
        assert_eq!(parse(&["--policy", "retry-storm"]).unwrap().args.policy, Policy::RetryStorm);
        assert_eq!(parse(&["--policy", "hardened"]).unwrap().args.policy, Policy::Hardened);
        assert!(parse(&["--policy", "retry_storm"]).is_err());
        assert!(parse(&["--max-in-flight", "0"]).is_err());
        assert_eq!(serde_json::to_string(&Policy::RetryStorm).unwrap(), "\"retry-storm\"");
        assert_eq!(serde_json::from_str::<Policy>("\"hardened\"").unwrap(), Policy::Hardened);
        assert_eq!(Policy::RetryStorm.to_string(), "retry-storm");
    }

    #[test]
    fn monolith_is_a_mode_without_a_broker() {
        let parse = |mode: &str| Cli::try_parse_from(["svc", "--data-dir", "d", "--mode", mode]);
        assert_eq!(parse("monolith").unwrap().args.mode, Mode::Monolith);
        assert_eq!(serde_json::to_string(&Mode::Monolith).unwrap(), "\"monolith\"");
        assert!(!Mode::Monolith.uses_broker());
        assert!(Mode::Async.uses_broker() && Mode::BusRpc.uses_broker() && !Mode::Sync.uses_broker());
    }

    #[test]
    fn peer_lists_are_shards_in_order_and_a_shard_names_its_consumer() {
        let list: super::PeerList = "users-1:50051,127.0.0.1:7000".parse().unwrap();
        assert_eq!(list.0.iter().map(ToString::to_string).collect::<Vec<_>>(), ["users-1:50051", "127.0.0.1:7000"]);
        assert!("users-1:50051,".parse::<super::PeerList>().is_err());
        assert!("a:1,a:2,a:3,a:4,a:5,a:6".parse::<super::PeerList>().is_err());
        let parse = |extra: &[&str]| Cli::try_parse_from([&["svc", "--data-dir", "d"], extra].concat());
        assert_eq!(parse(&[]).unwrap().args.consumer_name("orders"), "orders");
        let shard = parse(&["--shard", "2"]).unwrap().args;
        assert_eq!((shard.shard().number(), shard.consumer_name("orders").as_str()), (2, "orders-2"));
        let error = parse(&["--shard", "0"]).err().expect("refused").to_string();
        assert!(error.contains("numbered 1 to 5"), "{error}");
    }

    #[test]
    fn peer_addresses_take_names_and_ips() {
        for ok in ["users:50051", "127.0.0.1:7000", "[::1]:80", "cascade-users-1:50051"] {
            assert_eq!(ok.parse::<PeerAddr>().unwrap().to_string(), ok);
        }
        for bad in ["users", ":50051", "users:port", "us ers:1", "http://users:1"] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }
}
