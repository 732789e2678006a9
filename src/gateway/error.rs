//! Everything a gateway call can fail with, and its one mapping to MCP.
//!
//! docs/protocol.md §6: business failures (no such agent, bad arguments, every endpoint
//! failed) are tool results with `isError: true`, so the LLM reads the message; malformed
//! requests and unknown tools are JSON-RPC errors. Meta tools answer failures in the Python
//! AOP shape, `{"success": false, "error": ...}`.

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock, ErrorCode};

use crate::name::Name;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("unknown tool `{tool}`: see tools/list for the tools this gateway offers")]
    UnknownTool { tool: String },
    /// A request of a method the gateway serves whose params do not fit it.
    #[error("invalid params: {reason}")]
    InvalidParams { reason: String },
    #[error("method not found: {method}")]
    UnknownMethod { method: String },
    #[error("invalid {field}: {reason}")]
    BadRequest { field: &'static str, reason: String },
    #[error("no such agent: {name} ({outcome})")]
    NoSuchAgent { name: Name, outcome: &'static str },
    #[error("cannot resolve {name}: {reason}")]
    Resolve { name: Name, reason: String },
    #[error("invalid arguments for {agent}: {}", problems.join("; "))]
    InvalidArguments { agent: Name, problems: Vec<String> },
    #[error("agent {agent} has no endpoints to call")]
    NoEndpoints { agent: Name },
    #[error(
        "agent {agent} did not answer within {timeout_ms} ms (its time budget, retries included){}",
        attempts_note(attempts)
    )]
    Timeout {
        agent: Name,
        timeout_ms: u64,
        attempts: Vec<String>,
    },
    #[error("agent {agent} failed after {} attempt(s): {}", attempts.len(), attempts.join("; "))]
    Failed { agent: Name, attempts: Vec<String> },
    #[error("the call to {agent} was cancelled by the caller")]
    Cancelled { agent: Name },
}

fn attempts_note(attempts: &[String]) -> String {
    if attempts.is_empty() {
        String::new()
    } else {
        format!("; attempts: {}", attempts.join("; "))
    }
}

impl GatewayError {
    /// Whether this error is the caller's request being unroutable (a JSON-RPC error) rather
    /// than a failure the caller should read in a tool result.
    pub fn is_protocol_error(&self) -> bool {
        matches!(
            self,
            GatewayError::UnknownTool { .. }
                | GatewayError::InvalidParams { .. }
                | GatewayError::UnknownMethod { .. }
        )
    }

    /// The JSON-RPC error for protocol errors: method not found for a method the gateway
    /// does not serve, invalid params for the rest.
    pub fn to_error_data(&self) -> ErrorData {
        match self {
            GatewayError::UnknownMethod { .. } => {
                ErrorData::new(ErrorCode::METHOD_NOT_FOUND, self.to_string(), None)
            }
            _ => ErrorData::invalid_params(self.to_string(), None),
        }
    }

    /// The tool result of an agent tool (or `call_agent`) that failed.
    pub fn to_tool_result(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(self.to_string())])
    }
}
