use super::*;
use crate::Problem;
use iotel_engine::config::{ByteSize, Duration};
use iotel_formats::native::{self, Compression};
use iotel_model::LogRecord;
use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration as StdDuration;

// ---------------------------------------------------------------------------
// Helpers

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sink {
    #[serde(default)]
    buffer: BufferConfig,
}

pub(super) fn parse(toml_text: &str) -> BufferConfig {
    toml::from_str::<Sink>(toml_text).unwrap().buffer
}

pub(super) fn parse_error(toml_text: &str) -> String {
    toml::from_str::<Sink>(toml_text).unwrap_err().to_string()
}

/// `n` log records whose messages name the batch `tag`; every batch of the
/// same `n` encodes to the same size.
pub(super) fn batch(tag: u32, n: usize) -> Events {
    Events::Logs(
        (0..n)
            .map(|i| {
                LogRecord::new(
                    1_700_000_000_000_000_000 + i as i64 * 1_000_000,
                    format!("batch {tag:03} line {i:02}"),
                )
            })
            .collect(),
    )
}

/// The bytes one batch of `n` takes in a segment.
pub(super) fn frame_len(n: usize) -> u64 {
    let lens: Vec<usize> = (0..20)
        .map(|tag| {
            native::encode("", 0, &batch(tag, n), Compression::Snappy)
                .unwrap()
                .len()
        })
        .collect();
    assert!(lens.iter().all(|l| *l == lens[0]), "{lens:?}");
    (iotel_buffer::HEADER_LEN + lens[0]) as u64
}

pub(super) fn metrics() -> ComponentMetrics {
    ComponentMetrics::detached("out", "iotel")
}

/// The value of the series `name` whose labels include `labels`.
pub(super) fn value(m: &ComponentMetrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m.registry()
        .snapshot()
        .into_iter()
        .find(|s| &*s.name == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| s.value)
}

pub(super) fn buffer_dropped(m: &ComponentMetrics, reason: &str) -> Option<f64> {
    value(m, "iotel_buffer_dropped_total", &[("reason", reason)])
}

pub(super) fn discarded(m: &ComponentMetrics, reason: &str) -> Option<f64> {
    value(
        m,
        "iotel_component_discarded_events_total",
        &[("reason", reason)],
    )
}

pub(super) fn memory(max_events: usize, when_full: WhenFull) -> BufferConfig {
    BufferConfig::Memory(MemoryConfig {
        max_events: NonZeroUsize::new(max_events).unwrap(),
        when_full,
        ..MemoryConfig::default()
    })
}

/// A disk buffer of `segments` segments of `per_segment` batches of `n`
/// events each, synced on every push.
pub(super) fn disk(n: usize, per_segment: u64, segments: u64, when_full: WhenFull) -> BufferConfig {
    let segment = per_segment * frame_len(n);
    BufferConfig::Disk(DiskConfig {
        max_size: ByteSize(segments * segment),
        max_segment_size: Some(ByteSize(segment)),
        when_full,
        fsync: Fsync::Always,
        ..DiskConfig::default()
    })
}

pub(super) fn open(config: &BufferConfig, dir: &Path, m: &ComponentMetrics) -> SinkBuffer {
    SinkBuffer::open(config, dir, m).unwrap()
}

pub(super) fn next(b: &mut SinkBuffer) -> Buffered {
    b.next().unwrap().expect("a batch")
}

/// Every batch available, as (id, events).
pub(super) fn drain(b: &mut SinkBuffer) -> Vec<(u64, Events)> {
    std::iter::from_fn(|| b.next().unwrap().map(|x| (x.id, x.events))).collect()
}

fn now_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".dat") && !p.ends_with("ledger.dat"))
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

// ---------------------------------------------------------------------------
// Config

#[test]
fn a_sink_without_a_buffer_table_gets_a_memory_buffer_with_its_defaults() {
    let want = BufferConfig::Memory(MemoryConfig {
        max_events: NonZeroUsize::new(20_000).unwrap(),
        when_full: WhenFull::DropOldest,
        downsample_window: None,
        downsample_keep_one_in: None,
    });
    assert_eq!(parse(""), want);
    assert_eq!(parse("buffer = { type = \"memory\" }"), want);
    assert_eq!(BufferConfig::default(), want);
}

#[test]
fn every_memory_key_is_read() {
    assert_eq!(
        parse("buffer = { type = \"memory\", max_events = 500, when_full = \"block\" }"),
        memory(500, WhenFull::Block)
    );
}

#[test]
fn every_disk_key_is_read() {
    let c = parse(
        "buffer = { type = \"disk\", max_size = \"256MiB\", max_segment_size = \"1MiB\", \
         when_full = \"block\", fsync = \"always\" }",
    );
    assert_eq!(
        c,
        BufferConfig::Disk(DiskConfig {
            max_size: ByteSize(256 << 20),
            max_segment_size: Some(ByteSize(1 << 20)),
            when_full: WhenFull::Block,
            fsync: Fsync::Always,
            downsample_window: None,
            downsample_keep_one_in: None,
        })
    );
    assert_eq!(c.validate("buffer"), vec![]);
}

#[test]
fn a_disk_buffer_defaults_to_64_mib_in_4_mib_segments_synced_every_second() {
    let BufferConfig::Disk(c) = parse("buffer = { type = \"disk\" }") else {
        panic!("not disk");
    };
    assert_eq!(c, DiskConfig::default());
    assert_eq!(c.max_size, ByteSize(64 << 20));
    assert_eq!(c.segment_size(), 4 << 20);
    assert_eq!(c.when_full, WhenFull::DropOldest);
    assert_eq!(c.fsync, Fsync::Interval(Duration::from_secs(1)));
    assert_eq!(
        c.fsync.policy(),
        iotel_buffer::FsyncPolicy::Interval(StdDuration::from_secs(1))
    );
}

#[test]
fn the_default_segment_is_a_sixteenth_of_max_size_within_64_kib_and_4_mib() {
    let segment = |max_size: &str| {
        let BufferConfig::Disk(c) = parse(&format!(
            "buffer = {{ type = \"disk\", max_size = \"{max_size}\" }}"
        )) else {
            panic!("not disk");
        };
        c.segment_size()
    };
    assert_eq!(segment("16MiB"), 1 << 20);
    assert_eq!(segment("2MiB"), 128 << 10);
    assert_eq!(segment("512KiB"), 64 << 10);
    assert_eq!(segment("1GiB"), 4 << 20);
}

#[test]
fn fsync_takes_always_never_or_a_duration() {
    let fsync = |s: &str| {
        let BufferConfig::Disk(c) =
            parse(&format!("buffer = {{ type = \"disk\", fsync = \"{s}\" }}"))
        else {
            panic!("not disk");
        };
        c.fsync
    };
    assert_eq!(fsync("always"), Fsync::Always);
    assert_eq!(fsync("never"), Fsync::Never);
    assert_eq!(fsync("250ms"), Fsync::Interval(Duration::from_millis(250)));
    assert_eq!(fsync("never").policy(), iotel_buffer::FsyncPolicy::Never);
    assert_eq!(Fsync::Interval(Duration::from_secs(2)).to_string(), "2s");
}

#[test]
fn an_unknown_key_is_refused_with_the_keys_there_are() {
    let e = parse_error("buffer = { type = \"memory\", max_event = 5 }");
    assert!(
        e.contains(
            "unknown field `max_event`, expected one of `max_events`, `when_full`, \
             `downsample_window`, `downsample_keep_one_in`"
        ),
        "{e}"
    );
    let e = parse_error("buffer = { type = \"disk\", max_events = 5 }");
    assert!(
        e.contains(
            "unknown field `max_events`, expected one of `max_size`, `max_segment_size`, \
             `when_full`, `fsync`, `downsample_window`, `downsample_keep_one_in`"
        ),
        "{e}"
    );
}

#[test]
fn an_unknown_type_or_when_full_is_refused_with_the_values_there_are() {
    let e = parse_error("buffer = { type = \"ram\" }");
    assert!(
        e.contains("unknown variant `ram`, expected `memory` or `disk`"),
        "{e}"
    );
    let e = parse_error("buffer = { type = \"memory\", when_full = \"drop_newest\" }");
    assert!(
        e.contains(
            "unknown variant `drop_newest`, expected one of `drop_oldest`, `block`, `downsample`"
        ),
        "{e}"
    );
}

#[test]
fn a_bad_fsync_string_is_refused_with_what_it_takes() {
    let e = parse_error("buffer = { type = \"disk\", fsync = \"sometimes\" }");
    assert!(
        e.contains(r#"expected "always", "never" or a duration such as "1s", got "sometimes""#),
        "{e}"
    );
}

#[test]
fn zero_max_events_is_refused() {
    let e = parse_error("buffer = { type = \"memory\", max_events = 0 }");
    assert!(e.contains("nonzero"), "{e}");
}

#[test]
fn downsample_is_valid_for_both_kinds_with_a_1m_window_keeping_1_in_10() {
    for kind in ["memory", "disk"] {
        let c = parse(&format!(
            "buffer = {{ type = \"{kind}\", when_full = \"downsample\" }}"
        ));
        assert_eq!(c.validate("buffer"), vec![], "{kind}");
        assert_eq!(c.when_full(), WhenFull::Downsample, "{kind}");
        assert_eq!(
            c.downsample(),
            Downsample {
                window: Duration::from_secs(60),
                keep_one_in: NonZeroU32::new(10).unwrap(),
            },
            "{kind}"
        );
    }
}

#[test]
fn max_size_below_two_segments_is_refused() {
    let c = parse("buffer = { type = \"disk\", max_size = \"1MiB\", max_segment_size = \"1MiB\" }");
    assert_eq!(
        c.validate("buffer"),
        vec![Problem::new(
            "buffer.max_size",
            "expected at least twice max_segment_size (1MiB), so 2MiB or more, got 1MiB: the \
             segment being written must never be the one dropped to make room"
        )]
    );
    let c = parse("buffer = { type = \"disk\", max_size = \"100KiB\" }");
    assert_eq!(
        c.validate("sinks.up.buffer"),
        vec![Problem::new(
            "sinks.up.buffer.max_size",
            "expected at least 128KiB (twice max_segment_size, which defaults to max_size / 16 \
             but at least 64KiB), got 100KiB; or set a smaller max_segment_size"
        )]
    );
    let c = parse("buffer = { type = \"disk\", max_size = \"2MiB\", max_segment_size = \"1MiB\" }");
    assert_eq!(c.validate("buffer"), vec![]);
}

#[test]
fn a_zero_fsync_interval_and_a_segment_no_larger_than_a_header_are_refused() {
    let c = parse("buffer = { type = \"disk\", fsync = \"0s\", max_segment_size = \"32\" }");
    assert_eq!(
        c.validate(""),
        vec![
            Problem::new(
                "max_segment_size",
                "expected more than the 32-byte record header, such as \"1MiB\", got 32B"
            ),
            Problem::new(
                "fsync",
                "expected a duration above 0s, such as \"1s\", or \"always\""
            ),
        ]
    );
}

#[test]
fn open_refuses_a_config_validate_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse("buffer = { type = \"memory\", downsample_keep_one_in = 5 }");
    let e = SinkBuffer::open(&c, dir.path(), &metrics()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "buffer.downsample_keep_one_in: only used with when_full = \"downsample\", but \
         when_full is \"drop_oldest\"; remove downsample_keep_one_in or set when_full = \
         \"downsample\""
    );
}

// ---------------------------------------------------------------------------
// Both kinds

pub(super) fn kinds(dir: &Path) -> [(&'static str, BufferConfig, PathBuf); 2] {
    [
        ("memory", memory(1000, WhenFull::DropOldest), dir.join("m")),
        ("disk", disk(3, 10, 4, WhenFull::DropOldest), dir.join("d")),
    ]
}

#[test]
fn batches_come_back_oldest_first_exactly_and_acks_and_rewinds_hold() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let m = metrics();
        let mut b = open(&config, &path, &m);
        assert!(b.is_empty(), "{kind}");
        for tag in 0..4 {
            b.push(&batch(tag, 3)).unwrap();
        }
        b.push(&Events::Logs(vec![])).unwrap();
        let got = drain(&mut b);
        let first = got[0].0;
        assert_eq!(
            got,
            (0..4u32)
                .map(|t| (first + u64::from(t), batch(t, 3)))
                .collect::<Vec<_>>(),
            "{kind}"
        );
        assert_eq!(b.next().unwrap(), None, "{kind}");
        b.ack(first + 1).unwrap();
        let s = b.stats();
        assert_eq!((s.records, s.events), (2, Some(6)), "{kind}");
        b.rewind();
        let again = drain(&mut b);
        assert_eq!(
            again,
            vec![(first + 2, batch(2, 3)), (first + 3, batch(3, 3))],
            "{kind}"
        );
        // Acking again what was acknowledged changes nothing.
        b.ack(first).unwrap();
        b.ack(first + 3).unwrap();
        assert!(b.is_empty(), "{kind}");
        assert_eq!(b.stats().events, Some(0), "{kind}");
        assert_eq!(b.stats().oldest_unacked_unix_ms, None, "{kind}");
        b.close().unwrap();
    }
}

#[test]
fn an_ack_of_an_id_not_handed_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let mut b = open(&config, &path, &metrics());
        b.push(&batch(0, 3)).unwrap();
        b.push(&batch(1, 3)).unwrap();
        let first = next(&mut b).id;
        let e = b.ack(first + 1).unwrap_err();
        assert_eq!(e.code(), "ack_out_of_range", "{kind}");
        assert!(!e.is_retryable(), "{kind}");
        assert!(
            matches!(
                e,
                BufferIoError::AckOutOfRange { id, last_handed_out: Some(last) }
                    if id == first + 1 && last == first
            ),
            "{kind}: {e:?}"
        );
        b.ack(first).unwrap();
    }
}

#[test]
fn a_new_buffer_gives_ids_from_the_clock_in_microseconds() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let before = now_us();
        let mut b = open(&config, &path, &metrics());
        b.push(&batch(0, 3)).unwrap();
        b.push(&batch(1, 3)).unwrap();
        let (a, c) = (next(&mut b).id, next(&mut b).id);
        assert!(a >= before, "{kind}: {a} < {before}");
        assert!(a <= now_us(), "{kind}");
        assert_eq!(c, a + 1, "{kind}");
    }
}

#[test]
fn the_gauges_show_what_waits_and_every_drop_reason_starts_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let m = metrics();
        let mut b = open(&config, &path, &m);
        for reason in ["drop_oldest", "corrupt", "segment_missing", "downsampled"] {
            assert_eq!(buffer_dropped(&m, reason), Some(0.0), "{kind} {reason}");
        }
        let gauge = |name| value(&m, name, &[("component_id", "out")]);
        assert_eq!(gauge("iotel_buffer_records"), Some(0.0));
        b.push(&batch(0, 3)).unwrap();
        b.push(&batch(1, 3)).unwrap();
        b.update_metrics();
        assert_eq!(gauge("iotel_buffer_records"), Some(2.0), "{kind}");
        assert_eq!(gauge("iotel_buffer_events"), Some(6.0), "{kind}");
        let age = gauge("iotel_buffer_oldest_age_seconds").unwrap();
        assert!((0.0..60.0).contains(&age), "{kind}: {age}");
        if kind == "disk" {
            assert_eq!(
                gauge("iotel_buffer_bytes"),
                Some(2.0 * frame_len(3) as f64),
                "{kind}"
            );
        } else {
            assert_eq!(gauge("iotel_buffer_bytes"), None, "{kind}");
        }
        next(&mut b);
        let last = next(&mut b).id;
        b.ack(last).unwrap();
        b.update_metrics();
        assert_eq!(gauge("iotel_buffer_records"), Some(0.0), "{kind}");
        assert_eq!(gauge("iotel_buffer_events"), Some(0.0), "{kind}");
        assert_eq!(
            gauge("iotel_buffer_oldest_age_seconds"),
            Some(0.0),
            "{kind}"
        );
    }
}

// ---------------------------------------------------------------------------
// Memory

#[test]
fn memory_drop_oldest_drops_whole_batches_not_being_sent_and_counts_them() {
    let m = metrics();
    let mut b = open(
        &memory(10, WhenFull::DropOldest),
        Path::new("/nonexistent"),
        &m,
    );
    b.push(&batch(0, 4)).unwrap();
    b.push(&batch(1, 4)).unwrap();
    let sending = next(&mut b);
    assert_eq!(sending.events, batch(0, 4));
    b.push(&batch(2, 5)).unwrap();
    let s = b.stats();
    assert_eq!((s.records, s.events), (2, Some(9)));
    assert_eq!(
        s.dropped.drop_oldest,
        Lost {
            batches: 1,
            events: 4
        }
    );
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(1.0));
    assert_eq!(discarded(&m, "drop_oldest"), Some(4.0));
    assert_eq!(next(&mut b).events, batch(2, 5));

    // The batches being sent take 9 of 10: no room until they are acked.
    let e = b.push(&batch(3, 3)).unwrap_err();
    assert!(matches!(e, PushError::Full), "{e:?}");
    assert_eq!(b.stats().dropped.drop_oldest.batches, 1);
    b.ack(sending.id).unwrap();
    b.push(&batch(3, 3)).unwrap();
    assert_eq!(next(&mut b).events, batch(3, 3));
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(1.0));
    assert_eq!(discarded(&m, "drop_oldest"), Some(4.0));
}

#[test]
fn memory_block_refuses_with_full_until_an_ack_makes_room() {
    let m = metrics();
    let mut b = open(&memory(10, WhenFull::Block), Path::new("/nonexistent"), &m);
    b.push(&batch(0, 6)).unwrap();
    let e = b.push(&batch(1, 6)).unwrap_err();
    assert!(matches!(e, PushError::Full));
    assert!(e.is_retryable());
    assert_eq!(e.code(), "buffer_full");
    let id = next(&mut b).id;
    b.ack(id).unwrap();
    b.push(&batch(1, 6)).unwrap();
    assert_eq!(next(&mut b).events, batch(1, 6));
    assert_eq!(b.stats().dropped, Dropped::default());
    assert_eq!(discarded(&m, "drop_oldest"), None);
}

#[test]
fn a_batch_over_max_events_is_too_large_for_good() {
    let mut b = open(
        &memory(5, WhenFull::DropOldest),
        Path::new("/nonexistent"),
        &metrics(),
    );
    let e = b.push(&batch(0, 6)).unwrap_err();
    assert!(matches!(
        e,
        PushError::TooManyEvents {
            events: 6,
            max_events: 5
        }
    ));
    assert!(!e.is_retryable());
    assert_eq!(e.code(), "batch_too_large");
    assert!(b.is_empty());
}

// ---------------------------------------------------------------------------
// Disk

#[test]
fn a_reopened_disk_buffer_replays_unacked_batches_oldest_first_and_continues_the_ids() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk(3, 2, 10, WhenFull::DropOldest);
    let mut b = open(&config, dir.path(), &metrics());
    for tag in 0..5 {
        b.push(&batch(tag, 3)).unwrap();
    }
    let first = next(&mut b).id;
    next(&mut b);
    b.ack(first).unwrap();
    b.close().unwrap();

    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    let s = b.stats();
    assert_eq!((s.records, s.events), (4, Some(12)));
    assert_eq!(s.dropped, Dropped::default());
    assert_eq!(
        drain(&mut b),
        (1..5u32)
            .map(|t| (first + u64::from(t), batch(t, 3)))
            .collect::<Vec<_>>()
    );
    b.push(&batch(5, 3)).unwrap();
    assert_eq!(next(&mut b).id, first + 5);
    drop(b); // a crash: nothing pushed is lost

    let mut b = open(&config, dir.path(), &m);
    assert_eq!(drain(&mut b).len(), 5);
}

#[test]
fn a_disk_buffer_reopened_empty_keeps_its_ids_not_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk(3, 2, 10, WhenFull::DropOldest);
    let mut b = open(&config, dir.path(), &metrics());
    b.push(&batch(0, 3)).unwrap();
    let id = next(&mut b).id;
    b.ack(id).unwrap();
    b.close().unwrap();
    let mut b = open(&config, dir.path(), &metrics());
    b.push(&batch(1, 3)).unwrap();
    assert_eq!(next(&mut b).id, id + 1);
}

#[test]
fn disk_drop_oldest_counts_the_batches_and_events_of_the_segment_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    // Two segments of three batches of 3 events.
    let mut b = open(&disk(3, 3, 2, WhenFull::DropOldest), dir.path(), &m);
    for tag in 0..6 {
        b.push(&batch(tag, 3)).unwrap();
    }
    assert_eq!(b.stats().bytes, Some(6 * frame_len(3)));
    b.push(&batch(6, 3)).unwrap();
    let s = b.stats();
    assert_eq!((s.records, s.events), (4, Some(12)));
    assert_eq!(
        s.dropped.drop_oldest,
        Lost {
            batches: 3,
            events: 9
        }
    );
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(3.0));
    assert_eq!(discarded(&m, "drop_oldest"), Some(9.0));
    let tags: Vec<Events> = drain(&mut b).into_iter().map(|(_, e)| e).collect();
    assert_eq!(tags, (3..7).map(|t| batch(t, 3)).collect::<Vec<_>>());
}

#[test]
fn a_disk_batch_dropped_while_being_sent_counts_only_if_the_sink_gives_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut b = open(&disk(3, 3, 2, WhenFull::DropOldest), dir.path(), &m);
    for tag in 0..6 {
        b.push(&batch(tag, 3)).unwrap();
    }
    let (b0, b1) = (next(&mut b), next(&mut b));
    // Deletes the segment of 0, 1 and 2: only 2 was not being sent.
    b.push(&batch(6, 3)).unwrap();
    let lost = |b: &SinkBuffer| b.stats().dropped.drop_oldest;
    assert_eq!(
        lost(&b),
        Lost {
            batches: 1,
            events: 3
        }
    );
    assert_eq!(b.stats().records, 4);
    // The sink delivered 0: not lost.
    b.ack(b0.id).unwrap();
    assert_eq!(lost(&b).batches, 1);
    // It gives 1 up: nobody holds it any more.
    b.rewind();
    assert_eq!(
        lost(&b),
        Lost {
            batches: 2,
            events: 6
        }
    );
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(2.0));
    assert_eq!(discarded(&m, "drop_oldest"), Some(6.0));
    let next_up = next(&mut b);
    assert_eq!(next_up.id, b1.id + 2);
    assert_eq!(next_up.events, batch(3, 3));
}

#[test]
fn disk_block_refuses_with_full_until_an_ack_frees_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut b = open(&disk(3, 3, 2, WhenFull::Block), dir.path(), &m);
    for tag in 0..6 {
        b.push(&batch(tag, 3)).unwrap();
    }
    let e = b.push(&batch(6, 3)).unwrap_err();
    assert!(matches!(e, PushError::Full), "{e:?}");
    assert!(e.is_retryable());
    next(&mut b);
    next(&mut b);
    let third = next(&mut b).id;
    b.ack(third - 1).unwrap();
    assert!(matches!(b.push(&batch(6, 3)), Err(PushError::Full)));
    b.ack(third).unwrap();
    b.push(&batch(6, 3)).unwrap();
    assert_eq!(drain(&mut b).last().unwrap().1, batch(6, 3));
    assert_eq!(b.stats().dropped, Dropped::default());
}

#[test]
fn a_batch_larger_than_a_disk_segment_is_too_large_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = open(&disk(3, 2, 4, WhenFull::DropOldest), dir.path(), &metrics());
    let e = b.push(&batch(0, 40)).unwrap_err();
    let max = 2 * frame_len(3) - iotel_buffer::HEADER_LEN as u64;
    assert!(
        matches!(e, PushError::TooLarge { events: 40, max_bytes, .. } if max_bytes == max),
        "{e:?}"
    );
    assert_eq!(e.code(), "batch_too_large");
    assert!(!e.is_retryable());
    assert!(b.is_empty());
}

#[test]
fn a_corrupted_byte_found_at_open_costs_its_batch_counted_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk(3, 10, 4, WhenFull::DropOldest);
    let mut b = open(&config, dir.path(), &metrics());
    for tag in 0..3 {
        b.push(&batch(tag, 3)).unwrap();
    }
    b.close().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    // A payload byte of the second record.
    flip_byte(
        &files[0],
        frame_len(3) + iotel_buffer::HEADER_LEN as u64 + 10,
    );

    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    let s = b.stats();
    assert_eq!((s.records, s.events), (2, Some(6)));
    // Its event count was never known to this process.
    assert_eq!(
        s.dropped.corrupt,
        Lost {
            batches: 1,
            events: 0
        }
    );
    let got: Vec<Events> = drain(&mut b).into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, vec![batch(0, 3), batch(2, 3)]);
    assert_eq!(b.stats().dropped.corrupt.batches, 1);
    assert_eq!(buffer_dropped(&m, "corrupt"), Some(1.0));
    assert_eq!(discarded(&m, "corrupt"), None);
}

#[test]
fn a_corrupted_byte_found_while_open_counts_the_events_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut b = open(&disk(3, 10, 4, WhenFull::DropOldest), dir.path(), &m);
    for tag in 0..3 {
        b.push(&batch(tag, 3)).unwrap();
    }
    let files = segment_files(dir.path());
    flip_byte(
        &files[0],
        frame_len(3) + iotel_buffer::HEADER_LEN as u64 + 10,
    );
    let got: Vec<Events> = drain(&mut b).into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, vec![batch(0, 3), batch(2, 3)]);
    let s = b.stats();
    assert_eq!(
        s.dropped.corrupt,
        Lost {
            batches: 1,
            events: 3
        }
    );
    assert_eq!((s.records, s.events), (2, Some(6)));
    assert_eq!(buffer_dropped(&m, "corrupt"), Some(1.0));
    assert_eq!(discarded(&m, "corrupt"), Some(3.0));
    // Read again after a rewind: not counted twice.
    b.rewind();
    assert_eq!(drain(&mut b).len(), 2);
    assert_eq!(b.stats().dropped.corrupt.batches, 1);
    assert_eq!(discarded(&m, "corrupt"), Some(3.0));
}

#[test]
fn a_record_that_is_not_a_native_batch_is_skipped_and_counted_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let BufferConfig::Disk(config) = disk(3, 10, 4, WhenFull::DropOldest) else {
        unreachable!()
    };
    let (mut raw, _) = iotel_buffer::DiskBuffer::open(config.buffer_config(dir.path(), 1)).unwrap();
    let frame = |tag| native::encode("", 0, &batch(tag, 3), Compression::Snappy).unwrap();
    raw.push(&frame(0)).unwrap();
    raw.push(b"not a native batch").unwrap();
    raw.push(&frame(2)).unwrap();
    raw.close().unwrap();

    let m = metrics();
    let mut b = open(&BufferConfig::Disk(config), dir.path(), &m);
    // Its header does not decode: its event count is unknown.
    assert_eq!((b.stats().records, b.stats().events), (3, None));
    assert_eq!(drain(&mut b), vec![(1, batch(0, 3)), (3, batch(2, 3))]);
    let s = b.stats();
    assert_eq!((s.records, s.events), (2, Some(6)));
    assert_eq!(
        s.dropped.corrupt,
        Lost {
            batches: 1,
            events: 0
        }
    );
    assert_eq!(buffer_dropped(&m, "corrupt"), Some(1.0));
    b.rewind();
    assert_eq!(drain(&mut b).len(), 2);
    assert_eq!(b.stats().dropped.corrupt.batches, 1);
    b.ack(3).unwrap();
    assert!(b.is_empty());
}

#[test]
fn a_record_that_is_not_a_native_batch_at_the_head_is_acknowledged_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let BufferConfig::Disk(config) = disk(3, 10, 4, WhenFull::DropOldest) else {
        unreachable!()
    };
    let (mut raw, _) = iotel_buffer::DiskBuffer::open(config.buffer_config(dir.path(), 1)).unwrap();
    raw.push(b"garbage").unwrap();
    raw.close().unwrap();
    let mut b = open(&BufferConfig::Disk(config.clone()), dir.path(), &metrics());
    assert_eq!(b.next().unwrap(), None);
    assert!(b.is_empty());
    b.close().unwrap();
    // Not read (nor counted) again.
    let b = open(&BufferConfig::Disk(config), dir.path(), &metrics());
    assert!(b.is_empty());
    assert_eq!(b.stats().dropped, Dropped::default());
}
