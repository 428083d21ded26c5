//! The suite's scenarios as a type: their names (in results files, on the command
//! line), which ones are repeated over rounds, which are long, and where each applies.

use serde::{Deserialize, Serialize};

use crate::topology::Target;

/// Every scenario of `lab bench`.
/// (The default only fills a result before [`super::scenarios::run`] names it.)
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// What the machine itself costs: loopback, one gRPC hop, JetStream, sled.
    Floor,
    /// Sequential latency, create-then-use, open-loop rates and saturation.
    #[default]
    Steady,
    /// 20 ms added in front of products (in bus-rpc also on its link to the broker).
    SlowDependency,
    /// users, then products, SIGKILLed and restarted under load.
    KillDependency,
    /// products SIGSTOPped, then resumed.
    PauseDependency,
    /// The broker SIGKILLed and restarted.
    KillBroker,
    /// One node of a three-node broker cluster SIGKILLed and restarted: the stream's
    /// leader, then a follower.
    KillBrokerNode,
    /// Two of the three nodes of a broker cluster SIGKILLed, then restarted.
    LoseBrokerQuorum,
    /// The query service SIGKILLed and restarted.
    KillQuery,
    /// One instance of each of users, products, orders (shards) and query (replicas) SIGKILLed and restarted in turn.
    KillReplica,
    /// users cut off its network (Compose only).
    Partition,
    /// Seeded kills of every component.
    Chaos,
    /// Hundreds of seeded kills, pauses and restarts, every write checked after.
    Soak,
    /// Bytes on disk and logical bytes per component, for the same seeded data.
    Storage,
    /// Inter-service calls and events per request.
    FanOut,
    /// Latency against offered load, from a tenth of the mode's saturation to past it.
    LoadCurve,
    /// `UserOrders` latency against the number of orders the user has.
    OrdersPerUser,
    /// Load at a share of the saturation, a short slowdown of products, then normal:
    /// does goodput come back, and what do the policies send meanwhile?
    OverloadBlip,
}

impl Scenario {
    /// Every scenario, in the order the suite runs them.
    pub const ALL: [Scenario; 18] = [
        Scenario::Floor,
        Scenario::Steady,
        Scenario::SlowDependency,
        Scenario::KillDependency,
        Scenario::PauseDependency,
        Scenario::KillBroker,
        Scenario::KillBrokerNode,
        Scenario::LoseBrokerQuorum,
        Scenario::KillQuery,
        Scenario::KillReplica,
        Scenario::Partition,
        Scenario::Chaos,
        Scenario::Soak,
        Scenario::Storage,
        Scenario::FanOut,
        Scenario::LoadCurve,
        Scenario::OrdersPerUser,
        Scenario::OverloadBlip,
    ];

    /// Its name in results files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Floor => "floor",
            Scenario::Steady => "steady",
            Scenario::SlowDependency => "slow-dependency",
            Scenario::KillDependency => "kill-dependency",
            Scenario::PauseDependency => "pause-dependency",
            Scenario::KillBroker => "kill-broker",
            Scenario::KillBrokerNode => "kill-broker-node",
            Scenario::LoseBrokerQuorum => "lose-broker-quorum",
            Scenario::KillQuery => "kill-query",
            Scenario::KillReplica => "kill-replica",
            Scenario::Partition => "partition",
            Scenario::Chaos => "chaos",
            Scenario::Soak => "soak",
            Scenario::Storage => "storage",
            Scenario::FanOut => "fan-out",
            Scenario::LoadCurve => "load-curve",
            Scenario::OrdersPerUser => "orders-per-user",
            Scenario::OverloadBlip => "overload-blip",
        }
    }

    /// What it shows, for the reader of the report.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Steady => "Latency and throughput at fixed open-loop rates, sequential latency, the saturation point (closed-loop clients), the staleness probe, and create-then-use: a user created, then at once an order placed for them, retried while refused as not yet known.",
            Scenario::SlowDependency => "A fixed latency added in front of `products` by a fault proxy (see the table), and in bus-rpc mode on its link to the broker, which carries the other services' calls to it: how much of it reaches the client.",
            Scenario::KillDependency => "`users` SIGKILLed, then `products`, under load: availability during the faults, staleness, recovery and convergence.",
            Scenario::PauseDependency => "`products` frozen with SIGSTOP (a grey failure): do callers fail at their deadline or pile up?",
            Scenario::KillBroker => "`nats-server` SIGKILLed under load and restarted (sync mode has no broker: the control).",
            Scenario::KillBrokerNode => "On a three-node JetStream cluster (whatever `--brokers` says), the event stream replicated 3 times: one node SIGKILLed under load and restarted, twice: first the node that leads the stream at that moment (async; in bus-rpc, which has no stream, the JetStream meta leader), then a follower, each found by asking the cluster right before the kill. Availability, staleness, convergence and losses, as kill-broker measures them (sync and the monolith have no broker: the control).",
            Scenario::LoseBrokerQuorum => "On a three-node JetStream cluster, two nodes (the stream's leader and a follower; in bus-rpc the meta leader and a follower) SIGKILLed at once under load, so the stream has no majority, then restarted: acknowledged writes wait in the outboxes until a majority is back, nothing acknowledged may be lost, and the view converges after.",
            Scenario::KillQuery => "The query service itself SIGKILLed: both modes lose reads; how fast async catches up.",
            Scenario::KillReplica => "Every service as two instances (whatever `--replicas` says): the query service as two replicas, the clients' `UserOrders` balanced round robin over both; each owner as two shards, every request sent to the shard its id names. One instance of each (users-2, products-2, orders-2, query-2) SIGKILLed under load and restarted, in turn: availability while each was down (a dead shard takes the requests for its own entities, and in sync and bus-rpc every read that needs them), the requests that failed at the clients' balancers and those moved to another instance, staleness, each replica's view against the truth (async: a restarted instance catches up from its own durable consumer), losses. The monolith has no process of a service's own: does not apply.",
            Scenario::Partition => "`users` cut off the others' network (`docker network disconnect`, compose target): its callers cannot reach it, though it runs.",
            Scenario::Chaos => "Seeded random SIGKILLs under load, one schedule for both modes (the same service victims at the same times; the broker's kills from a separate stream, skipped in sync), then the checker.",
            Scenario::Soak => "Many seeded random faults per mode under load (SIGKILL and restart, SIGSTOP and SIGCONT, restart on the same data dir; the same service faults at the same planned times in both modes, broker faults from a stream of their own), while writers create users and products, change prices and place orders. Then every fault is repaired, the replicas settle, and a checker holds the owners, the query view and orders' replica to the history of every acknowledged write (a write that failed or timed out is in doubt: it may explain an effect, nothing is owed for it).",
            Scenario::Storage => "For the same data, per component: logical bytes (keys + values in its sled trees, read after the topology stopped) beside bytes on disk (file sizes: sled's log segments and churn, and the broker's store): the price of duplication.",
            Scenario::FanOut => "Inter-service calls per client request and events per write, counted by the services.",
            Scenario::LoadCurve => "Latency against offered load: the mode's saturation measured by a short closed-loop run, then the workload open-loop at fractions of it (see the table), each rung on the same topology, one after another.",
            Scenario::OrdersPerUser => "`UserOrders` against the number of orders the user has: for each size a new user gets that many orders (placed through the public API, 16 at a time), and once `UserOrders` shows them all it is read sequentially; the inter-service calls per read are counted by the services.",
            Scenario::OverloadBlip => "The mode's saturation measured by a short closed-loop run, then the workload open-loop at a share of it (see the table): a while at normal, then a fault on `products`' proxy for a short blip (by default 50 ms added; in bus-rpc mode also on its link to the broker), then normal again. Goodput per 100 ms, inter-service calls per client request (counted by the services, retries included) before, during and after the blip, and the time goodput took to come back.",
            Scenario::Floor => "What the machine itself costs, measured in the same run: a loopback round trip, one gRPC hop, a JetStream publish and delivery, a sled flush.",
        }
    }

    /// Whether it runs on a three-node broker cluster whatever `--brokers` says.
    pub fn needs_cluster(self) -> bool {
        matches!(self, Scenario::KillBrokerNode | Scenario::LoseBrokerQuorum)
    }

    /// Whether its figures are latencies: repeated over the profile's rounds, so each
    /// headline figure carries its spread.
    pub fn is_latency(self) -> bool {
        matches!(self, Scenario::Steady | Scenario::SlowDependency)
    }

    /// Too long for the quick suite: runs in `--full`, or when named. (The two cluster
    /// scenarios together add about 40 s to async alone, most of it the cluster's
    /// elections.)
    pub fn is_long(self) -> bool {
        matches!(self, Scenario::Soak | Scenario::KillBrokerNode | Scenario::LoseBrokerQuorum)
    }

    /// Whether a policy can change what it measures: not where nothing fails, nothing
    /// is overloaded and no call grows (bytes stored, calls per request), which the
    /// suite runs under the naive policy alone, whatever the policies asked for.
    pub fn policy_applies(self) -> bool {
        !matches!(self, Scenario::Storage | Scenario::FanOut | Scenario::Floor)
    }

    /// Runs once for the machine, not once per mode.
    pub fn is_per_machine(self) -> bool {
        self == Scenario::Floor
    }

    /// Whether it needs the process target: the floor (this machine's own costs), the
    /// fault proxy, on-disk sizes, and the replicas and shards of kill-replica.
    fn needs_processes(self) -> bool {
        matches!(
            self,
            Scenario::Floor
                | Scenario::KillReplica
                | Scenario::SlowDependency
                | Scenario::Storage
                | Scenario::OverloadBlip
        )
    }

    /// Whether the suite runs it on `target` when no `--scenario` is named: partitions
    /// need the compose target; the floor, the fault proxy, on-disk sizes, and
    /// kill-replica's replicas and shards need local processes.
    pub fn runs_by_default_on(self, target: &Target) -> bool {
        match target {
            Target::Compose { .. } => !self.needs_processes(),
            // Nor partitions: swarm loses a task taken off its network (see
            // `SwarmError::NoPartition`).
            Target::Swarm { .. } => !self.needs_processes() && self != Scenario::Partition,
            Target::Process => self != Scenario::Partition,
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|c| c.name()).collect();
            format!("no scenario named {s:?}; they are {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_the_command_line() {
        for s in Scenario::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Scenario>(&json).unwrap(), s);
            assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
            assert_eq!(<Scenario as clap::ValueEnum>::from_str(s.name(), false).unwrap(), s);
        }
        assert!("kill-everything".parse::<Scenario>().unwrap_err().contains("fan-out"));
    }
}
