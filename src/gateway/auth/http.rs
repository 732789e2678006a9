//! The HTTP side of the resource server: what `/mcp` answers before rmcp sees a request.
//!
//! - `GET /.well-known/oauth-protected-resource` (and `.../mcp`, and the path of
//!   `[resource] url` when it is another): RFC 9728 metadata, no token needed.
//! - A token in the query string (`access_token=`): 400 `invalid_request` (RFC 6750 §2.3
//!   permits that method; MCP authorization forbids it, and a URL ends up in logs).
//! - No bearer: 401 `WWW-Authenticate: Bearer resource_metadata="..."`; a bearer that does
//!   not verify: 401 with `error="invalid_token"` and a description of what failed.
//! - Over the caller's bucket: 429 with `Retry-After`.
//! - A `tools/call` of an agent the caller sees but may not call (its agent tool,
//!   `call_agent`, `submit_task`, the queue-control tools, or `route_task` for a caller that
//!   may call nothing): 403 `error="insufficient_scope"`. One the caller does not see goes
//!   on to the handler, which answers exactly as for an agent that does not exist. Over the
//!   agent's bucket: 429.
//!
//! The tool call's target is read from the JSON-RPC message `check_body` already parsed
//! (within the MCP body limit), so nothing reads the body twice.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonObject, RequestId};
use serde_json::{Value, json};

use super::bucket::retry_after_s;
use super::{AuthError, Authorizer, Caller};
use crate::gateway::meta::find_mounted;
use crate::gateway::shapes::{CALL_AGENT, NAMES, ROUTE_TASK};
use crate::gateway::state::Gateway;
use crate::gateway::task_shapes::{
    CANCEL_TASK, CLEAR_AGENT_QUEUE, PAUSE_AGENT_QUEUE, RESUME_AGENT_QUEUE, SUBMIT_TASK,
};
use crate::mcp::http::McpAuth;
use crate::name::Name;
use crate::tls::HttpPeer;

/// The metadata path of RFC 9728 (a resource's path is appended to it).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The scope a call needs, named in the 403's challenge.
pub const CALL_SCOPE: &str = "agents:call";

/// The absolute URL of the metadata of `resource` (RFC 9728 §3.1: the well-known path, then
/// the resource's path).
pub fn metadata_url(resource: &str) -> String {
    let Ok(url) = url::Url::parse(resource) else {
        return METADATA_PATH.to_string();
    };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    format!("{origin}{METADATA_PATH}{path}")
}

/// The gateway's [`McpAuth`]: the authorizer, and the gateway to map tool names to agents.
pub struct GatewayAuth {
    pub authorizer: Arc<Authorizer>,
    pub gateway: Arc<Gateway>,
}

fn challenge(status: StatusCode, header_value: String, message: String) -> Response {
    let body = json!({"error": status.canonical_reason().unwrap_or("error"), "message": message});
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&header_value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A quoted-string for a challenge parameter: quotes and backslashes escaped, non-ASCII
/// and control characters dropped (header values must stay visible ASCII).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

fn too_many(id: Option<&RequestId>, message: String, wait: std::time::Duration) -> Response {
    let body = json!({
        "jsonrpc": "2.0", "id": id,
        "error": {"code": -32000, "message": message},
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s(wait)));
    response
}

impl GatewayAuth {
    fn metadata_url(&self) -> String {
        metadata_url(&self.authorizer.config().resource_url)
    }

    fn metadata(&self) -> Value {
        let config = self.authorizer.config();
        json!({
            "resource": config.resource_url,
            "authorization_servers": config.authorization_servers,
            "scopes_supported": config.scopes_supported,
            "bearer_methods_supported": ["header"],
        })
    }

    fn unauthorized(&self, error: Option<(&str, String)>) -> Response {
        let metadata = quoted(&self.metadata_url());
        match error {
            None => challenge(
                StatusCode::UNAUTHORIZED,
                format!("Bearer resource_metadata={metadata}"),
                "Unauthorized: this gateway needs an `Authorization: Bearer <token>` header; see the resource metadata for where to get one".into(),
            ),
            Some((code, description)) => challenge(
                if code == "invalid_request" {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::UNAUTHORIZED
                },
                format!(
                    "Bearer error={}, error_description={}, resource_metadata={metadata}",
                    quoted(code),
                    quoted(&description)
                ),
                format!("{code}: {description}"),
            ),
        }
    }

    fn forbidden(&self, id: &RequestId, agent: &str, caller: &Caller) -> Response {
        let message = format!(
            "Forbidden: caller {:?} may not call {agent} (not in its policy's call list)",
            caller.subject
        );
        let header_value = format!(
            "Bearer error=\"insufficient_scope\", scope={}, resource_metadata={}, error_description={}",
            quoted(CALL_SCOPE),
            quoted(&self.metadata_url()),
            quoted(&message)
        );
        let body = json!({
            "jsonrpc": "2.0", "id": id,
            "error": {"code": -32001, "message": message},
        });
        let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&header_value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// The agent a tool call acts on (`None`: it names none, or one the caller cannot see,
    /// which the handler answers as nonexistent), and whether it is a call (counted in the
    /// agent's bucket) rather than queue control.
    fn target(&self, tool: &str, args: &JsonObject) -> Option<(Name, bool)> {
        let text = |key: &str| args.get(key).and_then(Value::as_str);
        let by_agent_name = |text: &str| -> Option<Name> {
            find_mounted(&self.gateway, text)
                .map(|agent| agent.name.clone())
                .or_else(|| Name::parse(text).ok())
        };
        match tool {
            CALL_AGENT => Name::parse_agent(text("name")?).ok().map(|n| (n, true)),
            SUBMIT_TASK => by_agent_name(text("agent_name")?).map(|n| (n, true)),
            PAUSE_AGENT_QUEUE | RESUME_AGENT_QUEUE | CLEAR_AGENT_QUEUE | CANCEL_TASK => {
                by_agent_name(text("agent_name")?).map(|n| (n, false))
            }
            meta if NAMES.contains(&meta) => None,
            agent_tool => find_mounted(&self.gateway, agent_tool).map(|a| (a.name.clone(), true)),
        }
    }
}

/// The bearer token of an `Authorization` header (scheme without case).
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

fn query_has_token(request: &Request) -> bool {
    request.uri().query().is_some_and(|query| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key == "access_token")
    })
}

impl McpAuth for GatewayAuth {
    fn public_routes(&self) -> Router {
        let document = Arc::new(self.metadata());
        let serve = move || {
            let document = Arc::clone(&document);
            async move { axum::Json((*document).clone()) }
        };
        let mut paths = vec![METADATA_PATH.to_string(), format!("{METADATA_PATH}/mcp")];
        if let Ok(url) = url::Url::parse(&self.metadata_url()) {
            let own = url.path().to_string();
            if !paths.contains(&own) {
                paths.push(own);
            }
        }
        let mut router = Router::new();
        for path in paths {
            router = router.route(&path, axum::routing::get(serve.clone()));
        }
        router
    }

    fn authenticate(&self, mut request: Request) -> BoxFuture<'_, Result<Request, Response>> {
        Box::pin(async move {
            if query_has_token(&request) {
                return Err(self.unauthorized(Some((
                    "invalid_request",
                    "a token in the query string is refused: send it in the Authorization header"
                        .into(),
                ))));
            }
            let Some(token) = bearer(&request) else {
                return Err(self.unauthorized(None));
            };
            let address = request
                .extensions()
                .get::<axum::extract::ConnectInfo<HttpPeer>>()
                .map(|peer| peer.0.remote.ip());
            let caller = self
                .authorizer
                .authenticate(token, address)
                .await
                .map_err(|error| match error {
                    AuthError::Invalid(invalid) => {
                        self.unauthorized(Some(("invalid_token", invalid.0)))
                    }
                    AuthError::TooManyFailures { address, wait } => {
                        tracing::debug!(%address, "token not checked: too many invalid tokens from this address");
                        too_many(None, error.to_string(), wait)
                    }
                })?;
            if let Err(wait) = self.authorizer.take_caller(&caller.subject) {
                let limit = self.authorizer.config().per_caller;
                let message = match limit {
                    Some(limit) => format!(
                        "Too many requests: caller {:?} is over its limit of {} requests per {} s",
                        caller.subject, limit.requests, limit.per_s
                    ),
                    None => "Too many requests".into(),
                };
                tracing::debug!(subject = %caller.subject, "request over the per-caller rate limit");
                return Err(too_many(None, message, wait));
            }
            request.extensions_mut().insert(caller);
            Ok(request)
        })
    }

    fn authorize(
        &self,
        parts: &axum::http::request::Parts,
        message: &ClientJsonRpcMessage,
    ) -> Option<Response> {
        let caller = parts.extensions.get::<Arc<Caller>>()?;
        let ClientJsonRpcMessage::Request(request) = message else {
            return None;
        };
        let ClientRequest::CallToolRequest(call) = &request.request else {
            return None;
        };
        let tool = call.params.name.as_ref();
        if tool == ROUTE_TASK && !caller.policy.calls_anything() {
            return Some(self.forbidden(&request.id, "any agent", caller));
        }
        let empty = JsonObject::new();
        let args = call.params.arguments.as_ref().unwrap_or(&empty);
        let (agent, is_call) = self.target(tool, args)?;
        if !caller.sees(&agent) {
            return None;
        }
        if !caller.may_call(&agent) {
            tracing::info!(subject = %caller.subject, %agent, tool, "tool call refused: not in the caller's call list");
            return Some(self.forbidden(&request.id, agent.as_str(), caller));
        }
        if is_call && let Err(wait) = self.authorizer.take_agent(&agent) {
            let message = match self.authorizer.config().per_agent {
                Some(limit) => format!(
                    "Too many requests: agent {agent} is over its limit of {} calls per {} s",
                    limit.requests, limit.per_s
                ),
                None => "Too many requests".into(),
            };
            return Some(too_many(Some(&request.id), message, wait));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_appends_the_resource_path() {
        assert_eq!(
            metadata_url("https://gw.example/mcp"),
            "https://gw.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8000/"),
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn challenge_strings_are_quoted_and_ascii() {
        assert_eq!(quoted("a\"b\\c\u{e9}\n"), "\"a\\\"b\\\\c\"");
    }
}
