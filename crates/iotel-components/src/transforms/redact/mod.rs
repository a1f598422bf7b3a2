//! `redact`: replaces personal data in log messages and named fields.
//!
//! ```toml
//! [transforms.pii]
//! type = "redact"
//! inputs = ["parsed"]
//! rules = ["email", "phone", "ipv4"]
//! salt = "${IOTEL_REDACT_SALT}"
//! fields = ["user", "client"]
//! custom = [{ name = "imei", pattern = '\b\d{15}\b', replacement = "[imei]" }]
//! ```
//!
//! Built-in rules, applied in this order whatever the order of `rules`:
//!
//! - `email`: `alice@example.com` → `email:` and the first 16 hex digits of
//!   SHA-256(salt ‖ the address in ASCII lowercase). The same address gets
//!   the same pseudonym everywhere the salt is the same, so records stay
//!   joinable; without the salt it cannot be reversed by hashing guesses.
//!   An address is a local part of `[A-Za-z0-9._%+-]`, `@`, and a domain of
//!   two or more dot-separated labels of `[A-Za-z0-9-]`, the last of two or
//!   more letters.
//! - `phone`: international numbers, `+` then 8 to 15 digits in groups
//!   separated by up to two of ` -.()` (`+86 138 1234 5678`,
//!   `+1 (555) 123-4567`), become the country code and the last four
//!   digits: `+86****5678`. Numbers without `+` are not recognized: in log
//!   lines they cannot be told from ids and counters (add a `custom` rule
//!   for a national format you know). A space may only follow a group of
//!   at most four digits, and a number does not end inside a run of digit
//!   groups joined without spaces (an IP address after it stays whole); a
//!   short number right after a phone number (`+86 138 1234 5678 2 times`)
//!   may be masked with it.
//! - `ipv6`: addresses as `std` parses them (`2001:db8::7`,
//!   `::ffff:192.0.2.7`) → `ipv6:<16 hex>` of the canonical form; `::` is
//!   left alone.
//! - `ipv4`: dotted quads with octets up to 255, not inside a longer dotted
//!   run (`1.2.3.4.5` is left alone) → `ipv4:<16 hex>`.
//!
//! Then `custom` rules run in order: every match of `pattern` (Rust regex
//! syntax, not anchored) is replaced by `replacement`, in which `$1`,
//! `${1}` and `$name` stand for capture groups (write `$${name}` in the
//! config, since `${…}` is environment interpolation).
//!
//! The message is always redacted; so are the fields named in `fields`,
//! every string inside them included when they hold arrays or objects.
//! Each replacement is counted in
//! `iotel_redact_redactions_total{component_id, rule}`. The salt never
//! appears in logs or `Debug` output; give it from the environment with
//! `salt = "${VAR}"`.

mod rules;
#[cfg(test)]
mod tests;

use crate::transforms::filter::selector::compile_regex;
use crate::transforms::names::{LABEL_NAME_RULE, is_valid_label_name};
use crate::{BuildContext, Problem};
use iotel_engine::{Counter, Transform};
use iotel_model::Events;
use rules::{Pseudonyms, Rule};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Built-in rules: `email`, `phone`, `ipv4`, `ipv6`. Default
    /// `["email", "phone"]`.
    #[serde(default = "default_rules")]
    pub rules: Vec<BuiltinRule>,
    /// The salt of the pseudonyms; required by `email`, `ipv4` and `ipv6`.
    #[serde(default)]
    pub salt: Option<Secret>,
    /// Fields redacted besides the message. Default none.
    #[serde(default)]
    pub fields: Vec<String>,
    /// User rules, applied after the built-in ones, in order.
    #[serde(default)]
    pub custom: Vec<CustomRule>,
}

fn default_rules() -> Vec<BuiltinRule> {
    vec![BuiltinRule::Email, BuiltinRule::Phone]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinRule {
    // In the order they run.
    Email,
    Phone,
    Ipv6,
    Ipv4,
}

impl BuiltinRule {
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinRule::Email => "email",
            BuiltinRule::Phone => "phone",
            BuiltinRule::Ipv6 => "ipv6",
            BuiltinRule::Ipv4 => "ipv4",
        }
    }

    fn needs_salt(self) -> bool {
        self != BuiltinRule::Phone
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Names the rule in `iotel_redact_redactions_total{rule}`:
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, not a built-in rule's name.
    pub name: String,
    /// A regex; every match is replaced.
    pub pattern: String,
    /// What a match becomes. Default `"[<name>]"`.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// A secret string: its `Debug` prints `***`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if self.rules[..i].contains(r) {
                p.push(Problem::new(
                    format!("rules[{i}]"),
                    format!("\"{}\" is listed twice", r.as_str()),
                ));
            }
        }
        let mut salted: Vec<&str> = Vec::new();
        for r in self.rules.iter().filter(|r| r.needs_salt()) {
            if !salted.contains(&r.as_str()) {
                salted.push(r.as_str());
            }
        }
        match &self.salt {
            None if !salted.is_empty() => p.push(Problem::new(
                "salt",
                format!(
                    "required by the {} rule{}: pseudonyms are SHA-256 of the salt and the value; give it from the environment with salt = \"${{IOTEL_REDACT_SALT}}\"",
                    salted.join(", "),
                    if salted.len() > 1 { "s" } else { "" }
                ),
            )),
            Some(s) if s.expose().is_empty() => {
                p.push(Problem::new("salt", "expected a non-empty secret"));
            }
            _ => {}
        }
        for (i, f) in self.fields.iter().enumerate() {
            if f.is_empty() {
                p.push(Problem::new(
                    format!("fields[{i}]"),
                    "expected a field name",
                ));
            }
        }
        for (i, c) in self.custom.iter().enumerate() {
            let key = |k: &str| format!("custom[{i}].{k}");
            if !is_valid_label_name(&c.name) {
                p.push(Problem::new(
                    key("name"),
                    format!(
                        "\"{}\" is not a valid rule name ({LABEL_NAME_RULE})",
                        c.name
                    ),
                ));
            } else if ["email", "phone", "ipv4", "ipv6"].contains(&c.name.as_str()) {
                p.push(Problem::new(
                    key("name"),
                    format!("\"{}\" is a built-in rule's name", c.name),
                ));
            } else if self.custom[..i].iter().any(|e| e.name == c.name) {
                p.push(Problem::new(
                    key("name"),
                    format!("\"{}\" names two rules", c.name),
                ));
            }
            match compile_regex(&c.pattern, false) {
                Err(reason) => p.push(Problem::new(
                    key("pattern"),
                    format!("invalid regular expression \"{}\": {reason}", c.pattern),
                )),
                Ok(r) if r.is_match(b"") => p.push(Problem::new(
                    key("pattern"),
                    format!(
                        "\"{}\" matches the empty string, so it would insert the replacement between every character",
                        c.pattern
                    ),
                )),
                Ok(_) => {}
            }
        }
        if self.rules.is_empty() && self.custom.is_empty() {
            p.push(Problem::new(
                "rules",
                "redacts nothing: name a built-in rule or add a custom one",
            ));
        }
        p
    }

    /// # Errors
    /// A custom pattern that does not compile or a missing salt (`validate`
    /// reports them first).
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        Ok(Box::new(Redact::new(self, cx)?))
    }
}

/// The running transform.
#[derive(Debug)]
pub struct Redact {
    /// In the order they run, each with its counter.
    rules: Vec<(Rule, Counter)>,
    fields: Vec<String>,
    /// Replacements per rule in the batch at hand.
    pending: Vec<u64>,
}

impl Redact {
    /// # Errors
    /// A custom pattern that does not compile or a missing salt.
    pub fn new(config: &Config, cx: &BuildContext) -> Result<Self, Problem> {
        let counter = |name: &str| {
            cx.metrics.registry().counter(
                "iotel_redact_redactions_total",
                "Personal data the redact transform replaced, by rule.",
                &[("component_id", &cx.id), ("rule", name)],
            )
        };
        let pseudonyms = || match &config.salt {
            Some(s) if !s.expose().is_empty() => Ok(Pseudonyms::new(s.expose())),
            _ => Err(Problem::new(
                "salt",
                "required by the email, ipv4 and ipv6 rules",
            )),
        };
        let mut builtins = config.rules.clone();
        builtins.sort_unstable();
        builtins.dedup();
        let mut rules = Vec::new();
        for b in builtins {
            let rule = match b {
                BuiltinRule::Email => Rule::Email(pseudonyms()?),
                BuiltinRule::Phone => Rule::Phone,
                BuiltinRule::Ipv6 => Rule::Ipv6(pseudonyms()?),
                BuiltinRule::Ipv4 => Rule::Ipv4(pseudonyms()?),
            };
            rules.push((rule, counter(b.as_str())));
        }
        for (i, c) in config.custom.iter().enumerate() {
            let regex = compile_regex(&c.pattern, false).map_err(|reason| {
                Problem::new(
                    format!("custom[{i}].pattern"),
                    format!("invalid regular expression \"{}\": {reason}", c.pattern),
                )
            })?;
            let replacement = c
                .replacement
                .clone()
                .unwrap_or_else(|| format!("[{}]", c.name));
            rules.push((Rule::Custom { regex, replacement }, counter(&c.name)));
        }
        Ok(Self {
            pending: vec![0; rules.len()],
            rules,
            fields: config.fields.clone(),
        })
    }

    /// `text` with every rule applied; `None` when nothing matched.
    fn redact(&mut self, text: &str) -> Option<String> {
        let mut current = Cow::Borrowed(text);
        for ((rule, _), pending) in self.rules.iter().zip(&mut self.pending) {
            if let Some((replaced, n)) = rule.apply(&current) {
                *pending += n;
                current = Cow::Owned(replaced);
            }
        }
        match current {
            Cow::Borrowed(_) => None,
            Cow::Owned(s) => Some(s),
        }
    }

    fn redact_value(&mut self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let Some(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.redact_value(item);
                }
            }
            serde_json::Value::Object(map) => {
                for (_, item) in map.iter_mut() {
                    self.redact_value(item);
                }
            }
            _ => {}
        }
    }

    /// Redacts one record's message and named fields.
    pub fn redact_record(&mut self, r: &mut iotel_model::LogRecord) {
        if let Some(m) = self.redact(&r.message) {
            r.message = m;
        }
        for i in 0..self.fields.len() {
            if let Some(v) = r.fields.get_mut(&self.fields[i]) {
                self.redact_value(v);
            }
        }
    }

    /// Adds the batch's replacements to the counters.
    fn count(&mut self) {
        for ((_, counter), pending) in self.rules.iter().zip(&mut self.pending) {
            if *pending > 0 {
                counter.add(*pending);
                *pending = 0;
            }
        }
    }
}

impl Transform for Redact {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut records) => {
                for r in &mut records {
                    self.redact_record(r);
                }
                self.count();
                Events::Logs(records)
            }
            other => other,
        };
        out.push(events);
    }
}
