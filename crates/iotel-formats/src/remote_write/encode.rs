//! [`Encoder`]: a `WriteRequest` written straight from the samples into
//! buffers kept from one request to the next, without building the owned
//! messages of [`proto`] (one `String` per label name and value, thousands
//! of small allocations per request).
//!
//! The bytes are exactly what prost makes of those messages; the tests hold
//! the encoder to the previous one (`reference.rs`) byte for byte. What that
//! takes:
//!
//! - Fields in field-number order. Each element of a repeated message field
//!   is key, length, body, also when the body is empty.
//! - proto3 scalars are left out when they are zero: a double equal to 0.0
//!   (so -0.0 too, NaN not), an int64 or enum of 0, an empty string.
//! - Lengths are minimal varints, so a nested message's length is known
//!   before its body is written: each message type below has an
//!   `encoded_len` that must agree with what its `put` writes (checked by a
//!   debug assertion).
//!
//! Grouping samples into series allocates nothing per series or sample:
//! sample indices are sorted in place, first by series to find each series'
//! first sample, then by (first sample of its series, timestamp, index),
//! which is the order samples go on the wire: series in the order first
//! seen, each series' samples by timestamp. The index tiebreak makes these
//! unstable (allocation-free) sorts give what stable sorts would, so samples
//! with equal timestamps keep their batch order, as before.

use super::{NAME_LABEL, proto};
use iotel_model::{Exemplar, Labels, Metric, MetricMeta, MetricType};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Field numbers, as declared in [`proto`] (from Prometheus'
/// `prompb/remote.proto` and `prompb/types.proto`). Do not renumber.
mod tag {
    pub const REQUEST_TIMESERIES: u32 = 1;
    pub const REQUEST_METADATA: u32 = 3;
    pub const SERIES_LABELS: u32 = 1;
    pub const SERIES_SAMPLES: u32 = 2;
    pub const SERIES_EXEMPLARS: u32 = 3;
    pub const LABEL_NAME: u32 = 1;
    pub const LABEL_VALUE: u32 = 2;
    pub const SAMPLE_VALUE: u32 = 1;
    pub const SAMPLE_TIMESTAMP: u32 = 2;
    pub const EXEMPLAR_LABELS: u32 = 1;
    pub const EXEMPLAR_VALUE: u32 = 2;
    pub const EXEMPLAR_TIMESTAMP: u32 = 3;
    pub const METADATA_TYPE: u32 = 1;
    pub const METADATA_FAMILY_NAME: u32 = 2;
    pub const METADATA_HELP: u32 = 4;
    pub const METADATA_UNIT: u32 = 5;
}

/// How fast an encoder forgets a large batch: per request, the largest need
/// it remembers falls by 1/`PEAK_DECAY` unless the request needed more; it
/// halves in about 5 requests.
const PEAK_DECAY: usize = 8;

/// A buffer is never shrunk below this: giving back less is not worth a
/// reallocation.
const ALWAYS_KEEP_BYTES: usize = 64 << 10;

/// Encodes batches of samples as remote write request bodies, keeping its
/// buffers for the next batch: once they have grown to the batch size, an
/// encode allocates nothing.
///
/// It holds what the largest recent batch needed: the protobuf, room to
/// compress it (snappy wants a sixth more than the input), 8 to 12 bytes
/// per sample for grouping, and snappy's 32 KiB table. After a batch much larger
/// than those that follow (more than 4 times), its buffers are shrunk back
/// within a few requests, so one spike does not pin its memory.
pub struct Encoder {
    /// Sample indices, sorted into wire order by `group`.
    order: Vec<u32>,
    /// Per sample index: the index of its series' first sample.
    series_first: Vec<u32>,
    /// The index of each family's first sample, ascending.
    family_firsts: Vec<u32>,
    /// The `WriteRequest`, before compression.
    protobuf: Vec<u8>,
    /// The request body: `protobuf` compressed.
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    /// The largest recent batch, in samples; see [`PEAK_DECAY`].
    peak_samples: usize,
    /// The largest recent `protobuf`, in bytes.
    peak_bytes: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Capacities, not contents: the buffers hold a whole request.
        f.debug_struct("Encoder")
            .field("protobuf_capacity", &self.protobuf.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .field("order_capacity", &self.order.capacity())
            .field("peak_samples", &self.peak_samples)
            .field("peak_bytes", &self.peak_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self {
            order: Vec::new(),
            series_first: Vec::new(),
            family_firsts: Vec::new(),
            protobuf: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            peak_samples: 0,
            peak_bytes: 0,
        }
    }

    /// The request body for `metrics`, byte for byte what
    /// [`super::encode()`] returns; valid until the next call.
    ///
    /// # Panics
    /// If the protobuf message exceeds 4 GiB, the most one snappy block
    /// holds. Callers send batches of bounded size, far below that.
    pub fn encode(&mut self, metrics: &[Metric]) -> &[u8] {
        self.peak_samples = remember(self.peak_samples, metrics.len());
        trim(&mut self.order, self.peak_samples);
        trim(&mut self.series_first, self.peak_samples);
        trim(&mut self.family_firsts, self.peak_samples);
        group(
            metrics,
            &mut self.order,
            &mut self.series_first,
            &mut self.family_firsts,
        );
        let request = Request {
            metrics,
            order: &self.order,
            series_first: &self.series_first,
            family_firsts: &self.family_firsts,
        };
        let len = request.encoded_len();
        self.peak_bytes = remember(self.peak_bytes, len);
        trim(&mut self.protobuf, self.peak_bytes);
        trim(
            &mut self.compressed,
            snap::raw::max_compress_len(self.peak_bytes),
        );
        self.protobuf.clear();
        self.protobuf.reserve(len);
        request.put(&mut self.protobuf);
        debug_assert_eq!(self.protobuf.len(), len);

        // snappy writes into a slice at least `max_compress_len` long. That
        // is 0 for an input over 2^32 - 1 bytes, which `compress` refuses:
        // the only error it has here; see the panic note above.
        self.compressed.clear();
        self.compressed
            .resize(snap::raw::max_compress_len(self.protobuf.len()), 0);
        let n = self
            .snappy
            .compress(&self.protobuf, &mut self.compressed)
            .expect("a remote write batch is below 4 GiB");
        self.compressed.truncate(n);
        &self.compressed
    }

    /// The body of the last [`Encoder::encode`], taken out of the encoder.
    pub(super) fn into_body(self) -> Vec<u8> {
        self.compressed
    }
}

/// The new remembered peak after a request that needed `need`.
fn remember(peak: usize, need: usize) -> usize {
    need.max(peak - peak / PEAK_DECAY)
}

/// Gives back most of `buf` when it is over 4 times the recent `peak` need
/// (and over twice [`ALWAYS_KEEP_BYTES`]), keeping twice the peak, so that
/// batches of varying size do not reallocate back and forth.
fn trim<T>(buf: &mut Vec<T>, peak: usize) {
    let keep = peak
        .saturating_mul(2)
        .max(ALWAYS_KEEP_BYTES / size_of::<T>());
    if buf.capacity() / 2 > keep {
        buf.clear();
        buf.shrink_to(keep);
    }
}

/// Sorts `order` into wire order and fills `series_first` and
/// `family_firsts` (see [`Encoder`]'s fields and the module docs).
fn group(
    metrics: &[Metric],
    order: &mut Vec<u32>,
    series_first: &mut Vec<u32>,
    family_firsts: &mut Vec<u32>,
) {
    // A batch of 2^32 samples would be over 4 GiB on the wire, a documented
    // panic of `encode` already.
    let n = u32::try_from(metrics.len()).expect("a remote write batch is below 4 GiB");
    let at = |i: u32| &metrics[i as usize];
    let family = |i: u32| &*at(i).meta.family;
    let series = |i: u32| (&*at(i).name, &at(i).labels);

    order.clear();
    order.extend(0..n);
    order.sort_unstable_by(|&a, &b| family(a).cmp(family(b)).then(a.cmp(&b)));
    family_firsts.clear();
    family_firsts.extend(
        order
            .chunk_by(|&a, &b| family(a) == family(b))
            .map(|same| same[0]),
    );
    family_firsts.sort_unstable();

    // `order` is a permutation of the indices whatever its order, and the
    // index tiebreak makes the result independent of it.
    order.sort_unstable_by(|&a, &b| series(a).cmp(&series(b)).then(a.cmp(&b)));
    series_first.clear();
    series_first.resize(metrics.len(), 0);
    for same in order.chunk_by(|&a, &b| series(a) == series(b)) {
        for &i in same {
            series_first[i as usize] = same[0];
        }
    }
    order.sort_unstable_by_key(|&i| (series_first[i as usize], at(i).timestamp_ms, i));
}

/// A protobuf message written straight from the model.
trait WireMessage {
    /// The length of the body `put` writes.
    fn encoded_len(&self) -> usize;
    /// Writes the body, without key or length: `encoded_len()` bytes.
    fn put(&self, buf: &mut Vec<u8>);
}

/// A length-delimited field of `len` bytes: key, length, bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_delimited_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// An element of a repeated message field; written even when empty.
fn message_len(tag: u32, message: &impl WireMessage) -> usize {
    delimited_len(tag, message.encoded_len())
}

fn put_message(tag: u32, message: &impl WireMessage, buf: &mut Vec<u8>) {
    let len = message.encoded_len();
    put_delimited_header(tag, len, buf);
    let start = buf.len();
    message.put(buf);
    debug_assert_eq!(buf.len() - start, len, "encoded_len and put disagree");
}

/// A proto3 `string`: left out when empty.
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

fn put_string(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        put_delimited_header(tag, s.len(), buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

/// A proto3 `double`: left out when equal to zero (so -0.0 is too), else
/// 8 bytes little-endian, NaN payloads included.
fn double_len(tag: u32, v: f64) -> usize {
    if v == 0.0 { 0 } else { key_len(tag) + 8 }
}

fn put_double(tag: u32, v: f64, buf: &mut Vec<u8>) {
    if v != 0.0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// A proto3 `int64` or enum: left out when zero, else a varint of its two's
/// complement (10 bytes when negative).
fn varint_len(tag: u32, v: i64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v as u64)
    }
}

fn put_varint(tag: u32, v: i64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v as u64, buf);
    }
}

/// The whole `WriteRequest` of a batch grouped by [`group`].
struct Request<'a> {
    metrics: &'a [Metric],
    order: &'a [u32],
    series_first: &'a [u32],
    family_firsts: &'a [u32],
}

impl<'a> Request<'a> {
    fn series(&self) -> impl Iterator<Item = Series<'a>> {
        let (metrics, first) = (self.metrics, self.series_first);
        self.order
            .chunk_by(move |&a, &b| first[a as usize] == first[b as usize])
            .map(move |samples| Series { metrics, samples })
    }

    fn metadata(&self) -> impl Iterator<Item = Metadata<'a>> {
        let metrics = self.metrics;
        self.family_firsts
            .iter()
            .map(move |&i| Metadata(&metrics[i as usize].meta))
    }
}

impl WireMessage for Request<'_> {
    fn encoded_len(&self) -> usize {
        let series: usize = self
            .series()
            .map(|s| message_len(tag::REQUEST_TIMESERIES, &s))
            .sum();
        let metadata: usize = self
            .metadata()
            .map(|m| message_len(tag::REQUEST_METADATA, &m))
            .sum();
        series + metadata
    }

    fn put(&self, buf: &mut Vec<u8>) {
        for s in self.series() {
            put_message(tag::REQUEST_TIMESERIES, &s, buf);
        }
        for m in self.metadata() {
            put_message(tag::REQUEST_METADATA, &m, buf);
        }
    }
}

/// `TimeSeries`: the samples of one series, as indices into `metrics`, in
/// wire order; never empty.
struct Series<'a> {
    metrics: &'a [Metric],
    samples: &'a [u32],
}

impl<'a> Series<'a> {
    fn samples(&self) -> impl Iterator<Item = &'a Metric> {
        let metrics = self.metrics;
        self.samples.iter().map(move |&i| &metrics[i as usize])
    }

    /// The series' labels with `__name__` merged in at its place in name
    /// order. Relies on `Labels` being sorted by name in byte order, as the
    /// spec wants: uppercase names go before `__name__`, lowercase after.
    fn labels(&self) -> impl Iterator<Item = Label<'a>> {
        let first = &self.metrics[self.samples[0] as usize];
        let before = |l: &Label<'_>| l.name < NAME_LABEL;
        wire_labels(&first.labels)
            .take_while(before)
            .chain(std::iter::once(Label {
                name: NAME_LABEL,
                value: &first.name,
            }))
            .chain(wire_labels(&first.labels).skip_while(before))
    }

    /// Each sample's exemplar, stamped with the sample's timestamp when it
    /// has none of its own.
    fn exemplars(&self) -> impl Iterator<Item = ExemplarAt<'a>> {
        self.samples().filter_map(|m| {
            let exemplar = m.exemplar.as_deref()?;
            Some(ExemplarAt {
                exemplar,
                timestamp_ms: exemplar.timestamp_ms.unwrap_or(m.timestamp_ms),
            })
        })
    }
}

impl WireMessage for Series<'_> {
    fn encoded_len(&self) -> usize {
        let labels: usize = self
            .labels()
            .map(|l| message_len(tag::SERIES_LABELS, &l))
            .sum();
        let samples: usize = self
            .samples()
            .map(|m| message_len(tag::SERIES_SAMPLES, &Sample::of(m)))
            .sum();
        let exemplars: usize = self
            .exemplars()
            .map(|e| message_len(tag::SERIES_EXEMPLARS, &e))
            .sum();
        labels + samples + exemplars
    }

    fn put(&self, buf: &mut Vec<u8>) {
        for l in self.labels() {
            put_message(tag::SERIES_LABELS, &l, buf);
        }
        for m in self.samples() {
            put_message(tag::SERIES_SAMPLES, &Sample::of(m), buf);
        }
        for e in self.exemplars() {
            put_message(tag::SERIES_EXEMPLARS, &e, buf);
        }
    }
}

/// `Label`, borrowed from the model's label set.
struct Label<'a> {
    name: &'a str,
    value: &'a str,
}

/// Labels that may go on the wire: no empty names or values, and no
/// `__name__` (the series name is that label).
fn wire_labels(labels: &Labels) -> impl Iterator<Item = Label<'_>> {
    labels
        .iter()
        .filter(|l| !l.name.is_empty() && !l.value.is_empty() && &*l.name != NAME_LABEL)
        .map(|l| Label {
            name: &l.name,
            value: &l.value,
        })
}

impl WireMessage for Label<'_> {
    fn encoded_len(&self) -> usize {
        string_len(tag::LABEL_NAME, self.name) + string_len(tag::LABEL_VALUE, self.value)
    }

    fn put(&self, buf: &mut Vec<u8>) {
        put_string(tag::LABEL_NAME, self.name, buf);
        put_string(tag::LABEL_VALUE, self.value, buf);
    }
}

/// `Sample`.
struct Sample {
    value: f64,
    timestamp_ms: i64,
}

impl Sample {
    fn of(m: &Metric) -> Self {
        Self {
            value: m.value,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

impl WireMessage for Sample {
    fn encoded_len(&self) -> usize {
        double_len(tag::SAMPLE_VALUE, self.value)
            + varint_len(tag::SAMPLE_TIMESTAMP, self.timestamp_ms)
    }

    fn put(&self, buf: &mut Vec<u8>) {
        put_double(tag::SAMPLE_VALUE, self.value, buf);
        put_varint(tag::SAMPLE_TIMESTAMP, self.timestamp_ms, buf);
    }
}

/// `Exemplar`, with the timestamp it goes out with.
struct ExemplarAt<'a> {
    exemplar: &'a Exemplar,
    timestamp_ms: i64,
}

impl WireMessage for ExemplarAt<'_> {
    fn encoded_len(&self) -> usize {
        let labels: usize = wire_labels(&self.exemplar.labels)
            .map(|l| message_len(tag::EXEMPLAR_LABELS, &l))
            .sum();
        labels
            + double_len(tag::EXEMPLAR_VALUE, self.exemplar.value)
            + varint_len(tag::EXEMPLAR_TIMESTAMP, self.timestamp_ms)
    }

    fn put(&self, buf: &mut Vec<u8>) {
        for l in wire_labels(&self.exemplar.labels) {
            put_message(tag::EXEMPLAR_LABELS, &l, buf);
        }
        put_double(tag::EXEMPLAR_VALUE, self.exemplar.value, buf);
        put_varint(tag::EXEMPLAR_TIMESTAMP, self.timestamp_ms, buf);
    }
}

/// `MetricMetadata` of a family.
struct Metadata<'a>(&'a MetricMeta);

impl Metadata<'_> {
    fn wire_type(&self) -> i64 {
        let kind = match self.0.kind {
            MetricType::Counter => proto::MetricType::Counter,
            MetricType::Gauge => proto::MetricType::Gauge,
            MetricType::Histogram => proto::MetricType::Histogram,
            MetricType::GaugeHistogram => proto::MetricType::Gaugehistogram,
            MetricType::Summary => proto::MetricType::Summary,
            MetricType::Info => proto::MetricType::Info,
            MetricType::StateSet => proto::MetricType::Stateset,
            MetricType::Unknown => proto::MetricType::Unknown,
        };
        i64::from(kind as i32)
    }

    fn help(&self) -> &str {
        self.0.help.as_deref().unwrap_or_default()
    }

    fn unit(&self) -> &str {
        self.0.unit.as_deref().unwrap_or_default()
    }
}

impl WireMessage for Metadata<'_> {
    fn encoded_len(&self) -> usize {
        varint_len(tag::METADATA_TYPE, self.wire_type())
            + string_len(tag::METADATA_FAMILY_NAME, &self.0.family)
            + string_len(tag::METADATA_HELP, self.help())
            + string_len(tag::METADATA_UNIT, self.unit())
    }

    fn put(&self, buf: &mut Vec<u8>) {
        put_varint(tag::METADATA_TYPE, self.wire_type(), buf);
        put_string(tag::METADATA_FAMILY_NAME, &self.0.family, buf);
        put_string(tag::METADATA_HELP, self.help(), buf);
        put_string(tag::METADATA_UNIT, self.unit(), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, reference};
    use super::*;
    use crate::strategies::{self, meta, timestamp, value};
    use iotel_model::Exemplar;
    use proptest::prelude::*;
    use proptest::sample::{Index, select};
    use prost::Message as _;
    use std::sync::Arc;

    /// The body the previous encoder made: owned prost messages, then snappy.
    fn reference_body(metrics: &[Metric]) -> (Vec<u8>, Vec<u8>) {
        let protobuf = reference::to_write_request(metrics).encode_to_vec();
        let body = snap::raw::Encoder::new()
            .compress_vec(&protobuf)
            .expect("small");
        (protobuf, body)
    }

    /// `n` samples of `n` series, shaped like a scrape of node metrics.
    fn scrape(n: usize, ts: i64) -> Vec<Metric> {
        let meta = Arc::new(
            MetricMeta::new("node_network_receive_bytes", MetricType::Counter)
                .with_help("Bytes received."),
        );
        (0..n)
            .map(|i| Metric {
                name: Arc::from("node_network_receive_bytes_total"),
                labels: Labels::from_pairs([
                    ("device", format!("eth{i}")),
                    ("device_id", "gw-0042".to_string()),
                    ("instance", "10.0.0.7:9100".to_string()),
                    ("job", "node".to_string()),
                ]),
                value: i as f64 * 1.5,
                timestamp_ms: ts,
                meta: meta.clone(),
                exemplar: None,
            })
            .collect()
    }

    #[test]
    fn a_batch_of_the_usual_size_reuses_the_buffers() {
        let mut encoder = Encoder::new();
        let first = encoder.encode(&scrape(2000, 1_700_000_000_000)).to_vec();
        let buffers = |e: &Encoder| {
            (
                e.protobuf.as_ptr(),
                e.compressed.as_ptr(),
                e.order.as_ptr(),
                e.series_first.as_ptr(),
            )
        };
        let before = buffers(&encoder);
        for ts in 1..5 {
            let batch = scrape(2000, 1_700_000_000_000 + ts * 1000);
            assert_eq!(encoder.encode(&batch), reference_body(&batch).1);
            assert_eq!(buffers(&encoder), before, "a buffer was reallocated");
        }
        assert_eq!(first, reference_body(&scrape(2000, 1_700_000_000_000)).1);
    }

    #[test]
    fn a_huge_batch_does_not_pin_its_memory() {
        let mut encoder = Encoder::new();
        let usual = scrape(2000, 1);
        encoder.encode(&usual);
        let usual_capacity = encoder.protobuf.capacity() + encoder.compressed.capacity();
        encoder.encode(&scrape(40_000, 2));
        let huge_capacity = encoder.protobuf.capacity() + encoder.compressed.capacity();
        assert!(huge_capacity > 10 * usual_capacity);
        // The next usual batches keep some of it, then give it back.
        encoder.encode(&usual);
        assert_eq!(
            encoder.protobuf.capacity() + encoder.compressed.capacity(),
            huge_capacity
        );
        for _ in 0..30 {
            assert_eq!(encoder.encode(&usual), reference_body(&usual).1);
        }
        let settled = encoder.protobuf.capacity() + encoder.compressed.capacity();
        assert!(
            settled <= 2 * usual_capacity,
            "{settled} vs {usual_capacity}"
        );
        // Small buffers are kept up to `ALWAYS_KEEP_BYTES`, or twice that.
        let order_bytes = encoder.order.capacity() * size_of::<u32>();
        assert!(order_bytes <= 2 * ALWAYS_KEEP_BYTES, "{order_bytes}");
    }

    #[test]
    fn an_empty_batch_is_the_empty_request() {
        assert_eq!(Encoder::new().encode(&[]), reference_body(&[]).1);
    }

    /// Names around `__name__` in byte order, and empties, which are left
    /// off the wire.
    const NAMES: &[&str] = &["", "Zone", "__name__", "_a", "a", "le", "job"];

    fn labels() -> impl Strategy<Value = Labels> {
        strategies::labels(NAMES)
    }

    fn exemplar() -> impl Strategy<Value = Option<Box<Exemplar>>> {
        strategies::exemplar(NAMES)
    }

    /// Samples of a few series, so that series repeat, interleave and
    /// share timestamps; equal label sets come both shared and built apart.
    fn batch() -> impl Strategy<Value = Vec<Metric>> {
        let series =
            proptest::collection::vec((select(vec!["", "up", "rtt_bucket"]), labels()), 1..6);
        let samples = proptest::collection::vec(
            (any::<Index>(), value(), timestamp(), meta(), exemplar()),
            0..40,
        );
        (series, samples).prop_map(|(series, samples)| {
            samples
                .into_iter()
                .map(|(which, value, timestamp_ms, meta, exemplar)| {
                    let (name, labels) = which.get(&series);
                    Metric {
                        name: Arc::from(*name),
                        labels: labels.clone(),
                        value,
                        timestamp_ms,
                        meta,
                        exemplar,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_encoder_writes_the_bytes_of_the_owned_messages(
            metrics in batch(),
            other in batch(),
        ) {
            let (protobuf, body) = reference_body(&metrics);
            let mut encoder = Encoder::new();
            prop_assert_eq!(encoder.encode(&metrics), &body[..]);
            prop_assert_eq!(&encoder.protobuf, &protobuf);
            // Again with the buffers of another batch in the way.
            prop_assert_eq!(encoder.encode(&other), &reference_body(&other).1[..]);
            prop_assert_eq!(encoder.encode(&metrics), &body[..]);
            prop_assert_eq!(super::super::encode(&metrics), body.clone());
            // So it decodes as before too; compared as text since NaN != NaN
            // (the bits are equal: the bytes are).
            let ours = format!("{:?}", decode(encoder.encode(&metrics)));
            let before = format!("{:?}", decode(&body));
            prop_assert_eq!(ours, before);
        }
    }
}
