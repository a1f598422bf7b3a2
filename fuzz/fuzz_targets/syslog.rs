//! Feeds arbitrary bytes to the syslog parser (RFC 5424 and BSD): it must
//! never panic, and what it accepts must become a log record.

#![no_main]

use iotel_formats::syslog::{Options, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = Options {
        received_ns: 1_764_000_000_000_000_000,
        timezone: jiff::tz::TimeZone::UTC,
    };
    if let Ok(message) = parse(data, &options) {
        let _ = message.into_log_record(options.received_ns);
    }
});
