//! A TCP proxy between clients and a node, whose path a test breaks on command:
//!
//! - [`Link::cut`] drops the link: new connections are reset as they arrive and open ones are
//!   severed (the node crashed, or a firewall rejects);
//! - [`Link::delay`] adds latency to every chunk forwarded, either way;
//! - [`Link::partition`] silently stops forwarding: connections are accepted and bytes are
//!   taken, but nothing goes through, as if packets were lost (a black hole);
//! - [`Link::heal`] restores the link. After a partition, what was held goes through, as TCP
//!   retransmission would deliver it;
//! - [`Link::stall`] black-holes the connections open now, for good, while new ones go through:
//!   a link that came back after a cut, with the old connections stuck behind TCP's
//!   retransmission backoff. Only the client closing them ends them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::free_listener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Partitioned,
    Cut,
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    delay: Duration,
    /// Bumped by every cut: connections opened before it are severed.
    cuts: u64,
    /// Bumped by every stall: connections opened before it take bytes and forward none.
    stalls: u64,
}

pub struct Link {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accepted: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
    accepting: JoinHandle<()>,
}

impl Link {
    /// A link on a free port of 127.0.0.1 to `upstream`, up.
    pub async fn start(upstream: SocketAddr) -> Link {
        let listener = free_listener().await;
        let addr = listener.local_addr().expect("a local address");
        let (state, mut watching) = watch::channel(State {
            mode: Mode::Up,
            delay: Duration::ZERO,
            cuts: 0,
            stalls: 0,
        });
        let accepted = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let open_counter = Arc::clone(&open);
        let accepting = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    // Only to notice that the link is gone.
                    changed = watching.changed() => match changed {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                counter.fetch_add(1, Ordering::SeqCst);
                if watching.borrow().mode == Mode::Cut {
                    reset(&stream);
                    continue;
                }
                let open = Arc::clone(&open_counter);
                open.fetch_add(1, Ordering::SeqCst);
                let state = watching.clone();
                tokio::spawn(async move {
                    connection(stream, upstream, state).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Link {
            addr,
            state,
            accepted,
            open,
            accepting,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The link's address as a gRPC URL, for zone files.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far (whatever became of them).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open through the link now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Black-holes the connections open now for good (new ones go through): see the module.
    pub fn stall(&self) {
        self.state.send_modify(|state| state.stalls += 1);
    }

    /// Drops the link: open connections are severed (reset), new ones reset at once.
    pub fn cut(&self) {
        self.state.send_modify(|state| {
            state.mode = Mode::Cut;
            state.cuts += 1;
        });
    }

    /// Holds every chunk `by` before forwarding it, either way.
    pub fn delay(&self, by: Duration) {
        self.state.send_modify(|state| state.delay = by);
    }

    /// Stops forwarding, silently: a black hole until [`Link::heal`].
    pub fn partition(&self) {
        self.state
            .send_modify(|state| state.mode = Mode::Partitioned);
    }

    /// Forwards again, without delay.
    pub fn heal(&self) {
        self.state.send_modify(|state| {
            state.mode = Mode::Up;
            state.delay = Duration::ZERO;
        });
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The connections end when they see the state's sender gone.
        self.accepting.abort();
    }
}

/// Closes `stream` with a reset rather than an orderly end.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Waits until the link forwards; false once this connection is severed (or the link gone).
async fn forwarding(state: &mut watch::Receiver<State>, generation: u64) -> bool {
    loop {
        let now = *state.borrow_and_update();
        if now.cuts != generation || now.mode == Mode::Cut {
            return false;
        }
        if now.mode == Mode::Up {
            return true;
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let (generation, stalls) = {
        let now = state.borrow();
        (now.cuts, now.stalls)
    };
    // A partitioned link takes the connection and lets nothing through, not even to connect.
    if !forwarding(&mut state, generation).await {
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, state.clone(), generation, stalls),
        pump(server_read, client_write, state, generation, stalls),
    );
}

/// Forwards one direction chunk by chunk, as the link's state allows.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
    stalls: u64,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if state.borrow().stalls != stalls {
            // Stalled: bytes are taken and dropped until the sender closes.
            while let Ok(1..) = from.read(&mut buffer).await {}
            return;
        }
        if !forwarding(&mut state, generation).await {
            break;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = state.changed() => match changed {
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        let length = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(length) => length,
        };
        let delay = state.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A partition that began while the chunk was on its way holds it until healed.
        if !forwarding(&mut state, generation).await {
            break;
        }
        if to.write_all(&buffer[..length]).await.is_err() {
            return;
        }
    }
    // Severed: both sockets end with a reset.
    reset(from.as_ref());
    reset(to.as_ref());
}
