//! One task as the gateway keeps it, in memory and on disk: the submission (agent, arguments,
//! priority, idempotency key), where it is in its life (`TaskStatus`), and its outcome.
//!
//! Stored as JSON (the arguments and results are JSON already, and the file is the gateway's
//! own, read back only by the gateway that wrote it); every stored value is checked when it
//! is loaded, so a damaged value is an error naming the task, never a panic.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Where a task is in its life (the Python AOP server's five states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Pending,
        TaskStatus::Processing,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing more happens to it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The idempotency key of a submission and who gave it: the same key from the same caller
/// for the same agent names the same task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub caller: String,
    pub key: String,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRecord {
    pub task_id: String,
    /// The agent's full name, canonical.
    pub agent: String,
    pub arguments: Map<String, Value>,
    /// Higher runs first.
    pub priority: u32,
    /// Submission order across the gateway: equal priorities run first in, first out.
    pub seq: u64,
    pub created_at_ms: u64,
    pub status: TaskStatus,
    /// The agent tool's answer (its structured content), once there is one.
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Attempts beyond the first: the call path's retries, and a run again after a restart.
    pub retry_count: u32,
    /// The agent's `max_retries`.
    pub max_retries: u32,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub idempotency: Option<IdempotencyKey>,
    /// It was processing when the gateway stopped: before it runs again the worker asks
    /// whether the agent's tool is idempotent.
    #[serde(default)]
    pub interrupted: bool,
    /// Created by an agent tool call through the MCP tasks extension (docs/protocol.md
    /// §10.1), not by `submit_task`: `tasks/get` serves it, with [`TaskRecord::tool_result`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mcp_task: bool,
    /// For an MCP task, the whole `CallToolResult` the agent tool answered (content blocks
    /// included), which `tasks/get` returns as the task's `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<Value>,
}

impl TaskRecord {
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings, numbers and JSON values always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<TaskRecord, String> {
        let record: TaskRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if record.task_id.is_empty() || record.agent.is_empty() {
            return Err("a task with an empty id or agent".into());
        }
        Ok(record)
    }

    /// The Python AOP server's task layout (`get_task_status`), plus `agent_name`.
    pub fn to_json(&self) -> Value {
        json!({
            "task_id": self.task_id,
            "status": self.status.as_str(),
            "created_at": self.created_at_ms as f64 / 1000.0,
            "result": self.result,
            "error": self.error,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "agent_name": self.agent,
            "started_at": self.started_at_ms.map(|ms| ms as f64 / 1000.0),
            "finished_at": self.finished_at_ms.map(|ms| ms as f64 / 1000.0),
        })
    }

    /// When it last changed: finished, started, or created (milliseconds since the epoch).
    pub fn last_updated_ms(&self) -> u64 {
        self.finished_at_ms
            .or(self.started_at_ms)
            .unwrap_or(self.created_at_ms)
    }

    /// How long it ran, when it ran to an end.
    pub fn processing_ms(&self) -> Option<u64> {
        match (self.started_at_ms, self.finished_at_ms, self.status) {
            (Some(start), Some(end), TaskStatus::Completed | TaskStatus::Failed) => {
                Some(end.saturating_sub(start))
            }
            _ => None,
        }
    }
}

/// A fresh task id: 122 random bits in the UUID v4 layout, as the Python AOP server's ids.
pub fn new_task_id() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_uuid_v4_shaped_and_distinct() {
        let a = new_task_id();
        let b = new_task_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn records_round_trip_and_damage_is_an_error() {
        let record = TaskRecord {
            task_id: new_task_id(),
            agent: "sleeper.finance.acme".into(),
            arguments: serde_json::from_value(json!({"task": "x"})).unwrap(),
            priority: 3,
            seq: 7,
            created_at_ms: 1_000,
            status: TaskStatus::Completed,
            result: Some(json!({"result": "ok", "success": true, "error": null})),
            error: None,
            retry_count: 0,
            max_retries: 2,
            started_at_ms: Some(1_500),
            finished_at_ms: Some(2_000),
            idempotency: None,
            interrupted: false,
            mcp_task: false,
            tool_result: None,
        };
        assert_eq!(TaskRecord::decode(&record.encode()).unwrap(), record);
        // A task of the queue tools is stored as before the MCP tasks extension existed.
        let stored: Value = serde_json::from_slice(&record.encode()).unwrap();
        assert!(stored.get("mcp_task").is_none() && stored.get("tool_result").is_none());
        let mcp = TaskRecord {
            mcp_task: true,
            tool_result: Some(json!({"content": [], "isError": false})),
            ..record.clone()
        };
        assert_eq!(TaskRecord::decode(&mcp.encode()).unwrap(), mcp);
        assert_eq!(record.processing_ms(), Some(500));
        assert_eq!(record.to_json()["created_at"], json!(1.0));
        assert!(TaskRecord::decode(b"{\"task_id\": 3}").is_err());
        assert!(TaskRecord::decode(b"\xff").is_err());
    }
}
