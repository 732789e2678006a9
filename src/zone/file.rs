//! Zone files (`zones/*.toml`, docs/protocol.md §2): TOML in, a checked [`ZoneSnapshot`] out,
//! or every error found as `FILE:LINE:COL: message`.
//!
//! serde stops at the first error, and operators fixing a file want them all, so the file is
//! parsed into toml's spanned document tree ([`DeTable`]) and walked here key by key: each
//! field is checked with the rules of [`crate::record`], each error is pinned to the span of
//! the value (or key) at fault, and walking goes on. Structural rules (duplicates, occlusion,
//! alias loops) come from [`ZoneSnapshot::build`] and are pinned to the record they name.
//!
//! A large file is first read in pieces ([`read_in_pieces`]): toml's spanned tree of a whole
//! 280 MB file (a million agents) takes about 6 GB and most of the load time, so a file of
//! [`PIECES_FROM`] bytes or more is cut at `[[agent]]` headers into pieces of about
//! [`PIECE_BYTES`], each parsed, read and dropped on its own, several at once. The pieces path
//! only ever accepts: at the first thing it does not like (any error, a layout the cut could
//! change the meaning of), the file is read whole as above, which finds and reports every
//! error. So both paths accept the same files and build the same zone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::name::{Name, NameError};
use crate::record::{
    self, Agent, Alias, Delegation, Endpoint, HealthSettings, RecordError, ServerAddress,
    ZoneHeader,
};
use crate::zone::spanned::{Span, SpannedReader, to_json};
use crate::zone::{ItemRef, ZoneRecords, ZoneSnapshot};

pub use crate::zone::spanned::{Diagnostic, MAX_ERRORS_PER_FILE, line_column};

/// Why a zone file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneFileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", Invalid { path, diagnostics, omitted: *omitted })]
    Invalid {
        path: PathBuf,
        /// Sorted by position, at most [`MAX_ERRORS_PER_FILE`].
        diagnostics: Vec<Diagnostic>,
        /// Errors found beyond the limit.
        omitted: usize,
    },
}

struct Invalid<'a> {
    path: &'a Path,
    diagnostics: &'a [Diagnostic],
    omitted: usize,
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, d) in self.diagnostics.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message
            )?;
        }
        if self.omitted > 0 {
            write!(
                f,
                "\n{}: {} more errors not shown (limit {MAX_ERRORS_PER_FILE} per file)",
                self.path.display(),
                self.omitted
            )?;
        }
        Ok(())
    }
}

impl ZoneFileError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ZoneFileError::Invalid { diagnostics, .. } => diagnostics,
            ZoneFileError::Read { .. } => &[],
        }
    }
}

/// Reads and checks a zone file.
pub fn load(path: &Path) -> Result<ZoneSnapshot, ZoneFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ZoneFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Zone files at least this large are read in pieces first ([`read_in_pieces`]).
pub const PIECES_FROM: usize = 8 << 20;
/// About how much text each piece of a large zone file holds.
pub const PIECE_BYTES: usize = 2 << 20;

/// Checks zone file text; `path` is used in messages only.
pub fn parse(path: &Path, text: &str) -> Result<ZoneSnapshot, ZoneFileError> {
    if text.len() >= PIECES_FROM
        && let Some(snapshot) = read_in_pieces(text, PIECE_BYTES)
    {
        return Ok(snapshot);
    }
    parse_whole(path, text)
}

/// Checks zone file text read as one TOML document: every error, with its place.
fn parse_whole(path: &Path, text: &str) -> Result<ZoneSnapshot, ZoneFileError> {
    let mut reader = Reader::new(text);
    let snapshot = reader.read_zone();
    if let (false, Some(snapshot)) = (reader.has_errors(), snapshot) {
        return Ok(snapshot);
    }
    Err(reader.into_error(path))
}

/// Walks the spanned TOML tree of a zone file; the generic walk is [`SpannedReader`]'s.
struct Reader<'i> {
    toml: SpannedReader<'i>,
}

impl<'i> std::ops::Deref for Reader<'i> {
    type Target = SpannedReader<'i>;
    fn deref(&self) -> &SpannedReader<'i> {
        &self.toml
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.toml
    }
}

/// Spans of the records, to pin structural errors on.
#[derive(Default)]
struct ItemSpans {
    agents: Vec<Span>,
    aliases: Vec<Span>,
    delegations: Vec<Span>,
}

impl<'i> Reader<'i> {
    fn new(text: &'i str) -> Reader<'i> {
        Reader {
            toml: SpannedReader::new(text),
        }
    }

    fn into_error(self, path: &Path) -> ZoneFileError {
        let (diagnostics, omitted) = self.toml.into_diagnostics();
        ZoneFileError::Invalid {
            path: path.to_path_buf(),
            diagnostics,
            omitted,
        }
    }

    fn read_zone(&mut self) -> Option<ZoneSnapshot> {
        let root = match DeTable::parse(self.text()) {
            Ok(root) => root,
            Err(error) => {
                let span = error.span().unwrap_or(0..0);
                self.error(&span, format!("TOML syntax: {}", error.message().trim()));
                return None;
            }
        };
        let root = root.get_ref();
        self.reject_unknown_keys(root, "the file", &["zone", "agent", "alias", "delegation"]);

        let (origin, header) = match root.get("zone") {
            Some(value) => match self.table(value, "[zone]") {
                Some(table) => self.read_header(table, &value.span()),
                None => (None, None),
            },
            None => {
                self.error(
                    &(0..0),
                    "missing [zone] table (origin, serial, servers, ...)",
                );
                (None, None)
            }
        };
        // Names are relative to the origin; without a valid one, check labels against the
        // root so their errors are still reported.
        let known_origin = origin.clone();
        let origin = origin.unwrap_or_else(Name::root);

        let mut records = ZoneRecords::default();
        let mut spans = ItemSpans::default();
        for (agent, name_span) in self.read_agents(root, &origin) {
            records.agents.push(Arc::new(agent));
            spans.agents.push(name_span);
        }
        for (table, span) in self.array_of_tables(root, "alias") {
            if let Some((alias, name_span)) = self.read_alias(table, &span, &origin) {
                records.aliases.push(Arc::new(alias));
                spans.aliases.push(name_span);
            }
        }
        for (table, span) in self.array_of_tables(root, "delegation") {
            if let Some((delegation, zone_span)) = self.read_delegation(table, &span, &origin) {
                records.delegations.push(Arc::new(delegation));
                spans.delegations.push(zone_span);
            }
        }

        // Structural rules run on the records that passed their field checks, even when
        // other errors were found, so one pass reports everything.
        let known_origin = known_origin?;
        let header = header.unwrap_or_else(|| placeholder_header(known_origin));
        match ZoneSnapshot::build(header, records) {
            Ok(_) if self.has_errors() => None,
            Ok(snapshot) => Some(snapshot),
            Err(structure_errors) => {
                for error in structure_errors {
                    let span = match error.item {
                        ItemRef::Agent(i) => spans.agents[i].clone(),
                        ItemRef::Alias(i) => spans.aliases[i].clone(),
                        ItemRef::Delegation(i) => spans.delegations[i].clone(),
                    };
                    self.error(&span, error.error.to_string());
                }
                None
            }
        }
    }

    /// The origin (when valid) and the whole header (when every field is).
    fn read_header(
        &mut self,
        table: &DeTable<'_>,
        span: &Span,
    ) -> (Option<Name>, Option<ZoneHeader>) {
        self.reject_unknown_keys(
            table,
            "[zone]",
            &[
                "origin",
                "serial",
                "ttl",
                "negative_ttl",
                "refresh",
                "retry",
                "expire",
                "contact",
                "servers",
                "health",
            ],
        );
        let origin = self
            .required_str(table, "origin", "[zone]", span)
            .and_then(|(text, span)| self.name_result(Name::parse(text), &span));
        let serial = self
            .required_int(table, "serial", "[zone]", span)
            .and_then(|(value, span)| self.range(value, &span, "serial", 0, i64::from(u32::MAX)))
            .map(|v| v as u32);
        let ttl = self.ttl(table, "ttl", ZoneHeader::DEFAULT_TTL, 0);
        let negative_ttl = self.ttl(table, "negative_ttl", ZoneHeader::DEFAULT_NEGATIVE_TTL, 0);
        let refresh = self.ttl(table, "refresh", ZoneHeader::DEFAULT_REFRESH, 1);
        let retry = self.ttl(table, "retry", ZoneHeader::DEFAULT_RETRY, 1);
        let expire = self.ttl(table, "expire", ZoneHeader::DEFAULT_EXPIRE, 1);
        let contact = match self.optional_str(table, "contact") {
            Some((text, span)) => self
                .record_result(record::check_contact(text), &span)
                .map(|()| text.to_string()),
            None => Some(String::new()),
        };
        let servers = self.servers(table, "[zone]", span);
        let health = self.health_settings(table);
        let header = (|| {
            Some(ZoneHeader {
                origin: origin.clone()?,
                serial: serial?,
                ttl: ttl?,
                negative_ttl: negative_ttl?,
                refresh: refresh?,
                retry: retry?,
                expire: expire?,
                contact: contact?,
                servers: servers?,
                health: health?,
            })
        })();
        (origin, header)
    }

    /// Every `[[agent]]`, in file order. A large zone is split between two threads (each
    /// with its own error list, merged here), which takes a third off loading 100,000
    /// agents; small zones stay on this thread.
    fn read_agents(&mut self, root: &DeTable<'_>, origin: &Name) -> Vec<(Agent, Span)> {
        const PARALLEL_FROM: usize = 2048;
        let tables = self.array_of_tables(root, "agent");
        if tables.len() < PARALLEL_FROM {
            return tables
                .into_iter()
                .filter_map(|(table, span)| self.read_agent(table, &span, origin))
                .collect();
        }
        let (first, second) = tables.split_at(tables.len() / 2);
        let text = self.text();
        let read_half = |half: &[(&DeTable<'_>, Span)]| {
            let mut reader = Reader::new(text);
            let agents: Vec<(Agent, Span)> = half
                .iter()
                .filter_map(|(table, span)| reader.read_agent(table, span, origin))
                .collect();
            (agents, reader.toml)
        };
        let ((mut agents, first_errors), (second_agents, second_errors)) =
            std::thread::scope(|scope| {
                let other = scope.spawn(|| read_half(second));
                let mine = read_half(first);
                let theirs = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (mine, theirs)
            });
        agents.extend(second_agents);
        self.absorb(first_errors);
        self.absorb(second_errors);
        agents
    }

    fn read_agent(
        &mut self,
        table: &DeTable<'_>,
        span: &Span,
        origin: &Name,
    ) -> Option<(Agent, Span)> {
        const KEYS: &[&str] = &[
            "name",
            "description",
            "tags",
            "capabilities",
            "version",
            "ttl",
            "timeout_ms",
            "max_retries",
            "endpoints",
            "input_schema",
            "output_schema",
            "metadata",
            "health",
        ];
        self.reject_unknown_keys(table, "[[agent]]", KEYS);
        let (name, name_span) = match self.required_str(table, "name", "[[agent]]", span) {
            Some((text, name_span)) => {
                let name = Name::parse_relative(text, origin)
                    .and_then(|name| name.check_agent_len().map(|()| name));
                (self.name_result(name, &name_span), name_span)
            }
            None => (None, span.clone()),
        };
        let description = match self.optional_str(table, "description") {
            Some((text, span)) => self
                .record_result(record::check_description(text), &span)
                .map(|()| text.to_string()),
            None => Some(String::new()),
        };
        let tags = self.labels(table, "tags");
        let capabilities = self.labels(table, "capabilities");
        let version = match self.optional_str(table, "version") {
            Some((text, span)) => self
                .record_result(record::check_version(text), &span)
                .map(|()| record::intern::intern(text)),
            None => Some(record::intern::empty()),
        };
        let ttl = match table.get("ttl") {
            Some(_) => self.ttl(table, "ttl", 0, 0).map(Some),
            None => Some(None),
        };
        let timeout_ms = self.optional_int_in(
            table,
            "timeout_ms",
            record::DEFAULT_TIMEOUT_MS,
            1,
            record::limits::TIMEOUT_MS_MAX,
        );
        let max_retries = self.optional_int_in(
            table,
            "max_retries",
            record::DEFAULT_MAX_RETRIES,
            0,
            record::limits::MAX_RETRIES_MAX,
        );
        let default_tool = name.as_ref().map_or("agent", |n| Agent::default_tool(n));
        let endpoints = self.endpoints(table, span, default_tool);
        let input_schema = match table.get("input_schema") {
            Some(value) => self.json_doc(value, |v| record::check_schema("input_schema", v)),
            None => Some(record::default_input_schema()),
        };
        let output_schema = match table.get("output_schema") {
            Some(value) => self
                .json_doc(value, |v| record::check_schema("output_schema", v))
                .map(Some),
            None => Some(None),
        };
        let metadata = match table.get("metadata") {
            Some(value) => self.json_doc(value, record::check_metadata).map(Some),
            None => Some(None),
        };
        let health_checks = self.agent_health(table);
        let agent = Agent {
            name: name?,
            description: description?,
            tags: tags?,
            capabilities: capabilities?,
            version: version?,
            ttl: ttl?,
            timeout_ms: timeout_ms?,
            max_retries: max_retries?,
            endpoints: endpoints?,
            input_schema: input_schema?,
            output_schema: output_schema?,
            metadata: metadata?,
            health_checks: health_checks?,
        };
        Some((agent, name_span))
    }

    fn read_alias(
        &mut self,
        table: &DeTable<'_>,
        span: &Span,
        origin: &Name,
    ) -> Option<(Alias, Span)> {
        self.reject_unknown_keys(table, "[[alias]]", &["name", "target", "ttl"]);
        let (name, name_span) = match self.required_str(table, "name", "[[alias]]", span) {
            Some((text, name_span)) => {
                let name = Name::parse_relative(text, origin)
                    .and_then(|name| name.check_agent_len().map(|()| name));
                (self.name_result(name, &name_span), name_span)
            }
            None => (None, span.clone()),
        };
        let target = self
            .required_str(table, "target", "[[alias]]", span)
            .and_then(|(text, span)| self.name_result(Name::parse_relative(text, origin), &span));
        let ttl = match table.get("ttl") {
            Some(_) => self.ttl(table, "ttl", 0, 0).map(Some),
            None => Some(None),
        };
        Some((
            Alias {
                name: name?,
                target: target?,
                ttl: ttl?,
            },
            name_span,
        ))
    }

    fn read_delegation(
        &mut self,
        table: &DeTable<'_>,
        span: &Span,
        origin: &Name,
    ) -> Option<(Delegation, Span)> {
        self.reject_unknown_keys(table, "[[delegation]]", &["zone", "servers", "ttl"]);
        let (zone, zone_span) = match self.required_str(table, "zone", "[[delegation]]", span) {
            Some((text, zone_span)) => (
                self.name_result(Name::parse_relative(text, origin), &zone_span),
                zone_span,
            ),
            None => (None, span.clone()),
        };
        let servers = self.servers(table, "[[delegation]]", span);
        let ttl = match table.get("ttl") {
            Some(_) => self.ttl(table, "ttl", 0, 0).map(Some),
            None => Some(None),
        };
        Some((
            Delegation {
                zone: zone?,
                servers: servers?,
                ttl: ttl?,
            },
            zone_span,
        ))
    }

    fn servers(
        &mut self,
        table: &DeTable<'_>,
        context: &str,
        span: &Span,
    ) -> Option<Vec<ServerAddress>> {
        let Some(value) = table.get("servers") else {
            self.error(span, format!("{context} is missing required key `servers`"));
            return None;
        };
        let items = self.array(value, "servers")?;
        let mut servers = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(entry) = self.table(item, "a servers entry") else {
                ok = false;
                continue;
            };
            self.reject_unknown_keys(entry, "a servers entry", &["grpc", "dns"]);
            let grpc = self.required_str(entry, "grpc", "a servers entry", &item.span());
            let dns = self.optional_str(entry, "dns");
            let Some((grpc, grpc_span)) = grpc else {
                ok = false;
                continue;
            };
            let grpc_ok = self
                .record_result(record::check_http_url("server grpc", grpc), &grpc_span)
                .is_some();
            let dns_ok = match &dns {
                Some((text, span)) => self
                    .record_result(record::check_socket_address("server dns", text), span)
                    .is_some(),
                None => true,
            };
            if !(grpc_ok && dns_ok) {
                ok = false;
                continue;
            }
            match ServerAddress::new(grpc, dns.as_ref().map(|(text, _)| *text)) {
                Ok(server) => servers.push(server),
                Err(error) => {
                    self.error(&grpc_span, error.to_string());
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        self.record_result(record::check_servers(&servers), &value.span())?;
        Some(servers)
    }

    fn endpoints(
        &mut self,
        table: &DeTable<'_>,
        span: &Span,
        default_tool: &str,
    ) -> Option<Vec<Endpoint>> {
        let Some(value) = table.get("endpoints") else {
            self.error(span, "[[agent]] is missing required key `endpoints`");
            return None;
        };
        let items = self.array(value, "endpoints")?;
        let mut endpoints = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(entry) = self.table(item, "an endpoints entry") else {
                ok = false;
                continue;
            };
            self.reject_unknown_keys(
                entry,
                "an endpoints entry",
                &["url", "tool", "priority", "weight"],
            );
            let url = self.required_str(entry, "url", "an endpoints entry", &item.span());
            let tool = self.optional_str(entry, "tool");
            let priority = self.optional_int(entry, "priority");
            let weight = self.optional_int(entry, "weight");
            let (Some((url, url_span)), Some(priority), Some(weight)) = (url, priority, weight)
            else {
                ok = false;
                continue;
            };
            let (tool, tool_span) = tool.unwrap_or((default_tool, url_span.clone()));
            let (priority, priority_span) =
                priority.unwrap_or((i64::from(record::DEFAULT_PRIORITY), url_span.clone()));
            let (weight, weight_span) =
                weight.unwrap_or((i64::from(record::DEFAULT_WEIGHT), url_span.clone()));
            // Each field on its own, so one pass reports every bad field.
            let checks = [
                (record::check_http_url("endpoint url", url), url_span),
                (record::check_tool_name(tool), tool_span),
                (
                    record::check_range("priority", priority, 1, 65535),
                    priority_span,
                ),
                (record::check_range("weight", weight, 0, 65535), weight_span),
            ];
            let mut fields_ok = true;
            for (result, span) in checks {
                fields_ok &= self.record_result(result, &span).is_some();
            }
            if !fields_ok {
                ok = false;
                continue;
            }
            // Every field passed the same checks `Endpoint::new` applies; parsing the URL
            // a second time would cost a tenth of a large zone's load.
            endpoints.push(Endpoint {
                url: url.to_string(),
                tool: tool.to_string(),
                priority: priority as u16,
                weight: weight as u16,
                health: record::EndpointHealth::default(),
            });
        }
        if !ok {
            return None;
        }
        let at = match &record::check_endpoints(&endpoints) {
            Err(RecordError::Duplicate { value, .. }) => items
                .iter()
                .filter(|item| {
                    item.get_ref().get("url").and_then(|u| u.get_ref().as_str())
                        == Some(value.as_str())
                })
                .nth(1)
                .map(|item| item.span()),
            _ => None,
        }
        .unwrap_or_else(|| value.span());
        self.record_result(record::check_endpoints(&endpoints), &at)?;
        Some(endpoints)
    }

    fn labels(&mut self, table: &DeTable<'_>, key: &'static str) -> Option<Box<[Arc<str>]>> {
        let Some(value) = table.get(key) else {
            return Some(Box::default());
        };
        let items = self.array(value, key)?;
        let mut labels = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref().as_str() {
                Some(text) => labels.push(text),
                None => {
                    self.error(
                        &item.span(),
                        format!(
                            "`{key}` entries must be strings, found {}",
                            item.get_ref().type_str()
                        ),
                    );
                    return None;
                }
            }
        }
        match record::check_labels(key, &labels) {
            Ok(()) => Some(record::intern::intern_all(&labels)),
            Err(error) => {
                // Point at the offending entry where there is one.
                let at = match &error {
                    RecordError::TooLong { .. } => items
                        .iter()
                        .find(|i| {
                            i.get_ref()
                                .as_str()
                                .is_some_and(|t| t.len() > record::limits::TAG_MAX_BYTES)
                        })
                        .map(|i| i.span()),
                    RecordError::Empty { .. } => items
                        .iter()
                        .find(|i| i.get_ref().as_str().is_some_and(|t| t.trim().is_empty()))
                        .map(|i| i.span()),
                    RecordError::Duplicate { value: dup, .. } => items
                        .iter()
                        .filter(|i| i.get_ref().as_str() == Some(dup.as_str()))
                        .nth(1)
                        .map(|i| i.span()),
                    _ => None,
                }
                .unwrap_or_else(|| value.span());
                self.error(&at, error.to_string());
                None
            }
        }
    }

    fn json_doc(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        check: impl FnOnce(serde_json::Value) -> Result<record::JsonDoc, RecordError>,
    ) -> Option<record::JsonDoc> {
        let json = match to_json(value) {
            Ok(json) => json,
            Err((span, message)) => {
                self.error(&span, message);
                return None;
            }
        };
        self.record_result(check(json), &value.span())
    }

    /// `[zone] health = { interval, timeout, down_after, up_after }` (docs/protocol.md §9.1),
    /// each key optional.
    fn health_settings(&mut self, table: &DeTable<'_>) -> Option<HealthSettings> {
        const DEFAULT: HealthSettings = HealthSettings::DEFAULT;
        let Some(value) = table.get("health") else {
            return Some(DEFAULT);
        };
        let health = self.table(value, "`health`")?;
        self.reject_unknown_keys(
            health,
            "`health`",
            &["interval", "timeout", "down_after", "up_after"],
        );
        let interval = self.duration(
            health,
            "interval",
            DEFAULT.interval,
            HealthSettings::INTERVAL_MIN,
            HealthSettings::INTERVAL_MAX,
        );
        let timeout = self.duration(
            health,
            "timeout",
            DEFAULT.timeout,
            Duration::from_millis(1),
            HealthSettings::INTERVAL_MAX,
        );
        let down_after = self.optional_int_in(
            health,
            "down_after",
            DEFAULT.down_after,
            1,
            HealthSettings::THRESHOLD_MAX,
        );
        let up_after = self.optional_int_in(
            health,
            "up_after",
            DEFAULT.up_after,
            1,
            HealthSettings::THRESHOLD_MAX,
        );
        let (interval, timeout) = (interval?, timeout?);
        if timeout > interval {
            let at = health
                .get("timeout")
                .map_or_else(|| value.span(), |v| v.span());
            self.error(
                &at,
                format!(
                    "`timeout` ({timeout:?}) must not be longer than `interval` ({interval:?}): a probe ends before the next one starts"
                ),
            );
            return None;
        }
        Some(HealthSettings {
            interval,
            timeout,
            down_after: down_after?,
            up_after: up_after?,
        })
    }

    /// An agent's `health = { enabled = false }`: whether its endpoints are probed.
    fn agent_health(&mut self, table: &DeTable<'_>) -> Option<bool> {
        let Some(value) = table.get("health") else {
            return Some(true);
        };
        let health = self.table(value, "`health`")?;
        self.reject_unknown_keys(health, "an agent's `health`", &["enabled"]);
        let Some(enabled) = health.get("enabled") else {
            return Some(true);
        };
        match enabled.get_ref().as_bool() {
            Some(enabled) => Some(enabled),
            None => {
                self.error(
                    &enabled.span(),
                    format!(
                        "`enabled` must be true or false, found {}",
                        enabled.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    /// A duration written as a string (`"500ms"`, `"10s"`, `"2m"`) within `min..=max`.
    fn duration(
        &mut self,
        table: &DeTable<'_>,
        key: &'static str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let (text, span) = match table.get(key) {
            None => return Some(default),
            Some(_) => self.optional_str(table, key)?,
        };
        match crate::clock::parse_duration(text) {
            Ok(duration) if (min..=max).contains(&duration) => Some(duration),
            Ok(duration) => {
                self.error(
                    &span,
                    format!("`{key}` is {duration:?}: it must be between {min:?} and {max:?}"),
                );
                None
            }
            Err(reason) => {
                self.error(&span, format!("`{key}`: {reason}"));
                None
            }
        }
    }

    fn ttl(
        &mut self,
        table: &DeTable<'_>,
        key: &'static str,
        default: u32,
        min: u32,
    ) -> Option<u32> {
        self.optional_int_in(table, key, default, min, record::limits::TTL_MAX)
    }

    fn name_result(&mut self, result: Result<Name, NameError>, span: &Span) -> Option<Name> {
        result
            .map_err(|error| self.error(span, error.to_string()))
            .ok()
    }

    fn record_result<T>(&mut self, result: Result<T, RecordError>, span: &Span) -> Option<T> {
        result
            .map_err(|error| self.error(span, error.to_string()))
            .ok()
    }
}

/// Stands in for a header with errors (already reported) so the records can still be checked
/// against each other.
fn placeholder_header(origin: Name) -> ZoneHeader {
    ZoneHeader {
        origin,
        serial: 0,
        ttl: ZoneHeader::DEFAULT_TTL,
        negative_ttl: ZoneHeader::DEFAULT_NEGATIVE_TTL,
        refresh: ZoneHeader::DEFAULT_REFRESH,
        retry: ZoneHeader::DEFAULT_RETRY,
        expire: ZoneHeader::DEFAULT_EXPIRE,
        contact: String::new(),
        servers: Vec::new(),
        health: HealthSettings::DEFAULT,
    }
}

/// What one piece of a large zone file held, or `None` when it could not be read cleanly.
#[derive(Default)]
struct Piece {
    agents: Vec<Arc<Agent>>,
    aliases: Vec<Arc<Alias>>,
    delegations: Vec<Arc<Delegation>>,
}

/// A large, valid zone file read piece by piece; `None` sends the caller to the whole-file
/// reader (which reports the errors, or reads a layout the pieces path leaves alone).
///
/// The file is cut only at lines that are exactly `[[agent]]` (or `[[agent]]` and a comment),
/// and only when it holds no multi-line string, the one place such a line could be text
/// rather than a header. A cut there starts a new document whose tables mean what they meant
/// in the whole file: `[[agent]]` appends to the array of agents, sub-tables such as
/// `[agent.metadata]` belong to the piece's last agent as they belonged to the file's. What
/// one document accepts and the whole file would refuse is ruled out by hand: `[zone]` must be
/// in the first piece (everything before the first cut) and nowhere else, `agent` may not
/// appear there, and `alias` and `delegation` may each appear in one piece only (two pieces
/// could define them twice, or as an array in one and an array of tables in another).
pub(crate) fn read_in_pieces(text: &str, piece_bytes: usize) -> Option<ZoneSnapshot> {
    if text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let pieces = cut_at_agents(text, piece_bytes);
    let (first, rest) = pieces.split_first()?;

    let preamble = DeTable::parse(first).ok()?;
    let preamble = preamble.get_ref();
    if preamble.contains_key("agent") {
        return None;
    }
    let mut reader = Reader::new(first);
    reader.reject_unknown_keys(preamble, "the file", &["zone", "alias", "delegation"]);
    let zone = preamble.get("zone")?;
    let table = reader.table(zone, "[zone]")?;
    let (origin, header) = reader.read_header(table, &zone.span());
    let (origin, header) = (origin?, header?);
    let mut records = ZoneRecords::default();
    let mut alias_pieces = usize::from(preamble.contains_key("alias"));
    let mut delegation_pieces = usize::from(preamble.contains_key("delegation"));
    let head = reader.read_piece(preamble, &origin);
    if reader.has_errors() {
        return None;
    }
    let mut read = vec![head];

    // Several pieces at once, each parsed, read and dropped by one thread; results kept in
    // file order.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(rest.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let read_some = || {
        let mut done: Vec<(usize, Piece, bool, bool)> = Vec::new();
        loop {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return done;
            }
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(piece) = rest.get(index) else {
                return done;
            };
            match read_one_piece(piece, &origin) {
                Some(outcome) => done.push((index, outcome.0, outcome.1, outcome.2)),
                None => {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    return done;
                }
            }
        }
    };
    let mut results: Vec<(usize, Piece, bool, bool)> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..workers).map(|_| scope.spawn(read_some)).collect();
        let mut all = read_some();
        for other in others {
            all.extend(
                other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        all
    });
    if failed.into_inner() || results.len() != rest.len() {
        return None;
    }
    results.sort_unstable_by_key(|(index, ..)| *index);
    for (_, piece, has_alias, has_delegation) in results {
        alias_pieces += usize::from(has_alias);
        delegation_pieces += usize::from(has_delegation);
        read.push(piece);
    }
    if alias_pieces > 1 || delegation_pieces > 1 {
        return None;
    }
    for piece in read {
        records.agents.extend(piece.agents);
        records.aliases.extend(piece.aliases);
        records.delegations.extend(piece.delegations);
    }
    ZoneSnapshot::build(header, records).ok()
}

/// One piece after the first: its records, and whether it held aliases and delegations.
fn read_one_piece(text: &str, origin: &Name) -> Option<(Piece, bool, bool)> {
    let root = DeTable::parse(text).ok()?;
    let root = root.get_ref();
    let mut reader = Reader::new(text);
    reader.reject_unknown_keys(root, "the file", &["agent", "alias", "delegation"]);
    let piece = reader.read_piece(root, origin);
    if reader.has_errors() {
        return None;
    }
    Some((
        piece,
        root.contains_key("alias"),
        root.contains_key("delegation"),
    ))
}

impl Reader<'_> {
    /// The agents, aliases and delegations of one piece (errors go to the reader).
    fn read_piece(&mut self, root: &DeTable<'_>, origin: &Name) -> Piece {
        let mut piece = Piece::default();
        for (table, span) in self.array_of_tables(root, "agent") {
            if let Some((agent, _)) = self.read_agent(table, &span, origin) {
                piece.agents.push(Arc::new(agent));
            }
        }
        for (table, span) in self.array_of_tables(root, "alias") {
            if let Some((alias, _)) = self.read_alias(table, &span, origin) {
                piece.aliases.push(Arc::new(alias));
            }
        }
        for (table, span) in self.array_of_tables(root, "delegation") {
            if let Some((delegation, _)) = self.read_delegation(table, &span, origin) {
                piece.delegations.push(Arc::new(delegation));
            }
        }
        piece
    }
}

/// The text cut at `[[agent]]` header lines: first everything before the first one, then
/// pieces of at least `piece_bytes` (the last one may be shorter), each starting at a header.
fn cut_at_agents(text: &str, piece_bytes: usize) -> Vec<&str> {
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("[[agent]]") {
        let at = from + found;
        from = at + "[[agent]]".len();
        let line_start = at == 0 || text.as_bytes()[at - 1] == b'\n';
        let rest_of_line = text[from..].split('\n').next().unwrap_or("").trim();
        if !line_start || !(rest_of_line.is_empty() || rest_of_line.starts_with('#')) {
            continue;
        }
        // The first header always cuts (it ends the preamble); later ones once the current
        // piece is long enough.
        let piece_start = cuts.last().copied().unwrap_or(0);
        if cuts.is_empty() || at - piece_start >= piece_bytes {
            cuts.push(at);
            from = (at + piece_bytes).min(text.len()).max(from);
            // Move to a char boundary before searching from the middle of the text.
            while !text.is_char_boundary(from) {
                from += 1;
            }
        }
    }
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        pieces.push(&text[start..cut]);
        start = cut;
    }
    pieces.push(&text[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(count: usize, label: &str) -> String {
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!(
                "[[agent]]{}\nname = \"{label}{i}\"\ndescription = \"Agent {i}.\"\ntags = [\"t{}\"]\n\
                 endpoints = [{{ url = \"http://127.0.0.1:9/mcp\", weight = {} }}]\n",
                if i % 3 == 0 { "   # a comment" } else { "" },
                i % 5,
                i % 7,
            ));
            if i % 4 == 0 {
                text.push_str(&format!("[agent.metadata]\nowner = \"team-{i}\"\n\n"));
            }
            if i % 6 == 0 {
                text.push_str("input_schema = { type = \"object\" }\n");
            }
        }
        text
    }

    const HEADER: &str = "[zone]\norigin = \"big.example\"\nserial = 3\n\
        servers = [{ grpc = \"http://127.0.0.1:7100\" }]\n\n";
    const TAIL: &str = "[[alias]]\nname = \"front\"\ntarget = \"a1\"\n\n\
        [[alias]]\nname = \"back\"\ntarget = \"a2\"\n\n\
        [[delegation]]\nzone = \"child\"\nservers = [{ grpc = \"http://127.0.0.1:7101\" }]\n";

    fn whole(text: &str) -> Result<ZoneSnapshot, ZoneFileError> {
        parse_whole(Path::new("big.toml"), text)
    }

    fn same(a: &ZoneSnapshot, b: &ZoneSnapshot) -> bool {
        a.header() == b.header() && format!("{:?}", a.records()) == format!("{:?}", b.records())
    }

    #[test]
    fn the_cuts_fall_on_agent_headers_and_keep_every_byte() {
        let text = format!("{HEADER}{}{TAIL}", agents(200, "a"));
        let pieces = cut_at_agents(&text, 500);
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        assert_eq!(pieces.concat(), text);
        assert!(!pieces[0].contains("[[agent]]"));
        for piece in &pieces[1..] {
            assert!(piece.starts_with("[[agent]]"), "{piece:.40}");
        }
        for piece in &pieces[1..pieces.len() - 1] {
            assert!(piece.len() >= 500);
        }
    }

    #[test]
    fn a_file_read_in_pieces_is_the_file_read_whole() {
        for piece_bytes in [1, 300, 5_000, 1 << 20] {
            let text = format!("{HEADER}{}{TAIL}", agents(300, "a"));
            let pieces = read_in_pieces(&text, piece_bytes).expect("read in pieces");
            let whole = whole(&text).expect("valid");
            assert_eq!(pieces.agent_count(), 300);
            assert!(same(&pieces, &whole), "piece size {piece_bytes}");
        }
        // Aliases and delegations before the first agent, and CRLF line ends.
        let text = format!("{HEADER}{TAIL}{}", agents(50, "a")).replace('\n', "\r\n");
        let pieces = read_in_pieces(&text, 200).expect("read in pieces");
        assert!(same(&pieces, &whole(&text).expect("valid")));
    }

    /// Whatever the pieces path refuses goes to the whole-file reader; it must refuse every
    /// file the whole-file reader refuses, and the layouts a cut could change the meaning of.
    #[test]
    fn the_pieces_path_leaves_errors_and_unsafe_layouts_to_the_whole_file_reader() {
        let many = agents(40, "a");
        let cases = [
            // Errors the whole-file reader reports.
            format!("{HEADER}{many}[[agent]]\nname = \"Bad_Label\"\nendpoints = []\n"),
            format!("{HEADER}{many}[[agent]]\nname = \"x\"\nunknown = 1\n"),
            format!("{HEADER}{many}[[agent]]\nname = \"a3\"\n"),
            format!("{HEADER}{many}[[agent]\n"),
            format!("{HEADER}{many}{}", agents(1, "a")),
            format!("{HEADER}{many}[[alias]]\nname = \"a1\"\ntarget = \"a2\"\n"),
            // Layouts one piece would accept and the whole file refuses.
            format!("{HEADER}{many}[zone]\norigin = \"other\"\n"),
            format!("{HEADER}alias = []\n{many}[[alias]]\nname = \"x\"\ntarget = \"a1\"\n"),
            format!("{HEADER}agent = []\n{many}"),
        ];
        for text in &cases {
            assert!(whole(text).is_err(), "the whole file is refused: {text:.0}");
            assert!(
                read_in_pieces(text, 100).is_none(),
                "{}",
                &text[text.len() - 60..]
            );
        }
        // Valid, but left to the whole-file reader: a multi-line string (a header line could
        // be text inside it), aliases in two places.
        let valid = [
            format!(
                "{HEADER}{many}[[agent]]\nname = \"m\"\ndescription = '''\n[[agent]]\n'''\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
            ),
            format!(
                "{HEADER}[[alias]]\nname = \"x\"\ntarget = \"a1\"\n{many}[[alias]]\nname = \"y\"\ntarget = \"a2\"\n"
            ),
        ];
        for text in &valid {
            assert!(whole(text).is_ok(), "{:?}", whole(text).err());
            assert!(read_in_pieces(text, 100).is_none());
        }
    }
}
