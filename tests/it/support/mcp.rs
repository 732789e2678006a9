//! An rmcp client's side of the tests that talk MCP to a gateway: the transport, and one
//! tool call, bounded.

use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::Value;

/// A plain rmcp client session (no handler of its own).
pub type Client = RunningService<RoleClient, ()>;

/// How long a tool call may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// An rmcp client transport to `url` over the tests' HTTP client ([`super::http`]).
pub fn transport(
    url: impl Into<std::sync::Arc<str>>,
) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::with_client(
        super::http(),
        StreamableHttpClientTransportConfig::with_uri(url),
    )
}

/// Calls `tool` with `arguments` (a JSON object); panics on a protocol error or past the
/// deadline, so tests read the tool's result (an `isError` result included).
pub async fn call(client: &Client, tool: &str, arguments: Value) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    tokio::time::timeout(
        DEADLINE,
        client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)),
    )
    .await
    .expect("answer in time")
    .expect("a tool result, not a protocol error")
}
