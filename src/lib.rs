//! The AOP agent registry: DNS-like zone servers for AI agents.
//!
//! Each node is authoritative for dotted zones of agent names (`finance.acme`), answers
//! lookups from its zones over gRPC, and delegates child zones to other nodes, as DNS does
//! for host names.
//!
//! # Layout
//!
//! The core knows nothing of sockets or wire formats:
//!
//! - [`name`]: agent and zone names, their rules and canonical form.
//! - [`record`]: agents, endpoints, aliases, delegations, zone headers; field rules and limits.
//! - [`zone`]: an immutable zone snapshot and its authoritative lookup; [`zone::file`] reads
//!   zone files with `FILE:LINE:COL` errors.
//! - [`catalog`]: the zones one node serves, and the closest enclosing zone of a name.
//! - [`answer`]: what a lookup returns, whoever produced it.
//! - [`resolver`]: recursive resolution through multi-level caches, with failover across a
//!   zone's servers and stale answers when every server fails.
//! - [`clock`]: time as an input, so TTL logic can be tested by moving time by hand.
//!
//! Around it, the doors and the wiring:
//!
//! - [`grpc`]: the `aop.v1` gRPC service and client; pb <-> domain conversions.
//! - [`dns`]: the DNS door: the same zones over UDP and TCP DNS (hickory-proto wire types).
//! - [`admin`]: the admin endpoint: Prometheus metrics, health, readiness and the status
//!   page; request ids and the recent-queries ring.
//! - [`node`]: starts a node's listeners and tasks, hands back a handle, shuts down cleanly.
//! - [`config`]: node configuration files (`deploy/nodes/*.toml`).
//! - [`demo`]: the whole federation of `zones/` in one process.
//! - [`bench`]: the load generator behind `aop bench`.
//!
//! The `aop` command line lives in the binary (`src/main.rs`, `src/cli/`), the only place
//! that formats for humans.

// Peers and files are input: the library never unwraps what they can influence (tests may;
// clippy.toml allows it there).
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod agent;
pub mod answer;
pub mod authority;
pub mod bench;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dns;
pub mod gateway;
pub mod grpc;
pub mod keys;
pub mod mcp;
pub mod name;
pub mod node;
pub mod peer;
pub mod record;
pub mod resolver;
pub mod search;
pub mod store;
pub mod sys;
pub mod telemetry;
pub mod twins;
pub mod wire;
pub mod zone;
