//! The call path: from a resolved agent to its answer, reliably.
//!
//! 1. Validate the arguments against the agent's `input_schema` (compiled once per schema);
//!    a bad argument is an `isError` result naming the field.
//! 2. The agent's `timeout_ms` (or the caller's, when smaller) bounds the whole call,
//!    retries and backoff included.
//! 3. Choose an endpoint: the lowest priority among those whose breaker lets a call through,
//!    then weighted random (SRV semantics); a retry prefers an endpoint not tried yet.
//! 4. Call it on its pooled session, passing progress through and cancellation on.
//! 5. A failure before the agent got the call is retried; a timeout or a connection lost
//!    after sending only for tools the endpoint marks `idempotentHint` (docs/protocol.md §6).
//!    Up to `max_retries` retries, exponential backoff with full jitter between them.
//!
//! An agent's own failure (a result with `isError`) is an answer, not a failure of the
//! endpoint: it is returned as is, never retried, and keeps the breaker closed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken, ResultType,
    ServerResult,
};
use rmcp::service::PeerRequestOptions;
use rmcp::{Peer, RoleServer, ServiceError};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gateway::breaker::{Breakers, Permit};
use crate::gateway::error::GatewayError;
use crate::gateway::metrics::GatewayMetrics;
use crate::gateway::sessions::{AgentSessions, error_text, failure_of};
use crate::peer::{FailureKind, PeerFailure};
use crate::record::{Agent, Endpoint};

/// What the MCP request that asked for a call brings along.
#[derive(Clone, Default)]
pub struct CallContext {
    /// The caller's progress token and where to send progress.
    pub progress: Option<(ProgressToken, Peer<RoleServer>)>,
    /// Cancelled when the caller cancels its request.
    pub cancel: CancellationToken,
    /// The authenticated caller (`--auth`); `None`: no authorization, everything allowed.
    pub caller: Option<Arc<crate::gateway::auth::Caller>>,
}

impl CallContext {
    /// Whether the caller may see `name` (an agent it may not see does not exist for it).
    pub fn sees(&self, name: &crate::name::Name) -> bool {
        self.caller.as_ref().is_none_or(|caller| caller.sees(name))
    }

    /// Whether the caller may call `name`.
    pub fn may_call(&self, name: &crate::name::Name) -> bool {
        self.caller
            .as_ref()
            .is_none_or(|caller| caller.may_call(name))
    }

    /// Whether anything at or below `zone` may be seen.
    pub fn sees_into(&self, zone: &crate::name::Name) -> bool {
        self.caller
            .as_ref()
            .is_none_or(|caller| caller.policy.sees_into(zone))
    }

    /// Who submits tasks, for idempotency keys: the caller's subject, or `anonymous`.
    pub fn subject(&self) -> &str {
        self.caller
            .as_ref()
            .map_or("anonymous", |caller| caller.subject.as_str())
    }
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry `attempt` (1 for the first retry): full jitter over an
    /// exponentially growing window.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let window = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let millis = window.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
    }
}

/// A successful call.
#[derive(Debug)]
pub struct CallOutcome {
    pub agent: Arc<Agent>,
    pub result: CallToolResult,
    /// The endpoint URL that answered.
    pub endpoint: String,
    pub attempts: u32,
}

/// The text of a result's text blocks, joined by newlines.
fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|text| text.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an agent answered, read as the AOP shape: its text, or, when the agent is itself
/// an AOP server (swarms answers `{"result", "success", "error", ...}` as JSON text, and
/// wraps it in `{"result": {...}}` as structured content), that object's fields, so a
/// swarms agent's failure is a failure here too.
struct AopAnswer {
    success: bool,
    result: String,
    error: Option<String>,
}

fn aop_answer(result: &CallToolResult) -> AopAnswer {
    let text = text_of(result);
    if result.is_error == Some(true) {
        return AopAnswer {
            success: false,
            result: String::new(),
            error: Some(text),
        };
    }
    let inner = result
        .structured_content
        .as_ref()
        .and_then(|structured| structured.get("result").filter(|inner| inner.is_object()))
        .cloned()
        .or_else(|| serde_json::from_str::<Value>(&text).ok());
    if let Some(Value::Object(object)) = inner
        && let Some(Value::Bool(success)) = object.get("success")
        && object.contains_key("result")
    {
        let result = match object.get("result") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let error = match object.get("error") {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        return AopAnswer {
            success: *success,
            result,
            error: if *success {
                error
            } else {
                error.or(Some("the agent reported a failure".into()))
            },
        };
    }
    AopAnswer {
        success: true,
        result: text,
        error: None,
    }
}

impl CallOutcome {
    /// The answer of the agent's own tool (docs/protocol.md §6): with an `output_schema`, the
    /// agent's result unchanged; without, the AOP shape `{result, success, error}`.
    pub fn into_agent_tool_result(self) -> CallToolResult {
        if self.agent.output_schema.is_some() {
            let mut result = self.result;
            // Relayed from the agent, which may speak an older protocol: 2026-07-28 clients
            // need the discriminator (rmcp drops it for older clients).
            result.result_type = Some(ResultType::COMPLETE);
            return result;
        }
        let answer = aop_answer(&self.result);
        let shape =
            json!({"result": answer.result, "success": answer.success, "error": answer.error});
        let body = serde_json::to_string_pretty(&shape).unwrap_or_default();
        // Images, audio and resources the agent returned follow the AOP text block, so
        // nothing the agent said is lost to the shape.
        let mut content = vec![ContentBlock::text(body)];
        content.extend(
            self.result
                .content
                .into_iter()
                .filter(|block| block.as_text().is_none()),
        );
        let mut result = if answer.success {
            CallToolResult::success(content)
        } else {
            CallToolResult::error(content)
        };
        result.structured_content = Some(shape);
        result
    }

    /// The answer of `call_agent`: the agent's content, and as structured content the AOP
    /// shape plus `served_by` (the endpoint that answered), `agent` and `attempts`.
    pub fn into_call_agent_result(self) -> CallToolResult {
        let answer = aop_answer(&self.result);
        let mut structured = json!({
            "result": answer.result,
            "success": answer.success,
            "error": answer.error,
            "served_by": self.endpoint,
            "agent": self.agent.name.to_string(),
            "attempts": self.attempts,
        });
        if let (Some(inner), Value::Object(map)) =
            (self.result.structured_content.clone(), &mut structured)
        {
            map.insert("structured_content".into(), inner);
        }
        let mut result = self.result;
        result.structured_content = Some(structured);
        result.result_type = Some(ResultType::COMPLETE);
        if !answer.success {
            result.is_error = Some(true);
        }
        result
    }
}

/// Compiled input schemas, by schema text, so a schema is compiled once, not per call.
pub struct Validators {
    cache: moka::sync::Cache<Arc<str>, Arc<jsonschema::Validator>>,
}

impl Validators {
    pub fn new() -> Validators {
        Validators {
            cache: moka::sync::Cache::new(10_000),
        }
    }

    /// Checks `arguments` against `agent`'s input schema; the problems name the fields.
    pub fn check(&self, agent: &Agent, arguments: &JsonObject) -> Result<(), GatewayError> {
        let key: Arc<str> = Arc::from(agent.input_schema.text());
        let validator = match self.cache.get(&key) {
            Some(validator) => validator,
            None => {
                // Zone data passed the same compilation when it was loaded; a schema that
                // still fails here is the agent's problem, reported as such.
                let validator =
                    jsonschema::validator_for(agent.input_schema.value()).map_err(|error| {
                        GatewayError::InvalidArguments {
                            agent: agent.name.clone(),
                            problems: vec![format!(
                                "the agent's input_schema does not compile: {error}"
                            )],
                        }
                    })?;
                let validator = Arc::new(validator);
                self.cache.insert(key, Arc::clone(&validator));
                validator
            }
        };
        let instance = Value::Object(arguments.clone());
        let problems: Vec<String> = validator
            .iter_errors(&instance)
            .take(10)
            .map(|error| {
                let path = error.instance_path().to_string();
                let field = match error.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        join_path(&path, property.as_str().unwrap_or_default())
                    }
                    _ => path.trim_start_matches('/').replace('/', "."),
                };
                if field.is_empty() {
                    format!("arguments: {error}")
                } else {
                    format!("`{field}`: {error}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GatewayError::InvalidArguments {
                agent: agent.name.clone(),
                problems,
            })
        }
    }
}

impl Default for Validators {
    fn default() -> Self {
        Validators::new()
    }
}

fn join_path(path: &str, property: &str) -> String {
    let parent = path.trim_start_matches('/').replace('/', ".");
    if parent.is_empty() {
        property.to_string()
    } else {
        format!("{parent}.{property}")
    }
}

/// Picks the endpoint for the next attempt: lowest priority among the permitted, weighted
/// random within it, preferring endpoints not tried yet in this call.
pub fn choose<'a>(
    endpoints: &'a [Endpoint],
    permitted: impl Fn(&Endpoint) -> bool,
    tried: &[String],
) -> Option<&'a Endpoint> {
    let allowed: Vec<&Endpoint> = endpoints.iter().filter(|e| permitted(e)).collect();
    let fresh: Vec<&Endpoint> = allowed
        .iter()
        .copied()
        .filter(|e| !tried.contains(&e.url))
        .collect();
    let pool = if fresh.is_empty() { allowed } else { fresh };
    let best = pool.iter().map(|e| e.priority).min()?;
    let group: Vec<&Endpoint> = pool.into_iter().filter(|e| e.priority == best).collect();
    let total: u64 = group.iter().map(|e| u64::from(e.weight)).sum();
    if total == 0 {
        return group.get(rand::rng().random_range(0..group.len())).copied();
    }
    let mut ticket = rand::rng().random_range(0..total);
    for endpoint in &group {
        let weight = u64::from(endpoint.weight);
        if ticket < weight {
            return Some(endpoint);
        }
        ticket -= weight;
    }
    group.last().copied()
}

/// The endpoint an attempt goes to: one its breaker lets through (a permit is still to be
/// taken), or the early probe of an open breaker (permit taken).
enum Pick<'a> {
    Permitted(&'a Endpoint),
    EarlyProbe(&'a Endpoint, Permit),
}

/// Calls agents: endpoint choice, breakers, sessions, retries.
pub struct Caller {
    pub sessions: AgentSessions,
    pub breakers: Arc<Breakers>,
    pub validators: Validators,
    pub retry: RetryPolicy,
    /// Counts every failed attempt, by reason.
    pub metrics: Arc<GatewayMetrics>,
}

impl Caller {
    /// Calls `agent` with `arguments`, within `timeout_ms` (at most the agent's own).
    /// `marked_down` gives, when asked, the agent's endpoints that its zone's probes marked
    /// down (which answers leave out): tried once the others failed in this call.
    pub async fn call(
        &self,
        agent: Arc<Agent>,
        arguments: JsonObject,
        timeout_ms: Option<u64>,
        context: &CallContext,
        marked_down: &(dyn Fn() -> Vec<Endpoint> + Sync),
    ) -> Result<CallOutcome, GatewayError> {
        self.validators.check(&agent, &arguments)?;
        // Endpoints the zone's probes found down are skipped before any call fails; when
        // every endpoint is down they are all tried (docs/protocol.md §9.1). A probe's
        // verdict is a few samples, taken from the primary's host before this call: once the
        // other endpoints failed in this call, a down one is tried before going back to one
        // that just failed.
        let agent = crate::record::as_answered(&agent);
        let last_resort: std::cell::OnceCell<Vec<Endpoint>> = std::cell::OnceCell::new();
        if agent.endpoints.is_empty() {
            return Err(GatewayError::NoEndpoints {
                agent: agent.name.clone(),
            });
        }
        let budget_ms = timeout_ms
            .unwrap_or(u64::from(agent.timeout_ms))
            .min(u64::from(agent.timeout_ms));
        let deadline = Instant::now() + Duration::from_millis(budget_ms);
        let mut failures: Vec<PeerFailure> = Vec::new();
        let mut tried: Vec<String> = Vec::new();
        let attempts_max = agent.max_retries + 1;
        let mut attempt = 0;
        let mut probed_early = false;
        while attempt < attempts_max {
            attempt += 1;
            if attempt > 1 {
                let pause = self.retry.backoff(attempt - 1);
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::select! {
                    _ = context.cancel.cancelled() => {
                        return Err(GatewayError::Cancelled { agent: agent.name.clone() });
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            let permits = |endpoint: &Endpoint| {
                !matches!(
                    self.breakers.state(&endpoint.url),
                    crate::gateway::breaker::BreakerState::Open
                )
            };
            // An endpoint this call has not tried whose breaker lets it through; else one
            // whose breaker is open but may be back already (the one open longest, once per
            // call: docs/protocol.md §9.3), before going again to one this call saw fail.
            // Otherwise a replica that just died, its breaker not yet open, would take every
            // retry while its recovered sibling waited out its breaker.
            let untried = |endpoint: &Endpoint| permits(endpoint) && !tried.contains(&endpoint.url);
            let fresh = choose(&agent.endpoints, untried, &[]).or_else(|| {
                let down = last_resort.get_or_init(|| {
                    marked_down()
                        .into_iter()
                        .filter(|e| !agent.endpoints.iter().any(|shown| shown.url == e.url))
                        .collect()
                });
                choose(down, untried, &[])
            });
            let pick = match fresh {
                Some(endpoint) => Some(Pick::Permitted(endpoint)),
                None => match self.early_probe(&agent, &tried, probed_early) {
                    Some((endpoint, permit)) => Some(Pick::EarlyProbe(endpoint, permit)),
                    None => choose(&agent.endpoints, permits, &tried).map(Pick::Permitted),
                },
            };
            let (endpoint, permit) = match pick {
                Some(Pick::EarlyProbe(endpoint, permit)) => {
                    probed_early = true;
                    (endpoint, permit)
                }
                Some(Pick::Permitted(endpoint)) => match self.breakers.try_acquire(&endpoint.url) {
                    Some(permit) => (endpoint, permit),
                    None => {
                        // A half-open breaker whose single probe is already out.
                        tried.push(endpoint.url.clone());
                        self.metrics.record_attempt_failure(&FailureKind::NotSent);
                        failures.push(PeerFailure::new(
                            &endpoint.url,
                            FailureKind::NotSent,
                            "circuit breaker open (a probe is in flight)",
                        ));
                        continue;
                    }
                },
                None => {
                    // Every endpoint's breaker is open and the early probe is spent:
                    // waiting out a backoff would not change that.
                    self.metrics.record_attempt_failure(&FailureKind::NotSent);
                    return Err(self.breakers_open(&agent, &failures));
                }
            };
            tried.push(endpoint.url.clone());
            let outcome = self.attempt(endpoint, &arguments, deadline, context).await;
            match outcome {
                Ok(result) => {
                    self.breakers.record(permit, true);
                    let endpoint = endpoint.url.clone();
                    return Ok(CallOutcome {
                        agent,
                        result,
                        endpoint,
                        attempts: attempt,
                    });
                }
                Err(AttemptError::Cancelled) => {
                    self.breakers.release(permit);
                    return Err(GatewayError::Cancelled {
                        agent: agent.name.clone(),
                    });
                }
                Err(AttemptError::Failed(failure, retryable)) => {
                    self.breakers.record(permit, false);
                    tracing::debug!(agent = %agent.name, %failure, retryable, "agent call attempt failed");
                    self.metrics.record_attempt_failure(&failure.kind);
                    failures.push(failure);
                    if probed_early && !agent.endpoints.iter().any(permits) {
                        // The endpoint open longest is still down and every other breaker
                        // is open: the rest wait for their breakers.
                        return Err(self.breakers_open(&agent, &failures));
                    }
                    if !retryable {
                        break;
                    }
                }
                Err(AttemptError::OutOfTime(failure)) => {
                    self.breakers.record(permit, false);
                    self.metrics.record_attempt_failure(&failure.kind);
                    failures.push(failure);
                    break;
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let attempts: Vec<String> = failures.iter().map(ToString::to_string).collect();
        if Instant::now() >= deadline {
            Err(GatewayError::Timeout {
                agent: agent.name.clone(),
                timeout_ms: budget_ms,
                attempts,
            })
        } else {
            Err(GatewayError::Failed {
                agent: agent.name.clone(),
                attempts,
            })
        }
    }

    /// The early probe of a call whose agent has every endpoint's breaker open: the
    /// endpoint open longest that this call has not tried, unless the call probed already.
    fn early_probe<'a>(
        &self,
        agent: &'a Agent,
        tried: &[String],
        probed_early: bool,
    ) -> Option<(&'a Endpoint, Permit)> {
        if probed_early {
            return None;
        }
        let untried = agent
            .endpoints
            .iter()
            .filter(|endpoint| !tried.contains(&endpoint.url))
            .map(|endpoint| endpoint.url.as_str());
        let permit = self.breakers.acquire_longest_open(untried)?;
        let endpoint = agent
            .endpoints
            .iter()
            .find(|endpoint| endpoint.url == permit.url);
        match endpoint {
            Some(endpoint) => Some((endpoint, permit)),
            None => {
                self.breakers.release(permit);
                None
            }
        }
    }

    /// The error of a call that found every endpoint's breaker open, after `failures`.
    fn breakers_open(&self, agent: &Agent, failures: &[PeerFailure]) -> GatewayError {
        let next_probe = agent
            .endpoints
            .iter()
            .filter_map(|endpoint| self.breakers.open_for(&endpoint.url))
            .min()
            .unwrap_or_default();
        GatewayError::BreakersOpen {
            agent: agent.name.clone(),
            next_probe,
            attempts: failures.iter().map(ToString::to_string).collect(),
        }
    }

    /// One attempt on one endpoint.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        arguments: &JsonObject,
        deadline: Instant,
        context: &CallContext,
    ) -> Result<CallToolResult, AttemptError> {
        let url = endpoint.url.as_str();
        let started = Instant::now();
        let failed = |kind: FailureKind, reason: &str| PeerFailure::new(url, kind, reason);
        let session = tokio::select! {
            _ = context.cancel.cancelled() => return Err(AttemptError::Cancelled),
            opened = tokio::time::timeout_at(deadline, self.sessions.session(url)) => match opened {
                Err(_) => {
                    return Err(AttemptError::OutOfTime(failed(
                        FailureKind::Unreachable,
                        "out of time opening a session",
                    )));
                }
                Ok(Err(failure)) => return Err(AttemptError::Failed(failure, true)),
                Ok(Ok(session)) => session,
            },
        };
        let idempotent = session.is_idempotent(&endpoint.tool);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(
            CallToolRequestParams::new(endpoint.tool.clone()).with_arguments(arguments.clone()),
        ));
        let remaining = deadline.saturating_duration_since(Instant::now());
        let options = PeerRequestOptions::with_timeout(remaining);
        let handle = match session
            .service
            .send_request_with_option(request, options)
            .await
        {
            Ok(handle) => handle,
            // Never queued: the session is gone.
            Err(error) => {
                return Err(AttemptError::Failed(
                    failed(FailureKind::Unreachable, &error_text(&error)),
                    true,
                ));
            }
        };
        let request_id = handle.id.clone();
        let peer = handle.peer.clone();
        let dispatcher = session.service.service().progress.clone();
        let agent_token = handle.progress_token.clone();
        let relay = match context.progress.clone() {
            None => None,
            Some((token, client)) => {
                let mut updates = dispatcher.subscribe(agent_token.clone()).await;
                Some(tokio::spawn(async move {
                    while let Some(update) = updates.next().await {
                        let mut forwarded =
                            ProgressNotificationParam::new(token.clone(), update.progress);
                        forwarded.total = update.total;
                        forwarded.message = update.message;
                        if client.notify_progress(forwarded).await.is_err() {
                            return;
                        }
                    }
                }))
            }
        };
        let response = tokio::select! {
            response = handle.await_response() => Some(response),
            _ = context.cancel.cancelled() => None,
        };
        // Progress sent just before the result is still queued for the relay: end its
        // stream and let it drain, briefly.
        dispatcher.unsubscribe(&agent_token).await;
        if let Some(mut relay) = relay
            && tokio::time::timeout(Duration::from_millis(100), &mut relay)
                .await
                .is_err()
        {
            relay.abort();
        }
        let Some(response) = response else {
            let _ = peer
                .notify_cancelled(CancelledNotificationParam::new(
                    Some(request_id),
                    Some("cancelled by the gateway's caller".into()),
                ))
                .await;
            return Err(AttemptError::Cancelled);
        };
        match response {
            Ok(ServerResult::CallToolResult(result)) => Ok(result),
            Ok(_) => Err(AttemptError::Failed(
                failed(FailureKind::BadAnswer, "unexpected response to tools/call"),
                false,
            )),
            // The agent answered with a JSON-RPC error: it got the call and refused it.
            Err(ServiceError::McpError(error)) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "the agent refused the call: {}",
                    error.message
                ))]))
            }
            Err(ServiceError::Timeout { .. }) => Err(AttemptError::OutOfTime(failed(
                FailureKind::Timeout(started.elapsed()),
                "no answer within the time budget",
            ))),
            Err(error) => {
                let failure = failure_of(url, &error);
                let retryable = failure.retry_elsewhere(idempotent);
                Err(AttemptError::Failed(failure, retryable))
            }
        }
    }
}

enum AttemptError {
    /// The attempt failed; whether the call may go to another endpoint.
    Failed(PeerFailure, bool),
    OutOfTime(PeerFailure),
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, priority: u16, weight: u16) -> Endpoint {
        Endpoint {
            url: url.into(),
            tool: "t".into(),
            priority,
            weight,
            health: Default::default(),
        }
    }

    #[test]
    fn lowest_priority_wins_and_weights_share_it() {
        let endpoints = [
            endpoint("a", 10, 3),
            endpoint("b", 10, 1),
            endpoint("c", 20, 100),
        ];
        let mut counts = std::collections::HashMap::new();
        for _ in 0..4000 {
            let chosen = choose(&endpoints, |_| true, &[]).unwrap();
            *counts.entry(chosen.url.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.get("c"), None, "priority 20 is a backup");
        let a = counts["a"] as f64;
        let b = counts["b"] as f64;
        assert!((2.4..3.8).contains(&(a / b)), "weights 3:1, got {a}:{b}");
    }

    #[test]
    fn failing_endpoints_fall_back_to_the_next_priority_and_retries_move_on() {
        let endpoints = [endpoint("a", 10, 1), endpoint("b", 20, 1)];
        let chosen = choose(&endpoints, |e| e.url != "a", &[]).unwrap();
        assert_eq!(chosen.url, "b");
        let chosen = choose(&endpoints, |_| true, &["a".into()]).unwrap();
        assert_eq!(chosen.url, "b", "a retry prefers an endpoint not tried");
        let chosen = choose(&endpoints, |_| true, &["a".into(), "b".into()]).unwrap();
        assert_eq!(chosen.url, "a", "all tried: back to the best");
        assert!(choose(&endpoints, |_| false, &[]).is_none());
    }

    #[test]
    fn zero_weights_are_chosen_uniformly() {
        let endpoints = [endpoint("a", 10, 0), endpoint("b", 10, 0)];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(choose(&endpoints, |_| true, &[]).unwrap().url.clone());
        }
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = policy.backoff(3);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            let tenth = policy.backoff(10);
            assert!((200..=400).contains(&tenth.as_millis()), "{tenth:?}");
        }
    }
}

#[cfg(test)]
mod aop_answer_tests {
    use super::*;

    fn text_result(text: &str, is_error: bool) -> CallToolResult {
        let content = vec![ContentBlock::text(text)];
        if is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        }
    }

    #[test]
    fn plain_text_is_the_result_and_is_error_the_failure() {
        let answer = aop_answer(&text_result("count=3", false));
        assert!(answer.success);
        assert_eq!(answer.result, "count=3");
        let answer = aop_answer(&text_result("no numbers", true));
        assert!(!answer.success);
        assert_eq!(answer.error.as_deref(), Some("no numbers"));
    }

    #[test]
    fn an_aop_servers_answer_is_unwrapped() {
        let ok = r#"{"result": "echo: hi", "success": true, "error": null, "task_id": "x"}"#;
        let answer = aop_answer(&text_result(ok, false));
        assert!(answer.success);
        assert_eq!(answer.result, "echo: hi");
        let failed = r#"{"result": "", "success": false, "error": "stub failure: boom"}"#;
        let answer = aop_answer(&text_result(failed, false));
        assert!(
            !answer.success,
            "swarms reports failures with isError false"
        );
        assert_eq!(answer.error.as_deref(), Some("stub failure: boom"));
        // JSON that is not the AOP shape stays text.
        let answer = aop_answer(&text_result(r#"{"total": 3}"#, false));
        assert_eq!(answer.result, r#"{"total": 3}"#);
    }
}
