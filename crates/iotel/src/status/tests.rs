use super::*;
use iotel_engine::ComponentMetrics;

fn node() -> Node {
    let declared = |id: &str, kind, type_name, inputs: &[&str]| Declared {
        id: id.to_string(),
        kind,
        type_name,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    };
    Node {
        config: "site.toml".to_string(),
        version: "0.1.0",
        started_unix_ms: 1_700_000_000_000,
        components: vec![
            declared("agents", "source", "iotel", &[]),
            declared("up", "sink", "iotel", &["agents.metrics"]),
        ],
    }
}

#[test]
fn each_component_gets_its_own_counts_and_the_rest_is_left_out() {
    let registry = Registry::default();
    let agents = ComponentMetrics::new(&registry, "agents", "source", "iotel");
    agents.received(120);
    agents.sent(100);
    agents.discarded("invalid", 15);
    agents.discarded("duplicate", 5);
    agents.error("decode_failed");
    agents.error("decode_failed");
    let up = ComponentMetrics::new(&registry, "up", "sink", "iotel");
    up.received(100);
    up.sent(60);
    registry
        .gauge("iotel_buffer_events", "", &[("component_id", "up")])
        .set(40.0);
    registry
        .gauge("iotel_buffer_records", "", &[("component_id", "up")])
        .set(2.0);
    registry
        .gauge(
            "iotel_buffer_oldest_age_seconds",
            "",
            &[("component_id", "up")],
        )
        .set(1.5);
    registry
        .gauge("iotel_buffer_fill_ratio", "", &[("component_id", "up")])
        .set(0.25);
    registry
        .gauge(
            "iotel_sink_latency_seconds",
            "",
            &[("component_id", "up"), ("quantile", "0.99")],
        )
        .set(0.084);
    registry
        .gauge(
            "iotel_tls_cert_expiry_seconds",
            "",
            &[("component_id", "[api]"), ("file", "/etc/iotel/api.pem")],
        )
        .set(86_400.0);
    // A component the graph does not declare (a test's, say).
    ComponentMetrics::new(&registry, "other", "sink", "console").sent(7);

    let node = node();
    let s = summary(&node, &registry.snapshot());
    assert_eq!(
        s.components,
        [
            Counts {
                id: "agents".into(),
                received: 120,
                sent: 100,
                discarded: 20,
                discarded_by_reason: [("duplicate".into(), 5), ("invalid".into(), 15)].into(),
                errors: 2,
                errors_by_code: [("decode_failed".into(), 2)].into(),
                ..Counts::default()
            },
            Counts {
                id: "up".into(),
                received: 100,
                sent: 60,
                buffer: Some(Buffer {
                    events: 40,
                    batches: 2,
                    bytes: None,
                    oldest_age_seconds: 1.5,
                    fill_ratio: 0.25,
                }),
                latency_p99_seconds: Some(0.084),
                ..Counts::default()
            },
        ]
    );
    assert_eq!(
        s.tls,
        [Certificate {
            component_id: "[api]".into(),
            file: "/etc/iotel/api.pem".into(),
            expires_in_seconds: 86_400.0,
        }]
    );
}

#[test]
fn the_json_names_the_graph_and_the_counts() {
    let registry = Registry::default();
    ComponentMetrics::new(&registry, "agents", "source", "iotel").received(3);
    let json: serde_json::Value =
        serde_json::from_str(&components_json(&node(), &registry)).expect("JSON");
    assert_eq!(json["node"]["config"], "site.toml");
    assert_eq!(
        json["node"]["components"][1],
        serde_json::json!({"id": "up", "kind": "sink", "type": "iotel", "inputs": ["agents.metrics"]})
    );
    assert_eq!(json["components"][0]["id"], "agents");
    assert_eq!(json["components"][0]["received"], 3);
    assert_eq!(json["components"][1]["buffer"], serde_json::Value::Null);
    assert_eq!(json["tls"], serde_json::json!([]));
}

#[test]
fn the_page_asks_for_the_components_it_draws() {
    assert!(PAGE.contains("fetch(\"/api/v1/components\""));
    assert!(PAGE.starts_with("<!doctype html>"));
}
