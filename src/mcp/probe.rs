//! The endpoint health probe over MCP (docs/protocol.md §9.1): one `initialize` request to
//! the endpoint, answered with an `initialize` result, is a live endpoint.
//!
//! A probe is one HTTP request (and, when the server opened a session, one `DELETE` that
//! closes it, so probes never pile up sessions on the agent), written by hand rather than
//! through a full rmcp client session: a primary probing 100,000 endpoints every ten
//! seconds opens 10,000 of these a second, and a session with its worker task for each would
//! cost many times more. The answer may come as JSON or as an SSE stream (both are
//! Streamable HTTP); at most [`ANSWER_MAX_BYTES`] of it are read.
//!
//! `https://` endpoints are probed over TLS trusting what the node trusts (the system roots
//! plus its `--ca`); a certificate that does not verify is the probe's failure, in words.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// The most of a probe's answer that is read.
pub const ANSWER_MAX_BYTES: usize = 64 * 1024;

const SESSION_HEADER: &str = "mcp-session-id";

use super::https::HttpsClient;
use crate::tls::{ClientTls, TlsError};

/// Probes over HTTP with one shared connection pool.
#[derive(Clone)]
pub struct McpProbe {
    http: Arc<HttpsClient>,
}

impl McpProbe {
    /// Probes `https://` endpoints trusting what `tls` trusts (none: the system roots),
    /// following its reloads.
    pub fn with_tls(tls: Option<Arc<ClientTls>>) -> Result<McpProbe, TlsError> {
        let http = HttpsClient::new(tls, |builder| {
            builder.pool_idle_timeout(Duration::from_secs(30))
        })?;
        Ok(McpProbe {
            http: Arc::new(http),
        })
    }
}

impl McpProbe {
    /// `Ok` when `url` answered `initialize` within `timeout`; else why not. (The node hands
    /// this to `health::Prober` as its `Probe`.)
    pub fn probe(&self, url: &str, timeout: Duration) -> BoxFuture<'static, Result<(), String>> {
        let http = self.http.get();
        let ca = self.http.ca().map(std::path::Path::to_path_buf);
        let url = url.to_string();
        Box::pin(async move {
            match tokio::time::timeout(timeout, initialize(&http, &url, ca.as_deref())).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        })
    }
}

async fn initialize(
    http: &reqwest::Client,
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<(), String> {
    let request = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "aop-health-probe", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    let response = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&request)
        .send()
        .await
        .map_err(|error| {
            crate::tls::failure_reason(&error, ca)
                .unwrap_or_else(|| crate::peer::error_chain(&error))
        })?;
    let status = response.status();
    let session = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let outcome = if status.is_success() {
        read_answer(response).await
    } else {
        Err(format!("HTTP {status}"))
    };
    if let Some(session) = session {
        // Closing is a courtesy: its failure does not make the endpoint unhealthy.
        let _ = http
            .delete(url)
            .header(SESSION_HEADER, session)
            .send()
            .await;
    }
    outcome
}

/// Reads until an `initialize` result (or an error) for request 1 is seen.
async fn read_answer(response: reqwest::Response) -> Result<(), String> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| crate::peer::error_chain(&error))?;
        body.extend_from_slice(&chunk);
        if let Some(verdict) = verdict(&body) {
            return verdict;
        }
        if body.len() > ANSWER_MAX_BYTES {
            return Err(format!(
                "no initialize result in the first {ANSWER_MAX_BYTES} bytes"
            ));
        }
    }
    verdict(&body).unwrap_or_else(|| Err("answered without an initialize result".to_string()))
}

/// The answer in `body` so far, as JSON or as SSE `data:` lines: `None` until one is whole.
fn verdict(body: &[u8]) -> Option<Result<(), String>> {
    let text = String::from_utf8_lossy(body);
    let whole = serde_json::from_str::<Value>(text.trim()).ok();
    let events = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok());
    whole.into_iter().chain(events).find_map(|message| {
        if message.get("id") != Some(&json!(1)) {
            return None;
        }
        Some(match (message.get("result"), message.get("error")) {
            (Some(result), _) if result.get("protocolVersion").is_some() => Ok(()),
            (_, Some(error)) => Err(format!(
                "initialize refused: {}",
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no message")
            )),
            _ => Err("answered initialize without a protocol version".to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_json_or_sse_are_read() {
        let json = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#;
        assert_eq!(verdict(json), Some(Ok(())));
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\"}}\n\n";
        assert_eq!(verdict(sse), Some(Ok(())));
        assert_eq!(verdict(b"data: {\"jsonrpc\":\"2.0\",\"id\""), None);
        let refused = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"busy"}}"#;
        assert_eq!(
            verdict(refused),
            Some(Err("initialize refused: busy".to_string()))
        );
    }
}
