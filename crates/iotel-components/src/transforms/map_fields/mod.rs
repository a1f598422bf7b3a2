//! `map_fields`: renames fields to canonical names and sets resource
//! attributes (logs and spans).
//!
//! ```toml
//! [transforms.canonical]
//! type = "map_fields"
//! inputs = ["app_json"]
//! rename = { user_id = "subject_identifier", action = "event_type", http_status = "http.status_code", statusCode = "http.status_code" }
//! resource = { "cloud.provider" = "aws", "cloud.region" = "eu-west-1", device_id = "dev-1" }
//! ```
//!
//! `rename` maps a field name to the name it gets; several names may map to
//! one. It acts on a log record's fields and a span's attributes, in one
//! pass over the names as they were (renames do not chain, so a target may
//! not also be renamed). When a record holds more than one name for the
//! same target, one wins and the others stay as they are, each counted in
//! `iotel_map_fields_conflicts_total{component_id}`: a field already named
//! as the target wins over every source; else the source name that sorts
//! first in byte order (`http_status` before `http_status_code` before
//! `statusCode`; uppercase before lowercase) is renamed.
//!
//! `resource` sets resource attributes, which are the record's (or span's)
//! labels in this model. A label the record already has is kept unless
//! `overwrite_resource = true`. Names may hold `.` as OpenTelemetry
//! attribute names do. Metrics are not handled (use `enrich` for labels
//! on every signal).

#[cfg(test)]
mod tests;

use crate::transforms::names::static_label_problems;
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, Labels};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Field name → the name it gets.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Resource attributes (labels) set on every record.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Whether `resource` replaces a label the record already has. Default
    /// false.
    #[serde(default)]
    pub overwrite_resource: bool,
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (from, to) in &self.rename {
            let key = format!("rename.{from}");
            if from.is_empty() {
                p.push(Problem::new(
                    key,
                    "expected a field name to rename, got \"\"",
                ));
            } else if to.is_empty() {
                p.push(Problem::new(key, "expected the new name, got \"\""));
            } else if from == to {
                p.push(Problem::new(key, "renames the field to its own name"));
            } else if self.rename.contains_key(to) {
                p.push(Problem::new(
                    key,
                    format!(
                        "renames to \"{to}\", which is renamed too; renames do not chain, so \
                         rename to the final name"
                    ),
                ));
            }
        }
        p.extend(static_label_problems(
            "resource",
            "attribute",
            &self.resource,
            None,
        ));
        if self.rename.is_empty() && self.resource.is_empty() {
            p.push(Problem::new("", "changes nothing: set rename or resource"));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (from, to) in &self.rename {
            // The map iterates in byte order: sources stay sorted.
            groups.entry(to).or_default().push(from.clone());
        }
        Ok(Box::new(MapFields {
            renames: groups
                .into_iter()
                .map(|(target, sources)| Rename {
                    target: target.to_string(),
                    sources,
                })
                .collect(),
            resource: self
                .resource
                .iter()
                .map(|(n, v)| (Arc::from(n.as_str()), Arc::from(v.as_str())))
                .collect(),
            overwrite_resource: self.overwrite_resource,
            conflicts: cx.metrics.registry().counter(
                "iotel_map_fields_conflicts_total",
                "Fields map_fields left under their own name because another one took \
                 their target name.",
                &[("component_id", &cx.id)],
            ),
            last_labels: None,
        }))
    }
}

/// The names that become `target`, in the order they are tried.
#[derive(Debug)]
struct Rename {
    target: String,
    sources: Vec<String>,
}

/// The running transform.
#[derive(Debug)]
pub struct MapFields {
    renames: Vec<Rename>,
    resource: Vec<(Arc<str>, Arc<str>)>,
    overwrite_resource: bool,
    conflicts: Counter,
    /// The last label set in and what it became: a batch's records mostly
    /// share one.
    last_labels: Option<(Labels, Labels)>,
}

impl MapFields {
    fn rename(&self, fields: &mut Map<String, Value>) {
        for r in &self.renames {
            let mut taken = fields.contains_key(&r.target);
            for source in &r.sources {
                if !fields.contains_key(source) {
                    continue;
                }
                if taken {
                    self.conflicts.inc();
                    continue;
                }
                if let Some(v) = fields.remove(source) {
                    fields.insert(r.target.clone(), v);
                    taken = true;
                }
            }
        }
    }

    fn labels(&mut self, labels: &Labels) -> Labels {
        if self.resource.is_empty() {
            return labels.clone();
        }
        if let Some((from, to)) = &self.last_labels
            && from == labels
        {
            return to.clone();
        }
        let mut b = labels.to_builder();
        for (name, value) in &self.resource {
            if self.overwrite_resource || labels.get(name).is_none() {
                b.set_shared(name.clone(), value.clone());
            }
        }
        let to = b.build();
        self.last_labels = Some((labels.clone(), to.clone()));
        to
    }
}

impl Transform for MapFields {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut logs) => {
                for r in &mut logs {
                    self.rename(&mut r.fields);
                    r.labels = self.labels(&r.labels);
                }
                Events::Logs(logs)
            }
            Events::Traces(mut spans) => {
                for s in &mut spans {
                    self.rename(&mut s.attributes);
                    s.labels = self.labels(&s.labels);
                }
                Events::Traces(spans)
            }
            // The graph gives it no metrics.
            other => other,
        };
        out.push(events);
    }
}
