//! A linter for expositions (Prometheus text 0.0.4 and OpenMetrics 1.0):
//! grammar first, then naming conventions, with a line and column for each
//! finding, a severity and a stable code.
//!
//! # Grammar
//!
//! Each line is read by the scrape [`Parser`], which is strict where the
//! OpenMetrics ABNF is (single spaces, no blank lines, no comments but
//! `# TYPE`/`# HELP`/`# UNIT`/`# EOF`, metadata before samples, `# EOF`
//! last) and lenient where Prometheus is for text. On top of it the linter
//! checks what the parser leaves to its users: in OpenMetrics, sample names
//! a family's type requires (`foo_total` for a counter `foo`, `_bucket`,
//! `_count`, `_sum` for a histogram, `_info` for an info), an `le` label on
//! buckets and families that are not interleaved. Bytes that are not UTF-8
//! (a binary body) and lines longer than [`MAX_LINE_BYTES`] are grammar
//! errors too. Grammar errors have [`Severity::Error`].
//!
//! # Conventions
//!
//! When a family's samples end (at the next family, or at the end), its name
//! and metadata are checked (`rules.rs`; the rules of `promtool check
//! metrics` keep its message text), and while samples come: reserved and
//! camelCase label names, duplicate series and label values of high
//! cardinality. These have [`Severity::Warning`]. As with promtool, a
//! family with metadata but no samples is not checked.
//!
//! # Bounded memory
//!
//! The input is read line by line, whatever its size. What is kept: the
//! metadata of up to [`Limits::max_families`] families; for the family
//! whose samples are coming, per label name at most `max_label_values + 1`
//! value hashes and up to [`Limits::max_series`] series hashes for the
//! duplicate check (dropped when its samples end: a series repeats only
//! within its family); and the first [`Limits::max_findings`] findings (all
//! are counted; notes are always kept). Past a limit, the checks that need it stop for what is
//! new, and a [`Severity::Note`] says so; the counts stay exact. Past the
//! family limit the scrape parser forgets its families every
//! 20,000 lines, so that it stays bounded too: ordering rules (metadata
//! after samples) then hold within those stretches.

mod classes;
mod lines;
mod report;
mod rules;
#[cfg(test)]
mod tests;

pub use classes::{DEFAULT_FALLBACK, DEFAULT_RULES, SignalClasses, glob_matches};
pub use report::{FamilyDescriptor, Finding, Report, Severity};
pub use rules::{BASE_UNITS, PROMTOOL_CODES};

use super::Format;
use super::parse::{MAX_LINE_BYTES, Parser};
use iotel_model::{Metric, MetricType};
use lines::{column_of, label_column, series_text, unescape_help};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Bounds on what the linter keeps (see the module docs).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_families: usize,
    pub max_series: usize,
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_families: 20_000,
            max_series: 1_000_000,
            max_findings: 10_000,
        }
    }
}

/// The most label names a family's checks keep track of.
const MAX_LABEL_NAMES: usize = 1024;

/// The default number of distinct values a label may have within a family
/// before it is flagged as of high cardinality.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 100;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct LintOptions {
    pub format: Format,
    /// More distinct values than this for one label of one family is a
    /// `high-cardinality` finding.
    pub max_label_values: usize,
    pub classes: SignalClasses,
    pub limits: Limits,
}

impl LintOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            max_label_values: DEFAULT_MAX_LABEL_VALUES,
            classes: SignalClasses::default(),
            limits: Limits::default(),
        }
    }
}

/// A set of hashes that are already random (seeded SipHash), so they are
/// their own hash: no second hashing on insert and on growth.
type HashSet64 = HashSet<u64, std::hash::BuildHasherDefault<Identity>>;

/// The hasher of [`HashSet64`]: a `u64` is its own hash.
#[derive(Debug, Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed; anything else is folded in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Per label name of a family: hashes of the values seen, up to the limit.
#[derive(Debug, Default)]
struct LabelValues {
    hashes: HashSet64,
    flagged: bool,
}

#[derive(Debug)]
struct FamilyState {
    name: Arc<str>,
    /// The first line that names the family, and the column of its name.
    line: usize,
    column: usize,
    declared_type: Option<MetricType>,
    kind: MetricType,
    help: Option<String>,
    unit: Option<String>,
    samples: u64,
    has_samples: bool,
    /// Its samples came and another family's followed.
    ended: bool,
    checked: bool,
    /// Per label name, in order of appearance (a family has few).
    labels: Vec<(Arc<str>, LabelValues)>,
    labels_full: bool,
    /// Hashes of its series while its samples come.
    series: HashSet64,
    series_full: bool,
}

/// The streaming linter: [`Linter::feed`] chunks cut anywhere, then
/// [`Linter::finish`].
pub struct Linter {
    options: LintOptions,
    parser: Parser,
    line: usize,
    partial: Vec<u8>,
    discarding_long_line: bool,
    samples_out: Vec<Metric>,
    /// Where each family is in `states`.
    families: HashMap<Arc<str>, usize>,
    /// In order of appearance.
    states: Vec<FamilyState>,
    families_full: bool,
    /// The family of the last sample, and its state unless past the limit.
    current: Option<(Arc<str>, Option<usize>)>,
    hasher: std::collections::hash_map::RandomState,
    report: Report,
    /// Lines read since the parser last forgot its families (once past
    /// the family limit).
    lines_since_reset: usize,
    /// OpenMetrics: the parser accepted `# EOF`.
    eof_seen: bool,
}

/// Once past the family limit, the parser forgets its families this often
/// (in lines), so its memory stays bounded too.
const PARSER_RESET_LINES: usize = 20_000;

impl std::fmt::Debug for Linter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linter")
            .field("line", &self.line)
            .field("families", &self.families.len())
            .finish_non_exhaustive()
    }
}

impl Linter {
    pub fn new(options: LintOptions) -> Self {
        let mut parser = Parser::new(options.format);
        parser.reset(options.format, 0);
        Self {
            options,
            parser,
            line: 0,
            partial: Vec::new(),
            discarding_long_line: false,
            samples_out: Vec::with_capacity(1),
            families: HashMap::new(),
            states: Vec::new(),
            families_full: false,
            current: None,
            hasher: std::collections::hash_map::RandomState::new(),
            report: Report::default(),
            lines_since_reset: 0,
            eof_seen: false,
        }
    }

    /// Feeds a chunk of the input, cut anywhere.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.report.bytes += chunk.len() as u64;
        let mut rest = chunk;
        while let Some(newline) = memchr_newline(rest) {
            self.line_part(&rest[..newline], true);
            rest = &rest[newline + 1..];
        }
        if !rest.is_empty() {
            self.line_part(rest, false);
        }
    }

    /// Ends the input: the last line without a newline, the family checks,
    /// and `# EOF` for OpenMetrics.
    pub fn finish(mut self) -> Report {
        if !self.discarding_long_line && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.lint_line(&line);
        }
        if self.options.format == Format::OpenMetrics {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            self.parser.finish(&mut out, &mut errors);
            for e in errors {
                self.push(
                    self.line + 1,
                    1,
                    Severity::Error,
                    "missing-eof",
                    None,
                    e.message,
                );
            }
        }
        for index in 0..self.states.len() {
            self.check_family(index);
        }
        let mut report = std::mem::take(&mut self.report);
        report.lines = self.line;
        report.findings.sort_by_key(|f| (f.line, f.column));
        for f in &self.states {
            report.families.push(FamilyDescriptor {
                name: f.name.to_string(),
                description: f.help.clone(),
                unit: f.unit.clone(),
                kind: f.kind,
                class: self.options.classes.classify(&f.name).to_string(),
                samples: f.samples,
                line: f.line,
            });
        }
        report
    }

    /// Records an error about the input as a whole (it could not all be
    /// read, or was too large), after the last line read.
    pub fn input_error(&mut self, code: &'static str, message: String) {
        self.push(self.line + 1, 1, Severity::Error, code, None, message);
    }

    fn line_part(&mut self, part: &[u8], complete: bool) {
        if self.discarding_long_line {
            self.discarding_long_line = !complete;
            return;
        }
        if self.partial.len() + part.len() > MAX_LINE_BYTES {
            self.line += 1;
            self.push(
                self.line,
                1,
                Severity::Error,
                "line-too-long",
                None,
                format!("line longer than {MAX_LINE_BYTES} bytes; skipped"),
            );
            self.partial.clear();
            self.discarding_long_line = !complete;
        } else if !complete {
            self.partial.extend_from_slice(part);
        } else if self.partial.is_empty() {
            self.lint_line(part);
        } else {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(part);
            self.lint_line(&line);
            line.clear();
            self.partial = line;
        }
    }

    fn lint_line(&mut self, bytes: &[u8]) {
        self.line += 1;
        self.lines_since_reset += 1;
        // Not after `# EOF`, which a reset would forget: what follows it is
        // an error however many families came before.
        if self.families_full && !self.eof_seen && self.lines_since_reset >= PARSER_RESET_LINES {
            self.parser.reset(self.options.format, 0);
            self.lines_since_reset = 0;
        }
        let line = match std::str::from_utf8(bytes) {
            Ok(line) => line,
            Err(e) => {
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
                let column = valid.chars().count() + 1;
                self.push(
                    self.line,
                    column,
                    Severity::Error,
                    "not-utf8",
                    None,
                    "invalid UTF-8: the exposition must be UTF-8 text".into(),
                );
                return;
            }
        };
        if let Some(at) = line.find('\0') {
            let column = line[..at].chars().count() + 1;
            self.push(
                self.line,
                column,
                Severity::Error,
                "not-text",
                None,
                "NUL byte: the exposition must be text".into(),
            );
            return;
        }
        self.samples_out.clear();
        if let Err(e) = self.parser.parse_line(line, &mut self.samples_out) {
            self.push(
                self.line,
                e.column,
                Severity::Error,
                "syntax",
                None,
                e.message,
            );
            return;
        }
        let fault = match self.options.format {
            Format::Text => lines::text_line_fault(line),
            Format::OpenMetrics => None,
        }
        .or_else(|| lines::label_value_escapes(line));
        if let Some((at, message)) = fault {
            let column = column_of(line, at);
            self.push(self.line, column, Severity::Error, "syntax", None, message);
        }
        let trimmed = match self.options.format {
            Format::Text => line
                .strip_suffix('\r')
                .unwrap_or(line)
                .trim_start_matches([' ', '\t']),
            Format::OpenMetrics => line,
        };
        if trimmed.starts_with('#') {
            self.eof_seen |= self.options.format == Format::OpenMetrics && line == "# EOF";
            self.metadata_line(line, trimmed);
            return;
        }
        let samples = std::mem::take(&mut self.samples_out);
        for m in &samples {
            self.sample(line, m);
        }
        self.samples_out = samples;
    }

    /// A metadata line the parser accepted (`trimmed` starts with `#`).
    fn metadata_line(&mut self, line: &str, trimmed: &str) {
        let openmetrics = self.options.format == Format::OpenMetrics;
        let mut words = trimmed[1..].trim_start_matches([' ', '\t']);
        let keyword_end = words.find([' ', '\t']).unwrap_or(words.len());
        let keyword = &words[..keyword_end];
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") || (keyword == "UNIT" && !openmetrics) {
            return;
        }
        words = words[keyword_end..].trim_start_matches([' ', '\t']);
        let name_end = words.find([' ', '\t']).unwrap_or(words.len());
        let name = &words[..name_end];
        let rest = words[name_end..]
            .strip_prefix([' ', '\t'])
            .unwrap_or(&words[name_end..]);
        let rest = if openmetrics {
            rest
        } else {
            rest.trim_start_matches([' ', '\t'])
        };
        let name_at = line.len() - words.len();
        let column = line[..name_at].chars().count() + 1;
        let line_no = self.line;
        if keyword == "HELP"
            && let Some((at, message)) =
                lines::help_escapes(rest, line.len() - rest.len(), openmetrics)
        {
            let column = column_of(line, at);
            self.push(line_no, column, Severity::Error, "syntax", None, message);
        }
        let Some(index) = self.family_index(name, line_no, column) else {
            return;
        };
        let family = &mut self.states[index];
        match keyword {
            "HELP" => family.help = Some(unescape_help(rest)),
            "TYPE" => {
                let kind = MetricType::parse(&rest.trim_end().to_ascii_lowercase())
                    .unwrap_or(MetricType::Unknown);
                family.declared_type = Some(kind);
                family.kind = kind;
            }
            _ => family.unit = Some(rest.to_string()).filter(|u| !u.is_empty()),
        }
    }

    fn sample(&mut self, line: &str, m: &Metric) {
        self.report.samples += 1;
        let openmetrics = self.options.format == Format::OpenMetrics;
        // Text format: a counter's family is named as its samples are
        // (`# TYPE foo_total counter`), as Prometheus' text parser reads
        // it; a sample `foo_total` under `# TYPE foo counter` is a family
        // of its own, untyped.
        let own_family =
            !openmetrics && m.meta.kind == MetricType::Counter && m.name != m.meta.family;
        let family_name = if own_family {
            m.name.clone()
        } else {
            m.meta.family.clone()
        };
        // A family's samples end at the next family's.
        let same = matches!(&self.current, Some((name, _))
            if Arc::ptr_eq(name, &family_name) || **name == *family_name);
        let index = if same {
            self.current.as_ref().and_then(|(_, index)| *index)
        } else {
            if let Some((_, Some(previous))) = self.current.take() {
                self.states[previous].ended = true;
                self.check_family(previous);
            }
            let index = self.family_index(&family_name, self.line, 1);
            if let Some(i) = index
                && self.states[i].ended
            {
                let (severity, more) = if openmetrics {
                    (
                        Severity::Error,
                        "OpenMetrics does not allow interleaved families",
                    )
                } else {
                    (Severity::Warning, "keep a family's samples together")
                };
                let message = format!(
                    "samples of {:?} after those of another family: {more}",
                    &*family_name
                );
                self.push(
                    self.line,
                    1,
                    severity,
                    "interleaved-family",
                    Some(&family_name),
                    message,
                );
            }
            self.current = Some((family_name.clone(), index));
            index
        };
        let Some(index) = index else {
            return;
        };
        let line_no = self.line;
        let max_values = self.options.max_label_values;
        let hasher = self.hasher.clone();
        let mut label_findings: Vec<(usize, Severity, &'static str, String)> = Vec::new();
        let family = &mut self.states[index];
        family.has_samples = true;
        family.samples += 1;
        if family.declared_type.is_none() {
            family.kind = if own_family {
                MetricType::Unknown
            } else {
                m.meta.kind
            };
        }
        let kind = family.kind;
        if openmetrics
            && *m.name == *family_name
            && matches!(
                kind,
                MetricType::Counter
                    | MetricType::Histogram
                    | MetricType::GaugeHistogram
                    | MetricType::Info
            )
        {
            let expected = match kind {
                MetricType::Counter => "_total or _created",
                MetricType::Info => "_info",
                MetricType::GaugeHistogram => "_bucket, _gcount or _gsum",
                _ => "_bucket, _count, _sum or _created",
            };
            label_findings.push((
                1,
                Severity::Error,
                "sample-suffix",
                format!(
                    "a sample of the {} {:?} must be named with {expected} after the family name",
                    kind.as_str(),
                    &*family_name
                ),
            ));
        }
        if openmetrics
            && matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram)
            && m.name.ends_with("_bucket")
            && m.labels.get("le").is_none()
        {
            label_findings.push((
                1,
                Severity::Error,
                "missing-le",
                "a histogram bucket must have an \"le\" label".into(),
            ));
        }
        for label in m.labels.iter() {
            let known = family
                .labels
                .iter()
                .position(|(n, _)| Arc::ptr_eq(n, &label.name) || **n == *label.name);
            let at = match known {
                Some(at) => at,
                None if family.labels.len() >= MAX_LABEL_NAMES => {
                    if !family.labels_full {
                        family.labels_full = true;
                        label_findings.push((
                            1,
                            Severity::Note,
                            "limit",
                            format!(
                                "more than {MAX_LABEL_NAMES} label names in this family: later ones are not checked"
                            ),
                        ));
                    }
                    continue;
                }
                None => {
                    family
                        .labels
                        .push((label.name.clone(), LabelValues::default()));
                    family.labels.len() - 1
                }
            };
            let values = &mut family.labels[at].1;
            let first = known.is_none();
            if first {
                let column = label_column(line, &label.name);
                for (code, message) in rules::label_problems(kind, &label.name) {
                    label_findings.push((column, Severity::Warning, code, message));
                }
            }
            // A histogram's buckets and a summary's quantiles are its
            // shape, not cardinality.
            let shape = match &*label.name {
                "le" => matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram),
                "quantile" => kind == MetricType::Summary,
                _ => false,
            };
            if values.flagged || shape {
                continue;
            }
            values.hashes.insert(hasher.hash_one(&*label.value));
            if values.hashes.len() > max_values {
                values.flagged = true;
                values.hashes = HashSet64::default();
                label_findings.push((
                    label_column(line, &label.name),
                    Severity::Warning,
                    "high-cardinality",
                    format!(
                        "label {:?} has more than {max_values} distinct values in this family",
                        &*label.name
                    ),
                ));
            }
        }
        for (column, severity, code, message) in label_findings {
            self.push(line_no, column, severity, code, Some(&family_name), message);
        }
        self.duplicate_check(m, index);
    }

    /// Looks for `m`'s series among its family's: a series repeats only
    /// within its family (its name is part of it), so the hashes a family
    /// kept are dropped when its samples end.
    fn duplicate_check(&mut self, m: &Metric, index: usize) {
        let mut h = self.hasher.build_hasher();
        h.write(m.name.as_bytes());
        for l in m.labels.iter() {
            h.write_u8(0xff);
            h.write(l.name.as_bytes());
            h.write_u8(0xfe);
            h.write(l.value.as_bytes());
        }
        let key = h.finish();
        let max_series = self.options.limits.max_series;
        let family = &mut self.states[index];
        if family.series_full {
            return;
        }
        if !family.series.insert(key) {
            let message = format!("duplicate series {}", series_text(m));
            let family = family.name.clone();
            self.push(
                self.line,
                1,
                Severity::Warning,
                "duplicate-series",
                Some(&family),
                message,
            );
        } else if family.series.len() >= max_series {
            family.series_full = true;
            family.series = HashSet64::default();
            let family = family.name.clone();
            self.push(
                self.line,
                1,
                Severity::Note,
                "limit",
                Some(&family),
                format!(
                    "more than {max_series} series in family {:?}: duplicates of its later series are not looked for",
                    &*family
                ),
            );
        }
    }

    /// Where the state of family `name` is, created at `line`/`column` if
    /// new; `None` past the family limit.
    fn family_index(&mut self, name: &str, line: usize, column: usize) -> Option<usize> {
        if let Some(&index) = self.families.get(name) {
            return Some(index);
        }
        if self.states.len() >= self.options.limits.max_families {
            if !self.families_full {
                self.families_full = true;
                self.push(
                    line,
                    column,
                    Severity::Note,
                    "limit",
                    None,
                    format!(
                        "more than {} families: later families are checked for grammar only",
                        self.options.limits.max_families
                    ),
                );
            }
            return None;
        }
        let name: Arc<str> = Arc::from(name);
        let index = self.states.len();
        self.families.insert(name.clone(), index);
        self.states.push(FamilyState {
            name,
            line,
            column,
            declared_type: None,
            kind: MetricType::Unknown,
            help: None,
            unit: None,
            samples: 0,
            has_samples: false,
            ended: false,
            checked: false,
            labels: Vec::new(),
            labels_full: false,
            series: HashSet64::default(),
            series_full: false,
        });
        Some(index)
    }

    /// The name and metadata rules, once per family with samples.
    fn check_family(&mut self, index: usize) {
        let openmetrics = self.options.format == Format::OpenMetrics;
        let f = &mut self.states[index];
        if f.checked || !f.has_samples {
            return;
        }
        f.checked = true;
        // Label value hashes are no longer needed unless samples return
        // (then interleaved, and flagged as such).
        for (_, values) in &mut f.labels {
            values.hashes = HashSet64::default();
        }
        f.series = HashSet64::default();
        let facts = rules::FamilyFacts {
            name: &f.name,
            kind: f.kind,
            openmetrics,
            has_help: f.help.is_some(),
            has_type: f.declared_type.is_some(),
            unit: f.unit.as_deref(),
        };
        let problems = rules::family_problems(&facts);
        let (line, column, family) = (f.line, f.column, f.name.clone());
        for (code, message) in problems {
            self.push(
                line,
                column,
                Severity::Warning,
                code,
                Some(&family),
                message,
            );
        }
    }

    fn push(
        &mut self,
        line: usize,
        column: usize,
        severity: Severity,
        code: &'static str,
        family: Option<&str>,
        message: String,
    ) {
        match severity {
            Severity::Error => self.report.errors += 1,
            Severity::Warning => self.report.warnings += 1,
            Severity::Note => {}
        }
        // Notes are few (one per limit and family at most) and say why
        // findings may be missing: always kept.
        if severity != Severity::Note
            && self.report.findings.len() >= self.options.limits.max_findings
        {
            self.report.findings_not_kept += 1;
            return;
        }
        self.report.findings.push(Finding {
            line,
            column,
            severity,
            code,
            family: family.map(str::to_string),
            message,
        });
    }
}

/// Lints a whole input at once.
pub fn lint_bytes(input: &[u8], options: LintOptions) -> Report {
    let mut linter = Linter::new(options);
    linter.feed(input);
    linter.finish()
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}
