//! The docs' examples as a user copies them: every ```toml block of a page
//! in `docs/` is a whole config that `iotel config check` accepts.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

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
fn every_toml_example_of_the_device_lifecycle_conventions_checks_out() {
    check_doc("docs/device-lifecycle.md");
}
