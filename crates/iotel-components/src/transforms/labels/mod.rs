//! `labels`: promotes log fields to stream labels, under a cap on the
//! distinct values each label may take.
//!
//! ```toml
//! [transforms.streams]
//! type = "labels"
//! inputs = ["parsed"]
//! fields = ["level", "device_id"]        # or { level = "level", device_id = "dev" }
//! max_values_per_label = 1000
//! ```
//!
//! `fields` is a list of field names, each promoted to the label of the
//! same name, or a table `label = "field"` to promote under another name.
//! Only top-level fields are looked at (a name with a `.` is one field's
//! name, not a path). A string value becomes the label value as it is; a
//! number, boolean, array or object is written as its compact JSON text
//! (`42`, `true`, `["a"]`). A missing, `null` or empty field promotes
//! nothing. A promoted value replaces a label of the same name the record
//! already has, and the field is removed unless `remove_from_fields =
//! false`.
//!
//! **The cap.** Each label keeps the set of values it carried within
//! `value_ttl` (the same live set as `cardinality_limit` keeps per metric).
//! A value already live is always promoted; a new value is promoted while
//! the label has fewer than `max_values_per_label` live values. Past that
//! the record is kept as it is, the field staying a field, and counted in
//! `iotel_labels_not_promoted_total{component_id, label,
//! reason="cardinality_limit"}`; at most once per `warn_interval` per label
//! a warning says how many were left unpromoted since the last one. So the
//! streams one set of labels can make are bounded by the product of the
//! caps.
//!
//! Time here is the node's monotonic clock, as in `cardinality_limit`.

#[cfg(test)]
mod tests;

use crate::transforms::cardinality_limit::LiveSet;
use crate::transforms::names::{LABEL_NAME_RULE, is_valid_label_name};
use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, Labels, LogRecord};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The fields to promote: `["level", "device_id"]`, or
    /// `{ label = "field", ... }` to rename. Required.
    pub fields: Promotions,
    /// Whether a promoted field is removed from the record's fields.
    /// Default true.
    #[serde(default = "default_remove_from_fields")]
    pub remove_from_fields: bool,
    /// The most distinct values one label may carry within `value_ttl`;
    /// records with further new values keep them as fields. Required.
    pub max_values_per_label: NonZeroUsize,
    /// A value not seen for this long stops counting. Default `"5m"`.
    #[serde(default = "default_value_ttl")]
    pub value_ttl: Duration,
    /// At most one warning per label per this interval while values are
    /// left unpromoted. Default `"1m"`.
    #[serde(default = "default_warn_interval")]
    pub warn_interval: Duration,
}

fn default_remove_from_fields() -> bool {
    true
}

fn default_value_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_warn_interval() -> Duration {
    Duration::from_secs(60)
}

/// Which field becomes which label, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotions(pub Vec<Promotion>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub label: String,
    pub field: String,
    /// Where it was written (`fields[1]` or `fields.level`), for messages.
    pub key: String,
}

impl<'de> Deserialize<'de> for Promotions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Promotions;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of field names or a table of label = \"field\"")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Promotions, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push(Promotion {
                        key: format!("fields[{}]", out.len()),
                        label: name.clone(),
                        field: name,
                    });
                }
                Ok(Promotions(out))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Promotions, A::Error> {
                let mut out = Vec::new();
                while let Some((label, field)) = map.next_entry::<String, String>()? {
                    out.push(Promotion {
                        key: format!("fields.{label}"),
                        label,
                        field,
                    });
                }
                Ok(Promotions(out))
            }
        }
        d.deserialize_any(V).map_err(de::Error::custom)
    }
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.fields.0.is_empty() {
            p.push(Problem::new(
                "fields",
                "promotes nothing: name at least one field",
            ));
        }
        for (i, pr) in self.fields.0.iter().enumerate() {
            if !is_valid_label_name(&pr.label) {
                p.push(Problem::new(
                    &pr.key,
                    format!(
                        "\"{}\" is not a valid label name ({LABEL_NAME_RULE})",
                        pr.label
                    ),
                ));
            }
            if pr.field.is_empty() {
                p.push(Problem::new(&pr.key, "expected a field name"));
            }
            let earlier = &self.fields.0[..i];
            if earlier.iter().any(|e| e.label == pr.label) {
                p.push(Problem::new(
                    &pr.key,
                    format!("label \"{}\" is listed twice", pr.label),
                ));
            } else if earlier.iter().any(|e| e.field == pr.field) {
                p.push(Problem::new(
                    &pr.key,
                    format!("field \"{}\" is promoted twice", pr.field),
                ));
            }
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(PromoteLabels::new(self, cx, Instant::now())))
    }
}

/// One promoted label's state.
#[derive(Debug)]
struct Promoted {
    label: Arc<str>,
    field: String,
    values: LiveSet,
    not_promoted: Counter,
    since_warning: u64,
    last_warning: Option<Instant>,
}

/// A record's label set, its promoted values and the label set they made.
type LastRecord = (Labels, Vec<Option<Arc<str>>>, Labels);

/// The running transform. [`PromoteLabels::process`] takes the time as an
/// argument, so tests drive the clock.
#[derive(Debug)]
pub struct PromoteLabels {
    promoted: Vec<Promoted>,
    remove_from_fields: bool,
    max_values: usize,
    ttl: std::time::Duration,
    warn_interval: std::time::Duration,
    component_id: Arc<str>,
    hasher: RandomState,
    /// The record at hand's promoted value per label, `None` when not
    /// promoted; reused.
    values: Vec<Option<Arc<str>>>,
    /// The last record's label set, promoted values and resulting label
    /// set: records of one stream and device share them, so most records
    /// reuse the label set instead of building one.
    last: Option<LastRecord>,
    /// Warnings logged so far, only so tests can see them without a log
    /// subscriber.
    #[cfg(test)]
    warnings: u64,
}

/// A field's value as label text; `None` for null and empty strings.
fn label_text(v: &serde_json::Value) -> Option<Cow<'_, str>> {
    let text = match v {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_string()),
    };
    (!text.is_empty()).then_some(text)
}

impl PromoteLabels {
    pub fn new(config: &Config, cx: &BuildContext, now: Instant) -> Self {
        let ttl = config.value_ttl.get();
        let promoted: Vec<Promoted> = config
            .fields
            .0
            .iter()
            .map(|p| Promoted {
                label: Arc::from(p.label.as_str()),
                field: p.field.clone(),
                values: LiveSet::new(now, ttl),
                not_promoted: cx.metrics.registry().counter(
                    "iotel_labels_not_promoted_total",
                    "Log records whose field stayed a field because its label had reached max_values_per_label.",
                    &[
                        ("component_id", &cx.id),
                        ("label", &p.label),
                        ("reason", "cardinality_limit"),
                    ],
                ),
                since_warning: 0,
                last_warning: None,
            })
            .collect();
        Self {
            values: Vec::with_capacity(promoted.len()),
            promoted,
            remove_from_fields: config.remove_from_fields,
            max_values: config.max_values_per_label.get(),
            ttl,
            warn_interval: config.warn_interval.get(),
            component_id: Arc::from(cx.id.as_str()),
            hasher: RandomState::new(),
            last: None,
            #[cfg(test)]
            warnings: 0,
        }
    }

    /// Promotes the fields of every record at time `now`.
    pub fn process(&mut self, records: &mut [LogRecord], now: Instant) {
        for r in records {
            self.promote(r, now);
        }
    }

    fn promote(&mut self, r: &mut LogRecord, now: Instant) {
        self.values.clear();
        let last_values = self.last.as_ref().map(|(_, v, _)| v);
        for (i, p) in self.promoted.iter_mut().enumerate() {
            let Some(text) = r.fields.get(&p.field).and_then(label_text) else {
                self.values.push(None);
                continue;
            };
            if !p
                .values
                .admit(self.hasher.hash_one(&*text), now, self.max_values, self.ttl)
            {
                p.not_promoted.inc();
                p.since_warning += 1;
                if p.last_warning
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.warn_interval)
                {
                    tracing::warn!(
                        component_id = %self.component_id,
                        label = %p.label,
                        max_values_per_label = self.max_values,
                        records = p.since_warning,
                        "left fields unpromoted: the label has reached max_values_per_label (records counts those since the last warning)"
                    );
                    p.last_warning = Some(now);
                    p.since_warning = 0;
                    #[cfg(test)]
                    {
                        self.warnings += 1;
                    }
                }
                self.values.push(None);
                continue;
            }
            let shared = match last_values.and_then(|v| v[i].as_ref()) {
                Some(known) if **known == *text => known.clone(),
                _ => Arc::from(&*text),
            };
            self.values.push(Some(shared));
        }
        if self.values.iter().all(Option::is_none) {
            return;
        }
        if self.remove_from_fields {
            for (p, v) in self.promoted.iter().zip(&self.values) {
                if v.is_some() {
                    r.fields.remove(&p.field);
                }
            }
        }
        if let Some((input, values, output)) = &self.last
            && *input == r.labels
            && *values == self.values
        {
            r.labels = output.clone();
            return;
        }
        let mut b = r.labels.to_builder();
        for (p, v) in self.promoted.iter().zip(&self.values) {
            if let Some(v) = v {
                b.set_shared(p.label.clone(), v.clone());
            }
        }
        let output = b.build();
        let input = std::mem::replace(&mut r.labels, output.clone());
        self.last = Some((input, self.values.clone(), output));
    }

    #[cfg(test)]
    fn warnings(&self) -> u64 {
        self.warnings
    }
}

impl Transform for PromoteLabels {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut records) => {
                self.process(&mut records, Instant::now());
                Events::Logs(records)
            }
            other => other,
        };
        out.push(events);
    }
}
