use super::*;

fn load_str(text: &str) -> Result<Loaded, ConfigErrors> {
    load(&test_source(text), |name| {
        (name == "IOTEL_TEST_INTERVAL").then(|| "2s".to_string())
    })
}

fn messages(e: ConfigErrors) -> Vec<String> {
    e.0.iter().map(ToString::to_string).collect()
}

const MINIMAL: &str = r#"
[sources.gen]
type = "generator"
signal = "log"
interval = "${IOTEL_TEST_INTERVAL}"

[sinks.out]
type = "console"
inputs = ["gen"]
"#;

#[test]
fn a_minimal_config_loads_with_defaults_and_env_values() {
    let c = load_str(MINIMAL).unwrap();
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.api.address.to_string(), "127.0.0.1:8686");
    assert_eq!(c.components.len(), 2);
    let ComponentConfig::Source(SourceConfig::Generator(g)) = &c.components[0].config else {
        panic!("expected the generator first")
    };
    assert_eq!(g.interval, Duration::from_secs(2));
    assert_eq!(c.components[1].inputs, ["gen"]);
}

#[test]
fn every_mistake_is_reported_at_once_with_file_and_key_path() {
    let text = r#"
bogus = 1

[api]
adress = "127.0.0.1:1"

[sources.gen]
type = "generator"
signal = "log"
interval = "fast"

[sources.mystery]
type = "telepathy"

[sinks.out]
type = "console"
inputs = ["gen", "nowhere"]
"#;
    let msgs = messages(load_str(text).unwrap_err());
    assert_eq!(
        msgs,
        [
            "edge.toml: bogus: unknown key; expected one of: data_dir, api, runtime, sources, transforms, sinks",
            "edge.toml: api.adress: unknown key `adress`, expected one of `address`, `enabled`, `tls`, `plaintext`, `token_file`",
            "edge.toml: sources.gen.interval: expected a duration such as \"30s\", \"500ms\" or \"5m\", got \"fast\" (expected number at 0)",
            "edge.toml: sources.mystery.type: unknown source type \"telepathy\"; expected one of: device_health, device_lifecycle, file_tail, generator, internal_metrics, iotel, loki, mqtt, nats_jetstream, otlp, prometheus_remote_write, prometheus_scrape, stdin, syslog",
            "edge.toml: sinks.out.inputs: unknown input \"nowhere\": no source or transform has that id",
        ]
    );
}

#[test]
fn the_node_api_off_loopback_needs_a_tls_table_or_plaintext_true() {
    let config = |api: &str| {
        format!(
            "[api]\n{api}\n[sources.gen]\ntype = \"generator\"\nsignal = \"log\"\n\
             [sinks.out]\ntype = \"console\"\ninputs = [\"gen\"]\n"
        )
    };
    let msgs = messages(load_str(&config("address = \"0.0.0.0:8686\"")).unwrap_err());
    assert_eq!(
        msgs,
        [
            "edge.toml: api.address: listening in plaintext on 0.0.0.0:8686: add a tls table, or \
             set plaintext = true to accept unencrypted connections"
        ]
    );
    let c = load_str(&config("address = \"0.0.0.0:8686\"\nplaintext = true")).unwrap();
    assert!(c.api.plaintext);
    // Off, it listens nowhere.
    load_str(&config("address = \"0.0.0.0:8686\"\nenabled = false")).unwrap();
    let msgs = messages(
        load_str(&config(
            "address = \"0.0.0.0:8686\"\ntls = { cert_file = \"api.pem\", key_file = \"api.key\", \
             verify_client = true }",
        ))
        .unwrap_err(),
    );
    assert_eq!(
        msgs,
        [
            "edge.toml: api.tls.ca_file: verify_client is true: expected ca_file with the CAs \
             client certificates chain to"
        ]
    );
}

#[cfg(feature = "tls")]
#[test]
fn the_node_api_tls_files_are_read_when_built_and_errors_name_them() {
    let c = load_str(
        "[api]\naddress = \"0.0.0.0:8686\"\ntls = { cert_file = \"api.pem\", key_file = \"api.key\" }\n\
         [sources.gen]\ntype = \"generator\"\nsignal = \"log\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"gen\"]\n",
    )
    .unwrap();
    let errors = c
        .build_api_tls(&iotel_engine::Registry::default())
        .unwrap_err();
    let msgs = messages(errors);
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("edge.toml: api.tls.cert_file: /etc/iotel/api.pem: "),
        "{msgs:?}"
    );
}

#[test]
fn an_unset_variable_names_its_line() {
    let msgs = messages(load_str("data_dir = \"${IOTEL_NOT_SET_ANYWHERE}\"").unwrap_err());
    assert_eq!(
        msgs,
        [
            "edge.toml:1: environment variable IOTEL_NOT_SET_ANYWHERE is not set (write ${IOTEL_NOT_SET_ANYWHERE:-default} to give a default)"
        ]
    );
}

#[test]
fn a_toml_syntax_error_names_its_line() {
    let msgs = messages(load_str("[sources.a]\ntype = \n").unwrap_err());
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("edge.toml:2: invalid TOML: "),
        "{}",
        msgs[0]
    );
}

#[test]
fn data_dir_flag_wins_over_the_file() {
    let text = format!("data_dir = \"/from/file\"\n{MINIMAL}");
    let c = load(
        &Source {
            file: "edge.toml",
            text: &text,
            config_dir: Path::new("."),
            data_dir_override: Some(Path::new("/from/flag")),
        },
        |n| (n == "IOTEL_TEST_INTERVAL").then(|| "1s".into()),
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const FULL: &str = r#"
data_dir = "/tmp/x"
[api]
address = "127.0.0.1:8686"
[runtime]
flavor = "multi_thread"
shutdown_timeout = "5s"
[sources.gen]
type = "generator"
signal = "metric"
interval = "1s"
count = 3
[sources.scrape]
type = "prometheus_scrape"
targets = ["http://127.0.0.1:9100/metrics"]
interval = "10s"
[sinks.out]
type = "console"
inputs = ["gen", "scrape"]
"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn loading_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = load_str(&text);
        }

        /// Dropping, repeating or mangling lines of a valid config gives
        /// either a valid config or errors that each name the file.
        #[test]
        fn mangled_configs_fail_with_located_errors(
            edits in proptest::collection::vec((0usize..40, 0u8..4, "[a-z=\"\\[\\] ${}0-9.]{0,12}"), 1..6)
        ) {
            let mut lines: Vec<String> = FULL.lines().map(str::to_string).collect();
            for (at, op, junk) in edits {
                let i = at % lines.len().max(1);
                match op {
                    0 if !lines.is_empty() => { lines.remove(i); }
                    1 => { let l = lines.get(i).cloned().unwrap_or_default(); lines.insert(i, l); }
                    2 => lines.insert(i, junk),
                    _ => if let Some(l) = lines.get_mut(i) { l.push_str(&junk) },
                }
            }
            if let Err(errors) = load_str(&lines.join("\n")) {
                prop_assert!(!errors.is_empty());
                for e in &errors.0 {
                    prop_assert_eq!(&e.file, "edge.toml");
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn relabel_group_references_survive_environment_interpolation() {
    let text = r#"
[sources.gen]
type = "generator"
signal = "metric"

[transforms.r]
type = "relabel"
inputs = ["gen"]
rules = [{ source_labels = ["seq"], regex = "(.)(.*)", target_label = "first", replacement = "${1}-$2" }]

[sinks.out]
type = "console"
inputs = ["r"]
"#;
    let c = load_str(text).unwrap();
    let ComponentConfig::Transform(TransformConfig::Relabel(r)) = &c.components[1].config else {
        panic!("expected the relabel transform second")
    };
    assert_eq!(r.rules[0].replacement.as_deref(), Some("${1}-$2"));
}
