//! The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) at the gateway, on the
//! same durable task queues as `submit_task` (docs/protocol.md §10.1).
//!
//! Why on the queues and not rmcp's `TaskManager`: that one keeps tasks in memory, so a
//! restarted gateway would forget every task a client holds an id for; the queues are
//! durable with `--data-dir`, bounded, per-agent concurrent, and already cancel the agent's
//! call over MCP. A task made here is a queue task like any other (`get_task_status`,
//! `cancel_task` and the queue statistics see it, under the same id), marked as an MCP task
//! so the queue keeps the agent tool's whole `CallToolResult` for `tasks/get`.
//!
//! The extension is server-directed: a client that declares it (per request in the
//! 2026-07-28 era, or at `initialize` in the 2025 session era, as rmcp reads the client's
//! capabilities) has every call of a mounted agent's tool answered at once with a task
//! (`resultType: "task"`); without it, agent tool calls stay direct. Meta tools always answer
//! directly.
//!
//! Queue states map onto the extension's: `pending` and `processing` are `working` (the
//! status message says which, and whether the queue is paused); `completed` is `completed`
//! with the agent tool's result; `failed` is `completed` too when the agent tool answered
//! (a result with `isError: true`, as the direct call would have answered: SEP-2663 keeps
//! `failed` for JSON-RPC errors), and `failed` with a `-32603` error when there is no result
//! (the gateway stopped while the call was out and the tool is not idempotent); `cancelled`
//! is `cancelled`. The gateway never asks the client for input, so a task is never
//! `input_required` and `tasks/update` only acknowledges. `tasks/list` is not part of
//! SEP-2663 (it was removed from the 2025-11-25 design for want of a caller scope).

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{
    CallToolResponse, CancelTaskParams, CreateTaskResult, DetailedTask, ErrorCode, GetTaskParams,
    GetTaskResult, JsonObject, Task, TaskPayload, TaskStatus as McpStatus, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

use super::shapes::agent_tool_name;
use super::state::Gateway;
use super::tasks::queues::Submission;
use super::tasks::{TaskError, TaskRecord, TaskStatus};
use crate::name::Name;
use crate::record::Agent;

/// The polling interval suggested to clients while a task is not finished.
pub const POLL_INTERVAL_MS: u64 = 500;

/// Why a `tasks/*` request failed; each maps to the JSON-RPC error SEP-2663 names.
#[derive(Debug, thiserror::Error)]
pub enum McpTaskError {
    /// `-32602`: no such task (never made, or forgotten `--task-ttl` after it finished).
    #[error(
        "Failed to retrieve task: no task '{task_id}' (unknown, or finished more than the task TTL (--task-ttl) ago)"
    )]
    UnknownTask { task_id: String },
    /// `-32602`: a queue task made by `submit_task`, whose request already had its answer.
    #[error(
        "task '{task_id}' was queued by submit_task, not made by an agent tool call as an MCP task: read it with get_task_status (agent_name '{agent}') or cancel it with cancel_task"
    )]
    NotAnMcpTask { task_id: String, agent: String },
    /// `-32603`: the queue could not record the change (its store failed).
    #[error("task '{task_id}': {source}")]
    Queue { task_id: String, source: TaskError },
}

impl McpTaskError {
    pub fn to_error_data(&self) -> ErrorData {
        match self {
            McpTaskError::Queue { .. } => ErrorData::internal_error(self.to_string(), None),
            _ => ErrorData::invalid_params(self.to_string(), None),
        }
    }
}

/// Whether the client declared the tasks extension for this request.
pub fn declared(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks())
}

/// The answer to a call made a task, and its outcome label for the metrics: `task` (queued),
/// `invalid_arguments`, `task_refused` (a full queue, a failed store), `task_error`.
pub type Created = (Result<CallToolResponse, ErrorData>, &'static str);

/// A call of `agent`'s tool as an MCP task: the arguments checked as the direct call checks
/// them (a bad argument is answered at once, as then), the task queued and on disk, and its
/// seed state answered. A full queue is an `isError` result naming the limit.
pub async fn create(gateway: &Gateway, agent: &Arc<Agent>, arguments: JsonObject) -> Created {
    if let Err(error) = gateway.validators().check(agent, &arguments) {
        return (Ok(error.to_agent_tool_result().into()), error.label());
    }
    let submitted = gateway
        .tasks()
        .submit(Submission {
            agent: agent.name.clone(),
            tool_name: agent_tool_name(agent),
            arguments,
            priority: 0,
            max_retries: agent.max_retries,
            idempotency: None,
            mcp_task: true,
        })
        .await;
    let task_id = match submitted {
        Ok(task_id) => task_id,
        Err(error) => return (Ok(refusal(&error.to_string()).into()), "task_refused"),
    };
    match gateway.tasks().find(&task_id) {
        Some(record) => {
            let task = task_of(gateway, &record, payload_of(&record).status());
            (
                Ok(CallToolResponse::Task(CreateTaskResult::new(task))),
                "task",
            )
        }
        None => (
            Err(McpTaskError::UnknownTask { task_id }.to_error_data()),
            "task_error",
        ),
    }
}

/// The agent tool's answer to a call that could not become a task: the AOP shape of a
/// failure, as a direct call's failures.
fn refusal(message: &str) -> rmcp::model::CallToolResult {
    let mut result =
        rmcp::model::CallToolResult::error(vec![rmcp::model::ContentBlock::text(message)]);
    result.structured_content = Some(json!({"result": "", "success": false, "error": message}));
    result
}

/// `tasks/get`.
pub fn get(gateway: &Gateway, params: &GetTaskParams) -> Result<GetTaskResult, McpTaskError> {
    let record = mcp_task(gateway, &params.task_id)?;
    Ok(GetTaskResult::new(detailed(gateway, &record)))
}

/// `tasks/cancel`: cancels through the queue (a processing task's agent call is cancelled
/// over MCP). A task that finished first is acknowledged all the same: SEP-2663's
/// cancellation is cooperative, and `tasks/get` shows how it ended.
pub async fn cancel(gateway: &Gateway, params: &CancelTaskParams) -> Result<(), McpTaskError> {
    let record = mcp_task(gateway, &params.task_id)?;
    let unknown = || McpTaskError::UnknownTask {
        task_id: params.task_id.clone(),
    };
    let agent = Name::parse(&record.agent).map_err(|_| unknown())?;
    match gateway.tasks().cancel(&agent, &record.task_id).await {
        Ok(()) | Err(TaskError::AlreadyFinished { .. }) => Ok(()),
        Err(TaskError::UnknownTask { .. } | TaskError::NoQueue { .. }) => Err(unknown()),
        Err(source) => Err(McpTaskError::Queue {
            task_id: params.task_id.clone(),
            source,
        }),
    }
}

/// `tasks/update`: the gateway never asks for input, so no key is ever outstanding and
/// every `inputResponses` entry is ignored, as SEP-2663 says of keys not outstanding; the
/// task must exist.
pub fn update(gateway: &Gateway, params: &UpdateTaskParams) -> Result<(), McpTaskError> {
    mcp_task(gateway, &params.task_id)?;
    if !params.input_responses.is_empty() {
        tracing::debug!(
            task_id = %params.task_id,
            ignored = params.input_responses.len(),
            "tasks/update: no input request is outstanding; responses ignored"
        );
    }
    Ok(())
}

/// The MCP task `task_id` names.
fn mcp_task(gateway: &Gateway, task_id: &str) -> Result<TaskRecord, McpTaskError> {
    let record = gateway
        .tasks()
        .find(task_id)
        .ok_or_else(|| McpTaskError::UnknownTask {
            task_id: task_id.to_string(),
        })?;
    if !record.mcp_task {
        return Err(McpTaskError::NotAnMcpTask {
            task_id: task_id.to_string(),
            agent: record.agent,
        });
    }
    Ok(record)
}

/// The task's base fields: times in ISO 8601; `ttlMs` null (kept) while the task is not
/// finished, then how long after its creation it is forgotten (`--task-ttl` after it
/// finished); a poll interval while it runs.
fn task_of(gateway: &Gateway, record: &TaskRecord, status: McpStatus) -> Task {
    let finished = record.status.is_finished();
    let mut task = Task::new(
        record.task_id.clone(),
        status,
        iso8601(record.created_at_ms),
        iso8601(record.last_updated_ms()),
    )
    .with_status_message(status_message(gateway, record));
    task.ttl_ms = record.finished_at_ms.map(|at| {
        at.saturating_sub(record.created_at_ms)
            .saturating_add(ttl_ms(gateway.tasks().config().ttl))
    });
    if !finished {
        task = task.with_poll_interval_ms(POLL_INTERVAL_MS);
    }
    task
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The extension's status and payload of a queue task (see the module doc).
fn payload_of(record: &TaskRecord) -> TaskPayload {
    let result = record.tool_result.as_ref().and_then(Value::as_object);
    match (record.status, result) {
        (TaskStatus::Pending | TaskStatus::Processing, _) => TaskPayload::Working,
        (TaskStatus::Cancelled, _) => TaskPayload::Cancelled,
        (TaskStatus::Completed | TaskStatus::Failed, Some(result)) => TaskPayload::Completed {
            result: result.clone(),
        },
        (TaskStatus::Completed | TaskStatus::Failed, None) => {
            let message = record
                .error
                .clone()
                .unwrap_or_else(|| "the task ended without a result".into());
            let error = json!({"code": ErrorCode::INTERNAL_ERROR.0, "message": message});
            TaskPayload::Failed {
                error: error.as_object().cloned().unwrap_or_default(),
            }
        }
    }
}

fn detailed(gateway: &Gateway, record: &TaskRecord) -> DetailedTask {
    let payload = payload_of(record);
    DetailedTask::new(task_of(gateway, record, payload.status()), payload)
}

/// What the queue knows, for people: which queue state, paused or not, the error.
fn status_message(gateway: &Gateway, record: &TaskRecord) -> String {
    let agent = &record.agent;
    match record.status {
        TaskStatus::Pending => {
            let paused = Name::parse(agent)
                .ok()
                .and_then(|name| gateway.tasks().stats(&name).ok())
                .is_some_and(|stats| stats.queue_status == "paused");
            if paused {
                format!("pending: waiting in the queue of agent {agent}, which is paused")
            } else {
                format!("pending: waiting in the queue of agent {agent}")
            }
        }
        TaskStatus::Processing => format!("processing: the gateway is calling agent {agent}"),
        TaskStatus::Completed => "completed".into(),
        TaskStatus::Failed => match (&record.error, &record.tool_result) {
            (Some(error), Some(_)) => format!("completed with a failure of the agent: {error}"),
            (Some(error), None) => format!("failed: {error}"),
            (None, _) => "failed".into(),
        },
        TaskStatus::Cancelled => "cancelled by the caller".into(),
    }
}

/// `2026-12-07T14:23:06.123Z` for milliseconds since the epoch.
fn iso8601(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ),
        // Past year 9999: not a time this clock gives.
        Err(_) => "9999-12-31T23:59:59.999Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_in_utc_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_796_653_386_123), "2026-12-07T14:23:06.123Z");
    }

    fn record(status: TaskStatus, tool_result: Option<Value>, error: Option<&str>) -> TaskRecord {
        TaskRecord {
            task_id: "t".into(),
            agent: "sleeper.finance.acme".into(),
            arguments: JsonObject::new(),
            priority: 0,
            seq: 0,
            created_at_ms: 1_000,
            status,
            result: None,
            error: error.map(str::to_string),
            retry_count: 0,
            max_retries: 0,
            started_at_ms: None,
            finished_at_ms: None,
            idempotency: None,
            interrupted: false,
            mcp_task: true,
            tool_result,
        }
    }

    #[test]
    fn queue_states_map_to_the_extension_states() {
        let answered = json!({"content": [{"type": "text", "text": "x"}], "isError": true});
        let cases = [
            (record(TaskStatus::Pending, None, None), McpStatus::Working),
            (
                record(TaskStatus::Processing, None, None),
                McpStatus::Working,
            ),
            (
                record(TaskStatus::Completed, Some(json!({"content": []})), None),
                McpStatus::Completed,
            ),
            // The agent tool answered with isError: a completed task (SEP-2663).
            (
                record(TaskStatus::Failed, Some(answered.clone()), Some("x")),
                McpStatus::Completed,
            ),
            // No result at all: a JSON-RPC internal error.
            (
                record(TaskStatus::Failed, None, Some("stopped")),
                McpStatus::Failed,
            ),
            (
                record(TaskStatus::Cancelled, None, None),
                McpStatus::Cancelled,
            ),
        ];
        for (record, status) in cases {
            assert_eq!(payload_of(&record).status(), status, "{:?}", record.status);
        }
        match payload_of(&record(TaskStatus::Failed, None, Some("stopped"))) {
            TaskPayload::Failed { error } => {
                assert_eq!(error["code"], json!(-32603));
                assert_eq!(error["message"], json!("stopped"));
            }
            other => panic!("{other:?}"),
        }
        match payload_of(&record(TaskStatus::Failed, Some(answered.clone()), None)) {
            TaskPayload::Completed { result } => assert_eq!(Value::Object(result), answered),
            other => panic!("{other:?}"),
        }
    }
}
