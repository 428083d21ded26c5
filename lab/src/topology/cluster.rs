//! A three-node JetStream cluster (`--brokers 3`): how the lab describes its nodes to
//! nats-server on the process target (the container targets give the same settings as
//! flags: `docker/compose.yml`, `stack::stack_file`), and how it asks them, on every
//! target, whether the cluster and the event stream are whole.
//!
//! Each node gets a configuration file of its own in its folder of the run dir: its
//! `server_name` (`nats-1`, …), its monitoring port, its JetStream store, and a
//! `cluster` block that listens on its cluster port and lists the other nodes' cluster
//! ports as routes. Every port is chosen once (see `processes::reserve_port`) and
//! written there, so a node restarted after a SIGKILL comes back on the same ports with
//! the same store and rejoins. The client port is given on the command line, as for the
//! single broker.
//!
//! Health is read two ways: the JetStream meta group's leader from each node's
//! monitoring endpoint (`/jsz`), and the event stream's leader and replicas from the
//! JetStream API (stream info).

use std::{fmt::Write as _, net::SocketAddr, path::PathBuf, time::Duration};

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The cluster's name, in every node's `cluster` block.
pub const CLUSTER_NAME: &str = "cascade";

/// How long one question to a node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// One node of the cluster, as the lab starts it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub name: &'static str,
    /// Its folder in the run dir (config file, log, ports file).
    pub dir: PathBuf,
    /// Its JetStream store.
    pub store: PathBuf,
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
}

impl Node {
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("nats.conf")
    }

    pub fn monitor(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.monitor_port))
    }
}

/// A string as nats-server's configuration format reads it (it takes JSON strings).
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// The configuration file of `node`, whose routes are the other `nodes`' cluster ports.
pub(super) fn config_text(node: &Node, nodes: &[Node]) -> String {
    let mut text = format!(
        "# Written by the Cascade lab: node {} of a {}-node JetStream cluster. The client port is given\n\
         # on the command line (-p).\n",
        node.name,
        nodes.len()
    );
    let routes: Vec<String> = nodes
        .iter()
        .filter(|n| n.name != node.name)
        .map(|n| quoted(&format!("nats-route://127.0.0.1:{}", n.cluster_port)))
        .collect();
    writeln!(text, "server_name: {}", quoted(node.name)).ok();
    writeln!(text, "http: {}", quoted(&format!("127.0.0.1:{}", node.monitor_port))).ok();
    writeln!(text, "jetstream {{\n  store_dir: {}\n}}", quoted(&node.store.display().to_string())).ok();
    writeln!(
        text,
        "cluster {{\n  name: {}\n  listen: {}\n  routes: [{}]\n}}",
        quoted(CLUSTER_NAME),
        quoted(&format!("127.0.0.1:{}", node.cluster_port)),
        routes.join(", ")
    )
    .ok();
    text
}

/// Writes every node's configuration file (again, after a node's ports changed).
pub(super) fn write_configs(nodes: &[Node]) -> std::io::Result<()> {
    for node in nodes {
        std::fs::write(node.config_file(), config_text(node, nodes))?;
    }
    Ok(())
}

/// One GET of `path` on a node's monitoring endpoint, its body as JSON.
async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, String> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        let status = head.split_whitespace().nth(1);
        if !head.starts_with("HTTP/1.") || status != Some("200") {
            return Err(format!("answered {:?}", head.lines().next().unwrap_or_default()));
        }
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))
    };
    match tokio::time::timeout(ASK_TIMEOUT, ask).await {
        Ok(answer) => answer.map_err(|e| format!("{addr}{path}: {e}")),
        Err(_) => Err(format!("{addr}{path}: no answer within {} ms", ASK_TIMEOUT.as_millis())),
    }
}

/// What one node says of the JetStream meta group: its leader (`None` while there is
/// none) and the group's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaView {
    pub leader: Option<String>,
    pub cluster_size: u64,
}

/// Waits until a majority of the nodes whose monitoring endpoints are `monitors` name
/// one meta leader; `Err` with the last answer after `within`.
pub async fn wait_meta_leader(monitors: &[SocketAddr], within: Duration) -> Result<String, String> {
    let start = tokio::time::Instant::now();
    loop {
        let last = match agreed_leader(monitors).await {
            Ok(leader) => return Ok(leader),
            Err(why) => why,
        };
        if start.elapsed() > within {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The meta leader a majority of the nodes at `monitors` name, else why not.
pub async fn agreed_leader(monitors: &[SocketAddr]) -> Result<String, String> {
    let views = futures::future::join_all(monitors.iter().map(|&m| meta_view(m))).await;
    let mut leaders = Vec::new();
    let mut why = Vec::new();
    for view in views {
        match view {
            Ok(MetaView { leader: Some(leader), .. }) => leaders.push(leader),
            Ok(MetaView { leader: None, .. }) => why.push("a node sees no meta leader".to_owned()),
            Err(e) => why.push(e),
        }
    }
    let majority = monitors.len() / 2 + 1;
    leaders.iter().find(|l| leaders.iter().filter(|x| x == l).count() >= majority).cloned().ok_or_else(|| {
        format!("no JetStream meta leader agreed by {majority} of {} nodes ({})", monitors.len(), why.join("; "))
    })
}

/// Asks the node whose monitoring endpoint is `monitor` (`/jsz`).
pub async fn meta_view(monitor: SocketAddr) -> Result<MetaView, String> {
    let jsz = get_json(monitor, "/jsz").await?;
    let meta = &jsz["meta_cluster"];
    if meta.is_null() {
        return Err(format!("{monitor}: JetStream is not clustered here"));
    }
    let leader = meta["leader"].as_str().filter(|l| !l.is_empty()).map(str::to_owned);
    Ok(MetaView { leader, cluster_size: meta["cluster_size"].as_u64().unwrap_or(0) })
}

/// One replica of the stream other than its leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The node's `server_name` (`nats-2`).
    pub name: String,
    /// Up to date with the leader.
    pub current: bool,
    /// Considered gone by the stream's group.
    pub offline: bool,
}

/// Where the event stream lives on the cluster, as stream info says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The node that leads the stream's group (`None` while it has none).
    pub leader: Option<String>,
    /// The other replicas.
    pub followers: Vec<Replica>,
    /// The replicas the stream is configured with.
    pub replicas: usize,
}

impl Placement {
    /// A leader, and every other replica current and online.
    pub fn is_whole(&self) -> bool {
        self.leader.is_some()
            && self.followers.len() + 1 == self.replicas
            && self.followers.iter().all(|r| r.current && !r.offline)
    }

    /// Why not [`Placement::is_whole`], for an error.
    pub fn describe(&self) -> String {
        let followers: Vec<String> = self
            .followers
            .iter()
            .map(|r| {
                let state = match (r.offline, r.current) {
                    (true, _) => "offline",
                    (false, true) => "current",
                    (false, false) => "not current",
                };
                format!("{} {state}", r.name)
            })
            .collect();
        format!(
            "R{}, leader {}, followers [{}]",
            self.replicas,
            self.leader.as_deref().unwrap_or("none"),
            followers.join(", ")
        )
    }
}

/// The placement of `stream` on the cluster `js` is connected to.
pub async fn placement(js: &jetstream::Context, stream: &str) -> Result<Placement, String> {
    let ask = async {
        let mut stream = js.get_stream(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
        let info = stream.info().await.map_err(|e| format!("stream info: {e}"))?;
        Ok(Placement::of(info.cluster.as_ref(), info.config.num_replicas.max(1)))
    };
    tokio::time::timeout(ASK_TIMEOUT * 2, ask).await.unwrap_or_else(|_| Err("stream info: no answer".into()))
}

/// The placement of the durable consumer `consumer` of `stream`, whose replicas are
/// the stream's (`replicas`).
pub async fn consumer_placement(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    replicas: usize,
) -> Result<Placement, String> {
    let ask = async {
        let stream = js.get_stream(stream).await.map_err(|e| format!("stream {stream}: {e}"))?;
        let mut found: jetstream::consumer::PullConsumer =
            stream.get_consumer(consumer).await.map_err(|e| format!("consumer {consumer}: {e}"))?;
        let info = found.info().await.map_err(|e| format!("consumer {consumer} info: {e}"))?;
        let replicas = match info.config.num_replicas {
            0 => replicas,
            n => n,
        };
        Ok(Placement::of(info.cluster.as_ref(), replicas))
    };
    tokio::time::timeout(ASK_TIMEOUT * 2, ask).await.unwrap_or_else(|_| Err("consumer info: no answer".into()))
}

impl Placement {
    fn of(cluster: Option<&jetstream::stream::ClusterInfo>, replicas: usize) -> Self {
        let (leader, followers) = match cluster {
            Some(c) => (
                c.leader.clone().filter(|l| !l.is_empty()),
                c.replicas
                    .iter()
                    .map(|p| Replica { name: p.name.clone(), current: p.current, offline: p.offline })
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        Placement { leader, followers, replicas }
    }
}

/// A connection to the cluster for the lab's own questions: every node's client URL,
/// at most `ASK_TIMEOUT` per attempt, never a retry of its own.
pub async fn connect(url: &str) -> Result<async_nats::Client, String> {
    async_nats::ConnectOptions::new()
        .name("lab")
        .connection_timeout(ASK_TIMEOUT)
        .ignore_discovered_servers()
        .connect(common::broker::servers(url))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &'static str, i: u16) -> Node {
        Node {
            name,
            dir: PathBuf::from(format!("run/{name}")),
            store: PathBuf::from(format!("run/{name}/store \"q\"")),
            client_port: 4000 + i,
            cluster_port: 5000 + i,
            monitor_port: 6000 + i,
        }
    }

    #[test]
    fn a_node_routes_to_the_others_and_names_itself() {
        let nodes = [node("nats-1", 1), node("nats-2", 2), node("nats-3", 3)];
        let text = config_text(&nodes[1], &nodes);
        assert!(text.contains("server_name: \"nats-2\""), "{text}");
        assert!(text.contains("listen: \"127.0.0.1:5002\""), "{text}");
        assert!(text.contains("routes: [\"nats-route://127.0.0.1:5001\", \"nats-route://127.0.0.1:5003\"]"), "{text}");
        assert!(text.contains("http: \"127.0.0.1:6002\""), "{text}");
        // A path with a quote in it stays one string.
        assert!(text.contains(r#"store_dir: "run/nats-2/store \"q\"""#), "{text}");
        assert!(!text.contains("4002"), "the client port is on the command line: {text}");
    }

    #[test]
    fn a_placement_is_whole_with_a_leader_and_every_follower_current() {
        let follower = |name: &str, current, offline| Replica { name: name.into(), current, offline };
        let mut p = Placement {
            leader: Some("nats-1".into()),
            followers: vec![follower("nats-2", true, false), follower("nats-3", true, false)],
            replicas: 3,
        };
        assert!(p.is_whole(), "{}", p.describe());
        p.followers[1].current = false;
        assert!(!p.is_whole());
        assert!(p.describe().contains("nats-3 not current"), "{}", p.describe());
        p.followers[1] = follower("nats-3", true, true);
        assert!(!p.is_whole());
        p.followers.pop();
        assert!(!p.is_whole(), "a replica missing");
        p.followers.push(follower("nats-3", true, false));
        p.leader = None;
        assert!(!p.is_whole());
        assert!(p.describe().contains("leader none"), "{}", p.describe());
    }
}
