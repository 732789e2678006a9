//! Reading TOML with positions: the walk over toml's spanned tree that zone files use (every
//! error collected with its byte offset, reported as `LINE:COL`, up to
//! [`MAX_ERRORS_PER_FILE`]), and serde with positions for the smaller files (node configs,
//! key files) that stop at their first error. One reader, so every file a user writes gets
//! the same `FILE:LINE:COL: message` errors.
//!
//! Why a hand walk for zone files: serde stops at the first error, and a zone file of a
//! hundred agents deserves every error in one pass.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::record;

/// At most this many errors are reported per file.
pub const MAX_ERRORS_PER_FILE: usize = 100;

/// Byte offsets in the file's text.
pub type Span = Range<usize>;

/// One error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

/// Walks a spanned TOML tree, collecting errors with their byte offsets.
pub struct SpannedReader<'i> {
    text: &'i str,
    errors: Vec<(usize, String)>,
}

impl<'i> SpannedReader<'i> {
    pub fn new(text: &'i str) -> SpannedReader<'i> {
        SpannedReader {
            text,
            errors: Vec::new(),
        }
    }

    pub fn text(&self) -> &'i str {
        self.text
    }

    pub fn error(&mut self, span: &Span, message: impl Into<String>) {
        self.errors.push((span.start, message.into()));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Takes over the errors another reader of the same text found (a part read in parallel).
    pub fn absorb(&mut self, other: SpannedReader<'_>) {
        self.errors.extend(other.errors);
    }

    /// Reports `result`'s error at `span`.
    pub fn report<T, E: std::fmt::Display>(
        &mut self,
        result: Result<T, E>,
        span: &Span,
    ) -> Option<T> {
        result
            .map_err(|error| self.error(span, error.to_string()))
            .ok()
    }

    /// The errors in file order, at most [`MAX_ERRORS_PER_FILE`], and how many more there were.
    pub fn into_diagnostics(mut self) -> (Vec<Diagnostic>, usize) {
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.dedup();
        let omitted = self.errors.len().saturating_sub(MAX_ERRORS_PER_FILE);
        self.errors.truncate(MAX_ERRORS_PER_FILE);
        let diagnostics = self
            .errors
            .iter()
            .map(|(offset, message)| {
                let (line, column) = line_column(self.text, *offset);
                Diagnostic {
                    line,
                    column,
                    message: message.clone(),
                }
            })
            .collect();
        (diagnostics, omitted)
    }

    /// `[[key]]` entries of the root table, each with its span.
    pub fn array_of_tables<'t, 'v>(
        &mut self,
        root: &'t DeTable<'v>,
        key: &str,
    ) -> Vec<(&'t DeTable<'v>, Span)> {
        let Some(value) = root.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.get_ref().as_array() else {
            self.error(
                &value.span(),
                format!(
                    "`{key}` must be an array of tables ([[{key}]]), found {}",
                    value.get_ref().type_str()
                ),
            );
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref().as_table() {
                Some(table) => tables.push((table, item.span())),
                None => self.error(
                    &item.span(),
                    format!(
                        "`{key}` entries must be tables, found {}",
                        item.get_ref().type_str()
                    ),
                ),
            }
        }
        tables
    }

    pub fn reject_unknown_keys(&mut self, table: &DeTable<'_>, context: &str, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                self.error(
                    &key.span(),
                    format!(
                        "unknown key `{}` in {context} (allowed: {})",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    pub fn table<'t, 'v>(
        &mut self,
        value: &'t Spanned<DeValue<'v>>,
        context: &str,
    ) -> Option<&'t DeTable<'v>> {
        match value.get_ref().as_table() {
            Some(table) => Some(table),
            None => {
                self.error(
                    &value.span(),
                    format!(
                        "{context} must be a table, found {}",
                        value.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    pub fn array<'t, 'v>(
        &mut self,
        value: &'t Spanned<DeValue<'v>>,
        key: &str,
    ) -> Option<&'t [Spanned<DeValue<'v>>]> {
        match value.get_ref().as_array() {
            Some(items) => Some(items),
            None => {
                self.error(
                    &value.span(),
                    format!(
                        "`{key}` must be an array, found {}",
                        value.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    pub fn required_str<'t>(
        &mut self,
        table: &'t DeTable<'_>,
        key: &str,
        context: &str,
        span: &Span,
    ) -> Option<(&'t str, Span)> {
        if table.get(key).is_none() {
            self.error(span, format!("{context} is missing required key `{key}`"));
            return None;
        }
        self.optional_str(table, key)
    }

    pub fn optional_str<'t>(
        &mut self,
        table: &'t DeTable<'_>,
        key: &str,
    ) -> Option<(&'t str, Span)> {
        let value = table.get(key)?;
        match value.get_ref().as_str() {
            Some(text) => Some((text, value.span())),
            None => {
                self.error(
                    &value.span(),
                    format!(
                        "`{key}` must be a string, found {}",
                        value.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    pub fn required_int(
        &mut self,
        table: &DeTable<'_>,
        key: &str,
        context: &str,
        span: &Span,
    ) -> Option<(i64, Span)> {
        if table.get(key).is_none() {
            self.error(span, format!("{context} is missing required key `{key}`"));
            return None;
        }
        self.optional_int(table, key).flatten()
    }

    /// `None`: the key is there but wrong (reported); `Some(None)`: absent.
    pub fn optional_int(&mut self, table: &DeTable<'_>, key: &str) -> Option<Option<(i64, Span)>> {
        let Some(value) = table.get(key) else {
            return Some(None);
        };
        let span = value.span();
        match value.get_ref().as_integer() {
            Some(integer) => match i64::from_str_radix(integer.as_str(), integer.radix()) {
                Ok(number) => Some(Some((number, span))),
                Err(_) => {
                    self.error(&span, format!("`{key}` is out of the 64-bit integer range"));
                    None
                }
            },
            None => {
                self.error(
                    &span,
                    format!(
                        "`{key}` must be an integer, found {}",
                        value.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    pub fn optional_int_in(
        &mut self,
        table: &DeTable<'_>,
        key: &'static str,
        default: u32,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        match self.optional_int(table, key)? {
            None => Some(default),
            Some((value, span)) => self
                .range(value, &span, key, i64::from(min), i64::from(max))
                .map(|v| v as u32),
        }
    }

    pub fn range(
        &mut self,
        value: i64,
        span: &Span,
        field: &'static str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        self.report(record::check_range(field, value, min, max), span)
            .map(|()| value)
    }
}

/// Deserializes a whole file with serde (node configs, key files); the first error with its
/// position. The message is serde's, trimmed.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Diagnostic> {
    toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        Diagnostic {
            line,
            column,
            message: error.message().trim().to_string(),
        }
    })
}

/// Converts a TOML value (a schema, metadata) to JSON; a value JSON cannot hold is an error
/// at its span.
pub fn to_json(value: &Spanned<DeValue<'_>>) -> Result<serde_json::Value, (Span, String)> {
    Ok(match value.get_ref() {
        DeValue::String(text) => serde_json::Value::String(text.to_string()),
        DeValue::Integer(integer) => {
            let number = i64::from_str_radix(integer.as_str(), integer.radix())
                .map_err(|_| (value.span(), "integer out of the 64-bit range".to_string()))?;
            serde_json::Value::from(number)
        }
        DeValue::Float(float) => {
            let number: f64 = float
                .as_str()
                .replace('_', "")
                .parse()
                .map_err(|_| (value.span(), format!("invalid float {}", float.as_str())))?;
            serde_json::Number::from_f64(number)
                .map(serde_json::Value::Number)
                .ok_or_else(|| {
                    (
                        value.span(),
                        format!("{} cannot be represented in JSON", float.as_str()),
                    )
                })?
        }
        DeValue::Boolean(flag) => serde_json::Value::Bool(*flag),
        DeValue::Datetime(datetime) => serde_json::Value::String(datetime.to_string()),
        DeValue::Array(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<Vec<_>, _>>()?)
        }
        DeValue::Table(table) => {
            let mut map = serde_json::Map::new();
            for (key, item) in table.iter() {
                map.insert(key.get_ref().to_string(), to_json(item)?);
            }
            serde_json::Value::Object(map)
        }
    })
}

/// 1-based line and character column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
