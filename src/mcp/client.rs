//! A plain MCP client session (Streamable HTTP), for callers that only call tools and read
//! their answers: the load generator, and tests that drive an MCP server from Rust. The
//! gateway's own agent sessions (`gateway::sessions`) are richer (progress, cancellation,
//! tool annotations) and build on rmcp directly.

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};

/// One open session to an MCP server.
pub struct McpClient {
    session: RunningService<RoleClient, ClientConfig>,
}

/// A tool's answer, as the caller reads it.
#[derive(Debug, Clone)]
pub struct ToolAnswer {
    pub is_error: bool,
    /// The first text block.
    pub text: String,
    pub structured: Option<Value>,
}

impl ToolAnswer {
    fn from_result(result: CallToolResult) -> ToolAnswer {
        let text = result
            .content
            .iter()
            .find_map(|block| block.as_text().map(|t| t.text.clone()))
            .unwrap_or_default();
        ToolAnswer {
            is_error: result.is_error == Some(true),
            text,
            structured: result.structured_content,
        }
    }

    /// Why the answer is a failure, if it is one: `isError`, or a structured answer (or the
    /// JSON in the first text block, as Python AOP servers answer) saying
    /// `"success": false`.
    pub fn failure(&self) -> Option<String> {
        if self.is_error {
            return Some(self.text.clone());
        }
        let structured = self
            .structured
            .clone()
            .or_else(|| serde_json::from_str::<Value>(&self.text).ok())?;
        // Python AOP servers wrap their answer in {"result": {...}}.
        let inner = match structured.get("result") {
            Some(inner @ Value::Object(_)) => inner,
            _ => &structured,
        };
        (inner.get("success") == Some(&Value::Bool(false))).then(|| {
            inner
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("success: false")
                .to_string()
        })
    }
}

impl McpClient {
    /// Opens a session (2025-11-25 protocol) over `http`; the error says why it could not.
    pub async fn connect(
        url: &str,
        http: &reqwest::Client,
        client_name: &str,
    ) -> Result<McpClient, String> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(url).max_concurrent_requests(8192);
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(client_name, env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25);
        let session = client
            .serve(transport)
            .await
            .map_err(|error| crate::peer::error_chain(&error))?;
        Ok(McpClient { session })
    }

    /// Calls `tool` with `arguments`.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<ToolAnswer, String> {
        let request = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        self.session
            .call_tool(request)
            .await
            .map(ToolAnswer::from_result)
            .map_err(|error| error.to_string())
    }

    /// Ends the session.
    pub fn close(&self) {
        self.session.cancellation_token().cancel();
    }
}
