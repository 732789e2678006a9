//! MCP plumbing shared by the built-in agents and the gateway.
//!
//! - [`client`]: a plain client session, for callers that only call tools.
//! - [`http`]: serving a handler over Streamable HTTP at `/mcp`, with the body limit,
//!   Origin/Host checks, the optional bearer token and graceful shutdown.
//! - [`tool_name`]: agent names as tool names LLM APIs accept, and back.

pub mod client;
pub mod http;
pub mod tool_name;
