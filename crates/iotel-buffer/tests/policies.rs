//! `when_full`, acks, rewinds and restarts with small sizes and exact counts.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use iotel_buffer::{BufferError, DiskBuffer, FsyncPolicy, WhenFull};
use std::time::Duration;

const LEN: usize = 100; // frame 132 bytes
const SEGMENT: u64 = 5 * 132;
const MAX: u64 = 2 * SEGMENT; // ten records

fn read_n(b: &mut DiskBuffer, n: usize) -> Vec<u64> {
    (0..n).map(|_| b.next().unwrap().unwrap().id).collect()
}

#[test]
fn drop_oldest_deletes_the_oldest_segment_and_counts_its_unacked_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX, SEGMENT);
    let (mut b, _) = open(&cfg);
    for id in 1..=10 {
        assert_eq!(b.push(&payload(id, LEN)).unwrap().dropped, 0);
    }
    assert_eq!(b.stats().bytes, MAX);
    let p = b.push(&payload(11, LEN)).unwrap();
    assert_eq!((p.id, p.dropped), (11, 5));
    assert_eq!(b.stats().dropped.drop_oldest, 5);
    assert_eq!(read_n(&mut b, 3), vec![6, 7, 8]);
    b.ack(8).unwrap();
    for id in 12..=15 {
        assert_eq!(b.push(&payload(id, LEN)).unwrap().dropped, 0);
    }
    // Segment 6-10 goes; 6, 7 and 8 were acked, so only 9 and 10 count.
    assert_eq!(b.push(&payload(16, LEN)).unwrap().dropped, 2);
    assert_eq!(b.stats().dropped.drop_oldest, 7);
    assert_eq!(b.stats().dropped.total(), 7);
    assert_eq!(drain(&mut b, LEN), (11..=16).collect::<Vec<_>>());
    assert!(b.stats().bytes <= MAX);
    assert_eq!(segments(dir.path()).len(), 2);
}

#[test]
fn drop_oldest_survives_a_restart_without_counting_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), MAX, SEGMENT);
    let (mut b, _) = open(&cfg);
    for id in 1..=11 {
        b.push(&payload(id, LEN)).unwrap();
    }
    drop(b);
    let (mut b, report) = open(&cfg);
    assert_eq!(report.head_id, 6);
    assert_eq!(report.lost.total(), 0);
    assert_eq!(drain(&mut b, LEN), (6..=11).collect::<Vec<_>>());
}

#[test]
fn block_refuses_with_a_retryable_full_error_until_the_sink_acks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), MAX, SEGMENT);
    cfg.when_full = WhenFull::Block;
    let (mut b, _) = open(&cfg);
    for id in 1..=10 {
        b.push(&payload(id, LEN)).unwrap();
    }
    let e = b.push(&payload(11, LEN)).unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.code(), "full");
    assert!(matches!(
        e,
        BufferError::Full {
            frame_len: 132,
            used: 1320,
            max_size: 1320
        }
    ));
    assert_eq!(read_n(&mut b, 4), vec![1, 2, 3, 4]);
    b.ack(4).unwrap();
    assert!(
        b.push(&payload(11, LEN)).is_err(),
        "record 5 still holds the segment"
    );
    b.next().unwrap();
    b.ack(5).unwrap();
    assert_eq!(b.push(&payload(11, LEN)).unwrap().id, 11);
    assert_eq!(b.stats().dropped.total(), 0);
    assert_eq!(drain(&mut b, LEN), (6..=11).collect::<Vec<_>>());
}

#[test]
fn block_frees_acked_segments_even_before_a_sync_was_due() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), MAX, SEGMENT);
    cfg.when_full = WhenFull::Block;
    cfg.fsync = FsyncPolicy::Interval(Duration::from_secs(3600));
    let (mut b, _) = open(&cfg);
    for id in 1..=10 {
        b.push(&payload(id, LEN)).unwrap();
    }
    read_n(&mut b, 5);
    b.ack(5).unwrap();
    assert_eq!(b.push(&payload(11, LEN)).unwrap().id, 11);
}

#[test]
fn a_record_larger_than_a_segment_is_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = open(&config(dir.path(), MAX, SEGMENT));
    let e = b.push(&vec![0; SEGMENT as usize - 31]).unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.code(), "record_too_large");
    // Exactly a segment's worth fits.
    b.push(&vec![0; SEGMENT as usize - 32]).unwrap();
}

#[test]
fn ack_of_an_id_not_handed_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = open(&config(dir.path(), MAX, SEGMENT));
    b.push(&payload(1, LEN)).unwrap();
    b.push(&payload(2, LEN)).unwrap();
    assert_eq!(b.ack(1).unwrap_err().code(), "ack_out_of_range");
    b.next().unwrap();
    assert!(matches!(
        b.ack(2),
        Err(BufferError::AckOutOfRange {
            id: 2,
            last_read: Some(1)
        })
    ));
    b.ack(1).unwrap();
}

#[test]
fn rewind_reads_again_from_the_oldest_unacked_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = open(&config(dir.path(), 1 << 20, SEGMENT));
    for id in 1..=12 {
        b.push(&payload(id, LEN)).unwrap();
    }
    assert_eq!(read_n(&mut b, 9), (1..=9).collect::<Vec<_>>());
    b.ack(7).unwrap();
    b.rewind();
    assert_eq!(drain(&mut b, LEN), (8..=12).collect::<Vec<_>>());
}

#[test]
fn unacked_records_are_replayed_oldest_first_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, SEGMENT);
    let (mut b, _) = open(&cfg);
    for id in 1..=12 {
        b.push(&payload(id, LEN)).unwrap();
    }
    read_n(&mut b, 10);
    b.ack(6).unwrap();
    drop(b); // a crash: under fsync = always the ack is already durable
    let (mut b, report) = open(&cfg);
    assert_eq!((report.head_id, report.next_id, report.records), (7, 13, 6));
    assert_eq!(drain(&mut b, LEN), (7..=12).collect::<Vec<_>>());
}

#[test]
fn acks_not_yet_synced_are_replayed_after_a_crash_but_not_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1 << 20, SEGMENT);
    cfg.fsync = FsyncPolicy::Interval(Duration::from_secs(3600));
    let (mut b, _) = open(&cfg);
    for id in 1..=4 {
        b.push(&payload(id, LEN)).unwrap();
    }
    read_n(&mut b, 2);
    b.ack(2).unwrap();
    drop(b);
    let (mut b, _) = open(&cfg);
    assert_eq!(drain(&mut b, LEN), vec![1, 2, 3, 4]);
    b.ack(2).unwrap();
    b.close().unwrap();
    let (mut b, _) = open(&cfg);
    assert_eq!(drain(&mut b, LEN), vec![3, 4]);
}

#[test]
fn fully_acked_segments_are_deleted_and_stats_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _) = open(&config(dir.path(), 1 << 20, SEGMENT));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for id in 1..=12 {
        b.push(&payload(id, LEN)).unwrap();
    }
    let s = b.stats();
    assert_eq!((s.records, s.bytes), (12, 12 * 132));
    assert!(s.oldest_unacked_unix_ms.unwrap() >= before);
    assert_eq!(segments(dir.path()).len(), 3);
    read_n(&mut b, 12);
    b.ack(11).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!((b.stats().records, b.stats().bytes), (1, 2 * 132));
    b.ack(12).unwrap();
    assert_eq!(b.stats().records, 0);
    assert_eq!(b.stats().oldest_unacked_unix_ms, None);
}

#[test]
fn fsync_never_and_interval_keep_every_record_across_a_process_crash() {
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::Interval(Duration::from_secs(1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 20, SEGMENT);
        cfg.fsync = fsync;
        let (mut b, _) = open(&cfg);
        for id in 1..=23 {
            b.push(&payload(id, LEN)).unwrap();
        }
        drop(b);
        let (mut b, _) = open(&cfg);
        assert_eq!(
            drain(&mut b, LEN),
            (1..=23).collect::<Vec<_>>(),
            "{fsync:?}"
        );
    }
}

#[test]
fn a_new_buffer_starts_at_first_id_and_a_reopened_one_ignores_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1 << 20, SEGMENT);
    cfg.first_id = 1_000_000;
    let (mut b, report) = open(&cfg);
    assert_eq!((report.head_id, report.next_id), (1_000_000, 1_000_000));
    assert_eq!(b.head_id(), 1_000_000);
    for id in 1_000_000..1_000_003 {
        assert_eq!(b.push(&payload(id, LEN)).unwrap().id, id);
    }
    assert_eq!(read_n(&mut b, 1), vec![1_000_000]);
    b.ack(1_000_000).unwrap();
    assert_eq!(b.head_id(), 1_000_001);
    b.close().unwrap();

    // Reopened with another first_id: the ledger wins.
    cfg.first_id = 5;
    let (mut b, report) = open(&cfg);
    assert_eq!((report.head_id, report.next_id), (1_000_001, 1_000_003));
    assert_eq!(b.push(&payload(1_000_003, LEN)).unwrap().id, 1_000_003);
    drop(b);

    // Without its ledger the segments still say where the ids are.
    std::fs::remove_file(dir.path().join("ledger.dat")).unwrap();
    let (mut b, report) = open(&cfg);
    assert_eq!((report.head_id, report.next_id), (1_000_000, 1_000_004));
    assert_eq!(
        drain(&mut b, LEN),
        (1_000_000..1_000_004).collect::<Vec<_>>()
    );
}

#[test]
fn a_first_id_of_zero_starts_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, SEGMENT);
    assert_eq!(cfg.first_id, 0);
    let (mut b, report) = open(&cfg);
    assert_eq!(report.next_id, 1);
    assert_eq!(b.push(&payload(1, LEN)).unwrap().id, 1);
}

/// What a power cut leaves under `fsync = interval`: the unsynced tail of
/// the segment and the ledger writes since the last sync are gone.
fn power_cut(dir: &std::path::Path, keep_bytes: u64, ledger_before: &[u8]) {
    let seg = segments(dir).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(keep_bytes)
        .unwrap();
    std::fs::write(dir.join("ledger.dat"), ledger_before).unwrap();
}

#[test]
fn ids_handed_out_before_a_power_cut_are_never_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1 << 21, 1 << 20);
    cfg.fsync = FsyncPolicy::Interval(Duration::from_secs(3600));
    let (mut b, _) = open(&cfg);
    for id in 1..=3 {
        assert_eq!(b.push(&payload(id, 10)).unwrap().id, id);
    }
    b.sync().unwrap();
    let synced_len = std::fs::metadata(&segments(dir.path())[0]).unwrap().len();
    let ledger = std::fs::read(dir.path().join("ledger.dat")).unwrap();
    // Records 4 and 5 reach the page cache only, and a peer gets them.
    for id in 4..=5 {
        assert_eq!(b.push(&payload(id, 10)).unwrap().id, id);
    }
    assert_eq!(drain(&mut b, 10), vec![1, 2, 3, 4, 5]);
    drop(b);
    power_cut(dir.path(), synced_len, &ledger);

    let (mut b, report) = open(&cfg);
    assert_eq!(report.next_id, 4);
    assert_eq!(report.records, 3);
    assert_eq!(report.skipped_ids, 1025 - 4);
    assert_eq!(report.lost.total(), 0);
    // The first new record takes its id past the reservation, not 4 or 5.
    assert_eq!(b.push(&payload(1025, 10)).unwrap().id, 1025);
    assert_eq!(drain(&mut b, 10), vec![1, 2, 3, 1025]);
    let s = b.stats();
    assert_eq!(s.records, 4);
    assert_eq!(s.dropped.total(), 0);

    // The skip marker on disk keeps the skipped ids uncounted after any
    // later open, clean or not.
    drop(b);
    let (mut b, report) = open(&cfg);
    assert_eq!(report.lost.total(), 0);
    assert_eq!(report.records, 4);
    assert_eq!(drain(&mut b, 10), vec![1, 2, 3, 1025]);
    b.ack(1025).unwrap();
    assert_eq!(b.stats().records, 0);
    assert_eq!(b.head_id(), 1026);
}

#[test]
fn a_clean_close_gives_back_the_reserved_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 21, 1 << 20);
    let (mut b, _) = open(&cfg);
    for id in 1..=3 {
        b.push(&payload(id, 10)).unwrap();
    }
    b.close().unwrap();
    let (mut b, report) = open(&cfg);
    assert_eq!(report.skipped_ids, 0);
    assert_eq!(b.push(&payload(4, 10)).unwrap().id, 4);
    // A crash (kill -9) keeps the data but not the close: ids move past
    // the reservation, and nothing is counted as lost.
    drop(b);
    let (mut b, report) = open(&cfg);
    assert_eq!((report.next_id, report.skipped_ids), (5, 1028 - 5));
    assert_eq!(b.push(&payload(1028, 10)).unwrap().id, 1028);
    assert_eq!(drain(&mut b, 10), vec![1, 2, 3, 4, 1028]);
    assert_eq!(b.stats().dropped.total(), 0);
}

#[test]
fn a_buffer_that_syncs_on_call_only_keeps_its_acks_unsynced_until_asked() {
    for on_call_only in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), MAX, SEGMENT);
        cfg.fsync = FsyncPolicy::Interval(Duration::from_millis(1));
        let (mut b, _) = open(&cfg);
        if on_call_only {
            b.sync_on_call_only();
        }
        for id in 1..=3 {
            b.push(&payload(id, LEN)).unwrap();
        }
        assert_eq!(read_n(&mut b, 3), vec![1, 2, 3]);
        b.ack(3).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // A sync is due: the push makes it, unless the caller times them.
        b.push(&payload(4, LEN)).unwrap();
        drop(b); // a crash
        let (_, report) = open(&cfg);
        assert_eq!(report.head_id, if on_call_only { 1 } else { 4 });
    }
    // Asked, it syncs.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), MAX, SEGMENT);
    cfg.fsync = FsyncPolicy::Interval(Duration::from_millis(1));
    let (mut b, _) = open(&cfg);
    b.sync_on_call_only();
    b.push(&payload(1, LEN)).unwrap();
    assert_eq!(read_n(&mut b, 1), vec![1]);
    b.ack(1).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    b.sync_if_due().unwrap();
    drop(b);
    assert_eq!(open(&cfg).1.head_id, 2);
}
