//! How many bytes a span takes on the wire: OTLP protobuf (plain and
//! gzipped, as OTLP/HTTP sends it) against the native batch format under
//! each of its compressions, on the same spans, in batches of 1, 10, 100
//! and 1,000 spans.
//!
//! The spans are a fleet's telemetry path. Every reading is one trace:
//!
//! 1. on the device (`service.name = sensor-fw`, `device_id`, `tenant`):
//!    `read sensors` (internal, 5-40 ms), and its child `publish
//!    fleet/telemetry` (producer; `messaging.system = mqtt`,
//!    `messaging.destination.name = fleet/<device>/telemetry`,
//!    `messaging.operation.type`, `messaging.message.body.size`);
//! 2. on the gateway (`service.name = iotel-gateway`, `gateway_id`,
//!    `tenant`): `process fleet/telemetry` (consumer, the same messaging
//!    attributes plus `device_id`), and its child `POST /v1/ingest`
//!    (client; `http.request.method`, `http.response.status_code`,
//!    `server.address`, `url.full`; one in 50 fails with 503 and an error
//!    status).
//!
//! Two streams: an edge agent's (one device, its own two spans per
//! reading, a reading every 10 s) and a gateway's (200 devices' readings
//! arriving interleaved, all four spans each). Ids are random, 16 and 8
//! bytes whole; times are nanoseconds with jitter. Everything is seeded:
//! two runs print the same tables.
//!
//! Run `bash bench/span-encoding.sh`.

use flate2::write::GzEncoder;
use iotel_formats::native::{self, Compression};
use iotel_formats::otlp::traces;
use iotel_model::{Events, Labels, Span, SpanStatus};
use prost::Message as _;
use serde_json::{Map, Value, json};
use std::error::Error;
use std::io::Write as _;

const BATCH_SPANS: [usize; 4] = [1, 10, 100, 1000];
/// Batches measured per size (fewer for the largest); bytes are averaged.
const SPANS_MEASURED: usize = 4000;
const GATEWAY_DEVICES: usize = 200;
const SEED: u64 = 0x5eed_5ba1_1d00;
/// OpenTelemetry collectors' default gzip level (Go's DefaultCompression).
const GZIP_LEVEL: u32 = 6;
const T0: i64 = 1_774_800_000_000_000_000;
const MS: i64 = 1_000_000;

/// A small seeded generator (PCG-style LCG), so no dependency is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = self.0;
        (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (x >> 29)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.below(u64::try_from(hi - lo).unwrap_or(1))).unwrap_or(0)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let b = self.next().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        out
    }
}

fn attrs(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The spans of `readings` readings from `devices` devices, in arrival
/// order; `gateway` adds the gateway's two spans per reading.
fn stream(rng: &mut Rng, devices: usize, readings: usize, gateway: bool) -> Vec<Span> {
    let mut out = Vec::new();
    let gw_labels = Labels::from_pairs([
        ("gateway_id", "gw-site-07"),
        ("service.name", "iotel-gateway"),
        ("tenant", "acme"),
    ]);
    let device_labels: Vec<Labels> = (0..devices)
        .map(|d| {
            Labels::from_pairs([
                ("device_id", format!("d-{:04}", 1000 + d).as_str()),
                ("service.name", "sensor-fw"),
                ("tenant", "acme"),
            ])
        })
        .collect();
    let interval = 10_000 * MS / i64::try_from(devices).unwrap_or(1);
    for r in 0..readings {
        let d = if devices == 1 {
            0
        } else {
            usize::try_from(rng.below(devices as u64)).unwrap_or(0)
        };
        let device = format!("d-{:04}", 1000 + d);
        let topic = format!("fleet/{device}/telemetry");
        let trace_id = rng.bytes::<16>();
        let read_id = rng.bytes::<8>();
        let publish_id = rng.bytes::<8>();
        let t = T0 + i64::try_from(r).unwrap_or(0) * interval + rng.between(0, 5 * MS);
        let read_end = t + rng.between(5 * MS, 40 * MS);
        let body = rng.between(120, 400);
        out.push(Span {
            trace_id,
            span_id: read_id,
            parent_span_id: None,
            name: "read sensors".into(),
            start_ns: t,
            end_ns: read_end,
            labels: device_labels[d].clone(),
            attributes: attrs(json!({"span.kind": "internal", "sensor.count": 4})),
            status: SpanStatus::Unset,
        });
        let publish_end = read_end + rng.between(2 * MS, 30 * MS);
        out.push(Span {
            trace_id,
            span_id: publish_id,
            parent_span_id: Some(read_id),
            name: "publish fleet/telemetry".into(),
            start_ns: read_end,
            end_ns: publish_end,
            labels: device_labels[d].clone(),
            attributes: attrs(json!({
                "span.kind": "producer",
                "messaging.system": "mqtt",
                "messaging.destination.name": topic,
                "messaging.operation.type": "publish",
                "messaging.message.body.size": body,
            })),
            status: SpanStatus::Unset,
        });
        if !gateway {
            continue;
        }
        let process_id = rng.bytes::<8>();
        let process_start = publish_end + rng.between(MS, 20 * MS);
        let process_end = process_start + rng.between(MS, 5 * MS);
        out.push(Span {
            trace_id,
            span_id: process_id,
            parent_span_id: Some(publish_id),
            name: "process fleet/telemetry".into(),
            start_ns: process_start,
            end_ns: process_end,
            labels: gw_labels.clone(),
            attributes: attrs(json!({
                "span.kind": "consumer",
                "messaging.system": "mqtt",
                "messaging.destination.name": topic,
                "messaging.operation.type": "process",
                "messaging.message.body.size": body,
                "device_id": device,
            })),
            status: SpanStatus::Unset,
        });
        let failed = rng.below(50) == 0;
        let mut post = attrs(json!({
            "span.kind": "client",
            "http.request.method": "POST",
            "http.response.status_code": if failed { 503 } else { 200 },
            "server.address": "ingest.example.com",
            "url.full": "https://ingest.example.com/v1/ingest",
        }));
        if failed {
            post.insert(
                "otel.status_description".into(),
                json!("upstream unavailable"),
            );
        }
        out.push(Span {
            trace_id,
            span_id: rng.bytes::<8>(),
            parent_span_id: Some(process_id),
            name: "POST /v1/ingest".into(),
            start_ns: process_end,
            end_ns: process_end + rng.between(20 * MS, 300 * MS),
            labels: gw_labels.clone(),
            attributes: post,
            status: if failed {
                SpanStatus::Error
            } else {
                SpanStatus::Unset
            },
        });
    }
    out
}

fn gzip(bytes: &[u8]) -> Result<usize, Box<dyn Error>> {
    let mut z = GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    z.write_all(bytes)?;
    Ok(z.finish()?.len())
}

/// Total bytes per encoding over all batches of `size` spans.
fn measure(spans: &[Span], size: usize) -> Result<[usize; 6], Box<dyn Error>> {
    let mut total = [0usize; 6];
    for (seq, batch) in spans.chunks_exact(size).enumerate() {
        let otlp = traces::export_request(batch.iter().cloned()).encode_to_vec();
        total[0] += otlp.len();
        total[1] += gzip(&otlp)?;
        let events = Events::Traces(batch.to_vec());
        for (i, c) in [
            Compression::None,
            Compression::Snappy,
            Compression::Zstd,
            Compression::Lz4,
        ]
        .into_iter()
        .enumerate()
        {
            let frame = native::encode("edge-0042", seq as u64, &events, c)?;
            // Every frame decodes to exactly the spans it was given.
            let back = native::decode(&frame, &native::Limits::default())?;
            if back.events != events {
                return Err(format!("native {c} frame did not round-trip").into());
            }
            total[2 + i] += frame.len();
        }
    }
    Ok(total)
}

fn table(title: &str, spans: &[Span]) -> Result<(), Box<dyn Error>> {
    println!("### {title}\n");
    println!(
        "| spans/batch | OTLP protobuf | OTLP + gzip | native | native + snappy | native + zstd | native + lz4 | OTLP ÷ native+zstd | OTLP+gzip ÷ native+zstd |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in BATCH_SPANS {
        let n = (SPANS_MEASURED / size).max(1) * size;
        let t = measure(&spans[..n], size)?;
        let per = |i: usize| t[i] as f64 / n as f64;
        println!(
            "| {size} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
            per(0),
            per(1),
            per(2),
            per(3),
            per(4),
            per(5),
            per(0) / per(4),
            per(1) / per(4),
        );
    }
    println!();
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut rng = Rng(SEED);
    println!("Bytes per span (whole request or frame ÷ spans), {SPANS_MEASURED} spans per row.\n");
    let edge = stream(&mut rng, 1, SPANS_MEASURED / 2, false);
    table("Edge agent: one device's own spans", &edge)?;
    let gateway = stream(&mut rng, GATEWAY_DEVICES, SPANS_MEASURED / 4, true);
    table(
        &format!("Gateway: {GATEWAY_DEVICES} devices, device and gateway spans"),
        &gateway,
    )?;
    Ok(())
}
