//! `iotel loadgen --mqtt URL`: devices that speak only MQTT. Each publishes
//! its readings every `--interval` as one JSON object (a gateway's `mqtt`
//! source with `format = "json_metrics"` makes gauges of them) to
//! `plant/<site>/<device id>/telemetry`, at QoS 1: a message counts as
//! acknowledged once the broker's PUBACK came back.

use super::fleet::device_id;
use super::stats::Stats;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Readings in each message.
pub const READINGS: u64 = 3;

/// Publishes for `devices` (their indices) until `until`, then waits up to
/// `drain` for the broker's acknowledgements.
pub async fn run(
    url: &str,
    site: &str,
    devices: std::ops::Range<usize>,
    interval: Duration,
    stats: Arc<Stats>,
    [until, drain]: [Instant; 2],
) -> anyhow::Result<()> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("--mqtt {url:?}: {e}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("mqtt"),
        "--mqtt {url:?}: expected mqtt://host[:port]"
    );
    let host = uri.host().unwrap_or("127.0.0.1").to_string();
    let port = uri.port_u16().unwrap_or(1883);
    let mut options = MqttOptions::new(
        format!("iotel-loadgen-{}-{}", std::process::id(), devices.start),
        host,
        port,
    );
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(options, 1000);
    let counted = stats.clone();
    // The event loop: connects, reconnects, and counts the acknowledgements.
    let acks = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counted.signals[0]
                        .acked
                        .fetch_add(READINGS, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("loadgen: mqtt: {e}; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    let mut rng = fastrand::Rng::with_seed(devices.start as u64);
    let mut tick = tokio::time::interval(interval);
    while Instant::now() < until {
        tick.tick().await;
        for i in devices.clone() {
            let base = 10.0 + (i % 17) as f64;
            let payload = format!(
                r#"{{"temperature_celsius":{:.2},"humidity_ratio":{:.3},"battery_volts":{:.2}}}"#,
                base + rng.f64() * 2.0,
                0.3 + rng.f64() * 0.4,
                3.3 + rng.f64() * 0.8
            );
            let topic = format!("plant/{site}/{}/telemetry", device_id(i));
            if client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_ok()
            {
                stats.signals[0]
                    .generated
                    .fetch_add(READINGS, Ordering::Relaxed);
            }
        }
    }
    let generated = stats.signals[0].generated.load(Ordering::Relaxed);
    while Instant::now() < drain && stats.signals[0].acked.load(Ordering::Relaxed) < generated {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acks.abort();
    let _ = client.disconnect().await;
    Ok(())
}
