//! How many bytes one device's metrics take on the wire: the native batch
//! format against Prometheus remote write and OTLP, on the same samples.
//!
//! The load is the reference edge target of `bench/edge-scrape-remote-write.sh`:
//! 200 gauge families `bench_sensor_{fam}` × 10 series, labels
//! `device="d{i}"`, `zone="z{fam % 7}"`, plus the `job` and `instance` the
//! scraper adds, scraped every second. Every sample of a scrape carries the
//! scrape's timestamp: 1 s apart, ±3 ms of jitter. Three value shapes:
//!
//! - `static`: the bench target's file, `{fam * 10 + i}.5`, never changing;
//! - `sensor`: readings with 1 or 2 decimals (temperature, humidity, supply
//!   voltage, pressure) that move by one last digit in about a third of the
//!   scrapes, as a sensor's text exposition does;
//! - `noise`: the same readings as a random walk of full-precision floats
//!   (every value changes every scrape, every mantissa bit is noise), the
//!   worst case for the native format's value coding.
//!
//! A batch is K consecutive scrapes (K × 2,000 samples), encoded as:
//!
//! - remote write: `iotel_formats::remote_write`'s encoder (protobuf, then
//!   snappy), the whole batch in one request, and as the
//!   `prometheus_remote_write` sink sends it by default: requests of 500
//!   samples, summed;
//! - OTLP: an `ExportMetricsServiceRequest` shaped as an OpenTelemetry
//!   collector's prometheus receiver builds it (see [`otlp_request`]), plain
//!   protobuf and gzipped as OTLP/HTTP sends it;
//! - native: `native::encode` under each compression.
//!
//! The synthetic `up` and `scrape_*` series a scraper adds are left out of
//! every format. Everything is seeded: two runs print the same table.
//!
//! Run `bash bench/encoded-size.sh`.

use flate2::write::GzEncoder;
use iotel_formats::native::{self, Compression};
use iotel_formats::remote_write;
use iotel_model::{Events, Labels, Metric, MetricMeta, MetricType};
use prost::Message as _;
use std::collections::HashMap;
use std::error::Error;
use std::io::Write as _;
use std::sync::Arc;

/// Scrapes per batch.
const BATCH_SCRAPES: [usize; 4] = [1, 5, 10, 30];
const FAMILIES: usize = 200;
const SERIES_PER_FAMILY: usize = 10;
const SERIES: usize = FAMILIES * SERIES_PER_FAMILY;
/// The `prometheus_remote_write` sink's default `batch.max_samples`.
const REMOTE_WRITE_SAMPLES_PER_REQUEST: usize = 500;
const JOB: &str = "edge";
const INSTANCE: &str = "127.0.0.1:9100";
const AGENT_ID: &str = "edge-0042";
const FIRST_SCRAPE_MS: i64 = 1_700_000_000_000;
const SEED: u64 = 0x5eed_0f10_e1e0;
/// The collector's default gzip level (Go's `gzip.DefaultCompression`); the
/// detail table also shows level 1.
const GZIP_LEVEL: u32 = 6;
/// The target: native snappy at least this many times smaller than
/// remote write.
const TARGET_RATIO: f64 = 3.0;

/// The OTLP metrics messages a scraped gauge needs, declared by hand with
/// their field numbers from opentelemetry-proto (v1):
/// `collector/metrics/v1/metrics_service.proto`, `metrics/v1/metrics.proto`,
/// `common/v1/common.proto` and `resource/v1/resource.proto`.
///
/// Field numbers are the wire format: do not renumber. Fields the
/// prometheus receiver leaves empty for a gauge (exemplars = 5 of a data
/// point, `Resource.entity_refs` = 3, the other `Metric.data` cases 7, 9,
/// 10, 11) are not declared; proto3 leaves empty fields off the wire, so
/// the bytes are the same.
mod otlp {
    /// `opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    /// `opentelemetry.proto.metrics.v1.ResourceMetrics` (field 1000, the
    /// old `instrumentation_library_metrics`, is reserved).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    /// `opentelemetry.proto.resource.v1.Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "2")]
        pub dropped_attributes_count: u32,
    }

    /// `opentelemetry.proto.metrics.v1.ScopeMetrics`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    /// `opentelemetry.proto.common.v1.InstrumentationScope`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(message, repeated, tag = "3")]
        pub attributes: Vec<KeyValue>,
        #[prost(uint32, tag = "4")]
        pub dropped_attributes_count: u32,
    }

    /// `opentelemetry.proto.metrics.v1.Metric` (4, 6 and 8 are reserved).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(oneof = "metric::Data", tags = "5")]
        pub data: Option<metric::Data>,
        #[prost(message, repeated, tag = "12")]
        pub metadata: Vec<KeyValue>,
    }

    pub mod metric {
        /// `Metric.data`; only the gauge case is declared.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            #[prost(message, tag = "5")]
            Gauge(super::Gauge),
        }
    }

    /// `opentelemetry.proto.metrics.v1.Gauge`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    /// `opentelemetry.proto.metrics.v1.NumberDataPoint` (1, the old
    /// `labels`, is reserved).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
        pub value: Option<number_data_point::Value>,
        #[prost(uint32, tag = "8")]
        pub flags: u32,
    }

    pub mod number_data_point {
        /// `NumberDataPoint.value`.
        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(double, tag = "4")]
            AsDouble(f64),
            #[prost(sfixed64, tag = "6")]
            AsInt(i64),
        }
    }

    /// `opentelemetry.proto.common.v1.KeyValue` (3, `key_strindex`, is for
    /// profiles only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    /// `opentelemetry.proto.common.v1.AnyValue`; only the string case is
    /// declared (bool 2, int 3, double 4, array 5, kvlist 6, bytes 7 are
    /// not used here).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        /// `AnyValue.value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
        }
    }

    pub fn string_attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
        }
    }
}

/// splitmix64: a fixed seed gives the same samples on every run and
/// platform (no floating-point library calls).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal, mean 0, standard deviation 1 (Irwin–Hall of 12).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Static,
    Sensor,
    Noise,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Static => "static",
            Shape::Sensor => "sensor",
            Shape::Noise => "noise",
        }
    }

    fn about(self) -> &'static str {
        match self {
            Shape::Static => "the bench target's file: {fam*10+i}.5, never changing",
            Shape::Sensor => "1-2 decimals, one last-digit step in ~1/3 of scrapes",
            Shape::Noise => "random walk of full-precision floats, every scrape",
        }
    }
}

/// A reading's kind, by family: where it starts, its decimals, and how far
/// its noisy random walk moves per scrape.
fn reading(family: usize) -> (f64, f64, u32, f64) {
    // (low, high, decimals, noise standard deviation per scrape)
    match family % 4 {
        0 => (18.0, 30.0, 1, 0.02),    // temperature, °C
        1 => (30.0, 70.0, 1, 0.05),    // relative humidity, %
        2 => (3.2, 3.4, 2, 0.001),     // supply voltage, V
        _ => (995.0, 1030.0, 1, 0.03), // pressure, hPa
    }
}

/// `scrapes` scrapes of the reference target, in scrape order, each in
/// exposition order (family by family).
fn scrapes(shape: Shape, scrapes: usize) -> Vec<Metric> {
    let mut rng = Rng(SEED);
    let series: Vec<(Arc<MetricMeta>, Labels)> = (0..FAMILIES)
        .flat_map(|fam| {
            let meta = Arc::new(
                MetricMeta::new(format!("bench_sensor_{fam}"), MetricType::Gauge)
                    .with_help("A benchmark sensor."),
            );
            (0..SERIES_PER_FAMILY).map(move |i| {
                let labels = Labels::from_pairs([
                    ("device", format!("d{i}")),
                    ("zone", format!("z{}", fam % 7)),
                    ("job", JOB.to_owned()),
                    ("instance", INSTANCE.to_owned()),
                ]);
                (meta.clone(), labels)
            })
        })
        .collect();
    let starts: Vec<f64> = (0..SERIES)
        .map(|s| {
            let (low, high, _, _) = reading(s / SERIES_PER_FAMILY);
            low + (high - low) * rng.unit()
        })
        .collect();
    // Sensor readings as a count of their last digit, so that a value is
    // exactly the double the text "21.4" parses to.
    let mut units: Vec<(i64, f64)> = starts
        .iter()
        .enumerate()
        .map(|(s, start)| {
            let scale = 10f64.powi(reading(s / SERIES_PER_FAMILY).2 as i32);
            ((start * scale).round() as i64, scale)
        })
        .collect();
    // Noisy readings start at full precision too.
    let mut noisy = starts;

    let mut out = Vec::with_capacity(scrapes * SERIES);
    for scrape in 0..scrapes {
        let jitter = (rng.next() % 7) as i64 - 3;
        let timestamp_ms = FIRST_SCRAPE_MS + scrape as i64 * 1000 + jitter;
        for (s, (meta, labels)) in series.iter().enumerate() {
            let value = match shape {
                Shape::Static => (s as f64) + 0.5,
                Shape::Sensor => {
                    let (count, scale) = &mut units[s];
                    if scrape > 0 && rng.unit() < 1.0 / 3.0 {
                        *count += if rng.next() & 1 == 0 { 1 } else { -1 };
                    }
                    *count as f64 / *scale
                }
                Shape::Noise => {
                    if scrape > 0 {
                        noisy[s] += rng.normal() * reading(s / SERIES_PER_FAMILY).3;
                    }
                    noisy[s]
                }
            };
            out.push(Metric {
                name: meta.family.clone(),
                labels: labels.clone(),
                value,
                timestamp_ms,
                meta: meta.clone(),
                exemplar: None,
            });
        }
    }
    out
}

/// The resource the prometheus receiver gives a target
/// (`receiver/prometheusreceiver/internal` `CreateResource`):
/// `service.name` = job, `service.instance.id` = instance, `server.port`,
/// `url.scheme`; no `server.address` for a loopback host.
fn resource(job: &str, instance: &str) -> otlp::Resource {
    let port = instance.rsplit_once(':').map_or("", |(_, p)| p);
    otlp::Resource {
        attributes: vec![
            otlp::string_attribute("service.name", job),
            otlp::string_attribute("service.instance.id", instance),
            otlp::string_attribute("server.port", port),
            otlp::string_attribute("url.scheme", "http"),
        ],
        dropped_attributes_count: 0,
    }
}

fn scope_metrics(metrics: Vec<otlp::Metric>) -> otlp::ScopeMetrics {
    otlp::ScopeMetrics {
        scope: Some(otlp::InstrumentationScope {
            name: "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
                .to_owned(),
            version: "0.128.0".to_owned(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        }),
        metrics,
        schema_url: String::new(),
    }
}

/// A gauge data point: the series' labels but `job` and `instance` (which
/// went to the resource) as string attributes, no start time (a gauge has
/// none), the value as a double.
fn data_point(sample: &Metric) -> otlp::NumberDataPoint {
    otlp::NumberDataPoint {
        attributes: sample
            .labels
            .iter()
            .filter(|l| &*l.name != "job" && &*l.name != "instance")
            .map(|l| otlp::string_attribute(&l.name, &l.value))
            .collect(),
        start_time_unix_nano: 0,
        time_unix_nano: u64::try_from(sample.timestamp_ms).unwrap_or(0) * 1_000_000,
        value: Some(otlp::number_data_point::Value::AsDouble(sample.value)),
        flags: 0,
    }
}

fn gauge(sample: &Metric) -> otlp::Metric {
    otlp::Metric {
        name: sample.meta.family.to_string(),
        description: sample.meta.help.as_deref().unwrap_or_default().to_owned(),
        unit: sample.meta.unit.as_deref().unwrap_or_default().to_owned(),
        data: Some(otlp::metric::Data::Gauge(otlp::Gauge {
            data_points: Vec::new(),
        })),
        metadata: Vec::new(),
    }
}

fn push_point(metric: &mut otlp::Metric, sample: &Metric) {
    if let Some(otlp::metric::Data::Gauge(g)) = &mut metric.data {
        g.data_points.push(data_point(sample));
    }
}

/// The batch as OTLP. `per_scrape`: as an OpenTelemetry collector sends
/// it: the prometheus receiver makes one ResourceMetrics per scrape (one
/// Metric per family, its series as data points) and the batch processor
/// appends the scrapes' ResourceMetrics to one request without merging
/// them. Otherwise the most compact form: one ResourceMetrics, one Metric
/// per family holding every scrape's points.
///
/// All samples here come from one target (one job and instance).
fn otlp_request(batch: &[Metric], per_scrape: bool) -> otlp::ExportMetricsServiceRequest {
    let mut resources: Vec<otlp::ResourceMetrics> = Vec::new();
    let mut metrics: Vec<otlp::Metric> = Vec::new();
    let mut family_index: HashMap<Arc<str>, usize> = HashMap::new();
    let mut scrape_ms = None;
    let flush = |metrics: &mut Vec<otlp::Metric>, resources: &mut Vec<otlp::ResourceMetrics>| {
        if !metrics.is_empty() {
            resources.push(otlp::ResourceMetrics {
                resource: Some(resource(JOB, INSTANCE)),
                scope_metrics: vec![scope_metrics(std::mem::take(metrics))],
                schema_url: String::new(),
            });
        }
    };
    for sample in batch {
        if per_scrape && scrape_ms != Some(sample.timestamp_ms) {
            flush(&mut metrics, &mut resources);
            family_index.clear();
            scrape_ms = Some(sample.timestamp_ms);
        }
        let at = *family_index
            .entry(sample.meta.family.clone())
            .or_insert_with(|| {
                metrics.push(gauge(sample));
                metrics.len() - 1
            });
        push_point(&mut metrics[at], sample);
    }
    flush(&mut metrics, &mut resources);
    otlp::ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
}

fn gzip(bytes: &[u8], level: u32) -> Result<usize, std::io::Error> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    gz.write_all(bytes)?;
    Ok(gz.finish()?.len())
}

/// Every size measured for one batch, in bytes.
struct Sizes {
    samples: usize,
    remote_write: usize,
    remote_write_500: usize,
    remote_write_500_requests: usize,
    otlp: usize,
    otlp_gzip: usize,
    otlp_gzip_fast: usize,
    otlp_merged: usize,
    otlp_merged_gzip: usize,
    native: Vec<(Compression, usize)>,
}

impl Sizes {
    fn native(&self, compression: Compression) -> usize {
        self.native
            .iter()
            .find(|(c, _)| *c == compression)
            .map_or(0, |&(_, n)| n)
    }
}

fn measure(batch: &[Metric]) -> Result<Sizes, Box<dyn Error>> {
    let rw = remote_write::encode(batch);
    if remote_write::decode(&rw)?.len() != batch.len() {
        return Err("remote write lost samples".into());
    }
    let mut encoder = remote_write::Encoder::new();
    let chunks = batch.chunks(REMOTE_WRITE_SAMPLES_PER_REQUEST);
    let remote_write_500_requests = chunks.len();
    let remote_write_500 = chunks.map(|c| encoder.encode(c).len()).sum();

    let request = otlp_request(batch, true).encode_to_vec();
    let points: usize = otlp::ExportMetricsServiceRequest::decode(request.as_slice())?
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(otlp::metric::Data::Gauge(g)) => g.data_points.len(),
            None => 0,
        })
        .sum();
    if points != batch.len() {
        return Err("OTLP lost samples".into());
    }
    let merged = otlp_request(batch, false).encode_to_vec();

    let events = Events::Metrics(batch.to_vec());
    let mut native_sizes = Vec::new();
    for compression in Compression::ALL {
        if !compression.is_built_in() {
            continue;
        }
        let frame = native::encode(AGENT_ID, 1, &events, compression)?;
        let decoded = native::decode(&frame, &native::Limits::default())?;
        if decoded.events.len() != batch.len() {
            return Err(format!("native {compression} lost samples").into());
        }
        native_sizes.push((compression, frame.len()));
    }
    Ok(Sizes {
        samples: batch.len(),
        remote_write: rw.len(),
        remote_write_500,
        remote_write_500_requests,
        otlp: request.len(),
        otlp_gzip: gzip(&request, GZIP_LEVEL)?,
        otlp_gzip_fast: gzip(&request, 1)?,
        otlp_merged: merged.len(),
        otlp_merged_gzip: gzip(&merged, GZIP_LEVEL)?,
        native: native_sizes,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let max_scrapes = BATCH_SCRAPES.iter().copied().max().unwrap_or(1);
    let shapes = [Shape::Static, Shape::Sensor, Shape::Noise];
    let mut results = Vec::new();
    for shape in shapes {
        let all = scrapes(shape, max_scrapes);
        for k in BATCH_SCRAPES {
            results.push((shape, k, measure(&all[..k * SERIES])?));
        }
    }

    println!(
        "Encoded size of one edge target ({FAMILIES} gauge families x {SERIES_PER_FAMILY} series = \
         {SERIES} series, scraped every 1 s, +-3 ms jitter), per batch of K scrapes. Seed {SEED:#x}."
    );
    for shape in shapes {
        println!("  {:<7} {}", shape.name(), shape.about());
    }
    println!(
        "rw: remote write (protobuf + snappy) as iotel_formats::remote_write encodes it; \
         rw/500: the same samples in requests of {REMOTE_WRITE_SAMPLES_PER_REQUEST} \
         (the sink's default), summed.\n\
         otlp: ExportMetricsServiceRequest as a collector's prometheus receiver + batch processor \
         send it; +gz: gzip level {GZIP_LEVEL} (flate2/miniz_oxide).\n\
         native: native::encode frame (header included) under each compression.\n"
    );

    let header = format!(
        "{:<7} {:>3} {:>6} | {:>8} {:>8} {:>4} | {:>8} {:>7} | {:>8} {:>7} {:>7} {:>7} | {:>7} {:>7}",
        "shape",
        "K",
        "samp",
        "rw",
        "rw/500",
        "reqs",
        "otlp",
        "+gz",
        "native",
        "snappy",
        "zstd",
        "lz4",
        "rw/snap",
        "rw/zstd"
    );
    println!("Bytes per batch");
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (shape, k, s) in &results {
        println!(
            "{:<7} {:>3} {:>6} | {:>8} {:>8} {:>4} | {:>8} {:>7} | {:>8} {:>7} {:>7} {:>7} | {:>6.2}x {:>6.2}x",
            shape.name(),
            k,
            s.samples,
            s.remote_write,
            s.remote_write_500,
            s.remote_write_500_requests,
            s.otlp,
            s.otlp_gzip,
            s.native(Compression::None),
            s.native(Compression::Snappy),
            s.native(Compression::Zstd),
            s.native(Compression::Lz4),
            ratio(s.remote_write, s.native(Compression::Snappy)),
            ratio(s.remote_write, s.native(Compression::Zstd)),
        );
    }

    let header = format!(
        "{:<7} {:>3} | {:>6} {:>6} | {:>6} {:>6} | {:>6} {:>6} {:>6} {:>6} | {:>9} {:>9}",
        "shape",
        "K",
        "rw",
        "rw/500",
        "otlp",
        "+gz",
        "native",
        "snappy",
        "zstd",
        "lz4",
        "rw500/snp",
        "rw500/zst"
    );
    println!("\nBytes per sample");
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (shape, k, s) in &results {
        let per = |bytes: usize| bytes as f64 / s.samples as f64;
        println!(
            "{:<7} {:>3} | {:>6.2} {:>6.2} | {:>6.2} {:>6.2} | {:>6.2} {:>6.2} {:>6.2} {:>6.2} | {:>8.2}x {:>8.2}x",
            shape.name(),
            k,
            per(s.remote_write),
            per(s.remote_write_500),
            per(s.otlp),
            per(s.otlp_gzip),
            per(s.native(Compression::None)),
            per(s.native(Compression::Snappy)),
            per(s.native(Compression::Zstd)),
            per(s.native(Compression::Lz4)),
            ratio(s.remote_write_500, s.native(Compression::Snappy)),
            ratio(s.remote_write_500, s.native(Compression::Zstd)),
        );
    }

    let header = format!(
        "{:<7} {:>3} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
        "shape", "K", "otlp", "+gz -1", "+gz -6", "merged", "+gz -6"
    );
    println!(
        "\nOTLP detail, bytes: per-scrape resources (as the collector sends) vs one resource \
         with one Metric per family for the whole batch (merged)"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (shape, k, s) in &results {
        println!(
            "{:<7} {:>3} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
            shape.name(),
            k,
            s.otlp,
            s.otlp_gzip_fast,
            s.otlp_gzip,
            s.otlp_merged,
            s.otlp_merged_gzip
        );
    }
    println!(
        "\nSmallest K (1..={max_scrapes}) at which the native snappy frame is at least {TARGET_RATIO}x \
         smaller than remote write"
    );
    for shape in shapes {
        let all = scrapes(shape, max_scrapes);
        let first = |versus_500: bool| -> Result<String, Box<dyn Error>> {
            let mut encoder = remote_write::Encoder::new();
            for k in 1..=max_scrapes {
                let batch = &all[..k * SERIES];
                let rw: usize = if versus_500 {
                    batch
                        .chunks(REMOTE_WRITE_SAMPLES_PER_REQUEST)
                        .map(|c| encoder.encode(c).len())
                        .sum()
                } else {
                    encoder.encode(batch).len()
                };
                let events = Events::Metrics(batch.to_vec());
                let snappy = native::encode(AGENT_ID, 1, &events, Compression::Snappy)?.len();
                if ratio(rw, snappy) >= TARGET_RATIO {
                    return Ok(format!("K = {k} ({:.2}x)", ratio(rw, snappy)));
                }
            }
            Ok(format!("not reached by K = {max_scrapes}"))
        };
        println!(
            "  {:<7} vs one request: {:<22} vs {REMOTE_WRITE_SAMPLES_PER_REQUEST}-sample requests: {}",
            shape.name(),
            first(false)?,
            first(true)?
        );
    }
    Ok(())
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    numerator as f64 / denominator.max(1) as f64
}
