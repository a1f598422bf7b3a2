//! `topic_pattern`: labels from a message's topic, so devices that only
//! speak MQTT get their `device_id` (and site, kind…) from where they
//! publish:
//!
//! ```toml
//! topic_pattern = "plant/{site}/{device_id}/+/#"
//! ```
//!
//! The pattern is matched level by level (`/`-separated): `{name}` takes
//! one whole level into the label `name`, `+` matches any one level, `#`
//! (last only) the rest, and anything else must be equal. A topic that
//! does not match is still taken, without those labels, and counted
//! (`error_code="topic_unmatched"`).

#[cfg(feature = "mqtt")]
use iotel_model::LabelsBuilder;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Capture(String),
    Any,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(Vec<Level>);

impl TopicPattern {
    /// # Errors
    /// What is wrong with the pattern, in words.
    pub fn parse(pattern: &str) -> Result<TopicPattern, String> {
        if pattern.is_empty() {
            return Err(
                "expected a pattern such as \"devices/{device_id}/#\", got an empty string".into(),
            );
        }
        let levels: Vec<&str> = pattern.split('/').collect();
        let mut out = Vec::with_capacity(levels.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, level) in levels.iter().enumerate() {
            let parsed = match *level {
                "#" if i + 1 == levels.len() => Level::Rest,
                "#" => return Err(format!("{pattern:?}: `#` must be the last level")),
                "+" => Level::Any,
                l if l.starts_with('{') && l.ends_with('}') && l.len() > 2 => {
                    let name = &l[1..l.len() - 1];
                    if !is_label_name(name) {
                        return Err(format!(
                            "{pattern:?}: {{{name}}}: a label name is a letter or `_`, then letters, \
                             digits or `_`"
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!("{pattern:?}: {{{name}}} is captured twice"));
                    }
                    names.push(name);
                    Level::Capture(name.to_string())
                }
                l if l.contains(['{', '}', '+', '#']) => {
                    return Err(format!(
                        "{pattern:?}: level {l:?}: `{{name}}`, `+` and `#` must each be a whole level"
                    ));
                }
                l => Level::Literal(l.to_string()),
            };
            out.push(parsed);
        }
        if names.is_empty() {
            return Err(format!(
                "{pattern:?}: captures no label: expected at least one {{name}} level"
            ));
        }
        Ok(TopicPattern(out))
    }

    #[cfg(feature = "mqtt")]
    /// Sets the captured labels of `topic` on `labels`; false when the
    /// topic does not match (nothing is set then).
    pub fn apply(&self, topic: &str, labels: &mut LabelsBuilder) -> bool {
        let mut captured: Vec<(&str, &str)> = Vec::with_capacity(self.0.len());
        let mut levels = topic.split('/');
        for p in &self.0 {
            match p {
                Level::Rest => {
                    for (name, value) in captured {
                        labels.set(name, value);
                    }
                    return true;
                }
                _ => {
                    let Some(level) = levels.next() else {
                        return false;
                    };
                    match p {
                        Level::Literal(l) if l != level => return false,
                        Level::Capture(name) => captured.push((name, level)),
                        _ => {}
                    }
                }
            }
        }
        if levels.next().is_some() {
            return false;
        }
        for (name, value) in captured {
            labels.set(name, value);
        }
        true
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(all(test, feature = "mqtt"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use iotel_model::Labels;

    fn labels(pattern: &str, topic: &str) -> Option<Vec<(String, String)>> {
        let p = TopicPattern::parse(pattern).unwrap();
        let mut b = Labels::empty().to_builder();
        p.apply(topic, &mut b).then(|| {
            b.build()
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect()
        })
    }

    fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn captures_become_labels_and_wildcards_match_what_they_match() {
        let p = "plant/{site}/{device_id}/+/#";
        assert_eq!(
            labels(p, "plant/p7/pump-3/telemetry/temp/raw"),
            pairs(&[("device_id", "pump-3"), ("site", "p7")])
        );
        assert_eq!(
            labels(p, "plant/p7/pump-3/telemetry"),
            pairs(&[("device_id", "pump-3"), ("site", "p7")])
        );
        assert_eq!(labels(p, "plant/p7/pump-3"), None);
        assert_eq!(labels(p, "factory/p7/pump-3/x"), None);
        assert_eq!(
            labels("devices/{device_id}", "devices/d1"),
            pairs(&[("device_id", "d1")])
        );
        assert_eq!(labels("devices/{device_id}", "devices/d1/extra"), None);
        assert_eq!(labels("devices/{device_id}", "devices"), None);
        // An empty level is a level.
        assert_eq!(labels("{a}/{b}", "/x"), pairs(&[("a", ""), ("b", "x")]));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let e = |p: &str| TopicPattern::parse(p).unwrap_err();
        assert_eq!(e("a/#/{x}"), "\"a/#/{x}\": `#` must be the last level");
        assert_eq!(
            e("a/{1x}"),
            "\"a/{1x}\": {1x}: a label name is a letter or `_`, then letters, digits or `_`"
        );
        assert_eq!(e("{a}/{a}"), "\"{a}/{a}\": {a} is captured twice");
        assert_eq!(
            e("a/dev{id}"),
            "\"a/dev{id}\": level \"dev{id}\": `{name}`, `+` and `#` must each be a whole level"
        );
        assert_eq!(
            e("a/+/b"),
            "\"a/+/b\": captures no label: expected at least one {name} level"
        );
        assert!(e("").starts_with("expected a pattern"));
    }

    proptest::proptest! {
        #[test]
        fn matching_never_panics_and_a_match_captures_every_name(topic in "[a-z/+#{}]{0,40}") {
            let p = TopicPattern::parse("{a}/+/{b}/#").unwrap();
            let mut b = Labels::empty().to_builder();
            if p.apply(&topic, &mut b) {
                let l = b.build();
                proptest::prop_assert!(l.get("a").is_some() && l.get("b").is_some());
            }
        }
    }
}
