//! The docs' examples as a user copies them: every ```toml block of a page
//! in `docs/` is a whole config that `iotel config check` accepts, and
//! every ```toml block of the README is one or a part of one: a component
//! or two, completed here with stand-ins for the inputs it names and a sink
//! for what nothing takes, then checked the same way. Blocks of other files
//! (an RBAC policy, lint rules) are fenced ```toml with a title and are not
//! configs.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// A fenced code block of a markdown page: the line its fence opens on
/// (1-based) and its text.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    line: usize,
    text: String,
}

/// The ```toml blocks of a markdown text, in order. Fences may be indented
/// (inside a list item): the block's lines lose the fence's indentation.
fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```")
                    && info.trim() == "toml"
                {
                    open = Some((i + 1, indent, String::new()));
                }
            }
            Some((start, fence_indent, text)) => {
                if trimmed.starts_with("```") {
                    blocks.push(Block {
                        line: *start,
                        text: std::mem::take(text),
                    });
                    open = None;
                } else {
                    let cut = line
                        .char_indices()
                        .take_while(|(n, c)| *n < *fence_indent && *c == ' ')
                        .count();
                    text.push_str(&line[cut..]);
                    text.push('\n');
                }
            }
        }
    }
    blocks
}

/// Runs `iotel config check` on every toml block of `doc` (relative to the
/// repository root); fails naming each block that does not check out, with
/// the checker's output.
fn check_doc(doc: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(doc)).unwrap();
    let blocks = toml_blocks(&text);
    assert!(!blocks.is_empty(), "{doc} has no toml example");
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for b in &blocks {
        let file = tmp.path().join(format!("line-{}.toml", b.line));
        std::fs::write(&file, &b.text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
            .args(["config", "check", "--config"])
            .arg(&file)
            .env("IOTEL_DATA_DIR", tmp.path().join("data"))
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{doc}:{}: the example does not check out:\n{}{}\n--- the example:\n{}",
                b.line,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                b.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn toml_blocks_are_found_with_their_line_and_other_blocks_are_not() {
    let md = "# Title\n\n```toml\na = 1\n```\n\ntext\n\n```sh\nb = 2\n```\n\n- item\n\n  ```toml\n  [c]\n  d = \"x\"\n  ```\n```toml\n```\n";
    assert_eq!(
        toml_blocks(md),
        [
            Block {
                line: 3,
                text: "a = 1\n".into()
            },
            Block {
                line: 15,
                text: "[c]\nd = \"x\"\n".into()
            },
            Block {
                line: 19,
                text: String::new()
            },
        ]
    );
}

#[test]
fn every_toml_example_of_every_page_in_docs_checks_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut pages: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(
        pages.contains(&"device-lifecycle.md".to_string()),
        "{pages:?}"
    );
    for page in pages {
        check_doc(&format!("docs/{page}"));
    }
}

/// Runs `iotel config check` on `config`, written in `dir`: the checker's
/// output when it refuses it.
fn config_check(dir: &Path, name: &str, config: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("IOTEL_DATA_DIR", dir.join("data"))
        .env("IOTEL_REDACT_SALT", "docs-check")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// What stands in for an input a fragment names but does not declare.
#[derive(Debug, Clone, Copy)]
enum StandIn {
    Metrics,
    Logs,
    /// Every signal: a native receiver.
    All,
}

/// The fragment made whole: `stand_ins` for the ids it takes as inputs
/// without declaring them (in order of first mention), a source when it
/// has none, and a console sink taking what nothing else takes when it
/// has no sink. `None` when it is not TOML.
fn complete(fragment: &str, stand_ins: &[StandIn]) -> Option<String> {
    let table: toml::Table = fragment.parse().ok()?;
    let section = |name: &str| {
        table
            .get(name)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (sources, transforms, sinks) =
        (section("sources"), section("transforms"), section("sinks"));
    let declared: BTreeSet<&String> = sources.keys().chain(transforms.keys()).collect();
    let mut missing: Vec<String> = Vec::new();
    let mut taken = BTreeSet::new();
    for c in transforms.values().chain(sinks.values()) {
        let inputs = c.get("inputs").and_then(toml::Value::as_array);
        for input in inputs.into_iter().flatten().filter_map(toml::Value::as_str) {
            // `id`, `id.metrics` or a named output `id.name`.
            let base = input.split('.').next().unwrap_or(input).to_string();
            if declared.contains(&input.to_string()) || declared.contains(&base) {
                taken.insert(base);
            } else if !missing.contains(&base) {
                missing.push(base);
            }
        }
    }
    let mut text = fragment.to_string();
    for (id, stand_in) in missing.iter().zip(stand_ins.iter().cycle()) {
        text.push_str(&match stand_in {
            StandIn::Metrics => {
                format!("\n[sources.{id}]\ntype = \"generator\"\nsignal = \"metric\"\n")
            }
            StandIn::Logs => format!("\n[sources.{id}]\ntype = \"generator\"\nsignal = \"log\"\n"),
            StandIn::All => format!(
                "\n[sources.{id}]\ntype = \"iotel\"\naddress = \"127.0.0.1:{}\"\n",
                free_port()
            ),
        });
    }
    if sources.is_empty() && missing.is_empty() {
        text.push_str("\n[sources.docs_check_source]\ntype = \"generator\"\nsignal = \"log\"\n");
        taken.insert("docs_check_source".into());
    }
    if sinks.is_empty() {
        let mut untaken: Vec<String> = declared
            .iter()
            .map(|s| s.to_string())
            .filter(|id| !taken.contains(id))
            .collect();
        if untaken.is_empty() {
            untaken.push("docs_check_source".into());
        }
        text.push_str(&format!(
            "\n[sinks.docs_check_sink]\ntype = \"console\"\ninputs = {untaken:?}\n"
        ));
    }
    Some(text)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The files the README's examples name, in `dir`: a development PKI made
/// by `iotel certs`, copied to the names the examples use, and small valid
/// files for the rest. Absolute paths of a device are mapped into `dir` by
/// [`ABSOLUTE`].
fn readme_fixtures(dir: &Path) {
    let certs = dir.join("certs");
    let iotel = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(&certs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    iotel(&["init"]);
    iotel(&["issue-server", "--dns", "gw-1"]);
    iotel(&["issue-server", "--dns", "dev-1"]);
    iotel(&["issue-device", "--device-id", "dev-1"]);
    iotel(&["issue-gateway", "--gateway-id", "site-1"]);
    for (from, to) in [
        ("certs/ca.pem", "ca.pem"),
        ("certs/ca.pem", "devices-ca.pem"),
        ("certs/servers/gw-1.pem", "cloud.pem"),
        ("certs/servers/gw-1.key", "cloud.key"),
        ("certs/servers/gw-1.pem", "gateway.pem"),
        ("certs/servers/gw-1.key", "gateway.key"),
        ("certs/gateways.jwks", "jwks.json"),
    ] {
        std::fs::copy(dir.join(from), dir.join(to)).unwrap();
    }
    for (file, text) in [
        ("revoked.txt", "# revoked device ids and serials\n"),
        (
            "devices.csv",
            "device_id,site,line\ndev-42,plant-7,line-3\n",
        ),
        ("schemas/device-log.json", "{\"type\": \"object\"}\n"),
        ("secrets/mqtt", "s3cret\n"),
        ("log/.keep", ""),
        ("lib/.keep", ""),
        (
            "policy.toml",
            "[[grant]]\nrole = \"gateway\"\ntenants = [\"acme\"]\nsignals = [\"*\"]\nactions = [\"write\"]\n",
        ),
    ] {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Absolute paths in the README's examples and where the check puts them.
const ABSOLUTE: [(&str, &str); 3] = [
    ("/run/secrets/", "secrets/"),
    ("/var/log/iotel/", "log/"),
    ("/var/lib/iotel/", "lib/"),
];

#[test]
fn every_toml_example_of_the_readme_checks_out_as_a_whole_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = toml_blocks(&text);
    assert!(blocks.len() > 30, "{} blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    readme_fixtures(dir.path());
    let mut failures = Vec::new();
    for b in &blocks {
        let mut fragment = b.text.clone();
        for (from, to) in ABSOLUTE {
            fragment = fragment.replace(from, &dir.path().join(to).display().to_string());
        }
        let name = format!("readme-{}.toml", b.line);
        // Each combination of stand-ins for up to three missing inputs;
        // the first the checker takes wins.
        use StandIn::*;
        let mut last = String::new();
        let mut passed = false;
        'tries: for a in [Metrics, Logs, All] {
            for b2 in [Metrics, Logs, All] {
                for c in [Metrics, Logs, All] {
                    let Some(config) = complete(&fragment, &[a, b2, c]) else {
                        last = "not TOML".into();
                        break 'tries;
                    };
                    match config_check(dir.path(), &name, &config) {
                        Ok(()) => {
                            passed = true;
                            break 'tries;
                        }
                        Err(e) => last = format!("{e}--- as checked:\n{config}"),
                    }
                }
            }
        }
        if !passed {
            failures.push(format!("README.md:{}: {last}", b.line));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} README examples do not check out:\n\n{}",
        failures.len(),
        blocks.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_fragment_is_completed_with_stand_ins_and_a_sink() {
    let config = complete(
        "[transforms.tidy]\ntype = \"relabel\"\ninputs = [\"scrape\"]\n",
        &[StandIn::Metrics],
    )
    .unwrap();
    assert_eq!(
        config,
        "[transforms.tidy]\ntype = \"relabel\"\ninputs = [\"scrape\"]\n\n[sources.scrape]\ntype = \
         \"generator\"\nsignal = \"metric\"\n\n[sinks.docs_check_sink]\ntype = \"console\"\ninputs = \
         [\"tidy\"]\n"
    );
    assert_eq!(complete("a = [", &[]), None);
}
