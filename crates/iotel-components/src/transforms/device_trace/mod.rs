//! `device_trace`: gives log records and spans of device protocols that
//! carry no trace header a deterministic trace id and span id derived from
//! the message's protocol identifiers (logs and spans), so the hops of one
//! message (device, broker, gateway, network server) line up in one trace.
//! Metrics pass unchanged.
//!
//! ```toml
//! [transforms.uplink_trace]
//! type = "device_trace"
//! inputs = ["gateway_logs"]
//! protocol = "lorawan"
//! fields = { dev_addr = "devaddr", fcnt = "fcnt" }
//! hop = "gateway"
//! ```
//!
//! The derivation, what identifies a message in each protocol, and the
//! collision analysis are in `iotel_formats::device_ids`. Every hop must
//! use the same `protocol`, `scope`, `time_bucket` and `fcnt_bits`, and
//! name the same identifiers (only the field names may differ).
//!
//! `fields` maps each identifier to the field holding it (default: the
//! identifier's own name). A record's fields (a span's attributes) are
//! looked in first, then its labels:
//!
//! | protocol | identifier | value |
//! |---|---|---|
//! | `lorawan` | `dev_addr` | 8 hex digits (`"26011BDA"`) or an integer |
//! | | `fcnt` | an integer, or its decimal text |
//! | | `dev_eui` | 16 hex digits; used only when named in `fields` |
//! | `coap` | `endpoint` | text (or a number) |
//! | | `token` | 0-16 hex digits; a missing field is the empty token |
//! | | `message_id` | 0-65535 |
//! | `mqtt` | `client_id` | text (or a number) |
//! | | `packet_id` | 1-65535 (QoS 1 and 2 only) |
//!
//! A log record gets the fields `trace_id` (32 hex digits) and `span_id`
//! (16 hex digits), the names the `otlp_logs` sink and the Loki sink's
//! structured metadata take trace context from. A span gets its `trace_id`
//! and `span_id`, and with `parent_hop` set the parent span id of that hop,
//! so the hops form a chain. A record that already has a trace id (a
//! `trace_id` field; a span whose trace id is not all zero) is left alone
//! unless `overwrite = true`. A record without the identifiers, or with
//! one that does not parse, passes unchanged. Each such record is counted
//! in `iotel_device_trace_unmapped_total{component_id, reason}`, reason
//! `field_missing`, `field_invalid` or `has_trace_id`; the first, second,
//! fourth… invalid value is logged with the field and the value.

#[cfg(test)]
mod tests;

use crate::{BuildContext, Problem};
use iotel_engine::config::Duration;
use iotel_engine::{Counter, Transform};
use iotel_formats::device_ids::{
    self, CoapToken, Discriminator, FcntBits, MessageKey, TimeBucket, parse_hex, parse_token,
};
use iotel_model::{Events, Labels};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroU64};

/// The log record field the trace id goes in.
pub const TRACE_ID_FIELD: &str = "trace_id";
/// The log record field the span id goes in.
pub const SPAN_ID_FIELD: &str = "span_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Lorawan,
    Coap,
    Mqtt,
}

impl Protocol {
    /// The identifiers of a message: (name, required).
    fn identifiers(self) -> &'static [(&'static str, bool)] {
        match self {
            Protocol::Lorawan => &[("dev_addr", true), ("fcnt", true), ("dev_eui", false)],
            Protocol::Coap => &[("endpoint", true), ("token", false), ("message_id", true)],
            Protocol::Mqtt => &[("client_id", true), ("packet_id", true)],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `lorawan`, `coap` or `mqtt`.
    pub protocol: Protocol,
    /// Identifier → the field holding it. Default: the identifier's name.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// This hop's name; the span id is derived from it.
    pub hop: String,
    /// The hop before this one: spans get its span id as their parent.
    #[serde(default)]
    pub parent_hop: Option<String>,
    /// The width of the time bucket that is part of the trace id's input;
    /// `"0s"` leaves the bucket out. Default `"1h"`.
    #[serde(default = "default_time_bucket")]
    pub time_bucket: Duration,
    /// A namespace every hop shares (tenant, network, broker). Default "".
    #[serde(default)]
    pub scope: String,
    /// LoRaWAN only: 16 (what a gateway sees) or 32 (device and network
    /// server). Default 16.
    #[serde(default)]
    pub fcnt_bits: Option<u8>,
    /// Replace a trace id the record already has. Default false.
    #[serde(default)]
    pub overwrite: bool,
}

fn default_time_bucket() -> Duration {
    Duration::from_secs(3600)
}

impl Config {
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let known = self.protocol.identifiers();
        let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
        for (id, field) in &self.fields {
            if !names.contains(&id.as_str()) {
                p.push(Problem::new(
                    format!("fields.{id}"),
                    format!(
                        "unknown identifier \"{id}\" for this protocol; expected one of {}",
                        names.join(", ")
                    ),
                ));
            } else if field.is_empty() {
                p.push(Problem::new(
                    format!("fields.{id}"),
                    "expected a field name, got \"\"",
                ));
            }
        }
        if self.hop.is_empty() {
            p.push(Problem::new("hop", "expected the hop's name, got \"\""));
        }
        if self.parent_hop.as_deref() == Some("") {
            p.push(Problem::new(
                "parent_hop",
                "expected the previous hop's name, got \"\"",
            ));
        } else if self.parent_hop.as_deref() == Some(self.hop.as_str()) {
            p.push(Problem::new(
                "parent_hop",
                "is this hop itself; name the hop before it",
            ));
        }
        match (self.protocol, self.fcnt_bits) {
            (_, None) | (Protocol::Lorawan, Some(16 | 32)) => {}
            (Protocol::Lorawan, Some(n)) => p.push(Problem::new(
                "fcnt_bits",
                format!("expected 16 or 32, got {n}"),
            )),
            (_, Some(_)) => p.push(Problem::new(
                "fcnt_bits",
                "applies to protocol \"lorawan\" only",
            )),
        }
        if self.time_bucket.get().subsec_nanos() != 0 && self.time_bucket.get().as_secs() == 0 {
            p.push(Problem::new(
                "time_bucket",
                "expected \"0s\" or at least one second",
            ));
        }
        p
    }

    /// # Errors
    /// None today; the signature is every component's.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Transform>, Problem> {
        let field = |id: &str| {
            self.fields
                .get(id)
                .cloned()
                .unwrap_or_else(|| id.to_string())
        };
        let keys = match self.protocol {
            Protocol::Lorawan => Keys::Lorawan {
                dev_addr: field("dev_addr"),
                fcnt: field("fcnt"),
                dev_eui: self.fields.get("dev_eui").cloned(),
                fcnt_bits: if self.fcnt_bits == Some(32) {
                    FcntBits::Full32
                } else {
                    FcntBits::Low16
                },
            },
            Protocol::Coap => Keys::Coap {
                endpoint: field("endpoint"),
                token: field("token"),
                message_id: field("message_id"),
            },
            Protocol::Mqtt => Keys::Mqtt {
                client_id: field("client_id"),
                packet_id: field("packet_id"),
            },
        };
        let width = u64::try_from(self.time_bucket.get().as_nanos()).unwrap_or(u64::MAX);
        let unmapped = |reason: &str| {
            cx.metrics.registry().counter(
                "iotel_device_trace_unmapped_total",
                "Records device_trace passed on without deriving a trace id, by reason.",
                &[("component_id", &cx.id), ("reason", reason)],
            )
        };
        Ok(Box::new(DeviceTrace {
            keys,
            hop: self.hop.clone(),
            parent_hop: self.parent_hop.clone(),
            bucket_width: NonZeroU64::new(width),
            scope: self.scope.clone(),
            overwrite: self.overwrite,
            missing: unmapped("field_missing"),
            invalid: unmapped("field_invalid"),
            has_trace: unmapped("has_trace_id"),
            id: cx.id.clone(),
        }))
    }
}

/// The field names of the identifiers.
#[derive(Debug)]
enum Keys {
    Lorawan {
        dev_addr: String,
        fcnt: String,
        dev_eui: Option<String>,
        fcnt_bits: FcntBits,
    },
    Coap {
        endpoint: String,
        token: String,
        message_id: String,
    },
    Mqtt {
        client_id: String,
        packet_id: String,
    },
}

/// Why a record got no trace id.
#[derive(Debug, PartialEq)]
enum Unmapped {
    Missing,
    Invalid {
        field: String,
        value: String,
        expected: &'static str,
    },
}

/// One identifier's value, from the fields or the labels.
enum Found<'a> {
    Json(&'a Value),
    Label(&'a str),
}

impl<'a> Found<'a> {
    fn text(&self) -> Option<Cow<'a, str>> {
        match self {
            Found::Json(Value::String(s)) => Some(Cow::Borrowed(s)),
            Found::Json(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Found::Json(_) => None,
            Found::Label(s) => Some(Cow::Borrowed(s)),
        }
    }

    fn shown(&self) -> String {
        match self {
            Found::Json(v) => v.to_string(),
            Found::Label(s) => format!("{s:?}"),
        }
    }

    /// A non-negative integer, as a JSON number or its decimal text.
    fn uint(&self) -> Option<u64> {
        match self {
            Found::Json(Value::Number(n)) => n.as_u64(),
            _ => self.text()?.trim().parse().ok(),
        }
    }
}

fn find<'a>(fields: &'a Map<String, Value>, labels: &'a Labels, name: &str) -> Option<Found<'a>> {
    match fields.get(name) {
        Some(v) => Some(Found::Json(v)),
        None => labels.get(name).map(Found::Label),
    }
}

fn invalid(field: &str, found: &Found<'_>, expected: &'static str) -> Unmapped {
    Unmapped::Invalid {
        field: field.to_string(),
        value: found.shown(),
        expected,
    }
}

/// A record's identifiers, borrowed from it where they are text.
enum Parts<'a> {
    Fixed(MessageKey<'static>),
    Coap {
        endpoint: Cow<'a, str>,
        token: CoapToken,
        message_id: u16,
    },
    Mqtt {
        client_id: Cow<'a, str>,
        packet_id: NonZeroU16,
    },
}

impl Parts<'_> {
    fn key(&self) -> MessageKey<'_> {
        match self {
            Parts::Fixed(k) => *k,
            Parts::Coap {
                endpoint,
                token,
                message_id,
            } => MessageKey::Coap {
                endpoint,
                token: *token,
                message_id: *message_id,
            },
            Parts::Mqtt {
                client_id,
                packet_id,
            } => MessageKey::Mqtt {
                client_id,
                packet_id: *packet_id,
            },
        }
    }
}

impl Keys {
    /// The identifiers of a record.
    fn parts<'a>(
        &self,
        fields: &'a Map<String, Value>,
        labels: &'a Labels,
    ) -> Result<Parts<'a>, Unmapped> {
        let get = |name: &str| find(fields, labels, name).ok_or(Unmapped::Missing);
        match self {
            Keys::Lorawan {
                dev_addr,
                fcnt,
                dev_eui,
                fcnt_bits,
            } => {
                let a = get(dev_addr)?;
                let addr = match &a {
                    Found::Json(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    _ => a.text().and_then(|s| {
                        let s = s.trim();
                        let s = s
                            .strip_prefix("0x")
                            .or_else(|| s.strip_prefix("0X"))
                            .unwrap_or(s);
                        parse_hex::<4>(s).map(u32::from_be_bytes)
                    }),
                }
                .ok_or_else(|| {
                    invalid(
                        dev_addr,
                        &a,
                        "a DevAddr: 8 hex digits or an integer below 2^32",
                    )
                })?;
                let f = get(fcnt)?;
                let count = f
                    .uint()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid(fcnt, &f, "an FCnt: an integer from 0 to 4294967295"))?;
                let eui = match dev_eui {
                    None => None,
                    Some(name) => {
                        let e = get(name)?;
                        Some(
                            e.text()
                                .and_then(|s| parse_hex::<8>(&s))
                                .ok_or_else(|| invalid(name, &e, "a DevEUI: 16 hex digits"))?,
                        )
                    }
                };
                Ok(Parts::Fixed(MessageKey::Lorawan {
                    dev_addr: addr,
                    fcnt: count,
                    fcnt_bits: *fcnt_bits,
                    dev_eui: eui,
                }))
            }
            Keys::Coap {
                endpoint,
                token,
                message_id,
            } => {
                let e = get(endpoint)?;
                let ep = e
                    .text()
                    .ok_or_else(|| invalid(endpoint, &e, "a CoAP endpoint: text or a number"))?;
                let tok = match find(fields, labels, token) {
                    None => CoapToken::default(),
                    Some(t) => t
                        .text()
                        .and_then(|s| parse_token(s.trim()))
                        .ok_or_else(|| invalid(token, &t, "a CoAP token: 0 to 16 hex digits"))?,
                };
                let m = get(message_id)?;
                let mid = m
                    .uint()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        invalid(
                            message_id,
                            &m,
                            "a CoAP Message ID: an integer from 0 to 65535",
                        )
                    })?;
                Ok(Parts::Coap {
                    endpoint: ep,
                    token: tok,
                    message_id: mid,
                })
            }
            Keys::Mqtt {
                client_id,
                packet_id,
            } => {
                let c = get(client_id)?;
                let client = c
                    .text()
                    .ok_or_else(|| invalid(client_id, &c, "an MQTT client id: text or a number"))?;
                let p = get(packet_id)?;
                let pid = p
                    .uint()
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(NonZeroU16::new)
                    .ok_or_else(|| {
                        invalid(
                            packet_id,
                            &p,
                            "an MQTT Packet Identifier: an integer from 1 to 65535",
                        )
                    })?;
                Ok(Parts::Mqtt {
                    client_id: client,
                    packet_id: pid,
                })
            }
        }
    }
}

/// The running transform.
#[derive(Debug)]
pub struct DeviceTrace {
    keys: Keys,
    hop: String,
    parent_hop: Option<String>,
    bucket_width: Option<NonZeroU64>,
    scope: String,
    overwrite: bool,
    missing: Counter,
    invalid: Counter,
    has_trace: Counter,
    id: String,
}

/// The ids a record gets.
struct Ids {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
}

impl DeviceTrace {
    fn ids(&self, fields: &Map<String, Value>, labels: &Labels, time_ns: i64) -> Option<Ids> {
        let parts = match self.keys.parts(fields, labels) {
            Ok(k) => k,
            Err(Unmapped::Missing) => {
                self.missing.inc();
                return None;
            }
            Err(Unmapped::Invalid {
                field,
                value,
                expected,
            }) => {
                self.invalid.inc();
                let n = self.invalid.get();
                if n.is_power_of_two() {
                    tracing::warn!(
                        component_id = %self.id,
                        "field \"{field}\" holds {value}, expected {expected}; the record passes \
                         without a derived trace id ({n} so far)"
                    );
                }
                return None;
            }
        };
        let d = Discriminator {
            scope: &self.scope,
            bucket: self.bucket_width.map(|w| TimeBucket::of(time_ns, w)),
        };
        let trace_id = device_ids::trace_id(&parts.key(), &d);
        Some(Ids {
            trace_id,
            span_id: device_ids::span_id(&trace_id, &self.hop),
            parent_span_id: self
                .parent_hop
                .as_deref()
                .map(|h| device_ids::span_id(&trace_id, h)),
        })
    }
}

impl Transform for DeviceTrace {
    fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
        let events = match events {
            Events::Logs(mut logs) => {
                for r in &mut logs {
                    if !self.overwrite && r.fields.contains_key(TRACE_ID_FIELD) {
                        self.has_trace.inc();
                        continue;
                    }
                    if let Some(ids) = self.ids(&r.fields, &r.labels, r.timestamp_ns) {
                        r.fields.insert(
                            TRACE_ID_FIELD.into(),
                            Value::String(device_ids::hex(&ids.trace_id)),
                        );
                        r.fields.insert(
                            SPAN_ID_FIELD.into(),
                            Value::String(device_ids::hex(&ids.span_id)),
                        );
                    }
                }
                Events::Logs(logs)
            }
            Events::Traces(mut spans) => {
                for s in &mut spans {
                    if !self.overwrite && s.trace_id != [0; 16] {
                        self.has_trace.inc();
                        continue;
                    }
                    if let Some(ids) = self.ids(&s.attributes, &s.labels, s.start_ns) {
                        s.trace_id = ids.trace_id;
                        s.span_id = ids.span_id;
                        if ids.parent_span_id.is_some() {
                            s.parent_span_id = ids.parent_span_id;
                        }
                    }
                }
                Events::Traces(spans)
            }
            // Metrics pass unchanged.
            other => other,
        };
        out.push(events);
    }
}
