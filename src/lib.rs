//! The AOP agent registry: DNS-like zone servers for AI agents.
//!
//! Each node is authoritative for dotted zones of agent names (`finance.acme`), answers
//! lookups from its zones over gRPC, and delegates child zones to other nodes, as DNS does
//! for host names.
//!
//! # Layout
//!
//! The parts, from the core outwards (ARCHITECTURE.md has the rules of what may import
//! what; `.ci/boundaries` checks them). The protocol is specified in `docs/protocol.md`.
//!
//! Vocabulary, used by everything and using nothing of ours:
//!
//! - [`name`]: agent and zone names, their rules and canonical form.
//! - [`record`]: agents, endpoints, aliases, delegations, zone headers; field rules and limits;
//!   records with their provenance and the typed changes between serials; the interned
//!   vocabularies (tags, capabilities, versions) they share.
//! - [`answer`]: what a lookup returns, whoever produced it.
//! - [`clock`]: time as an input, so TTL and lease logic is tested by moving time by hand.
//! - [`telemetry`]: request ids, latency histograms, the recent-queries ring.
//! - [`peer`]: the one classification of another party's failure, and whether to retry.
//! - [`admission`]: bounds in total and per client (connections, streams, sessions).
//! - [`rebinding`]: which `Host` headers the HTTP doors answer (DNS-rebinding protection).
//! - [`tls`]: rustls settings of every TLS link (servers, clients, reloads on SIGHUP), the
//!   HTTP doors' listener (plaintext or HTTPS), the development CA of `aop cert`.
//!
//! The core:
//!
//! - [`wire`]: the protobuf messages and the one codec to and from domain types.
//! - [`zone`]: an immutable zone snapshot (persistent maps: the next one is derived from a
//!   change in O(changed records)) and its authoritative lookup; zone files
//!   ([`zone::file`]) and the spanned-TOML reader ([`zone::spanned`]).
//! - [`catalog`]: the zones one node serves, and the closest enclosing zone of a name.
//! - [`authority`]: live zones: updates, leases, reloads, the durable writer, replication.
//! - [`store`]: the durable store (redb) of zones, records, leases and the change log, and
//!   backups of it ([`store::backup`]).
//! - [`keys`]: update keys, canonical signed fields, the replay cache.
//! - [`resolver`]: recursive resolution through multi-level caches, with failover across a
//!   zone's servers and stale answers when every server fails.
//! - [`search`]: per-zone ranked search and the federated walk and merge.
//! - [`health`]: a primary's probes of its agents' endpoints, written into its zones as
//!   endpoint health (the probe itself is behind a trait; `mcp::probe` speaks MCP).
//!
//! The doors, the gateway and what operators see:
//!
//! - [`grpc`]: the `aop.v1` gRPC service, server and typed client; the core's peers over gRPC.
//! - [`dns`]: the same zones over UDP and TCP DNS (hickory-proto wire types).
//! - [`gateway`]: the MCP gateway for LLM hosts (with `--auth`, an OAuth 2.1 resource server:
//!   `gateway::auth`); [`mcp`]: MCP serving and client plumbing;
//!   [`agent`]: built-in demo agents.
//! - [`admin`]: Prometheus metrics, health, readiness and the status page.
//!
//! Inside one operator's fleet:
//!
//! - [`membership`]: SWIM gossip among the operator's nodes (foca), sealed with the group
//!   key: who is alive, what each serves at which serial, its load.
//!
//! Assembly and support:
//!
//! - [`node`]: starts a node's listeners and tasks, hands back a handle, shuts down cleanly.
//! - [`fleet`]: a node's membership wired to its authority and resolver.
//! - [`config`]: node configuration files (`deploy/nodes/*.toml`).
//! - [`demo`]: the whole federation of `zones/` in one process.
//! - [`bench`]: the load generators behind `aop bench`.
//! - [`sys`]: the crate's only unsafe code (batched UDP, `malloc_trim`, `kill`).
//! - [`twins`]: in-memory peers for tests.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`, one per decoder of
//!   bytes from another party.
//!
//! The `aop` command line lives in the binary (`src/main.rs`, `src/cli/`), the only place
//! that formats for humans.

// Peers and files are input: the library never unwraps what they can influence (tests may;
// clippy.toml allows it there).
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod admission;
pub mod agent;
pub mod answer;
pub mod authority;
pub mod bench;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dns;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod grpc;
pub mod health;
pub mod keys;
pub mod mcp;
pub mod membership;
pub mod name;
pub mod node;
pub mod peer;
pub mod rebinding;
pub mod record;
pub mod resolver;
pub mod search;
pub mod store;
pub mod sys;
pub mod telemetry;
pub mod tls;
pub mod twins;
pub mod wire;
pub mod zone;
