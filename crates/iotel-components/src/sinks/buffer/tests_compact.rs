//! [`SinkBuffer::compact`] on both kinds of buffer.

use super::compact::freed_at_least;
use super::tests::{
    batch, buffer_dropped, discarded, disk, drain, frame_len, memory, metrics, next, open,
};
use super::tests_downsample::{brief, gauge, ten};
use super::*;
use iotel_engine::config::ByteSize;
use iotel_model::Severity;

// ---------------------------------------------------------------------------
// Compaction: memory

/// `n` logs of no severity, one stream; the message names `tag`.
fn logs(tag: u32, n: usize) -> Events {
    batch(tag, n)
}

fn memory_downsample(max_events: usize) -> BufferConfig {
    let BufferConfig::Memory(mut c) = memory(max_events, WhenFull::Downsample) else {
        unreachable!()
    };
    c.downsample_keep_one_in = Some(ten());
    BufferConfig::Memory(c)
}

#[test]
fn memory_compaction_replaces_the_two_oldest_batches_and_the_new_one_then_fits() {
    let m = metrics();
    let mut b = open(&memory_downsample(40), Path::new("/nonexistent"), &m);
    for tag in 0..8 {
        b.push(&logs(tag, 5)).unwrap();
    }
    // Being sent when the buffer filled up: handed out again after.
    let first = next(&mut b).id;
    assert!(matches!(b.push(&logs(8, 5)), Err(PushError::Full)));
    assert_eq!(b.stats().dropped, Dropped::default());

    let c = b.compact().unwrap();
    // 8 batches wait: an eighth is 1, at least 2. Their 10 lines are one
    // stream, of which the 1st of every 10 is kept.
    assert_eq!(
        c,
        Compacted {
            batches_in: 2,
            events_in: 10,
            events_out: 1,
            freed: true,
        }
    );
    let s = b.stats();
    assert_eq!((s.records, s.events), (7, Some(31)));
    assert_eq!(
        s.dropped.downsampled,
        Lost {
            batches: 2,
            events: 9
        }
    );
    assert_eq!(s.dropped.drop_oldest, Lost::default());
    assert_eq!(buffer_dropped(&m, "downsampled"), Some(2.0));
    assert_eq!(discarded(&m, "downsampled"), Some(9.0));
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(0.0));
    assert_eq!(discarded(&m, "drop_oldest"), None);

    b.push(&logs(8, 5)).unwrap();
    let got = drain(&mut b);
    let events: Vec<Events> = got.iter().map(|(_, e)| e.clone()).collect();
    let Events::Logs(first_line) = logs(0, 1) else {
        unreachable!()
    };
    let mut want: Vec<Events> = (2..8).map(|t| logs(t, 5)).collect();
    want.push(Events::Logs(first_line));
    want.push(logs(8, 5));
    assert_eq!(events, want);
    // New ids, above every id given before.
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (first + 2..first + 10).collect::<Vec<_>>());
}

#[test]
fn memory_compaction_that_would_not_shrink_anything_changes_nothing() {
    let m = metrics();
    let mut b = open(&memory_downsample(8), Path::new("/nonexistent"), &m);
    // One sample per series and window: nothing to compact.
    let scrape = |at_s| {
        Events::Metrics(
            (0..4)
                .map(|d| gauge("temp", &d.to_string(), 1.0, at_s))
                .collect(),
        )
    };
    b.push(&scrape(0)).unwrap();
    b.push(&scrape(60)).unwrap();
    assert!(matches!(b.push(&scrape(120)), Err(PushError::Full)));
    let c = b.compact().unwrap();
    assert_eq!(
        c,
        Compacted {
            batches_in: 2,
            events_in: 8,
            events_out: 8,
            freed: false,
        }
    );
    assert_eq!(drain(&mut b).len(), 2);
    assert_eq!(b.stats().dropped, Dropped::default());
    assert_eq!(buffer_dropped(&m, "downsampled"), Some(0.0));
    assert_eq!(discarded(&m, "downsampled"), None);
}

#[test]
fn compaction_with_one_batch_waiting_frees_nothing() {
    let mut b = open(
        &memory_downsample(10),
        Path::new("/nonexistent"),
        &metrics(),
    );
    b.push(&logs(0, 10)).unwrap();
    assert!(matches!(b.push(&logs(1, 1)), Err(PushError::Full)));
    assert_eq!(b.compact().unwrap(), Compacted::default());
    assert_eq!(b.stats().events, Some(10));
}

#[test]
fn memory_downsample_refuses_a_push_when_full_instead_of_dropping() {
    let mut b = open(
        &memory_downsample(10),
        Path::new("/nonexistent"),
        &metrics(),
    );
    b.push(&logs(0, 6)).unwrap();
    assert!(matches!(b.push(&logs(1, 6)), Err(PushError::Full)));
    assert_eq!(b.stats().dropped, Dropped::default());
}

// ---------------------------------------------------------------------------
// Compaction: disk

/// Two segments of three batches of 3 events, downsampling 1 in 10.
fn disk_downsample() -> BufferConfig {
    let BufferConfig::Disk(mut c) = disk(3, 3, 2, WhenFull::Downsample) else {
        unreachable!()
    };
    c.downsample_keep_one_in = Some(ten());
    BufferConfig::Disk(c)
}

#[test]
fn disk_compaction_frees_the_head_segment_and_a_reopened_buffer_replays_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk_downsample();
    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    for tag in 0..6 {
        b.push(&logs(tag, 3)).unwrap();
    }
    let first = next(&mut b).id;
    assert!(matches!(b.push(&logs(6, 3)), Err(PushError::Full)));

    let c = b.compact().unwrap();
    // Two batches would not free a segment: it reads on past the first
    // segment's 3 records, so 4. Their 12 lines, one stream: the 1st and
    // the 11th are kept.
    assert_eq!(
        c,
        Compacted {
            batches_in: 4,
            events_in: 12,
            events_out: 2,
            freed: true,
        }
    );
    let s = b.stats();
    assert_eq!((s.records, s.events), (3, Some(8)));
    assert_eq!(
        s.dropped.downsampled,
        Lost {
            batches: 4,
            events: 10
        }
    );
    assert_eq!(buffer_dropped(&m, "downsampled"), Some(4.0));
    assert_eq!(discarded(&m, "downsampled"), Some(10.0));
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(0.0));
    // The first segment is gone; the compacted batch began a third one.
    let compacted_len = frame_len_of(&compacted_logs());
    assert_eq!(s.bytes, Some(3 * frame_len(3) + compacted_len));

    b.push(&logs(6, 3)).unwrap();
    let want = vec![
        (first + 4, logs(4, 3)),
        (first + 5, logs(5, 3)),
        (first + 6, compacted_logs()),
        (first + 7, logs(6, 3)),
    ];
    assert_eq!(drain(&mut b), want);
    b.close().unwrap();

    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    assert_eq!((b.stats().records, b.stats().events), (4, Some(11)));
    assert_eq!(drain(&mut b), want);
}

/// What compacting `logs(0..4, 3)` keeps: line 0 of batch 0, line 1 of
/// batch 3 (the 1st and the 11th line).
fn compacted_logs() -> Events {
    let (Events::Logs(a), Events::Logs(b)) = (logs(0, 3), logs(3, 3)) else {
        unreachable!()
    };
    Events::Logs(vec![a[0].clone(), b[1].clone()])
}

fn frame_len_of(events: &Events) -> u64 {
    let payload =
        iotel_formats::native::encode("", 0, events, iotel_formats::native::Compression::Snappy)
            .unwrap();
    (iotel_buffer::HEADER_LEN + payload.len()) as u64
}

#[test]
fn disk_compaction_that_would_not_free_a_segment_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    // 3 lines, each an ERROR: kept whole, nothing shrinks.
    let errors = |tag| {
        let Events::Logs(mut v) = logs(tag, 3) else {
            unreachable!()
        };
        for l in &mut v {
            l.severity = Some(Severity::Error);
        }
        Events::Logs(v)
    };
    // Two segments of three such batches.
    let segment = 3 * frame_len_of(&errors(0));
    let config = BufferConfig::Disk(DiskConfig {
        max_size: ByteSize(2 * segment),
        max_segment_size: Some(ByteSize(segment)),
        when_full: WhenFull::Downsample,
        fsync: Fsync::Always,
        ..DiskConfig::default()
    });
    let mut b = open(&config, dir.path(), &m);
    for tag in 0..6 {
        b.push(&errors(tag)).unwrap();
    }
    assert!(matches!(b.push(&errors(6)), Err(PushError::Full)));
    let before = b.stats();
    let c = b.compact().unwrap();
    assert_eq!(
        c,
        Compacted {
            batches_in: 4,
            events_in: 12,
            events_out: 12,
            freed: false,
        }
    );
    assert_eq!(b.stats(), before);
    assert_eq!(drain(&mut b).len(), 6);
    assert_eq!(buffer_dropped(&m, "downsampled"), Some(0.0));
    assert!(matches!(b.push(&errors(6)), Err(PushError::Full)));
}

#[test]
fn the_least_a_disk_compaction_frees_is_the_smallest_head_segment_possible() {
    // Records of 100 bytes in segments of 300: the head's segment holds 1,
    // 2 or 3 of the 4 read. Holding 1, it was closed because the next did
    // not fit: more than 200 bytes. So at least 201.
    let uniform: Vec<(u64, u64)> = (1..=4).map(|id| (id, 100)).collect();
    assert_eq!(freed_at_least(&uniform, 300), 201);
    // Not past the segment's size: all of them may be in the head's
    // segment, which then is not deleted.
    assert_eq!(freed_at_least(&uniform[..3], 300), 0);
    // A gap in the ids: the record after it need not have started the
    // segment; only what was read before it is sure.
    let gap = [(1, 100), (3, 100), (4, 100), (5, 100)];
    assert_eq!(freed_at_least(&gap, 300), 100);
    // Large records: one each per segment.
    assert_eq!(freed_at_least(&[(1, 180), (2, 180)], 300), 180);
    assert_eq!(freed_at_least(&[], 300), 0);
}

#[test]
fn a_disk_compaction_reads_at_most_two_segments_worth_beyond_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    // 32 segments of one batch each.
    let BufferConfig::Disk(mut config) = disk(3, 1, 32, WhenFull::Downsample) else {
        unreachable!()
    };
    config.downsample_keep_one_in = Some(ten());
    let mut b = open(&BufferConfig::Disk(config), dir.path(), &m);
    for tag in 0..32 {
        b.push(&logs(tag, 3)).unwrap();
    }
    assert!(matches!(b.push(&logs(32, 3)), Err(PushError::Full)));
    // An eighth of 32 would be 4; 3 records are past two segments.
    assert_eq!(
        b.compact().unwrap(),
        Compacted {
            batches_in: 3,
            events_in: 9,
            events_out: 1,
            freed: true,
        }
    );
    b.push(&logs(32, 3)).unwrap();
    let s = b.stats();
    assert_eq!((s.records, s.events), (31, Some(1 + 29 * 3 + 3)));
    assert_eq!(discarded(&m, "downsampled"), Some(8.0));
}

#[test]
fn memory_compaction_of_metrics_replaces_an_eighth_of_the_batches_with_last_min_max_and_count() {
    let m = metrics();
    let mut b = open(&memory_downsample(40), Path::new("/nonexistent"), &m);
    // 40 batches of one sample of one series, a second apart.
    for i in 0..40 {
        let sample = gauge("temp", "a", f64::from(i % 7), i64::from(i));
        b.push(&Events::Metrics(vec![sample])).unwrap();
    }
    assert!(matches!(b.push(&logs(0, 1)), Err(PushError::Full)));
    // 40 / 8 = 5 batches: one window of 5 samples, values 0 to 4.
    let c = b.compact().unwrap();
    assert_eq!(
        c,
        Compacted {
            batches_in: 5,
            events_in: 5,
            events_out: 4,
            freed: true,
        }
    );
    assert_eq!(buffer_dropped(&m, "downsampled"), Some(5.0));
    assert_eq!(discarded(&m, "downsampled"), Some(1.0));
    b.push(&logs(0, 1)).unwrap();
    let got = drain(&mut b);
    assert_eq!(got.len(), 35 + 4 + 1);
    // Cut into batches of at most as many events as the largest batch
    // read: 1.
    let compacted: Vec<Events> = got[35..39].iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        brief(&compacted),
        [
            ("temp".into(), 4.0, 4),
            ("temp:min".into(), 0.0, 4),
            ("temp:max".into(), 4.0, 4),
            ("temp:count".into(), 5.0, 4),
        ]
    );
}
