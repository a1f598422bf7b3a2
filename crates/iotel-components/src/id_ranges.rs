//! A set of ids kept as ranges: what a sink's buffer knows was delivered
//! out of order, and what a receiver knows it received from an agent.
//!
//! The ranges are inclusive, sorted, disjoint and never adjacent (`3..=5`
//! and `6..=9` are one range, `3..=9`), so the number of ranges is the
//! number of gaps plus one and stays small when ids arrive roughly in
//! order. Every operation is linear in the number of ranges at most; the
//! callers bound that number.

/// A set of `u64` ids as inclusive ranges. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IdRanges {
    /// `(first, last)`, inclusive, sorted; `last + 1 < next.first`.
    ranges: Vec<(u64, u64)>,
}

impl IdRanges {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The ranges, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many ranges: what callers bound.
    pub(crate) fn range_count(&self) -> usize {
        self.ranges.len()
    }

    pub(crate) fn first(&self) -> Option<(u64, u64)> {
        self.ranges.first().copied()
    }

    /// The index of the first range that ends at or after `id`.
    fn from(&self, id: u64) -> usize {
        self.ranges.partition_point(|r| r.1 < id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.ranges.get(self.from(id)).is_some_and(|r| r.0 <= id)
    }

    /// Adds `first ..= last` (nothing when `last < first`), merging it with
    /// the ranges it overlaps or touches.
    pub(crate) fn insert(&mut self, first: u64, last: u64) {
        if last < first {
            return;
        }
        // The first range that overlaps or touches: it ends at or after
        // `first - 1`.
        let lo = self.from(first.saturating_sub(1));
        // The ranges from `lo` up to `hi` start at or before `last + 1`.
        let hi = lo + self.ranges[lo..].partition_point(|r| r.0 <= last.saturating_add(1));
        if lo == hi {
            self.ranges.insert(lo, (first, last));
            return;
        }
        let merged = (
            first.min(self.ranges[lo].0),
            last.max(self.ranges[hi - 1].1),
        );
        self.ranges.splice(lo..hi, std::iter::once(merged));
    }

    /// Forgets every id below `id`.
    pub(crate) fn remove_below(&mut self, id: u64) {
        let i = self.from(id);
        self.ranges.drain(..i);
        if let Some(r) = self.ranges.first_mut() {
            r.0 = r.0.max(id);
        }
    }

    #[cfg_attr(not(feature = "receiver"), allow(dead_code))]
    /// Removes the lowest range.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, u64)> {
        (!self.ranges.is_empty()).then(|| self.ranges.remove(0))
    }

    /// Removes the highest range.
    pub(crate) fn pop_last(&mut self) -> Option<(u64, u64)> {
        self.ranges.pop()
    }

    /// Whether any id of `first ..= last` is in the set.
    pub(crate) fn intersects(&self, first: u64, last: u64) -> bool {
        first <= last
            && self
                .ranges
                .get(self.from(first))
                .is_some_and(|r| r.0 <= last)
    }

    #[cfg_attr(not(feature = "receiver"), allow(dead_code))]
    /// The parts of the set within `first ..= last`, lowest first.
    pub(crate) fn within(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        if last < first {
            return Vec::new();
        }
        self.ranges[self.from(first)..]
            .iter()
            .take_while(|r| r.0 <= last)
            .map(|r| (r.0.max(first), r.1.min(last)))
            .collect()
    }
}

/// Writes ranges as `Iotel-Received` spells them: `200-205,300-310`, a
/// single id as `7`.
pub(crate) fn format_ranges(ranges: &[(u64, u64)]) -> String {
    let mut s = String::new();
    for (i, (a, b)) in ranges.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}-{b}"));
        }
    }
    s
}

/// Reads what [`format_ranges`] writes; `None` for anything else (a range
/// whose end is below its start included).
pub(crate) fn parse_ranges(text: &str) -> Option<Vec<(u64, u64)>> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn adjacent_and_overlapping_ranges_merge() {
        let mut s = IdRanges::new();
        s.insert(10, 12);
        s.insert(20, 25);
        s.insert(13, 14);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(10, 14), (20, 25)]);
        s.insert(15, 19);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(10, 25)]);
        s.insert(0, 0);
        s.insert(u64::MAX, u64::MAX);
        s.insert(u64::MAX - 1, u64::MAX - 1);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![(0, 0), (10, 25), (u64::MAX - 1, u64::MAX)]
        );
        assert_eq!(s.within(12, 30), vec![(12, 25)]);
        assert!(!s.intersects(1, 9));
        assert!(s.intersects(9, 10));
    }

    #[test]
    fn ranges_are_written_and_read_as_the_header_spells_them() {
        let ranges = vec![(200, 205), (7, 7), (300, 310)];
        assert_eq!(format_ranges(&ranges), "200-205,7,300-310");
        assert_eq!(parse_ranges("200-205, 7 ,300-310"), Some(ranges));
        assert_eq!(parse_ranges("5-4"), None);
        assert_eq!(parse_ranges("a-4"), None);
        assert_eq!(parse_ranges(""), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        RemoveBelow(u64),
        PopFirst,
        PopLast,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..120, 0u64..12).prop_map(|(a, len)| Op::Insert(a, a + len)),
            1 => (0u64..120).prop_map(|a| Op::Insert(a + 3, a)),
            1 => (0u64..130).prop_map(Op::RemoveBelow),
            1 => Just(Op::PopFirst),
            1 => Just(Op::PopLast),
        ]
    }

    /// The model's ids as maximal runs.
    fn runs(model: &BTreeSet<u64>) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for &id in model {
            match v.last_mut() {
                Some(r) if r.1 + 1 == id => r.1 = id,
                _ => v.push((id, id)),
            }
        }
        v
    }

    proptest! {
        /// The ranges against a plain set of ids.
        #[test]
        fn the_range_set_behaves_like_a_set_of_ids(
            ops in proptest::collection::vec(op(), 0..60),
            probes in proptest::collection::vec((0u64..140, 0u64..20), 8),
        ) {
            let mut s = IdRanges::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(a, b) => {
                        s.insert(a, b);
                        model.extend(a..=b);
                    }
                    Op::RemoveBelow(id) => {
                        s.remove_below(id);
                        model.retain(|x| *x >= id);
                    }
                    Op::PopFirst => {
                        let want = runs(&model).first().copied();
                        prop_assert_eq!(s.pop_first(), want);
                        if let Some((a, b)) = want {
                            model.retain(|x| !(a..=b).contains(x));
                        }
                    }
                    Op::PopLast => {
                        let want = runs(&model).last().copied();
                        prop_assert_eq!(s.pop_last(), want);
                        if let Some((a, b)) = want {
                            model.retain(|x| !(a..=b).contains(x));
                        }
                    }
                }
                let want = runs(&model);
                prop_assert_eq!(s.iter().collect::<Vec<_>>(), want.clone());
                prop_assert_eq!(s.range_count(), want.len());
                prop_assert_eq!(s.is_empty(), model.is_empty());
                prop_assert_eq!(s.first(), want.first().copied());
                for id in 0..140 {
                    prop_assert_eq!(s.contains(id), model.contains(&id), "id {}", id);
                }
                for &(a, len) in &probes {
                    let b = a + len;
                    let inside: BTreeSet<u64> = model.range(a..=b).copied().collect();
                    prop_assert_eq!(s.within(a, b), runs(&inside));
                    prop_assert_eq!(s.intersects(a, b), !inside.is_empty());
                }
            }
        }
    }
}
