//! What the gateway's tools and answers look like: the meta tools' names and definitions, the AOP answer shape (one
//! JSON text block and the same object as `structuredContent`, `success: false` with `error`
//! on failure), swarms' per-agent "discovery info" and "agent info" with our fields beside
//! them, and the tool name each agent gets.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::args::DEFAULT_LIMIT;
use super::task_shapes;
use crate::record::limits;

use crate::mcp::tool_name::{hashed_tool_name, tool_name};
use crate::record::{Agent, Endpoint};

pub const DISCOVER_AGENTS: &str = "discover_agents";
pub const GET_AGENT_DETAILS: &str = "get_agent_details";
pub const GET_AGENTS_INFO: &str = "get_agents_info";
pub const LIST_AGENTS: &str = "list_agents";
pub const SEARCH_AGENTS: &str = "search_agents";
pub const GET_SERVER_INFO: &str = "get_server_info";
pub const RESOLVE_AGENT: &str = "resolve_agent";
pub const CALL_AGENT: &str = "call_agent";
pub const ROUTE_TASK: &str = "route_task";
pub const LIST_AGENT_ROSTER: &str = "list_agent_roster";

/// Every meta tool name. An agent whose plain tool name would be one of these (`list.agents`)
/// gets the hashed form instead (see `gateway::directory`), so meta tools are never shadowed.
pub const NAMES: [&str; 20] = [
    DISCOVER_AGENTS,
    GET_AGENT_DETAILS,
    GET_AGENTS_INFO,
    LIST_AGENTS,
    SEARCH_AGENTS,
    GET_SERVER_INFO,
    RESOLVE_AGENT,
    CALL_AGENT,
    ROUTE_TASK,
    LIST_AGENT_ROSTER,
    task_shapes::NAMES[0],
    task_shapes::NAMES[1],
    task_shapes::NAMES[2],
    task_shapes::NAMES[3],
    task_shapes::NAMES[4],
    task_shapes::NAMES[5],
    task_shapes::NAMES[6],
    task_shapes::NAMES[7],
    task_shapes::NAMES[8],
    task_shapes::NAMES[9],
];

/// Default and largest number of agents one discovery or search answer carries.
fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

/// The meta tools' definitions, the task tools' included.
pub fn tools() -> Vec<Tool> {
    let mut tools = discovery_tools();
    tools.extend(task_shapes::tools());
    tools
}

fn discovery_tools() -> Vec<Tool> {
    let zone = json!({"type": "string", "description": "A zone (default: the mounted zones), e.g. finance.acme"});
    vec![
        Tool::new(
            DISCOVER_AGENTS,
            "Discover the agents of the mounted zones (or of `zone`, any zone of the federation), \
             or one agent by name, with their descriptions, tags, capabilities and endpoints.",
            schema(json!({
                "type": "object",
                "properties": {
                    "agent_name": {"type": "string", "description": "An agent's name (analyst.finance.acme) or tool name"},
                    "zone": zone,
                    "limit": {"type": "integer", "minimum": 1, "maximum": limits::PAGE_MAX, "default": DEFAULT_LIMIT},
                    "cursor": {"type": "string", "description": "next_cursor of a previous answer"}
                }
            })),
        )
        .annotate(read_only()),
        Tool::new(
            GET_AGENT_DETAILS,
            "Everything known about one agent: its record and its discovery information.",
            schema(json!({
                "type": "object",
                "properties": {"agent_name": {"type": "string", "description": "An agent's name or tool name"}},
                "required": ["agent_name"]
            })),
        )
        .annotate(read_only()),
        Tool::new(
            GET_AGENTS_INFO,
            "Details of several agents at once; names not found are listed apart.",
            schema(json!({
                "type": "object",
                "properties": {"agent_names": {"type": "array", "items": {"type": "string"}, "maxItems": limits::PAGE_MAX}},
                "required": ["agent_names"]
            })),
        )
        .annotate(read_only()),
        Tool::new(
            LIST_AGENTS,
            "The names of the agents of the mounted zones (or of `zone`, any zone of the federation).",
            schema(json!({"type": "object", "properties": {"zone": zone}})),
        )
        .annotate(read_only()),
        Tool::new(
            LIST_AGENT_ROSTER,
            "Browse many agents cheaply: a page of light entries (name, zone, the first line of \
             the description, tags, capabilities) of the mounted zones or of `zone`, in name \
             order. Page on with `next_cursor`; the cursor keeps working while agents come \
             and go. get_agent_details gives one agent's full record and schema.",
            schema(json!({
                "type": "object",
                "properties": {
                    "zone": zone,
                    "limit": {"type": "integer", "minimum": 1, "maximum": limits::PAGE_MAX, "default": DEFAULT_LIMIT},
                    "cursor": {"type": "string", "description": "next_cursor of a previous answer"}
                }
            })),
        )
        .annotate(read_only()),
        Tool::new(
            SEARCH_AGENTS,
            "Search agents by words of their names, descriptions, tags and capabilities, \
             filtered by tags, capabilities and zone; best matches first.",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "search_fields": {"type": "array", "items": {"type": "string", "enum": ["name", "description", "tags", "capabilities"]},
                                      "description": "Fields to search (default: all four)"},
                    "zone": zone,
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Only agents with every one of these tags"},
                    "capabilities": {"type": "array", "items": {"type": "string"}, "description": "Only agents with every one of these capabilities"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": limits::PAGE_MAX, "default": DEFAULT_LIMIT}
                },
                "required": ["query"]
            })),
        )
        .annotate(read_only()),
        Tool::new(
            GET_SERVER_INFO,
            "This gateway: version, uptime, resolver, mounted zones, cache and breaker state.",
            schema(json!({"type": "object", "properties": {}})),
        )
        .annotate(read_only()),
        Tool::new(
            RESOLVE_AGENT,
            "Resolve any agent name in the federation to its record and endpoints, with the \
             TTL, the node that served it, and whether it was authoritative or stale.",
            schema(json!({
                "type": "object",
                "properties": {"name": {"type": "string", "description": "e.g. analyst.finance.acme"}},
                "required": ["name"]
            })),
        )
        .annotate(read_only()),
        Tool::new(
            CALL_AGENT,
            "Call any agent in the federation by name with arguments for its tool (checked \
             against its input schema). Returns the agent's result and the endpoint that \
             answered.",
            schema(json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "e.g. analyst.finance.acme"},
                    "arguments": {"type": "object", "description": "The agent's arguments, e.g. {\"task\": \"...\"}"},
                    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": limits::TIMEOUT_MS_MAX,
                                   "description": "At most the agent's own timeout_ms"}
                },
                "required": ["name", "arguments"]
            })),
        )
        .annotate(ToolAnnotations::new().open_world(true)),
        Tool::new(
            ROUTE_TASK,
            "Give a task to the best agent for it: searches the mounted zones (and the zones \
             below them) for the task's words, calls the best-ranked live agent with `task`, \
             and falls back to the next candidate when one fails. Returns the agent's result, \
             the agent chosen and the candidates considered.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "What to do, in words; also the search query"},
                    "zone": zone,
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "Only agents with every one of these tags"},
                    "capabilities": {"type": "array", "items": {"type": "string"}, "description": "Only agents with every one of these capabilities"},
                    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": limits::TIMEOUT_MS_MAX,
                                   "description": "Bounds each agent call (at most the agent's own timeout_ms)"}
                },
                "required": ["task"]
            })),
        )
        .annotate(ToolAnnotations::new().open_world(true)),
    ]
}

/// A meta tool's answer: the object as pretty JSON text and as `structuredContent`.
pub fn answer(value: Value) -> CallToolResult {
    let failed = value.get("success") == Some(&Value::Bool(false));
    let text = serde_json::to_string(&value).unwrap_or_default();
    let mut result = if failed {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content = Some(value);
    result
}

/// A failed meta call: `success: false`, `error`, and the tool's main key, empty.
pub fn failure(error: impl std::fmt::Display, main_key: &str, empty: Value) -> CallToolResult {
    let mut object = Map::new();
    object.insert("success".into(), Value::Bool(false));
    object.insert("error".into(), Value::String(error.to_string()));
    object.insert(main_key.into(), empty);
    answer(Value::Object(object))
}

/// Swarms' "discovery info" of one agent, plus our fields.
/// The tool name the gateway gives `agent`: the hashed form when the plain one would be a
/// meta tool's (an agent `list.agents` must not shadow `list_agents`).
pub fn agent_tool_name(agent: &Agent) -> String {
    let tool = tool_name(&agent.name);
    if NAMES.contains(&tool.as_str()) {
        hashed_tool_name(&agent.name)
    } else {
        tool
    }
}

pub fn discovery_info(agent: &Agent) -> Value {
    let metadata = agent.metadata.as_ref().map(|doc| doc.value());
    let meta = |key: &str| metadata.and_then(|m| m.get(key)).cloned();
    let zone = agent
        .name
        .parent()
        .map(|zone| zone.to_string())
        .unwrap_or_default();
    json!({
        "tool_name": agent_tool_name(agent),
        "agent_name": agent.name.to_string(),
        "description": if agent.description.is_empty() { "No description available" } else { agent.description.as_str() },
        "short_system_prompt": meta("system_prompt").and_then(|v| v.as_str().map(short_prompt)).unwrap_or_default(),
        "tags": agent.tags,
        "capabilities": agent.capabilities,
        "role": meta("role").unwrap_or_else(|| json!("worker")),
        "model_name": meta("model_name").unwrap_or_else(|| json!("Unknown")),
        "max_loops": meta("max_loops").unwrap_or_else(|| json!(1)),
        "temperature": meta("temperature").unwrap_or_else(|| json!(0.5)),
        "max_tokens": meta("max_tokens").unwrap_or_else(|| json!(4096)),
        "name": agent.name.to_string(),
        "zone": zone,
        "version": agent.version,
        "endpoints": agent.endpoints.iter().map(|e| json!({
            "url": e.url, "tool": e.tool, "priority": e.priority, "weight": e.weight,
            "health": endpoint_health(e),
        })).collect::<Vec<_>>(),
    })
}

/// An endpoint's health as the zone's probes concluded (docs/protocol.md §9.1): `state`
/// (`up`, `down`, `unknown`), and once probed `since` (Unix seconds) and a down one's `error`.
pub fn endpoint_health(endpoint: &Endpoint) -> Value {
    let health = &endpoint.health;
    let mut shown = json!({ "state": health.state.word() });
    if health.since_unix > 0 {
        shown["since"] = json!(health.since_unix);
    }
    if !health.error.is_empty() {
        shown["error"] = json!(health.error);
    }
    shown
}

fn short_prompt(prompt: &str) -> String {
    match prompt.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &prompt[..cut]),
        None => prompt.to_string(),
    }
}

/// Swarms' "agent info" of one agent, plus our fields.
pub fn agent_info(agent: &Agent) -> Value {
    let metadata = agent.metadata.as_ref().map(|doc| doc.value());
    json!({
        "tool_name": agent_tool_name(agent),
        "agent_name": agent.name.to_string(),
        "agent_description": agent.description,
        "model_name": metadata.and_then(|m| m.get("model_name")).cloned().unwrap_or_else(|| json!("Unknown")),
        "max_loops": metadata.and_then(|m| m.get("max_loops")).cloned().unwrap_or_else(|| json!(1)),
        "tool_description": agent.description,
        "timeout": f64::from(agent.timeout_ms) / 1000.0,
        "timeout_ms": agent.timeout_ms,
        "max_retries": agent.max_retries,
        "verbose": false,
        "traceback_enabled": false,
        "version": agent.version,
        "ttl": agent.ttl,
        "input_schema": agent.input_schema.value(),
        "output_schema": agent.output_schema.as_ref().map(|s| s.value().clone()),
        "metadata": metadata.cloned(),
    })
}
