//! The gateway as an MCP server: one handler per client session, all sharing the gateway.
//!
//! `tools/list` pages the meta tools and then every mounted agent's tool in tool-name order
//! (at most 500 a page, with the zone TTL as `ttlMs`; the cursor is the last tool name
//! returned, so pages stay stable while agents come and go); `tools/call` dispatches a meta tool, or an agent by
//! its tool name (or its FQDN, as Python AOP clients call agents by name). When the mounted
//! zones change, every session hears `notifications/tools/list_changed`: on its standalone
//! stream in the 2025 session era, through `subscriptions/listen` in the 2026-07-28 era.
//! A client that declares the MCP tasks extension gets agent tool calls as tasks on the
//! gateway's queues, and `tasks/get`, `tasks/update` and `tasks/cancel` ([`mcp_tasks`]).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, CustomRequest,
    CustomResult, GetTaskParams, GetTaskResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
    UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use crate::gateway::auth::Caller;
use crate::gateway::auth::policy::Policy;
use crate::gateway::call::CallContext;
use crate::gateway::error::GatewayError;
use crate::gateway::metrics::ToolKind;
use crate::gateway::state::Gateway;
use crate::gateway::{dispatch, mcp_tasks, meta};

/// Tools per `tools/list` page (docs/protocol.md §6).
pub const TOOLS_PAGE: usize = 500;

#[derive(Clone)]
pub struct GatewayServer {
    gateway: Arc<Gateway>,
}

impl GatewayServer {
    pub fn new(gateway: Arc<Gateway>) -> GatewayServer {
        GatewayServer { gateway }
    }
}

/// Every meta tool fits on the first page, so later pages are agent tools only.
const _: () = assert!(crate::gateway::shapes::NAMES.len() < TOOLS_PAGE);

/// What a `tools/list` cursor says: the first page, or the page after an agent tool name.
/// A name, not an index (docs/protocol.md §10.2): tools added or removed before it shift
/// nothing, so a tool present for the whole listing is listed exactly once.
const CURSOR_PREFIX: &str = "after:";

fn page_after(request: Option<&PaginatedRequestParams>) -> Result<Option<&str>, ErrorData> {
    let Some(cursor) = request.and_then(|r| r.cursor.as_deref()) else {
        return Ok(None);
    };
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .filter(|name| {
            (1..=crate::mcp::tool_name::TOOL_NAME_MAX).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(Some)
        .ok_or_else(|| {
            ErrorData::invalid_params(
                format!("invalid cursor {cursor:?}: pass the nextCursor of a previous tools/list"),
                None,
            )
        })
}

impl ServerHandler for GatewayServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            "aop-gateway",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "AOP registry gateway. Find agents with discover_agents, list_agents and \
             search_agents; call them with their own tools (one per agent of the mounted \
             zones, named after the agent: analyst.finance.acme is analyst_finance_acme) or \
             with call_agent for any agent in the federation. Clients that declare the \
             io.modelcontextprotocol/tasks extension get agent tool calls as tasks (poll \
             tasks/get).",
        )
    }

    /// `tasks/get` (SEP-2663) of a task an agent tool call made ([`mcp_tasks`]).
    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        mcp_tasks::get(&self.gateway, &request).map_err(|error| error.to_error_data())
    }

    /// `tasks/update`: acknowledged (the gateway never asks for input).
    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        mcp_tasks::update(&self.gateway, &request).map_err(|error| error.to_error_data())
    }

    /// `tasks/cancel`: through the queue, reaching the agent's call.
    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        mcp_tasks::cancel(&self.gateway, &request)
            .await
            .map_err(|error| error.to_error_data())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let after = page_after(request.as_ref())?;
        let caller = self.caller_of(&context);
        let mounted = self.gateway.directory().current();
        let agent_tools = &mounted.listing.tools;
        // With `--auth`, only the agents the caller may see (docs/protocol.md §8.2).
        let visible = |tool: &Tool| {
            caller.as_ref().is_none_or(|caller| {
                mounted
                    .listing
                    .by_tool
                    .get(tool.name.as_ref())
                    .is_some_and(|agent| caller.sees(&agent.name))
            })
        };
        let mut page: Vec<Tool> = Vec::with_capacity(TOOLS_PAGE);
        let start = match after {
            None => {
                page.extend(self.gateway.meta_tools().iter().cloned());
                0
            }
            // Agent tools are in tool-name order.
            Some(after) => agent_tools.partition_point(|tool| tool.name.as_ref() <= after),
        };
        let mut end = start;
        while end < agent_tools.len() && page.len() < TOOLS_PAGE {
            if visible(&agent_tools[end]) {
                page.push(agent_tools[end].clone());
            }
            end += 1;
        }
        // The cursor is the last tool returned, never a hidden one scanned past (a page that
        // is full holds agent tools: the meta tools alone do not fill one).
        let more = agent_tools[end..].iter().any(visible);
        let next = more
            .then(|| page.last())
            .flatten()
            .map(|last| format!("{CURSOR_PREFIX}{}", last.name));
        let mut result = ListToolsResult::with_all_items(page).with_ttl_ms(mounted.ttl_ms());
        result.next_cursor = next;
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // Every tool call (meta tools and agents alike) gets a request id and runs in a span
        // carrying it, so each of its log lines names it.
        let request_id = crate::telemetry::RequestId::generate();
        let span = tracing::info_span!("tool_call", request_id = %request_id, tool = %request.name);
        // The id also travels to the resolver node with every gRPC call the tool makes. Boxed:
        // the nested futures (scope, span, the call path) would otherwise make the type of
        // every future that serves this handler too deep for the compiler's layout queries.
        let started = std::time::Instant::now();
        let tool = request.name.to_string();
        let call = tracing::Instrument::instrument(self.call_tool_in_span(request, context), span);
        let (response, kind, outcome) = Box::pin(request_id.scope(call)).await;
        self.gateway
            .metrics()
            .record_call(&tool, kind, outcome, started.elapsed());
        response
    }
    /// A request rmcp could not type: a `tools/call` or `tools/list` whose params do not
    /// fit (invalid params, naming the field), else a method the gateway does not serve.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let error = match crate::mcp::params::misfit(&request.method, request.params.as_ref()) {
            Some(reason) => GatewayError::InvalidParams { reason },
            None => GatewayError::UnknownMethod {
                method: request.method,
            },
        };
        Err(error.to_error_data())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.gateway.sessions_to_notify().add(context.peer);
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.gateway.directory().subscribe();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// What one `tools/call` answered, and how it counts: the kind of tool (`None`: unknown)
/// and the outcome label.
type Answered = (
    Result<CallToolResponse, ErrorData>,
    Option<ToolKind>,
    &'static str,
);

/// `ok`, or `error` for a result the tool marked `isError`.
fn result_label(result: &CallToolResult, error: &'static str) -> &'static str {
    if result.is_error == Some(true) {
        error
    } else {
        "ok"
    }
}

impl GatewayServer {
    /// The authenticated caller of a request (`--auth`): what the HTTP layer put in the
    /// request's extensions, which rmcp hands over with the request's parts. With `--auth`
    /// and no caller (which the HTTP layer never lets through), a caller that sees nothing.
    fn caller_of(&self, context: &RequestContext<RoleServer>) -> Option<Arc<Caller>> {
        let auth = self.gateway.config().auth.as_ref()?;
        let found = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Caller>>())
            .cloned();
        Some(found.unwrap_or_else(|| {
            tracing::warn!(file = %auth.config().file.display(), "a request reached the gateway without a caller; it sees nothing");
            Arc::new(Caller {
                subject: "anonymous".into(),
                scopes: Vec::new(),
                policy: Arc::new(Policy::nothing("anonymous")),
            })
        }))
    }

    async fn call_tool_in_span(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Answered {
        let arguments = request.arguments.unwrap_or_default();
        let call_context = CallContext {
            progress: context
                .meta
                .get_progress_token()
                .map(|token| (token, context.peer.clone())),
            cancel: context.ct.clone(),
            caller: self.caller_of(&context),
        };
        if let Some(result) =
            dispatch::meta_tool(&self.gateway, &request.name, &arguments, &call_context).await
        {
            let outcome = result_label(&result, "error");
            return (Ok(result.into()), Some(ToolKind::Meta), outcome);
        }
        // An agent the caller may not see is an unknown tool, as one that does not exist.
        let Some(agent) = meta::find_visible(&self.gateway, &request.name, &call_context) else {
            let error = GatewayError::UnknownTool {
                tool: request.name.to_string(),
            };
            return (Err(error.to_error_data()), None, error.label());
        };
        // A client that declared the tasks extension gets the call as a queued task.
        if mcp_tasks::declared(&context) {
            let (response, outcome) = mcp_tasks::create(&self.gateway, &agent, arguments).await;
            return (response, Some(ToolKind::Agent), outcome);
        }
        match self
            .gateway
            .call_by_name(&agent.name, arguments, None, &call_context)
            .await
        {
            Ok(outcome) => {
                let result = outcome.into_agent_tool_result();
                // The agent answered, with its own failure or not.
                let outcome = result_label(&result, "agent_error");
                (Ok(result.into()), Some(ToolKind::Agent), outcome)
            }
            Err(error) => (
                Ok(error.to_agent_tool_result().into()),
                Some(ToolKind::Agent),
                error.label(),
            ),
        }
    }
}
