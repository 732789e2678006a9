//! Requests whose params do not fit their method.
//!
//! rmcp reads a client request into an untagged union of the requests it knows, with a
//! catch-all `CustomRequest` last. A `tools/call` whose `arguments` is an array or a string
//! fits no typed variant, so it arrives as a custom request and the default handler answers
//! -32601 "method not found": wrong, since the method exists and its params are bad. JSON-RPC
//! calls that invalid params (-32602). [`misfit`] says what is wrong with the params of the
//! methods our servers serve, so their handlers answer that instead; a method nobody serves
//! stays method-not-found.

use rmcp::model::{CallToolRequestParams, PaginatedRequestParams};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The methods whose params [`misfit`] judges.
pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";

/// What is wrong with `params` of a `method` this server serves (`tools/call`,
/// `tools/list`), in words naming the field; `None` for another method.
pub fn misfit(method: &str, params: Option<&Value>) -> Option<String> {
    match method {
        TOOLS_CALL => Some(call_misfit(params)),
        TOOLS_LIST => Some(typed_misfit::<PaginatedRequestParams>(method, params)),
        _ => None,
    }
}

fn call_misfit(params: Option<&Value>) -> String {
    let Some(params) = params else {
        return "tools/call needs params: {\"name\": <tool>, \"arguments\": {...}}".to_string();
    };
    let Some(object) = params.as_object() else {
        return format!(
            "params of tools/call must be an object, not {}",
            kind(params)
        );
    };
    match object.get("name") {
        None => return "params of tools/call need `name`, the tool to call".to_string(),
        Some(Value::String(_)) => {}
        Some(other) => return format!("`name` must be a string, not {}", kind(other)),
    }
    match object.get("arguments") {
        // `null` is as good as absent: no arguments.
        Some(arguments) if !arguments.is_object() && !arguments.is_null() => {
            return format!(
                "`arguments` must be an object (named arguments), not {}",
                kind(arguments)
            );
        }
        _ => {}
    }
    typed_misfit::<CallToolRequestParams>(TOOLS_CALL, Some(params))
}

/// serde's account of why `params` is not a `T`.
fn typed_misfit<T: DeserializeOwned>(method: &str, params: Option<&Value>) -> String {
    let params = params.cloned().unwrap_or(Value::Null);
    if !params.is_object() && !params.is_null() {
        return format!(
            "params of {method} must be an object, not {}",
            kind(&params)
        );
    }
    match serde_json::from_value::<T>(params) {
        Err(error) => format!("params of {method} do not fit: {error}"),
        Ok(_) => format!("params of {method} do not fit"),
    }
}

/// A JSON value's kind, with its article, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_that_are_not_an_object_are_named() {
        let reason = |params: Value| misfit(TOOLS_CALL, Some(&params)).unwrap();
        assert_eq!(
            reason(json!({"name": "t", "arguments": [1, 2]})),
            "`arguments` must be an object (named arguments), not an array"
        );
        assert!(reason(json!({"name": "t", "arguments": "x"})).ends_with("not a string"));
        assert!(reason(json!({"name": 5})).contains("`name` must be a string"));
        assert!(reason(json!({"arguments": {}})).contains("need `name`"));
        assert!(reason(json!([1])).contains("must be an object, not an array"));
        assert!(
            misfit(TOOLS_LIST, Some(&json!({"cursor": 3})))
                .unwrap()
                .starts_with("params of tools/list do not fit: ")
        );
        assert_eq!(misfit("prompts/get", Some(&json!([]))), None);
    }
}
