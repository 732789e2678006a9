//! The meta tools of CONTRACT section 6, compatible with the Python AOP server.
//!
//! Names, arguments and top-level result keys follow swarms' `AOP` (14.0.2) so clients
//! written for it keep working: every result is one JSON text block with the same object as
//! `structuredContent`, and a failure is `success: false` with `error`. Swarms' per-agent
//! "discovery info" fields that have no meaning here (system prompt, model, sampling) keep
//! their keys with the values swarms itself reports for an agent that does not set them,
//! or the agent's `metadata` entries of the same names. Ours come beside them: the agent's
//! `name`, `zone`, `version`, `endpoints`, `input_schema`.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::gateway::Gateway;
use crate::gateway::directory::Mounted;
use crate::gateway::error::GatewayError;
use crate::mcp::tool_name::tool_name;
use crate::name::Name;
use crate::record::{Agent, limits};

pub const DISCOVER_AGENTS: &str = "discover_agents";
pub const GET_AGENT_DETAILS: &str = "get_agent_details";
pub const GET_AGENTS_INFO: &str = "get_agents_info";
pub const LIST_AGENTS: &str = "list_agents";
pub const SEARCH_AGENTS: &str = "search_agents";
pub const GET_SERVER_INFO: &str = "get_server_info";
pub const RESOLVE_AGENT: &str = "resolve_agent";
pub const CALL_AGENT: &str = "call_agent";
pub const ROUTE_TASK: &str = "route_task";

/// Every meta tool name. An agent whose plain tool name would be one of these (`list.agents`)
/// gets the hashed form instead (see `gateway::directory`), so meta tools are never shadowed.
pub const NAMES: [&str; 9] = [
    DISCOVER_AGENTS,
    GET_AGENT_DETAILS,
    GET_AGENTS_INFO,
    LIST_AGENTS,
    SEARCH_AGENTS,
    GET_SERVER_INFO,
    RESOLVE_AGENT,
    CALL_AGENT,
    ROUTE_TASK,
];

/// Default and largest number of agents one discovery or search answer carries.
const DEFAULT_LIMIT: usize = 100;

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

/// The meta tools' definitions.
pub fn tools() -> Vec<Tool> {
    let zone = json!({"type": "string", "description": "A zone (default: the mounted zones), e.g. finance.acme"});
    vec![
        Tool::new(
            DISCOVER_AGENTS,
            "Discover the agents of the mounted zones (or of `zone`), or one agent by name, with \
             their descriptions, tags, capabilities and endpoints.",
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
            "The names of the agents of the mounted zones (or of `zone`).",
            schema(json!({"type": "object", "properties": {"zone": zone}})),
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
pub(crate) fn answer(value: Value) -> CallToolResult {
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
pub(crate) fn failure(
    error: impl std::fmt::Display,
    main_key: &str,
    empty: Value,
) -> CallToolResult {
    let mut object = Map::new();
    object.insert("success".into(), Value::Bool(false));
    object.insert("error".into(), Value::String(error.to_string()));
    object.insert(main_key.into(), empty);
    answer(Value::Object(object))
}

/// Reads an optional string argument; a wrong type is the caller's error, named.
pub(crate) fn string_arg<'a>(
    args: &'a JsonObject,
    field: &'static str,
) -> Result<Option<&'a str>, GatewayError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(GatewayError::BadRequest {
            field,
            reason: "must be a string".into(),
        }),
    }
}

pub(crate) fn strings_arg(
    args: &JsonObject,
    field: &'static str,
) -> Result<Option<Vec<String>>, GatewayError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(GatewayError::BadRequest {
                    field,
                    reason: "must be an array of strings".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(GatewayError::BadRequest {
            field,
            reason: "must be an array of strings".into(),
        }),
    }
}

/// The caller's optional `timeout_ms`, a positive integer.
pub(crate) fn timeout_ms_arg(args: &JsonObject) -> Result<Option<u64>, GatewayError> {
    match args.get("timeout_ms") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value
                .as_u64()
                .filter(|ms| *ms >= 1)
                .map(Some)
                .ok_or(GatewayError::BadRequest {
                    field: "timeout_ms",
                    reason: "must be a positive integer (milliseconds)".into(),
                })
        }
    }
}

pub(crate) fn limit_arg(args: &JsonObject) -> Result<usize, GatewayError> {
    match args.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(value) => match value.as_u64() {
            Some(limit) if (1..=limits::PAGE_MAX as u64).contains(&limit) => Ok(limit as usize),
            _ => Err(GatewayError::BadRequest {
                field: "limit",
                reason: format!(
                    "must be an integer from 1 to {} (the page limit)",
                    limits::PAGE_MAX
                ),
            }),
        },
    }
}

pub(crate) fn zone_arg(gateway: &Gateway, args: &JsonObject) -> Result<Option<Name>, GatewayError> {
    let Some(text) = string_arg(args, "zone")? else {
        return Ok(None);
    };
    let zone = Name::parse(text).map_err(|error| GatewayError::BadRequest {
        field: "zone",
        reason: error.to_string(),
    })?;
    if !gateway
        .directory()
        .mounts()
        .iter()
        .any(|mount| zone.is_at_or_below(mount))
    {
        return Err(GatewayError::BadRequest {
            field: "zone",
            reason: format!(
                "{zone} is not at or below a zone this gateway mounts ({})",
                mounts_list(gateway)
            ),
        });
    }
    Ok(Some(zone))
}

pub(crate) fn mounts_list(gateway: &Gateway) -> String {
    let mounts: Vec<String> = gateway
        .directory()
        .mounts()
        .iter()
        .map(Name::to_string)
        .collect();
    if mounts.is_empty() {
        "none".into()
    } else {
        mounts.join(", ")
    }
}

/// The agents at or below `zone` (or all mounted ones), in name order.
fn agents_below(mounted: &Mounted, zone: Option<&Name>) -> Vec<Arc<Agent>> {
    match zone {
        None => mounted.listing.agents.clone(),
        Some(zone) => mounted
            .listing
            .agents
            .iter()
            .filter(|agent| agent.name.is_at_or_below(zone))
            .cloned()
            .collect(),
    }
}

/// Swarms' "discovery info" of one agent, plus our fields.
/// The tool name the gateway gives `agent`: the hashed form when the plain one would be a
/// meta tool's (an agent `list.agents` must not shadow `list_agents`).
pub fn agent_tool_name(agent: &Agent) -> String {
    let tool = tool_name(&agent.name);
    if NAMES.contains(&tool.as_str()) {
        crate::mcp::tool_name::hashed_tool_name(&agent.name)
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
            "url": e.url, "tool": e.tool, "priority": e.priority, "weight": e.weight
        })).collect::<Vec<_>>(),
    })
}

fn short_prompt(prompt: &str) -> String {
    match prompt.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &prompt[..cut]),
        None => prompt.to_string(),
    }
}

/// Swarms' "agent info" of one agent, plus our fields.
fn agent_info(agent: &Agent) -> Value {
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

/// Finds a mounted agent by FQDN (with or without a trailing dot) or tool name.
pub fn find_mounted(gateway: &Gateway, text: &str) -> Option<Arc<Agent>> {
    let mounted = gateway.directory().current();
    if let Some(agent) = mounted.listing.by_tool.get(text) {
        return Some(Arc::clone(agent));
    }
    let name = Name::parse(text).ok()?;
    mounted.listing.by_name.get(&name).cloned()
}

/// Runs meta tool `tool`, or `None` when `tool` is not a meta tool.
pub async fn call(
    gateway: &Gateway,
    tool: &str,
    args: &JsonObject,
    context: &crate::gateway::call::CallContext,
) -> Option<CallToolResult> {
    Some(match tool {
        DISCOVER_AGENTS => discover_agents(gateway, args),
        GET_AGENT_DETAILS => get_agent_details(gateway, args),
        GET_AGENTS_INFO => get_agents_info(gateway, args),
        LIST_AGENTS => list_agents(gateway, args),
        SEARCH_AGENTS => crate::gateway::search::search_agents(gateway, args).await,
        ROUTE_TASK => crate::gateway::search::route_task(gateway, args, context).await,
        GET_SERVER_INFO => get_server_info(gateway).await,
        RESOLVE_AGENT => resolve_agent(gateway, args).await,
        CALL_AGENT => call_agent(gateway, args, context).await,
        _ => return None,
    })
}

fn discover_agents(gateway: &Gateway, args: &JsonObject) -> CallToolResult {
    let run = || -> Result<Value, GatewayError> {
        if let Some(name) = string_arg(args, "agent_name")? {
            let agent = find_mounted(gateway, name).ok_or_else(|| GatewayError::BadRequest {
                field: "agent_name",
                reason: format!(
                    "Agent '{name}' not found in the mounted zones ({})",
                    mounts_list(gateway)
                ),
            })?;
            return Ok(json!({"success": true, "agents": [discovery_info(&agent)]}));
        }
        let zone = zone_arg(gateway, args)?;
        let limit = limit_arg(args)?;
        let after = string_arg(args, "cursor")?;
        let mounted = gateway.directory().current();
        let agents = agents_below(&mounted, zone.as_ref());
        let total = agents.len();
        let start = match after {
            None => 0,
            Some(after) => agents.partition_point(|agent| agent.name.as_str() <= after),
        };
        let page: Vec<Value> = agents[start..]
            .iter()
            .take(limit)
            .map(|agent| discovery_info(agent))
            .collect();
        let next =
            (start + page.len() < total).then(|| agents[start + page.len() - 1].name.to_string());
        Ok(json!({"success": true, "agents": page, "total_count": total, "next_cursor": next}))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agents", json!([])),
    }
}

fn get_agent_details(gateway: &Gateway, args: &JsonObject) -> CallToolResult {
    let run = || -> Result<Value, GatewayError> {
        let name = string_arg(args, "agent_name")?.ok_or(GatewayError::BadRequest {
            field: "agent_name",
            reason: "is required".into(),
        })?;
        let agent = find_mounted(gateway, name).ok_or_else(|| GatewayError::BadRequest {
            field: "agent_name",
            reason: format!(
                "Agent '{name}' not found in the mounted zones ({})",
                mounts_list(gateway)
            ),
        })?;
        Ok(json!({
            "success": true,
            "agent_info": agent_info(&agent),
            "discovery_info": discovery_info(&agent),
        }))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agent_info", Value::Null),
    }
}

fn get_agents_info(gateway: &Gateway, args: &JsonObject) -> CallToolResult {
    let run = || -> Result<Value, GatewayError> {
        let names = strings_arg(args, "agent_names")?.unwrap_or_default();
        if names.is_empty() {
            return Err(GatewayError::BadRequest {
                field: "agent_names",
                reason: "No agent names provided".into(),
            });
        }
        if names.len() > limits::PAGE_MAX {
            return Err(GatewayError::BadRequest {
                field: "agent_names",
                reason: format!(
                    "{} names is over the limit of {}",
                    names.len(),
                    limits::PAGE_MAX
                ),
            });
        }
        let mut found = Vec::new();
        let mut not_found = Vec::new();
        for name in &names {
            match find_mounted(gateway, name) {
                Some(agent) => found.push(json!({
                    "agent_name": agent.name.to_string(),
                    "agent_info": agent_info(&agent),
                    "discovery_info": discovery_info(&agent),
                })),
                None => not_found.push(name.clone()),
            }
        }
        Ok(json!({
            "success": true,
            "total_found": found.len(),
            "agents_info": found,
            "not_found": not_found,
            "total_requested": names.len(),
        }))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agents_info", json!([])),
    }
}

fn list_agents(gateway: &Gateway, args: &JsonObject) -> CallToolResult {
    let run = || -> Result<Value, GatewayError> {
        let zone = zone_arg(gateway, args)?;
        let mounted = gateway.directory().current();
        let names: Vec<String> = agents_below(&mounted, zone.as_ref())
            .iter()
            .map(|agent| agent.name.to_string())
            .collect();
        Ok(json!({"success": true, "total_count": names.len(), "agent_names": names}))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agent_names", json!([])),
    }
}

async fn get_server_info(gateway: &Gateway) -> CallToolResult {
    let mounted = gateway.directory().current();
    let zones: Vec<Value> = mounted
        .zones
        .values()
        .map(|zone| {
            json!({
                "zone": zone.origin.to_string(),
                "serial": zone.serial,
                "agents": zone.agents.len(),
                "error": zone.error,
            })
        })
        .collect();
    let tools: Vec<&String> = mounted.listing.by_tool.keys().collect();
    let uptime = gateway.started().elapsed().as_secs_f64();
    answer(json!({
        "success": true,
        "server_info": {
            "server_name": "aop-gateway",
            "description": "AOP registry MCP gateway: discovers and calls agents across the federation",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": uptime,
            "resolver": gateway.config().resolver_url,
            "mounted_zones": zones,
            "total_agents": mounted.listing.by_name.len(),
            "total_tools": tools.len() + NAMES.len(),
            "tools": tools,
            "agent_names": mounted.listing.by_name.keys().map(Name::to_string).collect::<Vec<_>>(),
            "cache": gateway.names().stats(),
            "sessions": gateway.sessions().stats(),
            "open_breakers": gateway.breakers().open_endpoints().into_iter()
                .map(|(url, state)| json!({"endpoint": url, "state": state})).collect::<Vec<_>>(),
        }
    }))
}

async fn resolve_agent(gateway: &Gateway, args: &JsonObject) -> CallToolResult {
    let run = async {
        let text = string_arg(args, "name")?.ok_or(GatewayError::BadRequest {
            field: "name",
            reason: "is required".into(),
        })?;
        let name = Name::parse_agent(text).map_err(|error| GatewayError::BadRequest {
            field: "name",
            reason: error.to_string(),
        })?;
        let resolution = gateway.names().resolve(&name).await?;
        let answer = &resolution.answer;
        let agent = resolution.agent()?;
        Ok::<Value, GatewayError>(json!({
            "success": true,
            "name": answer.name.to_string(),
            "outcome": answer.outcome.word(),
            "aliases": answer.aliases.iter().map(|a| json!({"name": a.name.to_string(), "target": a.target.to_string()})).collect::<Vec<_>>(),
            "zone": answer.zone.to_string(),
            "zone_serial": answer.zone_serial,
            "ttl": resolution.remaining_ttl(),
            "served_by": answer.served_by.to_string(),
            "authoritative": answer.authoritative,
            "stale": answer.stale,
            "record": agent_info(agent),
            "endpoints": agent.endpoints.iter().map(|e| json!({
                "url": e.url, "tool": e.tool, "priority": e.priority, "weight": e.weight,
                "breaker": gateway.breakers().state(&e.url),
            })).collect::<Vec<_>>(),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "record", Value::Null),
    }
}

async fn call_agent(
    gateway: &Gateway,
    args: &JsonObject,
    context: &crate::gateway::call::CallContext,
) -> CallToolResult {
    let run = async {
        let text = string_arg(args, "name")?.ok_or(GatewayError::BadRequest {
            field: "name",
            reason: "is required".into(),
        })?;
        let name = Name::parse_agent(text).map_err(|error| GatewayError::BadRequest {
            field: "name",
            reason: error.to_string(),
        })?;
        let arguments = match args.get("arguments") {
            None | Some(Value::Null) => JsonObject::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => {
                return Err(GatewayError::BadRequest {
                    field: "arguments",
                    reason: "must be an object of the agent's arguments".into(),
                });
            }
        };
        let timeout_ms = timeout_ms_arg(args)?;
        gateway
            .call_by_name(&name, arguments, timeout_ms, context)
            .await
    };
    match run.await {
        Ok(outcome) => outcome.into_call_agent_result(),
        Err(error) => {
            let mut result = error.to_tool_result();
            result.structured_content = Some(json!({"success": false, "error": error.to_string()}));
            result
        }
    }
}
