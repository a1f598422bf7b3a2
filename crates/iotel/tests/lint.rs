//! `iotel lint metrics` as a user runs it: exact findings on the fixtures in
//! `tests/fixtures/lint`, agreement with `promtool check metrics` (Debian's
//! `prometheus` package) wherever both check the same thing, exit codes,
//! bodies that are not text, URL inputs and a large input streamed.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `promtool` the comparison runs against.
const PROMTOOL: &str = "/usr/bin/promtool";

/// The codes whose messages are promtool's own text
/// (`iotel_formats::prometheus::lint::PROMTOOL_CODES`).
use iotel_formats::prometheus::lint::PROMTOOL_CODES;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint")
}

/// Runs `iotel lint metrics ARGS` in the fixtures directory, with `stdin`
/// if given: exit code, stdout, stderr.
fn lint(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .arg("lint")
        .arg("metrics")
        .args(args)
        .current_dir(fixtures())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A writer thread, so that a linter printing while it reads cannot
        // deadlock the test.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("{name}.expected"))).unwrap()
}

#[test]
fn each_fixture_gives_exactly_its_expected_findings_and_exit_code() {
    for (file, args, code) in [
        ("clean.prom", &[][..], 0),
        ("conventions.prom", &[][..], 1),
        ("syntax-error.prom", &[][..], 2),
        ("clean.om", &[][..], 0),
        ("bad.om", &["--input-format", "openmetrics"][..], 2),
    ] {
        let mut all = args.to_vec();
        all.push(file);
        let (got_code, out, err) = lint(&all, None);
        assert_eq!(out, expected(file), "{file}: {err}");
        assert_eq!(got_code, code, "{file}: {out}{err}");
    }
}

#[test]
fn the_summary_on_stderr_counts_errors_warnings_lines_and_families() {
    let (_, _, err) = lint(&["conventions.prom"], None);
    assert_eq!(
        err,
        "conventions.prom: 0 error(s), 18 warning(s); 25 lines, 786 bytes, 10 samples, 9 families\n"
    );
}

/// What promtool finds in an exposition: `Err(())` if it cannot parse it,
/// else its `(metric, text)` problems.
fn promtool(input: &[u8]) -> Option<Result<BTreeSet<(String, String)>, ()>> {
    if !Path::new(PROMTOOL).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{PROMTOOL} is missing: install Debian's `prometheus` package (scripts/test does)"
        );
        eprintln!("skipping the promtool comparison: {PROMTOOL} is not installed");
        return None;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Some(Ok(BTreeSet::new())),
        Some(1) => Some(Err(())),
        Some(3) => Some(Ok(text
            .lines()
            .map(|l| {
                let (metric, problem) = l.split_once(' ').unwrap();
                (metric.to_string(), problem.to_string())
            })
            .collect())),
        other => panic!("promtool exited with {other:?}: {text}"),
    }
}

/// What iotel finds of what promtool checks: `Err(())` for a grammar
/// error, else the `(family, message)` of findings with a promtool code.
fn iotel_as_promtool(input: &[u8]) -> Result<BTreeSet<(String, String)>, ()> {
    let (code, out, err) = lint(
        &["--format", "json", "--input-format", "prometheus", "-"],
        Some(input),
    );
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    if code == 2 {
        return Err(());
    }
    Ok(json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| PROMTOOL_CODES.contains(&f["code"].as_str().unwrap()))
        .map(|f| {
            (
                f["family"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect())
}

/// Checks that iotel and promtool agree; the number of promtool's
/// findings (0 when it is not installed or the input does not parse).
fn assert_agrees_with_promtool(what: &str, input: &[u8]) -> usize {
    let Some(theirs) = promtool(input) else {
        return 0;
    };
    let ours = iotel_as_promtool(input);
    assert_eq!(
        ours, theirs,
        "{what}: iotel (left) and promtool (right) differ"
    );
    theirs.map_or(0, |t| t.len())
}

#[test]
fn findings_agree_with_promtool_on_the_text_fixtures() {
    for file in ["clean.prom", "conventions.prom", "syntax-error.prom"] {
        let input = std::fs::read(fixtures().join(file)).unwrap();
        assert_agrees_with_promtool(file, &input);
    }
}

/// One family of each type under each name that some rule looks at, with
/// samples valid for the type, and labels that other rules look at.
fn rule_matrix() -> String {
    let names = [
        "x_total",
        "x_count",
        "x_sum",
        "x_bucket",
        "x",
        "x_milliseconds",
        "x_kilobytes",
        "x_hours",
        "x_kelvins",
        "x_celsius",
        "x_thermometers",
        "x_counter",
        "x_gauge_y",
        "x_histogram",
        "x_summary",
        "x_gauge_histogram",
        "x:y",
        "xY",
        "x_ms",
        "x_sec_y",
        "x_mb",
        "x_s",
        "x_mibibytes",
        "x_bits",
        "x_inches",
        "x_pounds",
        "x_calories",
    ];
    let mut out = String::new();
    let mut i = 0;
    for kind in ["counter", "gauge", "histogram", "summary", "untyped"] {
        for name in names {
            i += 1;
            let f = format!("f{i}_{name}");
            if i % 3 != 0 {
                out.push_str(&format!("# HELP {f} Help.\n"));
            }
            out.push_str(&format!("# TYPE {f} {kind}\n"));
            match kind {
                "histogram" => out.push_str(&format!(
                    "{f}_bucket{{le=\"+Inf\"}} 1\n{f}_sum 1\n{f}_count 1\n"
                )),
                "summary" => out.push_str(&format!(
                    "{f}{{quantile=\"0.5\"}} 1\n{f}_sum 1\n{f}_count 1\n"
                )),
                _ => {
                    let labels = match i % 4 {
                        0 => "{le=\"1\"}",
                        1 => "{quantile=\"1\"}",
                        2 => "{someLabel=\"1\"}",
                        _ => "",
                    };
                    out.push_str(&format!("{f}{labels} 1\n"));
                }
            }
        }
    }
    out
}

#[test]
fn findings_agree_with_promtool_on_every_rule_for_every_type() {
    let input = rule_matrix();
    assert_agrees_with_promtool("the rule matrix", input.as_bytes());
}

#[test]
fn findings_agree_with_promtool_on_what_text_allows() {
    for good in [
        "# HELP foo x\n# TYPE foo counter\nfoo_total 1\n",
        "# TYPE foo COUNTER\nfoo_total 1\n",
        "foo 1\n# HELP foo x\n",
        "foo{a=\"1\",} 1\n",
        "foo{ a = \"1\" } 1\n",
        "foo{a=\"1\"}1\n",
        "foo 1e3\nbar Inf\nbaz -inf\nq nan\n",
        "  # HELP foo x\nfoo 1\n",
        "#HELP foo x\nfoo 1\n",
        "foo\t1\n",
        "# HELP foo x \nfoo{a=\"\\\\ \\n \\\"\"} 1 123\n",
        "",
    ] {
        assert_agrees_with_promtool(good, good.as_bytes());
    }
}

/// A small deterministic generator (an LCG), so that the generated
/// expositions are the same at every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

/// An exposition of random families: names from words the rules look at
/// (at most one unit word each, as promlint picks among several at random),
/// random types, HELP or not, and labels.
fn generated_exposition(rng: &mut Lcg, family_count: usize) -> String {
    const WORDS: &[&str] = &[
        "queue",
        "total",
        "count",
        "sum",
        "bucket",
        "info",
        "gauge",
        "counter",
        "histogram",
        "summary",
        "ms",
        "s",
        "sec",
        "mb",
        "b",
        "d",
        "Temp",
        "rxBytes",
        "a:b",
        "created",
    ];
    const UNITS: &[&str] = &[
        "seconds",
        "milliseconds",
        "kilobytes",
        "bytes",
        "bits",
        "hours",
        "celsius",
        "fahrenheit",
        "kelvins",
        "meters",
        "inches",
        "grams",
        "pounds",
        "joules",
        "calories",
        "volts",
        "amperes",
        "mibibytes",
        "nanoseconds",
    ];
    const LABELS: &[&str] = &["device", "le", "quantile", "someLabel", "__x", "site_id"];
    let mut out = String::new();
    for i in 0..family_count {
        let mut name = format!("f{i}");
        for _ in 0..rng.below(3) {
            name.push('_');
            name.push_str(WORDS[rng.below(WORDS.len())]);
        }
        if rng.below(2) == 0 {
            name.push('_');
            name.push_str(UNITS[rng.below(UNITS.len())]);
        }
        for _ in 0..rng.below(2) {
            name.push('_');
            name.push_str(WORDS[rng.below(WORDS.len())]);
        }
        let kind = ["counter", "gauge", "histogram", "summary", "untyped", ""][rng.below(6)];
        if rng.below(3) != 0 {
            out.push_str(&format!("# HELP {name} Help.\n"));
        }
        if !kind.is_empty() {
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        }
        match kind {
            "histogram" => out.push_str(&format!(
                "{name}_bucket{{le=\"1\"}} 1\n{name}_bucket{{le=\"+Inf\"}} 1\n{name}_sum 1\n{name}_count 1\n"
            )),
            "summary" => out.push_str(&format!(
                "{name}{{quantile=\"0.5\"}} 1\n{name}_sum 1\n{name}_count 1\n"
            )),
            _ => {
                for series in 0..1 + rng.below(3) {
                    let label = LABELS[rng.below(LABELS.len())];
                    out.push_str(&format!("{name}{{{label}=\"v{series}\"}} {series}\n"));
                }
            }
        }
    }
    out
}

#[test]
fn findings_agree_with_promtool_on_generated_expositions() {
    let mut rng = Lcg(7);
    let mut compared = 0;
    for run in 0..60 {
        let input = generated_exposition(&mut rng, 12);
        compared += assert_agrees_with_promtool(
            &format!("generated exposition {run}:\n{input}"),
            input.as_bytes(),
        );
    }
    // The generator reaches the rules: hundreds of findings were compared.
    if Path::new(PROMTOOL).exists() {
        assert!(compared > 400, "only {compared} findings compared");
    }
    eprintln!("{compared} promtool findings compared");
}

#[test]
fn grammar_errors_agree_with_promtool_on_what_is_not_valid() {
    for bad in [
        "foo{a=\"1\" 2\n",
        "foo 1 2 3\n",
        "# TYPE foo counter\n# TYPE foo counter\nfoo 1\n",
        "foo{a=\"1\",a=\"2\"} 1\n",
        "foo bar\n",
        "9foo 1\n",
        "# TYPE foo blah\n",
        "# TYPE foo info\nfoo 1\n",
        "# TYPE foo gauge \nfoo 1\n",
        "foo 1 \n",
        "foo 1\r\n",
        "foo{a=\"x\\ay\"} 1\n",
        "# HELP foo a\\\"b\nfoo 1\n",
        "# HELP foo a\\tb\nfoo 1\n",
        "foo 0x1F\n",
        "foo 1.5 1.5\n",
    ] {
        assert_agrees_with_promtool(bad, bad.as_bytes());
    }
}

#[test]
fn a_missing_input_or_a_bad_rules_file_exits_2_with_a_clear_message() {
    let (code, out, err) = lint(&["no-such-file.prom"], None);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "no-such-file.prom: cannot open the input: No such file or directory (os error 2)\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.toml");
    std::fs::write(&rules, "[[class]]\nname = \"a\"\npattern = [\"x\"]\n").unwrap();
    let (code, _, err) = lint(&["--rules", rules.to_str().unwrap(), "clean.prom"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown field `pattern`, expected `name` or `patterns`"),
        "{err}"
    );
}

#[test]
fn json_output_describes_each_family_with_classes_from_the_rules_file() {
    let (code, out, err) = lint(
        &["--format", "json", "--rules", "rules.toml", "clean.om"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["families"],
        serde_json::json!([
            {"name": "device_uptime_seconds", "description": "Seconds since the device booted.", "unit": "seconds", "type": "counter", "class": "other", "samples": 2, "line": 1},
            {"name": "sensor_humidity_ratio", "description": "Relative humidity.", "unit": "ratio", "type": "gauge", "class": "climate", "samples": 1, "line": 6},
            {"name": "radio_rssi", "description": "Received signal strength (dBm).", "unit": null, "type": "gauge", "class": "radio", "samples": 1, "line": 10},
            {"name": "build", "description": "Firmware build.", "unit": null, "type": "info", "class": "other", "samples": 1, "line": 13},
        ])
    );
    assert_eq!(json["summary"]["exit_code"], 0);
    // The built-in rules.
    let (_, out, _) = lint(&["--format", "json", "clean.prom"], None);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let classes: Vec<_> = json["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["class"].as_str().unwrap()))
        .collect();
    assert_eq!(
        classes,
        [
            ("device_uptime_seconds_total", "device"),
            ("sensor_temperature_celsius", "sensor"),
            ("uplink_rx_bytes_total", "network"),
            ("publish_duration_seconds", "application"),
            ("rpc_latency_seconds", "application"),
        ]
    );
}

#[test]
fn max_label_values_sets_the_high_cardinality_threshold_but_buckets_and_quantiles_are_shape() {
    let (code, out, _) = lint(&["--max-label-values", "1", "clean.prom"], None);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "clean.prom:7:40: high-cardinality: label \"sensor\" has more than 1 distinct values in this family\n"
        )
    );
}

#[test]
fn auto_reads_openmetrics_from_a_file_that_ends_with_eof() {
    // As text, `bad.om` has no grammar errors, only conventions.
    let (code, _, _) = lint(&["bad.om"], None);
    assert_eq!(code, 1);
    let (code, out, _) = lint(&["-"], Some(b"# TYPE a gauge\n# HELP a x\na 1\n# EOF\n"));
    assert_eq!((code, out.as_str()), (0, ""));
    // The same, cut off before `# EOF`, is read as text: clean too.
    let (code, out, _) = lint(&["-"], Some(b"# TYPE a gauge\n# HELP a x\na 1\n"));
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = lint(
        &["--input-format", "openmetrics", "-"],
        Some(b"# TYPE a gauge\n# HELP a x\na 1\n"),
    );
    assert_eq!(
        (code, out.as_str()),
        (
            2,
            "<stdin>:4:1: missing-eof: expected '# EOF' at the end of the exposition\n"
        )
    );
}

#[test]
fn a_binary_body_is_a_grammar_error_not_a_crash() {
    // The linter's own executable: not text, with NUL bytes and invalid
    // UTF-8 everywhere.
    let binary = std::fs::read(env!("CARGO_BIN_EXE_iotel")).unwrap();
    let body = &binary[..binary.len().min(4 << 20)];
    let (code, out, err) = lint(&["-"], Some(body));
    assert_eq!(code, 2, "{err}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("<stdin>:1:"), "{first}");
    assert!(
        first.ends_with(": not-utf8: invalid UTF-8: the exposition must be UTF-8 text")
            || first.ends_with(": not-text: NUL byte: the exposition must be text"),
        "{first}"
    );
    assert!(out.lines().count() <= 10_000, "findings are capped");
}

#[test]
fn an_input_past_max_bytes_is_cut_with_a_too_large_error() {
    let (code, out, _) = lint(
        &["--max-bytes", "40", "-"],
        Some(b"# HELP a x\n# TYPE a gauge\na 1\na{b=\"1\"} 2\na{b=\"2\"} 3\n"),
    );
    assert_eq!(code, 2);
    assert_eq!(
        out,
        "<stdin>:4:1: too-large: the input is larger than 40 bytes (--max-bytes); the rest is not read\n"
    );
}

#[test]
fn a_url_is_fetched_and_linted() {
    let addr = util::serve_exposition("# TYPE up gauge\nup 1\n");
    let url = format!("http://{addr}/metrics");
    let (code, out, err) = lint(&[&url], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, format!("{url}:1:8: no-help: no help text\n"));
}

/// Peak resident memory of a running process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_input_is_streamed_in_bounded_memory() {
    // 64 MiB of a valid exposition: 1.16 million series in families of 100.
    let mut child = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["lint", "metrics", "--input-format", "prometheus", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut written = 0usize;
    let mut family = 0;
    while written < 64 << 20 {
        family += 1;
        let mut block = format!(
            "# HELP app_queue_{family}_depth Depth of a queue.\n# TYPE app_queue_{family}_depth gauge\n"
        );
        for series in 0..100 {
            block.push_str(&format!(
                "app_queue_{family}_depth{{queue=\"q{series}\",site=\"greenhouse-7\"}} {series}\n"
            ));
        }
        stdin.write_all(block.as_bytes()).unwrap();
        written += block.len();
    }
    // The binary alone takes about 11 MiB; the parser's caches and the
    // metadata of the 11,642 families some more, none of it the input's size.
    // Still running (it waits for the end of stdin): its peak so far is
    // that of the whole input.
    let peak = peak_rss_kib(child.id());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.starts_with(&format!(
            "<stdin>: 0 error(s), 0 warning(s); {} lines, {written} bytes",
            family * 102
        )),
        "{err}"
    );
    assert!(
        peak < 40 * 1024,
        "peak RSS {peak} KiB for a {written}-byte input"
    );
}
