//! The live lane and out-of-order acknowledgements (`live.rs`), for both
//! kinds of buffer.

use super::tests::{batch, buffer_dropped, disk, drain, kinds, memory, metrics, next, open, value};
use super::*;
use iotel_engine::config::ByteSize;
use iotel_model::LogRecord;

fn ids(got: &[(u64, Events)]) -> Vec<u64> {
    got.iter().map(|g| g.0).collect()
}

fn live_ids(b: &mut SinkBuffer) -> Vec<u64> {
    std::iter::from_fn(|| b.next_live().unwrap().map(|x| x.id)).collect()
}

#[test]
fn a_delivered_batch_is_skipped_and_acknowledged_once_everything_before_it_is() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let m = metrics();
        let mut b = open(&config, &path, &m);
        for tag in 0..6 {
            b.push(&batch(tag, 3)).unwrap();
        }
        let first = next(&mut b).id;
        assert_eq!(next(&mut b).id, first + 1, "{kind}");
        // The peer took 2 and 3 out of order.
        b.mark_delivered(first + 2, first + 3);
        assert_eq!(b.stats().records, 4, "{kind}");
        assert_eq!(b.stats().events, Some(12), "{kind}");
        assert!(b.delivered_between(first + 1, first + 4), "{kind}");
        assert!(!b.delivered_between(first, first + 2), "{kind}");
        // Skipped: 0 and 1 still wait, so they are not acknowledged yet.
        assert_eq!(next(&mut b).id, first + 4, "{kind}");
        assert_eq!(b.head_id(), first, "{kind}");
        // Acknowledging 1 takes 2 and 3 with it, not 4 (being sent).
        b.ack(first + 1).unwrap();
        assert_eq!(b.head_id(), first + 4, "{kind}");
        assert_eq!(b.stats().records, 2, "{kind}");
        b.rewind();
        assert_eq!(ids(&drain(&mut b)), vec![first + 4, first + 5], "{kind}");
        b.ack(first + 5).unwrap();
        assert!(b.is_empty(), "{kind}");
        b.close().unwrap();
        let mut b = open(&config, &path, &m);
        assert_eq!(drain(&mut b), vec![], "{kind}");
    }
}

#[test]
fn a_delivered_batch_read_with_nothing_waiting_before_it_is_acknowledged_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let m = metrics();
        let mut b = open(&config, &path, &m);
        for tag in 0..4 {
            b.push(&batch(tag, 3)).unwrap();
        }
        let first = b.head_id();
        // As after a 409 with Iotel-Received: marked, then read again.
        b.mark_delivered(first, first + 1);
        b.mark_delivered(first + 3, first + 3);
        assert_eq!(b.stats().records, 1, "{kind}");
        assert_eq!(ids(&drain(&mut b)), vec![first + 2], "{kind}");
        assert_eq!(b.head_id(), first + 2, "{kind}");
        b.ack(first + 2).unwrap();
        assert_eq!(b.head_id(), first + 4, "{kind}");
        assert!(b.is_empty(), "{kind}");
        // Ids already acknowledged are not recorded again.
        b.mark_delivered(first, first + 3);
        assert!(!b.delivered_between(first, first + 4), "{kind}");
        b.close().unwrap();
    }
}

#[test]
fn the_backlog_lane_stops_where_the_live_lane_starts_and_goes_on_after_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, config, path) in kinds(dir.path()) {
        let m = metrics();
        let mut b = open(&config, &path, &m);
        for tag in 0..3 {
            b.push(&batch(tag, 3)).unwrap();
        }
        let head = b.head_id();
        let start = b.begin_live();
        assert_eq!(start, head + 3, "{kind}");
        assert_eq!(b.live_start(), Some(start), "{kind}");
        for tag in 3..7 {
            b.push(&batch(tag, 3)).unwrap();
        }
        // The backlog lane: 0..3 only.
        assert_eq!(
            ids(&drain(&mut b)),
            vec![head, head + 1, head + 2],
            "{kind}"
        );
        assert_eq!(b.next().unwrap(), None, "{kind}");
        // The live lane: the newer ones, oldest first, with their events.
        let live = b.next_live().unwrap().unwrap();
        assert_eq!((live.id, &live.events), (start, &batch(3, 3)), "{kind}");
        assert_eq!(
            live_ids(&mut b),
            vec![start + 1, start + 2, start + 3],
            "{kind}"
        );
        // Delivered: 3, 4 and 5; 6 is given up and handed out again.
        b.mark_delivered(start, start + 2);
        b.rewind_live();
        assert_eq!(live_ids(&mut b), vec![start + 3], "{kind}");
        assert_eq!(b.stats().records, 4, "{kind}");
        b.ack(head + 2).unwrap();
        b.end_live();
        assert_eq!(b.live_start(), None, "{kind}");
        assert_eq!(b.next_live().unwrap(), None, "{kind}");
        // In order again: what the live lane delivered is skipped.
        let rest = drain(&mut b);
        assert_eq!(rest, vec![(start + 3, batch(6, 3))], "{kind}");
        b.ack(start + 3).unwrap();
        assert!(b.is_empty(), "{kind}");
        assert_eq!(b.stats().events, Some(0), "{kind}");
        b.close().unwrap();
        let mut b = open(&config, &path, &m);
        assert_eq!(drain(&mut b), vec![], "{kind}");
    }
}

#[test]
fn after_a_restart_batches_delivered_out_of_order_are_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = disk(3, 10, 4, WhenFull::DropOldest);
    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    b.push(&batch(0, 3)).unwrap();
    let start = b.begin_live();
    b.push(&batch(1, 3)).unwrap();
    b.push(&batch(2, 3)).unwrap();
    assert_eq!(live_ids(&mut b), vec![start, start + 1]);
    b.mark_delivered(start, start + 1);
    assert_eq!(b.stats().records, 1);
    // Stopped before the backlog lane got to them: the set is not kept.
    b.close().unwrap();
    let mut b = open(&config, dir.path(), &m);
    assert_eq!(
        ids(&drain(&mut b)),
        vec![start - 1, start, start + 1],
        "the receiver drops the last two as retransmits"
    );
}

/// A batch of one log line of `len` characters that snappy cannot shrink.
fn noise(tag: u64, len: usize) -> Events {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let message: String = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    Events::Logs(vec![LogRecord::new(0, message)])
}

#[test]
fn a_disk_live_lane_copies_256_kib_at_most_and_what_it_missed_waits_for_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig::Disk(DiskConfig {
        max_size: ByteSize(16 << 20),
        max_segment_size: Some(ByteSize(1 << 20)),
        fsync: Fsync::Never,
        ..DiskConfig::default()
    });
    let m = metrics();
    let mut b = open(&config, dir.path(), &m);
    b.push(&batch(0, 3)).unwrap();
    let start = b.begin_live();
    let batches: Vec<Events> = (0..10).map(|t| noise(t, 40 << 10)).collect();
    // How many fit in the copies, by their encoded size.
    let mut copied = 0;
    let mut bytes = 0;
    for e in &batches {
        bytes += disk::encode(e).unwrap().len();
        if bytes > LIVE_COPY_MAX_BYTES {
            break;
        }
        copied += 1;
    }
    assert_eq!(copied, 6, "40 KiB batches that do not compress");
    for e in &batches {
        b.push(e).unwrap();
    }
    let missed = || value(&m, "iotel_buffer_live_missed_total", &[]);
    assert_eq!(missed(), Some(4.0));
    let live: Vec<Buffered> = std::iter::from_fn(|| b.next_live().unwrap()).collect();
    assert_eq!(
        live.iter().map(|x| x.id).collect::<Vec<_>>(),
        (start..start + 6).collect::<Vec<_>>()
    );
    assert_eq!(live[5].events, batches[5]);
    // Still full: the next batch is not copied either.
    b.push(&noise(10, 100)).unwrap();
    assert_eq!(missed(), Some(5.0));
    // Once the copies are delivered, the lane copies again.
    b.mark_delivered(start, start + 5);
    b.push(&noise(11, 100)).unwrap();
    assert_eq!(missed(), Some(5.0));
    assert_eq!(live_ids(&mut b), vec![start + 11]);
    b.mark_delivered(start + 11, start + 11);
    // What was missed goes once the backlog lane is through.
    let backlog = next(&mut b);
    b.ack(backlog.id).unwrap();
    assert_eq!(b.next().unwrap(), None);
    b.end_live();
    let rest = drain(&mut b);
    assert_eq!(ids(&rest), (start + 6..start + 11).collect::<Vec<_>>());
    assert_eq!(rest[0].1, batches[6]);
    assert_eq!(rest[4].1, noise(10, 100));
}

#[test]
fn memory_drop_oldest_spares_the_batches_the_live_lane_is_sending() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut b = open(&memory(12, WhenFull::DropOldest), dir.path(), &m);
    b.push(&batch(0, 3)).unwrap();
    b.push(&batch(1, 3)).unwrap();
    let head = b.head_id();
    let start = b.begin_live();
    b.push(&batch(2, 3)).unwrap();
    b.push(&batch(3, 3)).unwrap();
    // Being sent by the live lane: 2.
    assert_eq!(b.next_live().unwrap().map(|x| x.id), Some(start));
    // Room for one: the backlog's oldest two go, then 3; never 2.
    b.push(&batch(4, 3)).unwrap();
    b.push(&batch(5, 3)).unwrap();
    b.push(&batch(6, 3)).unwrap();
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(3.0));
    assert_eq!(b.next().unwrap(), None, "the backlog is gone");
    assert_eq!(b.head_id(), start);
    // Only 2 (being sent) and the newest are left.
    assert_eq!(live_ids(&mut b), vec![start + 2, start + 3, start + 4]);
    b.mark_delivered(start, start);
    b.rewind_live();
    assert_eq!(live_ids(&mut b), vec![start + 2, start + 3, start + 4]);
    assert_eq!(b.stats().records, 3);
    assert!(head < start);
}

#[test]
fn a_disk_batch_the_live_lane_sends_while_drop_oldest_deletes_it_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut b = open(&disk(3, 3, 2, WhenFull::DropOldest), dir.path(), &m);
    let start = b.begin_live();
    for tag in 0..3 {
        b.push(&batch(tag, 3)).unwrap();
    }
    assert_eq!(live_ids(&mut b), vec![start, start + 1, start + 2]);
    for tag in 3..6 {
        b.push(&batch(tag, 3)).unwrap();
    }
    // Deletes the segment of 0..3, all three being sent by the live lane.
    b.push(&batch(6, 3)).unwrap();
    let lost = |b: &SinkBuffer| b.stats().dropped.drop_oldest;
    assert_eq!(lost(&b), Lost::default());
    // A receiver must not take them as settled while they are being sent.
    assert_eq!((b.head_id(), b.oldest_id()), (start + 3, start));
    // The peer took 0 and 1: sent, not lost. 2 is given up: lost.
    b.mark_delivered(start, start + 1);
    b.rewind_live();
    assert_eq!(
        lost(&b),
        Lost {
            batches: 1,
            events: 3
        }
    );
    assert_eq!(
        live_ids(&mut b),
        vec![start + 3, start + 4, start + 5, start + 6]
    );
    assert_eq!(b.stats().records, 4);
    assert_eq!(buffer_dropped(&m, "drop_oldest"), Some(1.0));
}

// ---------------------------------------------------------------------------
// Out-of-order acknowledgements against a model

#[derive(Debug, Clone)]
enum Op {
    Push,
    Next,
    /// Acknowledge up to the n-th batch handed out (modulo how many are).
    Ack(usize),
    /// Mark delivered a range of ids not read yet: (offset from the read
    /// position, length).
    Deliver(u64, u64),
    /// Mark delivered any range of ids (offset from the first, length),
    /// then rewind: a 409 naming ids of a request being sent.
    DeliverAndRewind(u64, u64),
    Rewind,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(Op::Push),
        4 => Just(Op::Next),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => (0u64..4, 1u64..4).prop_map(|(a, n)| Op::Deliver(a, n)),
        1 => (0u64..30, 1u64..5).prop_map(|(a, n)| Op::DeliverAndRewind(a, n)),
        1 => Just(Op::Rewind),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Batches delivered out of order are never handed out, everything
    /// else is, oldest first; what waits is what the stats say; and after a
    /// reopen a disk buffer replays exactly what was not acknowledged.
    #[test]
    fn out_of_order_acknowledgements_behave_like_a_set_of_waiting_ids(
        on_disk in proptest::prelude::any::<bool>(),
        ops in proptest::collection::vec(op(), 0..60),
    ) {
        use std::collections::BTreeSet;
        let dir = tempfile::tempdir().unwrap();
        let config = if on_disk {
            disk(1, 100, 4, WhenFull::Block)
        } else {
            memory(1000, WhenFull::Block)
        };
        let m = metrics();
        let mut b = open(&config, dir.path(), &m);
        let first = b.head_id();
        let mut next_id = first;
        // Not acknowledged nor delivered.
        let mut waiting: BTreeSet<u64> = BTreeSet::new();
        // Acknowledged (cumulatively) or delivered: never handed out again.
        let mut settled: BTreeSet<u64> = BTreeSet::new();
        let mut handed: Vec<u64> = Vec::new();
        // The read position: ids below were handed out or skipped.
        let mut cursor = first;
        for op in ops {
            match op {
                Op::Push => {
                    b.push(&batch(0, 1)).unwrap();
                    waiting.insert(next_id);
                    next_id += 1;
                }
                Op::Next => {
                    let got = b.next().unwrap().map(|x| x.id);
                    let want = waiting.range(cursor..).next().copied();
                    proptest::prop_assert_eq!(got, want);
                    if let Some(id) = want {
                        handed.push(id);
                        cursor = id + 1;
                    } else {
                        cursor = next_id;
                    }
                }
                Op::Ack(k) => {
                    if !handed.is_empty() {
                        let id = handed[k % handed.len()];
                        b.ack(id).unwrap();
                        let done: Vec<u64> = waiting.range(..=id).copied().collect();
                        for d in done {
                            waiting.remove(&d);
                            settled.insert(d);
                        }
                        handed.retain(|h| *h > id);
                    }
                }
                Op::Deliver(offset, len) => {
                    let a = cursor + offset;
                    let z = (a + len - 1).min(next_id.saturating_sub(1));
                    if a <= z {
                        b.mark_delivered(a, z);
                        for id in a..=z {
                            waiting.remove(&id);
                            settled.insert(id);
                        }
                    }
                }
                Op::DeliverAndRewind(offset, len) => {
                    let a = first + offset;
                    let z = (a + len - 1).min(next_id.saturating_sub(1));
                    if a <= z {
                        b.mark_delivered(a, z);
                        for id in a..=z {
                            if waiting.remove(&id) {
                                settled.insert(id);
                            }
                        }
                    }
                    b.rewind();
                    handed.clear();
                    cursor = first;
                }
                Op::Rewind => {
                    b.rewind();
                    handed.clear();
                    cursor = first;
                }
            }
            let s = b.stats();
            proptest::prop_assert_eq!(s.records, waiting.len() as u64);
            proptest::prop_assert_eq!(s.events, Some(waiting.len() as u64));
            let oldest = waiting.first().copied().unwrap_or(next_id);
            proptest::prop_assert!(b.head_id() <= oldest);
        }
        b.rewind();
        let all = ids(&drain(&mut b));
        proptest::prop_assert_eq!(&all, &waiting.iter().copied().collect::<Vec<_>>());
        if on_disk {
            // Acknowledge nothing more; the delivered set is forgotten.
            b.close().unwrap();
            let mut b = open(&config, dir.path(), &m);
            let replayed = ids(&drain(&mut b));
            // Everything not acknowledged on disk: what waits, and delivered
            // ids the acknowledgements have not reached.
            proptest::prop_assert!(waiting.iter().all(|w| replayed.contains(w)));
            proptest::prop_assert!(replayed.iter().all(|r| waiting.contains(r) || settled.contains(r)));
        }
    }
}
