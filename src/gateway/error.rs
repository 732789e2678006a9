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
    #[error("missing argument `{field}` ({what}); {}", given_note(given))]
    MissingArgument {
        field: &'static str,
        what: String,
        given: Vec<String>,
    },
    #[error("no such agent: {name} ({outcome})")]
    NoSuchAgent { name: Name, outcome: &'static str },
    /// An agent the caller sees but may not call, reached where the HTTP layer could not
    /// refuse it with 403 first (through an alias, or as a `route_task` candidate).
    #[error("Forbidden: this caller may not call agent {agent} (not in its policy's call list)")]
    NotAllowed { agent: Name },
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
    #[error("agent {agent} failed after {} attempt(s): {}", attempts.len(), grouped(attempts))]
    Failed { agent: Name, attempts: Vec<String> },
    /// Every endpoint's breaker is open; `attempts` are this call's, the early probe of the
    /// endpoint open longest included (none when another call's probe was in flight).
    #[error(
        "every endpoint of agent {agent} has its circuit breaker open after repeated failures (the next scheduled probe in {} ms){}",
        next_probe.as_millis(),
        attempts_note(attempts)
    )]
    BreakersOpen {
        agent: Name,
        next_probe: std::time::Duration,
        attempts: Vec<String>,
    },
    #[error("the call to {agent} was cancelled by the caller")]
    Cancelled { agent: Name },
    /// A mounted zone the request reads has never been listed: its agents are unknown, not
    /// absent.
    /// `reason` names the resolver.
    #[error("mounted zone {zone} has not loaded: {reason}")]
    NotLoaded { zone: Name, reason: String },
    /// A `zone` argument inside the mounts that names nothing the mounted zones hold.
    #[error("no agents at or below {zone} in the mounted zones ({mounts}): check the name")]
    NoSuchZone { zone: Name, mounts: String },
    /// A `zone` argument outside the mounts that the federation does not know.
    #[error("no zone {zone} in the federation: {reason}")]
    UnknownZone { zone: Name, reason: String },
    /// No scope of a search answered (a zone that does not exist, or the resolver node
    /// unreachable): an error, never an empty list.
    #[error("search failed: {}", unanswered.iter().map(|(zone, reason)| format!("{zone}: {reason}")).collect::<Vec<_>>().join("; "))]
    SearchFailed { unanswered: Vec<(String, String)> },
}

fn given_note(given: &[String]) -> String {
    if given.is_empty() {
        "no arguments were given".into()
    } else {
        format!("the arguments given were: {}", given.join(", "))
    }
}

/// The attempts' failures in order, a run of identical ones said once with its count.
fn grouped(attempts: &[String]) -> String {
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for attempt in attempts {
        match runs.last_mut() {
            Some((text, count)) if *text == attempt.as_str() => *count += 1,
            _ => runs.push((attempt, 1)),
        }
    }
    runs.iter()
        .map(|(text, count)| match count {
            1 => text.to_string(),
            n => format!("{text} ({n} times)"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn attempts_note(attempts: &[String]) -> String {
    if attempts.is_empty() {
        String::new()
    } else {
        format!("; attempts: {}", grouped(attempts))
    }
}

impl GatewayError {
    /// The outcome label of a tool call that failed with this error (metrics).
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::UnknownTool { .. } => "unknown_tool",
            GatewayError::UnknownMethod { .. } => "unknown_method",
            GatewayError::InvalidParams { .. } => "invalid_params",
            GatewayError::BadRequest { .. } | GatewayError::MissingArgument { .. } => "bad_request",
            GatewayError::NoSuchZone { .. } | GatewayError::UnknownZone { .. } => "no_such_zone",
            GatewayError::NotLoaded { .. } => "zone_not_loaded",
            GatewayError::SearchFailed { .. } => "search_failed",
            GatewayError::BreakersOpen { .. } => "breakers_open",
            GatewayError::NoSuchAgent { .. } => "no_such_agent",
            GatewayError::NotAllowed { .. } => "forbidden",
            GatewayError::Resolve { .. } => "resolve_failed",
            GatewayError::InvalidArguments { .. } => "invalid_arguments",
            GatewayError::NoEndpoints { .. } => "no_endpoints",
            GatewayError::Timeout { .. } => "timeout",
            GatewayError::Failed { .. } => "failed",
            GatewayError::Cancelled { .. } => "cancelled",
        }
    }

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

    /// The answer of an agent's own tool that failed (docs/protocol.md §6): the message, and
    /// the AOP shape `{result: "", success: false, error}` as structured content.
    pub fn to_agent_tool_result(&self) -> CallToolResult {
        let mut result = self.to_tool_result();
        result.structured_content = Some(serde_json::json!({
            "result": "", "success": false, "error": self.to_string()
        }));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_attempts_are_said_once_with_their_count() {
        let attempts = ["a: refused", "a: refused", "b: timeout", "a: refused"].map(String::from);
        assert_eq!(
            grouped(&attempts),
            "a: refused (2 times); b: timeout; a: refused"
        );
        assert_eq!(grouped(&[]), "");
    }
}
