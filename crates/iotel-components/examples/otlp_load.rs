//! An OTLP/gRPC span load: `ExportTraceServiceRequest`s of realistic device
//! spans (resource `service.name` and `device_id`, an instrumentation scope,
//! a server span name, kind, six typed attributes, status), sent with
//! `opentelemetry-proto`'s generated `TraceServiceClient`, at a rate or as
//! fast as the peer answers.
//!
//! ```text
//! otlp_load ENDPOINT SPANS_PER_SECOND SECONDS [BATCH] [CONNECTIONS]
//! ```
//!
//! `SPANS_PER_SECOND` 0: as fast as the peer answers, `CONNECTIONS` requests
//! in flight (default 4), on two threads. Otherwise batches go out every
//! 100 ms. Prints the spans sent and refused and its own CPU-seconds at the
//! end: `sent N refused N cpu_s X`. For `bench/otlp-traces.sh`.

use iotel_formats::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use iotel_formats::otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use iotel_formats::otlp::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as Av,
};
use iotel_formats::otlp::proto::resource::v1::Resource;
use iotel_formats::otlp::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn kv(key: &str, v: Av) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// splitmix64: ids that look random, reproducible.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `n` spans from sequence number `seq` on: 20 devices, traces of 4 spans.
fn request(seq: u64, n: u64) -> ExportTraceServiceRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut by_device: Vec<Vec<Span>> = vec![Vec::new(); 20];
    for i in seq..seq + n {
        let trace = i / 4;
        let mut trace_id = mix(trace).to_be_bytes().to_vec();
        trace_id.extend_from_slice(&mix(trace ^ 0x5555).to_be_bytes());
        let parent = (i % 4 != 0).then(|| mix(i - i % 4).to_be_bytes().to_vec());
        let status = if i % 50 == 0 { 2 } else { 1 };
        by_device[(trace % 20) as usize].push(Span {
            trace_id,
            span_id: mix(i).to_be_bytes().to_vec(),
            parent_span_id: parent.unwrap_or_default(),
            name: if i % 4 == 0 {
                "POST /api/v1/readings".into()
            } else {
                "INSERT readings".into()
            },
            kind: if i % 4 == 0 {
                span::SpanKind::Server as i32
            } else {
                span::SpanKind::Client as i32
            },
            start_time_unix_nano: now - 5_000_000,
            end_time_unix_nano: now - 5_000_000 + 1_000_000 + (i % 997) * 1000,
            attributes: vec![
                kv("http.request.method", Av::StringValue("POST".into())),
                kv("http.route", Av::StringValue("/api/v1/readings".into())),
                kv("http.response.status_code", Av::IntValue(200)),
                kv("server.address", Av::StringValue("10.20.0.4".into())),
                kv("device.firmware", Av::StringValue("2.7.1".into())),
                kv(
                    "sensor.reading",
                    Av::DoubleValue(20.0 + (i % 150) as f64 / 10.0),
                ),
            ],
            status: Some(Status {
                message: if status == 2 {
                    "timeout".into()
                } else {
                    String::new()
                },
                code: status,
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: by_device
            .into_iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(d, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Av::StringValue("meter-api".into())),
                        kv("device_id", Av::StringValue(format!("dev-{d:04}"))),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.meter".into(),
                        version: "1.4.2".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// This process' user + system CPU time so far, from /proc (0 elsewhere).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err(
            "usage: otlp_load ENDPOINT SPANS_PER_SECOND SECONDS [BATCH] [CONNECTIONS]".into(),
        );
    }
    let endpoint = args[1].clone();
    let rate: u64 = args[2].parse()?;
    let seconds: f64 = args[3].parse()?;
    let batch: u64 = args.get(4).map_or(Ok(512), |s| s.parse())?;
    let connections: usize = args.get(5).map_or(Ok(4), |s| s.parse())?;
    let client = TraceServiceClient::connect(endpoint).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    if rate == 0 {
        for _ in 0..connections {
            let (mut client, sent, refused, seq) =
                (client.clone(), sent.clone(), refused.clone(), seq.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let from = seq.fetch_add(batch, Ordering::Relaxed);
                    match client.export(request(from, batch)).await {
                        Ok(_) => sent.fetch_add(batch, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(batch, Ordering::Relaxed),
                    };
                }
            }));
        }
    } else {
        let per_tick = (rate / 10).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while Instant::now() < end {
            tick.tick().await;
            let mut left = per_tick;
            while left > 0 {
                let n = left.min(batch);
                left -= n;
                let from = seq.fetch_add(n, Ordering::Relaxed);
                let (mut client, sent, refused) = (client.clone(), sent.clone(), refused.clone());
                tasks.push(tokio::spawn(async move {
                    match client.export(request(from, n)).await {
                        Ok(_) => sent.fetch_add(n, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(n, Ordering::Relaxed),
                    };
                }));
            }
        }
    }
    for t in tasks {
        t.await?;
    }
    println!(
        "sent {} refused {} cpu_s {:.2}",
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        cpu_seconds()
    );
    Ok(())
}
