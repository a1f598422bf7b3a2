//! What `iotel top` shows, computed from two readings of
//! `/api/v1/components`: rates per second, sorting and filtering. No
//! terminal here.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One reading of `/api/v1/components` (the fields `top` uses).
#[derive(Debug, Clone, Deserialize)]
pub struct Reading {
    pub node: NodeInfo,
    pub now_unix_ms: i64,
    pub components: Vec<Counts>,
    #[serde(default)]
    pub tls: Vec<Certificate>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeInfo {
    pub config: String,
    pub version: String,
    pub started_unix_ms: i64,
    pub components: Vec<Declared>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Declared {
    pub id: String,
    pub kind: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Counts {
    pub id: String,
    pub received: u64,
    pub sent: u64,
    pub discarded: u64,
    #[serde(default)]
    pub discarded_by_reason: BTreeMap<String, u64>,
    pub errors: u64,
    #[serde(default)]
    pub errors_by_code: BTreeMap<String, u64>,
    pub buffer: Option<Buffer>,
    pub latency_p99_seconds: Option<f64>,
    #[serde(default)]
    pub failed: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Buffer {
    pub events: u64,
    pub oldest_age_seconds: f64,
    #[serde(default)]
    pub fill_ratio: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Certificate {
    pub component_id: String,
    pub file: String,
    pub expires_in_seconds: f64,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub kind: String,
    pub type_name: String,
    /// Per second, since the reading before; 0 on the first.
    pub in_rate: f64,
    pub out_rate: f64,
    pub error_rate: f64,
    pub drop_rate: f64,
    pub errors: u64,
    pub discarded: u64,
    pub buffer: Option<(u64, f64, f64)>,
    pub p99_seconds: Option<f64>,
    pub failed: bool,
    /// "code 3, other 1": what the errors and discards were.
    pub why: String,
}

/// The columns, in table order; what `s` cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// As the config declares them.
    Graph,
    Id,
    In,
    Out,
    Errors,
    Drops,
    Buffer,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::Graph,
        SortKey::Id,
        SortKey::In,
        SortKey::Out,
        SortKey::Errors,
        SortKey::Drops,
        SortKey::Buffer,
    ];

    pub fn next(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Graph => "graph",
            SortKey::Id => "id",
            SortKey::In => "in/s",
            SortKey::Out => "out/s",
            SortKey::Errors => "errors/s",
            SortKey::Drops => "drops/s",
            SortKey::Buffer => "buffer",
        }
    }
}

/// The rows of `now`, with rates against `before` (the reading before, if
/// any, of the same node).
pub fn rows(before: Option<&Reading>, now: &Reading) -> Vec<Row> {
    let declared: BTreeMap<&str, &Declared> = now
        .node
        .components
        .iter()
        .map(|d| (d.id.as_str(), d))
        .collect();
    let earlier: BTreeMap<&str, &Counts> = before
        .filter(|b| b.node.started_unix_ms == now.node.started_unix_ms)
        .map(|b| b.components.iter().map(|c| (c.id.as_str(), c)).collect())
        .unwrap_or_default();
    let secs = before.map_or(0.0, |b| (now.now_unix_ms - b.now_unix_ms) as f64 / 1000.0);
    now.components
        .iter()
        .map(|c| {
            let d = declared.get(c.id.as_str());
            let rate = |f: fn(&Counts) -> u64| match earlier.get(c.id.as_str()) {
                Some(b) if secs > 0.0 => f(c).saturating_sub(f(b)) as f64 / secs,
                _ => 0.0,
            };
            let why = c
                .errors_by_code
                .iter()
                .chain(&c.discarded_by_reason)
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ");
            Row {
                id: c.id.clone(),
                kind: d.map_or_else(String::new, |d| d.kind.clone()),
                type_name: d.map_or_else(String::new, |d| d.type_name.clone()),
                in_rate: rate(|c| c.received),
                out_rate: rate(|c| c.sent),
                error_rate: rate(|c| c.errors),
                drop_rate: rate(|c| c.discarded),
                errors: c.errors,
                discarded: c.discarded,
                buffer: c
                    .buffer
                    .as_ref()
                    .map(|b| (b.events, b.oldest_age_seconds, b.fill_ratio)),
                p99_seconds: c.latency_p99_seconds.filter(|s| *s > 0.0),
                failed: c.failed,
                why,
            }
        })
        .collect()
}

/// The rows whose id, kind or type contain `filter` (case-insensitive),
/// sorted by `key` (largest first, but for `graph` and `id`), reversed on
/// request.
pub fn arrange(mut rows: Vec<Row>, filter: &str, key: SortKey, reverse: bool) -> Vec<Row> {
    let filter = filter.to_lowercase();
    if !filter.is_empty() {
        rows.retain(|r| {
            [&r.id, &r.kind, &r.type_name]
                .iter()
                .any(|s| s.to_lowercase().contains(&filter))
        });
    }
    let desc = |f: fn(&Row) -> f64| {
        move |a: &Row, b: &Row| f(b).total_cmp(&f(a)).then_with(|| a.id.cmp(&b.id))
    };
    match key {
        SortKey::Graph => {}
        SortKey::Id => rows.sort_by(|a, b| a.id.cmp(&b.id)),
        SortKey::In => rows.sort_by(desc(|r| r.in_rate)),
        SortKey::Out => rows.sort_by(desc(|r| r.out_rate)),
        SortKey::Errors => rows.sort_by(desc(|r| r.error_rate)),
        SortKey::Drops => rows.sort_by(desc(|r| r.drop_rate)),
        SortKey::Buffer => rows.sort_by(desc(|r| r.buffer.map_or(-1.0, |b| b.0 as f64))),
    }
    if reverse {
        rows.reverse();
    }
    rows
}

/// `1234567` → `1.2M`: rates and counts in a narrow column.
pub fn short(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if n >= 10.0 || n == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    }
}

/// Seconds as the largest whole unit: `90` → `1m`, `7200` → `2h`.
pub fn age(s: f64) -> String {
    match s {
        s if s >= 86_400.0 => format!("{:.0}d", (s / 86_400.0).floor()),
        s if s >= 3600.0 => format!("{:.0}h", (s / 3600.0).floor()),
        s if s >= 60.0 => format!("{:.0}m", (s / 60.0).floor()),
        s => format!("{s:.1}s"),
    }
}
