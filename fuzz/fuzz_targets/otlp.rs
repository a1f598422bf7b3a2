//! Feeds arbitrary bytes to the OTLP decoders of every signal, protobuf and
//! JSON, and converts whatever decodes into the model (spans, samples, log
//! records): nothing may panic.

#![no_main]

use iotel_formats::otlp::{logs, metrics, traces};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = traces::decode_request(data) {
        let _ = traces::spans(r);
    }
    if let Ok(r) = traces::decode_json_request(data) {
        let _ = traces::spans(r);
    }
    if let Ok(r) = metrics::decode_request(data) {
        let _ = metrics::samples(r);
    }
    if let Ok(r) = metrics::decode_json_request(data) {
        let _ = metrics::samples(r);
    }
    if let Ok(r) = logs::decode_request(data) {
        let _ = logs::records(r);
    }
    if let Ok(r) = logs::decode_json_request(data) {
        let _ = logs::records(r);
    }
    let _ = logs::decode_response(data);
});
