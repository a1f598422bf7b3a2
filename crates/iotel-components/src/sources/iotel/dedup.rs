//! Which sequences each agent already delivered: the receiver's dedup
//! window, kept across restarts in a small append-only file.
//!
//! Per agent the window is one number, the next buffer id wanted: agents
//! send their ids in increasing order, oldest first, so everything below it
//! arrived. The window holds `max_agents` agents; past that the one heard
//! from least recently is forgotten (counted), and a retransmit from it
//! would be taken again.
//!
//! # The file
//!
//! `sequences.jsonl` in the source's directory: one JSON object per line,
//! `{"agent":"…","next":1042}`, appended after each accepted batch (a
//! `write`, not an fsync: a killed process loses nothing, a power cut may
//! lose the last lines, which then replays those batches — at-least-once).
//! The last line for an agent wins. A line that does not parse (the torn
//! end of a crash) is skipped and counted. When the file holds more than
//! twice the agents plus 1,024 lines it is rewritten with one line per
//! agent: temp file, fsync, rename, fsync of the directory.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "sequences.jsonl";

/// What to do with a batch covering `first ..= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing of it arrived before.
    New,
    /// Ids below `next` arrived before: all of the batch when `whole`.
    Seen { next: u64, whole: bool },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    next: u64,
    /// When the agent was last heard from, in commits.
    used: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line<'a> {
    agent: std::borrow::Cow<'a, str>,
    next: u64,
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
                        Ok(l) => s.set(&l.agent, l.next),
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
        match self.agents.get(agent) {
            Some(e) if first < e.next => Verdict::Seen {
                next: e.next,
                whole: last < e.next,
            },
            _ => Verdict::New,
        }
    }

    /// Records that `agent` delivered everything up to `last`, in memory and
    /// in the file.
    pub(super) fn commit(&mut self, agent: &str, last: u64) -> Result<(), String> {
        let next = last.saturating_add(1);
        self.set(agent, next);
        let Some(log) = &mut self.file else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&Line {
            agent: agent.into(),
            next,
        })
        .map_err(|e| e.to_string())?;
        line.push(b'\n');
        log.file
            .write_all(&line)
            .map_err(|e| format!("cannot write {}: {e}", log.dir.join(FILE_NAME).display()))?;
        log.lines += 1;
        if log.lines > 2 * self.agents.len() + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    fn set(&mut self, agent: &str, next: u64) {
        self.clock += 1;
        let used = self.clock;
        if let Some(e) = self.agents.get_mut(agent) {
            e.next = e.next.max(next);
            e.used = used;
            return;
        }
        if self.agents.len() >= self.max_agents {
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
        self.agents.insert(agent.to_string(), Entry { next, used });
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
            serde_json::to_writer(
                &mut body,
                &Line {
                    agent: agent.as_str().into(),
                    next: e.next,
                },
            )
            .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_new_seen_whole_or_seen_in_part() {
        let mut s = Sequences::in_memory(10);
        assert_eq!(s.check("a", 5, 7), Verdict::New);
        s.commit("a", 7).unwrap();
        assert_eq!(
            s.check("a", 5, 7),
            Verdict::Seen {
                next: 8,
                whole: true
            }
        );
        assert_eq!(
            s.check("a", 6, 9),
            Verdict::Seen {
                next: 8,
                whole: false
            }
        );
        assert_eq!(s.check("a", 8, 9), Verdict::New);
        // A gap (ids the agent's buffer dropped) is fine.
        assert_eq!(s.check("a", 20, 20), Verdict::New);
        assert_eq!(s.check("b", 0, 0), Verdict::New);
    }

    #[test]
    fn the_window_survives_a_restart_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, loaded) = Sequences::open(dir.path(), 10).unwrap();
            assert_eq!(loaded, Loaded::default());
            s.commit("agent \"one\"\n", 7).unwrap();
            s.commit("two", 3).unwrap();
            s.commit("agent \"one\"\n", 9).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"agent\":\"two\",\"ne").unwrap();
        drop(f);
        let (mut s, loaded) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                agents: 2,
                bad_lines: 1
            }
        );
        assert_eq!(
            s.check("agent \"one\"\n", 9, 9),
            Verdict::Seen {
                next: 10,
                whole: true
            }
        );
        assert_eq!(s.check("two", 4, 4), Verdict::New);
        // Appends after the repaired file parse again.
        s.commit("two", 4).unwrap();
        drop(s);
        let (s, loaded) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(loaded.bad_lines, 0);
        assert_eq!(
            s.check("two", 4, 4),
            Verdict::Seen {
                next: 5,
                whole: true
            }
        );
    }

    #[test]
    fn the_least_recently_heard_agent_is_forgotten_first() {
        let mut s = Sequences::in_memory(2);
        s.commit("a", 1).unwrap();
        s.commit("b", 1).unwrap();
        s.commit("a", 2).unwrap();
        s.commit("c", 1).unwrap();
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
            s.commit("a", i).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.lines().count() < 1030,
            "{} lines",
            text.lines().count()
        );
        drop(s);
        let (s, _) = Sequences::open(dir.path(), 10).unwrap();
        assert_eq!(
            s.check("a", 2999, 2999),
            Verdict::Seen {
                next: 3000,
                whole: true
            }
        );
    }
}
