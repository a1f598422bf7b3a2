//! `iotel lint metrics`: checks an exposition (a file, stdin or a URL)
//! against the OpenMetrics grammar and naming conventions
//! (`iotel_formats::prometheus::lint`), and prints the findings.

use clap::{Args, Subcommand, ValueEnum};
use iotel_formats::prometheus::Format;
use iotel_formats::prometheus::lint::{LintOptions, Linter, Report, Severity, SignalClasses};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit code when the input is not valid, or cannot be read.
const EXIT_INVALID: u8 = 2;

/// How much is read at a time.
const CHUNK_BYTES: usize = 256 << 10;

/// How much of an input's start (and a file's end) `auto` looks at.
const SNIFF_BYTES: usize = 64 << 10;

#[derive(Debug, Subcommand)]
pub enum LintCommand {
    /// Check an exposition (Prometheus text or OpenMetrics) for grammar and
    /// naming conventions. Exit code 0: clean; 1: convention findings only;
    /// 2: the input is not valid in its format (or cannot be read).
    Metrics(LintMetricsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// OpenMetrics 1.0 text.
    Openmetrics,
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// From the Content-Type of a URL; for a file or stdin, OpenMetrics if
    /// it ends with `# EOF` or has a `# UNIT` line near its start.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// `FILE:LINE:COL: code: message`, one finding a line.
    Text,
    /// Findings and a descriptor per metric family.
    Json,
}

#[derive(Debug, Args)]
pub struct LintMetricsArgs {
    /// A file, `-` for stdin, or an http(s):// URL.
    pub input: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub input_format: InputFormat,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Signal-class rules (TOML); without it the built-in rules.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// More distinct values than this for one label of one family is
    /// flagged as high cardinality.
    #[arg(long, default_value_t = iotel_formats::prometheus::lint::DEFAULT_MAX_LABEL_VALUES)]
    pub max_label_values: usize,
    /// Inputs are read up to this many bytes; past it, a `too-large`
    /// error ends the lint.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_bytes: u64,
}

/// A rules file: classes tried in order, the first with a matching pattern
/// wins; `fallback` for the rest.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default = "default_fallback")]
    fallback: String,
    #[serde(default, rename = "class")]
    classes: Vec<ClassRule>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassRule {
    name: String,
    patterns: Vec<String>,
}

fn default_fallback() -> String {
    iotel_formats::prometheus::lint::DEFAULT_FALLBACK.to_string()
}

/// Reads a rules file into signal classes.
fn load_rules(path: &Path) -> Result<SignalClasses, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the rules file: {e}", path.display()))?;
    let file: RulesFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut problems = Vec::new();
    for (i, class) in file.classes.iter().enumerate() {
        if class.name.is_empty() {
            problems.push(format!(
                "{}: class[{i}].name: must not be empty",
                path.display()
            ));
        }
        if class.patterns.is_empty() {
            problems.push(format!(
                "{}: class[{i}].patterns: give at least one pattern",
                path.display()
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(SignalClasses::new(
        file.classes
            .into_iter()
            .map(|c| (c.name, c.patterns))
            .collect(),
        file.fallback,
    ))
}

pub fn run(command: LintCommand) -> ExitCode {
    let LintCommand::Metrics(args) = command;
    match lint_metrics(&args) {
        Ok(report) => {
            print_report(&args, &report);
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("{}: {e}", display_name(&args.input));
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn display_name(input: &str) -> &str {
    if input == "-" { "<stdin>" } else { input }
}

fn print_report(args: &LintMetricsArgs, report: &Report) {
    let name = display_name(&args.input);
    match args.format {
        OutputFormat::Json => {
            // Not `println!`: a reader that goes away (`| head`) is no panic.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", report.to_json(name));
        }
        OutputFormat::Text => {
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for f in &report.findings {
                let _ = writeln!(
                    out,
                    "{name}:{}:{}: {}: {}",
                    f.line,
                    f.column,
                    f.code,
                    f.message.replace('\n', "\\n")
                );
            }
            let _ = out.flush();
            let more = if report.findings_not_kept > 0 {
                format!(" ({} more not shown)", report.findings_not_kept)
            } else {
                String::new()
            };
            let notes = report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Note)
                .count();
            eprintln!(
                "{name}: {} error(s), {} warning(s){}{more}; {} lines, {} bytes, {} samples, {} families",
                report.errors,
                report.warnings,
                if notes > 0 {
                    format!(", {notes} note(s)")
                } else {
                    String::new()
                },
                report.lines,
                report.bytes,
                report.samples,
                report.families.len()
            );
        }
    }
}

fn options(args: &LintMetricsArgs, classes: &SignalClasses, format: Format) -> LintOptions {
    let mut options = LintOptions::new(format);
    options.max_label_values = args.max_label_values;
    options.classes = classes.clone();
    options
}

fn lint_metrics(args: &LintMetricsArgs) -> Result<Report, String> {
    // Rules are read first so that a bad rules file fails before any input.
    let classes = match &args.rules {
        Some(path) => load_rules(path)?,
        None => SignalClasses::default(),
    };
    if args.input.starts_with("http://") || args.input.starts_with("https://") {
        return lint_url(args, &classes);
    }
    if args.input == "-" {
        let stdin = std::io::stdin();
        return lint_reader(args, &classes, stdin.lock(), None);
    }
    let path = Path::new(&args.input);
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open the input: {e}"))?;
    let tail_says_openmetrics = args.input_format == InputFormat::Auto && file_ends_with_eof(path);
    lint_reader(args, &classes, file, Some(tail_says_openmetrics))
}

/// Whether a file's last line is `# EOF`.
fn file_ends_with_eof(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return false;
    };
    let start = len.saturating_sub(16);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return false;
    }
    let mut tail = Vec::new();
    if file.read_to_end(&mut tail).is_err() {
        return false;
    }
    ends_with_eof(&tail)
}

fn ends_with_eof(b: &[u8]) -> bool {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b == b"# EOF" || b.ends_with(b"\n# EOF")
}

/// `auto` for a file or stdin: what its start (and, for a file, its end)
/// looks like.
fn sniff(start: &[u8], whole: bool, tail_says_openmetrics: bool) -> Format {
    let has_unit = start.starts_with(b"# UNIT ") || start.windows(8).any(|w| w == b"\n# UNIT ");
    if tail_says_openmetrics || has_unit || (whole && ends_with_eof(start)) {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

fn lint_reader(
    args: &LintMetricsArgs,
    classes: &SignalClasses,
    mut reader: impl Read,
    tail_says_openmetrics: Option<bool>,
) -> Result<Report, String> {
    // The first bytes decide `auto`, then go to the linter like the rest.
    let mut first = Vec::with_capacity(SNIFF_BYTES);
    let mut whole = false;
    while first.len() < SNIFF_BYTES {
        let mut buf = [0u8; 8192];
        let want = buf.len().min(SNIFF_BYTES - first.len());
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                whole = true;
                break;
            }
            Ok(n) => first.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the input: {e}")),
        }
    }
    let format = match args.input_format {
        InputFormat::Openmetrics => Format::OpenMetrics,
        InputFormat::Prometheus => Format::Text,
        InputFormat::Auto => sniff(&first, whole, tail_says_openmetrics.unwrap_or(false)),
    };
    let mut linter = Linter::new(options(args, classes, format));
    let mut read: u64 = 0;
    if !feed_limited(&mut linter, &first, &mut read, args.max_bytes) || whole {
        return Ok(linter.finish());
    }
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !feed_limited(&mut linter, &buf[..n], &mut read, args.max_bytes) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                linter.input_error(
                    "read-error",
                    format!("cannot read the rest of the input: {e}"),
                );
                break;
            }
        }
    }
    Ok(linter.finish())
}

/// Feeds a chunk unless the input grew past `max`; `false` when it did
/// (the linter then has a `too-large` error).
fn feed_limited(linter: &mut Linter, chunk: &[u8], read: &mut u64, max: u64) -> bool {
    let room = max.saturating_sub(*read);
    let take = usize::try_from(room).unwrap_or(usize::MAX).min(chunk.len());
    linter.feed(&chunk[..take]);
    *read += take as u64;
    if take < chunk.len() {
        linter.input_error(
            "too-large",
            format!("the input is larger than {max} bytes (--max-bytes); the rest is not read"),
        );
        return false;
    }
    true
}

fn lint_url(args: &LintMetricsArgs, classes: &SignalClasses) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(lint_url_async(args, classes))
}

/// How long a URL may take to answer with its headers, and at most between
/// two parts of its body.
const URL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn lint_url_async(args: &LintMetricsArgs, classes: &SignalClasses) -> Result<Report, String> {
    use hyper::body::Body as _;
    use iotel_components::http_util;
    let uri = http_util::parse_http_url(&args.input)?;
    let request = http::Request::get(uri)
        .header(http::header::USER_AGENT, http_util::USER_AGENT)
        .header(
            http::header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(http_util::Body::default())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = tokio::time::timeout(URL_TIMEOUT, http_util::client().request(request))
        .await
        .map_err(|_| format!("no answer within {}s", URL_TIMEOUT.as_secs()))?
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match args.input_format {
        InputFormat::Openmetrics => Format::OpenMetrics,
        InputFormat::Prometheus => Format::Text,
        InputFormat::Auto => Format::from_content_type(content_type),
    };
    let mut linter = Linter::new(options(args, classes, format));
    let mut body = response.into_body();
    let mut read: u64 = 0;
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        let Ok(frame) = tokio::time::timeout(URL_TIMEOUT, next).await else {
            linter.input_error(
                "read-error",
                format!(
                    "the body stalled: nothing for {}s; the rest is not read",
                    URL_TIMEOUT.as_secs()
                ),
            );
            break;
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref()
                    && !feed_limited(&mut linter, data, &mut read, args.max_bytes)
                {
                    break;
                }
            }
            Some(Err(e)) => {
                linter.input_error("read-error", format!("the body broke off: {e}"));
                break;
            }
        }
    }
    Ok(linter.finish())
}
