//! Which label and metric names are valid, in one place, and how an
//! OpenTelemetry attribute name is spelled as a Prometheus label name.
//!
//! Prometheus' classic rules: a label name is `[a-zA-Z_][a-zA-Z0-9_]*`, a
//! metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`. Logs and spans may also carry
//! OpenTelemetry attribute names such as `deployment.environment`, which
//! become `deployment_environment` on metrics.

use crate::Problem;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What [`is_valid_label_name`] accepts, for messages.
pub const LABEL_NAME_RULE: &str = "expected [a-zA-Z_][a-zA-Z0-9_]*";

/// What [`is_valid_attribute_name`] accepts, for messages.
pub const ATTRIBUTE_NAME_RULE: &str =
    "expected letters, digits, '_' and '.', not starting with a digit or '.'";

fn starts_label(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn continues_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// A classic Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(starts_label) && bytes.all(continues_label)
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| starts_label(b) || b == b':')
        && bytes.all(|b| continues_label(b) || b == b':')
}

/// A Prometheus label name, or an OpenTelemetry attribute name with `.`
/// between its parts (`deployment.environment`): what a transform that
/// labels logs and spans as well as metrics may set. Its spelling on
/// metrics is [`prometheus_label_name`].
pub fn is_valid_attribute_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(starts_label) && bytes.all(|b| continues_label(b) || b == b'.')
}

/// `name` as a Prometheus label name, by the OpenTelemetry → Prometheus
/// convention: every character not allowed in a label name becomes `_`, and
/// a name starting with a digit gets the prefix `key_`. A valid label name
/// is returned as it is.
pub fn prometheus_label_name(name: &str) -> Cow<'_, str> {
    if is_valid_label_name(name) || name.is_empty() {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii() && continues_label(c as u8) {
            c
        } else {
            '_'
        }
    }));
    Cow::Owned(out)
}

/// Problems with a table of static labels under the key `table`
/// (`labels = { site = "plant-7" }`): a name that is not an attribute name
/// (`what`: "label", "attribute"), the `reserved` name (with what it is
/// set to instead), or an empty value.
pub(crate) fn static_label_problems(
    table: &str,
    what: &str,
    labels: &BTreeMap<String, String>,
    reserved: Option<(&str, &str)>,
) -> Vec<Problem> {
    let mut p = Vec::new();
    for (name, value) in labels {
        let key = format!("{table}.{name}");
        if !is_valid_attribute_name(name) {
            p.push(Problem::new(
                key,
                format!("not a valid {what} name ({ATTRIBUTE_NAME_RULE})"),
            ));
        } else if let Some((_, set_to)) = reserved.filter(|(r, _)| r == name) {
            p.push(Problem::new(
                key,
                format!("`{name}` is set on every record to {set_to}; choose another name"),
            ));
        } else if value.is_empty() {
            p.push(Problem::new(
                key,
                "expected a non-empty value (an empty label is an absent one)",
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_metric_and_attribute_names_follow_their_rules() {
        for (name, label, metric, attribute) in [
            ("temp", true, true, true),
            ("_x9", true, true, true),
            ("9x", false, false, false),
            ("", false, false, false),
            ("a:b", false, true, false),
            (":a", false, true, false),
            ("deployment.environment", false, false, true),
            (".x", false, false, false),
            ("bad name", false, false, false),
            ("bad-name", false, false, false),
            ("é", false, false, false),
        ] {
            assert_eq!(is_valid_label_name(name), label, "label {name:?}");
            assert_eq!(is_valid_metric_name(name), metric, "metric {name:?}");
            assert_eq!(
                is_valid_attribute_name(name),
                attribute,
                "attribute {name:?}"
            );
        }
    }

    #[test]
    fn prometheus_label_name_replaces_invalid_characters_with_underscores() {
        for (name, want) in [
            ("site", "site"),
            ("deployment.environment", "deployment_environment"),
            ("service.instance.id", "service_instance_id"),
            ("a-b c", "a_b_c"),
            ("größe", "gr__e"),
            ("2fa", "key_2fa"),
        ] {
            let got = prometheus_label_name(name);
            assert_eq!(got, want, "{name:?}");
            assert!(is_valid_label_name(&got), "{got:?}");
        }
        assert!(matches!(prometheus_label_name("site"), Cow::Borrowed(_)));
    }
}
