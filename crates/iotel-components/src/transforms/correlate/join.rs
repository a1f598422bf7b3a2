//! The join of `correlate`, without I/O or clocks: records come in with
//! their event time, chains go out. Every decision depends only on the
//! records seen so far, so tests drive it record by record.
//!
//! # Rules
//!
//! - The **watermark** is the largest event time seen minus the allowed
//!   lateness (none before the first record). A record older than the
//!   watermark is **late**: it is not joined.
//! - A trace holds at most one record per hop (device, gateway, rule). A
//!   record joins its trace when its time is within the window of every
//!   adjacent hop already held: device↔gateway within `device_gateway`,
//!   gateway↔rule within `gateway_rule`, and device↔rule (while the gateway
//!   is missing) within their sum. Bounds are inclusive. Otherwise it is
//!   **outside the window** and not joined; a second record of a hop
//!   already held is a **duplicate** and not joined.
//! - A trace's **deadline** is the latest event time any of its missing
//!   hops could still have and fit the windows of the hops it holds. A
//!   trace holding every expected hop is emitted at once as `complete`,
//!   and remembered (without its records) until the watermark passes its
//!   newest record's time, so that a retransmitted record counts as a
//!   duplicate rather than opening a new trace (after that it is late). Any other trace is emitted as `window_closed` once the
//!   watermark passes its deadline: no on-time record can join it then.
//! - At most `max_traces` traces are held. A new trace at a full table
//!   first drops the trace with the earliest deadline, emitting it as
//!   `evicted` (unless already emitted).
//! - At shutdown every trace not yet emitted goes out as `shutdown`.
//!
//! A record that comes for a trace after its chain was emitted and
//! forgotten opens a new trace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where in the chain a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hop {
    Device = 0,
    Gateway = 1,
    Rule = 2,
}

impl Hop {
    pub const ALL: [Hop; 3] = [Hop::Device, Hop::Gateway, Hop::Rule];

    pub fn as_str(self) -> &'static str {
        match self {
            Hop::Device => "device",
            Hop::Gateway => "gateway",
            Hop::Rule => "rule",
        }
    }
}

/// What a chain keeps of one joined record.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Event time, ns since the Unix epoch.
    pub timestamp_ns: i64,
    pub message: String,
    /// The unified `device_id`, `gateway_id` and `rule_id` the record had.
    pub ids: [Option<Arc<str>>; 3],
}

/// A trace's records by [`Hop`] index, each boxed so that a trace waiting
/// for its hops (or remembered after) costs a few words until they come.
pub type Hops = [Option<Box<Seen>>; 3];

/// A trace id as held: 32 lowercase hex digits as a number (no
/// allocation), any other id as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Hex(u128),
    Text(Box<str>),
}

impl Key {
    fn of(id: &str) -> Key {
        let lower_hex = id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match u128::from_str_radix(id, 16) {
            Ok(n) if lower_hex => Key::Hex(n),
            _ => Key::Text(id.into()),
        }
    }

    /// The id as it came.
    fn text(&self) -> Box<str> {
        match self {
            Key::Hex(n) => format!("{n:032x}").into(),
            Key::Text(t) => t.clone(),
        }
    }
}

/// Why a chain was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Complete,
    WindowClosed,
    Evicted,
    Shutdown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Complete,
        Status::WindowClosed,
        Status::Evicted,
        Status::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::WindowClosed => "window_closed",
            Status::Evicted => "evicted",
            Status::Shutdown => "shutdown",
        }
    }
}

/// One trace's joined records.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub trace_id: Box<str>,
    /// By [`Hop`] index.
    pub hops: Hops,
    pub status: Status,
}

/// What became of an observed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Joined,
    Late,
    OutsideWindow,
    Duplicate,
}

/// The windows and bounds, in ns.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub device_gateway_ns: i64,
    pub gateway_rule_ns: i64,
    pub allowed_lateness_ns: i64,
    pub max_traces: usize,
    /// Which hops a complete chain has (those configured).
    pub expected: [bool; 3],
}

#[derive(Debug)]
struct Trace {
    hops: Hops,
    deadline: i64,
    seq: u64,
    emitted: bool,
}

/// The traces held, by id and by deadline.
#[derive(Debug)]
pub struct Join {
    limits: Limits,
    max_seen: Option<i64>,
    traces: HashMap<Key, Trace>,
    /// (deadline, arrival sequence) → trace id: the next to close first.
    by_deadline: BTreeMap<(i64, u64), Key>,
    next_seq: u64,
    /// Traces held after their chain was emitted complete.
    emitted: usize,
}

impl Join {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            max_seen: None,
            traces: HashMap::new(),
            by_deadline: BTreeMap::new(),
            next_seq: 0,
            emitted: 0,
        }
    }

    /// The largest event time seen minus the allowed lateness.
    pub fn watermark(&self) -> Option<i64> {
        self.max_seen
            .map(|m| m.saturating_sub(self.limits.allowed_lateness_ns))
    }

    /// Traces held, emitted or not.
    pub fn traces(&self) -> usize {
        self.traces.len()
    }

    /// Traces held whose chain is not emitted yet.
    pub fn open(&self) -> usize {
        self.traces.len().saturating_sub(self.emitted)
    }

    /// Forgets trace `id`, returning it unless its chain was emitted.
    fn forget(&mut self, id: &Key) -> Option<Trace> {
        let t = self.traces.remove(id)?;
        if t.emitted {
            self.emitted -= 1;
            return None;
        }
        Some(t)
    }

    /// Offers a record of `hop` to trace `trace_id`; chains that complete
    /// or are evicted go onto `out`. Returns what became of the record and
    /// how many traces were evicted (0 or 1).
    pub fn observe(
        &mut self,
        trace_id: &str,
        hop: Hop,
        seen: Seen,
        out: &mut Vec<Chain>,
    ) -> (Outcome, usize) {
        let t = seen.timestamp_ns;
        if self.watermark().is_some_and(|w| t < w) {
            return (Outcome::Late, 0);
        }
        self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        let limits = self.limits;
        let key = Key::of(trace_id);
        if let Some(trace) = self.traces.get_mut(&key) {
            if trace.emitted || trace.hops[hop as usize].is_some() {
                return (Outcome::Duplicate, 0);
            }
            if !fits(&limits, &trace.hops, hop, t) {
                return (Outcome::OutsideWindow, 0);
            }
            trace.hops[hop as usize] = Some(Box::new(seen));
            let old = (trace.deadline, trace.seq);
            if is_complete(&limits, &trace.hops) {
                // Kept, emitted, until the watermark passes its newest
                // record: a retransmission of one (same time) is late then.
                trace.deadline = Hop::ALL
                    .iter()
                    .filter_map(|&h| time(&trace.hops, h))
                    .max()
                    .unwrap_or(t);
                trace.emitted = true;
                self.emitted += 1;
                // Nothing more is needed of the records.
                out.push(Chain {
                    trace_id: trace_id.into(),
                    hops: std::mem::take(&mut trace.hops),
                    status: Status::Complete,
                });
            } else {
                trace.deadline = deadline(&limits, &trace.hops);
            }
            if let Some(id) = self.by_deadline.remove(&old) {
                self.by_deadline.insert((trace.deadline, old.1), id);
            }
            return (Outcome::Joined, 0);
        }
        let mut evicted = 0;
        if self.traces.len() >= limits.max_traces {
            evicted = self.evict_first(out);
        }
        let mut hops = Hops::default();
        hops[hop as usize] = Some(Box::new(seen));
        let seq = self.next_seq;
        self.next_seq += 1;
        if is_complete(&limits, &hops) {
            // A chain of one expected hop.
            out.push(Chain {
                trace_id: trace_id.into(),
                hops,
                status: Status::Complete,
            });
            return (Outcome::Joined, evicted);
        }
        let deadline = deadline(&limits, &hops);
        self.by_deadline.insert((deadline, seq), key.clone());
        self.traces.insert(
            key,
            Trace {
                hops,
                deadline,
                seq,
                emitted: false,
            },
        );
        (Outcome::Joined, evicted)
    }

    /// Drops the trace with the earliest deadline, emitting it unless it
    /// was; returns 1 when a chain was emitted.
    fn evict_first(&mut self, out: &mut Vec<Chain>) -> usize {
        let Some((_, id)) = self.by_deadline.pop_first() else {
            return 0;
        };
        match self.forget(&id) {
            Some(t) => {
                out.push(Chain {
                    trace_id: id.text(),
                    hops: t.hops,
                    status: Status::Evicted,
                });
                1
            }
            None => 0,
        }
    }

    /// Emits, as `window_closed`, every trace whose deadline the watermark
    /// passed, and forgets them.
    pub fn advance(&mut self, out: &mut Vec<Chain>) {
        let Some(w) = self.watermark() else {
            return;
        };
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 >= w {
                break;
            }
            let id = entry.remove();
            if let Some(t) = self.forget(&id) {
                out.push(Chain {
                    trace_id: id.text(),
                    hops: t.hops,
                    status: Status::WindowClosed,
                });
            }
        }
    }

    /// Emits every trace not yet emitted, as `shutdown`, in deadline order.
    pub fn drain(&mut self, out: &mut Vec<Chain>) {
        while let Some((_, id)) = self.by_deadline.pop_first() {
            if let Some(t) = self.forget(&id) {
                out.push(Chain {
                    trace_id: id.text(),
                    hops: t.hops,
                    status: Status::Shutdown,
                });
            }
        }
    }
}

fn time(hops: &Hops, hop: Hop) -> Option<i64> {
    hops[hop as usize].as_ref().map(|s| s.timestamp_ns)
}

fn is_complete(limits: &Limits, hops: &Hops) -> bool {
    Hop::ALL
        .iter()
        .all(|&h| !limits.expected[h as usize] || hops[h as usize].is_some())
}

/// Whether a record of `hop` at `t` fits the windows of the hops held.
fn fits(limits: &Limits, hops: &Hops, hop: Hop, t: i64) -> bool {
    let (dg, gr) = (limits.device_gateway_ns, limits.gateway_rule_ns);
    let within = |other: Option<i64>, window: i64| {
        other.is_none_or(|o| t.abs_diff(o) <= window.unsigned_abs())
    };
    let gateway = time(hops, Hop::Gateway);
    match hop {
        Hop::Device if gateway.is_some() => within(gateway, dg),
        Hop::Device => within(time(hops, Hop::Rule), dg.saturating_add(gr)),
        Hop::Gateway => within(time(hops, Hop::Device), dg) && within(time(hops, Hop::Rule), gr),
        Hop::Rule if gateway.is_some() => within(gateway, gr),
        Hop::Rule => within(time(hops, Hop::Device), dg.saturating_add(gr)),
    }
}

/// The latest event time a missing expected hop could have and still fit.
fn deadline(limits: &Limits, hops: &Hops) -> i64 {
    let (dg, gr) = (limits.device_gateway_ns, limits.gateway_rule_ns);
    let (d, g, r) = (
        time(hops, Hop::Device),
        time(hops, Hop::Gateway),
        time(hops, Hop::Rule),
    );
    let missing = |h: Hop| limits.expected[h as usize] && hops[h as usize].is_none();
    let mut latest = i64::MIN;
    if missing(Hop::Gateway) {
        let by_device = d.map(|d| d.saturating_add(dg));
        let by_rule = r.map(|r| r.saturating_add(gr));
        let v = match (by_device, by_rule) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MIN),
        };
        latest = latest.max(v);
    }
    if missing(Hop::Device) {
        let v = g
            .map(|g| g.saturating_add(dg))
            .or(r.map(|r| r.saturating_add(gr).saturating_add(dg)));
        latest = latest.max(v.unwrap_or(i64::MIN));
    }
    if missing(Hop::Rule) {
        let v = g
            .map(|g| g.saturating_add(gr))
            .or(d.map(|d| d.saturating_add(dg).saturating_add(gr)));
        latest = latest.max(v.unwrap_or(i64::MIN));
    }
    latest
}
