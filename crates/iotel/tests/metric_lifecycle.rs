//! Metric lifecycle at runtime, end to end with the real binary: the node
//! API lists the families a scrape brings in, an operator retires one and
//! it leaves the exporter and the outgoing stream at once, and enabling it
//! brings it back; the retirement survives a restart.

// Test helpers outside #[test] fns unwrap too: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use util::{Iotel, http_get, serve_exposition, wait_for};

const DEVICE_APP: &str = "# HELP plant_temp_celsius Temperature at the sensor.\n\
# TYPE plant_temp_celsius gauge\n\
plant_temp_celsius{sensor=\"s1\"} 21.5\n\
plant_temp_celsius{sensor=\"s2\"} -3.25\n\
# TYPE debug_noise gauge\n\
debug_noise 1\n";

const TOKEN: &str = "op-7f3a9c";
const TOKEN_FILE: &str = "op-7f3a9c\n";

/// A request with a method and an optional bearer token: (status, body).
fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Lines of the outgoing stream (the `file` sink) for the series `name`.
fn sent(node: &Iotel, name: &str) -> usize {
    let text = std::fs::read_to_string(node.dir().join("out.ndjson")).unwrap_or_default();
    let needle = format!("\"name\":\"{name}\"");
    text.lines().filter(|l| l.contains(&needle)).count()
}

/// Waits until `n` more scrapes than `after` went out (each sends one `up`).
fn wait_for_scrapes(node: &Iotel, after: usize, n: usize) -> usize {
    wait_for(
        &format!("{n} more scrapes in the outgoing stream"),
        Duration::from_secs(30),
        || {
            let ups = sent(node, "up");
            (ups >= after + n).then_some(ups)
        },
    )
}

fn exporter_serves(exporter: SocketAddr, series: &str) -> bool {
    let (_, _, body) = http_get(exporter, "/metrics", None).unwrap();
    body.lines().any(|l| l.starts_with(series))
}

fn config(app: SocketAddr, exporter: SocketAddr) -> String {
    format!(
        r#"
[api]
address = "{{API}}"
token_file = "token"

[sources.app]
type = "prometheus_scrape"
targets = ["http://{app}/metrics"]
interval = "1s"
job = "edge-app"

[sinks.prom]
type = "prometheus_exporter"
inputs = ["app"]
address = "{exporter}"

[sinks.out]
type = "file"
inputs = ["app"]
path = "{{DIR}}/out.ndjson"
"#
    )
}

const LISTING: &str = "{\"families\":[\
{\"name\":\"debug_noise\",\"type\":\"gauge\",\"help\":null,\"unit\":null,\"series\":1,\"components\":[\"app\"],\"state\":\"active\"},\
{\"name\":\"plant_temp_celsius\",\"type\":\"gauge\",\"help\":\"Temperature at the sensor.\",\"unit\":null,\"series\":2,\"components\":[\"app\"],\"state\":\"active\"},\
{\"name\":\"scrape_duration_seconds\",\"type\":\"gauge\",\"help\":\"How long the last scrape took.\",\"unit\":null,\"series\":1,\"components\":[\"app\"],\"state\":\"active\"},\
{\"name\":\"scrape_samples_scraped\",\"type\":\"gauge\",\"help\":\"Samples the last scrape returned.\",\"unit\":null,\"series\":1,\"components\":[\"app\"],\"state\":\"active\"},\
{\"name\":\"up\",\"type\":\"gauge\",\"help\":\"1 if the last scrape of the target succeeded, else 0.\",\"unit\":null,\"series\":1,\"components\":[\"app\"],\"state\":\"active\"}\
]}\n";

#[test]
fn lifecycle_api_round_trip_retires_a_family_everywhere_and_enables_it_again() {
    let app = serve_exposition(DEVICE_APP);
    let exporter: SocketAddr = format!("127.0.0.1:{}", util::free_port()).parse().unwrap();
    let node = Iotel::start("agent", &config(app, exporter), &[("token", TOKEN_FILE)]);
    let api = node.api;

    // Every family of a full scrape is listed, exactly.
    let listing = wait_for(
        "a full scrape in the listing",
        Duration::from_secs(30),
        || {
            let (status, body) = call(api, "GET", "/api/v1/metrics", None);
            (status == 200 && body.matches("\"name\"").count() == 5).then_some(body)
        },
    );
    assert_eq!(listing, LISTING, "{}", node.proc.report());
    wait_for(
        "the exporter to serve debug_noise",
        Duration::from_secs(30),
        || exporter_serves(exporter, "debug_noise").then_some(()),
    );

    // Changing needs the token (configured, so required on loopback too).
    let (status, body) = call(api, "DELETE", "/api/v1/metrics/debug_noise", None);
    assert_eq!(status, 401);
    assert_eq!(
        body,
        "{\"error\":\"this request changes the node: send Authorization: Bearer <token>\"}\n"
    );
    assert_eq!(
        call(api, "DELETE", "/api/v1/metrics/debug_noise", Some("wrong")).0,
        401
    );

    // Retired: gone from the exporter at once.
    let ups_at_retirement = sent(&node, "up");
    assert_eq!(
        call(api, "DELETE", "/api/v1/metrics/debug_noise", Some(TOKEN)),
        (
            200,
            "{\"name\":\"debug_noise\",\"state\":\"retired\"}\n".into()
        )
    );
    assert!(!exporter_serves(exporter, "debug_noise"));
    assert!(exporter_serves(exporter, "plant_temp_celsius"));
    // On record: who did it, from where.
    let audit = wait_for("the audit line", Duration::from_secs(10), || {
        node.proc
            .stderr()
            .lines()
            .find(|l| l.contains("iotel::audit: metric family retired"))
            .map(str::to_string)
    });
    assert!(
        audit.contains(" INFO ")
            && audit.contains("peer=127.0.0.1:")
            && audit.contains("who=bearer token")
            && audit.ends_with("family=\"debug_noise\""),
        "{audit}"
    );

    // A scrape under way may still have sent it; from the next one on,
    // nothing of it goes out while the others keep flowing.
    let ups = wait_for_scrapes(&node, ups_at_retirement, 2);
    let (noise, temps) = (
        sent(&node, "debug_noise"),
        sent(&node, "plant_temp_celsius"),
    );
    let ups_later = wait_for_scrapes(&node, ups, 3);
    assert_eq!(sent(&node, "debug_noise"), noise);
    assert!(sent(&node, "plant_temp_celsius") >= temps + 2 * (ups_later - ups));
    assert!(!exporter_serves(exporter, "debug_noise"));
    let retired = node.metric(
        "iotel_component_discarded_events_total",
        &["component_id=\"app\"", "reason=\"retired\""],
    );
    assert!(retired >= 3.0, "{retired} discarded as retired");
    assert_eq!(
        call(api, "GET", "/api/v1/metrics/debug_noise", None),
        (
            200,
            "{\"name\":\"debug_noise\",\"type\":\"gauge\",\"help\":null,\"unit\":null,\"series\":0,\"components\":[\"app\"],\"state\":\"retired\"}\n"
                .into()
        )
    );

    // Unknown families.
    assert_eq!(
        call(api, "DELETE", "/api/v1/metrics/no_such_family", Some(TOKEN)),
        (
            404,
            "{\"error\":\"unknown metric family \\\"no_such_family\\\"\"}\n".into()
        )
    );
    assert_eq!(
        call(api, "PUT", "/api/v1/metrics/no_such_family", Some(TOKEN)).0,
        404
    );

    // Enabled again: served and sent again with the next scrape.
    assert_eq!(
        call(api, "PUT", "/api/v1/metrics/debug_noise", Some(TOKEN)),
        (
            200,
            "{\"name\":\"debug_noise\",\"state\":\"active\"}\n".into()
        )
    );
    wait_for("debug_noise served again", Duration::from_secs(30), || {
        exporter_serves(exporter, "debug_noise").then_some(())
    });
    wait_for("debug_noise sent again", Duration::from_secs(30), || {
        (sent(&node, "debug_noise") > noise).then_some(())
    });
    let listing = wait_for("debug_noise listed active", Duration::from_secs(30), || {
        let (_, body) = call(api, "GET", "/api/v1/metrics", None);
        (body == LISTING).then_some(body)
    });
    assert_eq!(listing, LISTING);
}

#[test]
fn a_retired_family_stays_retired_after_a_restart() {
    let app = serve_exposition(DEVICE_APP);
    let exporter: SocketAddr = format!("127.0.0.1:{}", util::free_port()).parse().unwrap();
    let node = Iotel::start("agent", &config(app, exporter), &[("token", TOKEN_FILE)]);
    wait_for("debug_noise to be listed", Duration::from_secs(30), || {
        (call(node.api, "GET", "/api/v1/metrics/debug_noise", None).0 == 200).then_some(())
    });
    assert_eq!(
        call(
            node.api,
            "DELETE",
            "/api/v1/metrics/debug_noise",
            Some(TOKEN)
        )
        .0,
        200
    );

    let (dir, api_port, role) = node.kill9();
    std::fs::remove_file(dir.path().join("out.ndjson")).unwrap_or_default();
    let node = Iotel::restart_in(dir, api_port, &role);
    let ups = wait_for_scrapes(&node, 0, 3);
    assert!(ups >= 3);
    assert_eq!(sent(&node, "debug_noise"), 0, "{}", node.proc.report());
    assert!(sent(&node, "plant_temp_celsius") >= 6);
    assert!(!exporter_serves(exporter, "debug_noise"));
    assert_eq!(
        call(node.api, "GET", "/api/v1/metrics/debug_noise", None),
        (
            200,
            "{\"name\":\"debug_noise\",\"type\":\"gauge\",\"help\":null,\"unit\":null,\"series\":0,\"components\":[\"app\"],\"state\":\"retired\"}\n"
                .into()
        )
    );
}
