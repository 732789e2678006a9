//! Built-in demo agents: real MCP servers with no LLM (`aop agent serve`).
//!
//! Each serves one tool, named after the agent, at `http://ADDR/mcp`, and takes the AOP
//! agent-tool arguments (`task`, `img`, `imgs`, `correct_answer`; the sleeper also `ms`).
//! Their answers are deterministic ([`kinds`]) so tests and the demo can check them, and they
//! behave as a well-mannered agent should: bad arguments give an `isError` result naming the
//! field, the sleeper reports progress when asked and stops when the call is cancelled.

pub mod kinds;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CustomRequest,
    CustomResult, ErrorCode, Implementation, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

pub use kinds::AgentKind;

use crate::mcp::http::{self, HttpGuards, McpHttpServer};

/// The longest a sleeper sleeps: an hour, the longest agent timeout a zone may set.
pub const SLEEP_MAX_MS: u64 = 3_600_000;
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// One built-in agent: its kind, its tool name and how many calls it has served.
#[derive(Debug, Clone)]
pub struct BuiltinAgent {
    inner: Arc<AgentInner>,
}

#[derive(Debug)]
struct AgentInner {
    kind: AgentKind,
    tool: Tool,
    calls: AtomicU64,
    cancelled: AtomicU64,
}

impl BuiltinAgent {
    /// An agent of `kind` whose one tool is called `tool_name`.
    pub fn new(kind: AgentKind, tool_name: &str) -> BuiltinAgent {
        let mut schema = aop_input_schema();
        if kind == AgentKind::Sleeper
            && let Some(Value::Object(properties)) = schema.get_mut("properties")
        {
            properties.insert(
                "ms".into(),
                json!({"type": "integer", "minimum": 0, "maximum": SLEEP_MAX_MS, "default": 1000,
                       "description": "How long to sleep, in milliseconds."}),
            );
        }
        // Every built-in kind is a pure function of its arguments: calling twice is harmless,
        // so the gateway may retry a call that timed out.
        let annotations = ToolAnnotations::new()
            .read_only(true)
            .destructive(false)
            .idempotent(true)
            .open_world(false);
        let tool = Tool::new(tool_name.to_string(), kind.description(), Arc::new(schema))
            .annotate(annotations);
        BuiltinAgent {
            inner: Arc::new(AgentInner {
                kind,
                tool,
                calls: AtomicU64::new(0),
                cancelled: AtomicU64::new(0),
            }),
        }
    }

    pub fn kind(&self) -> AgentKind {
        self.inner.kind
    }

    pub fn tool_name(&self) -> &str {
        &self.inner.tool.name
    }

    /// Calls answered so far (successful or not).
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Calls its caller cancelled before they finished.
    pub fn cancelled(&self) -> u64 {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// Serves this agent on `listener` at `/mcp`.
    pub fn serve_http(&self, listener: TcpListener) -> std::io::Result<McpHttpServer> {
        let agent = self.clone();
        http::serve(listener, HttpGuards::default(), move || agent.clone())
    }

    async fn run(
        &self,
        arguments: &Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<String, String> {
        let task = match arguments.get("task") {
            Some(Value::String(task)) => task.as_str(),
            Some(_) => return Err("argument `task` must be a string".into()),
            None => return Err("missing required argument `task` (string)".into()),
        };
        for field in ["img", "correct_answer"] {
            if let Some(value) = arguments.get(field)
                && !value.is_string()
                && !value.is_null()
            {
                return Err(format!("argument `{field}` must be a string"));
            }
        }
        match self.inner.kind {
            AgentKind::Echo => Ok(task.to_string()),
            AgentKind::Analyst => Ok(kinds::analyse(task)),
            AgentKind::Writer => Ok(kinds::outline(task)),
            AgentKind::Sleeper => {
                let ms = match arguments.get("ms") {
                    None | Some(Value::Null) => 1000,
                    Some(value) => match value.as_u64() {
                        Some(ms) if ms <= SLEEP_MAX_MS => ms,
                        _ => {
                            return Err(format!(
                                "argument `ms` must be an integer from 0 to {SLEEP_MAX_MS}"
                            ));
                        }
                    },
                };
                if let Err(message) = sleep_with_progress(ms, context).await {
                    self.inner.cancelled.fetch_add(1, Ordering::Relaxed);
                    return Err(message);
                }
                Ok(format!("slept {ms} ms"))
            }
        }
    }
}

/// Sleeps `ms`, sending progress every 100 ms when the caller asked for it; a cancelled call
/// stops sleeping at once.
async fn sleep_with_progress(ms: u64, context: &RequestContext<RoleServer>) -> Result<(), String> {
    let token = context.meta.get_progress_token();
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(ms);
    loop {
        let next = match token {
            Some(_) => (tokio::time::Instant::now() + PROGRESS_EVERY).min(deadline),
            None => deadline,
        };
        tokio::select! {
            _ = context.ct.cancelled() => return Err("cancelled by the caller".into()),
            _ = tokio::time::sleep_until(next) => {}
        }
        if next >= deadline {
            return Ok(());
        }
        if let Some(token) = &token {
            let done = started.elapsed().as_millis() as f64;
            let progress = ProgressNotificationParam::new(token.clone(), done)
                .with_total(ms as f64)
                .with_message(format!("slept {done} of {ms} ms"));
            // A client that went away is not our failure; the sleep goes on to its end.
            let _ = context.peer.notify_progress(progress).await;
        }
    }
}

/// The AOP agent-tool input schema (docs/protocol.md §2): `task` required, `img`, `imgs`,
/// `correct_answer` optional.
pub fn aop_input_schema() -> Map<String, Value> {
    match crate::record::default_input_schema().value() {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    }
}

impl ServerHandler for BuiltinAgent {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                format!("aop-agent-{}", self.inner.kind),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(format!(
                "A built-in AOP demo agent ({}). Call the `{}` tool with a `task`.",
                self.inner.kind,
                self.tool_name()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            self.inner.tool.clone(),
        ]))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        (name == self.tool_name()).then(|| self.inner.tool.clone())
    }

    /// A `tools/call` whose params do not fit is invalid params, as at the gateway
    /// (`mcp::params`); any other untyped request is a method this agent does not serve.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(
            match crate::mcp::params::misfit(&request.method, request.params.as_ref()) {
                Some(reason) => {
                    ErrorData::invalid_params(format!("invalid params: {reason}"), None)
                }
                None => ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("method not found: {}", request.method),
                    None,
                ),
            },
        )
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != self.tool_name() {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{}`: this agent serves one tool, `{}`",
                    request.name,
                    self.tool_name()
                ),
                None,
            ));
        }
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let arguments = request.arguments.unwrap_or_default();
        let result = match self.run(&arguments, &context).await {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        };
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeper_schema_adds_ms_to_the_aop_schema() {
        let sleeper = BuiltinAgent::new(AgentKind::Sleeper, "sleeper");
        let properties = &sleeper.inner.tool.input_schema["properties"];
        assert!(properties.get("task").is_some());
        assert_eq!(properties["ms"]["type"], "integer");
        let echo = BuiltinAgent::new(AgentKind::Echo, "echo");
        assert!(
            echo.inner.tool.input_schema["properties"]
                .get("ms")
                .is_none()
        );
        assert_eq!(
            echo.inner.tool.input_schema["required"],
            json!(["task"]),
            "the AOP schema requires task"
        );
    }
}
