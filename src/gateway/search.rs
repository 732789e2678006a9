//! `search_agents` and `route_task`: the federation's ranked search, from the gateway.
//!
//! Both ask the resolver node's `Search` RPC once per scope (the `zone` argument, or each
//! mounted zone), which fans the search out to the zones below; the answers are merged by
//! the same statistics-summing merge the nodes use ([`search::merge`]), so ranks compare
//! across scopes. Search covers the mounted zones' whole subtrees, so a hit may be an agent
//! that is not a tool here (`mounted: false`); `call_agent` and `route_task` reach it by
//! name.
//!
//! `route_task` is the seed's "dynamic task delegation": the task's words are the query; the
//! candidates are tried best first, skipping agents whose every endpoint's breaker is open
//! (and, with `--auth`, agents the caller may not call or whose rate limit is spent),
//! and the first that succeeds answers. A failure (no endpoint answered, a business error,
//! arguments its schema refuses) moves on to the next candidate.

use std::time::Duration;

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Value, json};

use crate::gateway::args::{limit_arg, string_arg, strings_arg, timeout_ms_arg};
use crate::gateway::breaker::BreakerState;
use crate::gateway::call::CallContext;
use crate::gateway::error::GatewayError;
use crate::gateway::meta::zone_arg;
use crate::gateway::shapes::{answer, discovery_info, failure};
use crate::gateway::state::Gateway;
use crate::name::Name;
use crate::search::federate::{RemoteAsk, SearchRequest, ask_all};
use crate::search::{self, Hit, SearchQuery};

/// The fields `search_agents` can restrict matching to, as swarms names them.
const SEARCH_FIELDS: [&str; 4] = ["name", "description", "tags", "capabilities"];
/// Candidates `route_task` considers.
const ROUTE_CANDIDATES: usize = 5;
/// How long a search through the resolver may take before answering with what it has.
const SEARCH_DEADLINE: Duration = Duration::from_secs(2);

/// A merged search over the gateway's scopes.
struct Found {
    /// The query's terms as analysed (the order of the hits' term frequencies).
    terms: Vec<String>,
    hits: Vec<Hit>,
    total_matches: u64,
    /// Zones (or scopes) that did not answer, with why.
    missed: Vec<(String, String)>,
}

/// What to search for.
struct Search {
    text: String,
    zone: Option<Name>,
    tags: Vec<String>,
    capabilities: Vec<String>,
    limit: usize,
}

/// Searches every scope through the resolver node, in parallel, and merges the answers.
/// When no scope answered at all (a zone that does not exist, the resolver unreachable),
/// the search failed: an empty list would tell the caller there are no such agents.
///
/// With `--auth`, hits the caller may not see are left out, and the total is what is left
/// (the federation's count would tell it how many it cannot see).
async fn search(
    gateway: &Gateway,
    wanted: &Search,
    context: &CallContext,
) -> Result<Found, GatewayError> {
    let scopes: Vec<Name> = match &wanted.zone {
        Some(zone) => vec![zone.clone()],
        None => outermost(gateway.directory().mounts()),
    };
    let terms = SearchQuery {
        text: wanted.text.clone(),
        ..SearchQuery::default()
    }
    .terms();
    // Each scope is asked of the resolver node, which finds the scope's zone and fans out.
    let resolver = [gateway.resolver_server()];
    let asks = scopes
        .iter()
        .map(|scope| RemoteAsk {
            zone: scope.clone(),
            servers: resolver.to_vec(),
            request: SearchRequest {
                query: SearchQuery {
                    text: wanted.text.clone(),
                    tags: wanted.tags.clone(),
                    capabilities: wanted.capabilities.clone(),
                    scope: (!scope.is_root()).then(|| scope.clone()),
                    limit: wanted.limit,
                },
                max_depth: None,
                recursive: true,
            },
        })
        .collect();
    let deadline = tokio::time::Instant::now() + SEARCH_DEADLINE;
    let asked = ask_all(gateway.peers(), asks, &terms, deadline).await;
    if asked.parts.is_empty() && !scopes.is_empty() {
        return Err(GatewayError::SearchFailed {
            unanswered: asked
                .missed
                .into_iter()
                .map(|missed| (missed.zone, missed.reason))
                .collect(),
        });
    }
    let parts = asked.parts;
    let missed = asked
        .missed
        .into_iter()
        .map(|missed| (missed.zone, missed.reason))
        .collect();
    let mut merged = search::merge(parts, wanted.limit);
    if context.caller.is_some() {
        merged.hits.retain(|hit| context.sees(&hit.agent.name));
        merged.total_matches = merged.hits.len() as u64;
    }
    Ok(Found {
        terms,
        hits: merged.hits,
        total_matches: merged.total_matches,
        missed,
    })
}

/// The mounts that are not below another mount (a subtree search covers those).
fn outermost(mounts: &[Name]) -> Vec<Name> {
    mounts
        .iter()
        .filter(|zone| {
            !mounts
                .iter()
                .any(|other| other != *zone && zone.is_at_or_below(other))
        })
        .cloned()
        .collect()
}

/// Whether any of the query's terms occurs in the chosen fields of the agent.
fn matches_fields(hit: &Hit, fields: &[String], terms: &[String]) -> bool {
    let agent = &hit.agent;
    let mut text = String::new();
    for field in fields {
        match field.as_str() {
            "name" => text.push_str(agent.name.as_str()),
            "description" => text.push_str(&agent.description),
            "tags" => text.push_str(&agent.tags.join(" ")),
            "capabilities" => text.push_str(&agent.capabilities.join(" ")),
            _ => {}
        }
        text.push(' ');
    }
    let found = search::analyze::terms(&text);
    terms.iter().any(|term| found.contains(term))
}

pub async fn search_agents(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let query = string_arg(args, "query")?
            .unwrap_or_default()
            .trim()
            .to_string();
        let tags = strings_arg(args, "tags")?.unwrap_or_default();
        let capabilities = strings_arg(args, "capabilities")?.unwrap_or_default();
        if query.is_empty() && tags.is_empty() && capabilities.is_empty() {
            return Err(GatewayError::BadRequest {
                field: "query",
                reason: "No search query provided".into(),
            });
        }
        let fields: Vec<String> = match strings_arg(args, "search_fields")? {
            Some(fields) => fields
                .into_iter()
                .filter(|field| SEARCH_FIELDS.contains(&field.as_str()))
                .collect(),
            None => SEARCH_FIELDS.iter().map(|f| f.to_string()).collect(),
        };
        let wanted = Search {
            text: query.clone(),
            zone: zone_arg(args)?,
            tags,
            capabilities,
            limit: limit_arg(args)?,
        };
        let found = search(gateway, &wanted, context).await?;
        let terms = &found.terms;
        let restricted = fields.len() < SEARCH_FIELDS.len() && !terms.is_empty();
        let mounted = gateway.directory().current();
        let matching: Vec<Value> = found
            .hits
            .iter()
            .filter(|hit| !restricted || matches_fields(hit, &fields, terms))
            .map(|hit| {
                let mut info = discovery_info(&hit.agent);
                if let Value::Object(map) = &mut info {
                    map.insert("score".into(), json!((hit.score * 1000.0).round() / 1000.0));
                    map.insert("zone".into(), json!(hit.zone.to_string()));
                    map.insert(
                        "mounted".into(),
                        json!(mounted.listing.by_name.contains_key(&hit.agent.name)),
                    );
                }
                info
            })
            .collect();
        Ok::<Value, GatewayError>(json!({
            "success": true,
            "matching_agents": matching,
            "total_matches": if restricted { matching.len() as u64 } else { found.total_matches },
            "query": query,
            "search_fields": fields,
            "partial": !found.missed.is_empty(),
            "unanswered_zones": found.missed.iter().map(|(zone, reason)| json!({"zone": zone, "reason": reason})).collect::<Vec<_>>(),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "matching_agents", json!([])),
    }
}

/// Whether every endpoint of the agent has an open breaker (nothing to try now).
fn all_breakers_open(gateway: &Gateway, hit: &Hit) -> bool {
    !hit.agent.endpoints.is_empty()
        && hit
            .agent
            .endpoints
            .iter()
            .all(|e| gateway.breakers().state(&e.url) == BreakerState::Open)
}

pub async fn route_task(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let task = string_arg(args, "task")?
            .unwrap_or_default()
            .trim()
            .to_string();
        if task.is_empty() {
            return Err(GatewayError::BadRequest {
                field: "task",
                reason: "is required: the task to route, in words".into(),
            });
        }
        let timeout_ms = timeout_ms_arg(args)?;
        let wanted = Search {
            text: task.clone(),
            zone: zone_arg(args)?,
            tags: strings_arg(args, "tags")?.unwrap_or_default(),
            capabilities: strings_arg(args, "capabilities")?.unwrap_or_default(),
            limit: ROUTE_CANDIDATES,
        };
        Ok((task, timeout_ms, search(gateway, &wanted, context).await?))
    };
    let (task, timeout_ms, found) = match run.await {
        Ok(found) => found,
        Err(error) => return failure(error, "candidates", json!([])),
    };
    let candidates: Vec<String> = found
        .hits
        .iter()
        .map(|h| h.agent.name.to_string())
        .collect();
    let mut tried = Vec::new();
    for hit in &found.hits {
        // With `--auth`: candidates the caller may not call, or whose rate limit is spent,
        // are skipped (docs/protocol.md §8.2).
        if !context.may_call(&hit.agent.name) {
            tried.push(json!({"agent": hit.agent.name.to_string(), "error": "skipped: not in this caller's call list"}));
            continue;
        }
        if context.caller.is_some()
            && let Some(auth) = &gateway.config().auth
            && auth.take_agent(&hit.agent.name).is_err()
        {
            tried.push(json!({"agent": hit.agent.name.to_string(), "error": "skipped: over the agent's rate limit"}));
            continue;
        }
        if all_breakers_open(gateway, hit) {
            tried.push(json!({"agent": hit.agent.name.to_string(), "error": "skipped: every endpoint's circuit breaker is open"}));
            continue;
        }
        let mut arguments = JsonObject::new();
        arguments.insert("task".into(), json!(task));
        match gateway
            .call_by_name(&hit.agent.name, arguments, timeout_ms, context)
            .await
        {
            Ok(outcome) => {
                let mut result = outcome.into_call_agent_result();
                if result.is_error != Some(true) {
                    if let Some(Value::Object(map)) = &mut result.structured_content {
                        map.insert("candidates".into(), json!(candidates));
                        map.insert("tried".into(), json!(tried));
                        map.insert("score".into(), json!((hit.score * 1000.0).round() / 1000.0));
                    }
                    return result;
                }
                let error = result
                    .structured_content
                    .as_ref()
                    .and_then(|s| s.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("the agent reported a failure")
                    .to_string();
                tried.push(json!({"agent": hit.agent.name.to_string(), "error": error}));
            }
            Err(error) => {
                tried
                    .push(json!({"agent": hit.agent.name.to_string(), "error": error.to_string()}));
            }
        }
    }
    let error = if candidates.is_empty() {
        format!(
            "no agent matches the task{}",
            if found.missed.is_empty() {
                ""
            } else {
                " (some zones did not answer)"
            }
        )
    } else {
        format!("every candidate failed ({} tried)", tried.len())
    };
    let mut result = failure(error, "candidates", json!(candidates));
    if let Some(Value::Object(map)) = &mut result.structured_content {
        map.insert("tried".into(), json!(tried));
        map.insert("agent".into(), Value::Null);
        map.insert("partial".into(), json!(!found.missed.is_empty()));
    }
    result
}
