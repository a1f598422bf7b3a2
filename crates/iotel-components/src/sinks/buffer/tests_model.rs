//! The memory buffer against a model, and the disk buffer's accounting
//! under random use.

use super::memory::MemoryBuffer;
use super::tests::{batch, buffer_dropped, disk, frame_len, metrics, open};
use super::*;
use proptest::prelude::*;
use std::num::NonZeroUsize;

// ---------------------------------------------------------------------------
// The memory buffer against a model

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Next,
    /// Acknowledge up to the n-th batch handed out (modulo how many are).
    Ack(usize),
    Rewind,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..7).prop_map(Op::Push),
        4 => Just(Op::Next),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => Just(Op::Rewind),
    ]
}

proptest! {
    /// The memory buffer against a plain list of (id, size) with the same
    /// policy.
    #[test]
    fn the_memory_buffer_behaves_like_its_model(
        max in 1usize..12,
        block in any::<bool>(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let m = metrics();
        let when_full = if block { WhenFull::Block } else { WhenFull::DropOldest };
        let config = MemoryConfig {
            max_events: NonZeroUsize::new(max).unwrap(),
            when_full,
            ..MemoryConfig::default()
        };
        let mut b = MemoryBuffer::new(&config, 100, DropCounter::new(&m));
        // (id, events), oldest first; the first `handed` are handed out.
        let mut model: Vec<(u64, usize)> = Vec::new();
        let mut handed = 0usize;
        let mut next_id = 100u64;
        let mut dropped = Lost::default();
        for op in ops {
            match op {
                Op::Push(n) => {
                    let total: usize = model.iter().map(|x| x.1).sum();
                    let sending: usize = model[..handed].iter().map(|x| x.1).sum();
                    let want = if n > max {
                        Err("batch_too_large")
                    } else if total + n > max && (block || sending + n > max) {
                        Err("buffer_full")
                    } else {
                        let mut total = total;
                        while total + n > max {
                            let (_, k) = model.remove(handed);
                            total -= k;
                            dropped.batches += 1;
                            dropped.events += k as u64;
                        }
                        model.push((next_id, n));
                        next_id += 1;
                        Ok(())
                    };
                    let got = b.push(&batch(0, n)).map_err(|e| e.code());
                    prop_assert_eq!(got, want);
                }
                Op::Next => {
                    let got = b.next().map(|x| (x.id, x.events.len()));
                    let want = model.get(handed).copied();
                    if want.is_some() {
                        handed += 1;
                    }
                    prop_assert_eq!(got, want);
                }
                Op::Ack(k) => {
                    if handed > 0 {
                        let i = k % handed;
                        b.ack(model[i].0).unwrap();
                        model.drain(..=i);
                        handed -= i + 1;
                    }
                }
                Op::Rewind => {
                    b.rewind();
                    handed = 0;
                }
            }
            let s = b.stats();
            prop_assert_eq!(s.records, model.len() as u64);
            prop_assert_eq!(s.events, Some(model.iter().map(|x| x.1 as u64).sum()));
            prop_assert!(s.events.unwrap_or(0) <= max as u64);
            prop_assert_eq!(s.dropped.drop_oldest, dropped);
        }
        prop_assert_eq!(
            buffer_dropped(&m, "drop_oldest"),
            Some(dropped.batches as f64)
        );
    }
}

// ---------------------------------------------------------------------------
// The disk buffer's accounting under random use

#[derive(Debug, Clone)]
enum DiskOp {
    Push(usize),
    Next,
    Ack(usize),
    Rewind,
    /// Rewind, close and open again.
    Reopen,
}

fn disk_op() -> impl Strategy<Value = DiskOp> {
    prop_oneof![
        5 => (1usize..4).prop_map(DiskOp::Push),
        4 => Just(DiskOp::Next),
        2 => any::<usize>().prop_map(DiskOp::Ack),
        1 => Just(DiskOp::Rewind),
        1 => Just(DiskOp::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Tiny segments make `drop_oldest` delete batches all the time, being
    /// sent or not. Every batch handed out is the one pushed with its id,
    /// and every event pushed is, at each rewind, delivered (acked),
    /// counted as dropped, or still waiting.
    #[test]
    fn every_event_pushed_to_a_disk_buffer_is_delivered_dropped_or_waiting(
        ops in proptest::collection::vec(disk_op(), 0..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = disk(2, 3, 3, WhenFull::DropOldest);
        if let BufferConfig::Disk(c) = &mut config {
            c.fsync = Fsync::Never;
        }
        let m = metrics();
        let mut b = open(&config, dir.path(), &m);
        // What was pushed, by id.
        let mut pushed: std::collections::BTreeMap<u64, Events> = Default::default();
        let mut pushed_events = 0u64;
        let mut tag = 0u32;
        // Handed out since the last rewind: (id, events).
        let mut handed: Vec<(u64, u64)> = Vec::new();
        let mut delivered = 0u64;
        // Dropped by earlier processes.
        let mut dropped_before = 0u64;
        let mut last_id = 0u64;
        let dropped_now = |b: &SinkBuffer| {
            let d = b.stats().dropped;
            prop_assert_eq!(d.corrupt, Lost::default());
            prop_assert_eq!(d.segment_missing, Lost::default());
            Ok(d.drop_oldest.events)
        };
        for op in ops {
            match op {
                DiskOp::Push(n) => {
                    let events = batch(tag, n);
                    tag += 1;
                    b.push(&events).unwrap();
                    pushed_events += n as u64;
                    // The id it got is not known until it is read: keep it
                    // by its tag.
                    pushed.insert(u64::from(tag - 1), events);
                }
                DiskOp::Next => {
                    if let Some(x) = b.next().unwrap() {
                        prop_assert!(x.id > last_id, "{} after {}", x.id, last_id);
                        last_id = x.id;
                        let Events::Logs(logs) = &x.events else { panic!() };
                        let tag: u64 = logs[0].message[6..9].parse().unwrap();
                        prop_assert_eq!(&x.events, &pushed[&tag]);
                        handed.push((x.id, x.events.len() as u64));
                    }
                }
                DiskOp::Ack(k) => {
                    if !handed.is_empty() {
                        let i = k % handed.len();
                        b.ack(handed[i].0).unwrap();
                        delivered += handed.drain(..=i).map(|(_, n)| n).sum::<u64>();
                    }
                }
                DiskOp::Rewind | DiskOp::Reopen => {
                    b.rewind();
                    handed.clear();
                    last_id = 0;
                    let waiting = b.stats().events.unwrap();
                    let dropped = dropped_before + dropped_now(&b)?;
                    prop_assert_eq!(pushed_events, delivered + dropped + waiting);
                    if matches!(op, DiskOp::Reopen) {
                        dropped_before = dropped;
                        b.close().unwrap();
                        b = open(&config, dir.path(), &m);
                        prop_assert_eq!(b.stats().events, Some(waiting));
                    }
                }
            }
            let s = b.stats();
            prop_assert!(s.bytes.unwrap() <= 9 * frame_len(2));
            prop_assert_eq!(buffer_dropped(&m, "corrupt"), Some(0.0));
            // Batches dropped while handed out are not counted yet.
            let dropped = dropped_before + dropped_now(&b)?;
            prop_assert!(pushed_events >= delivered + dropped + s.events.unwrap());
        }
        b.rewind();
        let dropped = dropped_before + dropped_now(&b)?;
        prop_assert_eq!(pushed_events, delivered + dropped + b.stats().events.unwrap());
    }
}
