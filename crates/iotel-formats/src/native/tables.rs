//! The encoder's side of the two tables every body starts with: the string
//! dictionary (every distinct string once, numbered in order of first use)
//! and the label-set table (every distinct label set once, as pairs of
//! dictionary indices).
//!
//! Both are kept as the bytes the body will hold, and nothing else: a
//! string lives once, in the dictionary's bytes, and is found again through
//! an [`Index`] of entry numbers that compares against those bytes. The
//! encoder borrows nothing from the events it was given, so it can take a
//! batch, let it go, and take the next (see `builder.rs`).

use super::wire::put_uvarint;
use iotel_model::Labels;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};

/// The most entries each table takes. Indices are kept as `u32` (and an
/// [`Index`] slot holds an entry number + 1); a table that would grow past
/// this sets [`TableWriter::overflow`], and the frame is refused when
/// finished.
pub(super) const MAX_ENTRIES: usize = u32::MAX as usize - 1;

/// A hash index over the entries of a table kept elsewhere: open
/// addressing with linear probing, each slot an entry number + 1 (0 is
/// empty). It stores no keys and no hashes; a lookup asks the table whether
/// an entry is the one sought, and growing asks it for each entry's hash.
/// Four bytes a slot, at most three quarters full.
#[derive(Debug, Default)]
pub(super) struct Index {
    slots: Vec<u32>,
    len: usize,
}

impl Index {
    /// The entry whose hash is `hash` and for which `is` holds, if any.
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        // At most three quarters of the slots are taken: the probe meets an
        // empty one.
        let mut at = hash as usize & mask;
        loop {
            match self.slots[at] {
                0 => return None,
                slot => {
                    let entry = slot as usize - 1;
                    if is(entry) {
                        return Some(entry);
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `entry`, which is not in the index yet, under `hash`;
    /// `hash_of` gives the hash of any entry already in, for growing.
    pub(super) fn insert(&mut self, hash: u64, entry: usize, hash_of: impl Fn(usize) -> u64) {
        // Tables stop below this (`MAX_ENTRIES`, `Builder::MAX_RECORDS`);
        // an entry past it would only go unfound and be written again.
        let Ok(slot) = u32::try_from(entry + 1) else {
            return;
        };
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let size = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(&mut self.slots, vec![0; size]);
            for slot in old.into_iter().filter(|&s| s != 0) {
                self.place(hash_of(slot as usize - 1), slot);
            }
        }
        self.place(hash, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, slot: u32) {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        while self.slots[at] != 0 {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// Drops the slots rather than zeroing them: they regrow for little,
    /// and an empty table then holds none.
    pub(super) fn clear(&mut self) {
        self.slots = Vec::new();
        self.len = 0;
    }

    /// The memory the slots take.
    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * size_of::<u32>()
    }
}

/// The varint at `*pos` of the encoder's own bytes, moving past it.
fn read_uvarint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*pos) {
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b < 0x80 || shift > 63 {
            break;
        }
    }
    v
}

/// The UTF-8 of the dictionary entry that starts at `at` (its length).
fn string_at(bytes: &[u8], at: usize) -> &[u8] {
    let mut pos = at;
    let len = read_uvarint(bytes, &mut pos);
    let end = usize::try_from(len).map_or(usize::MAX, |len| pos.saturating_add(len));
    bytes.get(pos..end).unwrap_or_default()
}

/// Adds a label to the hash a label set is found by: its names and values,
/// each ended by 0xff (which UTF-8 never holds).
fn hash_pair(h: &mut impl Hasher, name: &[u8], value: &[u8]) {
    h.write(name);
    h.write_u8(0xff);
    h.write(value);
    h.write_u8(0xff);
}

/// Calls `each` with the name and value of every pair of a label-set
/// `entry`, looked up in `strings`; returns the pair count the entry states.
fn each_pair<'a>(
    entry: &[u8],
    strings: &'a Entries,
    mut each: impl FnMut(&'a [u8], &'a [u8]),
) -> usize {
    let mut pos = 0;
    let count = read_uvarint(entry, &mut pos);
    let string = |pos: &mut usize| {
        let i = usize::try_from(read_uvarint(entry, pos)).unwrap_or(usize::MAX);
        strings
            .starts
            .get(i)
            .map_or(&[][..], |&at| string_at(&strings.bytes, at))
    };
    for _ in 0..count {
        let name = string(&mut pos);
        let value = string(&mut pos);
        each(name, value);
    }
    usize::try_from(count).unwrap_or(usize::MAX)
}

/// A table's entries as the body holds them, end to end, with where each
/// starts and an index to find them by their bytes.
#[derive(Debug, Default)]
struct Entries {
    bytes: Vec<u8>,
    starts: Vec<usize>,
    index: Index,
}

impl Entries {
    fn len(&self) -> usize {
        self.starts.len()
    }

    /// Entry `i`'s bytes as written (a string's include its length).
    fn get(&self, i: usize) -> &[u8] {
        let start = self.starts[i];
        let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
        &self.bytes[start..end]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.starts.clear();
        self.index.clear();
    }

    fn bytes(&self, held: bool) -> usize {
        let (bytes, starts) = if held {
            (self.bytes.capacity(), self.starts.capacity())
        } else {
            (self.bytes.len(), self.starts.len())
        };
        bytes + starts * size_of::<usize>() + self.index.bytes()
    }
}

/// The encoder's side of the dictionary and the label-set table.
#[derive(Debug, Default)]
pub(super) struct TableWriter {
    hasher: RandomState,
    /// Per string: uv byte length, then UTF-8.
    strings: Entries,
    /// Per label set: uv pair count, then per pair uv name index, uv value
    /// index.
    label_sets: Entries,
    /// Which table grew past [`MAX_ENTRIES`], if one did.
    overflow: Option<&'static str>,
    /// A label-set entry while it is added.
    entry: Vec<u8>,
    /// A value while it is written as text to be looked up.
    text: String,
}

impl TableWriter {
    /// The dictionary index of `s`, adding it on first use.
    pub(super) fn string(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s.as_bytes());
        let strings = &self.strings;
        if let Some(i) = strings.index.find(hash, |i| {
            string_at(&strings.bytes, strings.starts[i]) == s.as_bytes()
        }) {
            return i as u32;
        }
        if strings.len() >= MAX_ENTRIES {
            self.overflow = Some("dictionary strings");
            return 0;
        }
        let i = strings.len();
        self.strings.starts.push(self.strings.bytes.len());
        put_uvarint(&mut self.strings.bytes, s.len() as u64);
        self.strings.bytes.extend_from_slice(s.as_bytes());
        let (hasher, strings) = (&self.hasher, &mut self.strings);
        let (bytes, starts) = (&strings.bytes, &strings.starts);
        strings
            .index
            .insert(hash, i, |i| hasher.hash_one(string_at(bytes, starts[i])));
        i as u32
    }

    /// The dictionary index of `value` written as text (a JSON value), adding
    /// it on first use.
    pub(super) fn display_string(&mut self, value: &impl std::fmt::Display) -> u32 {
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        // Writing into a `String` cannot fail.
        let _ = write!(text, "{value}");
        let i = self.string(&text);
        self.text = text;
        i
    }

    /// `None` as 0, `Some(s)` as its dictionary index + 1.
    pub(super) fn opt_string(&mut self, s: Option<&str>) -> u32 {
        s.map_or(0, |s| self.string(s) + 1)
    }

    /// The label-set table index of `labels`, adding it (and its strings,
    /// name then value, label by label) on first use. A known set is found
    /// by its strings' hash, without looking each string up.
    pub(super) fn label_set(&mut self, labels: &Labels) -> u32 {
        let mut h = self.hasher.build_hasher();
        for l in labels.iter() {
            hash_pair(&mut h, l.name.as_bytes(), l.value.as_bytes());
        }
        let hash = h.finish();
        let (strings, sets) = (&self.strings, &self.label_sets);
        if let Some(i) = sets.index.find(hash, |i| {
            let mut pairs = labels.iter();
            let mut same = true;
            let len = each_pair(sets.get(i), strings, |name, value| {
                same &= pairs
                    .next()
                    .is_some_and(|l| l.name.as_bytes() == name && l.value.as_bytes() == value);
            });
            same && len == labels.len()
        }) {
            return i as u32;
        }
        if sets.len() >= MAX_ENTRIES {
            self.overflow = Some("label sets");
            return 0;
        }
        let mut entry = std::mem::take(&mut self.entry);
        entry.clear();
        put_uvarint(&mut entry, labels.len() as u64);
        for l in labels.iter() {
            put_uvarint(&mut entry, u64::from(self.string(&l.name)));
            put_uvarint(&mut entry, u64::from(self.string(&l.value)));
        }
        let i = self.label_sets.len();
        self.label_sets.starts.push(self.label_sets.bytes.len());
        self.label_sets.bytes.extend_from_slice(&entry);
        self.entry = entry;
        let (hasher, strings, sets) = (&self.hasher, &self.strings, &mut self.label_sets);
        let (bytes, starts) = (&sets.bytes, &sets.starts);
        sets.index.insert(hash, i, |i| {
            let end = starts.get(i + 1).copied().unwrap_or(bytes.len());
            let entry = bytes.get(starts[i]..end).unwrap_or_default();
            let mut h = hasher.build_hasher();
            each_pair(entry, strings, |name, value| hash_pair(&mut h, name, value));
            h.finish()
        });
        i as u32
    }

    /// The table that grew past what a frame holds, if one did.
    pub(super) fn overflow(&self) -> Option<&'static str> {
        self.overflow
    }

    /// Writes the dictionary, then the label-set table.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        for table in [&self.strings, &self.label_sets] {
            put_uvarint(out, table.len() as u64);
            out.extend_from_slice(&table.bytes);
        }
    }

    /// The bytes [`TableWriter::write`] writes, at most.
    pub(super) fn written_len(&self) -> usize {
        self.strings.bytes.len() + self.label_sets.bytes.len() + 20
    }

    /// Empties both tables, keeping their buffers.
    pub(super) fn clear(&mut self) {
        self.strings.clear();
        self.label_sets.clear();
        self.overflow = None;
    }

    /// The memory the tables take: by what they hold, or with `held` by
    /// what their buffers have room for.
    pub(super) fn bytes(&self, held: bool) -> usize {
        let scratch = if held {
            self.entry.capacity() + self.text.capacity()
        } else {
            0
        };
        self.strings.bytes(held) + self.label_sets.bytes(held) + scratch
    }
}
