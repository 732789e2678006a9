//! The fixture tools of the MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16),
//! served as one MCP server so that `.ci/conformance` can mount them as agents behind
//! `aop gateway` and run the suite's server scenarios against the gateway.
//!
//!     cargo run --example conformance_fixtures -- --listen 127.0.0.1:0
//!
//! prints its URL (`http://ADDR/mcp`) as the one line on stdout once it accepts, and serves
//! until Ctrl-C or SIGTERM. `tests/conformance/fixtures.toml.in` is the root zone that names
//! one agent per tool here (agent `test.simple.text` is the gateway's tool `test_simple_text`
//! and calls this server's tool `test_simple_text`), with the same input schemas.
//!
//! Each tool answers as the suite's scenario for it expects (the texts and payloads are the
//! ones the scenarios' descriptions give). The tools that need the client (sampling,
//! elicitation, log messages) ask their client, which behind the gateway is the gateway, and
//! say in their result what came back, so a run shows how far the request got.

// Sampling, elicitation's peers and logging are deprecated by SEP-2577 (spec 2026-07-28);
// the suite pinned here (spec 2025-11-25) still tests them.
#![allow(deprecated)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aop::mcp::http::{self, HttpGuards};
use clap::Parser;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult, ContentBlock,
    CreateMessageRequest, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
    Implementation, JsonObject, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ResourceContents, SamplingMessage,
    ServerCapabilities, ServerConfig, ServerRequest, Tool,
};
use rmcp::service::{PeerRequestOptions, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{Value, json};

/// A 1x1 red PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg==";
/// A WAV file with no samples (44.1 kHz, mono, 16 bit).
const WAV_EMPTY: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";
/// How long a request to the client (sampling, elicitation) may take.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between the steps of the logging and progress tools.
const STEP: Duration = Duration::from_millis(50);

#[derive(Debug, Parser)]
#[command(about = "The MCP conformance suite's fixture tools, over Streamable HTTP at /mcp")]
struct Args {
    /// Listen address (port 0: a free port; the URL is printed on stdout).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The fixture tools: name, description, input schema.
fn fixture_tools() -> Vec<Tool> {
    let none = || json!({"type": "object", "properties": {}});
    let tools = [
        ("test_simple_text", "Returns one text block", none()),
        ("test_image_content", "Returns an image (a 1x1 PNG)", none()),
        ("test_audio_content", "Returns audio (audio/wav)", none()),
        (
            "test_embedded_resource",
            "Returns an embedded text resource",
            none(),
        ),
        (
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource",
            none(),
        ),
        (
            "test_tool_with_logging",
            "Sends three log messages while it runs",
            none(),
        ),
        (
            "test_error_handling",
            "Always fails: a result with isError",
            none(),
        ),
        (
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 to the request's progress token",
            none(),
        ),
        (
            "test_sampling",
            "Asks the client for an LLM completion (sampling/createMessage)",
            json!({"type": "object", "properties": {"prompt": {"type": "string"}},
                   "required": ["prompt"]}),
        ),
        (
            "test_elicitation",
            "Asks the client for user input (elicitation/create)",
            json!({"type": "object", "properties": {"message": {"type": "string"}},
                   "required": ["message"]}),
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Asks the client for user input with a default for every field (SEP-1034)",
            none(),
        ),
        (
            "test_elicitation_sep1330_enums",
            "Asks the client for user input with every enum form (SEP-1330)",
            none(),
        ),
        (
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json_schema_2020_12(),
        ),
        (
            "test_reconnection",
            "Answers after 100 ms (the SSE polling scenario calls it)",
            none(),
        ),
    ];
    tools
        .into_iter()
        .map(|(name, description, schema)| Tool::new(name, description, Arc::new(object(schema))))
        .collect()
}

/// The input schema the json-schema-2020-12 scenario looks for, keyword for keyword.
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"}
                }
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"}
        },
        "additionalProperties": false
    })
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

#[derive(Clone)]
struct Fixtures {
    tools: Arc<Vec<Tool>>,
}

impl Fixtures {
    async fn run(
        &self,
        name: &str,
        arguments: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let text = |text: &str| CallToolResult::success(vec![ContentBlock::text(text)]);
        match name {
            "test_simple_text" => text("This is a simple text response for testing."),
            "test_image_content" => {
                CallToolResult::success(vec![ContentBlock::image(PNG_1X1, "image/png")])
            }
            "test_audio_content" => {
                CallToolResult::success(vec![ContentBlock::audio(WAV_EMPTY, "audio/wav")])
            }
            "test_embedded_resource" => {
                CallToolResult::success(vec![ContentBlock::resource(ResourceContents::text(
                    "This is an embedded resource content.",
                    "test://embedded-resource",
                ))])
            }
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_1X1, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        r#"{"test":"data","value":123}"#,
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ]),
            "test_tool_with_logging" => {
                for message in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    let log =
                        LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
                            .with_logger("conformance-fixtures");
                    #[allow(deprecated)]
                    // logging is deprecated by SEP-2577; the suite still tests it
                    let _ = context.peer.notify_logging_message(log).await;
                    tokio::time::sleep(STEP).await;
                }
                text("Logging test completed")
            }
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]),
            "test_tool_with_progress" => {
                let token = context.meta.get_progress_token();
                for (progress, message) in
                    [(0.0, "Starting"), (50.0, "Halfway"), (100.0, "Complete")]
                {
                    if let Some(token) = &token {
                        let update = ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0)
                            .with_message(message);
                        let _ = context.peer.notify_progress(update).await;
                    }
                    tokio::time::sleep(STEP).await;
                }
                text("Progress test completed")
            }
            "test_sampling" => {
                let prompt = arguments
                    .get("prompt")
                    .and_then(Value::as_str)
                    .unwrap_or("Hello");
                let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100),
                ));
                match ask_client(&context.peer, request).await {
                    Ok(ClientResult::CreateMessageResult(result)) => {
                        let answer = result
                            .message
                            .content
                            .first()
                            .and_then(|content| content.as_text())
                            .map(|text| text.text.clone())
                            .unwrap_or_else(|| "(no text)".into());
                        text(&format!("LLM response: {answer}"))
                    }
                    Ok(other) => failure(&format!("sampling: unexpected answer {other:?}")),
                    Err(error) => failure(&format!("sampling failed: {error}")),
                }
            }
            "test_elicitation" => {
                let message = arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Please provide your information");
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}
                    },
                    "required": ["username", "email"]
                });
                elicit(&context.peer, message, schema).await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "User's name", "default": "John Doe"},
                        "age": {"type": "integer", "description": "User's age", "default": 30},
                        "score": {"type": "number", "description": "User's score", "default": 95.5},
                        "status": {"type": "string", "description": "User's status",
                                   "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "description": "Whether user is verified",
                                     "default": true}
                    }
                });
                elicit(
                    &context.peer,
                    "Please provide values (all have defaults)",
                    schema,
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"}
                        ]},
                        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                                       "enumNames": ["Option One", "Option Two", "Option Three"]},
                        "untitledMulti": {"type": "array",
                                          "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                        "titledMulti": {"type": "array", "items": {"anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"}
                        ]}}
                    }
                });
                elicit(&context.peer, "Test enum schema improvements", schema).await
            }
            "json_schema_2020_12_tool" => {
                let name = arguments
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("world");
                text(&format!("Hello, {name}!"))
            }
            "test_reconnection" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                text("Reconnection test completed")
            }
            _ => failure(&format!("no fixture tool named {name:?}")),
        }
    }
}

fn failure(message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// Sends a request to the client and waits, at most [`CLIENT_REQUEST_TIMEOUT`], for its answer.
async fn ask_client(
    peer: &Peer<RoleServer>,
    request: ServerRequest,
) -> Result<ClientResult, String> {
    let options = PeerRequestOptions::with_timeout(CLIENT_REQUEST_TIMEOUT);
    let handle = peer
        .send_request_with_option(request, options)
        .await
        .map_err(|error| error.to_string())?;
    handle
        .await_response()
        .await
        .map_err(|error| error.to_string())
}

/// Asks the client for a form (`elicitation/create`) and says what it answered.
async fn elicit(peer: &Peer<RoleServer>, message: &str, schema: Value) -> CallToolResult {
    let params = json!({"mode": "form", "message": message, "requestedSchema": schema});
    let params: ElicitRequestParams = match serde_json::from_value(params) {
        Ok(params) => params,
        Err(error) => return failure(&format!("fixture bug: bad elicitation request: {error}")),
    };
    match ask_client(
        peer,
        ServerRequest::ElicitRequest(ElicitRequest::new(params)),
    )
    .await
    {
        Ok(ClientResult::ElicitResult(result)) => {
            CallToolResult::success(vec![ContentBlock::text(format!(
                "User response: action={}, content={}",
                serde_json::to_value(&result.action).unwrap_or(Value::Null),
                serde_json::to_value(&result.content).unwrap_or(Value::Null)
            ))])
        }
        Ok(other) => failure(&format!("elicitation: unexpected answer {other:?}")),
        Err(error) => failure(&format!("elicitation failed: {error}")),
    }
}

impl ServerHandler for Fixtures {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new(
            "aop-conformance-fixtures",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("The MCP conformance suite's fixture tools (test_*).")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if self.get_tool(&request.name).is_none() {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        Ok(self.run(&request.name, &arguments, &context).await.into())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let fixtures = Fixtures {
        tools: Arc::new(fixture_tools()),
    };
    let server = http::serve(listener, HttpGuards::default(), move || fixtures.clone())?;
    // One line, flushed at once: the caller waits for it to know the server accepts.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", server.url())?;
    stdout.flush()?;
    drop(stdout);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}
