//! What the gateway counts of its own traffic: tool calls by tool and outcome, their latency,
//! and failed attempts at agents' endpoints by reason. Everything else the gateway's
//! `/metrics` shows (mounted zones, breakers, sessions, the name cache) is read at scrape
//! time from where it already lives, as on a node.
//!
//! Recorded by the MCP handler (one count and one latency per `tools/call`) and the call
//! path (one count per failed attempt); read by the admin endpoint (`admin::gateway`). The
//! histograms are the node's (`telemetry::Histogram`), so both expose the same buckets.
//!
//! The `tool` label is bounded: a tool that is neither a meta tool nor a mounted agent is
//! counted as [`UNKNOWN_TOOL`] (a client chooses those names), and past [`TOOL_LABELS_MAX`]
//! distinct tools the rest are counted as [`OTHER_TOOLS`], so a zone of 100,000 agents
//! cannot make the exposition unbounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::peer::FailureKind;
use crate::telemetry::{Histogram, HistogramSnapshot};

/// Distinct `tool` labels counted before the rest share [`OTHER_TOOLS`].
pub const TOOL_LABELS_MAX: usize = 1024;
/// The label of calls to a tool the gateway does not offer.
pub const UNKNOWN_TOOL: &str = "_unknown";
/// The label of calls to tools past the first [`TOOL_LABELS_MAX`].
pub const OTHER_TOOLS: &str = "_other";

/// Which kind of tool answered a call: its latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// A discovery, search or routing tool of the gateway itself.
    Meta,
    /// A mounted agent's own tool.
    Agent,
}

impl ToolKind {
    pub const ALL: [ToolKind; 2] = [ToolKind::Meta, ToolKind::Agent];

    pub fn label(self) -> &'static str {
        match self {
            ToolKind::Meta => "meta",
            ToolKind::Agent => "agent",
        }
    }
}

/// The gateway's own counters (one per gateway, shared by every MCP session).
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    // std Mutex: held for one map update per tool call, never across an await.
    calls: Mutex<HashMap<(String, &'static str), u64>>,
    latency: [Histogram; 2],
    attempt_failures: [AtomicU64; FailureKind::LABELS.len()],
}

impl GatewayMetrics {
    /// Counts one finished `tools/call`: `kind` is `None` for an unknown tool.
    pub fn record_call(
        &self,
        tool: &str,
        kind: Option<ToolKind>,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let tool = if kind.is_none() { UNKNOWN_TOOL } else { tool };
        {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            let key = (tool.to_string(), outcome);
            if let Some(count) = calls.get_mut(&key) {
                *count += 1;
            } else {
                let known = calls.keys().any(|(name, _)| name == tool);
                let tools = || {
                    calls
                        .keys()
                        .map(|(name, _)| name.as_str())
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                };
                let key = if known || tools() < TOOL_LABELS_MAX {
                    key
                } else {
                    (OTHER_TOOLS.to_string(), outcome)
                };
                *calls.entry(key).or_default() += 1;
            }
        }
        if let Some(kind) = kind {
            self.latency[kind as usize].observe(elapsed);
        }
    }

    /// Counts one failed attempt at an agent's endpoint (the call may still succeed on
    /// another).
    pub fn record_attempt_failure(&self, kind: &FailureKind) {
        self.attempt_failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls so far: (tool, outcome, count), in tool then outcome order.
    pub fn calls(&self) -> Vec<(String, &'static str, u64)> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = calls
            .iter()
            .map(|((tool, outcome), count)| (tool.clone(), *outcome, *count))
            .collect();
        out.sort();
        out
    }

    /// The latency of calls to tools of `kind`.
    pub fn latency(&self, kind: ToolKind) -> HistogramSnapshot {
        self.latency[kind as usize].snapshot()
    }

    /// Failed attempts so far, by reason ([`FailureKind::LABELS`]).
    pub fn attempt_failures(&self) -> Vec<(&'static str, u64)> {
        FailureKind::LABELS
            .iter()
            .zip(&self.attempt_failures)
            .map(|(label, count)| (*label, count.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_tool_and_outcome_with_bounded_labels() {
        let metrics = GatewayMetrics::default();
        let ms = Duration::from_millis(1);
        metrics.record_call("analyst_finance_acme", Some(ToolKind::Agent), "ok", ms);
        metrics.record_call("analyst_finance_acme", Some(ToolKind::Agent), "ok", ms);
        metrics.record_call("list_agents", Some(ToolKind::Meta), "ok", ms);
        metrics.record_call("whatever_a_client_says", None, "unknown_tool", ms);
        assert_eq!(
            metrics.calls(),
            vec![
                (UNKNOWN_TOOL.to_string(), "unknown_tool", 1),
                ("analyst_finance_acme".to_string(), "ok", 2),
                ("list_agents".to_string(), "ok", 1),
            ]
        );
        assert_eq!(metrics.latency(ToolKind::Agent).count, 2);
        assert_eq!(metrics.latency(ToolKind::Meta).count, 1);
        for index in 0..TOOL_LABELS_MAX + 10 {
            metrics.record_call(&format!("t{index}"), Some(ToolKind::Agent), "ok", ms);
        }
        let calls = metrics.calls();
        let tools: std::collections::HashSet<&str> =
            calls.iter().map(|(tool, _, _)| tool.as_str()).collect();
        assert_eq!(tools.len(), TOOL_LABELS_MAX + 1);
        let other = calls.iter().find(|(tool, _, _)| tool == OTHER_TOOLS);
        assert_eq!(other.map(|c| c.2), Some(13));
        metrics.record_attempt_failure(&FailureKind::Unreachable);
        assert_eq!(metrics.attempt_failures()[0], ("unreachable", 1));
    }
}
