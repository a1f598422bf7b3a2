//! The process's own logs, on stderr: text for people, or one JSON object a
//! line for log collectors (`--log-format`, `$IOTEL_LOG_FORMAT`), filtered
//! per module by `--log-level` / `$IOTEL_LOG`.

use crate::cli::LogFormat;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, Registry};

const LEVELS: &str = "off, error, warn, info, debug, trace";

/// Installs the process's subscriber. A filter directive that does not parse
/// is ignored with a warning (in the chosen format, whatever the filter
/// says), and the others apply.
///
/// # Errors
///
/// When `format` is JSON and this build has no JSON logs.
pub fn init(spec: Option<&str>, format: LogFormat) -> Result<(), String> {
    let (filter, problems) = parse_filter(spec.unwrap_or(""));
    if !problems.is_empty() {
        // Unfiltered, so an `error`-only filter still shows why it was
        // partly ignored.
        let unfiltered = Registry::default().with(layer(format)?);
        tracing::subscriber::with_default(unfiltered, || {
            for p in &problems {
                tracing::warn!("log filter (--log-level / IOTEL_LOG): {p}");
            }
        });
    }
    Registry::default()
        .with(layer(format)?.with_filter(filter))
        .init();
    Ok(())
}

fn layer(format: LogFormat) -> Result<Box<dyn Layer<Registry> + Send + Sync>, String> {
    use std::io::IsTerminal;
    match format {
        LogFormat::Text => Ok(tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()),
        #[cfg(feature = "log-json")]
        LogFormat::Json => Ok(tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed()),
        #[cfg(not(feature = "log-json"))]
        LogFormat::Json => Err(
            "--log-format json: this build of iotel has no JSON logs (built without the \
             `log-json` feature); use --log-format text or a build with `--features log-json`"
                .to_string(),
        ),
    }
}

/// Reads a filter such as `info,iotel_components::sinks=debug`: directives
/// separated by commas, each a bare level (the default for every target) or
/// `TARGET=LEVEL` (a module path and everything under it). Without a bare
/// level, targets not named log nothing; an empty spec, or one of which
/// nothing parses, logs at `info`. Returns the filter of the directives
/// that parse and, for each that does not, what was wrong with it.
pub fn parse_filter(spec: &str) -> (Targets, Vec<String>) {
    let mut targets = Targets::new();
    let mut good = 0;
    let mut problems = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match parse_directive(directive) {
            Ok((None, level)) => {
                targets = targets.with_default(level);
                good += 1;
            }
            Ok((Some(target), level)) => {
                targets = targets.with_target(target, level);
                good += 1;
            }
            Err(why) => problems.push(format!("ignoring {directive:?}: {why}")),
        }
    }
    if good == 0 {
        targets = Targets::new().with_default(LevelFilter::INFO);
        if !problems.is_empty() {
            problems.push("logging at info".to_string());
        }
    }
    (targets, problems)
}

fn parse_directive(d: &str) -> Result<(Option<&str>, LevelFilter), String> {
    let Some((target, level)) = d.split_once('=') else {
        return level_of(d)
            .map(|l| (None, l))
            .ok_or_else(|| format!("expected a level ({LEVELS}) or TARGET=LEVEL"));
    };
    let target = target.trim();
    if target.is_empty() {
        return Err("expected TARGET=LEVEL, the target is empty".to_string());
    }
    if target.contains(|c: char| c.is_whitespace() || "[]{}=".contains(c)) {
        return Err(format!(
            "expected a module path such as iotel_components::sinks before '=', not {target:?}"
        ));
    }
    let level = level.trim();
    level_of(level)
        .map(|l| (Some(target), l))
        .ok_or_else(|| format!("{level:?} is not a level ({LEVELS})"))
}

fn level_of(s: &str) -> Option<LevelFilter> {
    // LevelFilter also reads "" (as error) and digits: neither is documented
    // here, so neither is taken.
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn a_default_level_and_a_module_level_both_apply() {
        let (t, problems) = parse_filter("info,iotel_components::sinks=debug");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(enabled(&t, "iotel_components::sinks::loki", Level::DEBUG));
        assert!(!enabled(
            &t,
            "iotel_components::sources::syslog",
            Level::DEBUG
        ));
        assert!(enabled(
            &t,
            "iotel_components::sources::syslog",
            Level::INFO
        ));
        assert!(!enabled(&t, "hyper", Level::DEBUG));
        assert!(enabled(&t, "iotel", Level::INFO));
    }

    #[test]
    fn levels_read_in_any_case_with_spaces_around_directives() {
        let (t, problems) = parse_filter(" WARN , iotel_engine = Trace ");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!enabled(&t, "iotel", Level::INFO));
        assert!(enabled(&t, "iotel", Level::WARN));
        assert!(enabled(&t, "iotel_engine::topology", Level::TRACE));
    }

    #[test]
    fn an_empty_filter_logs_at_info_without_a_warning() {
        let (t, problems) = parse_filter("");
        assert!(problems.is_empty());
        assert!(enabled(&t, "iotel", Level::INFO));
        assert!(!enabled(&t, "iotel", Level::DEBUG));
    }

    #[test]
    fn only_targets_named_log_when_no_default_level_is_given() {
        let (t, problems) = parse_filter("iotel_engine=debug");
        assert!(problems.is_empty());
        assert!(enabled(&t, "iotel_engine", Level::DEBUG));
        assert!(!enabled(&t, "iotel", Level::ERROR));
    }

    #[test]
    fn a_bad_directive_is_ignored_with_a_reason_and_the_good_ones_apply() {
        let (t, problems) = parse_filter("warn,iotel_components=loud,verbose,=debug,a b=info");
        assert_eq!(
            problems,
            [
                "ignoring \"iotel_components=loud\": \"loud\" is not a level (off, error, warn, info, debug, trace)",
                "ignoring \"verbose\": expected a level (off, error, warn, info, debug, trace) or TARGET=LEVEL",
                "ignoring \"=debug\": expected TARGET=LEVEL, the target is empty",
                "ignoring \"a b=info\": expected a module path such as iotel_components::sinks before '=', not \"a b\"",
            ]
        );
        assert!(enabled(&t, "iotel_components", Level::WARN));
        assert!(!enabled(&t, "iotel_components", Level::INFO));
    }

    #[test]
    fn a_filter_of_which_nothing_parses_logs_at_info_and_says_so() {
        let (t, problems) = parse_filter("loud,x=");
        assert_eq!(
            problems,
            [
                "ignoring \"loud\": expected a level (off, error, warn, info, debug, trace) or TARGET=LEVEL",
                "ignoring \"x=\": \"\" is not a level (off, error, warn, info, debug, trace)",
                "logging at info",
            ]
        );
        assert!(enabled(&t, "iotel", Level::INFO));
        assert!(!enabled(&t, "iotel", Level::DEBUG));
    }
}
