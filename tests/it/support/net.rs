//! Ports and listeners on 127.0.0.1, and a server that accepts connections and never answers.

use std::net::SocketAddr;

use aop::node::GrpcListener;
use tokio::net::TcpListener;

/// 127.0.0.1, any free port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A gRPC listener on a free port of 127.0.0.1, bound before anything serves on it (so zone
/// files can name it first).
pub async fn bind() -> GrpcListener {
    GrpcListener::bind(loopback())
        .await
        .expect("bind a free port")
}

/// A TCP listener on a free port of 127.0.0.1.
pub async fn free_listener() -> TcpListener {
    TcpListener::bind(loopback())
        .await
        .expect("bind a free port")
}

/// An address nothing listens on: a port the OS gave out, then released (for a child process
/// to bind, or for a test that wants its connections refused).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind(loopback()).expect("bind a free port");
    listener.local_addr().expect("a local address")
}

/// A port of 127.0.0.1 held without listening: connections to it are refused, as to a
/// process that is down, and no other socket can take the port (as one could a
/// [`free_addr`]) until [`ReservedPort::listen`] opens it: a server that comes back on its
/// own address, without a race.
pub struct ReservedPort {
    socket: socket2::Socket,
    addr: SocketAddr,
}

impl ReservedPort {
    pub fn new() -> ReservedPort {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("a TCP socket");
        socket.bind(&loopback().into()).expect("bind a free port");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|addr| addr.as_socket())
            .expect("a local address");
        ReservedPort { socket, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening on the held port.
    pub fn listen(self) -> TcpListener {
        self.socket.listen(1024).expect("listen on the held port");
        self.socket
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        TcpListener::from_std(self.socket.into()).expect("a tokio listener")
    }
}

/// An MCP endpoint URL nothing listens on. Its port stays held for the rest of the test
/// run (one descriptor per call), so no other socket can take it and answer there.
pub fn dead_url() -> String {
    let port = ReservedPort::new();
    let url = format!("http://{}/mcp", port.addr());
    std::mem::forget(port);
    url
}

/// Accepts TCP connections (into the kernel's backlog) and never answers: every request sent
/// to it runs into its deadline.
pub struct BlackHole {
    listener: std::net::TcpListener,
}

impl BlackHole {
    pub fn new() -> BlackHole {
        BlackHole {
            listener: std::net::TcpListener::bind(loopback()).expect("bind a free port"),
        }
    }

    pub fn url(&self) -> String {
        format!(
            "http://{}",
            self.listener.local_addr().expect("a local address")
        )
    }
}
