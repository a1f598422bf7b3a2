//! The naming conventions a family is checked against once its samples
//! are in. The rules `promtool check metrics` has (its `promlint`) give
//! the same message text, so that findings of both can be compared; the
//! rest are iotel's own.

use iotel_model::MetricType;

/// A convention finding's code and message, before it is placed on a line.
pub(super) type Problem = (&'static str, String);

/// Codes whose message is the text `promtool check metrics` prints for the
/// same problem.
pub const PROMTOOL_CODES: &[&str] = &[
    "no-help",
    "counter-total-suffix",
    "total-suffix-non-counter",
    "reserved-suffix",
    "reserved-label",
    "type-in-name",
    "colon-in-name",
    "camel-case",
    "unit-abbreviation",
    "non-base-unit",
];

/// Units a name may carry and the base unit each should be given in
/// (promlint's table).
const UNITS: &[(&str, &str)] = &[
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];

const UNIT_PREFIXES: &[&str] = &[
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];

const UNIT_ABBREVIATIONS: &[&str] = &[
    "s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d",
];

/// The base units a name may end in (before `_total`), which OpenMetrics
/// then expects as the family's `# UNIT`.
pub const BASE_UNITS: &[&str] = &[
    "seconds", "bytes", "celsius", "kelvin", "ratio", "volts", "amperes", "joules", "grams",
    "meters", "metres", "watts", "hertz", "pascals", "lux",
];

/// The type names promlint looks for in names (those of its data model).
const TYPE_NAMES: &[&str] = &[
    "counter",
    "gauge",
    "summary",
    "histogram",
    "gauge_histogram",
];

/// What the exposition said of a family, for the name rules.
pub(super) struct FamilyFacts<'a> {
    pub(super) name: &'a str,
    /// Unknown when untyped or without `# TYPE`.
    pub(super) kind: MetricType,
    pub(super) openmetrics: bool,
    pub(super) has_help: bool,
    pub(super) has_type: bool,
    pub(super) unit: Option<&'a str>,
}

/// The problems of a family's name and metadata, in a fixed order.
pub(super) fn family_problems(f: &FamilyFacts<'_>) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    let name = f.name;
    if !f.has_help {
        out.push(("no-help", "no help text".into()));
    }
    if !f.has_type {
        out.push(("no-type", "no TYPE line; the family is untyped".into()));
    }
    // promlint's unit rule: the first word of the name that is a known unit
    // with or without a prefix.
    if let Some((unit, base)) = metric_unit(name)
        && unit != base
    {
        out.push((
            "non-base-unit",
            format!("use base unit {base:?} instead of {unit:?}"),
        ));
    }
    if name.split('_').any(|w| w == "percent" || w == "percentage") {
        out.push((
            "percent-unit",
            "use base unit \"ratio\" (0 to 1) instead of a percentage".into(),
        ));
    }
    let is_counter = f.kind == MetricType::Counter;
    let untyped = f.kind == MetricType::Unknown;
    let total = name.ends_with("_total");
    // In OpenMetrics a counter family is named without `_total`, which its
    // samples carry (checked as grammar).
    if is_counter && !total && !f.openmetrics {
        out.push((
            "counter-total-suffix",
            "counter metrics should have \"_total\" suffix".into(),
        ));
    } else if !untyped && !is_counter && total {
        out.push((
            "total-suffix-non-counter",
            "non-counter metrics should not have \"_total\" suffix".into(),
        ));
    }
    if !untyped {
        let histogram = f.kind == MetricType::Histogram;
        let summary = f.kind == MetricType::Summary;
        if !histogram && name.ends_with("_bucket") {
            out.push((
                "reserved-suffix",
                "non-histogram metrics should not have \"_bucket\" suffix".into(),
            ));
        }
        for suffix in ["_count", "_sum"] {
            if !histogram && !summary && name.ends_with(suffix) {
                out.push((
                    "reserved-suffix",
                    format!(
                        "non-histogram and non-summary metrics should not have \"{suffix}\" suffix"
                    ),
                ));
            }
        }
    }
    let lower = name.to_ascii_lowercase();
    for type_name in TYPE_NAMES {
        if has_word(&lower, type_name) {
            out.push((
                "type-in-name",
                format!("metric name should not include type '{type_name}'"),
            ));
        }
    }
    if name.contains(':') {
        out.push((
            "colon-in-name",
            "metric names should not contain ':'".into(),
        ));
    }
    if is_camel_case(name) {
        out.push((
            "camel-case",
            "metric names should be written in 'snake_case' not 'camelCase'".into(),
        ));
    }
    if UNIT_ABBREVIATIONS.iter().any(|a| has_word(&lower, a)) {
        out.push((
            "unit-abbreviation",
            "metric names should not contain abbreviated units".into(),
        ));
    }
    if f.openmetrics && f.unit.is_none() {
        let base = name.strip_suffix("_total").unwrap_or(name);
        if let Some(unit) = BASE_UNITS.iter().find(|u| has_suffix_word(base, u)) {
            out.push((
                "unit-missing",
                format!("the name ends in the unit {unit:?} but the family has no UNIT line"),
            ));
        }
    }
    out
}

/// The problems of a label name a family's samples use.
pub(super) fn label_problems(kind: MetricType, label: &str) -> Vec<Problem> {
    let mut out: Vec<Problem> = Vec::new();
    if kind != MetricType::Unknown {
        if kind != MetricType::Histogram && kind != MetricType::GaugeHistogram && label == "le" {
            out.push((
                "reserved-label",
                "non-histogram metrics should not have \"le\" label".into(),
            ));
        }
        if kind != MetricType::Summary && label == "quantile" {
            out.push((
                "reserved-label",
                "non-summary metrics should not have \"quantile\" label".into(),
            ));
        }
    }
    if label.starts_with("__") {
        out.push((
            "internal-label-name",
            format!("label name {label:?} starts with \"__\", which is reserved for internal use"),
        ));
    }
    if is_camel_case(label) {
        out.push((
            "camel-case",
            "label names should be written in 'snake_case' not 'camelCase'".into(),
        ));
    }
    out
}

/// promlint: the first word of `name` that is a known unit, alone or with
/// a prefix, and its base unit.
fn metric_unit(name: &str) -> Option<(String, &'static str)> {
    for word in name.split('_') {
        for &(unit, base) in UNITS {
            if let Some(prefix) = word.strip_suffix(unit)
                && (prefix.is_empty() || UNIT_PREFIXES.contains(&prefix))
            {
                return Some((word.to_string(), base));
            }
        }
    }
    None
}

/// `_word_` inside `name` or `_word` at its end.
fn has_word(name: &str, word: &str) -> bool {
    has_suffix_word(name, word)
        || name
            .match_indices(word)
            .any(|(at, _)| name[..at].ends_with('_') && name[at + word.len()..].starts_with('_'))
}

fn has_suffix_word(name: &str, word: &str) -> bool {
    name.strip_suffix(word).is_some_and(|s| s.ends_with('_'))
}

/// A lowercase letter followed by an uppercase one.
fn is_camel_case(name: &str) -> bool {
    name.as_bytes()
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
}
