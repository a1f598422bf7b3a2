//! Random batches round-trip; arbitrary and mutated bytes never panic the
//! decoder.

use super::tests::{built_in, grouped, json, key};
use super::*;
use crate::strategies::{self, meta, severity, timestamp, value};
use iotel_model::{Exemplar, Labels, LogRecord, Metric, Span, SpanStatus};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::sync::Arc;

/// Label names for the native codec: the dictionary takes any string.
const NAMES: &[&str] = &["", "a", "device_id", "le", "zone", "ü"];

fn labels() -> impl Strategy<Value = Labels> {
    strategies::labels(NAMES)
}

fn exemplar() -> impl Strategy<Value = Option<Box<Exemplar>>> {
    strategies::exemplar(NAMES)
}

/// Samples of a few series, so that series repeat and interleave.
pub(super) fn metric_batch() -> impl Strategy<Value = Vec<Metric>> {
    let series = proptest::collection::vec(
        (select(vec!["", "up", "rtt_bucket"]), labels(), meta()),
        1..6,
    );
    let samples =
        proptest::collection::vec((any::<Index>(), value(), timestamp(), exemplar()), 0..40);
    (series, samples).prop_map(|(series, samples)| {
        samples
            .into_iter()
            .map(|(which, value, timestamp_ms, exemplar)| {
                let (name, labels, meta) = which.get(&series);
                Metric {
                    name: Arc::from(*name),
                    labels: labels.clone(),
                    value,
                    timestamp_ms,
                    meta: meta.clone(),
                    exemplar,
                }
            })
            .collect()
    })
}

fn fields() -> impl Strategy<Value = Vec<(String, &'static str)>> {
    let name = select(vec!["k", "attempt", "peer", "ü"]).prop_map(String::from);
    let value = select(vec![
        "1",
        "-7",
        "18446744073709551615",
        "0.5",
        "\"s\"",
        "\"ü\\n\\\"\"",
        "true",
        "null",
        "[1,\"a\",[]]",
        "{\"k\":{\"n\":-2}}",
    ]);
    proptest::collection::vec((name, value), 0..4)
}

pub(super) fn log_batch() -> impl Strategy<Value = Vec<LogRecord>> {
    let message = prop_oneof![
        select(vec!["", "boot", "link down"]).prop_map(String::from),
        any::<String>()
    ];
    let record = (timestamp(), labels(), message, severity(), fields()).prop_map(
        |(timestamp_ns, labels, message, severity, fields)| {
            let mut l = LogRecord::new(timestamp_ns, message);
            l.labels = labels;
            l.severity = severity;
            for (k, v) in fields {
                l.fields.insert(k, json(v));
            }
            l
        },
    );
    proptest::collection::vec(record, 0..20)
}

pub(super) fn span_batch() -> impl Strategy<Value = Vec<Span>> {
    let ids = (
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
        proptest::option::of(any::<[u8; 8]>()),
    );
    let status = select(vec![SpanStatus::Unset, SpanStatus::Ok, SpanStatus::Error]);
    let name = select(vec!["", "GET /", "publish"]).prop_map(String::from);
    let span = (
        ids,
        name,
        timestamp(),
        timestamp(),
        labels(),
        fields(),
        status,
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id),
                name,
                start_ns,
                end_ns,
                labels,
                fields,
                status,
            )| {
                let mut s = Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name,
                    start_ns,
                    end_ns,
                    labels,
                    attributes: Default::default(),
                    status,
                };
                for (k, v) in fields {
                    s.attributes.insert(k, json(v));
                }
                s
            },
        );
    proptest::collection::vec(span, 0..20)
}

/// Every built-in compression: all four in a default build.
fn compression() -> impl Strategy<Value = Compression> {
    select(built_in())
}

/// A valid frame of any signal.
fn any_frame() -> impl Strategy<Value = Vec<u8>> {
    let events = prop_oneof![
        metric_batch().prop_map(Events::Metrics),
        log_batch().prop_map(Events::Logs),
        span_batch().prop_map(Events::Traces),
    ];
    (events, any::<u64>(), compression())
        .prop_map(|(events, seq, c)| encode("agent-1", seq, &events, c).expect("encodes"))
}

/// Decodes within small limits, so a bug that trusts a count shows up as
/// an allocation failure rather than passing by luck.
fn decode_small(frame: &[u8]) -> Result<Batch, DecodeError> {
    decode(
        frame,
        &Limits {
            max_body_bytes: 1 << 20,
            max_records: 1 << 16,
        },
    )
}

proptest! {
    #[test]
    fn metric_batches_round_trip(
        metrics in metric_batch(),
        sequence in any::<u64>(),
        agent in ".{0,20}",
        c in compression(),
    ) {
        let frame = encode(&agent, sequence, &Events::Metrics(metrics.clone()), c).unwrap();
        let batch = decode(&frame, &Limits::default()).unwrap();
        prop_assert_eq!(&batch.header.agent_id, &agent);
        prop_assert_eq!(batch.header.sequence, sequence);
        let Events::Metrics(back) = batch.events else {
            return Err(TestCaseError::fail("not metrics"));
        };
        prop_assert_eq!(back.iter().map(key).collect::<Vec<_>>(), grouped(&metrics));
    }

    #[test]
    fn log_batches_round_trip_in_order(logs in log_batch(), c in compression()) {
        let events = Events::Logs(logs);
        let frame = encode("a", 1, &events, c).unwrap();
        prop_assert_eq!(decode(&frame, &Limits::default()).unwrap().events, events);
    }

    #[test]
    fn span_batches_round_trip_in_order(spans in span_batch(), c in compression()) {
        let events = Events::Traces(spans);
        let frame = encode("a", 1, &events, c).unwrap();
        prop_assert_eq!(decode(&frame, &Limits::default()).unwrap().events, events);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_header(&bytes);
        let _ = decode_small(&bytes);
    }

    /// A valid header over an arbitrary body, to reach the body's parser.
    #[test]
    fn decode_never_panics_on_arbitrary_bodies(
        signal in 0u8..3,
        records in prop_oneof![0u64..8, any::<u64>()],
        body in proptest::collection::vec(
            prop_oneof![0u8..4, any::<u8>()],
            0..256,
        ),
    ) {
        let mut frame = MAGIC.to_vec();
        frame.extend([VERSION, 0, signal, 1, b'a', 1]);
        wire::put_uvarint(&mut frame, records);
        wire::put_uvarint(&mut frame, body.len() as u64);
        frame.extend_from_slice(&body);
        let _ = decode_small(&frame);
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        frame in any_frame(),
        mutations in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let mut frame = frame;
        for (at, byte, how) in mutations {
            if frame.is_empty() {
                break;
            }
            let i = at.index(frame.len());
            match how {
                0 => frame[i] ^= byte | 1,
                1 => frame[i] = byte,
                2 => frame.truncate(i),
                _ => frame.insert(i, byte),
            }
        }
        let _ = decode_header(&frame);
        let _ = decode_small(&frame);
    }
}

/// Any name, any attribute key, and scalar attribute values of every JSON
/// kind over their whole ranges (finite floats: JSON has no others).
fn span_with_any_strings() -> impl Strategy<Value = Span> {
    let scalar = prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
    ];
    (
        any::<String>(),
        proptest::collection::btree_map(any::<String>(), scalar, 0..4),
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
    )
        .prop_map(|(name, attrs, trace_id, span_id)| Span {
            trace_id,
            span_id,
            parent_span_id: Some(span_id),
            name,
            start_ns: i64::MIN,
            end_ns: i64::MAX,
            labels: Labels::empty(),
            attributes: attrs.into_iter().collect(),
            status: SpanStatus::Error,
        })
}

proptest! {
    #[test]
    fn spans_with_any_strings_and_numbers_round_trip(
        spans in proptest::collection::vec(span_with_any_strings(), 1..4),
    ) {
        let events = Events::Traces(spans);
        let frame = encode("a", 1, &events, Compression::None).unwrap();
        prop_assert_eq!(decode(&frame, &Limits::default()).unwrap().events, events);
    }
}
