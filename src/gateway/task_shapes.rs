//! The task tools' names and definitions (docs/protocol.md §10.1): the Python AOP server's
//! nine queue tools under its names and arguments, and `submit_task`.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

pub const SUBMIT_TASK: &str = "submit_task";
pub const GET_QUEUE_STATS: &str = "get_queue_stats";
pub const PAUSE_AGENT_QUEUE: &str = "pause_agent_queue";
pub const RESUME_AGENT_QUEUE: &str = "resume_agent_queue";
pub const CLEAR_AGENT_QUEUE: &str = "clear_agent_queue";
pub const GET_TASK_STATUS: &str = "get_task_status";
pub const CANCEL_TASK: &str = "cancel_task";
pub const PAUSE_ALL_QUEUES: &str = "pause_all_queues";
pub const RESUME_ALL_QUEUES: &str = "resume_all_queues";
pub const CLEAR_ALL_QUEUES: &str = "clear_all_queues";

/// Every task tool name.
pub const NAMES: [&str; 10] = [
    SUBMIT_TASK,
    GET_QUEUE_STATS,
    PAUSE_AGENT_QUEUE,
    RESUME_AGENT_QUEUE,
    CLEAR_AGENT_QUEUE,
    GET_TASK_STATUS,
    CANCEL_TASK,
    PAUSE_ALL_QUEUES,
    RESUME_ALL_QUEUES,
    CLEAR_ALL_QUEUES,
];

/// The largest priority a task may have.
pub const PRIORITY_MAX: u32 = 1_000_000;

/// The longest idempotency key, in characters.
pub const IDEMPOTENCY_KEY_MAX: usize = 256;

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn agent_name() -> Value {
    json!({"type": "string", "description": "The agent's full name (analyst.finance.acme) or its tool name"})
}

fn task_id() -> Value {
    json!({"type": "string", "description": "The task_id submit_task returned"})
}

fn read_only() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn changes_queues() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn cancels() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(true)
        .idempotent(true)
        .open_world(false)
}

/// The task tools' definitions.
pub fn tools() -> Vec<Tool> {
    let one_agent = || {
        schema(json!({
            "type": "object",
            "properties": {"agent_name": agent_name()},
            "required": ["agent_name"]
        }))
    };
    let one_task = || {
        schema(json!({
            "type": "object",
            "properties": {"agent_name": agent_name(), "task_id": task_id()},
            "required": ["agent_name", "task_id"]
        }))
    };
    let nothing = || schema(json!({"type": "object", "properties": {}}));
    vec![
        Tool::new(
            SUBMIT_TASK,
            "Queue a task for an agent and get its task_id at once; the gateway calls the \
             agent later (higher priority first, first in first out within a priority) and \
             keeps the result. Follow it with get_task_status; cancel_task cancels it, at \
             the agent too when it is running.",
            schema(json!({
                "type": "object",
                "properties": {
                    "agent_name": agent_name(),
                    "arguments": {"type": "object", "description": "The agent's arguments, e.g. {\"task\": \"...\"} (checked against its input schema)"},
                    "priority": {"type": "integer", "minimum": 0, "maximum": PRIORITY_MAX, "default": 0,
                                 "description": "Higher runs first"},
                    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX,
                                        "description": "Submitting again with the same key gives the first task's id"}
                },
                "required": ["agent_name", "arguments"]
            })),
        )
        .annotate(ToolAnnotations::new().open_world(true)),
        Tool::new(
            GET_QUEUE_STATS,
            "Queue statistics of one agent (or of every agent that has a queue): task counts \
             by status, average processing time, tasks waiting, and whether it is paused.",
            schema(json!({"type": "object", "properties": {"agent_name": agent_name()}})),
        )
        .annotate(read_only()),
        Tool::new(
            PAUSE_AGENT_QUEUE,
            "Pause an agent's task queue: running tasks finish, pending ones wait. Stays \
             paused across gateway restarts.",
            one_agent(),
        )
        .annotate(changes_queues()),
        Tool::new(
            RESUME_AGENT_QUEUE,
            "Resume an agent's task queue.",
            one_agent(),
        )
        .annotate(changes_queues()),
        Tool::new(
            CLEAR_AGENT_QUEUE,
            "Cancel every pending task of an agent's queue; answers how many.",
            one_agent(),
        )
        .annotate(cancels()),
        Tool::new(
            GET_TASK_STATUS,
            "A task's status (pending, processing, completed, failed, cancelled), result and \
             error.",
            one_task(),
        )
        .annotate(read_only()),
        Tool::new(
            CANCEL_TASK,
            "Cancel a pending or running task (a running one is cancelled at the agent).",
            one_task(),
        )
        .annotate(cancels()),
        Tool::new(
            PAUSE_ALL_QUEUES,
            "Pause every agent's task queue.",
            nothing(),
        )
        .annotate(changes_queues()),
        Tool::new(
            RESUME_ALL_QUEUES,
            "Resume every agent's task queue.",
            nothing(),
        )
        .annotate(changes_queues()),
        Tool::new(
            CLEAR_ALL_QUEUES,
            "Cancel every pending task of every agent's queue.",
            nothing(),
        )
        .annotate(cancels()),
    ]
}
