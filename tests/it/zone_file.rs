//! Zone files (docs/protocol.md §2, limits of section 7): one test per rule, each pinning the
//! exact `LINE:COL` and message of the error, then lookups on a valid zone, then the real
//! `aop zone check` binary.
//!
//! Every zone is written inline, starting on line 1, so the line and column in an assertion
//! can be read straight off the text above it.

use std::path::Path;

use aop::answer::Outcome;
use aop::name::Name;
use aop::zone::file::{MAX_ERRORS_PER_FILE, ZoneFileError, parse};
use aop::zone::{ZoneLookup, ZoneSnapshot};

use crate::support::aop;

/// Every diagnostic of a file that must not load, as `LINE:COL: message`.
fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("zone.toml"), text) {
        Ok(_) => panic!("the zone loaded, but errors were expected:\n{text}"),
        Err(error) => error
            .diagnostics()
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}

/// The only diagnostic of a file with exactly one error.
fn error(text: &str) -> String {
    let mut all = errors(text);
    assert_eq!(all.len(), 1, "expected exactly one error, got {all:#?}");
    all.remove(0)
}

fn load(text: &str) -> ZoneSnapshot {
    parse(Path::new("zone.toml"), text).unwrap_or_else(|error| panic!("{error}"))
}

fn lookup(zone: &ZoneSnapshot, name: &str) -> ZoneLookup {
    zone.lookup(&Name::parse(name).unwrap())
}

fn alias_names(found: &ZoneLookup) -> Vec<String> {
    found.aliases.iter().map(|a| a.name.to_string()).collect()
}

fn answer_name(found: &ZoneLookup) -> String {
    match &found.outcome {
        Outcome::Answer(agent) => agent.name.to_string(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// TOML itself

#[test]
fn toml_syntax_error_is_reported_at_its_position() {
    let text = r#"[zone]
origin = "finance.acme"
serial = = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#;
    assert_eq!(
        error(text),
        "3:10: TOML syntax: extra `=`, expected nothing"
    );
}

#[test]
fn display_is_file_line_column_message() {
    let text = r#"[zone]
origin = "finance.acme"
serial = "one"
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#;
    let error = parse(Path::new("zones/finance.acme.toml"), text).unwrap_err();
    assert_eq!(
        error.to_string(),
        "zones/finance.acme.toml:3:10: `serial` must be an integer, found string"
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_key_in_zone_table() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
owner = "ops"
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#;
    assert_eq!(
        error(text),
        "4:1: unknown key `owner` in [zone] (allowed: origin, serial, ttl, negative_ttl, refresh, retry, expire, contact, servers, health)"
    );
}

#[test]
fn unknown_key_in_agent() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
descripton = "typo"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        error(text),
        "8:1: unknown key `descripton` in [[agent]] (allowed: name, description, tags, capabilities, version, ttl, timeout_ms, max_retries, endpoints, input_schema, output_schema, metadata, health)"
    );
}

#[test]
fn unknown_key_in_endpoints_entry() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp", prio = 5 }]
"#;
    assert_eq!(
        error(text),
        "8:51: unknown key `prio` in an endpoints entry (allowed: url, tool, priority, weight)"
    );
}

#[test]
fn unknown_key_at_top_level() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agnet]]
name = "analyst"
"#;
    assert_eq!(
        error(text),
        "6:3: unknown key `agnet` in the file (allowed: zone, agent, alias, delegation)"
    );
}

// ---------------------------------------------------------------------------------------------
// Missing tables and keys

#[test]
fn missing_zone_table() {
    let text = r#"[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        error(text),
        "1:1: missing [zone] table (origin, serial, servers, ...)"
    );
}

#[test]
fn missing_zone_keys_origin_serial_servers() {
    let text = r#"# finance
[zone]
ttl = 300
"#;
    assert_eq!(
        errors(text),
        [
            "2:1: [zone] is missing required key `origin`",
            "2:1: [zone] is missing required key `serial`",
            "2:1: [zone] is missing required key `servers`",
        ]
    );
}

#[test]
fn missing_agent_name() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
description = "who am I?"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(error(text), "6:1: [[agent]] is missing required key `name`");
}

#[test]
fn missing_agent_endpoints() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
"#;
    assert_eq!(
        error(text),
        "6:1: [[agent]] is missing required key `endpoints`"
    );
}

#[test]
fn empty_endpoints_list() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = []
"#;
    assert_eq!(error(text), "8:13: endpoints must not be empty");
}

#[test]
fn missing_alias_target() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[alias]]
name = "forecaster"
"#;
    assert_eq!(
        error(text),
        "10:1: [[alias]] is missing required key `target`"
    );
}

#[test]
fn missing_delegation_servers() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "eu"
"#;
    assert_eq!(
        error(text),
        "6:1: [[delegation]] is missing required key `servers`"
    );
}

// ---------------------------------------------------------------------------------------------
// Types

#[test]
fn string_where_an_integer_is_expected() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
ttl = "300"
endpoints = [{ url = "http://127.0.0.1:9101/mcp", priority = "10" }]
"#;
    assert_eq!(
        errors(text),
        [
            "8:7: `ttl` must be an integer, found string",
            "9:62: `priority` must be an integer, found string",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn agent_name_label_with_underscore() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "ana_lyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        error(text),
        r#"7:8: label "ana_lyst" of "ana_lyst" contains '_': labels allow only letters a-z, digits 0-9 and inner hyphens"#
    );
}

#[test]
fn agent_name_label_with_leading_hyphen() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "fx.-trading"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        error(text),
        r#"7:8: label "-trading" of "fx.-trading" starts with a hyphen: hyphens are allowed only inside a label"#
    );
}

#[test]
fn agent_name_label_over_63_characters() {
    let long = "a".repeat(64);
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "LONG.desk"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .replace("LONG", &long);
    assert_eq!(
        error(&text),
        format!(r#"7:8: label "{long}" of "{long}.desk" is 64 characters long (limit 63)"#)
    );
    // 63 is fine.
    load(&text.replace(&long, &"a".repeat(63)));
}

#[test]
fn agent_name_over_240_characters() {
    // The origin `finance.acme` adds 13 characters (".finance.acme") to the relative name.
    let name_of_len = |total: usize| {
        // Labels of 50 characters, cut to length (the cut never lands on a dot here).
        let mut relative = vec!["b".repeat(50); 5].join(".");
        relative.truncate(total - ".finance.acme".len());
        assert!(!relative.ends_with('.'));
        relative
    };
    let zone = |relative: &str| {
        r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "NAME"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
        .replace("NAME", relative)
    };
    // Exactly 240 loads.
    load(&zone(&name_of_len(240)));
    let relative = name_of_len(241);
    let full = format!("{relative}.finance.acme");
    assert_eq!(
        error(&zone(&relative)),
        format!(
            r#"7:8: name "{}..." is 241 characters long (limit 240)"#,
            &full[..80]
        )
    );
}

#[test]
fn non_ascii_name_error_names_the_label() {
    // 127 two-byte characters: 254 bytes, 127 characters. The label is invalid twice over
    // (a character outside a-z0-9-, and 127 > 63 characters); the message should say so.
    let name = "é".repeat(127);
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "NAME"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .replace("NAME", &name);
    let found = error(&text);
    assert!(found.starts_with(r#"7:8: label ""#), "{found}");
    assert!(!found.contains("(limit 253)"), "{found}");
}

#[test]
fn absolute_name_outside_the_origin_is_an_error() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "x.other."
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(error(text), "7:8: x.other is not inside zone finance.acme");
}

#[test]
fn absolute_alias_target_outside_the_zone_is_fine() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[alias]]
name = "scribe"
target = "writer.acme."

[[alias]]
name = "local"
target = "writer.acme"
"#;
    let zone = load(text);
    let found = lookup(&zone, "scribe.finance.acme");
    assert_eq!(
        found.outcome,
        Outcome::Alias {
            target: Name::parse("writer.acme").unwrap()
        }
    );
    assert_eq!(alias_names(&found), ["scribe.finance.acme"]);
    // Without the trailing dot the target is relative to the origin.
    let local = zone.aliases()[0].clone();
    assert_eq!(local.name.as_str(), "local.finance.acme");
    assert_eq!(local.target.as_str(), "writer.acme.finance.acme");
}

#[test]
fn absolute_name_inside_the_origin_is_the_same_name() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[agent]]
name = "Analyst.Finance.Acme."
endpoints = [{ url = "http://127.0.0.1:9102/mcp" }]
"#;
    assert_eq!(
        error(text),
        "11:8: duplicate name analyst.finance.acme: already defined as an agent"
    );
}

// ---------------------------------------------------------------------------------------------
// Delegations and occlusion

#[test]
fn delegation_at_the_origin() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "finance.acme."
servers = [{ grpc = "http://127.0.0.1:7110" }]
"#;
    assert_eq!(
        error(text),
        "7:8: delegated zone finance.acme must be strictly below the origin finance.acme"
    );
}

#[test]
fn delegation_outside_the_origin() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "globex."
servers = [{ grpc = "http://127.0.0.1:7110" }]
"#;
    assert_eq!(
        error(text),
        "7:8: delegated zone globex must be strictly below the origin finance.acme"
    );
}

#[test]
fn agent_below_a_delegation_is_occluded() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "desk.eu"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110" }]
"#;
    assert_eq!(
        error(text),
        "7:8: desk.eu.finance.acme is occluded by the delegation of eu.finance.acme: data at or below a delegated zone belongs to the child zone"
    );
}

#[test]
fn agent_at_a_delegation_is_occluded() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "eu"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110" }]
"#;
    assert_eq!(
        error(text),
        "7:8: eu.finance.acme is occluded by the delegation of eu.finance.acme: data at or below a delegated zone belongs to the child zone"
    );
}

#[test]
fn delegation_below_a_delegation_is_occluded() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "paris.eu"
servers = [{ grpc = "http://127.0.0.1:7111" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110" }]
"#;
    assert_eq!(
        error(text),
        "7:8: paris.eu.finance.acme is occluded by the delegation of eu.finance.acme: data at or below a delegated zone belongs to the child zone"
    );
}

// ---------------------------------------------------------------------------------------------
// Duplicates

#[test]
fn duplicate_agent_names() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[agent]]
name = "ANALYST"
endpoints = [{ url = "http://127.0.0.1:9102/mcp" }]
"#;
    assert_eq!(
        error(text),
        "11:8: duplicate name analyst.finance.acme: already defined as an agent"
    );
}

#[test]
fn alias_with_the_name_of_an_agent() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[alias]]
name = "analyst"
target = "auditor"

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[agent]]
name = "auditor"
endpoints = [{ url = "http://127.0.0.1:9102/mcp" }]
"#;
    // The agent is the first definition whatever the order in the file; the alias is the
    // duplicate.
    assert_eq!(
        error(text),
        "7:8: duplicate name analyst.finance.acme: already defined as an agent"
    );
}

#[test]
fn duplicate_delegations() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7111" }]
"#;
    assert_eq!(
        error(text),
        "11:8: duplicate name eu.finance.acme: already defined as a delegation"
    );
}

// ---------------------------------------------------------------------------------------------
// Aliases

#[test]
fn alias_loop_is_reported_once() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[alias]]
name = "a"
target = "b"

[[alias]]
name = "b"
target = "a"
"#;
    assert_eq!(
        errors(text),
        ["7:8: alias loop: a.finance.acme -> b.finance.acme -> a.finance.acme"]
    );
}

#[test]
fn alias_to_itself_is_a_loop() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[alias]]
name = "a"
target = "a"
"#;
    assert_eq!(
        error(text),
        "7:8: alias loop: a.finance.acme -> a.finance.acme"
    );
}

#[test]
fn alias_loop_is_reported_once_at_its_first_alias_in_the_file() {
    // a -> b -> c -> a, written c first; x leads into the loop without being part of it.
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[alias]]
name = "c"
target = "a"

[[alias]]
name = "x"
target = "a"

[[alias]]
name = "a"
target = "b"

[[alias]]
name = "b"
target = "c"
"#;
    assert_eq!(
        errors(text),
        ["7:8: alias loop: c.finance.acme -> a.finance.acme -> b.finance.acme -> c.finance.acme"]
    );
}

#[test]
fn alias_loop_longer_than_the_chain_limit_is_reported_once_as_a_loop() {
    // a1 -> a2 -> ... -> a10 -> a1
    let mut text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#
    .to_string();
    for i in 1..=10 {
        let target = if i == 10 { 1 } else { i + 1 };
        text.push_str(&format!(
            "\n[[alias]]\nname = \"a{i}\"\ntarget = \"a{target}\"\n"
        ));
    }
    let chain: Vec<String> = (1..=10)
        .chain([1])
        .map(|i| format!("a{i}.finance.acme"))
        .collect();
    assert_eq!(
        errors(&text),
        [format!("7:8: alias loop: {}", chain.join(" -> "))]
    );
}

/// A zone with aliases `a1 -> a2 -> ... -> a{count} -> analyst`.
fn alias_chain_zone(count: usize) -> String {
    let mut text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .to_string();
    for i in 1..=count {
        let target = if i == count {
            "analyst".to_string()
        } else {
            format!("a{}", i + 1)
        };
        text.push_str(&format!(
            "\n[[alias]]\nname = \"a{i}\"\ntarget = \"{target}\"\n"
        ));
    }
    text
}

#[test]
fn alias_chain_longer_than_8() {
    // Lines 1-8 are the header and the agent; alias i starts on line 9 + 4 (i - 1), its name
    // one line below.
    assert_eq!(
        errors(&alias_chain_zone(9)),
        ["11:8: alias chain from a1.finance.acme follows more than 8 aliases (limit 8)"]
    );
    // Eight aliases are fine, and a lookup follows them all.
    let zone = load(&alias_chain_zone(8));
    let found = lookup(&zone, "a1.finance.acme");
    assert_eq!(answer_name(&found), "analyst.finance.acme");
    assert_eq!(found.aliases.len(), 8);
}

#[test]
fn alias_at_the_origin() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[alias]]
name = "finance.acme."
target = "analyst"
"#;
    assert_eq!(
        error(text),
        "11:8: alias finance.acme cannot be the zone's origin: the origin holds the zone's own data"
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[test]
fn endpoint_url_that_is_not_a_url() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "not a url" }]
"#;
    assert_eq!(
        error(text),
        r#"8:22: invalid endpoint url "not a url": relative URL without a base"#
    );
}

#[test]
fn endpoint_url_with_ftp_scheme() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "ftp://127.0.0.1/mcp" }]
"#;
    assert_eq!(
        error(text),
        r#"8:22: invalid endpoint url "ftp://127.0.0.1/mcp": scheme "ftp" is not http or https"#
    );
}

#[test]
fn endpoint_url_with_credentials() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "https://bot:hunter2@127.0.0.1/mcp" }]
"#;
    assert_eq!(
        error(text),
        r#"8:22: invalid endpoint url "https://***:***@127.0.0.1/mcp": credentials in the URL would be published to every reader of the zone"#
    );
}

#[test]
fn endpoint_url_credentials_are_not_echoed() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "https://bot:hunter2@127.0.0.1/mcp" }]
"#;
    let found = error(text);
    assert!(!found.contains("hunter2"), "{found}");
}

#[test]
fn endpoint_invalid_tool_name() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp", tool = "run analyst" }]
"#;
    assert_eq!(
        error(text),
        r#"8:58: invalid tool name "run analyst": MCP tool names are 1 to 128 characters of A-Z, a-z, 0-9, '_', '-' and '.'"#
    );
}

#[test]
fn priority_and_weight_out_of_range_each_at_its_column() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [
  { url = "http://127.0.0.1:9101/mcp", priority = 0, weight = 70000 },
  { url = "http://127.0.0.1:9102/mcp", priority = 65536 },
]
"#;
    assert_eq!(
        errors(text),
        [
            "9:51: priority is 0, outside 1..=65535",
            "9:63: weight is 70000, outside 0..=65535",
            "10:51: priority is 65536, outside 1..=65535",
        ]
    );
}

#[test]
fn more_than_16_endpoints() {
    let entries: Vec<String> = (0..17)
        .map(|i| format!("  {{ url = \"http://127.0.0.1:{}/mcp\" }},\n", 9100 + i))
        .collect();
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [
ENTRIES]
"#
    .replace("ENTRIES", &entries.concat());
    assert_eq!(error(&text), "8:13: endpoints has 17 entries (limit 16)");
    // Sixteen are fine.
    load(&text.replace(&entries[16], ""));
}

#[test]
fn duplicate_endpoint_url() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [
  { url = "http://127.0.0.1:9101/mcp", weight = 3 },
  { url = "http://127.0.0.1:9102/mcp" },
  { url = "http://127.0.0.1:9101/mcp", weight = 1 },
]
"#;
    assert_eq!(
        error(text),
        r#"11:3: endpoints has "http://127.0.0.1:9101/mcp" twice"#
    );
}

// ---------------------------------------------------------------------------------------------
// Schemas

#[test]
fn input_schema_that_is_not_a_json_schema() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
input_schema = { type = "objekt" }
"#;
    assert_eq!(
        error(text),
        r#"9:16: input_schema is not a valid JSON Schema: "objekt" is not valid under any of the schemas listed in the 'anyOf' keyword (at /type)"#
    );
}

#[test]
fn input_schema_not_of_type_object() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
input_schema = { type = "string" }
"#;
    assert_eq!(
        error(text),
        r#"9:16: input_schema must describe an object ("type": "object"), as MCP requires of tool schemas"#
    );
}

#[test]
fn input_schema_that_is_not_a_table() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
input_schema = "object"
"#;
    assert_eq!(
        error(text),
        "9:16: input_schema must be a table (a JSON object)"
    );
}

#[test]
fn output_schema_that_is_not_a_json_schema() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
output_schema = { type = "object", properties = { score = { type = "numbr" } } }
"#;
    assert_eq!(
        error(text),
        r#"9:17: output_schema is not a valid JSON Schema: "numbr" is not valid under any of the schemas listed in the 'anyOf' keyword (at /properties/score/type)"#
    );
}

#[test]
fn schema_over_64_kib() {
    // Serialised, `{"description":"…","type":"object"}` is 34 bytes plus the description.
    let zone = |len: usize| {
        r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
input_schema = { type = "object", description = "TEXT" }
"#
        .replace("TEXT", &"x".repeat(len))
    };
    load(&zone(65536 - 34));
    assert_eq!(
        error(&zone(65536 - 33)),
        "9:16: input_schema is 65537 bytes (limit 65536 bytes)"
    );
}

// ---------------------------------------------------------------------------------------------
// Size limits of section 7

#[test]
fn description_over_1024_bytes() {
    let zone = |description: &str| {
        r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
description = "TEXT"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
        .replace("TEXT", description)
    };
    load(&zone(&"x".repeat(1024)));
    assert_eq!(
        error(&zone(&"x".repeat(1025))),
        "8:15: description is 1025 bytes (limit 1024 bytes)"
    );
    // Bytes, not characters: 513 two-byte characters are 1026 bytes.
    assert_eq!(
        error(&zone(&"é".repeat(513))),
        "8:15: description is 1026 bytes (limit 1024 bytes)"
    );
}

#[test]
fn thirty_three_tags() {
    let tags: Vec<String> = (0..33).map(|i| format!("\"t{i}\"")).collect();
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
tags = [TAGS]
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .replace("TAGS", &tags.join(", "));
    assert_eq!(error(&text), "8:8: tags has 33 entries (limit 32)");
    load(&text.replace(", \"t32\"", ""));
}

#[test]
fn tag_over_64_bytes() {
    let long = "t".repeat(65);
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
tags = ["finance", "LONG"]
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .replace("LONG", &long);
    assert_eq!(error(&text), "8:20: tags is 65 bytes (limit 64 bytes)");
    load(&text.replace(&long, &"t".repeat(64)));
}

#[test]
fn capability_over_64_bytes() {
    let long = "c".repeat(65);
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
capabilities = ["LONG"]
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#
    .replace("LONG", &long);
    assert_eq!(
        error(&text),
        "8:17: capabilities is 65 bytes (limit 64 bytes)"
    );
}

#[test]
fn duplicate_tag_reported_at_the_second_one_column_in_characters() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
tags = ["ü", "ü"]
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    // Column 14 counts `ü` as one character (it is two bytes).
    assert_eq!(error(text), r#"8:14: tags has "ü" twice"#);
}

#[test]
fn metadata_over_4_kib() {
    // Serialised, `{"note":"…"}` is 11 bytes plus the note.
    let zone = |len: usize| {
        r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
metadata = { note = "TEXT" }
"#
        .replace("TEXT", &"x".repeat(len))
    };
    load(&zone(4096 - 11));
    assert_eq!(
        error(&zone(4096 - 10)),
        "9:12: metadata is 4097 bytes (limit 4096 bytes)"
    );
}

// ---------------------------------------------------------------------------------------------
// Numbers

#[test]
fn negative_ttl_is_out_of_range() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
ttl = -1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
ttl = -5
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        errors(text),
        [
            "4:7: ttl is -1, outside 0..=2147483647",
            "9:7: ttl is -5, outside 0..=2147483647",
        ]
    );
}

#[test]
fn serial_out_of_u32_range() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 4294967296
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#;
    assert_eq!(
        error(text),
        "3:10: serial is 4294967296, outside 0..=4294967295"
    );
    load(&text.replace("4294967296", "4294967295"));
    assert_eq!(
        error(&text.replace("4294967296", "-1")),
        "3:10: serial is -1, outside 0..=4294967295"
    );
}

// ---------------------------------------------------------------------------------------------
// Servers

#[test]
fn invalid_server_grpc_url_and_dns_address() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [
  { grpc = "localhost:7102", dns = "127.0.0.1:5302" },
  { grpc = "http://127.0.0.1:7103", dns = "localhost:5303" },
]
"#;
    assert_eq!(
        errors(text),
        [
            r#"5:12: invalid server grpc "localhost:7102": no scheme: write "http://localhost:7102" (or https://)"#,
            r#"6:43: invalid server dns "localhost:5303": expected IP:port, such as 127.0.0.1:5353"#,
        ]
    );
}

#[test]
fn invalid_delegation_server() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110", dns = "127.0.0.1" }]
"#;
    assert_eq!(
        error(text),
        r#"8:52: invalid server dns "127.0.0.1": expected IP:port, such as 127.0.0.1:5353"#
    );
}

// ---------------------------------------------------------------------------------------------
// Many errors

#[test]
fn several_errors_are_all_reported_sorted_by_position() {
    // The agent comes before [zone] in the file but is checked after it; structural errors
    // are found last of all. The report is still in file order.
    let text = r#"[[agent]]
name = "analyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp", priority = 0 }]

[zone]
origin = "finance.acme"
serial = 1
ttl = -1
colour = "blue"
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "analyst"
description = 42
endpoints = [{ url = "http://127.0.0.1:9102/mcp" }]

[[agent]]
name = "auditor"
endpoints = [{ url = "http://127.0.0.1:9103/mcp" }]

[[alias]]
name = "auditor"
target = "analyst"
"#;
    assert_eq!(
        errors(text),
        [
            "3:62: priority is 0, outside 1..=65535",
            "8:7: ttl is -1, outside 0..=2147483647",
            "9:1: unknown key `colour` in [zone] (allowed: origin, serial, ttl, negative_ttl, refresh, retry, expire, contact, servers, health)",
            "14:15: `description` must be a string, found integer",
            "22:8: duplicate name auditor.finance.acme: already defined as an agent",
        ]
    );
}

#[test]
fn more_than_100_errors_keeps_100_and_counts_the_rest() {
    let mut text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
"#
    .to_string();
    // 130 agents, each with one bad name, on lines 7, 11, 15, ...
    for i in 0..130 {
        text.push_str(&format!(
            "\n[[agent]]\nname = \"bad_{i}\"\nendpoints = [{{ url = \"http://127.0.0.1:9101/mcp\" }}]\n"
        ));
    }
    let error = parse(Path::new("zone.toml"), &text).unwrap_err();
    let diagnostics = error.diagnostics();
    assert_eq!(diagnostics.len(), MAX_ERRORS_PER_FILE);
    // The first 100 by position are kept.
    for (i, d) in diagnostics.iter().enumerate() {
        assert_eq!((d.line, d.column), (7 + 4 * i, 8), "{d:?}");
        assert!(d.message.contains(&format!("\"bad_{i}\"")), "{d:?}");
    }
    match &error {
        ZoneFileError::Invalid { omitted, .. } => assert_eq!(*omitted, 30),
        other => panic!("{other:?}"),
    }
    let shown = error.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 101);
    assert!(
        lines[0].starts_with("zone.toml:7:8: label \"bad_0\""),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[100],
        "zone.toml: 30 more errors not shown (limit 100 per file)"
    );
}

// ---------------------------------------------------------------------------------------------
// A valid zone and lookups in it

const VALID: &str = r#"[zone]
origin = "finance.acme"
serial = 2026112401
ttl = 300
negative_ttl = 60
contact = "ops@acme.example"
servers = [
  { grpc = "http://127.0.0.1:7102", dns = "127.0.0.1:5302" },
  { grpc = "http://127.0.0.1:7103" },
]

[[agent]]
name = "analyst"
description = "Financial analyst."
tags = ["finance", "analysis"]
ttl = 120
endpoints = [
  { url = "http://127.0.0.1:9101/mcp", tool = "analyst", priority = 10, weight = 3 },
  { url = "http://127.0.0.1:9102/mcp", tool = "analyst", priority = 20, weight = 0 },
]
input_schema = { type = "object", properties = { task = { type = "string" } }, required = ["task"] }
metadata = { owner = "fin-ops" }

[[agent]]
name = "fx.trading"
endpoints = [{ url = "http://127.0.0.1:9103/mcp" }]

[[alias]]
name = "forecaster"
target = "predictor"
ttl = 30

[[alias]]
name = "predictor"
target = "analyst"

[[alias]]
name = "scribe"
target = "writer.acme."

[[alias]]
name = "ghost"
target = "nobody"
ttl = 20

[[alias]]
name = "branch"
target = "paris.eu"

[[delegation]]
zone = "eu"
servers = [{ grpc = "http://127.0.0.1:7110", dns = "127.0.0.1:5310" }]
ttl = 3600
"#;

#[test]
fn valid_zone_loads_with_its_fields_and_defaults() {
    let zone = load(VALID);
    assert_eq!(zone.origin().as_str(), "finance.acme");
    assert_eq!(zone.serial(), 2026112401);
    assert_eq!(zone.agent_count(), 2);
    assert_eq!(zone.alias_count(), 5);
    assert_eq!(zone.delegations().count(), 1);
    let header = zone.header();
    assert_eq!((header.ttl, header.negative_ttl), (300, 60));
    assert_eq!(header.contact, "ops@acme.example");
    assert_eq!(header.servers.len(), 2);
    assert_eq!(header.servers[0].grpc, "http://127.0.0.1:7102");
    assert_eq!(
        header.servers[0].dns,
        Some("127.0.0.1:5302".parse().unwrap())
    );
    assert_eq!(header.servers[1].dns, None);
    assert_eq!(
        zone.agent_names()
            .iter()
            .map(Name::as_str)
            .collect::<Vec<_>>(),
        ["analyst.finance.acme", "fx.trading.finance.acme"]
    );

    let analyst = zone.agent("analyst.finance.acme").unwrap();
    assert_eq!(analyst.ttl, Some(120));
    assert_eq!(
        analyst.tags.iter().map(|t| &**t).collect::<Vec<_>>(),
        ["finance", "analysis"]
    );
    assert_eq!(analyst.endpoints.len(), 2);
    assert_eq!(
        (analyst.endpoints[1].priority, analyst.endpoints[1].weight),
        (20, 0)
    );
    assert_eq!(
        analyst.metadata.as_ref().unwrap().value()["owner"],
        "fin-ops"
    );

    // Defaults: the tool is the agent's first label; the input schema is the AOP agent-tool
    // schema (task required; img, imgs, correct_answer).
    let fx = zone.agent("fx.trading.finance.acme").unwrap();
    assert_eq!(fx.ttl, None);
    assert_eq!(fx.endpoints[0].tool, "fx");
    let schema = fx.input_schema.value();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], serde_json::json!(["task"]));
    for property in ["task", "img", "imgs", "correct_answer"] {
        assert!(schema["properties"].get(property).is_some(), "{property}");
    }
}

#[test]
fn lookup_answer_with_the_agent_ttl() {
    let zone = load(VALID);
    let found = lookup(&zone, "Analyst.Finance.Acme.");
    assert_eq!(answer_name(&found), "analyst.finance.acme");
    assert!(found.aliases.is_empty());
    assert_eq!(found.ttl, 120);
    // An agent without its own ttl gets the zone's.
    let found = lookup(&zone, "fx.trading.finance.acme");
    assert_eq!(answer_name(&found), "fx.trading.finance.acme");
    assert_eq!(found.ttl, 300);
}

#[test]
fn lookup_follows_an_in_zone_alias_chain_with_the_minimum_ttl() {
    let zone = load(VALID);
    // forecaster (ttl 30) -> predictor (zone ttl 300) -> analyst (ttl 120)
    let found = lookup(&zone, "forecaster.finance.acme");
    assert_eq!(answer_name(&found), "analyst.finance.acme");
    assert_eq!(
        alias_names(&found),
        ["forecaster.finance.acme", "predictor.finance.acme"]
    );
    assert_eq!(found.ttl, 30);
    // predictor (300) -> analyst (120)
    let found = lookup(&zone, "predictor.finance.acme");
    assert_eq!(answer_name(&found), "analyst.finance.acme");
    assert_eq!(alias_names(&found), ["predictor.finance.acme"]);
    assert_eq!(found.ttl, 120);
}

#[test]
fn lookup_alias_out_of_the_zone_stops_at_the_alias() {
    let zone = load(VALID);
    let found = lookup(&zone, "scribe.finance.acme");
    assert_eq!(
        found.outcome,
        Outcome::Alias {
            target: Name::parse("writer.acme").unwrap()
        }
    );
    assert_eq!(alias_names(&found), ["scribe.finance.acme"]);
    assert_eq!(found.ttl, 300);
}

#[test]
fn lookup_referral_at_and_below_a_delegation() {
    let zone = load(VALID);
    for name in ["eu.finance.acme", "desk.paris.eu.finance.acme"] {
        let found = lookup(&zone, name);
        match &found.outcome {
            Outcome::Referral(delegation) => {
                assert_eq!(delegation.zone.as_str(), "eu.finance.acme");
                assert_eq!(delegation.servers[0].grpc, "http://127.0.0.1:7110");
            }
            other => panic!("{name}: expected a referral, got {other:?}"),
        }
        assert!(found.aliases.is_empty());
        assert_eq!(found.ttl, 3600, "{name}");
    }
    // An alias into the delegated zone ends in the referral, the alias kept.
    let found = lookup(&zone, "branch.finance.acme");
    assert!(
        matches!(&found.outcome, Outcome::Referral(d) if d.zone.as_str() == "eu.finance.acme"),
        "{:?}",
        found.outcome
    );
    assert_eq!(alias_names(&found), ["branch.finance.acme"]);
    assert_eq!(found.ttl, 300);
}

#[test]
fn lookup_nxdomain_with_the_negative_ttl() {
    let zone = load(VALID);
    for name in ["nobody.finance.acme", "x.analyst.finance.acme"] {
        let found = lookup(&zone, name);
        assert_eq!(found.outcome, Outcome::NxDomain, "{name}");
        assert!(found.aliases.is_empty());
        // min(zone ttl 300, negative_ttl 60)
        assert_eq!(found.ttl, 60, "{name}");
    }
    // A dangling in-zone alias: NXDOMAIN for its target, the alias kept, min(20, 60).
    let found = lookup(&zone, "ghost.finance.acme");
    assert_eq!(found.outcome, Outcome::NxDomain);
    assert_eq!(alias_names(&found), ["ghost.finance.acme"]);
    assert_eq!(found.ttl, 20);
}

#[test]
fn lookup_nodata_for_an_empty_non_terminal_and_the_origin() {
    let zone = load(VALID);
    // `fx.trading` exists, so `trading` exists without data of its own.
    for name in ["trading.finance.acme", "finance.acme"] {
        let found = lookup(&zone, name);
        assert_eq!(found.outcome, Outcome::NoData, "{name}");
        assert_eq!(found.ttl, 60, "{name}");
    }
}

#[test]
fn negative_ttl_is_the_minimum_of_zone_ttl_and_negative_ttl() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
ttl = 30
negative_ttl = 600
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "fx.trading"
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    let zone = load(text);
    assert_eq!(zone.header().negative_cache_ttl(), 30);
    assert_eq!(lookup(&zone, "nobody.finance.acme").ttl, 30);
    assert_eq!(lookup(&zone, "trading.finance.acme").ttl, 30);
}

#[test]
fn root_zone_names_are_absolute() {
    let text = r#"[zone]
origin = "."
serial = 1
servers = [{ grpc = "http://127.0.0.1:7100" }]

[[delegation]]
zone = "acme"
servers = [{ grpc = "http://127.0.0.1:7101" }]
"#;
    let zone = load(text);
    assert!(zone.origin().is_root());
    let found = lookup(&zone, "analyst.finance.acme");
    assert!(
        matches!(&found.outcome, Outcome::Referral(d) if d.zone.as_str() == "acme"),
        "{:?}",
        found.outcome
    );
    assert_eq!(found.ttl, 300);
    assert_eq!(lookup(&zone, "globex").outcome, Outcome::NxDomain);
}

// ---------------------------------------------------------------------------------------------
// The binary

#[test]
fn zone_check_accepts_every_shipped_zone_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no zone files in {}", dir.display());
    let output = aop().args(["zone", "check"]).args(&files).output().unwrap();
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // And each parses through the library too.
    for file in &files {
        aop::zone::file::load(file).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn zone_check_reports_file_line_column_on_stderr_and_exits_1() {
    let mut file = tempfile::Builder::new()
        .prefix("bad-zone-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]

[[agent]]
name = "ana_lyst"
endpoints = [{ url = "http://127.0.0.1:9101/mcp", priority = 0 }]
"#;
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    let path = file.path().display().to_string();
    let output = aop()
        .args(["zone", "check"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "error: 2 errors in 1 of 1 zone file", "{stderr}");
    assert!(
        lines.contains(&format!(
            r#"{path}:7:8: label "ana_lyst" of "ana_lyst" contains '_': labels allow only letters a-z, digits 0-9 and inner hyphens"#
        )
        .as_str()),
        "{stderr}"
    );
    assert!(
        lines.contains(&format!("{path}:8:62: priority is 0, outside 1..=65535").as_str()),
        "{stderr}"
    );
    // Every error line is FILE:LINE:COL: message, in file order.
    let located: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with(&path))
        .collect();
    assert_eq!(located.len(), 2, "{stderr}");
    assert!(located[0].starts_with(&format!("{path}:7:")), "{stderr}");

    // A good file next to the bad one does not change the exit status.
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/acme.toml");
    let output = aop()
        .args(["zone", "check"])
        .arg(&good)
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn large_zones_report_errors_from_every_part_of_the_file_in_order() {
    // Large zones are read by two threads; errors from both halves must all arrive, sorted.
    let mut text = String::from(
        "[zone]\norigin = \"big\"\nserial = 1\nservers = [{ grpc = \"http://127.0.0.1:7000\" }]\n",
    );
    let mut expected = Vec::new();
    for i in 0..2500 {
        // The entry starts with a blank line, then `[[agent]]`, then `name`.
        let line = text.lines().count() + 3;
        let name = if i == 10 || i == 2490 {
            expected.push(format!(
                "{line}:8: label \"bad_{i}\" of \"bad_{i}\" contains '_': labels allow only letters a-z, digits 0-9 and inner hyphens"
            ));
            format!("bad_{i}")
        } else {
            format!("agent-{i}")
        };
        text.push_str(&format!(
            "\n[[agent]]\nname = \"{name}\"\nendpoints = [{{ url = \"http://127.0.0.1:9000/mcp\" }}]\n"
        ));
    }
    assert_eq!(errors(&text), expected);
    let fixed = text.replace("bad_", "good-");
    let zone = aop::zone::file::parse(std::path::Path::new("zone.toml"), &fixed).unwrap();
    assert_eq!(zone.agent_count(), 2500);
    assert_eq!(
        zone.agent_names().iter().next().map(|n| n.as_str()),
        Some("agent-0.big")
    );
}

// ---------------------------------------------------------------------------------------------
// Endpoint health settings (docs/protocol.md §9.1)

#[test]
fn health_settings_are_read_and_default_when_absent() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
health = { interval = "30s", down_after = 5 }

[[agent]]
name = "analyst"
health = { enabled = false }
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[agent]]
name = "auditor"
endpoints = [{ url = "http://127.0.0.1:9102/mcp" }]
"#;
    let zone = load(text);
    let health = zone.header().health;
    assert_eq!(health.interval, std::time::Duration::from_secs(30));
    assert_eq!(health.timeout, std::time::Duration::from_secs(2));
    assert_eq!((health.down_after, health.up_after), (5, 2));
    assert!(!zone.agent("analyst.finance.acme").unwrap().health_checks);
    assert!(zone.agent("auditor.finance.acme").unwrap().health_checks);
}

#[test]
fn bad_health_settings_are_errors_naming_the_key_and_limit() {
    let text = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
health = { interval = "10ms", down_after = 0, jitter = 1 }

[[agent]]
name = "analyst"
health = { enabled = "no" }
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;
    assert_eq!(
        errors(text),
        [
            "5:23: `interval` is 10ms: it must be between 100ms and 86400s",
            "5:44: down_after is 0, outside 1..=100",
            "5:47: unknown key `jitter` in `health` (allowed: interval, timeout, down_after, up_after)",
            "9:22: `enabled` must be true or false, found string",
        ]
    );
    let longer = r#"[zone]
origin = "finance.acme"
serial = 1
servers = [{ grpc = "http://127.0.0.1:7102" }]
health = { interval = "1s", timeout = "2s" }
"#;
    assert_eq!(
        error(longer),
        "5:39: `timeout` (2s) must not be longer than `interval` (1s): a probe ends before the next one starts"
    );
}
