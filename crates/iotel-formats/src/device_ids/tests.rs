#![allow(clippy::unwrap_used)]

//! Known-answer vectors (computed by an independent implementation of the
//! derivation with Python's hashlib) pin version 1: a change to the input
//! encoding fails here instead of silently splitting traces across agents
//! of different versions.

use super::*;
use proptest::prelude::*;

const HOUR: NonZeroU64 = NonZeroU64::new(3_600_000_000_000).unwrap();

fn bucket(index: i64) -> Option<TimeBucket> {
    Some(TimeBucket {
        width_ns: HOUR,
        index,
    })
}

fn lorawan(fcnt: u32, fcnt_bits: FcntBits, dev_eui: Option<[u8; 8]>) -> MessageKey<'static> {
    MessageKey::Lorawan {
        dev_addr: 0x2601_1BDA,
        fcnt,
        fcnt_bits,
        dev_eui,
    }
}

#[test]
fn lorawan_16_bit_known_answer() {
    let t = trace_id(
        &lorawan(70_000, FcntBits::Low16, None),
        &Discriminator::default(),
    );
    assert_eq!(hex(&t), "1facd1417d9a9ba4d31b042987092d5b");
    assert_eq!(hex(&span_id(&t, "gateway")), "da99d662b01823aa");
    assert_eq!(hex(&span_id(&t, "device")), "bfff0c9e4b368335");
    // Only the low 16 bits count: 70,000 and 4,464 are one on air.
    assert_eq!(
        trace_id(
            &lorawan(4_464, FcntBits::Low16, None),
            &Discriminator::default()
        ),
        t
    );
}

#[test]
fn lorawan_32_bit_with_dev_eui_scope_and_bucket_known_answer() {
    let eui = parse_hex::<8>("70-B3-D5-7E-D0-00-12-34").unwrap();
    let d = Discriminator {
        scope: "ttn-eu1",
        bucket: bucket(493_000),
    };
    let t = trace_id(&lorawan(70_000, FcntBits::Full32, Some(eui)), &d);
    assert_eq!(hex(&t), "f81397402a0b5dbfe4db93aae665f253");
    assert_eq!(hex(&span_id(&t, "network_server")), "daa79bba7b6080dc");
}

#[test]
fn coap_known_answers_with_and_without_token() {
    let key = MessageKey::Coap {
        endpoint: "10.0.0.7:5683",
        token: parse_token("a1b2c3d4").unwrap(),
        message_id: 0x7d34,
    };
    let d = Discriminator {
        scope: "",
        bucket: bucket(493_000),
    };
    let t = trace_id(&key, &d);
    assert_eq!(hex(&t), "3a65d216e2a0246c8ca3ee8f45c7642b");
    assert_eq!(hex(&span_id(&t, "server")), "ea3996ff98052a40");
    let empty = MessageKey::Coap {
        endpoint: "10.0.0.7:5683",
        token: parse_token("").unwrap(),
        message_id: 0x7d34,
    };
    assert_eq!(
        hex(&trace_id(&empty, &Discriminator::default())),
        "3c73bf2b11f457a99cd0ec84ad019ab9"
    );
}

#[test]
fn mqtt_known_answer() {
    let key = MessageKey::Mqtt {
        client_id: "sensor-0042",
        packet_id: NonZeroU16::new(17).unwrap(),
    };
    let d = Discriminator {
        scope: "",
        bucket: bucket(493_000),
    };
    let t = trace_id(&key, &d);
    assert_eq!(hex(&t), "c5375452a63eeb79033aa85408236159");
    assert_eq!(hex(&span_id(&t, "broker")), "daf5a25360851af5");
}

#[test]
fn the_fcnt_width_is_part_of_the_input() {
    let d = Discriminator::default();
    assert_ne!(
        trace_id(&lorawan(5, FcntBits::Low16, None), &d),
        trace_id(&lorawan(5, FcntBits::Full32, None), &d)
    );
}

#[test]
fn time_buckets_floor_towards_the_past() {
    assert_eq!(TimeBucket::of(0, HOUR).index, 0);
    assert_eq!(TimeBucket::of(3_599_999_999_999, HOUR).index, 0);
    assert_eq!(TimeBucket::of(3_600_000_000_000, HOUR).index, 1);
    assert_eq!(TimeBucket::of(-1, HOUR).index, -1);
    assert_eq!(TimeBucket::of(i64::MIN, NonZeroU64::MIN).index, i64::MIN);
}

#[test]
fn all_zero_digests_fall_back_to_the_next_bytes_then_to_one() {
    let mut d = [0u8; 32];
    d[20] = 7;
    assert_eq!(non_zero::<16>(&d)[4], 7);
    assert_eq!(non_zero::<8>(&d)[4], 7);
    let z = non_zero::<16>(&[0u8; 32]);
    assert_eq!(z[..15], [0u8; 15]);
    assert_eq!(z[15], 1);
}

#[test]
fn hex_parsing_takes_separators_and_either_case_and_refuses_wrong_lengths() {
    assert_eq!(parse_hex::<4>("26011bda"), Some([0x26, 0x01, 0x1b, 0xda]));
    assert_eq!(
        parse_hex::<4>("26:01:1B:DA"),
        Some([0x26, 0x01, 0x1b, 0xda])
    );
    assert_eq!(parse_hex::<4>("26011bd"), None);
    assert_eq!(parse_hex::<4>("26011bdx"), None);
    assert_eq!(parse_token("0102030405060708").unwrap().as_bytes().len(), 8);
    assert_eq!(parse_token("010203040506070809"), None);
    assert_eq!(parse_token("abc"), None);
    assert_eq!(CoapToken::new(&[0; 9]), None);
}

proptest! {
    #[test]
    fn ids_are_never_all_zero_and_distinct_counters_differ(
        addr in any::<u32>(), a in any::<u32>(), b in any::<u32>(), hop in ".{0,12}"
    ) {
        let key = |fcnt| MessageKey::Lorawan {
            dev_addr: addr, fcnt, fcnt_bits: FcntBits::Full32, dev_eui: None,
        };
        let d = Discriminator::default();
        let ta = trace_id(&key(a), &d);
        prop_assert!(ta.iter().any(|x| *x != 0));
        prop_assert!(span_id(&ta, &hop).iter().any(|x| *x != 0));
        if a != b {
            prop_assert_ne!(ta, trace_id(&key(b), &d));
        }
    }

    #[test]
    fn length_prefixes_keep_client_id_and_scope_apart(
        client in "[a-z]{0,6}", scope in "[a-z]{0,6}", split in 0usize..6
    ) {
        // Moving bytes between the client id and the scope changes the id.
        let joined = format!("{client}{scope}");
        let cut = split.min(joined.len());
        let (c2, s2) = joined.split_at(cut);
        let id = |c: &str, s: &str| trace_id(
            &MessageKey::Mqtt { client_id: c, packet_id: NonZeroU16::MIN },
            &Discriminator { scope: s, bucket: None },
        );
        if c2 != client {
            prop_assert_ne!(id(&client, &scope), id(c2, s2));
        }
    }
}
