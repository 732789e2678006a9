//! The records a zone holds (agents, their endpoints, aliases, delegations, the zone header)
//! and the field rules every door applies to them.
//!
//! [`LiveRecord`] and [`ZoneChange`] are those records as an authority keeps them, with their
//! provenance, and the steps between serials (`change`).
//!
//! Zone files, gRPC and MCP all build records through the `check_*` functions here,
//! so a limit is enforced, and worded, the same way whichever door the data came in by. The
//! limits are those of docs/protocol.md §7; every error message names the limit it broke.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use crate::name::Name;

mod change;
mod health;
pub mod intern;

pub use change::{LiveAgent, LiveRecord, RecordChange, RecordKind, ZoneChange, serial_newer};
pub use health::{
    EndpointHealth, HEALTH_ERROR_MAX_CHARS, HealthSettings, HealthState, answer_endpoints,
    as_answered,
};

/// The documented limits (docs/protocol.md §7).
pub mod limits {
    pub const DESCRIPTION_MAX_BYTES: usize = 1024;
    pub const TAGS_MAX: usize = 32;
    pub const TAG_MAX_BYTES: usize = 64;
    pub const SCHEMA_MAX_BYTES: usize = 64 * 1024;
    pub const METADATA_MAX_BYTES: usize = 4 * 1024;
    pub const ENDPOINTS_MAX: usize = 16;
    pub const PAGE_MAX: usize = 1000;
    pub const GRPC_REQUEST_MAX_BYTES: usize = 1024 * 1024;
    pub const MCP_REQUEST_MAX_BYTES: usize = 4 * 1024 * 1024;
    /// Our own bounds on fields the contract leaves open.
    pub const VERSION_MAX_BYTES: usize = 64;
    pub const URL_MAX_BYTES: usize = 2048;
    /// MCP tool names are 1..=128 characters of `[A-Za-z0-9_.-]`.
    pub const TOOL_NAME_MAX: usize = 128;
    pub const SERVERS_MAX: usize = 16;
    pub const CONTACT_MAX_BYTES: usize = 256;
    /// RFC 2181 section 8: a TTL is at most 2^31 - 1 seconds.
    pub const TTL_MAX: u32 = i32::MAX as u32;
    pub const TIMEOUT_MS_MAX: u32 = 3_600_000;
    pub const MAX_RETRIES_MAX: u32 = 10;
    /// Alias chains followed in one lookup (docs/protocol.md §2).
    pub const ALIAS_CHAIN_MAX: usize = 8;
    /// Nesting of arrays and objects in an MCP request body: below serde_json's own
    /// recursion limit (127), so the MCP door's check, which names this limit, is the one
    /// that refuses.
    pub const MCP_JSON_DEPTH_MAX: usize = 100;
}

use limits::*;

pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
pub const DEFAULT_MAX_RETRIES: u32 = 2;
pub const DEFAULT_PRIORITY: u16 = 10;
pub const DEFAULT_WEIGHT: u16 = 1;

/// Why a record field is not acceptable. `field` is the field's name as users write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("{field} is {len} bytes (limit {limit} bytes)")]
    TooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{field} has {count} entries (limit {limit})")]
    TooMany {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} has {value:?} twice")]
    Duplicate { field: &'static str, value: String },
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("invalid {field} {url:?}: {reason}")]
    InvalidUrl {
        field: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "invalid tool name {tool:?}: MCP tool names are 1 to {TOOL_NAME_MAX} characters of A-Z, a-z, 0-9, '_', '-' and '.'"
    )]
    InvalidToolName { tool: String },
    #[error("{field} is not a valid JSON Schema: {reason}")]
    InvalidSchema { field: &'static str, reason: String },
    #[error(
        "{field} must describe an object (\"type\": \"object\"), as MCP requires of tool schemas"
    )]
    SchemaNotObject { field: &'static str },
    #[error("{field} must be a table (a JSON object)")]
    NotAnObject { field: &'static str },
    #[error("invalid {field} {value:?}: expected IP:port, such as 127.0.0.1:5353")]
    InvalidSocketAddress { field: &'static str, value: String },
}

/// A JSON document kept with its serialised text, so a record is encoded once, not on every
/// answer. Schemas and metadata use it; cloning shares the document.
#[derive(Clone, PartialEq)]
pub struct JsonDoc(Arc<JsonDocInner>);

#[derive(PartialEq)]
struct JsonDocInner {
    value: serde_json::Value,
    text: Box<str>,
}

impl JsonDoc {
    fn new(value: serde_json::Value) -> JsonDoc {
        let text = value.to_string().into_boxed_str();
        JsonDoc(Arc::new(JsonDocInner { value, text }))
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.0.value
    }

    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// True when both are the same shared document (cheap identity, for the default schema).
    pub fn is_same(&self, other: &JsonDoc) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for JsonDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// The AOP agent-tool input schema (docs/protocol.md §2), shared by every agent that does not
/// declare its own.
static DEFAULT_INPUT_SCHEMA: LazyLock<JsonDoc> = LazyLock::new(|| {
    JsonDoc::new(serde_json::json!({
        "type": "object",
        "properties": {
            "task": {"type": "string", "description": "The task for the agent"},
            "img": {"type": "string", "description": "An image (URL or base64) for the task"},
            "imgs": {"type": "array", "items": {"type": "string"}, "description": "Images for the task"},
            "correct_answer": {"type": "string", "description": "The expected answer, for evaluation"}
        },
        "required": ["task"]
    }))
});

pub fn default_input_schema() -> JsonDoc {
    DEFAULT_INPUT_SCHEMA.clone()
}

/// Checks a schema: a JSON Schema that compiles, describes an object, within the size limit.
pub fn check_schema(field: &'static str, value: serde_json::Value) -> Result<JsonDoc, RecordError> {
    let doc = JsonDoc::new(value);
    if doc.text().len() > SCHEMA_MAX_BYTES {
        return Err(RecordError::TooLong {
            field,
            len: doc.text().len(),
            limit: SCHEMA_MAX_BYTES,
        });
    }
    if !doc.value().is_object() {
        return Err(RecordError::NotAnObject { field });
    }
    if let Err(error) = jsonschema::validator_for(doc.value()) {
        let at = error.instance_path().to_string();
        let reason = if at.is_empty() || at == "/" {
            error.to_string()
        } else {
            format!("{error} (at {at})")
        };
        return Err(RecordError::InvalidSchema { field, reason });
    }
    if doc.value().get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(RecordError::SchemaNotObject { field });
    }
    Ok(doc)
}

/// Checks free-form metadata: a JSON object within the size limit.
pub fn check_metadata(value: serde_json::Value) -> Result<JsonDoc, RecordError> {
    if !value.is_object() {
        return Err(RecordError::NotAnObject { field: "metadata" });
    }
    let doc = JsonDoc::new(value);
    if doc.text().len() > METADATA_MAX_BYTES {
        return Err(RecordError::TooLong {
            field: "metadata",
            len: doc.text().len(),
            limit: METADATA_MAX_BYTES,
        });
    }
    Ok(doc)
}

pub fn check_description(text: &str) -> Result<(), RecordError> {
    check_len("description", text, DESCRIPTION_MAX_BYTES)
}

pub fn check_version(text: &str) -> Result<(), RecordError> {
    check_len("version", text, VERSION_MAX_BYTES)
}

pub fn check_contact(text: &str) -> Result<(), RecordError> {
    check_len("contact", text, CONTACT_MAX_BYTES)
}

fn check_len(field: &'static str, text: &str, limit: usize) -> Result<(), RecordError> {
    if text.len() > limit {
        return Err(RecordError::TooLong {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

/// Tags and capabilities: at most 32 non-empty, distinct entries of at most 64 bytes.
pub fn check_labels<S: AsRef<str>>(field: &'static str, items: &[S]) -> Result<(), RecordError> {
    if items.len() > TAGS_MAX {
        return Err(RecordError::TooMany {
            field,
            count: items.len(),
            limit: TAGS_MAX,
        });
    }
    for (index, item) in items.iter().enumerate() {
        let item = item.as_ref();
        if item.trim().is_empty() {
            return Err(RecordError::Empty { field });
        }
        check_len(field, item, TAG_MAX_BYTES)?;
        if items[..index]
            .iter()
            .any(|earlier| earlier.as_ref() == item)
        {
            return Err(RecordError::Duplicate {
                field,
                value: item.to_string(),
            });
        }
    }
    Ok(())
}

pub fn check_range(field: &'static str, value: i64, min: i64, max: i64) -> Result<(), RecordError> {
    if value < min || value > max {
        return Err(RecordError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

pub fn check_ttl(field: &'static str, value: i64) -> Result<u32, RecordError> {
    check_range(field, value, 0, i64::from(TTL_MAX))?;
    Ok(value as u32)
}

/// An `http` or `https` URL with a host, such as an MCP endpoint or a node's gRPC address.
pub fn check_http_url(field: &'static str, text: &str) -> Result<(), RecordError> {
    let invalid = |reason: String| RecordError::InvalidUrl {
        field,
        url: text.chars().take(120).collect(),
        reason,
    };
    if text.len() > URL_MAX_BYTES {
        return Err(RecordError::TooLong {
            field,
            len: text.len(),
            limit: URL_MAX_BYTES,
        });
    }
    // `127.0.0.1:7100` does not parse (no scheme) and `localhost:7100` parses with the
    // scheme `localhost`: an address where a URL was wanted, so say what to write.
    let address = !text.contains("://")
        && url::Url::parse(&format!("http://{text}")).is_ok_and(|url| url.has_host());
    if address {
        return Err(invalid(format!(
            "no scheme: write \"http://{text}\" (or https://)"
        )));
    }
    let url = url::Url::parse(text).map_err(|error| invalid(error.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the secret itself into messages and logs.
        let mut redacted = url.clone();
        let _ = redacted.set_username("***");
        if url.password().is_some() {
            let _ = redacted.set_password(Some("***"));
        }
        return Err(RecordError::InvalidUrl {
            field,
            url: redacted.to_string(),
            reason: "credentials in the URL would be published to every reader of the zone"
                .to_string(),
        });
    }
    Ok(())
}

pub fn check_tool_name(tool: &str) -> Result<(), RecordError> {
    let valid = !tool.is_empty()
        && tool.len() <= TOOL_NAME_MAX
        && tool
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(RecordError::InvalidToolName {
            tool: tool.chars().take(140).collect(),
        })
    }
}

pub fn check_socket_address(field: &'static str, text: &str) -> Result<SocketAddr, RecordError> {
    text.parse().map_err(|_| RecordError::InvalidSocketAddress {
        field,
        value: text.chars().take(120).collect(),
    })
}

/// One replica of an agent: an MCP Streamable HTTP endpoint and the tool to call there.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub tool: String,
    /// 1..=65535, lower first (SRV semantics).
    pub priority: u16,
    /// 0..=65535, proportional share among equal priorities.
    pub weight: u16,
    /// What the zone's primary's probes concluded (unknown until probed).
    pub health: EndpointHealth,
}

impl Endpoint {
    /// Builds an endpoint, checking every field.
    pub fn new(url: &str, tool: &str, priority: i64, weight: i64) -> Result<Endpoint, RecordError> {
        check_http_url("endpoint url", url)?;
        check_tool_name(tool)?;
        check_range("priority", priority, 1, 65535)?;
        check_range("weight", weight, 0, 65535)?;
        Ok(Endpoint {
            url: url.to_string(),
            tool: tool.to_string(),
            priority: priority as u16,
            weight: weight as u16,
            health: EndpointHealth::default(),
        })
    }
}

/// The endpoints of one agent: 1..=16, distinct URLs.
pub fn check_endpoints(endpoints: &[Endpoint]) -> Result<(), RecordError> {
    if endpoints.is_empty() {
        return Err(RecordError::Empty { field: "endpoints" });
    }
    if endpoints.len() > ENDPOINTS_MAX {
        return Err(RecordError::TooMany {
            field: "endpoints",
            count: endpoints.len(),
            limit: ENDPOINTS_MAX,
        });
    }
    for (index, endpoint) in endpoints.iter().enumerate() {
        if endpoints[..index].iter().any(|e| e.url == endpoint.url) {
            return Err(RecordError::Duplicate {
                field: "endpoints",
                value: endpoint.url.clone(),
            });
        }
    }
    Ok(())
}

/// An agent: what it does, how to call it, where its replicas are.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: Name,
    pub description: String,
    /// Interned ([`intern`]): one allocation per distinct tag in the process.
    pub tags: Box<[Arc<str>]>,
    /// Interned, like `tags`.
    pub capabilities: Box<[Arc<str>]>,
    /// Interned; empty when the record gives none.
    pub version: Arc<str>,
    /// `None`: the zone's default TTL.
    pub ttl: Option<u32>,
    pub timeout_ms: u32,
    pub max_retries: u32,
    pub endpoints: Vec<Endpoint>,
    pub input_schema: JsonDoc,
    pub output_schema: Option<JsonDoc>,
    pub metadata: Option<JsonDoc>,
    /// Whether the zone's primary probes its endpoints (zone file `health = { enabled =
    /// false }` turns it off).
    pub health_checks: bool,
}

impl Agent {
    /// The default tool name of an endpoint: the agent's first label.
    pub fn default_tool(name: &Name) -> &str {
        name.first_label().unwrap_or("agent")
    }
}

/// A CNAME analogue: `name` answers as `target`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub name: Name,
    pub target: Name,
    pub ttl: Option<u32>,
}

/// One server of a zone (an NS entry with its glue).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    /// The node's gRPC URL, such as `http://127.0.0.1:7102`.
    pub grpc: String,
    /// The node's DNS door, when it has one.
    pub dns: Option<SocketAddr>,
}

impl ServerAddress {
    pub fn new(grpc: &str, dns: Option<&str>) -> Result<ServerAddress, RecordError> {
        check_http_url("server grpc", grpc)?;
        let dns = dns
            .map(|text| check_socket_address("server dns", text))
            .transpose()?;
        Ok(ServerAddress {
            grpc: grpc.trim_end_matches('/').to_string(),
            dns,
        })
    }
}

/// The NS set of a zone: 1..=16 distinct servers.
pub fn check_servers(servers: &[ServerAddress]) -> Result<(), RecordError> {
    if servers.is_empty() {
        return Err(RecordError::Empty { field: "servers" });
    }
    if servers.len() > SERVERS_MAX {
        return Err(RecordError::TooMany {
            field: "servers",
            count: servers.len(),
            limit: SERVERS_MAX,
        });
    }
    for (index, server) in servers.iter().enumerate() {
        if servers[..index].iter().any(|s| s.grpc == server.grpc) {
            return Err(RecordError::Duplicate {
                field: "servers",
                value: server.grpc.clone(),
            });
        }
    }
    Ok(())
}

/// Authority for a child zone handed to other servers (NS + glue analogue).
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    pub zone: Name,
    pub servers: Vec<ServerAddress>,
    pub ttl: Option<u32>,
}

/// The zone's header: its SOA values and its own servers.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneHeader {
    pub origin: Name,
    pub serial: u32,
    pub ttl: u32,
    pub negative_ttl: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub contact: String,
    /// Primary first.
    pub servers: Vec<ServerAddress>,
    /// How the primary probes the endpoints of the zone's agents.
    pub health: HealthSettings,
}

impl ZoneHeader {
    pub const DEFAULT_TTL: u32 = 300;
    pub const DEFAULT_NEGATIVE_TTL: u32 = 60;
    pub const DEFAULT_REFRESH: u32 = 60;
    pub const DEFAULT_RETRY: u32 = 10;
    pub const DEFAULT_EXPIRE: u32 = 86_400;

    /// How long "no such agent" may be cached: min(ttl, negative_ttl) (RFC 2308).
    pub fn negative_cache_ttl(&self) -> u32 {
        self.ttl.min(self.negative_ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_must_compile_and_describe_objects() {
        assert!(check_schema("input_schema", json!({"type": "object"})).is_ok());
        let err = check_schema("input_schema", json!({"type": "objekt"})).unwrap_err();
        assert!(matches!(err, RecordError::InvalidSchema { .. }), "{err:?}");
        let err = check_schema("input_schema", json!({"type": "string"})).unwrap_err();
        assert_eq!(
            err,
            RecordError::SchemaNotObject {
                field: "input_schema"
            }
        );
        let big = "x".repeat(SCHEMA_MAX_BYTES);
        let err = check_schema(
            "output_schema",
            json!({"type": "object", "description": big}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("limit 65536 bytes"), "{err}");
    }

    #[test]
    fn endpoint_fields_are_checked() {
        assert!(Endpoint::new("http://127.0.0.1:9101/mcp", "analyst", 10, 3).is_ok());
        let err = Endpoint::new("http://127.0.0.1:9101/mcp", "analyst", 0, 3).unwrap_err();
        assert_eq!(err.to_string(), "priority is 0, outside 1..=65535");
        let err = Endpoint::new("http://127.0.0.1:9101/mcp", "analyst", 1, 70000).unwrap_err();
        assert_eq!(err.to_string(), "weight is 70000, outside 0..=65535");
        let err = Endpoint::new("ftp://x/mcp", "analyst", 1, 1).unwrap_err();
        assert!(err.to_string().contains("scheme \"ftp\""), "{err}");
        let err = Endpoint::new("not a url", "analyst", 1, 1).unwrap_err();
        assert!(err.to_string().starts_with("invalid endpoint url"), "{err}");
        assert!(Endpoint::new("http://x/mcp", "bad tool", 1, 1).is_err());
    }

    #[test]
    fn labels_are_bounded() {
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(
            check_labels("tags", &many).unwrap_err().to_string(),
            "tags has 33 entries (limit 32)"
        );
        let long = vec!["x".repeat(65)];
        assert_eq!(
            check_labels("capabilities", &long).unwrap_err().to_string(),
            "capabilities is 65 bytes (limit 64 bytes)"
        );
    }
}
