//! A live zone written back as a zone file (docs/protocol.md §2), for `aop zone dump`.
//!
//! A node's zone drifts from the file it loaded: agents register and deregister at run time.
//! Operators read, diff and keep a live zone in the format they edit, so the dump is a zone
//! file that `aop zone check` accepts and that [`super::file::parse`] loads back to the same
//! records, with a comment on each endpoint the caller wants flagged (a live registration and
//! its lease, for instance).
//!
//! Names are written the way [`super::file`] reads them: relative to the origin when below it,
//! absolute with a trailing dot otherwise. The origin itself is written absolute too, since
//! the reader takes no `@`. Every field is written, defaults included, so a dump does not
//! depend on the defaults of the version that reads it; the one exception is the shared AOP
//! input schema, which an agent that declared none is given on load.

use std::fmt::Write as _;

use crate::name::Name;
use crate::record::{self, Agent, Endpoint, HealthSettings, JsonDoc, ServerAddress};
use crate::zone::ZoneSnapshot;

/// Writes the zone as a zone file (TOML, docs/protocol.md §2).
///
/// The first line is the comment `# zone <origin>, serial <serial>, dumped by aop`, then
/// `[zone]` with every header field, every `[[agent]]` in name order, then `[[alias]]` and
/// `[[delegation]]`, each in name order. `note` is called for each endpoint and may return a
/// comment to put after its line (such as `# registered, lease 60 s`; a leading `#` is added
/// when missing, and line breaks are turned into spaces so the comment stays on its line).
///
/// Loading the text back gives the same records, with two exceptions TOML cannot avoid, both
/// possible only in records registered at run time (a zone file cannot hold them): JSON `null`
/// inside a schema or metadata has no TOML form and is left out (the member or array entry is
/// dropped), and an integer above `i64::MAX` is written as the nearest float. Either way a
/// comment above the key says so, and the schema may then need a hand edit.
pub fn write_zone_file(
    zone: &ZoneSnapshot,
    note: &dyn Fn(&Name, &Endpoint) -> Option<String>,
) -> String {
    let mut out = String::new();
    #[expect(clippy::expect_used, reason = "`fmt::Write` on a `String` cannot fail")]
    write_zone(&mut out, zone, note).expect("writing to a String");
    out
}

fn write_zone(
    out: &mut String,
    zone: &ZoneSnapshot,
    note: &dyn Fn(&Name, &Endpoint) -> Option<String>,
) -> std::fmt::Result {
    let header = zone.header();
    let origin = zone.origin();
    writeln!(
        out,
        "# zone {origin}, serial {}, dumped by aop",
        header.serial
    )?;
    writeln!(out, "[zone]")?;
    writeln!(out, "origin = {}", string(&origin.to_string()))?;
    writeln!(out, "serial = {}", header.serial)?;
    writeln!(out, "ttl = {}", header.ttl)?;
    writeln!(out, "negative_ttl = {}", header.negative_ttl)?;
    writeln!(out, "refresh = {}", header.refresh)?;
    writeln!(out, "retry = {}", header.retry)?;
    writeln!(out, "expire = {}", header.expire)?;
    writeln!(out, "contact = {}", string(&header.contact))?;
    if header.health != HealthSettings::DEFAULT {
        let health = &header.health;
        writeln!(
            out,
            "health = {{ interval = \"{}ms\", timeout = \"{}ms\", down_after = {}, up_after = {} }}",
            health.interval.as_millis(),
            health.timeout.as_millis(),
            health.down_after,
            health.up_after
        )?;
    }
    write_servers(out, &header.servers)?;

    let default_schema = record::default_input_schema();
    for name in zone.agent_names() {
        let Some(agent) = zone.agent(name.as_str()) else {
            continue;
        };
        writeln!(out)?;
        write_agent(out, agent, origin, &default_schema, note)?;
    }

    for alias in zone.aliases() {
        writeln!(out)?;
        writeln!(out, "[[alias]]")?;
        writeln!(out, "name = {}", string(&written_name(&alias.name, origin)))?;
        writeln!(
            out,
            "target = {}",
            string(&written_name(&alias.target, origin))
        )?;
        if let Some(ttl) = alias.ttl {
            writeln!(out, "ttl = {ttl}")?;
        }
    }

    for delegation in zone.delegations() {
        writeln!(out)?;
        writeln!(out, "[[delegation]]")?;
        writeln!(
            out,
            "zone = {}",
            string(&written_name(&delegation.zone, origin))
        )?;
        write_servers(out, &delegation.servers)?;
        if let Some(ttl) = delegation.ttl {
            writeln!(out, "ttl = {ttl}")?;
        }
    }
    Ok(())
}

fn write_agent(
    out: &mut String,
    agent: &Agent,
    origin: &Name,
    default_schema: &JsonDoc,
    note: &dyn Fn(&Name, &Endpoint) -> Option<String>,
) -> std::fmt::Result {
    writeln!(out, "[[agent]]")?;
    writeln!(out, "name = {}", string(&written_name(&agent.name, origin)))?;
    writeln!(out, "description = {}", string(&agent.description))?;
    writeln!(out, "tags = {}", string_array(&agent.tags))?;
    writeln!(out, "capabilities = {}", string_array(&agent.capabilities))?;
    writeln!(out, "version = {}", string(&agent.version))?;
    if let Some(ttl) = agent.ttl {
        writeln!(out, "ttl = {ttl}")?;
    }
    writeln!(out, "timeout_ms = {}", agent.timeout_ms)?;
    writeln!(out, "max_retries = {}", agent.max_retries)?;
    if !agent.health_checks {
        writeln!(out, "health = {{ enabled = false }}")?;
    }
    writeln!(out, "endpoints = [")?;
    for endpoint in &agent.endpoints {
        write!(
            out,
            "  {{ url = {}, tool = {}, priority = {}, weight = {} }},",
            string(&endpoint.url),
            string(&endpoint.tool),
            endpoint.priority,
            endpoint.weight
        )?;
        if let Some(comment) = note(&agent.name, endpoint) {
            write!(out, "  {}", comment_text(&comment))?;
        }
        writeln!(out)?;
    }
    writeln!(out, "]")?;
    // The shared default is what the reader gives an agent without the key; writing it out
    // would repeat the same table in every agent of the dump.
    let is_default =
        agent.input_schema.is_same(default_schema) || agent.input_schema == *default_schema;
    if !is_default {
        write_json_key(out, "input_schema", &agent.input_schema)?;
    }
    if let Some(schema) = &agent.output_schema {
        write_json_key(out, "output_schema", schema)?;
    }
    if let Some(metadata) = &agent.metadata {
        write_json_key(out, "metadata", metadata)?;
    }
    Ok(())
}

/// `servers = [...]`, one inline table per line.
fn write_servers(out: &mut String, servers: &[ServerAddress]) -> std::fmt::Result {
    writeln!(out, "servers = [")?;
    for server in servers {
        write!(out, "  {{ grpc = {}", string(&server.grpc))?;
        if let Some(dns) = server.dns {
            write!(out, ", dns = {}", string(&dns.to_string()))?;
        }
        writeln!(out, " }},")?;
    }
    writeln!(out, "]")
}

/// `key = { ... }` from a JSON document, with a comment above it when TOML could not hold
/// all of it.
fn write_json_key(out: &mut String, key: &str, doc: &JsonDoc) -> std::fmt::Result {
    let mut value = String::new();
    let mut loss = Loss::default();
    write_json(&mut value, doc.value(), &mut loss)?;
    if loss.null {
        writeln!(
            out,
            "# {key} held JSON null, which TOML cannot write: those members and entries are left out"
        )?;
    }
    if loss.big_integer {
        writeln!(
            out,
            "# {key} held integers above the 64-bit signed range, written here as floats"
        )?;
    }
    writeln!(out, "{key} = {value}")
}

/// What a JSON value lost on its way to TOML.
#[derive(Default)]
struct Loss {
    null: bool,
    big_integer: bool,
}

/// Writes a JSON value as a TOML inline value, in the JSON document's key order.
fn write_json(out: &mut String, value: &serde_json::Value, loss: &mut Loss) -> std::fmt::Result {
    use serde_json::Value;
    match value {
        // Only reached at the top level, which schemas and metadata (objects) never are;
        // members and entries that are null are skipped by their container.
        Value::Null => {
            loss.null = true;
            out.write_str("{}")
        }
        Value::Bool(flag) => write!(out, "{flag}"),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                write!(out, "{integer}")
            } else {
                if number.is_u64() {
                    loss.big_integer = true;
                }
                // Always finite: serde_json holds no NaN or infinity.
                let float = number.as_f64().unwrap_or_default();
                write!(out, "{}", toml::Value::Float(float))
            }
        }
        Value::String(text) => out.write_str(&string(text)),
        Value::Array(items) => {
            out.write_char('[')?;
            let mut first = true;
            for item in items {
                if item.is_null() {
                    loss.null = true;
                    continue;
                }
                if !first {
                    out.write_str(", ")?;
                }
                first = false;
                write_json(out, item, loss)?;
            }
            out.write_char(']')
        }
        Value::Object(members) => {
            out.write_char('{')?;
            let mut first = true;
            for (key, member) in members {
                if member.is_null() {
                    loss.null = true;
                    continue;
                }
                out.write_str(if first { " " } else { ", " })?;
                first = false;
                write!(out, "{} = ", toml_key(key))?;
                write_json(out, member, loss)?;
            }
            out.write_str(if first { "}" } else { " }" })
        }
    }
}

/// A key as TOML writes it: bare when it may be, else quoted (a quoted key is a string).
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_string() } else { string(key) }
}

/// A TOML string literal; the toml crate picks the quoting and escapes.
fn string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn string_array(items: &[std::sync::Arc<str>]) -> String {
    let items: Vec<String> = items.iter().map(|item| string(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A name as the zone file reader takes it back: relative below the origin, absolute (with a
/// trailing dot) for the origin itself and anything outside it.
fn written_name(name: &Name, origin: &Name) -> String {
    match name.relative_to(origin) {
        Some(relative) if relative != "@" => relative.to_string(),
        _ if name.is_root() => ".".to_string(),
        _ => format!("{name}."),
    }
}

/// A note made safe as a trailing comment: one line, no control characters TOML forbids in
/// comments, starting with `#`.
fn comment_text(note: &str) -> String {
    let clean: String = note
        .trim()
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect();
    if clean.starts_with('#') {
        clean
    } else {
        format!("# {clean}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::*;
    use crate::record::{Alias, Delegation, ZoneHeader};
    use crate::zone::ZoneRecords;
    use crate::zone::file;

    fn no_notes(_: &Name, _: &Endpoint) -> Option<String> {
        None
    }

    /// Dumps, checks the dump loads back to the same records and that dumping again gives
    /// the same text; returns the dump.
    fn round_trip(
        zone: &ZoneSnapshot,
        note: &dyn Fn(&Name, &Endpoint) -> Option<String>,
    ) -> String {
        let text = write_zone_file(zone, note);
        let path = Path::new("dump.toml");
        let reloaded = match file::parse(path, &text) {
            Ok(reloaded) => reloaded,
            Err(error) => panic!("the dump does not load:\n{error}\n--- dump ---\n{text}"),
        };
        assert_same_records(zone, &reloaded, &text);
        assert_eq!(
            write_zone_file(&reloaded, note),
            text,
            "a second dump differs"
        );
        text
    }

    fn assert_same_records(expected: &ZoneSnapshot, actual: &ZoneSnapshot, text: &str) {
        assert_eq!(expected.header(), actual.header(), "header\n{text}");
        assert_eq!(
            expected.agent_names(),
            actual.agent_names(),
            "agents\n{text}"
        );
        for name in expected.agent_names() {
            let (a, b) = (expected.agent(name.as_str()), actual.agent(name.as_str()));
            assert_eq!(a, b, "agent {name}\n{text}");
        }
        assert_eq!(expected.aliases(), actual.aliases(), "aliases\n{text}");
        let delegations = |zone: &ZoneSnapshot| zone.delegations().cloned().collect::<Vec<_>>();
        assert_eq!(
            delegations(expected),
            delegations(actual),
            "delegations\n{text}"
        );
    }

    #[test]
    fn every_shipped_zone_file_round_trips() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("zones");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("zones/ is readable")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        assert!(!paths.is_empty(), "no zone files in {}", dir.display());
        for path in paths {
            let zone = file::load(&path).unwrap_or_else(|error| panic!("{error}"));
            let text = round_trip(&zone, &no_notes);
            let first = text.lines().next().unwrap_or_default();
            assert_eq!(
                first,
                format!(
                    "# zone {}, serial {}, dumped by aop",
                    zone.origin(),
                    zone.serial()
                ),
                "{}",
                path.display()
            );
        }
    }

    fn name(text: &str) -> Name {
        Name::parse(text).expect("valid name")
    }

    fn server(grpc: &str, dns: Option<&str>) -> ServerAddress {
        ServerAddress::new(grpc, dns).expect("valid server")
    }

    fn agent(full_name: &str, endpoints: Vec<Endpoint>) -> Agent {
        Agent {
            name: name(full_name),
            description: String::new(),
            tags: Box::default(),
            capabilities: Box::default(),
            version: "".into(),
            ttl: None,
            timeout_ms: record::DEFAULT_TIMEOUT_MS,
            max_retries: record::DEFAULT_MAX_RETRIES,
            endpoints,
            input_schema: record::default_input_schema(),
            output_schema: None,
            metadata: None,
            health_checks: true,
        }
    }

    fn synthetic_zone() -> ZoneSnapshot {
        let header = ZoneHeader {
            origin: name("research.globex"),
            serial: 4_000_000_000,
            ttl: 0,
            negative_ttl: 30,
            refresh: 1,
            retry: 2,
            expire: record::limits::TTL_MAX,
            contact: "\"Research\" <ops@globex.example>".to_string(),
            servers: vec![
                server("https://ns1.globex.example:7105/", Some("[::1]:5353")),
                server("http://127.0.0.1:7106", None),
            ],
            health: HealthSettings {
                interval: std::time::Duration::from_millis(2500),
                timeout: std::time::Duration::from_millis(750),
                down_after: 5,
                up_after: 1,
            },
        };
        let mut rich = agent(
            "deep.lab.research.globex",
            vec![
                Endpoint::new("http://127.0.0.1:9201/mcp?x=\"1\"", "deep_tool", 1, 0).unwrap(),
                Endpoint::new("https://lab.example/mcp", "deep", 65535, 65535).unwrap(),
            ],
        );
        rich.description =
            "Says \"hi\" and 'bye',\nthen a tab\there, a backslash \\ and ünïcødé ✓ 🙂\r\nend\""
                .to_string();
        rich.tags = record::intern::intern_all(&["c++", "ünï", "a \"q\""]);
        rich.capabilities = record::intern::intern_all(&["search"]);
        rich.version = "2.0.0-beta.1+build'7".into();
        rich.ttl = Some(45);
        rich.timeout_ms = record::limits::TIMEOUT_MS_MAX;
        rich.max_retries = 0;
        rich.health_checks = false;
        rich.input_schema = record::check_schema(
            "input_schema",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "line one\nline \"two\""},
                    "depth": {"type": "integer", "minimum": -3, "maximum": 9_007_199_254_740_993_i64, "default": 2},
                    "ratio": {"type": "number", "minimum": 0.0, "maximum": 1.5e300, "multipleOf": 0.25},
                    "flags": {"type": "array", "items": {"type": "boolean"}, "default": [true, false]},
                    "nested": {
                        "type": "object",
                        "properties": {"a.b": {"type": "string"}, "": {"type": "string"}, "ключ": {"const": 1}},
                        "additionalProperties": false
                    },
                    "choice": {"enum": ["x", 1, 2.5, [1, [2]], {"k": {}}]}
                },
                "required": ["task", "depth"]
            }),
        )
        .unwrap();
        rich.output_schema = Some(
            record::check_schema(
                "output_schema",
                json!({"type": "object", "properties": {"answer": {"type": "string"}}, "examples": [{}]}),
            )
            .unwrap(),
        );
        rich.metadata = Some(
            record::check_metadata(json!({
                "owner": "lab-ops",
                "cost": {"per_call_usd": 0.002, "free": false},
                "regions": ["eu", "us"],
                "empty": {},
            }))
            .unwrap(),
        );
        let at_origin = agent(
            "research.globex",
            vec![Endpoint::new("http://127.0.0.1:9202/mcp", "research", 10, 1).unwrap()],
        );
        let plain = agent(
            "plain.research.globex",
            vec![Endpoint::new("http://127.0.0.1:9203/mcp", "plain", 10, 1).unwrap()],
        );
        let records = ZoneRecords {
            agents: vec![rich.into(), at_origin.into(), plain.into()],
            aliases: vec![
                Alias {
                    name: name("finance-analyst.research.globex"),
                    target: name("analyst.finance.acme"),
                    ttl: Some(600),
                }
                .into(),
                Alias {
                    name: name("home.research.globex"),
                    target: name("research.globex"),
                    ttl: None,
                }
                .into(),
                Alias {
                    name: name("deep.research.globex"),
                    target: name("deep.lab.research.globex"),
                    ttl: None,
                }
                .into(),
            ],
            delegations: vec![
                Delegation {
                    zone: name("eu.research.globex"),
                    servers: vec![
                        server("http://127.0.0.1:7110", Some("127.0.0.1:5310")),
                        server("http://127.0.0.1:7111", None),
                    ],
                    ttl: Some(3600),
                }
                .into(),
                Delegation {
                    zone: name("a.b.research.globex"),
                    servers: vec![server("http://127.0.0.1:7112", Some("127.0.0.1:5312"))],
                    ttl: None,
                }
                .into(),
            ],
        };
        ZoneSnapshot::build(header, records).expect("a valid zone")
    }

    #[test]
    fn a_zone_with_every_field_round_trips_with_notes() {
        let zone = synthetic_zone();
        let note = |agent: &Name, endpoint: &Endpoint| {
            (agent.as_str() == "deep.lab.research.globex" && endpoint.tool == "deep_tool")
                .then(|| "# registered, lease 60 s".to_string())
        };
        let text = round_trip(&zone, &note);

        let noted = text
            .lines()
            .find(|line| line.contains("http://127.0.0.1:9201/mcp"))
            .expect("the endpoint is written");
        assert!(
            noted.trim_end().ends_with("},  # registered, lease 60 s"),
            "{noted}"
        );
        assert_eq!(text.matches("# registered").count(), 1, "{text}");
        // Names: relative below the origin, absolute elsewhere and for the origin itself.
        assert!(text.contains("name = \"deep.lab\""), "{text}");
        assert!(text.contains("name = \"research.globex.\""), "{text}");
        assert!(
            text.contains("target = \"analyst.finance.acme.\""),
            "{text}"
        );
        assert!(text.contains("target = \"research.globex.\""), "{text}");
        assert!(text.contains("zone = \"a.b\""), "{text}");
        // The default input schema is left to the reader; a custom one is written.
        assert_eq!(text.matches("input_schema = ").count(), 1, "{text}");
        // Sections in order: agents by name, then aliases, then delegations.
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle}\n{text}"))
        };
        assert!(at("[zone]") < at("[[agent]]"));
        assert!(at("name = \"deep.lab\"") < at("name = \"plain\""));
        assert!(at("name = \"plain\"") < at("name = \"research.globex.\""));
        assert!(at("[[agent]]") < at("[[alias]]") && at("[[alias]]") < at("[[delegation]]"));
    }

    #[test]
    fn notes_stay_on_their_line() {
        let zone = synthetic_zone();
        let note = |_: &Name, _: &Endpoint| Some("two\nlines\u{7}".to_string());
        let text = write_zone_file(&zone, &note);
        let reloaded = file::parse(Path::new("dump.toml"), &text)
            .unwrap_or_else(|error| panic!("{error}\n{text}"));
        assert_same_records(&zone, &reloaded, &text);
        assert!(text.contains("# two lines "), "{text}");
    }

    #[test]
    fn what_toml_cannot_hold_is_said_in_a_comment() {
        let mut with_null = agent(
            "nully.research.globex",
            vec![Endpoint::new("http://127.0.0.1:9204/mcp", "nully", 10, 1).unwrap()],
        );
        with_null.metadata = Some(
            record::check_metadata(
                json!({"owner": "x", "gone": null, "list": [1, null, 2], "big": u64::MAX}),
            )
            .unwrap(),
        );
        let header = synthetic_zone().header().clone();
        let zone = ZoneSnapshot::build(
            header,
            ZoneRecords {
                agents: vec![with_null.into()],
                ..ZoneRecords::default()
            },
        )
        .unwrap();
        let text = write_zone_file(&zone, &no_notes);
        assert!(text.contains("# metadata held JSON null"), "{text}");
        assert!(text.contains("# metadata held integers above"), "{text}");
        let reloaded = file::parse(Path::new("dump.toml"), &text)
            .unwrap_or_else(|error| panic!("{error}\n{text}"));
        let metadata = reloaded
            .agent("nully.research.globex")
            .and_then(|agent| agent.metadata.clone())
            .expect("metadata");
        let big = u64::MAX as f64;
        assert_eq!(
            metadata.value(),
            &json!({"owner": "x", "list": [1, 2], "big": big})
        );
    }

    #[test]
    fn a_root_zone_writes_names_without_the_origin() {
        let header = ZoneHeader {
            origin: Name::root(),
            serial: 1,
            ttl: 3600,
            negative_ttl: 300,
            refresh: 60,
            retry: 10,
            expire: 86_400,
            contact: String::new(),
            servers: vec![server("http://127.0.0.1:7100", Some("127.0.0.1:7200"))],
            health: crate::record::HealthSettings::DEFAULT,
        };
        let records = ZoneRecords {
            agents: vec![
                agent(
                    "hub",
                    vec![Endpoint::new("http://127.0.0.1:9205/mcp", "hub", 10, 1).unwrap()],
                )
                .into(),
            ],
            aliases: vec![
                Alias {
                    name: name("alias.example"),
                    target: name("hub"),
                    ttl: None,
                }
                .into(),
            ],
            delegations: vec![
                Delegation {
                    zone: name("acme"),
                    servers: vec![server("http://127.0.0.1:7101", None)],
                    ttl: Some(3600),
                }
                .into(),
            ],
        };
        let zone = ZoneSnapshot::build(header, records).unwrap();
        let text = round_trip(&zone, &no_notes);
        assert!(text.contains("origin = \".\""), "{text}");
        assert!(text.contains("name = \"alias.example\""), "{text}");
        assert!(text.contains("zone = \"acme\""), "{text}");
    }
}
