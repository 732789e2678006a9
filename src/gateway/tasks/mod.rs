//! Tasks at the gateway (docs/protocol.md §10.1): the Python AOP server's queue, done
//! properly. A caller submits a task for an agent and gets its id at once; the gateway runs
//! it later through the same call path as the agent's own tool (breakers, retries, endpoint
//! choice), and keeps its status and result for `--task-ttl`.
//!
//! Why a room of the gateway, not of the core: a task is an agent call deferred, so its
//! workers need the gateway's call path, and its cancel is an MCP `notifications/cancelled`
//! to the agent; nothing here is zone data. The durable part is the gateway's own redb file
//! with its own tables ([`store`]), not the node's store, which the gateway never touches.
//!
//! - [`record`]: one task, as kept in memory and on disk;
//! - [`queues`]: one bounded priority queue per agent, created on first use, the per-agent
//!   concurrency limit, pause/resume/clear/cancel, idempotency keys, expiry, and the
//!   recovery of a restarted gateway;
//! - [`store`]: the redb file and its one writer thread (group commit, fsync).
//!
//! The queue calls agents through [`TaskRunner`], which the gateway implements, so this
//! room needs nothing of the gateway's state and its tests run on a twin.

pub mod queues;
pub mod record;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::name::Name;

pub use queues::{QueueStats, TaskQueues};
pub use record::{TaskRecord, TaskStatus};

/// How the task queues run.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Pending tasks one agent's queue holds at most (`--queue-size`).
    pub queue_size: usize,
    /// Tasks of one agent running at once (`--agent-concurrency`).
    pub agent_concurrency: usize,
    /// How long a finished task stays known (`--task-ttl`).
    pub ttl: Duration,
    /// Where tasks are kept across restarts (`--data-dir`); in memory without.
    pub data_dir: Option<PathBuf>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            queue_size: 1000,
            agent_concurrency: 16,
            ttl: Duration::from_secs(3600),
            data_dir: None,
        }
    }
}

/// What running a task came to.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// The agent answered: `result` is its tool's answer; `success` false when the agent
    /// reported a failure (then `error` says what).
    Answered {
        result: Value,
        success: bool,
        error: Option<String>,
        retries: u32,
        /// The whole `CallToolResult` of the agent tool (kept for MCP tasks only).
        tool_result: Option<Value>,
    },
    /// The call failed (no endpoint answered, time ran out); `error` says why, and
    /// `tool_result` is the `isError` result the agent tool would have answered.
    Failed {
        error: String,
        tool_result: Option<Value>,
    },
    /// The task was cancelled while the call was out.
    Cancelled,
}

/// How the queue reaches agents: the gateway's call path.
pub trait TaskRunner: Send + Sync + 'static {
    /// Calls `agent` with `arguments`; `cancel` cancels the call at the agent.
    fn run(
        &self,
        agent: Name,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, RunOutcome>;

    /// Whether `agent`'s tool is annotated `idempotentHint` (asked before a task that was
    /// processing when the gateway stopped runs again).
    fn idempotent(&self, agent: Name) -> BoxFuture<'_, Result<bool, String>>;
}

/// Everything a task operation can fail with; each message names what was wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    #[error(
        "Agent '{agent}' has no task queue: no task was ever submitted to it (submit_task creates it)"
    )]
    NoQueue { agent: String },
    #[error(
        "Task '{task_id}' not found for agent '{agent}' (unknown, or finished more than the task TTL ago)"
    )]
    UnknownTask { task_id: String, agent: String },
    #[error(
        "Queue for agent '{agent}' is full: {limit} pending tasks is the limit (--queue-size); wait for tasks to finish or clear the queue"
    )]
    QueueFull { agent: String, limit: usize },
    #[error("Task '{task_id}' is already {}: only pending or processing tasks can be cancelled", status.as_str())]
    AlreadyFinished { task_id: String, status: TaskStatus },
    #[error(
        "idempotency_key '{key}' was already used for task '{task_id}' of agent '{agent}' with other arguments or priority; use a new key for a different task"
    )]
    IdempotencyConflict {
        key: String,
        task_id: String,
        agent: String,
    },
    #[error("task store {}: {reason}", path.display())]
    Store { path: PathBuf, reason: String },
}

#[cfg(test)]
mod tests;
