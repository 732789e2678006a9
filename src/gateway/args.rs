//! Reading a tool call's arguments: each reader names the field and what it must be, so a
//! wrong argument is a `success: false` answer the caller can act on.

use rmcp::model::JsonObject;
use serde_json::Value;

use super::error::GatewayError;
use crate::record::limits;

/// Hits or entries a listing returns when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// Reads an optional string argument; a wrong type is the caller's error, named.
pub fn string_arg<'a>(
    args: &'a JsonObject,
    field: &'static str,
) -> Result<Option<&'a str>, GatewayError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(GatewayError::BadRequest {
            field,
            reason: "must be a string".into(),
        }),
    }
}

/// A required string argument; a missing one names what it is for and the arguments that
/// were given (a misspelt key is the usual cause).
pub fn required_string_arg<'a>(
    args: &'a JsonObject,
    field: &'static str,
    what: &str,
) -> Result<&'a str, GatewayError> {
    string_arg(args, field)?.ok_or_else(|| GatewayError::MissingArgument {
        field,
        what: what.to_string(),
        given: args.keys().cloned().collect(),
    })
}

pub fn strings_arg(
    args: &JsonObject,
    field: &'static str,
) -> Result<Option<Vec<String>>, GatewayError> {
    match args.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(GatewayError::BadRequest {
                    field,
                    reason: "must be an array of strings".into(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(GatewayError::BadRequest {
            field,
            reason: "must be an array of strings".into(),
        }),
    }
}

/// The caller's optional `timeout_ms`, a positive integer.
pub fn timeout_ms_arg(args: &JsonObject) -> Result<Option<u64>, GatewayError> {
    match args.get("timeout_ms") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value
                .as_u64()
                .filter(|ms| *ms >= 1)
                .map(Some)
                .ok_or(GatewayError::BadRequest {
                    field: "timeout_ms",
                    reason: "must be a positive integer (milliseconds)".into(),
                })
        }
    }
}

pub fn limit_arg(args: &JsonObject) -> Result<usize, GatewayError> {
    match args.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(value) => match value.as_u64() {
            Some(limit) if (1..=limits::PAGE_MAX as u64).contains(&limit) => Ok(limit as usize),
            _ => Err(GatewayError::BadRequest {
                field: "limit",
                reason: format!(
                    "must be an integer from 1 to {} (the page limit)",
                    limits::PAGE_MAX
                ),
            }),
        },
    }
}
