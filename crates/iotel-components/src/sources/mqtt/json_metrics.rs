//! `format = "json_metrics"`: the readings devices publish as JSON
//! (`{"temperature": 21.5, "battery": {"volts": 3.61}, "unit": "C"}`)
//! become gauge samples, one per number:
//!
//! - a member holding a number (or a boolean, as 0/1) is a sample named
//!   `metric_prefix` + its key; nested objects join their keys with `_`
//!   (`battery_volts`); characters a Prometheus name cannot hold become
//!   `_`;
//! - `label_fields`: members whose value (a string, number or boolean)
//!   becomes a label of every sample of that object instead;
//! - `timestamp_field`: a member with the reading's time, Unix
//!   milliseconds or an RFC 3339 string; without it, or when it is missing,
//!   the time of receipt. One that is there but unreadable drops the object
//!   (`invalid_timestamp`) rather than file its readings at the wrong time;
//! - strings (not in `label_fields`), nulls and arrays inside an object
//!   carry no reading and are skipped; an object with no reading at all is
//!   dropped (`no_readings`). A top-level array is one object per element.

#[cfg(feature = "mqtt")]
use iotel_model::{Labels, Metric, MetricType};
use serde::Deserialize;
#[cfg(feature = "mqtt")]
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMetricsConfig {
    #[serde(default)]
    pub metric_prefix: String,
    #[serde(default)]
    pub label_fields: Vec<String>,
    #[serde(default)]
    pub timestamp_field: Option<String>,
}

/// Why an object was dropped, with its words.
#[cfg(feature = "mqtt")]
pub(super) type Drop = (&'static str, String);

#[cfg(feature = "mqtt")]
impl JsonMetricsConfig {
    /// The samples of one JSON object, labelled with `base` and its label
    /// fields.
    ///
    /// # Errors
    /// Why the object gives no sample.
    pub(super) fn samples(
        &self,
        object: &Map<String, Value>,
        base: &Labels,
        now_ms: i64,
        out: &mut Vec<Metric>,
    ) -> Result<(), Drop> {
        let timestamp_ms = match self.timestamp_field.as_ref().and_then(|f| object.get(f)) {
            None => now_ms,
            Some(v) => parse_timestamp(v).ok_or_else(|| {
                (
                    "invalid_timestamp",
                    format!(
                        "{:?} is {v}: expected Unix milliseconds or an RFC 3339 time",
                        self.timestamp_field.as_deref().unwrap_or_default()
                    ),
                )
            })?,
        };
        let mut labels = base.to_builder();
        for name in &self.label_fields {
            match object.get(name) {
                Some(Value::String(s)) => {
                    labels.set(name, s);
                }
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    labels.set(name, &v.to_string());
                }
                _ => {}
            }
        }
        let labels = labels.build();
        let before = out.len();
        let mut name = self.metric_prefix.clone();
        self.walk(object, &mut name, true, &labels, timestamp_ms, out);
        if out.len() == before {
            return Err((
                "no_readings",
                "an object without a number or boolean member".to_string(),
            ));
        }
        Ok(())
    }

    fn walk(
        &self,
        object: &Map<String, Value>,
        name: &mut String,
        top: bool,
        labels: &Labels,
        timestamp_ms: i64,
        out: &mut Vec<Metric>,
    ) {
        for (key, value) in object {
            if top
                && (self.label_fields.contains(key) || self.timestamp_field.as_ref() == Some(key))
            {
                continue;
            }
            let at = name.len();
            if !top {
                name.push('_');
            }
            push_sanitized(name, key);
            match value {
                Value::Number(n) => {
                    if let Some(v) = n.as_f64() {
                        out.push(sample(name, labels, v, timestamp_ms));
                    }
                }
                Value::Bool(b) => {
                    out.push(sample(name, labels, f64::from(u8::from(*b)), timestamp_ms))
                }
                Value::Object(inner) => self.walk(inner, name, false, labels, timestamp_ms, out),
                Value::String(_) | Value::Null | Value::Array(_) => {}
            }
            name.truncate(at);
        }
    }
}

#[cfg(feature = "mqtt")]
fn sample(name: &str, labels: &Labels, value: f64, timestamp_ms: i64) -> Metric {
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        format!("_{name}")
    } else {
        name.to_string()
    };
    Metric::new(name, MetricType::Gauge, labels.clone(), value, timestamp_ms)
}

#[cfg(feature = "mqtt")]
fn push_sanitized(name: &mut String, key: &str) {
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
}

#[cfg(feature = "mqtt")]
fn parse_timestamp(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s
            .parse::<jiff::Timestamp>()
            .ok()
            .map(jiff::Timestamp::as_millisecond),
        _ => None,
    }
}

#[cfg(all(test, feature = "mqtt"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A sample as (name, labels, value, time).
    type Sample = (String, Vec<(String, String)>, f64, i64);

    fn run(config: &JsonMetricsConfig, json: &str) -> Result<Vec<Sample>, Drop> {
        let Value::Object(o) = serde_json::from_str(json).unwrap() else {
            panic!("not an object");
        };
        let mut out = Vec::new();
        config.samples(
            &o,
            &Labels::from_pairs([("device_id", "d1")]),
            1_000,
            &mut out,
        )?;
        Ok(out
            .into_iter()
            .map(|m| {
                let labels = m
                    .labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                (m.name.to_string(), labels, m.value, m.timestamp_ms)
            })
            .collect())
    }

    #[test]
    fn numbers_become_gauges_nested_keys_join_and_label_fields_label_them() {
        let c = JsonMetricsConfig {
            metric_prefix: "plant_".into(),
            label_fields: vec!["unit".into()],
            timestamp_field: Some("ts".into()),
        };
        let got = run(
            &c,
            r#"{"temp": 21.5, "battery": {"volts": 3.61, "ok": true}, "unit": "C",
                "ts": 1700000000123, "name": "pump", "tags": [1], "x-y": 2, "1st": 1}"#,
        )
        .unwrap();
        let l = |unit: &str| {
            vec![
                ("device_id".to_string(), "d1".to_string()),
                ("unit".to_string(), unit.to_string()),
            ]
        };
        let ts = 1_700_000_000_123;
        assert_eq!(
            got,
            vec![
                ("plant_1st".to_string(), l("C"), 1.0, ts),
                ("plant_battery_ok".to_string(), l("C"), 1.0, ts),
                ("plant_battery_volts".to_string(), l("C"), 3.61, ts),
                ("plant_temp".to_string(), l("C"), 21.5, ts),
                ("plant_x_y".to_string(), l("C"), 2.0, ts),
            ]
        );
    }

    #[test]
    fn without_a_prefix_a_leading_digit_gets_an_underscore_and_time_is_receipt() {
        let got = run(&JsonMetricsConfig::default(), r#"{"1st": 1, "rssi": -71}"#).unwrap();
        assert_eq!(got[0].0, "_1st");
        assert_eq!(got[1].0, "rssi");
        assert_eq!(got[1].3, 1_000);
    }

    #[test]
    fn rfc3339_times_are_read_and_bad_ones_drop_the_object() {
        let c = JsonMetricsConfig {
            timestamp_field: Some("at".into()),
            ..JsonMetricsConfig::default()
        };
        let got = run(&c, r#"{"at": "2026-11-25T01:00:00.250Z", "v": 1}"#).unwrap();
        assert_eq!(got[0].3, 1_795_568_400_250);
        assert_eq!(
            run(&c, r#"{"at": "yesterday", "v": 1}"#).unwrap_err(),
            (
                "invalid_timestamp",
                "\"at\" is \"yesterday\": expected Unix milliseconds or an RFC 3339 time"
                    .to_string()
            )
        );
        assert_eq!(run(&c, r#"{"name": "pump"}"#).unwrap_err().0, "no_readings");
    }
}
