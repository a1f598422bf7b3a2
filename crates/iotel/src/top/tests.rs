use super::model::{self, Reading, SortKey};
use super::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn reading(at_ms: i64, counts: &str) -> Reading {
    serde_json::from_str(&format!(
        r#"{{
  "node": {{"config": "gw.toml", "version": "0.1.0", "started_unix_ms": 1000,
    "components": [
      {{"id": "agents", "kind": "source", "type": "iotel", "inputs": []}},
      {{"id": "up", "kind": "sink", "type": "iotel", "inputs": ["agents"]}}]}},
  "now_unix_ms": {at_ms},
  "components": {counts},
  "tls": []
}}"#
    ))
    .expect("a reading")
}

fn two_readings() -> (Reading, Reading) {
    let before = reading(
        11_000,
        r#"[{"id": "agents", "received": 1000, "sent": 900, "discarded": 100,
              "discarded_by_reason": {"duplicate": 100}, "errors": 0, "buffer": null,
              "latency_p99_seconds": null},
             {"id": "up", "received": 900, "sent": 800, "discarded": 0, "errors": 1,
              "errors_by_code": {"http_5xx": 1},
              "buffer": {"events": 100, "batches": 2, "bytes": 4096, "oldest_age_seconds": 0.2, "fill_ratio": 0.001},
              "latency_p99_seconds": 0.084}]"#,
    );
    let now = reading(
        13_000,
        r#"[{"id": "agents", "received": 3000, "sent": 2900, "discarded": 100,
              "discarded_by_reason": {"duplicate": 100}, "errors": 0, "buffer": null,
              "latency_p99_seconds": null},
             {"id": "up", "received": 2900, "sent": 2000, "discarded": 0, "errors": 5,
              "errors_by_code": {"http_5xx": 5},
              "buffer": {"events": 900, "batches": 9, "bytes": 40960, "oldest_age_seconds": 75.0, "fill_ratio": 0.25},
              "latency_p99_seconds": 0.084}]"#,
    );
    (before, now)
}

#[test]
fn rates_are_the_differences_over_the_time_between_readings() {
    let (before, now) = two_readings();
    let rows = model::rows(Some(&before), &now);
    assert_eq!(rows[0].id, "agents");
    assert_eq!((rows[0].in_rate, rows[0].out_rate), (1000.0, 1000.0));
    assert_eq!((rows[0].drop_rate, rows[0].discarded), (0.0, 100));
    assert_eq!(rows[0].why, "duplicate 100");
    assert_eq!((rows[1].in_rate, rows[1].out_rate), (1000.0, 600.0));
    assert_eq!((rows[1].error_rate, rows[1].errors), (2.0, 5));
    assert_eq!(rows[1].buffer, Some((900, 75.0, 0.25)));
    assert_eq!(rows[1].p99_seconds, Some(0.084));
    // The first reading has no rates; a restarted node starts over.
    assert_eq!(model::rows(None, &now)[0].in_rate, 0.0);
    let mut restarted = now.clone();
    restarted.node.started_unix_ms = 12_000;
    restarted.now_unix_ms = 15_000;
    assert_eq!(model::rows(Some(&now), &restarted)[0].in_rate, 0.0);
}

#[test]
fn rows_are_filtered_and_sorted_as_asked() {
    let (before, now) = two_readings();
    let ids = |key, reverse, filter: &str| {
        model::arrange(model::rows(Some(&before), &now), filter, key, reverse)
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(SortKey::Graph, false, ""), ["agents", "up"]);
    assert_eq!(ids(SortKey::Out, false, ""), ["agents", "up"]);
    assert_eq!(ids(SortKey::Errors, false, ""), ["up", "agents"]);
    assert_eq!(ids(SortKey::Errors, true, ""), ["agents", "up"]);
    assert_eq!(ids(SortKey::Graph, false, "SINK"), ["up"]);
    assert_eq!(ids(SortKey::Graph, false, "nothing"), Vec::<String>::new());
    assert_eq!(SortKey::Buffer.next(), SortKey::Graph);
}

#[test]
fn the_plain_table_lines_up_its_columns() {
    let (before, now) = two_readings();
    let rows = model::rows(Some(&before), &now);
    let text = view::plain("title", &rows);
    assert_eq!(
        text,
        "title\n\
COMPONENT              KIND      TYPE                       IN/s    OUT/s   ERR/s   ERRORS    DROPS         BUFFER     AGE     P99\n\
agents                 source    iotel                      1000     1000       0        0      100              -       -       -\n\
up                     sink      iotel                      1000      600     2.0      5.0        0        900 25%      1m    84ms\n"
    );
}

#[test]
fn the_live_view_shows_the_node_the_table_and_the_selected_components_problems() {
    let (before, now) = two_readings();
    let rows = model::rows(Some(&before), &now);
    let mut terminal = Terminal::new(TestBackend::new(140, 10)).expect("a test terminal");
    let screen = view::Screen {
        title: view::title("http://127.0.0.1:8687", Some(&now), None),
        problem: false,
        rows: &rows,
        selected: 1,
        sort: SortKey::Errors,
        reverse: false,
        filter: "",
        editing: false,
    };
    terminal.draw(|f| view::draw(f, &screen)).expect("drawn");
    let buffer = terminal.backend().buffer();
    let lines: Vec<String> = (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(
        lines[0],
        "iotel top · http://127.0.0.1:8687 · gw.toml · v0.1.0 · up 12.0s"
    );
    assert!(lines[2].starts_with("COMPONENT"), "{lines:#?}");
    assert!(lines[2].contains("ERR/s▼"), "{lines:#?}");
    assert!(lines[3].starts_with("agents"), "{lines:#?}");
    assert!(lines[4].starts_with("up"), "{lines:#?}");
    assert_eq!(lines[6], "up: http_5xx 5");
    assert!(
        lines[9].starts_with("q quit · s sort (errors/s)"),
        "{lines:#?}"
    );
}

#[test]
fn a_certificate_near_its_end_is_said_in_the_title() {
    let (_, mut now) = two_readings();
    now.tls = serde_json::from_str(
        r#"[{"component_id": "[api]", "file": "api.pem", "expires_in_seconds": 259200},
            {"component_id": "up", "file": "gw.pem", "expires_in_seconds": 8640000}]"#,
    )
    .expect("certificates");
    assert_eq!(
        view::title("http://gw:8686", Some(&now), None),
        "iotel top · http://gw:8686 · gw.toml · v0.1.0 · up 12.0s · [api] api.pem expires in 3d"
    );
}

#[test]
fn a_problem_is_said_in_the_title() {
    assert_eq!(
        view::title("http://127.0.0.1:9", None, Some("cannot reach it")),
        "iotel top · http://127.0.0.1:9 · cannot reach it"
    );
}
