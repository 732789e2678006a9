//! The task tools over MCP (docs/protocol.md §10.1): arguments read and checked here, the
//! queue in [`crate::gateway::tasks`], answers in the Python AOP server's layout (its key
//! names, `success: false` with `error` on failure, never a JSON-RPC error). Also the
//! gateway's [`TaskRunner`]: how a queued task reaches its agent (the agent tool's own call
//! path, so breakers, retries and endpoint choice apply).

use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::args::{required_string_arg, string_arg};
use super::call::CallContext;
use super::error::GatewayError;
use super::meta::find_mounted;
use super::shapes::{agent_tool_name, answer, failure};
use super::state::Gateway;
use super::task_shapes::{IDEMPOTENCY_KEY_MAX, PRIORITY_MAX};
use super::tasks::queues::Submission;
use super::tasks::record::IdempotencyKey;
use super::tasks::{QueueStats, RunOutcome, TaskError, TaskRunner};
use crate::name::Name;
use crate::record::Agent;

/// Why a task tool call failed: its arguments, or the queue.
#[derive(Debug, thiserror::Error)]
enum TaskToolError {
    #[error(transparent)]
    Argument(#[from] GatewayError),
    #[error(transparent)]
    Queue(#[from] TaskError),
    #[error("Agent '{agent}' not found: {reason}")]
    UnknownAgent { agent: String, reason: String },
    /// Reached only through an alias the caller may call whose target it may not (the
    /// HTTP layer refuses direct calls with 403).
    #[error("Forbidden: this caller may not call agent '{agent}' (not in its policy's call list)")]
    NotAllowed { agent: String },
}

/// An agent a task may be submitted to: a mounted one (by full name or tool name), or any
/// agent of the federation by full name.
///
/// An agent the caller may not see is answered as one that does not exist.
async fn known_agent(
    gateway: &Gateway,
    text: &str,
    context: &CallContext,
) -> Result<Arc<Agent>, TaskToolError> {
    if let Some(agent) = find_mounted(gateway, text).filter(|agent| context.sees(&agent.name)) {
        return Ok(agent);
    }
    let unknown = |reason: String| TaskToolError::UnknownAgent {
        agent: text.to_string(),
        reason,
    };
    let name = Name::parse_agent(text).map_err(|error| {
        unknown(format!(
            "it is neither a tool name of the mounted zones nor a valid agent name ({error})"
        ))
    })?;
    let resolution = gateway
        .names()
        .resolve(&name)
        .await
        .map_err(|error| unknown(error.to_string()))?;
    let agent = resolution
        .agent()
        .cloned()
        .map_err(|error| unknown(error.to_string()))?;
    if !context.sees(&agent.name) || !context.sees(&name) {
        return Err(unknown(
            GatewayError::NoSuchAgent {
                name,
                outcome: crate::answer::Outcome::NxDomain.word(),
            }
            .to_string(),
        ));
    }
    Ok(agent)
}

/// The queue `agent_name` names: a queue's full or tool name, else a mounted agent's, else
/// the name as given (the queue then says it has none).
/// A queue the caller may not see is answered as one that does not exist.
fn queue_of(gateway: &Gateway, text: &str, context: &CallContext) -> Result<Name, TaskToolError> {
    let found = gateway
        .tasks()
        .queue_named(text)
        .or_else(|| find_mounted(gateway, text).map(|agent| agent.name.clone()))
        .or_else(|| Name::parse(text).ok());
    match found {
        Some(name) if context.sees(&name) => Ok(name),
        _ => Err(TaskToolError::Queue(TaskError::NoQueue {
            agent: Name::parse(text).map_or(text.to_string(), |name| name.to_string()),
        })),
    }
}

/// `priority`: an integer from 0 to [`PRIORITY_MAX`], 0 when absent.
fn priority_arg(args: &JsonObject) -> Result<u32, GatewayError> {
    let bad = |given: &Value| GatewayError::BadRequest {
        field: "priority",
        reason: format!(
            "must be an integer from 0 to {PRIORITY_MAX} (higher runs first), got {given}"
        ),
    };
    match args.get("priority") {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p <= PRIORITY_MAX)
            .ok_or_else(|| bad(value)),
    }
}

fn idempotency_arg(
    args: &JsonObject,
    caller: &str,
) -> Result<Option<IdempotencyKey>, GatewayError> {
    let Some(key) = string_arg(args, "idempotency_key")? else {
        return Ok(None);
    };
    let chars = key.chars().count();
    if chars == 0 || chars > IDEMPOTENCY_KEY_MAX {
        return Err(GatewayError::BadRequest {
            field: "idempotency_key",
            reason: format!("must be 1 to {IDEMPOTENCY_KEY_MAX} characters, got {chars}"),
        });
    }
    Ok(Some(IdempotencyKey {
        caller: caller.into(),
        key: key.to_string(),
    }))
}

fn arguments_arg(args: &JsonObject) -> Result<JsonObject, GatewayError> {
    match args.get("arguments") {
        Some(Value::Object(map)) => Ok(map.clone()),
        None | Some(Value::Null) => Err(GatewayError::MissingArgument {
            field: "arguments",
            what: "an object of the agent's arguments, e.g. {\"task\": \"...\"}".into(),
            given: args.keys().cloned().collect(),
        }),
        Some(_) => Err(GatewayError::BadRequest {
            field: "arguments",
            reason: "must be an object of the agent's arguments".into(),
        }),
    }
}

/// `submit_task`: `{success, task_id}` once the task is queued (and on disk).
///
/// The idempotency key is the caller's (its subject with `--auth`): the same key from two
/// callers names two tasks.
pub async fn submit_task(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let text = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        let arguments = arguments_arg(args)?;
        let priority = priority_arg(args)?;
        let idempotency = idempotency_arg(args, context.subject())?;
        let agent = known_agent(gateway, text, context).await?;
        if !context.may_call(&agent.name) {
            return Err(TaskToolError::NotAllowed {
                agent: agent.name.to_string(),
            });
        }
        gateway.validators().check(&agent, &arguments)?;
        let task_id = gateway
            .tasks()
            .submit(Submission {
                agent: agent.name.clone(),
                tool_name: agent_tool_name(&agent),
                arguments,
                priority,
                max_retries: agent.max_retries,
                idempotency,
                mcp_task: false,
            })
            .await?;
        Ok::<Value, TaskToolError>(json!({
            "success": true,
            "task_id": task_id,
            "status": "queued",
            "agent_name": agent.name.to_string(),
            "priority": priority,
            "message": format!("Task '{task_id}' queued for agent '{}'", agent.name),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "task_id", Value::Null),
    }
}

fn stats_json(stats: &QueueStats) -> Value {
    serde_json::to_value(stats).unwrap_or_default()
}

pub fn get_queue_stats(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = || {
        if let Some(text) = string_arg(args, "agent_name")? {
            let agent = queue_of(gateway, text, context)?;
            let stats = gateway.tasks().stats(&agent)?;
            return Ok::<Value, TaskToolError>(json!({
                "success": true,
                "agent_name": agent.to_string(),
                "stats": stats_json(&stats),
            }));
        }
        let mut all = gateway.tasks().all_stats();
        all.retain(|(name, _)| context.sees(name));
        let stats: Map<String, Value> = all
            .iter()
            .map(|(name, stats)| (name.to_string(), stats_json(stats)))
            .collect();
        Ok(json!({"success": true, "stats": stats, "total_agents": all.len()}))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "stats", json!({})),
    }
}

/// `pause_agent_queue` / `resume_agent_queue`. An agent with no queue yet gets one (paused,
/// or running), so a queue can be paused before its first task.
pub async fn set_agent_paused(
    gateway: &Gateway,
    args: &JsonObject,
    paused: bool,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let text = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        // A hidden agent's queue is looked for as an agent, which answers as nonexistent.
        let queue = gateway
            .tasks()
            .queue_named(text)
            .filter(|name| context.sees(name));
        let (agent, tool_name) = match queue {
            Some(name) => (name, None),
            None => {
                let agent = known_agent(gateway, text, context).await?;
                (agent.name.clone(), Some(agent_tool_name(&agent)))
            }
        };
        if !context.may_call(&agent) {
            return Err(TaskToolError::NotAllowed {
                agent: agent.to_string(),
            });
        }
        let changed = gateway
            .tasks()
            .set_paused(&agent, tool_name.as_deref(), paused)
            .await?;
        let (done, already) = if paused {
            ("paused", "was already paused")
        } else {
            ("resumed", "was already running")
        };
        Ok::<Value, TaskToolError>(json!({
            "success": true,
            "agent_name": agent.to_string(),
            "queue_status": if paused { "paused" } else { "running" },
            "message": if changed {
                format!("Queue for agent '{agent}' {done}")
            } else {
                format!("Queue for agent '{agent}' {already}")
            },
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "message", Value::Null),
    }
}

pub async fn clear_agent_queue(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let text = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        let agent = queue_of(gateway, text, context)?;
        if !context.may_call(&agent) {
            return Err(TaskToolError::NotAllowed {
                agent: agent.to_string(),
            });
        }
        let cleared = gateway.tasks().clear(&agent).await?;
        Ok::<Value, TaskToolError>(json!({
            "success": true,
            "cleared_tasks": cleared,
            "agent_name": agent.to_string(),
            "message": format!("Cleared {cleared} tasks from queue for agent '{agent}'"),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => failure(error, "cleared_tasks", json!(0)),
    }
}

pub fn get_task_status(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = || {
        let text = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        let task_id = required_string_arg(args, "task_id", "the task_id submit_task returned")?;
        let agent = queue_of(gateway, text, context)?;
        let record = gateway.tasks().task(&agent, task_id)?;
        Ok::<Value, TaskToolError>(json!({"success": true, "task": record.to_json()}))
    };
    match run() {
        Ok(value) => answer(value),
        Err(error) => failure(error, "task", Value::Null),
    }
}

pub async fn cancel_task(
    gateway: &Gateway,
    args: &JsonObject,
    context: &CallContext,
) -> CallToolResult {
    let run = async {
        let text = required_string_arg(args, "agent_name", "the agent's name or tool name")?;
        let task_id = required_string_arg(args, "task_id", "the task_id submit_task returned")?;
        let agent = queue_of(gateway, text, context)?;
        if !context.may_call(&agent) {
            return Err(TaskToolError::NotAllowed {
                agent: agent.to_string(),
            });
        }
        gateway.tasks().cancel(&agent, task_id).await?;
        Ok::<Value, TaskToolError>(json!({
            "success": true,
            "message": format!("Task '{task_id}' cancelled"),
        }))
    };
    match run.await {
        Ok(value) => answer(value),
        Err(error) => {
            let message = error.to_string();
            let mut result = failure(error, "message", json!(message));
            if let Some(Value::Object(map)) = result.structured_content.as_mut() {
                map.insert("message".into(), json!(message));
            }
            result
        }
    }
}

/// `pause_all_queues` / `resume_all_queues`: every agent that has a queue (with `--auth`,
/// every such agent the caller may call).
pub async fn set_all_paused(
    gateway: &Gateway,
    paused: bool,
    context: &CallContext,
) -> CallToolResult {
    let mut results = Map::new();
    let mut changed_count = 0;
    for agent in gateway.tasks().agents() {
        if !context.may_call(&agent) {
            continue;
        }
        match gateway.tasks().set_paused(&agent, None, paused).await {
            Ok(changed) => {
                changed_count += usize::from(changed);
                results.insert(agent.to_string(), json!(true));
            }
            Err(error) => {
                tracing::warn!(%agent, %error, "cannot change a queue's paused flag");
                results.insert(agent.to_string(), json!(false));
            }
        }
    }
    let succeeded = results.values().filter(|v| **v == json!(true)).count();
    let key = if paused {
        "successful_pauses"
    } else {
        "successful_resumes"
    };
    let mut value = json!({
        "success": succeeded == results.len(),
        "total_agents": results.len(),
        key: succeeded,
        "changed": changed_count,
    });
    value["results"] = Value::Object(results);
    answer(value)
}

/// `clear_all_queues`: every agent that has a queue (with `--auth`, every such agent the
/// caller may call).
pub async fn clear_all_queues(gateway: &Gateway, context: &CallContext) -> CallToolResult {
    let mut results = Map::new();
    let mut total = 0;
    let mut failed = Vec::new();
    for agent in gateway.tasks().agents() {
        if !context.may_call(&agent) {
            continue;
        }
        match gateway.tasks().clear(&agent).await {
            Ok(cleared) => {
                total += cleared;
                results.insert(agent.to_string(), json!(cleared));
            }
            Err(error) => {
                failed.push(error.to_string());
                results.insert(agent.to_string(), json!(-1));
            }
        }
    }
    let mut value = json!({
        "success": failed.is_empty(),
        "total_agents": results.len(),
        "total_cleared": total,
    });
    value["results"] = Value::Object(results);
    if !failed.is_empty() {
        value["error"] = json!(failed.join("; "));
    }
    answer(value)
}

impl TaskRunner for Gateway {
    fn run(
        &self,
        agent: Name,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, RunOutcome> {
        Box::pin(async move {
            // The caller was checked when the task was submitted.
            let context = CallContext {
                progress: None,
                cancel,
                caller: None,
            };
            match self.call_by_name(&agent, arguments, None, &context).await {
                Ok(outcome) => {
                    let retries = outcome.attempts.saturating_sub(1);
                    let result = outcome.into_agent_tool_result();
                    let success = result.is_error != Some(true);
                    let value = result.structured_content.clone().unwrap_or_else(|| {
                        serde_json::to_value(&result.content).unwrap_or_default()
                    });
                    let error = (!success).then(|| {
                        value
                            .get("error")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| "the agent reported a failure".into())
                    });
                    RunOutcome::Answered {
                        result: value,
                        success,
                        error,
                        retries,
                        tool_result: serde_json::to_value(&result).ok(),
                    }
                }
                Err(GatewayError::Cancelled { .. }) => RunOutcome::Cancelled,
                Err(error) => RunOutcome::Failed {
                    error: error.to_string(),
                    tool_result: serde_json::to_value(error.to_agent_tool_result()).ok(),
                },
            }
        })
    }

    fn idempotent(&self, agent: Name) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let resolution = self
                .names()
                .resolve(&agent)
                .await
                .map_err(|e| e.to_string())?;
            let record = resolution.agent().map_err(|e| e.to_string())?;
            let endpoint = record
                .endpoints
                .iter()
                .min_by_key(|endpoint| endpoint.priority)
                .ok_or_else(|| format!("agent {agent} has no endpoints"))?;
            let session = self
                .sessions()
                .session(&endpoint.url)
                .await
                .map_err(|failure| failure.to_string())?;
            Ok(session.is_idempotent(&endpoint.tool))
        })
    }
}
