//! The LogQL subset that `filter` and `sample` take: a stream selector
//! followed by line filters.
//!
//! ```text
//! query    = selector { filter }
//! selector = "{" [ matcher { "," matcher } [ "," ] ] "}"
//! matcher  = label_name ( "=" | "!=" | "=~" | "!~" ) string
//! filter   = ( "|=" | "!=" | "|~" | "!~" ) string
//! string   = a Go string: "double quoted", with \a \b \f \n \r \t \v \\ \"
//!            \xhh \ooo \uhhhh \Uhhhhhhhh escapes, or `raw, in backticks`
//! ```
//!
//! `label_name` is `[a-zA-Z_][a-zA-Z0-9_]*`. Whitespace may stand between
//! any two tokens, and `#` starts a comment that runs to the end of the
//! line, as in LogQL.
//!
//! Semantics are LogQL's:
//! - Label matchers look at the record's stream labels only, not at its
//!   fields. A missing label reads as `""`, so `{env!="prod"}` matches a
//!   record without `env` and `{env=""}` matches only such records.
//!   `=~` and `!~` are fully anchored: `{job=~"edge.*"}` is
//!   `^(?:edge.*)$`.
//! - Line filters look at the message. `|=` contains, `!=` does not
//!   contain, `|~` has a match of the regex anywhere (not anchored), `!~`
//!   has none. Every matcher and every filter must hold.
//! - Regexes are Rust `regex` syntax, which for the RE2 syntax LogQL uses is
//!   the same but for rarely used corners. Case-insensitive matching
//!   (`(?i)`) folds ASCII letters only: the build carries no Unicode case
//!   tables.
//!
//! One departure: `{}`, a selector without matchers, is accepted and
//! matches every record. Loki refuses it because it would read every stream
//! in the store; a pipeline sees every record anyway.
//!
//! Anything else LogQL has is refused with its column: parser and
//! formatting stages (`| json`, `| logfmt`, `| line_format`), label filters
//! after `|`, pattern filters (`|>`), `or` between line filter strings,
//! `ip(...)` filters, and metric queries (`rate(...)`, `sum by (...)`).

use crate::transforms::describe;
use iotel_model::Labels;
use regex::bytes::{Regex, RegexBuilder};
use std::fmt;

/// A selector that does not parse or compile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectorError {
    /// 1-based, in characters of the selector text.
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// How a line filter tests the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Regex,
    /// `!~`
    NotRegex,
}

impl FilterOp {
    fn as_str(self) -> &'static str {
        match self {
            FilterOp::Contains => "|=",
            FilterOp::NotContains => "!=",
            FilterOp::Regex => "|~",
            FilterOp::NotRegex => "!~",
        }
    }
}

/// `name op "value"` inside the braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelMatcher {
    pub(crate) name: String,
    pub(crate) op: MatchOp,
    pub(crate) value: String,
    /// Where the value's string starts, for regex errors.
    pub(crate) column: usize,
}

/// `op "value"` after the braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineFilter {
    pub(crate) op: FilterOp,
    pub(crate) value: String,
    /// Where the value's string starts, for regex errors.
    pub(crate) column: usize,
}

/// A parsed selector, before its regexes are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) matchers: Vec<LabelMatcher>,
    pub(crate) filters: Vec<LineFilter>,
}

/// Parses and compiles `src`.
///
/// # Errors
/// The first syntax error, or the first regex that does not compile, with
/// its column.
pub(crate) fn compile(src: &str) -> Result<Compiled, SelectorError> {
    Selector::parse(src)?.compile()
}

const LINE_FILTERS_ONLY: &str = "only line filters (|=, !=, |~, !~) may follow the stream selector";
const STRING_EXPECTED: &str = "a string in \"double quotes\" or `backticks`";

impl Selector {
    /// # Errors
    /// The first syntax error, with its column.
    pub(crate) fn parse(src: &str) -> Result<Self, SelectorError> {
        let mut p = Parser { src, pos: 0 };
        let matchers = p.stream_selector()?;
        let filters = p.line_filters()?;
        Ok(Selector { matchers, filters })
    }

    /// # Errors
    /// The first regex that does not compile, with its column.
    pub(crate) fn compile(&self) -> Result<Compiled, SelectorError> {
        let matchers = self
            .matchers
            .iter()
            .map(|m| {
                let test = match m.op {
                    MatchOp::Equal | MatchOp::NotEqual => Pattern::Equal(m.value.clone()),
                    MatchOp::Regex | MatchOp::NotRegex => Pattern::new(&m.value, true)
                        .map_err(|e| regex_problem(m.column, &m.value, &e))?,
                };
                let negated = matches!(m.op, MatchOp::NotEqual | MatchOp::NotRegex);
                Ok(CompiledMatcher {
                    name: m.name.clone(),
                    test,
                    negated,
                })
            })
            .collect::<Result<_, SelectorError>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| {
                let test = match f.op {
                    FilterOp::Contains | FilterOp::NotContains => {
                        Pattern::Contains(f.value.clone())
                    }
                    FilterOp::Regex | FilterOp::NotRegex => Pattern::new(&f.value, false)
                        .map_err(|e| regex_problem(f.column, &f.value, &e))?,
                };
                let negated = matches!(f.op, FilterOp::NotContains | FilterOp::NotRegex);
                Ok(CompiledFilter { test, negated })
            })
            .collect::<Result<_, SelectorError>>()?;
        Ok(Compiled { matchers, filters })
    }
}

fn regex_problem(column: usize, pattern: &str, reason: &str) -> SelectorError {
    SelectorError {
        column,
        message: format!("invalid regular expression {}: {reason}", quote(pattern)),
    }
}

impl fmt::Display for Selector {
    /// The canonical spelling, which parses back to the same selector:
    /// `{job="app", level!="debug"} |~ "ERROR|panic"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}{}{}", m.name, m.op.as_str(), quote(&m.value))?;
        }
        f.write_str("}")?;
        for l in &self.filters {
            write!(f, " {} {}", l.op.as_str(), quote(&l.value))?;
        }
        Ok(())
    }
}

/// `s` as a Go double-quoted string.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn column(&self, pos: usize) -> usize {
        self.src[..pos].chars().count() + 1
    }

    fn error(&self, pos: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            column: self.column(pos),
            message: message.into(),
        }
    }

    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with('#') {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    /// The name at the cursor (possibly empty), without moving.
    fn name_at(&self, pos: usize) -> &'a str {
        let rest = &self.src[pos..];
        if !rest.starts_with(is_name_start) {
            return "";
        }
        let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
        &rest[..end]
    }

    /// What stands at `pos`, for "found ..." in messages.
    fn found(&self, pos: usize) -> String {
        let rest = &self.src[pos..];
        if rest.is_empty() {
            return "the end of the selector".into();
        }
        let name = self.name_at(pos);
        let string_end = match rest.chars().next() {
            Some(q @ ('"' | '`')) => rest[1..].find(q).map(|e| e + 2),
            _ => None,
        };
        let token = if let Some(end) = string_end {
            rest[..end].chars().take(12).collect()
        } else if name.is_empty() {
            let end = rest
                .char_indices()
                .find(|&(i, c)| i > 0 && (c.is_whitespace() || "{}(),\"`".contains(c)))
                .map_or(rest.len(), |(i, _)| i);
            let token: String = rest[..end].chars().take(12).collect();
            token
        } else {
            name.to_string()
        };
        quote(&token)
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// `{ ... }` and the matchers inside.
    fn stream_selector(&mut self) -> Result<Vec<LabelMatcher>, SelectorError> {
        self.skip_space();
        let start = self.pos;
        if self.rest().is_empty() {
            return Err(self.error(
                start,
                "expected a stream selector such as {job=\"app\"}, found the end of the selector",
            ));
        }
        let word = self.name_at(start);
        if !word.is_empty() {
            let after = &self.src[start + word.len()..];
            let call = if after.trim_start().starts_with('(') {
                "("
            } else {
                ""
            };
            return Err(self.error(
                start,
                format!(
                    "\"{word}{call}\" is not supported: metric queries are not; expected a log stream selector such as {{job=\"app\"}}"
                ),
            ));
        }
        if !self.eat("{") {
            return Err(self.error(
                start,
                format!(
                    "expected a stream selector such as {{job=\"app\"}}, found {}",
                    self.found(start)
                ),
            ));
        }
        let mut matchers = Vec::new();
        loop {
            self.skip_space();
            if self.eat("}") {
                return Ok(matchers);
            }
            matchers.push(self.matcher()?);
            self.skip_space();
            if self.eat("}") {
                return Ok(matchers);
            }
            if !self.eat(",") {
                return Err(self.error(
                    self.pos,
                    format!(
                        "expected \",\" or \"}}\" after a label matcher, found {}",
                        self.found(self.pos)
                    ),
                ));
            }
        }
    }

    fn matcher(&mut self) -> Result<LabelMatcher, SelectorError> {
        let start = self.pos;
        let name = self.name_at(start).to_string();
        if name.is_empty() {
            return Err(self.error(
                start,
                format!(
                    "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or \"}}\", found {}",
                    self.found(start)
                ),
            ));
        }
        self.pos += name.len();
        self.skip_space();
        let op_pos = self.pos;
        let op = if self.eat("=~") {
            MatchOp::Regex
        } else if self.eat("!~") {
            MatchOp::NotRegex
        } else if self.eat("!=") {
            MatchOp::NotEqual
        } else if self.eat("=") {
            MatchOp::Equal
        } else {
            return Err(self.error(
                op_pos,
                format!(
                    "expected =, !=, =~ or !~ after label name \"{name}\", found {}",
                    self.found(op_pos)
                ),
            ));
        };
        self.skip_space();
        let column = self.column(self.pos);
        let value = self.string(&format!("{name}{}", op.as_str()))?;
        Ok(LabelMatcher {
            name,
            op,
            value,
            column,
        })
    }

    fn line_filters(&mut self) -> Result<Vec<LineFilter>, SelectorError> {
        let mut filters = Vec::new();
        loop {
            self.skip_space();
            let start = self.pos;
            if self.rest().is_empty() {
                return Ok(filters);
            }
            let op = if self.eat("|=") {
                FilterOp::Contains
            } else if self.eat("!=") {
                FilterOp::NotContains
            } else if self.eat("|~") {
                FilterOp::Regex
            } else if self.eat("!~") {
                FilterOp::NotRegex
            } else {
                return Err(self.unsupported_stage(start, !filters.is_empty()));
            };
            self.skip_space();
            let column = self.column(self.pos);
            let value = self.string(op.as_str())?;
            filters.push(LineFilter { op, value, column });
        }
    }

    /// The error for something after the selector that is not a line filter.
    fn unsupported_stage(&self, start: usize, after_filter: bool) -> SelectorError {
        let rest = self.rest();
        if rest.starts_with("|>") || rest.starts_with("!>") {
            return self.error(
                start,
                format!(
                    "\"{}\" is not supported: pattern filters are not; {LINE_FILTERS_ONLY}",
                    &rest[..2]
                ),
            );
        }
        if let Some(after) = rest.strip_prefix('|') {
            let word_at = start + 1 + (after.len() - after.trim_start().len());
            let word = self.name_at(word_at);
            let stage = if word.is_empty() {
                format!("|{}", after.trim_start().chars().next().unwrap_or(' '))
                    .trim_end()
                    .to_string()
            } else {
                format!("| {word}")
            };
            return self.error(
                start,
                format!("{} is not supported: {LINE_FILTERS_ONLY}", quote(&stage)),
            );
        }
        if after_filter && self.name_at(start) == "or" {
            return self.error(
                start,
                "\"or\" is not supported between line filter strings: use one regex filter instead, such as |~ \"a|b\"",
            );
        }
        self.error(
            start,
            format!(
                "expected a line filter (|=, !=, |~, !~) or the end of the selector, found {}",
                self.found(start)
            ),
        )
    }

    /// A Go string literal, after `what` (for messages).
    fn string(&mut self, what: &str) -> Result<String, SelectorError> {
        let start = self.pos;
        match self.peek() {
            Some('"') => self.quoted(),
            Some('`') => {
                let body = &self.src[start + 1..];
                let Some(end) = body.find('`') else {
                    return Err(self.error(start, "unterminated `raw string`: no closing backtick"));
                };
                self.pos = start + 1 + end + 1;
                // Go drops carriage returns from raw strings.
                Ok(body[..end].replace('\r', ""))
            }
            Some('\'') => Err(self.error(
                start,
                format!("single-quoted strings are not supported: expected {STRING_EXPECTED}"),
            )),
            _ => {
                let word = self.name_at(start);
                let found = if !word.is_empty()
                    && self.src[start + word.len()..].trim_start().starts_with('(')
                {
                    format!("\"{word}(\", which is not supported")
                } else {
                    self.found(start)
                };
                Err(self.error(
                    start,
                    format!("expected {STRING_EXPECTED} after {what}, found {found}"),
                ))
            }
        }
    }

    /// A double-quoted Go string with its escapes.
    fn quoted(&mut self) -> Result<String, SelectorError> {
        let open = self.pos;
        let mut bytes = Vec::new();
        let mut chars = self.src[open + 1..].char_indices();
        let at = |i: usize| open + 1 + i;
        loop {
            let Some((i, c)) = chars.next() else {
                return Err(self.error(open, "unterminated string: no closing \""));
            };
            match c {
                '"' => {
                    self.pos = at(i) + 1;
                    break;
                }
                '\n' => {
                    return Err(self.error(
                        at(i),
                        "newline in string: write \\n, or use a `raw string` in backticks",
                    ));
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else {
                        return Err(self.error(open, "unterminated string: no closing \""));
                    };
                    let simple = match e {
                        'a' => Some(0x07),
                        'b' => Some(0x08),
                        'f' => Some(0x0c),
                        'n' => Some(b'\n'),
                        'r' => Some(b'\r'),
                        't' => Some(b'\t'),
                        'v' => Some(0x0b),
                        '\\' => Some(b'\\'),
                        '"' => Some(b'"'),
                        _ => None,
                    };
                    if let Some(b) = simple {
                        bytes.push(b);
                        continue;
                    }
                    let (digits, radix) = match e {
                        'x' => (2, 16),
                        'u' => (4, 16),
                        'U' => (8, 16),
                        '0'..='7' => (2, 8),
                        _ => {
                            return Err(self.error(
                                at(i),
                                format!(
                                    "invalid escape {} in string (expected \\a \\b \\f \\n \\r \\t \\v \\\\ \\\" \\xhh \\ooo \\uhhhh or \\Uhhhhhhhh)",
                                    quote(&format!("\\{e}"))
                                ),
                            ));
                        }
                    };
                    let mut value = if radix == 8 { e as u32 - '0' as u32 } else { 0 };
                    for _ in 0..digits {
                        let d = chars.next().and_then(|(_, d)| d.to_digit(radix));
                        let Some(d) = d else {
                            return Err(self.error(
                                at(i),
                                format!(
                                    "invalid escape in string: \\{e} takes {} {} digits",
                                    if radix == 8 { 3 } else { digits },
                                    if radix == 8 { "octal" } else { "hex" }
                                ),
                            ));
                        };
                        value = value * radix + d;
                    }
                    match e {
                        'u' | 'U' => match char::from_u32(value) {
                            Some(c) => {
                                bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                            }
                            None => {
                                return Err(self.error(
                                    at(i),
                                    format!(
                                        "invalid escape in string: {value:#x} is not a Unicode scalar value"
                                    ),
                                ));
                            }
                        },
                        _ => match u8::try_from(value) {
                            Ok(b) => bytes.push(b),
                            Err(_) => {
                                return Err(self.error(
                                    at(i),
                                    "invalid escape in string: an octal escape is at most \\377",
                                ));
                            }
                        },
                    }
                }
                c => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        String::from_utf8(bytes).map_err(|_| {
            self.error(
                open,
                "string is not valid UTF-8 after its \\x or octal escapes are applied",
            )
        })
    }
}

/// A compiled selector.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    matchers: Vec<CompiledMatcher>,
    filters: Vec<CompiledFilter>,
}

#[derive(Debug, Clone)]
struct CompiledMatcher {
    name: String,
    test: Pattern,
    negated: bool,
}

#[derive(Debug, Clone)]
struct CompiledFilter {
    test: Pattern,
    negated: bool,
}

/// One test of a string.
#[derive(Debug, Clone)]
enum Pattern {
    /// The whole string equals this.
    Equal(String),
    /// The string contains this.
    Contains(String),
    /// The whole string is one of these (an anchored regex of plain
    /// alternatives, such as `a|b`).
    OneOf(Vec<String>),
    /// The string contains one of these (an unanchored regex of plain
    /// alternatives, such as `ERROR|panic`).
    ContainsOneOf(Vec<String>),
    Regex(Regex),
}

/// Characters that make a regex more than plain alternatives.
const REGEX_META: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$',
];

impl Pattern {
    /// A regex, anchored or not. Plain alternatives of non-empty literals
    /// (`ERROR|panic`) are tested as substrings instead: the regex build has
    /// no literal prefilters, so this is much faster on the common case.
    fn new(pattern: &str, anchored: bool) -> Result<Self, String> {
        if !pattern.contains(REGEX_META) {
            let alternatives: Vec<String> = pattern.split('|').map(str::to_string).collect();
            if alternatives.iter().all(|a| !a.is_empty()) {
                return Ok(if anchored {
                    Pattern::OneOf(alternatives)
                } else {
                    Pattern::ContainsOneOf(alternatives)
                });
            }
        }
        compile_regex(pattern, anchored).map(Pattern::Regex)
    }

    fn test(&self, s: &str) -> bool {
        match self {
            Pattern::Equal(v) => s == v,
            Pattern::Contains(v) => s.contains(v.as_str()),
            Pattern::OneOf(vs) => vs.iter().any(|v| v == s),
            Pattern::ContainsOneOf(vs) => vs.iter().any(|v| s.contains(v.as_str())),
            Pattern::Regex(r) => r.is_match(s.as_bytes()),
        }
    }
}

/// Compiles `pattern`, anchored (`^(?:pattern)$`) or not.
///
/// Without Unicode case tables in the build, `(?i)` compiles only with
/// ASCII case folding: a pattern that fails in Unicode mode is tried again
/// with Unicode off (where `.` matches a byte and classes are ASCII).
///
/// # Errors
/// Why the pattern does not compile, in one line, with the character of
/// the pattern where the problem is when the regex parser names one.
pub(crate) fn compile_regex(pattern: &str, anchored: bool) -> Result<Regex, String> {
    let full = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_string()
    };
    match RegexBuilder::new(&full).build() {
        Ok(r) => Ok(r),
        Err(unicode_error) => match RegexBuilder::new(&full).unicode(false).build() {
            Ok(r) => Ok(r),
            Err(_) => Err(regex_reason(pattern, unicode_error)),
        },
    }
}

/// Why a regex does not compile, about the user's own pattern rather than
/// the anchored one: `unclosed group at character 1 of the pattern`.
fn regex_reason(pattern: &str, anchored_error: regex::Error) -> String {
    let e = Regex::new(pattern).err().unwrap_or(anchored_error);
    let reason = describe::regex_reason(&e);
    let regex::Error::Syntax(text) = &e else {
        return reason;
    };
    // The parser's message shows the pattern indented by four spaces and a
    // line of carets under the problem; single-line patterns only.
    let caret = text
        .lines()
        .find(|l| l.trim_start().starts_with('^') && l.trim().chars().all(|c| c == '^'))
        .and_then(|l| l.find('^'))
        .filter(|_| !pattern.contains('\n'));
    match caret {
        Some(at) if at >= 4 => format!("{reason} at character {} of the pattern", at - 4 + 1),
        _ => reason,
    }
}

impl Compiled {
    /// Whether every label matcher holds for `labels`.
    pub(crate) fn matches_labels(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.test.test(labels.get(&m.name).unwrap_or("")) != m.negated)
    }

    /// Whether every line filter holds for `line`.
    pub(crate) fn matches_line(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.test.test(line) != f.negated)
    }
}
