//! The fixed names of a device's lifecycle — boots, firmware changes and
//! upgrades, crashes, agent restarts — as `docs/device-lifecycle.md` writes
//! them down. The `device_lifecycle` source (on the agent) and transform (on
//! a gateway) emit these and nothing else, so a query or an alert written
//! against the document works whichever tier saw the moment.

use iotel_model::{LogRecord, Severity};
use serde_json::Value;

/// The field that names an event (OpenTelemetry's `event.name`).
pub const EVENT_NAME: &str = "event.name";

/// A new boot of the device: a changed boot id, or an uptime that went back.
pub const DEVICE_BOOT: &str = "device.boot";
/// A boot that followed a run of the agent that never stopped cleanly (power
/// loss, watchdog reset, kernel panic), or a crash a device reports itself.
pub const DEVICE_CRASH: &str = "device.crash";
/// The firmware label of the device's info metric changed.
pub const FIRMWARE_CHANGED: &str = "device.firmware.changed";
/// An upgrade started: sent by the device, or by the agent when an update
/// tool's marker file appears.
pub const UPGRADE_START: &str = "device.firmware.upgrade.start";
/// An upgrade's result: sent by the device, or by the agent when the
/// marker file goes.
pub const UPGRADE_END: &str = "device.firmware.upgrade.end";
/// An upgrade started and reported nothing back within the timeout.
pub const UPGRADE_TIMEOUT: &str = "device.firmware.upgrade.timeout";
/// The agent started again on the same boot of the device.
pub const AGENT_RESTART: &str = "iotel.agent.restart";

/// The root span of a firmware upgrade, and its steps.
pub const SPAN_UPGRADE: &str = "firmware.upgrade";
pub const SPAN_DOWNLOAD: &str = "firmware.download";
pub const SPAN_VERIFY: &str = "firmware.verify";
pub const SPAN_APPLY: &str = "firmware.apply";
pub const SPAN_REBOOT: &str = "device.reboot";

/// Attributes of firmware events and upgrade spans.
pub const FIRMWARE_FROM: &str = "firmware.from";
pub const FIRMWARE_TO: &str = "firmware.to";
/// `ok`, `failed` or `timeout`.
pub const FIRMWARE_RESULT: &str = "firmware.result";

/// Attributes of `device.boot`.
pub const BOOT_ID: &str = "device.boot.id";
pub const BOOT_PREVIOUS_ID: &str = "device.boot.previous_id";
/// The boot's time, Unix seconds.
pub const BOOT_TIME: &str = "device.boot.time";
/// `boot_id` or `uptime`: what told the boot.
pub const BOOT_DETECTED_BY: &str = "device.boot.detected_by";
/// `clean`, `unclean` or `unknown`: how the agent's run before this boot ended.
pub const BOOT_PREVIOUS_SHUTDOWN: &str = "device.boot.previous_shutdown";
/// OpenTelemetry's `system.uptime`, in seconds.
pub const UPTIME: &str = "system.uptime";
/// Attribute of `device.crash`: `unclean_shutdown` when the agent inferred it.
pub const CRASH_REASON: &str = "device.crash.reason";
/// Attribute of `iotel.agent.restart`: `clean` or `crash`.
pub const RESTART_REASON: &str = "iotel.agent.restart.reason";

/// A lifecycle event: a log record with `event.name` and its attributes
/// as fields, at `timestamp_ns`.
pub fn event(
    timestamp_ns: i64,
    name: &str,
    severity: Severity,
    message: String,
    attributes: impl IntoIterator<Item = (&'static str, Value)>,
) -> LogRecord {
    let mut r = LogRecord::new(timestamp_ns, message);
    r.severity = Some(severity);
    r.fields.insert(EVENT_NAME.into(), Value::from(name));
    for (k, v) in attributes {
        r.fields.insert(k.into(), v);
    }
    r
}
