//! Which sequences each agent already delivered: the receiver's dedup
//! window, kept across restarts in a small append-only file.
//!
//! Per agent the window is a **floor** — every id below it arrived, or the
//! agent said it will never send it — and the **ranges** of ids received
//! above it. An agent sends its backlog oldest first, but while a backlog
//! drains its live lane sends newer ids ahead of it, so ids arrive out of
//! order: the ranges hold what arrived past the gap the backlog is still
//! filling. A request covers the ids `first ..= last` as a whole (some may
//! be missing from it: dropped by the agent's buffer), so a received
//! request adds that whole range.
//!
//! The floor rises to `Iotel-Oldest-Sequence`, the oldest id the agent may
//! still send (an agent that predates the header is taken to send in order:
//! its request's first id), so the gaps ids the agent dropped leave behind
//! close by themselves. At most [`MAX_RANGES`] ranges are kept per agent:
//! past that the lowest gap is merged into the floor, counted
//! ([`Committed::merged_gaps`]) and warned about by the source — a batch
//! the agent sends later with an id in that gap is then taken for a
//! retransmit and dropped. It takes more than 64 separate holes in one
//! agent's delivery to get there.
//!
//! The window holds `max_agents` agents; past that the one heard from least
//! recently is forgotten (counted), and a retransmit from it would be taken
//! again.
//!
//! # The file
//!
//! `sequences.jsonl` in the source's directory: one JSON object per line,
//! `{"agent":"…","next":1042,"received":[[1100,1180]]}` (`next` is the
//! floor; `received`, inclusive ranges, is left out when empty: a line of
//! an older receiver, `{"agent":"…","next":1042}`, reads as a floor alone,
//! and an older receiver reading ours keeps the floor and ignores the
//! rest). A line is appended after each accepted batch, with the agent's
//! whole window (a `write`, not an fsync: a killed process loses nothing, a
//! power cut may lose the last lines, which then replays those batches —
//! at-least-once). The last line for an agent wins (lines only ever add
//! to a window, so they are merged). A line that does not parse (the torn
//! end of a crash) is skipped and counted. When the file holds more than
//! twice the agents plus 1,024 lines it is rewritten with one line per
//! agent: temp file, fsync, rename, fsync of the directory.

use crate::id_ranges::IdRanges;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "sequences.jsonl";

/// Received ranges kept per agent above its floor.
pub(super) const MAX_RANGES: usize = 64;

/// What to do with a batch covering `first ..= last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing of it arrived before.
    New,
    /// Some of it arrived before: `received`, the request's ids that did,
    /// inclusive ranges, lowest first (all of it when `whole`).
    Seen {
        received: Vec<(u64, u64)>,
        whole: bool,
    },
}

impl Verdict {
    /// When the request's first id arrived before: the first id after the
    /// received run it starts (`Iotel-Next-Sequence`), at most `last + 1`.
    pub(super) fn next_sequence(&self, first: u64) -> Option<u64> {
        match self {
            Verdict::Seen { received, .. } => received
                .first()
                .filter(|r| r.0 == first)
                .map(|r| r.1.saturating_add(1)),
            Verdict::New => None,
        }
    }
}

/// What recording a batch did besides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Committed {
    /// Gaps merged into the agent's floor to keep [`MAX_RANGES`].
    pub merged_gaps: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Every id below arrived or will never be sent.
    floor: u64,
    /// Ids received above `floor + 1`: never touching the floor.
    received: IdRanges,
    /// When the agent was last heard from, in commits.
    used: u64,
}

impl Entry {
    /// Restores the invariants: ranges above the floor, not touching it,
    /// at most [`MAX_RANGES`]. Returns the gaps merged.
    fn normalize(&mut self) -> u64 {
        self.received.remove_below(self.floor);
        while let Some((a, b)) = self.received.first() {
            if a > self.floor {
                break;
            }
            self.floor = b.saturating_add(1);
            self.received.pop_first();
        }
        let mut merged = 0;
        while self.received.range_count() > MAX_RANGES {
            if let Some((_, b)) = self.received.pop_first() {
                self.floor = b.saturating_add(1);
                merged += 1;
            }
        }
        merged
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Line<'a> {
    agent: std::borrow::Cow<'a, str>,
    /// The floor.
    next: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    received: Vec<(u64, u64)>,
}

/// What opening the file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Loaded {
    pub agents: usize,
    pub bad_lines: u64,
}

#[derive(Debug)]
pub(super) struct Sequences {
    agents: HashMap<String, Entry>,
    max_agents: usize,
    clock: u64,
    file: Option<LogFile>,
    /// Agents forgotten to stay within `max_agents`.
    pub evicted: u64,
}

#[derive(Debug)]
struct LogFile {
    dir: PathBuf,
    file: File,
    lines: usize,
}

impl Sequences {
    /// A window kept in memory only.
    pub(super) fn in_memory(max_agents: usize) -> Self {
        Sequences {
            agents: HashMap::new(),
            max_agents: max_agents.max(1),
            clock: 0,
            file: None,
            evicted: 0,
        }
    }

    /// Opens (or creates) the window kept in `dir`.
    pub(super) fn open(dir: &Path, max_agents: usize) -> Result<(Self, Loaded), String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let mut s = Sequences::in_memory(max_agents);
        let mut loaded = Loaded::default();
        let mut lines = 0;
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    lines += 1;
                    match serde_json::from_slice::<Line>(&line) {
                        Ok(l) => {
                            s.update(&l.agent, |e| {
                                e.floor = e.floor.max(l.next);
                                for &(a, b) in &l.received {
                                    e.received.insert(a, b);
                                }
                            });
                        }
                        Err(_) => loaded.bad_lines += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
        s.evicted = 0;
        loaded.agents = s.agents.len();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        s.file = Some(LogFile {
            dir: dir.to_path_buf(),
            file,
            lines,
        });
        if loaded.bad_lines > 0 {
            // Start the appends on a fresh line after a torn one.
            s.compact()?;
        }
        Ok((s, loaded))
    }

    pub(super) fn check(&self, agent: &str, first: u64, last: u64) -> Verdict {
        let Some(e) = self.agents.get(agent) else {
            return Verdict::New;
        };
        let mut received = Vec::new();
        if first < e.floor {
            received.push((first, last.min(e.floor - 1)));
        }
        // The ranges never touch the floor: no two of these are adjacent.
        received.extend(e.received.within(first.max(e.floor), last));
        if received.is_empty() {
            return Verdict::New;
        }
        let whole = received == [(first, last)];
        Verdict::Seen { received, whole }
    }

    /// Records that `agent` delivered the ids `first ..= last`, in memory
    /// and in the file. `oldest` is the oldest id the agent said it may
    /// still send (`Iotel-Oldest-Sequence`); without it, `first`.
    pub(super) fn commit(
        &mut self,
        agent: &str,
        first: u64,
        last: u64,
        oldest: Option<u64>,
    ) -> Result<Committed, String> {
        // Never above the request's own first id: a floor too high would
        // drop new batches as retransmits.
        let floor = oldest.unwrap_or(first).min(first);
        let mut committed = Committed::default();
        let entry = self.update(agent, |e| {
            e.floor = e.floor.max(floor);
            e.received.insert(first, last);
            committed.merged_gaps = e.normalize();
        });
        let Some(log) = &mut self.file else {
            return Ok(committed);
        };
        let mut line = serde_json::to_vec(&line(agent, &entry)).map_err(|e| e.to_string())?;
        line.push(b'\n');
        log.file
            .write_all(&line)
            .map_err(|e| format!("cannot write {}: {e}", log.dir.join(FILE_NAME).display()))?;
        log.lines += 1;
        if log.lines > 2 * self.agents.len() + 1024 {
            self.compact()?;
        }
        Ok(committed)
    }

    /// Changes `agent`'s window with `f` (a new agent starts empty), marks
    /// it used, and returns it.
    fn update(&mut self, agent: &str, f: impl FnOnce(&mut Entry)) -> Entry {
        self.clock += 1;
        let used = self.clock;
        if !self.agents.contains_key(agent) && self.agents.len() >= self.max_agents {
            let oldest = self
                .agents
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.agents.remove(&k);
                self.evicted += 1;
            }
        }
        let e = self.agents.entry(agent.to_string()).or_insert(Entry {
            floor: 0,
            received: IdRanges::new(),
            used,
        });
        e.used = used;
        f(e);
        e.normalize();
        e.clone()
    }

    /// Rewrites the file with one line per agent.
    fn compact(&mut self) -> Result<(), String> {
        let Some(log) = &mut self.file else {
            return Ok(());
        };
        let path = log.dir.join(FILE_NAME);
        let tmp = log.dir.join(format!("{FILE_NAME}.tmp"));
        let fail =
            |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
        let mut body = Vec::new();
        for (agent, e) in &self.agents {
            serde_json::to_writer(&mut body, &line(agent, e)).map_err(|e| e.to_string())?;
            body.push(b'\n');
        }
        let mut f = File::create(&tmp).map_err(|e| fail("create", &tmp, e))?;
        f.write_all(&body).map_err(|e| fail("write", &tmp, e))?;
        f.sync_all().map_err(|e| fail("fsync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| fail("rename", &tmp, e))?;
        if let Ok(d) = File::open(&log.dir) {
            let _ = d.sync_all();
        }
        log.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| fail("open", &path, e))?;
        log.lines = self.agents.len();
        Ok(())
    }
}

fn line<'a>(agent: &'a str, e: &Entry) -> Line<'a> {
    Line {
        agent: agent.into(),
        next: e.floor,
        received: e.received.iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(received: &[(u64, u64)], whole: bool) -> Verdict {
        Verdict::Seen {
            received: received.to_vec(),
            whole,
        }
    }

    #[test]
    fn a_batch_is_new_seen_whole_or_seen_in_part() {
        let mut s = Sequences::in_memory(10);
        assert_eq!(s.check("a", 5, 7), Verdict::New);
        s.commit("a", 5, 7, None).unwrap();
        assert_eq!(s.check("a", 5, 7), seen(&[(5, 7)], true));
        assert_eq!(s.check("a", 5, 7).next_sequence(5), Some(8));
        // Without Iotel-Oldest-Sequence an agent sends in order: ids below
        // its request's first are settled.
        assert_eq!(s.check("a", 0, 3), seen(&[(0, 3)], true));
        let overlap = s.check("a", 6, 9);
        assert_eq!(overlap, seen(&[(6, 7)], false));
        assert_eq!(overlap.next_sequence(6), Some(8));
        assert_eq!(s.check("a", 8, 9), Verdict::New);
        // A gap (ids the agent's buffer dropped) is fine.
        assert_eq!(s.check("a", 20, 20), Verdict::New);
        assert_eq!(s.check("b", 0, 0), Verdict::New);
    }

    #[test]
    fn live_ids_received_ahead_of_a_backlog_are_ranges_above_the_floor() {
        let mut s = Sequences::in_memory(10);
        // The backlog starts at 50; the live lane delivers 100..=110 first.
        s.commit("a", 100, 110, Some(50)).unwrap();
        assert_eq!(s.check("a", 50, 60), Verdict::New);
        assert_eq!(s.check("a", 0, 49), seen(&[(0, 49)], true));
        // Received ids in the middle and at the end of a request, as an
        // agent restarted sends them again in a larger request.
        let middle = s.check("a", 95, 120);
        assert_eq!(middle, seen(&[(100, 110)], false));
        assert_eq!(middle.next_sequence(95), None);
        assert_eq!(s.check("a", 90, 105), seen(&[(100, 105)], false));
        assert_eq!(s.check("a", 100, 105), seen(&[(100, 105)], true));
        assert_eq!(s.check("a", 100, 115).next_sequence(100), Some(111));
        s.commit("a", 150, 160, Some(50)).unwrap();
        assert_eq!(
            s.check("a", 40, 200),
            seen(&[(40, 49), (100, 110), (150, 160)], false)
        );
        // The backlog catches up: everything below 111 is one floor.
        s.commit("a", 50, 99, Some(50)).unwrap();
        assert_eq!(s.check("a", 105, 112), seen(&[(105, 110)], false));
        assert_eq!(s.check("a", 111, 149), Verdict::New);
        let e = &s.agents["a"];
        assert_eq!((e.floor, e.received.range_count()), (111, 1));
    }

    #[test]
    fn the_floor_follows_the_oldest_id_the_agent_may_still_send() {
        let mut s = Sequences::in_memory(10);
        s.commit("a", 10, 12, Some(10)).unwrap();
        // The agent dropped 13..=19: its oldest is 20 now.
        s.commit("a", 20, 22, Some(20)).unwrap();
        let e = &s.agents["a"];
        assert_eq!((e.floor, e.received.range_count()), (23, 0));
        // An oldest above the request's first is not believed past it.
        s.commit("a", 30, 31, Some(1000)).unwrap();
        assert_eq!(s.check("a", 23, 29), seen(&[(23, 29)], true));
        assert_eq!(s.check("a", 32, 40), Verdict::New);
    }

    #[test]
    fn past_64_ranges_the_lowest_gap_is_merged_into_the_floor_and_counted() {
        let mut s = Sequences::in_memory(10);
        let mut merged = 0;
        for i in 1..=65u64 {
            merged += s
                .commit("a", i * 10, i * 10 + 1, Some(0))
                .unwrap()
                .merged_gaps;
            assert_eq!(merged, i.saturating_sub(64), "after {i} commits");
        }
        let e = &s.agents["a"];
        assert_eq!((e.floor, e.received.range_count()), (12, 64));
        // What the merged gap risks: an id in it is taken as received.
        assert_eq!(s.check("a", 5, 5), seen(&[(5, 5)], true));
        assert_eq!(s.check("a", 12, 19), Verdict::New);
    }

    #[test]
    fn the_window_survives_a_restart_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, loaded) = Sequences::open(dir.path(), 10).unwrap();
            assert_eq!(loaded, Loaded::default());
            s.commit("agent \"one\"\n", 5, 7, None).unwrap();
            s.commit("two", 3, 3, None).unwrap();
            s.commit("agent \"one\"\n", 8, 9, None).unwrap();
            s.commit("three", 100, 110, Some(50)).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"{"agent":"three","next":50,"received":[[100,110]]}"#),
            "{text}"
        );
        assert!(text.contains(r#"{"agent":"two","next":4}"#), "{text}");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"agent\":\"two\",\"ne").unwrap();
        drop(f);
        let (mut s, loaded) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                agents: 3,
                bad_lines: 1
            }
        );
        assert_eq!(s.check("agent \"one\"\n", 9, 9), seen(&[(9, 9)], true));
        assert_eq!(s.check("two", 4, 4), Verdict::New);
        assert_eq!(s.check("three", 60, 105), seen(&[(100, 105)], false));
        // Appends after the repaired file parse again.
        s.commit("two", 4, 4, None).unwrap();
        drop(s);
        let (s, loaded) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(loaded.bad_lines, 0);
        assert_eq!(s.check("two", 4, 4), seen(&[(4, 4)], true));
    }

    #[test]
    fn a_file_of_an_older_receiver_loads_as_floors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            "{\"agent\":\"a\",\"next\":7}\n{\"agent\":\"b\",\"next\":3}\n",
        )
        .unwrap();
        let (s, loaded) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                agents: 2,
                bad_lines: 0
            }
        );
        assert_eq!(s.check("a", 0, 6), seen(&[(0, 6)], true));
        assert_eq!(s.check("a", 7, 7), Verdict::New);
        assert_eq!(s.check("b", 2, 5), seen(&[(2, 2)], false));
    }

    #[test]
    fn the_least_recently_heard_agent_is_forgotten_first() {
        let mut s = Sequences::in_memory(2);
        s.commit("a", 1, 1, None).unwrap();
        s.commit("b", 1, 1, None).unwrap();
        s.commit("a", 2, 2, None).unwrap();
        s.commit("c", 1, 1, None).unwrap();
        assert_eq!(s.evicted, 1);
        assert_eq!(s.check("b", 1, 1), Verdict::New);
        assert!(matches!(s.check("a", 2, 2), Verdict::Seen { .. }));
        assert!(matches!(s.check("c", 1, 1), Verdict::Seen { .. }));
    }

    #[test]
    fn the_file_is_compacted_to_one_line_per_agent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Sequences::open(dir.path(), 10).unwrap();
        for i in 0..3000 {
            s.commit("a", i, i, None).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.lines().count() < 1030,
            "{} lines",
            text.lines().count()
        );
        drop(s);
        let (s, _) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(s.check("a", 2999, 2999), seen(&[(2999, 2999)], true));
        assert_eq!(s.check("a", 3000, 3000), Verdict::New);
    }
}
