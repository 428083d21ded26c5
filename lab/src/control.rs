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
    compose::Compose,
    proxy::Faults,
    topology::{ContainerFault, Topology},
};

pub const CONTROL_SOCKET: &str = "control.sock";

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

    pub fn parse(line: &str) -> Result<(Action, String), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ms = |i: usize| -> Result<Duration, String> {
            words.get(i).map_or(Ok(Duration::ZERO), |w| {
                w.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{w:?} is not a number of milliseconds"))
            })
        };
        let (verb, target) = match words.as_slice() {
            [verb, target, ..] => (*verb, target.to_string()),
            _ => return Err(format!("expected `<action> <component>`, got {line:?}")),
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
            other => return Err(format!("unknown action {other:?}")),
        };
        Ok((action, target))
    }
}

/// Carries out `action` on `target`.
pub async fn apply(
    topology: &mut Topology,
    action: &Action,
    target: &str,
) -> Result<(), crate::topology::TopologyError> {
    // On the compose target these are `docker` commands: run them off the runtime.
    let blocking: Option<ContainerFault> = match action {
        Action::Kill => Some(Compose::kill),
        Action::Pause => Some(Compose::pause),
        Action::Resume => Some(Compose::unpause),
        Action::Partition => Some(Compose::partition),
        Action::Reconnect => Some(Compose::reconnect),
        _ => None,
    };
    if let Some(fault) = blocking {
        if let Some(done) = topology.off_runtime(target, fault).await {
            return done;
        }
    }
    match action {
        Action::Kill => topology.kill(target),
        Action::Pause => topology.pause(target),
        Action::Resume => topology.resume(target),
        Action::Restart => topology.restart(target).await,
        Action::Slow { latency, jitter } => {
            topology.set_faults(target, Faults { latency: *latency, jitter: *jitter, ..Default::default() })
        }
        Action::Blackhole => topology.set_faults(target, Faults { blackhole: true, ..Default::default() }),
        Action::Reset => topology.set_faults(target, Faults { reset: true, ..Default::default() }),
        Action::Heal => topology.set_faults(target, Faults::default()),
        Action::Partition => topology.partition(target),
        Action::Reconnect => topology.reconnect(target),
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
pub async fn send(run_dir: &Path, line: &str) -> anyhow::Result<()> {
    let path = run_dir.join(CONTROL_SOCKET);
    let stream = UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "no running `lab up` answers at {} ({e}): start one with `lab up --run-dir {}`",
            path.display(),
            run_dir.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{line}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    match reply.trim() {
        "ok" => Ok(()),
        other => anyhow::bail!("{}", other.strip_prefix("error: ").unwrap_or(other)),
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
        ] {
            assert_eq!(Action::parse(&action.line("products")), Ok((action, "products".to_owned())));
        }
        assert!(Action::parse("explode users").unwrap_err().contains("unknown action"));
        assert!(Action::parse("kill").is_err());
        assert!(Action::parse("slow users fast").unwrap_err().contains("milliseconds"));
    }
}
