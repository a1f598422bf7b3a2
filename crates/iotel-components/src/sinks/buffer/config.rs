//! The `buffer` config of a sink: its kinds, policies and defaults, and
//! the checks `validate` makes. What they mean is in the parent module's
//! docs.

use crate::Problem;
use iotel_engine::config::{ByteSize, Duration};
use serde::{Deserialize, Deserializer};
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::Path;

/// `buffer`: where a sink keeps batches until its peer acknowledged them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BufferConfig {
    Memory(MemoryConfig),
    Disk(DiskConfig),
}

impl Default for BufferConfig {
    /// A memory buffer with its defaults.
    fn default() -> Self {
        BufferConfig::Memory(MemoryConfig::default())
    }
}

/// `buffer = { type = "memory" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Events held at most, batches being sent included.
    #[serde(default = "default_max_events")]
    pub max_events: NonZeroUsize,
    #[serde(default)]
    pub when_full: WhenFull,
    /// Only with `when_full = "downsample"`; see [`Downsample`].
    #[serde(default)]
    pub downsample_window: Option<Duration>,
    /// Only with `when_full = "downsample"`; see [`Downsample`].
    #[serde(default)]
    pub downsample_keep_one_in: Option<NonZeroU32>,
}

/// `buffer = { type = "disk" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// All segment files together stay within this.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Where a segment file is closed and the next begun; also the unit
    /// `drop_oldest` deletes at once and the largest batch (encoded, plus a
    /// 32-byte record header) the buffer takes. Default: see
    /// [`DiskConfig::segment_size`].
    #[serde(default)]
    pub max_segment_size: Option<ByteSize>,
    #[serde(default)]
    pub when_full: WhenFull,
    #[serde(default)]
    pub fsync: Fsync,
    /// Only with `when_full = "downsample"`; see [`Downsample`].
    #[serde(default)]
    pub downsample_window: Option<Duration>,
    /// Only with `when_full = "downsample"`; see [`Downsample`].
    #[serde(default)]
    pub downsample_keep_one_in: Option<NonZeroU32>,
}

/// `when_full`: what `push` does when the buffer has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Drop the oldest batches to make room (counted): fresh data beats old.
    #[default]
    DropOldest,
    /// Refuse the batch until acks make room: backpressure on the source.
    Block,
    /// Compact the oldest batches into coarser data to make room (counted):
    /// see [`SinkBuffer::compact`].
    Downsample,
}

impl WhenFull {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::DropOldest => "drop_oldest",
            WhenFull::Block => "block",
            WhenFull::Downsample => "downsample",
        }
    }
}

/// How `when_full = "downsample"` compacts, with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Downsample {
    /// `downsample_window` (default 1m): metric samples of one series are
    /// reduced to their last value with min, max and count per window.
    pub window: Duration,
    /// `downsample_keep_one_in` (default 10): of the logs below ERROR, 1
    /// in this many per stream are kept; of the spans that are not errors,
    /// those of 1 trace in this many.
    pub keep_one_in: NonZeroU32,
}

impl Default for Downsample {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            keep_one_in: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// `fsync`: `"always"`, `"never"`, or how often, such as `"1s"`. See
/// [`iotel_buffer::FsyncPolicy`] for what each risks on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Never,
    Interval(Duration),
}

impl Default for Fsync {
    fn default() -> Self {
        Fsync::Interval(Duration(iotel_buffer::DEFAULT_FSYNC_INTERVAL))
    }
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            t => t.parse().map(Fsync::Interval).map_err(|_| {
                format!("expected \"always\", \"never\" or a duration such as \"1s\", got \"{s}\"")
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Fsync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fsync::Always => f.write_str("always"),
            Fsync::Never => f.write_str("never"),
            Fsync::Interval(d) => d.fmt(f),
        }
    }
}

impl Fsync {
    /// The `iotel_buffer` policy this stands for.
    pub fn policy(self) -> iotel_buffer::FsyncPolicy {
        match self {
            Fsync::Always => iotel_buffer::FsyncPolicy::Always,
            Fsync::Never => iotel_buffer::FsyncPolicy::Never,
            Fsync::Interval(d) => iotel_buffer::FsyncPolicy::Interval(d.get()),
        }
    }
}

// 20,000 events: the remote-write queue's default, a few MB of samples.
fn default_max_events() -> NonZeroUsize {
    NonZeroUsize::new(20_000).unwrap_or(NonZeroUsize::MIN)
}

fn default_max_size() -> ByteSize {
    ByteSize(iotel_buffer::DEFAULT_MAX_SIZE)
}

/// The smallest default `max_segment_size`: below it the segment files and
/// their fsyncs multiply for little gain.
const MIN_DEFAULT_SEGMENT_SIZE: u64 = 64 << 10;

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            when_full: WhenFull::default(),
            downsample_window: None,
            downsample_keep_one_in: None,
        }
    }
}

impl Default for DiskConfig {
    fn default() -> Self {
        Self {
            max_size: default_max_size(),
            max_segment_size: None,
            when_full: WhenFull::default(),
            fsync: Fsync::default(),
            downsample_window: None,
            downsample_keep_one_in: None,
        }
    }
}

impl DiskConfig {
    /// `max_segment_size`, or its default: `max_size / 16` within 64 KiB ..
    /// 4 MiB (`iotel_buffer::DEFAULT_MAX_SEGMENT_SIZE`), so that
    /// `drop_oldest` gives up about a sixteenth of a full buffer at a time,
    /// a small buffer still takes batches of tens of KiB, and a large one
    /// does not grow its segments (and the unit it drops) without bound.
    pub fn segment_size(&self) -> u64 {
        match self.max_segment_size {
            Some(s) => s.bytes(),
            None => (self.max_size.bytes() / 16).clamp(
                MIN_DEFAULT_SEGMENT_SIZE,
                iotel_buffer::DEFAULT_MAX_SEGMENT_SIZE,
            ),
        }
    }

    /// The `iotel_buffer` config for `dir`; a new buffer's ids start at
    /// `first_id`.
    pub(super) fn buffer_config(&self, dir: &Path, first_id: u64) -> iotel_buffer::BufferConfig {
        let when_full = match self.when_full {
            // Under `downsample` a full buffer refuses the push, and the
            // sink compacts (`SinkBuffer::compact`) before pushing again.
            WhenFull::Block | WhenFull::Downsample => iotel_buffer::WhenFull::Block,
            WhenFull::DropOldest => iotel_buffer::WhenFull::DropOldest,
        };
        iotel_buffer::BufferConfig {
            max_size: NonZeroU64::new(self.max_size.bytes()).unwrap_or(NonZeroU64::MIN),
            max_segment_size: NonZeroU64::new(self.segment_size()).unwrap_or(NonZeroU64::MIN),
            fsync: self.fsync.policy(),
            when_full,
            first_id,
            ..iotel_buffer::BufferConfig::new(dir)
        }
    }
}

impl BufferConfig {
    /// `when_full`, whichever the kind.
    pub fn when_full(&self) -> WhenFull {
        match self {
            BufferConfig::Memory(c) => c.when_full,
            BufferConfig::Disk(c) => c.when_full,
        }
    }

    /// `downsample_window` and `downsample_keep_one_in` as set (`None`:
    /// not set).
    pub(super) fn downsample_keys(&self) -> (Option<Duration>, Option<NonZeroU32>) {
        match self {
            BufferConfig::Memory(c) => (c.downsample_window, c.downsample_keep_one_in),
            BufferConfig::Disk(c) => (c.downsample_window, c.downsample_keep_one_in),
        }
    }

    /// How `when_full = "downsample"` compacts, defaults filled in.
    pub fn downsample(&self) -> Downsample {
        let (window, keep_one_in) = self.downsample_keys();
        let d = Downsample::default();
        Downsample {
            window: window.unwrap_or(d.window),
            keep_one_in: keep_one_in.unwrap_or(d.keep_one_in),
        }
    }

    /// Every problem of this config, keyed under `key_prefix` (the sink's
    /// key of the buffer table, such as `buffer`). No I/O.
    pub fn validate(&self, key_prefix: &str) -> Vec<Problem> {
        let key = |name: &str| {
            if key_prefix.is_empty() {
                name.to_string()
            } else {
                format!("{key_prefix}.{name}")
            }
        };
        let mut p = Vec::new();
        let when_full = self.when_full();
        let (window, keep_one_in) = self.downsample_keys();
        let only_with_downsample = |name: &str| {
            Problem::new(
                key(name),
                format!(
                    "only used with when_full = \"downsample\", but when_full is \"{}\"; \
                     remove {name} or set when_full = \"downsample\"",
                    when_full.as_str()
                ),
            )
        };
        if when_full != WhenFull::Downsample {
            if window.is_some() {
                p.push(only_with_downsample("downsample_window"));
            }
            if keep_one_in.is_some() {
                p.push(only_with_downsample("downsample_keep_one_in"));
            }
        } else if let Some(w) = window
            && w.get() < std::time::Duration::from_millis(1)
        {
            p.push(Problem::new(
                key("downsample_window"),
                format!(
                    "expected at least 1ms (metric timestamps are in milliseconds), such as \
                     \"1m\", got \"{w}\""
                ),
            ));
        }
        let BufferConfig::Disk(c) = self else {
            return p;
        };
        let segment = c.segment_size();
        let header = iotel_buffer::HEADER_LEN as u64;
        if segment <= header {
            p.push(Problem::new(
                key("max_segment_size"),
                format!(
                    "expected more than the {header}-byte record header, such as \"1MiB\", got {}",
                    ByteSize(segment)
                ),
            ));
        } else if segment > u64::from(u32::MAX) {
            p.push(Problem::new(
                key("max_segment_size"),
                format!("expected at most 4GiB, got {}", ByteSize(segment)),
            ));
        } else if c.max_size.bytes() < segment.saturating_mul(2) {
            let message = match c.max_segment_size {
                Some(_) => format!(
                    "expected at least twice max_segment_size ({}), so {} or more, got {}: the \
                     segment being written must never be the one dropped to make room",
                    ByteSize(segment),
                    ByteSize(segment * 2),
                    c.max_size
                ),
                None => format!(
                    "expected at least {} (twice max_segment_size, which defaults to max_size / \
                     16 but at least {}), got {}; or set a smaller max_segment_size",
                    ByteSize(segment * 2),
                    ByteSize(MIN_DEFAULT_SEGMENT_SIZE),
                    c.max_size
                ),
            };
            p.push(Problem::new(key("max_size"), message));
        }
        if let Fsync::Interval(d) = c.fsync
            && d.get().is_zero()
        {
            p.push(Problem::new(
                key("fsync"),
                "expected a duration above 0s, such as \"1s\", or \"always\"",
            ));
        }
        p
    }
}
