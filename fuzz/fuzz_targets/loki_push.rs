//! Feeds arbitrary bytes to the Loki push decoders, protobuf (whose stream
//! labels are a selector string, parsed too) and JSON: neither may panic.

#![no_main]

use iotel_formats::loki::{decode_json, decode_protobuf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_protobuf(data);
    let _ = decode_json(data);
});
