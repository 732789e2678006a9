//! Set-up the integration tests share: zones as data and parsed from text (`zones`), free
//! ports, listeners and a server that never answers (`net`), a federation of real nodes
//! built from zone specs (`federation`), a TCP proxy that can cut, slow down or partition
//! the path to a node (`link`), gRPC calls with hand-written protobuf bytes (`raw`), waiting
//! on a condition with a deadline (`wait`), the admin endpoints' metrics parsed
//! (`exposition`), and a CA with certificates for tests over TLS (`pki`).
//!
//! The interop binary (`tests/interop/`) uses this module too, through a `#[path]`.

pub mod exposition;
pub mod federation;
pub mod link;
pub mod mcp;
pub mod net;
pub mod pki;
pub mod process;
pub mod raw;
pub mod wait;
pub mod zones;

pub use exposition::parse_exposition;
pub use federation::{Federation, FederationBuilder};
pub use link::Link;
pub use net::{BlackHole, ReservedPort, bind, dead_url, free_addr, free_listener, loopback};
pub use wait::eventually;
pub use zones::{AgentSpec, DelegationSpec, ZoneSpec, zone};

use aop::agent::{AgentKind, BuiltinAgent};
use aop::grpc::RegistryClient;
use aop::mcp::http::McpHttpServer;

/// The generated gRPC client on one connection (tests that exercise the wire itself).
pub async fn connect(url: &str) -> Result<RegistryClient, aop::grpc::ClientError> {
    aop::grpc::connect(url).await.map(|client| client.raw())
}

/// The `aop` binary this build made.
pub const AOP: &str = env!("CARGO_BIN_EXE_aop");

/// A command running the `aop` binary.
pub fn aop() -> std::process::Command {
    std::process::Command::new(AOP)
}

/// A built-in agent served over MCP in this process, on a free port.
pub async fn agent(kind: AgentKind, tool: &str) -> (BuiltinAgent, McpHttpServer) {
    let agent = BuiltinAgent::new(kind, tool);
    let server = agent
        .serve_http(free_listener().await)
        .expect("serve the agent");
    (agent, server)
}

/// An HTTP client builder for tests (reqwest over rustls with the ring provider, trusting
/// the system roots): reqwest's own default TLS would need a process-wide crypto provider,
/// which the project never installs.
pub fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(
        aop::tls::ClientTls::system()
            .expect("the system roots load")
            .http_config(),
    )
}

/// A plain HTTP client for tests ([`http_builder`]).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client")
}
