//! A small TCP fault proxy. The lab puts one in front of a service; callers (other
//! services and the load generator) reach the service through it, and a scenario turns
//! faults on and off while traffic flows:
//!
//! - `latency` (+ uniform `jitter`): every chunk from the service back to the caller
//!   is held that long, so each request/response exchange pays it once;
//! - `blackhole`: bytes vanish in both directions, connections stay open (callers can
//!   only time out);
//! - `reset`: every open connection is reset (RST) and new ones are reset on accept.
//!
//! Order of bytes is preserved: a chunk never overtakes an earlier one, whatever the
//! jitter.

use std::{net::SocketAddr, time::Duration};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    pub latency: Duration,
    pub jitter: Duration,
    pub blackhole: bool,
    pub reset: bool,
}

/// A running proxy; dropping it stops accepting (open connections end with it).
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).field("upstream", &self.upstream).finish()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (faults, watch) = watch::channel(Faults::default());
        let task = tokio::spawn(accept(listener, upstream, watch));
        Ok(Self { addr, upstream, faults, task })
    }

    /// Where callers connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn faults(&self) -> Faults {
        *self.faults.borrow()
    }

    pub fn set(&self, faults: Faults) {
        tracing::info!(proxy = %self.addr, ?faults, "faults set");
        self.faults.send_replace(faults);
    }

    pub fn heal(&self) {
        self.set(Faults::default());
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, faults: watch::Receiver<Faults>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if faults.borrow().reset {
            reset(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, faults.clone()));
    }
}

/// Drops a socket with SO_LINGER 0, which makes the kernel send RST instead of FIN.
fn reset(stream: TcpStream) {
    // Linger 0 closes at once (it is a non-zero linger that would block on drop).
    #[allow(deprecated)]
    if let Err(error) = stream.set_linger(Some(Duration::ZERO)) {
        tracing::warn!(%error, "cannot set linger for a reset");
    }
    drop(stream);
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut faults: watch::Receiver<Faults>) {
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(error) => {
            tracing::debug!(%error, %upstream, "upstream refused; resetting the caller");
            reset(client);
            return;
        }
    };
    for s in [&client, &server] {
        if let Err(error) = s.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();

    let to_server = {
        let faults = faults.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = client_read.read(&mut buf).await?;
                if n == 0 {
                    return server_write.shutdown().await;
                }
                if !faults.borrow().blackhole {
                    server_write.write_all(&buf[..n]).await?;
                }
            }
        }
    };

    // Back to the caller through a queue of (due time, bytes), so a delay holds each
    // chunk without holding the reading.
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let from_server = {
        let faults = faults.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut last_due = Instant::now();
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    // Ends the writer once every held chunk is out.
                    return Ok::<_, std::io::Error>(());
                }
                let f = *faults.borrow();
                if f.blackhole {
                    continue;
                }
                let jitter = if f.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    rand::rng().random_range(Duration::ZERO..=f.jitter)
                };
                last_due = last_due.max(Instant::now() + f.latency + jitter);
                if queue.send((last_due, buf[..n].to_vec())).is_err() {
                    return Ok(());
                }
            }
        }
    };
    let to_client = async move {
        while let Some((at, bytes)) = due.recv().await {
            // tokio's timer ticks in whole milliseconds, even for a deadline already
            // passed: without this check a proxy with no latency set would add up to
            // a millisecond to every answer.
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            client_write.write_all(&bytes).await?;
        }
        client_write.shutdown().await
    };

    let reset_requested = async {
        loop {
            if faults.changed().await.is_err() {
                return false;
            }
            if faults.borrow().reset {
                return true;
            }
        }
    };
    let pumps = async {
        let (a, b, c) = tokio::join!(to_server, from_server, to_client);
        a.and(b).and(c)
    };
    tokio::select! {
        result = pumps => {
            if let Err(error) = result {
                tracing::debug!(%error, "proxied connection ended");
            }
        }
        true = reset_requested => {
            // Dropping the halves closes both sockets; the caller sees its connection
            // die. (The halves are inside the pumps, dropped with them here.)
            tracing::debug!("connection reset by fault");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Duration> {
        let start = StdInstant::now();
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(start.elapsed())
    }

    #[tokio::test]
    async fn latency_blackhole_reset_and_heal() {
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), echo().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut stream).await.unwrap();

        proxy.set(Faults { latency: Duration::from_millis(80), ..Default::default() });
        let slow = round_trip(&mut stream).await.unwrap();
        assert!(slow >= Duration::from_millis(80), "{slow:?}");

        proxy.set(Faults { blackhole: true, ..Default::default() });
        let lost = tokio::time::timeout(Duration::from_millis(300), round_trip(&mut stream)).await;
        assert!(lost.is_err(), "a black-holed request must not be answered");

        proxy.set(Faults { reset: true, ..Default::default() });
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await.expect("reset is prompt");
        assert!(matches!(read, Ok(0) | Err(_)), "the open connection is cut: {read:?}");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut fresh).await.is_err(), "new connections are reset");

        proxy.heal();
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        let fast = round_trip(&mut healed).await.unwrap();
        assert!(fast < Duration::from_millis(80), "{fast:?}");
    }
}
