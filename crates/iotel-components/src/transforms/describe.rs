//! How a value or a failure is put in a message (a config problem, a
//! warning), the same way in every component.

use serde_json::Value;

/// "a number", "an array", … : what a JSON value is.
#[cfg_attr(not(feature = "logs"), allow(dead_code))]
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The reason a regex does not compile, in one line: the regex parser's
/// message shows the pattern and a line of carets around its `error: …`
/// line.
pub(crate) fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(s)
            .to_string(),
        _ => e.to_string(),
    }
}
