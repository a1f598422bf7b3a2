//! `relabel`: Prometheus `relabel_config` rules, applied to metric samples.
//!
//! The rules mean what they mean in Prometheus' `metric_relabel_configs`
//! (<https://prometheus.io/docs/prometheus/latest/configuration/configuration/#relabel_config>),
//! with the same defaults, so a rule can be copied from a Prometheus config
//! and written as TOML:
//!
//! ```toml
//! [transforms.tidy]
//! type = "relabel"
//! inputs = ["scrape"]
//! rules = [
//!   { source_labels = ["__name__"], regex = "go_.*", action = "drop" },
//!   { source_labels = ["instance"], regex = "([^:]+):\\d+", target_label = "host" },
//!   { regex = "pod_template_hash", action = "labeldrop" },
//! ]
//! ```
//!
//! - Rules run in order; a `keep`, `drop`, `keepequal` or `dropequal` that
//!   removes a sample ends its rules, and the sample is counted in
//!   `iotel_component_discarded_events_total{reason="relabel_dropped"}`.
//! - The metric name is the label `__name__`: rules can match on it and
//!   rename the sample by writing it. A sample whose `__name__` a rule
//!   removed (a `labelkeep` whose regex does not match `__name__`, say) is
//!   dropped and counted with `reason="relabel_name_removed"`, where
//!   Prometheus would fail the scrape.
//! - Regexes are anchored at both ends (`^(?:regex)$`) and use the syntax of
//!   Rust's `regex` crate, which for what relabel rules use is Go's RE2 syntax.
//! - A label with an empty value is an absent label: reading a missing label
//!   gives `""`, and writing `""` removes the label.
//! - Label names written by rules must match `[a-zA-Z_][a-zA-Z0-9_]*` (the
//!   classic Prometheus rule); a `replace` whose expanded `target_label` is not
//!   such a name changes nothing, as in Prometheus.
//!
//! Samples of other signals pass through unchanged.

mod rules;
#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, Metric, MetricMeta, MetricType};
use regex::Regex;
use rules::{Outcome, Rule};
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::sync::Arc;

use crate::transforms::describe::regex_reason;
use crate::transforms::names::{LABEL_NAME_RULE, is_valid_label_name};

/// Default of `separator`, as in Prometheus.
const DEFAULT_SEPARATOR: &str = ";";
/// Default of `regex`, as in Prometheus.
const DEFAULT_REGEX: &str = "(.*)";
/// Default of `replacement`, as in Prometheus.
const DEFAULT_REPLACEMENT: &str = "$1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The relabel rules, applied in order to every metric sample. An empty
    /// list passes every sample unchanged, as in Prometheus.
    pub rules: Vec<RuleConfig>,
}

/// One rule, as a Prometheus `relabel_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Labels whose values are joined, in this order, with `separator`; the
    /// joined value is what `regex` matches for `replace`, `keep`, `drop`,
    /// `hashmod`, `lowercase` and `uppercase`, and what `keepequal` /
    /// `dropequal` compare with `target_label`. `__name__` is the metric name;
    /// a missing label reads as `""`.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Placed between the values of `source_labels`. Default `";"`.
    pub separator: Option<String>,
    /// The label a `replace`, `hashmod`, `lowercase` or `uppercase` writes,
    /// and the label `keepequal` / `dropequal` compare with. In `replace` it
    /// may refer to capture groups (`${1}`, `${name}`). Required by those
    /// actions.
    pub target_label: Option<String>,
    /// Regular expression, anchored at both ends. `replace`, `keep` and
    /// `drop` match it against the joined source value; `labelmap`,
    /// `labeldrop` and `labelkeep` against every label name. Default `"(.*)"`.
    pub regex: Option<String>,
    /// `hashmod` writes the MD5 hash of the joined source value modulo this
    /// number. Required, and greater than zero, for `hashmod`.
    pub modulus: Option<u64>,
    /// The value a `replace` writes when `regex` matched, or the new label
    /// name in `labelmap`; `$1`, `${1}` and `${name}` are replaced by capture
    /// groups, `$$` is a literal `$`. A `replace` whose result is empty
    /// removes `target_label`. Default `"$1"`.
    pub replacement: Option<String>,
    /// What the rule does: `replace` (default), `keep`, `drop`, `keepequal`,
    /// `dropequal`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`,
    /// `lowercase` or `uppercase`. Case does not matter.
    #[serde(default)]
    pub action: Action,
}

/// A relabel action, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Writes `replacement` (expanded) to `target_label` when `regex` matches.
    #[default]
    Replace,
    /// Drops the sample unless `regex` matches.
    Keep,
    /// Drops the sample when `regex` matches.
    Drop,
    /// Drops the sample unless the joined value equals `target_label`'s value.
    KeepEqual,
    /// Drops the sample when the joined value equals `target_label`'s value.
    DropEqual,
    /// Writes MD5(joined value) mod `modulus` to `target_label`.
    HashMod,
    /// Copies every label whose name matches `regex` to the name `replacement`.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Writes the joined value in lower case to `target_label`.
    Lowercase,
    /// Writes the joined value in upper case to `target_label`.
    Uppercase,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Prometheus accepts any case (`Replace`, `LABELDROP`).
        let lower = s.to_ascii_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| {
                let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
                serde::de::Error::custom(format!(
                    "unknown relabel action \"{s}\"; expected one of: {}",
                    names.join(", ")
                ))
            })
    }
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Err(p) = rule.compile(i) {
                problems.extend(p);
            }
        }
        problems
    }

    /// # Errors
    /// The first rule that does not compile; [`Config::validate`] has
    /// reported it already.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            match rule.compile(i) {
                Ok(r) => rules.push(r),
                Err(mut p) => return Err(p.swap_remove(0)),
            }
        }
        Ok(Box::new(Relabel {
            rules,
            name_label: Arc::from(rules::NAME_LABEL),
            dropped: cx.metrics.discards("relabel_dropped"),
            name_removed: cx.metrics.discards("relabel_name_removed"),
            renamed_meta: HashMap::new(),
            scratch: String::new(),
        }))
    }
}

impl RuleConfig {
    /// Checks the rule as Prometheus' `Config.Validate` does and compiles it.
    fn compile(&self, index: usize) -> Result<Rule, Vec<Problem>> {
        let key = |field: &str| format!("rules[{index}].{field}");
        let mut problems = Vec::new();
        let action = self.action;
        let name = action.as_str();

        let regex_src = self.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = match Regex::new(&format!("^(?:{regex_src})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                problems.push(Problem::new(
                    key("regex"),
                    format!(
                        "invalid regular expression \"{regex_src}\": {}",
                        regex_error(regex_src, e)
                    ),
                ));
                None
            }
        };
        let separator = self.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
        let replacement = self.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);
        let target = self.target_label.as_deref().unwrap_or("");

        for (j, l) in self.source_labels.iter().enumerate() {
            if !is_valid_label_name(l) {
                problems.push(Problem::new(
                    format!("rules[{index}].source_labels[{j}]"),
                    format!("\"{l}\" is not a valid label name ({LABEL_NAME_RULE})"),
                ));
            }
        }

        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target.is_empty() {
            problems.push(Problem::new(
                key("target_label"),
                format!("the {name} action requires a target_label"),
            ));
        } else if action == Action::Replace && target.contains('$') {
            if !rules::is_valid_label_template(target) {
                problems.push(Problem::new(
                    key("target_label"),
                    format!("\"{target}\" is not a valid target_label for the replace action (expected a label name that may use $1, ${{1}} or ${{name}})"),
                ));
            }
        } else if needs_target && !is_valid_label_name(target) {
            problems.push(Problem::new(
                key("target_label"),
                format!("\"{target}\" is not a valid target_label for the {name} action ({LABEL_NAME_RULE})"),
            ));
        }

        let modulus = match (action, self.modulus) {
            (Action::HashMod, None | Some(0)) => {
                problems.push(Problem::new(
                    key("modulus"),
                    "the hashmod action requires a modulus greater than zero",
                ));
                0
            }
            (_, m) => m.unwrap_or(0),
        };

        if matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        ) && replacement != DEFAULT_REPLACEMENT
        {
            problems.push(Problem::new(
                key("replacement"),
                format!("the {name} action takes no replacement"),
            ));
        }
        if action == Action::LabelMap && !rules::is_valid_label_template(replacement) {
            problems.push(Problem::new(
                key("replacement"),
                format!("\"{replacement}\" is not a valid replacement for the labelmap action (expected a label name that may use $1, ${{1}} or ${{name}})"),
            ));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual) {
            let extra = [
                (
                    "regex",
                    self.regex.as_deref().is_some_and(|r| r != DEFAULT_REGEX),
                ),
                ("modulus", self.modulus.is_some_and(|m| m != 0)),
                (
                    "separator",
                    self.separator
                        .as_deref()
                        .is_some_and(|s| s != DEFAULT_SEPARATOR),
                ),
            ];
            for (field, set) in extra {
                if set {
                    problems.push(Problem::new(
                        key(field),
                        format!("the {name} action takes only source_labels and target_label"),
                    ));
                }
            }
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep) {
            let extra = [
                ("source_labels", !self.source_labels.is_empty()),
                (
                    "target_label",
                    self.target_label.as_deref().is_some_and(|t| !t.is_empty()),
                ),
                ("modulus", self.modulus.is_some_and(|m| m != 0)),
                (
                    "separator",
                    self.separator
                        .as_deref()
                        .is_some_and(|s| s != DEFAULT_SEPARATOR),
                ),
                (
                    "replacement",
                    self.replacement
                        .as_deref()
                        .is_some_and(|r| r != DEFAULT_REPLACEMENT),
                ),
            ];
            for (field, set) in extra {
                if set {
                    problems.push(Problem::new(
                        key(field),
                        format!("the {name} action takes only a regex"),
                    ));
                }
            }
        }

        match regex {
            Some(regex) if problems.is_empty() => Ok(Rule {
                source_labels: self.source_labels.clone(),
                separator: separator.to_string(),
                target_label: target.to_string(),
                regex,
                modulus,
                replacement: replacement.to_string(),
                action,
            }),
            _ => Err(problems),
        }
    }
}

/// The reason a regex does not compile, in one line and about the user's own
/// pattern rather than the anchored one we compiled.
fn regex_error(src: &str, anchored_error: regex::Error) -> String {
    regex_reason(&Regex::new(src).err().unwrap_or(anchored_error))
}

/// The running transform.
#[derive(Debug)]
pub struct Relabel {
    rules: Vec<Rule>,
    name_label: Arc<str>,
    dropped: Counter,
    name_removed: Counter,
    /// Metadata of renamed samples, by (new name, old metadata), so a renamed
    /// series does not allocate its metadata again on every sample.
    renamed_meta: HashMap<(Arc<str>, Arc<MetricMeta>), Arc<MetricMeta>>,
    scratch: String,
}

/// Entries of `renamed_meta` before it starts over; bounds its memory when
/// rules derive names from label values.
const RENAMED_META_CAPACITY: usize = 1024;

impl Relabel {
    fn relabel(&mut self, mut m: Metric) -> Outcome<Metric> {
        let mut work = rules::Work::new(&m.labels, &self.name_label, &m.name);
        for rule in &self.rules {
            if !rule.apply(&mut work, &mut self.scratch) {
                return Outcome::Dropped;
            }
        }
        if !work.changed() {
            return Outcome::Kept(m);
        }
        let mut labels = work.into_builder();
        let Some(name) = labels.remove(rules::NAME_LABEL) else {
            return Outcome::NameRemoved;
        };
        m.labels = labels.build();
        if name != m.name {
            m.meta = self.meta_for_rename(&m.meta, &m.name, &name);
            m.name = name;
        }
        Outcome::Kept(m)
    }

    fn meta_for_rename(
        &mut self,
        meta: &Arc<MetricMeta>,
        old: &str,
        new: &Arc<str>,
    ) -> Arc<MetricMeta> {
        let key = (new.clone(), meta.clone());
        if let Some(m) = self.renamed_meta.get(&key) {
            return m.clone();
        }
        if self.renamed_meta.len() >= RENAMED_META_CAPACITY {
            self.renamed_meta.clear();
        }
        let renamed = Arc::new(renamed_meta(meta, old, new));
        self.renamed_meta.insert(key, renamed.clone());
        renamed
    }
}

/// The metadata of a sample renamed from `old` to `new`.
///
/// A sample's name is its family's name plus a suffix (`_total`, `_bucket`,
/// none). When the new name keeps the suffix, the family is renamed along and
/// keeps its type; otherwise the sample no longer belongs to a family we can
/// name, and becomes a family of its own of type unknown. Help and unit stay.
fn renamed_meta(meta: &MetricMeta, old: &str, new: &Arc<str>) -> MetricMeta {
    let (family, kind): (Arc<str>, MetricType) = match old.strip_prefix(&*meta.family) {
        Some("") => (new.clone(), meta.kind),
        Some(suffix) => match new.strip_suffix(suffix) {
            Some(f) if !f.is_empty() => (Arc::from(f), meta.kind),
            _ => (new.clone(), MetricType::Unknown),
        },
        None => (new.clone(), MetricType::Unknown),
    };
    MetricMeta {
        family,
        kind,
        help: meta.help.clone(),
        unit: meta.unit.clone(),
    }
}

impl Transform for Relabel {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Metrics(metrics) = events else {
            out.push(events);
            return;
        };
        let mut kept = Vec::with_capacity(metrics.len());
        let (mut dropped, mut name_removed) = (0, 0);
        for m in metrics {
            match self.relabel(m) {
                Outcome::Kept(m) => kept.push(m),
                Outcome::Dropped => dropped += 1,
                Outcome::NameRemoved => name_removed += 1,
            }
        }
        if dropped > 0 {
            self.dropped.add(dropped);
        }
        if name_removed > 0 {
            self.name_removed.add(name_removed);
        }
        if !kept.is_empty() {
            out.push(Events::Metrics(kept));
        }
    }
}
