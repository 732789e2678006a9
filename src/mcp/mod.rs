//! MCP plumbing shared by the built-in agents and the gateway.
//!
//! - [`body`]: what a POST body must be (one JSON-RPC message, bounded in size and nesting)
//!   and the one mapping of a bad body to HTTP 400 or 413 with a JSON-RPC error.
//! - [`client`]: a plain client session, for callers that only call tools.
//! - [`params`]: what is wrong with the params of a request rmcp could not type (a
//!   `tools/call` whose `arguments` is not an object), so handlers answer invalid params.
//! - [`http`]: serving a handler over Streamable HTTP at `/mcp`, with the body limit,
//!   Origin/Host checks, the optional bearer token and graceful shutdown.
//! - [`https`]: the HTTP client of agent calls and probes, over rustls with `--ca`,
//!   following its reloads.
//! - [`probe`]: the endpoint health probe, one `initialize` request (docs/protocol.md §9.1).
//! - [`tool_name`]: agent names as tool names LLM APIs accept, and back.

pub mod body;
pub mod client;
pub mod http;
pub mod https;
pub mod params;
pub mod probe;
pub mod tool_name;
