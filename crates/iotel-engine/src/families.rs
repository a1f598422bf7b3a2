//! The node's metric families: which ones flow in from its sources, and
//! which an operator retired (the node API's `/api/v1/metrics`).
//!
//! Every source's output passes its metric batches through a
//! [`FamilyGate`] before they reach any consumer. The gate
//!
//! - removes the samples of retired families, so nothing downstream sees
//!   them (the caller counts them as discarded, reason `retired`), and
//! - notes what passed: per family its type, help and unit, the series seen
//!   and the source that emitted it.
//!
//! Retiring is a node-wide set of family names. The gate's only per-batch
//! cost while nothing is retired is one atomic load; once something is, it
//! keeps a snapshot of the set and re-reads it only when the set changed.
//!
//! # Which samples a family covers
//!
//! A family is named as OpenMetrics names it: a counter without `_total`
//! (`http_requests`, whether its source called the family `http_requests`
//! or `http_requests_total`), other types as their family is named
//! (`request_seconds` for the samples `request_seconds_bucket`, `_sum`,
//! `_count`). A sample belongs to a retired family when its own family (as
//! the source described it, see [`family_name`]) is retired. A sample that
//! names no family of its own (its family is its name: a remote-write series,
//! a sample without metadata) whose type is unknown, counter, histogram or
//! summary also belongs to a retired `foo` when it is named `foo_bucket`,
//! `foo_sum`, `foo_count`, `foo_total` or `foo_created`; a gauge named
//! `foo_count` is a family of its own and does not.
//!
//! # Series counts
//!
//! The series of a family are the distinct (name, labels) seen in a window
//! of [`WINDOW`]; what a source no longer sends leaves the count after at
//! most two windows, and a family nothing sent for two windows leaves the
//! catalogue (unless retired). Counting hashes each sample's name and
//! labels, so it stops for the rest of a window once a family's count is
//! settled ([`QUIET_RUNS`] runs of its samples in a row brought no new
//! series): after that a sample of it costs a pointer comparison. Each
//! source notes at most [`MAX_TRACKED_SERIES`] series per window; past that
//! its counts are a lower bound, so a source with runaway cardinality
//! cannot make the catalogue grow without bound.

use iotel_model::{Metric, MetricMeta, MetricType};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// How long series are counted before the count starts over.
pub const WINDOW: Duration = Duration::from_secs(300);

/// Series one source notes per window at most.
pub const MAX_TRACKED_SERIES: usize = 100_000;

/// The sample suffixes that may belong to a family of another name.
const SAMPLE_SUFFIXES: [&str; 5] = ["_bucket", "_sum", "_count", "_total", "_created"];

/// The family a sample belongs to, as the catalogue lists it: its
/// metadata's family, a counter's without `_total`.
pub fn family_name(m: &Metric) -> &str {
    meta_family(&m.meta)
}

fn meta_family(meta: &MetricMeta) -> &str {
    let f = &*meta.family;
    match meta.kind {
        MetricType::Counter => f.strip_suffix("_total").unwrap_or(f),
        _ => f,
    }
}

/// Whether a family is flowing or retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilyState {
    Active,
    Retired,
}

/// One family, as the node API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: MetricType,
    pub help: Option<String>,
    pub unit: Option<String>,
    /// Distinct series seen lately (0 for a retired family).
    pub series: u64,
    /// The sources that emit it, by id.
    pub components: Vec<String>,
    pub state: FamilyState,
}

/// What is remembered of a retired family, so the listing still describes
/// it when nothing of it flows (after a restart, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredFamily {
    pub name: String,
    pub kind: MetricType,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub components: Vec<String>,
}

impl RetiredFamily {
    fn info(&self) -> FamilyInfo {
        FamilyInfo {
            name: self.name.clone(),
            kind: self.kind,
            help: self.help.clone(),
            unit: self.unit.clone(),
            series: 0,
            components: self.components.clone(),
            state: FamilyState::Retired,
        }
    }
}

/// The retired families, as one immutable snapshot.
#[derive(Debug, Default)]
pub struct Retired {
    families: HashMap<Arc<str>, RetiredFamily>,
}

impl Retired {
    /// Whether `m` belongs to a retired family (see the module docs).
    pub fn covers(&self, m: &Metric) -> bool {
        if self.families.contains_key(family_name(m)) {
            return true;
        }
        if *m.meta.family != *m.name
            || !matches!(
                m.meta.kind,
                MetricType::Unknown
                    | MetricType::Counter
                    | MetricType::Histogram
                    | MetricType::GaugeHistogram
                    | MetricType::Summary
            )
        {
            return false;
        }
        SAMPLE_SUFFIXES.iter().any(|s| {
            m.name
                .strip_suffix(s)
                .is_some_and(|base| self.families.contains_key(base))
        })
    }

    /// Whether the family `meta` describes is retired: for a source that
    /// can skip making its samples.
    pub fn covers_family(&self, meta: &MetricMeta) -> bool {
        self.families.contains_key(meta_family(meta))
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }
}

/// The node's catalogue of metric families. Cheap to clone; one per node
/// (it lives in the [`Registry`](crate::Registry)).
#[derive(Clone, Default)]
pub struct MetricFamilies(Arc<Inner>);

impl std::fmt::Debug for MetricFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricFamilies")
            .field("sources", &lock(&self.0.sources).len())
            .field("retired", &self.read_retired().families.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// Set while at least one family is retired: the gates' fast path.
    any_retired: AtomicBool,
    /// Bumped on every change of `retired`, so gates know to re-read it.
    generation: AtomicU64,
    retired: RwLock<Arc<Retired>>,
    /// What each source's gate saw, by source id.
    sources: Mutex<Vec<SourceSeen>>,
}

/// A source's id and what its gate saw.
type SourceSeen = (Arc<str>, Arc<Mutex<Seen>>);

/// The answer for a family the node has not seen and that is not retired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric family \"{0}\"")]
pub struct UnknownFamily(pub String);

impl MetricFamilies {
    /// The gate of the source `component`, for its output.
    pub fn gate(&self, component: &str) -> FamilyGate {
        let seen = Arc::new(Mutex::new(Seen::default()));
        lock(&self.0.sources).push((Arc::from(component), seen.clone()));
        FamilyGate {
            families: self.clone(),
            seen,
            snapshot: None,
        }
    }

    /// The retired families, or `None` when none is (the common case, one
    /// atomic load).
    pub fn retired(&self) -> Option<Arc<Retired>> {
        if !self.0.any_retired.load(Ordering::Acquire) {
            return None;
        }
        Some(self.read_retired())
    }

    fn read_retired(&self) -> Arc<Retired> {
        self.0
            .retired
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The retired families' records, in name order (what a node keeps
    /// across restarts).
    pub fn retired_families(&self) -> Vec<RetiredFamily> {
        let retired = self.read_retired();
        let mut v: Vec<RetiredFamily> = retired.families.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every family seen lately or retired, in name order.
    pub fn list(&self) -> Vec<FamilyInfo> {
        let mut merged: BTreeMap<String, Merged> = BTreeMap::new();
        let now = Instant::now();
        for (component, seen) in lock(&self.0.sources).iter() {
            let mut seen = lock(seen);
            seen.rotate(now);
            for f in &seen.families {
                let m = merged.entry(f.name.to_string()).or_default();
                m.add(&f.meta, f.series(), component);
            }
        }
        let retired = self.read_retired();
        let mut out: Vec<FamilyInfo> = merged
            .into_iter()
            .filter(|(name, _)| !retired.families.contains_key(name.as_str()))
            .map(|(name, m)| m.info(name))
            .collect();
        out.extend(retired.families.values().map(RetiredFamily::info));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One family, seen lately or retired.
    pub fn get(&self, name: &str) -> Option<FamilyInfo> {
        self.list().into_iter().find(|f| f.name == name)
    }

    /// What retiring `name` would remember of it: its description and the
    /// sources that emit it.
    ///
    /// # Errors
    /// [`UnknownFamily`] when the node has not seen `name` and it is not
    /// retired.
    pub fn describe_for_retirement(&self, name: &str) -> Result<RetiredFamily, UnknownFamily> {
        let f = self
            .get(name)
            .ok_or_else(|| UnknownFamily(name.to_string()))?;
        Ok(RetiredFamily {
            name: f.name,
            kind: f.kind,
            help: f.help,
            unit: f.unit,
            components: f.components,
        })
    }

    /// Retires a family: from now on the sources' gates remove its samples.
    /// Retiring a retired family again changes nothing.
    ///
    /// # Errors
    /// [`UnknownFamily`] when the node has not seen `name` and it is not
    /// retired.
    pub fn retire(&self, name: &str) -> Result<FamilyInfo, UnknownFamily> {
        let family = self.describe_for_retirement(name)?;
        self.restore([family]);
        self.get(name)
            .ok_or_else(|| UnknownFamily(name.to_string()))
    }

    /// Retires families remembered from an earlier run (or just described
    /// by [`MetricFamilies::describe_for_retirement`]), without asking
    /// whether they were seen.
    pub fn restore(&self, families: impl IntoIterator<Item = RetiredFamily>) {
        self.update(|set| {
            for f in families {
                set.insert(Arc::from(f.name.as_str()), f);
            }
        });
    }

    /// Lets a retired family flow again. Enabling an active family changes
    /// nothing.
    ///
    /// # Errors
    /// [`UnknownFamily`] when the node has not seen `name` and it is not
    /// retired.
    pub fn enable(&self, name: &str) -> Result<FamilyInfo, UnknownFamily> {
        let mut was_retired = None;
        self.update(|set| was_retired = set.remove(name));
        match was_retired {
            Some(f) => Ok(FamilyInfo {
                state: FamilyState::Active,
                ..f.info()
            }),
            None => self
                .get(name)
                .ok_or_else(|| UnknownFamily(name.to_string())),
        }
    }

    fn update(&self, change: impl FnOnce(&mut HashMap<Arc<str>, RetiredFamily>)) {
        let mut guard = self.0.retired.write().unwrap_or_else(|p| p.into_inner());
        let mut families = guard.families.clone();
        change(&mut families);
        let any = !families.is_empty();
        *guard = Arc::new(Retired { families });
        self.0.generation.fetch_add(1, Ordering::AcqRel);
        self.0.any_retired.store(any, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic mid-update leaves at worst a stale count behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A family as merged over the sources that emit it.
#[derive(Debug, Default)]
struct Merged {
    meta: Option<Arc<MetricMeta>>,
    series: u64,
    components: BTreeSet<String>,
}

impl Merged {
    fn add(&mut self, meta: &Arc<MetricMeta>, series: usize, component: &str) {
        // The first source that knows the type describes the family.
        let better = match &self.meta {
            None => true,
            Some(m) => m.kind == MetricType::Unknown && meta.kind != MetricType::Unknown,
        };
        if better {
            self.meta = Some(meta.clone());
        }
        self.series += series as u64;
        self.components.insert(component.to_string());
    }

    fn info(self, name: String) -> FamilyInfo {
        let meta = self.meta.unwrap_or_default();
        FamilyInfo {
            name,
            kind: meta.kind,
            help: meta.help.as_deref().map(str::to_string),
            unit: meta.unit.as_deref().map(str::to_string),
            series: self.series,
            components: self.components.into_iter().collect(),
            state: FamilyState::Active,
        }
    }
}

/// A fast hash for counting series (FxHash's mixing): not for maps an
/// outsider can fill on purpose, which the per-source cap guards.
#[derive(Default)]
struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl SeriesHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A set of series hashes: they are hashes already, so used as they are.
type HashSetOfHashes = HashSet<u64, BuildHasherDefault<PassThrough>>;

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What one source emitted lately, family by family.
#[derive(Default)]
struct Seen {
    families: Vec<SeenFamily>,
    /// Where each family is in `families`.
    index: HashMap<Arc<str>, usize>,
    /// The family of the last run of samples, to skip the lookup when the
    /// next run shares its metadata.
    last: Option<usize>,
    window_start: Option<Instant>,
    /// Series noted in this window, over every family.
    tracked: usize,
}

struct SeenFamily {
    name: Arc<str>,
    /// Held, so a run of samples whose metadata is this very `Arc` is known
    /// to be this family without a lookup.
    meta: Arc<MetricMeta>,
    current: HashSetOfHashes,
    previous: usize,
    /// Runs in a row that brought no new series this window.
    quiet_runs: u32,
}

impl SeenFamily {
    fn series(&self) -> usize {
        self.current.len().max(self.previous)
    }

    /// Whether this window's count is settled: the last
    /// [`QUIET_RUNS`] runs of it brought no new series.
    fn settled(&self) -> bool {
        self.quiet_runs >= QUIET_RUNS
    }
}

/// Runs of a family's samples in a row without a new series after which
/// its series are no longer hashed until the next window.
///
/// Hashing each sample's name and labels is what noting costs; a scrape
/// brings the same series every time, so after a few scrapes a family's
/// count is settled and its samples cost one pointer comparison. A series
/// that first shows up after that is counted from the next window on.
pub const QUIET_RUNS: u32 = 8;

impl Seen {
    /// Starts a new window when the current one is over.
    fn rotate(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) < WINDOW {
            return;
        }
        self.window_start = Some(now);
        self.tracked = 0;
        self.last = None;
        self.families.retain_mut(|f| {
            f.previous = f.current.len();
            f.current = HashSetOfHashes::default();
            f.quiet_runs = 0;
            f.previous > 0
        });
        self.index = self
            .families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
    }

    /// The index of the family of samples with `meta`, added when new.
    fn family_of(&mut self, meta: &Arc<MetricMeta>) -> usize {
        if let Some(i) = self.last
            && Arc::ptr_eq(&self.families[i].meta, meta)
        {
            return i;
        }
        let name = meta_family(meta);
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let name: Arc<str> = Arc::from(name);
                self.families.push(SeenFamily {
                    name: name.clone(),
                    meta: meta.clone(),
                    current: HashSetOfHashes::default(),
                    previous: 0,
                    quiet_runs: 0,
                });
                self.index.insert(name, self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let family = &mut self.families[i];
        if !Arc::ptr_eq(&family.meta, meta) {
            family.meta = meta.clone();
        }
        self.last = Some(i);
        i
    }

    fn note(&mut self, batch: &[Metric], now: Instant) {
        self.rotate(now);
        let mut i = 0;
        while i < batch.len() {
            // Samples of one family usually come together and share their
            // metadata: one lookup per run.
            let meta = &batch[i].meta;
            let run = batch[i..]
                .iter()
                .take_while(|m| Arc::ptr_eq(&m.meta, meta))
                .count();
            let f = self.family_of(meta);
            let family = &mut self.families[f];
            if !family.settled() {
                let mut new = false;
                for m in &batch[i..i + run] {
                    if self.tracked >= MAX_TRACKED_SERIES {
                        break;
                    }
                    let mut h = SeriesHasher::default();
                    m.name.hash(&mut h);
                    m.labels.hash(&mut h);
                    if family.current.insert(h.finish()) {
                        self.tracked += 1;
                        new = true;
                    }
                }
                family.quiet_runs = if new { 0 } else { family.quiet_runs + 1 };
            }
            i += run;
        }
    }

    #[cfg(test)]
    fn get(&self, name: &str) -> Option<&SeenFamily> {
        self.index.get(name).map(|&i| &self.families[i])
    }
}

/// A source's door into the graph for metrics (see the module docs).
#[derive(Clone)]
pub struct FamilyGate {
    families: MetricFamilies,
    seen: Arc<Mutex<Seen>>,
    /// The retired set as last read, with the generation it was read at.
    snapshot: Option<(u64, Arc<Retired>)>,
}

impl std::fmt::Debug for FamilyGate {
    /// Not the series hashes: a source's context may be printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seen = lock(&self.seen);
        f.debug_struct("FamilyGate")
            .field("families", &seen.families.len())
            .field("series", &seen.tracked)
            .finish_non_exhaustive()
    }
}

impl FamilyGate {
    /// Removes the samples of retired families from `batch` and notes what
    /// is left. Returns how many were removed.
    pub fn admit(&mut self, batch: &mut Vec<Metric>) -> usize {
        let mut removed = 0;
        if let Some(retired) = self.current_retired() {
            let before = batch.len();
            batch.retain(|m| !retired.covers(m));
            removed = before - batch.len();
        }
        if !batch.is_empty() {
            lock(&self.seen).note(batch, Instant::now());
        }
        removed
    }

    /// The retired set, or `None` when nothing is retired; re-read only
    /// when it changed since the last call.
    pub fn current_retired(&mut self) -> Option<Arc<Retired>> {
        let inner = &self.families.0;
        if !inner.any_retired.load(Ordering::Acquire) {
            self.snapshot = None;
            return None;
        }
        let generation = inner.generation.load(Ordering::Acquire);
        match &self.snapshot {
            Some((g, r)) if *g == generation => Some(r.clone()),
            _ => {
                let r = self.families.read_retired();
                self.snapshot = Some((generation, r.clone()));
                Some(r)
            }
        }
    }

    /// The node's catalogue, for a source that can skip work for retired
    /// families before it even makes their samples.
    pub fn families(&self) -> &MetricFamilies {
        &self.families
    }
}

#[cfg(test)]
mod tests;
