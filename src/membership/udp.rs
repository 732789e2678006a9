//! The member's I/O: one UDP socket and one task that feeds the [`Engine`] datagrams, its
//! timers and this node's state, sends what it sealed, and publishes the member list.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, MemberView};
use super::state::LocalState;

/// Larger than any datagram a member sends ([`super::MAX_DATAGRAM`]); a longer one is cut
/// here and then fails authentication.
const RECEIVE_BUFFER: usize = 2048;

pub(crate) async fn run(
    socket: UdpSocket,
    mut engine: Engine,
    mut local: watch::Receiver<LocalState>,
    members: watch::Sender<Arc<Vec<MemberView>>>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut local_open = true;
    loop {
        let deadline = Instant::from_std(engine.next_deadline());
        tokio::select! {
            () = shutdown.cancelled() => {
                engine.leave(Instant::now().into_std());
                send(&socket, &mut engine).await;
                return;
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, _from)) => engine.handle_datagram(Instant::now().into_std(), &buf[..len]),
                // An ICMP unreachable from an earlier send shows up here on some systems.
                Err(error) => tracing::debug!(%error, "gossip receive"),
            },
            () = tokio::time::sleep_until(deadline) => engine.advance(Instant::now().into_std()),
            changed = local.changed(), if local_open => {
                if changed.is_err() {
                    // The node dropped its side: its state stays as last said.
                    local_open = false;
                    continue;
                }
                let state = local.borrow_and_update().clone();
                engine.set_local(state);
            }
        }
        send(&socket, &mut engine).await;
        let now = engine.members();
        members.send_if_modified(|published| {
            if **published == now {
                false
            } else {
                *published = Arc::new(now);
                true
            }
        });
    }
}

async fn send(socket: &UdpSocket, engine: &mut Engine) {
    for (to, datagram) in engine.drain_outbox() {
        if let Err(error) = socket.send_to(&datagram, to).await {
            tracing::debug!(%error, %to, "gossip send");
        }
    }
}

/// Binds without awaiting, so a node binds its gossip port while it starts its other
/// listeners; must be called inside the runtime.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, SocketAddr)> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    Ok((UdpSocket::from_std(socket)?, local))
}
