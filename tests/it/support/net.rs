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

/// An MCP endpoint URL nothing listens on.
pub fn dead_url() -> String {
    format!("http://{}/mcp", free_addr())
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
