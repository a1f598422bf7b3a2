//! What ships beside the binary: the systemd units in `packaging/systemd/`
//! (run a role the binary has, with the directories systemd makes, hardened,
//! and accepted by `systemd-analyze verify`) and `iotel completions` (the
//! `completions` feature).

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const ROLES: [&str; 3] = ["agent", "gateway", "cloud"];

fn unit_path(role: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/systemd")
        .join(format!("iotel-{role}.service"))
}

fn unit(role: &str) -> String {
    let path = unit_path(role);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values `key` is set to (not commented out), in order.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn one<'a>(unit: &'a str, key: &str) -> &'a str {
    match values(unit, key)[..] {
        [v] => v,
        ref other => panic!("{key}: expected one value, found {other:?}"),
    }
}

#[test]
fn each_unit_runs_its_role_with_the_config_and_state_directories_systemd_makes() {
    for role in ROLES {
        let unit = unit(role);
        assert_eq!(
            one(&unit, "ExecStart"),
            format!(
                "/usr/local/bin/iotel {role} --config /etc/iotel/{role}.toml \
                 --data-dir /var/lib/iotel/{role}"
            )
        );
        // ConfigurationDirectory=iotel is /etc/iotel, StateDirectory=iotel/ROLE
        // is /var/lib/iotel/ROLE: the paths ExecStart names.
        assert_eq!(one(&unit, "ConfigurationDirectory"), "iotel");
        assert_eq!(one(&unit, "StateDirectory"), format!("iotel/{role}"));
        // The ${VAR}s of the config, optional ('-').
        assert_eq!(
            one(&unit, "EnvironmentFile"),
            format!("-/etc/iotel/{role}.env")
        );
        // iotel does not send sd_notify's READY=1.
        assert_eq!(one(&unit, "Type"), "exec");
        // The binary takes these arguments: they parse, and reach the role's
        // own help.
        let args: Vec<&str> = one(&unit, "ExecStart").split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Usage: iotel {role} [OPTIONS]")),
            "{stdout}"
        );
    }
}

#[test]
fn each_unit_is_hardened_and_leaves_the_agent_its_sensors() {
    for role in ROLES {
        let unit = unit(role);
        for (key, value) in [
            ("DynamicUser", "yes"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("RestrictNamespaces", "yes"),
            ("LockPersonality", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("CapabilityBoundingSet", ""),
            ("AmbientCapabilities", ""),
        ] {
            assert_eq!(one(&unit, key), value, "iotel-{role}.service: {key}");
        }
        assert_eq!(
            values(&unit, "SystemCallFilter"),
            ["@system-service", "~@privileged @resources"],
            "iotel-{role}.service"
        );
        // /sys and /proc stay readable: nothing hides them.
        for key in ["ProcSubset", "InaccessiblePaths", "TemporaryFileSystem"] {
            assert_eq!(values(&unit, key), Vec::<&str>::new(), "{role}: {key}");
        }
    }
    let agent = unit("agent");
    assert_eq!(one(&agent, "MemoryMax"), "64M");
    assert_eq!(
        one(&agent, "Environment"),
        "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=32768:glibc.malloc.trim_threshold=32768:glibc.malloc.top_pad=0"
    );
}

#[test]
fn systemd_analyze_verifies_every_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for role in ROLES {
        // verify wants ExecStart's binary to exist: this build's.
        let text = unit(role).replace("/usr/local/bin/iotel", env!("CARGO_BIN_EXE_iotel"));
        let path = tmp.path().join(format!("iotel-{role}.service"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): it comes with Debian's `systemd` package")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "", "systemd-analyze verify warned");
}

#[cfg(feature = "completions")]
fn completions(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(feature = "completions")]
#[test]
fn bash_completions_offer_every_subcommand_and_global_flag() {
    let script = completions("bash");
    assert!(script.starts_with("_iotel() {\n"), "{script}");
    assert!(script.contains("complete -F _iotel "), "{script}");
    // The words offered after `iotel`.
    let top = script
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("opts=\"") && l.contains(" agent "))
        .unwrap_or_else(|| panic!("no top-level opts line in:\n{script}"));
    let words: Vec<&str> = top
        .trim_start_matches("opts=\"")
        .trim_end_matches('"')
        .split_whitespace()
        .collect();
    for w in [
        "agent",
        "gateway",
        "cloud",
        "config",
        "lint",
        "completions",
        "--log-level",
        "--log-format",
        "--version",
    ] {
        assert!(words.contains(&w), "{w} missing from {top}");
    }
    // A subcommand's own words: `iotel config` offers `check`.
    assert!(
        script.contains("opts=\"-h --log-level --log-format --help check help\""),
        "{script}"
    );
}

#[cfg(feature = "completions")]
#[test]
fn every_shell_gets_a_completion_script_naming_the_roles() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        for role in ROLES {
            assert!(script.contains(role), "{shell}: no {role} in:\n{script}");
        }
    }
}

#[cfg(feature = "completions")]
#[test]
fn an_unknown_shell_is_refused_with_the_ones_there_are() {
    let out = Command::new(env!("CARGO_BIN_EXE_iotel"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("[possible values: bash, elvish, fish, powershell, zsh]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
