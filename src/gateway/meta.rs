//! The meta tools of docs/protocol.md §6, compatible with the Python AOP server.
//!
//! Names, arguments and top-level result keys follow swarms' `AOP` (14.0.2) so clients
//! written for it keep working: every result is one JSON text block with the same object as
//! `structuredContent`, and a failure is `success: false` with `error`. Swarms' per-agent
//! "discovery info" fields that have no meaning here (system prompt, model, sampling) keep
//! their keys with the values swarms itself reports for an agent that does not set them,
//! or the agent's `metadata` entries of the same names. Ours come beside them: the agent's
//! `name`, `zone`, `version`, `endpoints`, `input_schema`.

use std::sync::Arc;

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Value, json};

use super::args::{limit_arg, required_string_arg, string_arg, strings_arg, timeout_ms_arg};
use super::call::CallContext;
use super::directory::Mounted;
use super::error::GatewayError;
use super::shapes::{NAMES, agent_info, answer, discovery_info, endpoint_health, failure};
use super::state::Gateway;
use crate::name::Name;
use crate::record::{Agent, limits};

/// The `zone` argument: any zone of the federation. Zones at or below a mount are read from
/// the gateway's own listing; others through the resolver node (docs/protocol.md §10.2).
pub fn zone_arg(args: &JsonObject) -> Result<Option<Name>, GatewayError> {
    let Some(text) = string_arg(args, "zone")? else {
        return Ok(None);
    };
    let zone = Name::parse(text).map_err(|error| GatewayError::BadRequest {
        field: "zone",
        reason: error.to_string(),
    })?;
    Ok(Some(zone))
}

/// Whether `zone` is at or below a zone the gateway mounts (its agents are in the listing).
fn mounted_covers(gateway: &Gateway, zone: &Name) -> bool {
    gateway
        .directory()
        .mounts()
        .iter()
        .any(|mount| zone.is_at_or_below(mount))
}

/// The most names `list_agents` gathers from a zone that is not mounted, in pages of the
/// listing limit; past it the answer says it is cut short and gives the cursor to go on
/// with `discover_agents`.
pub const UNMOUNTED_LIST_MAX: usize = 10_000;

/// How long one page of a zone that is not mounted may take from the resolver node.
const UNMOUNTED_PAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One page of a zone the gateway does not mount, asked of the resolver node, which finds
/// the zone's servers (recursion) like any lookup.
///
/// With `--auth`, a zone the caller may see nothing in is not asked for: it is an unknown
/// zone for that caller.
async fn unmounted_page(
    gateway: &Gateway,
    zone: &Name,
    limit: usize,
    after: &str,
    context: &CallContext,
) -> Result<crate::grpc::client::AgentPage, GatewayError> {
    if !context.sees_into(zone) {
        return Err(GatewayError::UnknownZone {
            zone: zone.clone(),
            reason: "not found".into(),
        });
    }
    let page_size = u32::try_from(limit.min(limits::PAGE_MAX)).unwrap_or(1);
    gateway
        .resolver_client()
        .list_agents(
            zone.as_str(),
            page_size,
            after,
            true,
            Some(UNMOUNTED_PAGE_TIMEOUT),
        )
        .await
        .map_err(|error| {
            if error.is_not_found() {
                GatewayError::UnknownZone {
                    zone: zone.clone(),
                    reason: error.message(),
                }
            } else {
                GatewayError::Resolve {
                    name: zone.clone(),
                    reason: format!(
                        "{} (resolver {})",
                        error.message(),
                        gateway.config().resolver_url
                    ),
                }
            }
        })
}

pub fn mounts_list(gateway: &Gateway) -> String {
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

/// The agents at or below `zone` (or all mounted ones), in name order. A mounted zone the
/// answer depends on that has never loaded is an error naming the resolver (its agents are
/// unknown, not absent), and so is a `zone` under which the mounted zones hold nothing.
///
/// A `zone` the caller may see nothing in is answered as a zone that holds nothing.
fn agents_below(
    gateway: &Gateway,
    mounted: &Mounted,
    zone: Option<&Name>,
    context: &CallContext,
) -> Result<Vec<Arc<Agent>>, GatewayError> {
    if let Some(zone) = zone.filter(|zone| !context.sees_into(zone)) {
        return Err(GatewayError::NoSuchZone {
            zone: zone.clone(),
            mounts: mounts_list(gateway),
        });
    }
    for mount in mounted.zones.values() {
        let relevant = zone.is_none_or(|zone| {
            zone.is_at_or_below(&mount.origin) || mount.origin.is_at_or_below(zone)
        });
        if relevant && mount.serial.is_none() {
            let resolver = &gateway.config().resolver_url;
            let reason = match &mount.error {
                Some(error) if error.contains(resolver.as_str()) => error.clone(),
                Some(error) => format!("{error} (resolver {resolver})"),
                None => {
                    format!("the first listing from the resolver {resolver} has not finished yet")
                }
            };
            return Err(GatewayError::NotLoaded {
                zone: mount.origin.clone(),
                reason,
            });
        }
    }
    let Some(zone) = zone else {
        return Ok(mounted.listing.agents.clone());
    };
    let agents: Vec<Arc<Agent>> = mounted
        .listing
        .agents
        .iter()
        .filter(|agent| agent.name.is_at_or_below(zone))
        .cloned()
        .collect();
    if agents.is_empty() && !mounted.zones.contains_key(zone) {
        return Err(GatewayError::NoSuchZone {
            zone: zone.clone(),
            mounts: mounts_list(gateway),
        });
    }
    Ok(agents)
}

/// One page of `agents` (in name order): up to `limit` after the name `after`, and the
/// cursor of the next page (the last name returned) when there is more. A name cursor, not
/// an index: agents added or removed before it shift nothing.
fn page_after<'a>(
    agents: &'a [Arc<Agent>],
    after: Option<&str>,
    limit: usize,
) -> (&'a [Arc<Agent>], Option<String>) {
    let start = after.map_or(0, |after| {
        agents.partition_point(|agent| agent.name.as_str() <= after)
    });
    let end = agents.len().min(start.saturating_add(limit));
    let page = &agents[start..end];
    let next = (end < agents.len())
        .then(|| page.last().map(|agent| agent.name.to_string()))
        .flatten();
    (page, next)
}

/// Finds a mounted agent the caller may see (by FQDN or tool name): one it may not see is
/// not found, exactly as one that does not exist.
pub fn find_visible(gateway: &Gateway, text: &str, context: &CallContext) -> Option<Arc<Agent>> {
    find_mounted(gateway, text).filter(|agent| context.sees(&agent.name))
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

/// The agents of a zone's page the caller may see.
fn visible(agents: &[Arc<Agent>], context: &CallContext) -> Vec<Arc<Agent>> {
    agents
        .iter()
        .filter(|agent| context.sees(&agent.name))
        .cloned()
        .collect()
}

pub async fn discover_agents(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async || -> Result<Value, GatewayError> {
        if let Some(name) = string_arg(args, "agent_name")? {
            let agent =
                find_visible(gateway, name, context).ok_or_else(|| GatewayError::BadRequest {
                    field: "agent_name",
                    reason: format!(
                        "Agent '{name}' not found in the mounted zones ({})",
                        mounts_list(gateway)
                    ),
                })?;
            return Ok(json!({"success": true, "agents": [discovery_info(&agent)]}));
        }
        let zone = zone_arg(args)?;
        let limit = limit_arg(args)?;
        let after = string_arg(args, "cursor")?;
        if let Some(zone) = zone.as_ref().filter(|zone| !mounted_covers(gateway, zone)) {
            let page = unmounted_page(gateway, zone, limit, after.unwrap_or(""), context).await?;
            let seen = visible(&page.agents, context);
            let total = if context.caller.is_some() {
                // The zone's own count would tell a caller how many agents it cannot see.
                seen.len() as _
            } else {
                page.total
            };
            let agents: Vec<Value> = seen.iter().map(|a| discovery_info(a)).collect();
            let next = (!page.next_cursor.is_empty()).then_some(page.next_cursor);
            return Ok(json!({
                "success": true, "agents": agents, "total_count": total,
                "next_cursor": next, "zone_serial": page.zone_serial, "mounted": false,
            }));
        }
        let mounted = gateway.directory().current();
        let agents = visible(
            &agents_below(gateway, &mounted, zone.as_ref(), context)?,
            context,
        );
        let (page, next) = page_after(&agents, after, limit);
        let page: Vec<Value> = page.iter().map(|agent| discovery_info(agent)).collect();
        Ok(
            json!({"success": true, "agents": page, "total_count": agents.len(), "next_cursor": next}),
        )
    };
    match run().await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agents", json!([])),
    }
}

pub fn get_agent_details(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = || -> Result<Value, GatewayError> {
        let name = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        let agent =
            find_visible(gateway, name, context).ok_or_else(|| GatewayError::BadRequest {
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

pub fn get_agents_info(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
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
            match find_visible(gateway, name, context) {
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

pub async fn list_agents(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async || -> Result<Value, GatewayError> {
        let zone = zone_arg(args)?;
        if let Some(zone) = zone.as_ref().filter(|zone| !mounted_covers(gateway, zone)) {
            let mut names: Vec<String> = Vec::new();
            let mut cursor = String::new();
            let total = loop {
                let page =
                    unmounted_page(gateway, zone, limits::PAGE_MAX, &cursor, context).await?;
                names.extend(
                    page.agents
                        .iter()
                        .filter(|agent| context.sees(&agent.name))
                        .map(|agent| agent.name.to_string()),
                );
                cursor = page.next_cursor;
                if cursor.is_empty() || names.len() >= UNMOUNTED_LIST_MAX {
                    break page.total;
                }
            };
            // The zone's own count would tell a caller how many agents it cannot see.
            let total = if context.caller.is_some() {
                names.len() as _
            } else {
                total
            };
            let mut answer = json!({"success": true, "total_count": total, "agent_names": names});
            if !cursor.is_empty() {
                // Cut short: say so, and how to go on.
                answer["truncated"] = json!(true);
                answer["next_cursor"] = json!(cursor);
                answer["note"] = json!(format!(
                    "{zone} holds {total} agents; the first {UNMOUNTED_LIST_MAX} are listed: page on with discover_agents and this cursor"
                ));
            }
            return Ok(answer);
        }
        let mounted = gateway.directory().current();
        let names: Vec<String> = agents_below(gateway, &mounted, zone.as_ref(), context)?
            .iter()
            .filter(|agent| context.sees(&agent.name))
            .map(|agent| agent.name.to_string())
            .collect();
        Ok(json!({"success": true, "total_count": names.len(), "agent_names": names}))
    };
    match run().await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agent_names", json!([])),
    }
}

/// One light roster entry: what a host browsing many agents needs to pick one, without
/// schemas or endpoints.
fn roster_entry(agent: &Agent) -> Value {
    json!({
        "name": agent.name.to_string(),
        "zone": agent.name.parent().map(|zone| zone.to_string()).unwrap_or_default(),
        "description": agent.description.lines().next().unwrap_or(""),
        "tags": agent.tags,
        "capabilities": agent.capabilities,
    })
}

/// `list_agent_roster` (docs/protocol.md §10.2): a page of light entries in name order. The
/// cursor is the last name returned, so a page starts after it whatever came or went since:
/// an agent present from the first page to the last is listed exactly once.
pub async fn list_agent_roster(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async || -> Result<Value, GatewayError> {
        let zone = zone_arg(args)?;
        let limit = limit_arg(args)?;
        let after = string_arg(args, "cursor")?;
        if let Some(zone) = zone.as_ref().filter(|zone| !mounted_covers(gateway, zone)) {
            let page = unmounted_page(gateway, zone, limit, after.unwrap_or(""), context).await?;
            let agents: Vec<Value> = visible(&page.agents, context)
                .iter()
                .map(|a| roster_entry(a))
                .collect();
            let mut answer = json!({"success": true, "agents": agents});
            if !page.next_cursor.is_empty() {
                answer["next_cursor"] = json!(page.next_cursor);
            }
            return Ok(answer);
        }
        let mounted = gateway.directory().current();
        let agents = visible(
            &agents_below(gateway, &mounted, zone.as_ref(), context)?,
            context,
        );
        let (page, next) = page_after(&agents, after, limit);
        let mut answer = json!({
            "success": true,
            "agents": page.iter().map(|agent| roster_entry(agent)).collect::<Vec<_>>(),
        });
        if let Some(next) = next {
            answer["next_cursor"] = json!(next);
        }
        Ok(answer)
    };
    match run().await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "agents", json!([])),
    }
}

/// With `--auth`, the agents, tools and counts are those the caller may see.
pub async fn get_server_info(gateway: &Gateway, context: &CallContext) -> CallToolResult {
    let mounted = gateway.directory().current();
    let zones: Vec<Value> = mounted
        .zones
        .values()
        .map(|zone| {
            json!({
                "zone": zone.origin.to_string(),
                "serial": zone.serial,
                "agents": zone.agents.iter().filter(|agent| context.sees(&agent.name)).count(),
                "error": zone.error,
            })
        })
        .collect();
    let tools: Vec<&String> = mounted
        .listing
        .by_tool
        .iter()
        .filter(|(_, agent)| context.sees(&agent.name))
        .map(|(tool, _)| tool)
        .collect();
    let agent_names: Vec<String> = mounted
        .listing
        .by_name
        .keys()
        .filter(|name| context.sees(name))
        .map(Name::to_string)
        .collect();
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
            "total_agents": agent_names.len(),
            "total_tools": tools.len() + NAMES.len(),
            "tools": tools,
            "agent_names": agent_names,
            "cache": gateway.names().stats(),
            "sessions": gateway.sessions().stats(),
            "open_breakers": gateway.breakers().open_endpoints().into_iter()
                .map(|(url, state)| json!({"endpoint": url, "state": state})).collect::<Vec<_>>(),
        }
    }))
}

/// An agent the caller may not see (asked for by its name, or reached through an alias) is
/// answered as a name that does not exist.
pub async fn resolve_agent(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let text =
            required_string_arg(args, "name", "the agent's name, like analyst.finance.acme")?;
        let name = Name::parse_agent(text).map_err(|error| GatewayError::BadRequest {
            field: "name",
            reason: error.to_string(),
        })?;
        let hidden = || GatewayError::NoSuchAgent {
            name: name.clone(),
            outcome: crate::answer::Outcome::NxDomain.word(),
        };
        if !context.sees(&name) {
            return Err(hidden());
        }
        let resolution = gateway.names().resolve(&name).await?;
        let answer = &resolution.answer;
        let agent = resolution.agent()?;
        if !context.sees(&agent.name) {
            return Err(hidden());
        }
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
                "health": endpoint_health(e),
                "breaker": gateway.breakers().state(&e.url),
            })).collect::<Vec<_>>(),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "record", Value::Null),
    }
}

pub async fn call_agent(
    gateway: &Gateway,
    args: &JsonObject,
    context: &crate::gateway::call::CallContext,
) -> CallToolResult {
    let run = async {
        let text =
            required_string_arg(args, "name", "the agent's name, like analyst.finance.acme")?;
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
