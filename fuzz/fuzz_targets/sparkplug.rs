//! Feeds arbitrary bytes to the Sparkplug B payload decoder and, when they
//! decode, through the host state machine as every message type of one
//! edge node and device: nothing may panic.

#![no_main]

use iotel_formats::sparkplug::{Host, Topic, decode_payload};
use libfuzzer_sys::fuzz_target;

const TOPICS: &[&str] = &[
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/DBIRTH/n/d",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/DDATA/n/d",
    "spBv1.0/g/DDEATH/n/d",
    "spBv1.0/g/NDEATH/n",
];

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = decode_payload(data) else {
        return;
    };
    let mut host = Host::new();
    for topic in TOPICS {
        if let Ok(topic) = Topic::parse(topic) {
            let _ = host.handle(&topic, &payload, 0);
        }
    }
});
