//! `filter`: keeps or drops log records by a LogQL selector.
//!
//! ```toml
//! [transforms.errors_only]
//! type = "filter"
//! inputs = ["app_logs"]
//! selector = '{job="edge-app"} |~ "ERROR|panic" != "healthcheck"'
//! action = "keep"
//! ```
//!
//! With `action = "keep"` (the default) a record passes when the selector
//! matches it; with `"drop"` when it does not. Records that do not pass are
//! counted in `iotel_component_discarded_events_total{reason="filtered"}`.
//! The selector language, a subset of LogQL, is described in
//! `selector.rs`. Label matchers look at stream labels only; to select on a
//! field, promote it to a label first with the `labels` transform.

pub(crate) mod selector;
#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::{Events, Labels, LogRecord};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A LogQL stream selector with optional line filters, e.g.
    /// `{job="edge-app"} |~ "ERROR|panic"`. Required.
    pub selector: String,
    /// Whether matching records are kept (`"keep"`, the default) or dropped
    /// (`"drop"`).
    #[serde(default)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Records the selector matches pass; the others are dropped.
    #[default]
    Keep,
    /// Records the selector matches are dropped; the others pass.
    Drop,
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        match selector::compile(&self.selector) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Problem::new("selector", e.to_string())],
        }
    }

    /// # Errors
    /// A selector that does not compile (`validate` reports it first).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(self.filter(cx)?))
    }

    fn filter(&self, cx: &BuildContext) -> Result<Filter, Problem> {
        let selector = selector::compile(&self.selector)
            .map_err(|e| Problem::new("selector", e.to_string()))?;
        Ok(Filter {
            selector,
            keep: self.action == Action::Keep,
            filtered: cx.metrics.discards("filtered"),
            last_labels: None,
        })
    }
}

/// The running transform.
#[derive(Debug)]
pub struct Filter {
    selector: selector::Compiled,
    /// Whether a match passes (`keep`) or is dropped (`drop`).
    keep: bool,
    filtered: Counter,
    /// The last label set tested and whether it matched: records of one
    /// stream share their label set, so most lookups end here.
    last_labels: Option<(Labels, bool)>,
}

impl Filter {
    fn matches(&mut self, r: &LogRecord) -> bool {
        let labels_match = match &self.last_labels {
            Some((labels, matched)) if *labels == r.labels => *matched,
            _ => {
                let matched = self.selector.matches_labels(&r.labels);
                self.last_labels = Some((r.labels.clone(), matched));
                matched
            }
        };
        labels_match && self.selector.matches_line(&r.message)
    }
}

impl Transform for Filter {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let Events::Logs(mut records) = events else {
            out.push(events);
            return;
        };
        let before = records.len();
        records.retain(|r| self.matches(r) == self.keep);
        let dropped = before - records.len();
        if dropped > 0 {
            self.filtered.add(dropped as u64);
        }
        if !records.is_empty() {
            out.push(Events::Logs(records));
        }
    }
}
