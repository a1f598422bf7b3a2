use super::*;
use iotel_model::LogRecord;
use proptest::prelude::*;
use serde_json::json;

const ALICE: &str = "email:2381fe3eade233e3";
const IPV4: &str = "ipv4:2012efbfa01bda03";
const IPV6: &str = "ipv6:b47f5a77c90b9201";

fn config(text: &str) -> Config {
    toml::from_str(text).unwrap()
}

fn redactor(text: &str) -> (Redact, BuildContext) {
    let cfg = config(text);
    assert_eq!(cfg.validate(), vec![], "{text}");
    let cx = BuildContext::for_test("pii");
    (Redact::new(&cfg, &cx).unwrap(), cx)
}

const ALL: &str = r#"rules = ["email", "phone", "ipv4", "ipv6"]
salt = "s3cret""#;

/// `text` as the message of a record run through a redactor built from
/// `config`.
fn redact(config: &str, text: &str) -> String {
    let (mut r, _) = redactor(config);
    let mut rec = LogRecord::new(1, text);
    r.redact_record(&mut rec);
    rec.message
}

fn redactions(cx: &BuildContext, rule: &str) -> u64 {
    cx.metrics
        .registry()
        .counter(
            "iotel_redact_redactions_total",
            "",
            &[("component_id", "pii"), ("rule", rule)],
        )
        .get()
}

fn problems(text: &str) -> Vec<(String, String)> {
    config(text)
        .validate()
        .into_iter()
        .map(|p| (p.key, p.message))
        .collect()
}

#[test]
fn emails_become_salted_sha256_pseudonyms_the_same_for_the_same_address() {
    assert_eq!(
        redact(ALL, "login by alice@example.com, then Alice@Example.COM."),
        format!("login by {ALICE}, then {ALICE}.")
    );
    assert_eq!(
        redact(ALL, "to:<bob.smith+iot@mail.plant-7.example.org>"),
        redact(ALL, "to:<Bob.Smith+iot@mail.plant-7.example.org>"),
    );
    let other_salt = redact(
        "salt = \"pepper\"",
        "login by alice@example.com, then Alice@Example.COM.",
    );
    assert!(!other_salt.contains(ALICE) && other_salt.contains("email:"));
}

#[test]
fn text_that_only_looks_like_an_email_is_left_alone() {
    for text in [
        "a @ b",
        "user@localhost",
        "x@y.1",
        "@example.com",
        "git@",
        "weight: 5@3kg",
    ] {
        assert_eq!(redact(ALL, text), text);
    }
}

#[test]
fn phones_keep_the_country_code_and_the_last_four_digits() {
    let cases = [
        ("call +86 138 1234 5678 now", "call +86****5678 now"),
        ("+8613812345678", "+86****5678"),
        ("tel:+1 (555) 123-4567.", "tel:+1****4567."),
        ("+49-151-1234-5678", "+49****5678"),
        ("+353 1 234 5678", "+353****5678"),
        ("+7 912 345 67 89", "+7****6789"),
        ("(+44.20.7946.0958)", "(+44****0958)"),
    ];
    for (text, want) in cases {
        assert_eq!(redact(ALL, text), want, "{text}");
    }
}

#[test]
fn a_phone_number_does_not_run_into_an_address_after_it() {
    let ip = |a: &str| redact(ALL, a);
    assert_eq!(
        redact(ALL, "+49 30 1234567 10.0.0.1"),
        format!("+49****4567 {}", ip("10.0.0.1"))
    );
    assert_eq!(
        redact(ALL, "+44 20 7946 0958 10.100.0.1"),
        format!("+44****0958 {}", ip("10.100.0.1"))
    );
    assert_eq!(
        redact(ALL, "+4400000000 100.100.0.0"),
        format!("+44****0000 {}", ip("100.100.0.0"))
    );
    assert_eq!(
        redact(ALL, "+86 138 1234 5678 2 times"),
        "+86****6782 times"
    );
}

#[test]
fn things_that_are_not_international_phone_numbers_are_left_alone() {
    for text in [
        "score +15 points",
        "a+123456789",
        "+1234567",
        "+1234567890123456",
        "+12345678x",
        "13812345678",
        "1+1=2",
    ] {
        assert_eq!(redact(ALL, text), text);
    }
}

#[test]
fn ipv4_addresses_become_pseudonyms_but_versions_and_big_octets_do_not() {
    assert_eq!(
        redact(ALL, "from 192.168.1.20:8080 and (192.168.1.20)."),
        format!("from {IPV4}:8080 and ({IPV4}).")
    );
    for text in [
        "version 1.2.3.4.5",
        "256.1.1.1",
        "1.2.3",
        "v1.2.3.4",
        "1.2.3.4a",
    ] {
        assert_eq!(redact(ALL, text), text);
    }
}

#[test]
fn ipv6_addresses_become_pseudonyms_of_their_canonical_form() {
    assert_eq!(
        redact(
            ALL,
            "[2001:db8::1]:443 and 2001:DB8:0:0:0:0:0:1, fe80::1%eth0"
        ),
        format!(
            "[{IPV6}]:443 and {IPV6}, {}%eth0",
            redact(ALL, "fe80::1").as_str()
        )
    );
    assert!(redact(ALL, "::ffff:192.0.2.7").starts_with("ipv6:"));
    assert_eq!(redact(ALL, "at 12:30:45.123").as_str(), "at 12:30:45.123");
    for text in [
        "::",
        "std::vec::Vec",
        "aa:bb:cc:dd:ee:ff",
        "key: value: x",
        "foo::bar",
    ] {
        assert_eq!(redact(ALL, text), text);
    }
}

#[test]
fn the_default_rules_are_email_and_phone() {
    assert_eq!(
        redact(
            "salt = \"s3cret\"",
            "alice@example.com +86 138 1234 5678 192.168.1.20"
        ),
        format!("{ALICE} +86****5678 192.168.1.20")
    );
}

#[test]
fn custom_rules_replace_every_match_and_expand_groups() {
    let cfg = r#"rules = []
custom = [
  { name = "imei", pattern = '\b\d{15}\b', replacement = "[imei]" },
  { name = "card", pattern = '\b(\d{4})\d{8}(\d{4})\b', replacement = "$1********$2" },
  { name = "token", pattern = 'token=\w+' },
]"#;
    assert_eq!(
        redact(
            cfg,
            "imei 490154203237518 card 4111111111111111 token=abc123 x"
        ),
        "imei [imei] card 4111********1111 [token] x"
    );
    // Case-insensitive patterns fold ASCII.
    assert_eq!(
        redact(
            "rules = []\ncustom = [{ name = \"secret\", pattern = '(?i)secret=\\S+' }]",
            "SECRET=x1 y"
        ),
        "[secret] y"
    );
}

#[test]
fn named_fields_are_redacted_to_their_nested_strings_and_others_are_not() {
    let (mut r, cx) = redactor(
        r#"salt = "s3cret"
fields = ["user", "contacts"]"#,
    );
    let mut rec = LogRecord::new(1, "mail alice@example.com");
    rec.fields.insert("user".into(), json!("alice@example.com"));
    rec.fields.insert(
        "contacts".into(),
        json!([{"phone": "+86 138 1234 5678"}, "alice@example.com", 7]),
    );
    rec.fields
        .insert("other".into(), json!("alice@example.com"));
    let mut out = Vec::new();
    r.transform(Events::Logs(vec![rec]), &mut out);
    let Events::Logs(v) = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(v[0].message, format!("mail {ALICE}"));
    assert_eq!(
        serde_json::Value::Object(v[0].fields.clone()),
        json!({
            "user": ALICE,
            "contacts": [{"phone": "+86****5678"}, ALICE, 7],
            "other": "alice@example.com",
        })
    );
    assert_eq!(redactions(&cx, "email"), 3);
    assert_eq!(redactions(&cx, "phone"), 1);
}

#[test]
fn records_without_pii_are_not_rewritten() {
    let (mut r, cx) = redactor(ALL);
    let rec = LogRecord::new(1, "GET /api/v1/items 200 12ms");
    let mut out = Vec::new();
    r.transform(Events::Logs(vec![rec.clone()]), &mut out);
    assert_eq!(out.len(), 1);
    let Events::Logs(v) = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(v[0], rec);
    for rule in ["email", "phone", "ipv4", "ipv6"] {
        assert_eq!(redactions(&cx, rule), 0);
    }
}

#[test]
fn the_salt_never_shows_in_debug_output() {
    let cfg = config(ALL);
    assert!(!format!("{cfg:?}").contains("s3cret"));
    let (r, _) = redactor(ALL);
    assert!(!format!("{r:?}").contains("s3cret"));
    assert_eq!(format!("{:?}", Secret::new("s3cret")), "***");
}

#[test]
fn config_mistakes_are_reported_with_their_keys() {
    assert_eq!(
        problems(r#"rules = ["email", "ipv4", "email"]"#),
        [
            ("rules[2]".to_string(), "\"email\" is listed twice".to_string()),
            (
                "salt".to_string(),
                "required by the email, ipv4 rules: pseudonyms are SHA-256 of the salt and the value; give it from the environment with salt = \"${IOTEL_REDACT_SALT}\"".to_string()
            ),
        ]
    );
    assert_eq!(
        problems(r#"salt = """#),
        [(
            "salt".to_string(),
            "expected a non-empty secret".to_string()
        )]
    );
    assert_eq!(problems(r#"rules = ["phone"]"#), []);
    assert_eq!(
        problems(
            r#"rules = []
fields = [""]
custom = [
  { name = "bad-name", pattern = "x" },
  { name = "email", pattern = "x" },
  { name = "imei", pattern = '\d{15' },
  { name = "imei", pattern = "(a" },
  { name = "any", pattern = "x*" },
]"#
        ),
        [
            ("fields[0]".to_string(), "expected a field name".to_string()),
            (
                "custom[0].name".to_string(),
                "\"bad-name\" is not a valid rule name (expected [a-zA-Z_][a-zA-Z0-9_]*)".to_string()
            ),
            (
                "custom[1].name".to_string(),
                "\"email\" is a built-in rule's name".to_string()
            ),
            (
                "custom[2].pattern".to_string(),
                "invalid regular expression \"\\d{15\": unclosed counted repetition at character 3 of the pattern".to_string()
            ),
            (
                "custom[3].name".to_string(),
                "\"imei\" names two rules".to_string()
            ),
            (
                "custom[3].pattern".to_string(),
                "invalid regular expression \"(a\": unclosed group at character 1 of the pattern".to_string()
            ),
            (
                "custom[4].pattern".to_string(),
                "\"x*\" matches the empty string, so it would insert the replacement between every character".to_string()
            ),
        ]
    );
    assert_eq!(
        problems("rules = []"),
        [(
            "rules".to_string(),
            "redacts nothing: name a built-in rule or add a custom one".to_string()
        )]
    );
    let e = toml::from_str::<Config>(r#"rules = ["ssn"]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown variant `ssn`"), "{e}");
}

fn email() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9._%+-]{0,12}@[a-zA-Z0-9][a-zA-Z0-9-]{0,8}(\\.[a-zA-Z0-9]{1,8}){0,2}\\.[a-zA-Z]{2,6}"
}

fn phone() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("1"),
            Just("7"),
            Just("44"),
            Just("49"),
            Just("86"),
            Just("353"),
            Just("971")
        ],
        "[0-9]{7,12}",
        proptest::collection::vec(prop_oneof![Just(""), Just("-"), Just(".")], 5),
    )
        .prop_filter("at most 15 digits", |(cc, rest, _)| {
            cc.len() + rest.len() <= 15
        })
        .prop_map(|(cc, rest, seps)| {
            let mut s = format!("+{cc}");
            for (i, d) in rest.chars().enumerate() {
                if i % 3 == 0 {
                    s.push_str(seps[i / 3 % seps.len()]);
                }
                s.push(d);
            }
            s
        })
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string())
}

fn ipv6() -> impl Strategy<Value = String> {
    any::<[u16; 8]>()
        .prop_filter("not ::", |s| s.iter().any(|&x| x != 0))
        .prop_map(|s| std::net::Ipv6Addr::from(s).to_string())
}

/// A word of text without PII that cannot continue a phone number before
/// it: it does not start with a digit or a separator.
fn word(more_excluded: &str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(
        "[^@+\\s0-9().\\-{more_excluded}][^@+\\s{more_excluded}]{{0,9}}"
    ))
    .expect("a valid regex")
}

/// Words with PII between them, joined by single spaces; `true` marks PII.
fn interleave(pairs: Vec<(String, String)>, last: String) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (w, p) in pairs {
        out.push((w, false));
        out.push((p, true));
    }
    out.push((last, false));
    out
}

fn check_tokens(config: &str, tokens: &[(String, bool)]) -> Result<(), TestCaseError> {
    let text = tokens
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let out = redact(config, &text);
    let got: Vec<&str> = out.split(' ').collect();
    prop_assert_eq!(got.len(), tokens.len(), "{} → {}", text, out);
    for ((original, is_pii), got) in tokens.iter().zip(got) {
        if *is_pii {
            prop_assert!(
                !out.contains(original.as_str()),
                "{} survived in {}",
                original,
                out
            );
            prop_assert!(
                got.starts_with("email:")
                    || got.starts_with("ipv4:")
                    || got.starts_with("ipv6:")
                    || got.contains("****"),
                "{} became {}",
                original,
                got
            );
        } else {
            prop_assert_eq!(got, original.as_str());
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn text_without_at_or_plus_is_unchanged_by_the_default_rules(text in "[^@+]*") {
        prop_assert_eq!(redact("salt = \"s\"", &text), text);
    }

    #[test]
    fn text_without_at_plus_dot_or_colon_is_unchanged_by_every_rule(text in "[^@+.:]*") {
        prop_assert_eq!(redact(ALL, &text), text);
    }

    #[test]
    fn no_generated_email_or_phone_survives_and_the_text_around_them_is_kept(
        pairs in proptest::collection::vec((word(""), prop_oneof![email(), phone()]), 1..5),
        last in word(""),
    ) {
        check_tokens("salt = \"s\"", &interleave(pairs, last))?;
    }

    #[test]
    fn no_generated_ip_address_survives_and_the_text_around_them_is_kept(
        pairs in proptest::collection::vec(
            (word(".:"), prop_oneof![ipv4(), ipv6(), email(), phone()]),
            1..5,
        ),
        last in word(".:"),
    ) {
        check_tokens(ALL, &interleave(pairs, last))?;
    }

    #[test]
    fn no_generated_pii_survives_when_pieces_of_it_touch(
        pii in proptest::collection::vec(prop_oneof![ipv4(), ipv6(), email(), phone()], 1..6),
        sep in prop_oneof![Just(" "), Just(", "), Just("\n"), Just(" and ")],
    ) {
        let text = pii.join(sep);
        let out = redact(ALL, &text);
        for p in &pii {
            prop_assert!(!out.contains(p.as_str()), "{} survived in {}", p, out);
        }
    }
}

fn load(text: &str) -> Result<crate::config::Loaded, Vec<String>> {
    crate::config::load_for_test(text, |name| {
        (name == "IOTEL_REDACT_SALT").then(|| "s3cret".to_string())
    })
}

#[test]
fn the_log_transforms_chain_in_a_config_with_the_salt_from_the_environment() {
    let loaded = load(
        r#"
[sources.app]
type = "generator"
signal = "log"

[transforms.pii]
type = "redact"
inputs = ["app"]
rules = ["email", "phone", "ipv4"]
salt = "${IOTEL_REDACT_SALT}"

[transforms.errors]
type = "filter"
inputs = ["pii"]
selector = '{job="edge-app"} != "healthcheck"'

[transforms.streams]
type = "labels"
inputs = ["errors"]
fields = ["level"]
max_values_per_label = 10

[transforms.thin]
type = "sample"
inputs = ["streams"]
rate = 0.1
by = "device_id"

[sinks.out]
type = "console"
inputs = ["thin"]
"#,
    )
    .unwrap();
    let pii = loaded.components.iter().find(|c| c.id == "pii").unwrap();
    let crate::config::ComponentConfig::Transform(crate::transforms::TransformConfig::Redact(cfg)) =
        &pii.config
    else {
        panic!("{pii:?}");
    };
    assert_eq!(cfg.salt.as_ref().map(Secret::expose), Some("s3cret"));
    loaded.build(&iotel_engine::Registry::default()).unwrap();
}

#[test]
fn a_config_error_names_the_file_and_the_key() {
    let errors = load(
        r#"
[sources.app]
type = "generator"
signal = "log"

[transforms.errors]
type = "filter"
inputs = ["app"]
selector = '{job="edge-app"} | json'

[transforms.pii]
type = "redact"
inputs = ["errors"]
custom = [{ name = "imei", pattern = '\d{15' }]

[sinks.out]
type = "console"
inputs = ["pii"]
"#,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        [
            r#"edge.toml: transforms.errors.selector: column 18: "| json" is not supported: only line filters (|=, !=, |~, !~) may follow the stream selector"#,
            "edge.toml: transforms.pii.salt: required by the email rule: pseudonyms are SHA-256 of the salt and the value; give it from the environment with salt = \"${IOTEL_REDACT_SALT}\"",
            r#"edge.toml: transforms.pii.custom[0].pattern: invalid regular expression "\d{15": unclosed counted repetition at character 3 of the pattern"#,
        ]
    );
}
