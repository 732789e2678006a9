//! What an MCP POST body must be, checked before rmcp reads it, and the one mapping of a
//! bad body to HTTP and JSON-RPC.
//!
//! rmcp answers every body it cannot deserialise as one JSON-RPC message with HTTP 415
//! Unsupported Media Type, which tells a client whose `Content-Type` was right that it was
//! wrong, and gives it no JSON-RPC error to read. JSON-RPC 2.0 says what these are: a body
//! that is not JSON is a parse error (-32700), JSON that is not a request object is an
//! invalid request (-32600), answered with `id: null` when no id can be read. The door
//! answers them HTTP 400 with such an error body (docs/protocol.md §6, §7):
//!
//! - over [`limits::MCP_REQUEST_MAX_BYTES`]: 413, naming the limit;
//! - arrays and objects nested deeper than [`limits::MCP_JSON_DEPTH_MAX`]: parse error naming
//!   the limit (below serde_json's own recursion limit, so this check is the one that
//!   answers; and nothing recursive downstream sees such a body);
//! - not JSON: parse error, with serde's line and column;
//! - a JSON array: a JSON-RPC batch, which MCP dropped in 2025-06-18 and rmcp never served:
//!   invalid request saying so;
//! - JSON that is not one JSON-RPC 2.0 message: invalid request saying what is missing.
//!
//! Only bodies declared `application/json` are checked: a wrong `Content-Type` stays rmcp's
//! true 415. rmcp's header checks (`Accept`, `Host`, `Origin`) still come first: the door
//! (`super::http`) answers a bad body only once rmcp has passed the headers. A request whose params do not fit its method (`tools/call` with `arguments`
//! an array) is a well-formed message: the handler answers it (invalid params).

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use rmcp::model::{ClientJsonRpcMessage, ErrorCode};
use serde_json::Value;

use crate::record::limits;

/// A POST body the door refuses before rmcp sees it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {reason}")]
    Unreadable { reason: String },
    #[error("parse error: JSON nested deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("parse error: the body is not JSON: {reason}")]
    NotJson { reason: String },
    #[error(
        "invalid request: JSON-RPC batches (a JSON array) are not supported; send one message per request"
    )]
    Batch,
    #[error("invalid request: not a JSON-RPC 2.0 message: {reason}")]
    NotAMessage {
        reason: String,
        /// The message's id when one could be read, so the client can match the error.
        id: Value,
    },
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            BodyError::Unreadable { .. }
            | BodyError::TooDeep { .. }
            | BodyError::NotJson { .. } => ErrorCode::PARSE_ERROR,
            BodyError::TooLarge { .. } | BodyError::Batch | BodyError::NotAMessage { .. } => {
                ErrorCode::INVALID_REQUEST
            }
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let id = match &self {
            BodyError::NotAMessage { id, .. } => id.clone(),
            _ => Value::Null,
        };
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.code().0, "message": self.to_string()},
        });
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Whether `content_type` declares JSON, by the rule rmcp applies (the media type's essence,
/// any case, parameters ignored).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        let essence = value.split_once(';').map_or(value, |(essence, _)| essence);
        essence.trim().eq_ignore_ascii_case("application/json")
    })
}

/// Reads `body`, at most `limit` bytes.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut collected = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| BodyError::Unreadable {
            reason: error.to_string(),
        })?;
        if chunk.len() > limit.saturating_sub(collected.len()) {
            return Err(BodyError::TooLarge { limit });
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

/// The one JSON-RPC message `body` holds, or why it holds none (see the module doc).
pub fn check(body: &[u8]) -> Result<ClientJsonRpcMessage, BodyError> {
    let limit = limits::MCP_JSON_DEPTH_MAX;
    if nesting_exceeds(body, limit) {
        return Err(BodyError::TooDeep { limit });
    }
    let error = match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        Ok(message) => return Ok(message),
        Err(error) => error,
    };
    // Only bodies that are not one message pay for finding out why.
    let value = serde_json::from_slice::<Value>(body).map_err(|error| BodyError::NotJson {
        reason: error.to_string(),
    })?;
    if value.is_array() {
        return Err(BodyError::Batch);
    }
    let id = value
        .get("id")
        .filter(|id| id.is_string() || id.is_number())
        .cloned()
        .unwrap_or(Value::Null);
    Err(BodyError::NotAMessage {
        reason: what_is_wrong(&value).unwrap_or_else(|| error.to_string()),
        id,
    })
}

/// Why `value` is not a JSON-RPC 2.0 message, in words, when it is one of the usual slips.
fn what_is_wrong(value: &Value) -> Option<String> {
    let Some(object) = value.as_object() else {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            _ => "not an object",
        };
        return Some(format!("a message is a JSON object, not {kind}"));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some("\"jsonrpc\" must be \"2.0\"".to_string());
    }
    if object
        .get("id")
        .is_some_and(|id| !(id.is_string() || id.is_number()))
    {
        return Some("\"id\" must be a string or a number".to_string());
    }
    match object.get("method") {
        Some(method) if !method.is_string() => Some("\"method\" must be a string".to_string()),
        Some(_) => object
            .get("params")
            .is_some_and(|params| !params.is_object())
            .then(|| "\"params\" must be an object".to_string()),
        None if !object.contains_key("result") && !object.contains_key("error") => Some(
            "it has no \"method\" (a request or notification) and no \"result\" or \"error\" (a response)"
                .to_string(),
        ),
        None => None,
    }
}

/// Whether arrays and objects in `body` nest deeper than `limit`: one pass over the bytes,
/// brackets inside strings not counted. Meant for a body about to be parsed, so it need not
/// judge whether the body is JSON.
fn nesting_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"a":{}1{}}}}}}}"#,
            "[".repeat(depth - 3),
            "]".repeat(depth - 3)
        )
    }

    #[test]
    fn messages_pass_and_the_rest_is_named() {
        let ping = br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
        assert!(check(ping).is_ok());
        assert!(check(nested(limits::MCP_JSON_DEPTH_MAX).as_bytes()).is_ok());
        assert_eq!(
            check(nested(limits::MCP_JSON_DEPTH_MAX + 1).as_bytes()).unwrap_err(),
            BodyError::TooDeep {
                limit: limits::MCP_JSON_DEPTH_MAX
            }
        );
        // Brackets in strings are text.
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}\"{{"}}}}"#,
            "[".repeat(500)
        );
        assert!(check(text.as_bytes()).is_ok(), "{text}");
        assert!(matches!(
            check(b"{\"jsonrpc\": \"2.0\", ").unwrap_err(),
            BodyError::NotJson { reason } if reason.contains("line 1 column")
        ));
        assert!(matches!(check(b"").unwrap_err(), BodyError::NotJson { .. }));
        assert_eq!(
            check(format!("[{}]", std::str::from_utf8(ping).unwrap()).as_bytes()).unwrap_err(),
            BodyError::Batch
        );
        assert_eq!(check(b" [] ").unwrap_err(), BodyError::Batch);
        for (body, reason, id) in [
            (
                &br#"42"#[..],
                "a message is a JSON object, not a number",
                Value::Null,
            ),
            (
                br#"{"id":3,"method":"ping"}"#,
                "\"jsonrpc\" must be \"2.0\"",
                3.into(),
            ),
            (
                br#"{"jsonrpc":"2.0","id":"x","method":5}"#,
                "\"method\" must be a string",
                "x".into(),
            ),
            (br#"{"jsonrpc":"2.0","id":4}"#, "no \"method\"", 4.into()),
        ] {
            match check(body).unwrap_err() {
                BodyError::NotAMessage {
                    reason: got,
                    id: got_id,
                } => {
                    assert!(got.contains(reason), "{got}");
                    assert_eq!(got_id, id);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn errors_map_to_http_400_and_json_rpc_codes() {
        assert_eq!(BodyError::Batch.status(), StatusCode::BAD_REQUEST);
        assert_eq!(BodyError::Batch.code(), ErrorCode::INVALID_REQUEST);
        assert_eq!(
            BodyError::TooDeep { limit: 1 }.code(),
            ErrorCode::PARSE_ERROR
        );
        assert_eq!(
            BodyError::TooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
