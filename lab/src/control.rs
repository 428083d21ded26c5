//! The control socket of a running `lab up`: `lab kill|pause|resume|restart|slow|…`
//! from another terminal send one line to `<run dir>/control.sock`, and the `lab up`
//! that owns the processes carries it out and answers one line. Keeping every process
//! under one owner is what lets that owner restart them and take them all down on exit.

use std::{path::Path, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::{
    proxy::Faults,
    topology::{Operation, Topology, TopologyError},
};

pub const CONTROL_SOCKET: &str = "control.sock";

/// A command line that is not an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCommand {
    #[error("expected `<action> <component>`, got {0:?}")]
    Shape(String),
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("{0:?} is not a number of milliseconds")]
    NotMilliseconds(String),
}

/// Why `lab kill|pause|…` could not have its command carried out.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no running `lab up` answers at {} ({source}): start one with `lab up --run-dir {}`", socket.display(), run_dir.display())]
    NoLab { socket: std::path::PathBuf, run_dir: std::path::PathBuf, source: std::io::Error },
    #[error("the control connection failed: {0}")]
    Connection(#[from] std::io::Error),
    /// The `lab up` answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// A fault or repair, as typed on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Kill,
    Pause,
    Resume,
    Restart,
    /// Added latency (and jitter) on the target's proxy.
    Slow {
        latency: Duration,
        jitter: Duration,
    },
    Blackhole,
    Reset,
    Heal,
    /// Cut off the network of the others (compose target).
    Partition,
    Reconnect,
}

impl Action {
    /// Whether this action undoes a fault (after it, the component can serve again).
    pub fn is_repair(&self) -> bool {
        matches!(self, Action::Resume | Action::Restart | Action::Heal | Action::Reconnect)
    }

    /// For a fault that leaves its target down until repaired: the repair that ends it,
    /// and how the target is while it lasts ("killed").
    pub fn window(&self) -> Option<(Action, &'static str)> {
        match self {
            Action::Kill => Some((Action::Restart, "killed")),
            Action::Pause => Some((Action::Resume, "paused")),
            Action::Partition => Some((Action::Reconnect, "partitioned")),
            _ => None,
        }
    }

    /// The one-line form: `kill users`, `slow products 50 10` (ms).
    pub fn line(&self, target: &str) -> String {
        match self {
            Action::Kill => format!("kill {target}"),
            Action::Pause => format!("pause {target}"),
            Action::Resume => format!("resume {target}"),
            Action::Restart => format!("restart {target}"),
            Action::Slow { latency, jitter } => format!("slow {target} {} {}", latency.as_millis(), jitter.as_millis()),
            Action::Blackhole => format!("blackhole {target}"),
            Action::Reset => format!("reset {target}"),
            Action::Heal => format!("heal {target}"),
            Action::Partition => format!("partition {target}"),
            Action::Reconnect => format!("reconnect {target}"),
        }
    }

    pub fn parse(line: &str) -> Result<(Action, String), BadCommand> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ms = |i: usize| -> Result<Duration, BadCommand> {
            words.get(i).map_or(Ok(Duration::ZERO), |w| {
                w.parse::<u64>().map(Duration::from_millis).map_err(|_| BadCommand::NotMilliseconds(w.to_string()))
            })
        };
        let (verb, target) = match words.as_slice() {
            [verb, target, ..] => (*verb, target.to_string()),
            _ => return Err(BadCommand::Shape(line.to_owned())),
        };
        let action = match verb {
            "kill" => Action::Kill,
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "restart" => Action::Restart,
            "slow" => Action::Slow { latency: ms(2)?, jitter: ms(3)? },
            "blackhole" => Action::Blackhole,
            "reset" => Action::Reset,
            "heal" => Action::Heal,
            "partition" => Action::Partition,
            "reconnect" => Action::Reconnect,
            other => return Err(BadCommand::UnknownAction(other.to_owned())),
        };
        Ok((action, target))
    }
}

/// Carries out `action` on `target` (whatever runs it: [`Topology::operate`] keeps a
/// `docker` command off the runtime).
pub async fn apply(topology: &mut Topology, action: &Action, target: &str) -> Result<(), TopologyError> {
    match action {
        Action::Kill => topology.operate(target, Operation::Kill).await,
        Action::Pause => topology.operate(target, Operation::Freeze).await,
        Action::Resume => topology.operate(target, Operation::Thaw).await,
        Action::Restart => topology.restart(target).await,
        Action::Slow { latency, jitter } => {
            topology.set_faults(target, Faults { latency: *latency, jitter: *jitter, ..Default::default() })
        }
        Action::Blackhole => topology.set_faults(target, Faults { blackhole: true, ..Default::default() }),
        Action::Reset => topology.set_faults(target, Faults { reset: true, ..Default::default() }),
        Action::Heal => topology.set_faults(target, Faults::default()),
        Action::Partition => topology.operate(target, Operation::Partition).await,
        Action::Reconnect => topology.operate(target, Operation::Reconnect).await,
    }
}

/// Binds the control socket of `run_dir` (replacing a stale one).
pub fn bind(run_dir: &Path) -> std::io::Result<UnixListener> {
    let path = run_dir.join(CONTROL_SOCKET);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// Reads one command from `stream`, carries it out, answers `ok` or `error: …`.
pub async fn handle(topology: &mut Topology, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply = match Action::parse(line.trim()) {
        Ok((action, target)) => match apply(topology, &action, &target).await {
            Ok(()) => {
                tracing::info!(command = line.trim(), "done");
                "ok".to_owned()
            }
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("error: {e}"),
    };
    write.write_all(format!("{reply}\n").as_bytes()).await
}

/// Sends one command to the `lab up` of `run_dir`; returns its answer.
pub async fn send(run_dir: &Path, line: &str) -> Result<(), ControlError> {
    let socket = run_dir.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&socket).await.map_err(|source| ControlError::NoLab {
        socket,
        run_dir: run_dir.to_path_buf(),
        source,
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    match reply.trim() {
        "ok" => Ok(()),
        other => Err(ControlError::Refused(other.strip_prefix("error: ").unwrap_or(other).to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_line() {
        let slow = Action::Slow { latency: Duration::from_millis(50), jitter: Duration::from_millis(10) };
        for action in [
            Action::Kill,
            Action::Pause,
            Action::Resume,
            Action::Restart,
            slow,
            Action::Blackhole,
            Action::Reset,
            Action::Heal,
            Action::Partition,
            Action::Reconnect,
        ] {
            assert_eq!(Action::parse(&action.line("products")), Ok((action, "products".to_owned())));
        }
        assert_eq!(Action::parse("explode users"), Err(BadCommand::UnknownAction("explode".into())));
        assert!(Action::parse("explode users").unwrap_err().to_string().contains("unknown action"));
        assert_eq!(Action::parse("kill"), Err(BadCommand::Shape("kill".into())));
        assert!(Action::parse("slow users fast").unwrap_err().to_string().contains("milliseconds"));
    }
}
