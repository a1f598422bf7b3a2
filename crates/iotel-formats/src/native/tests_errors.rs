//! Every [`DecodeError`], each from a frame built by hand to hold exactly
//! that fault, with its code and what its message says.

use super::tests::{built_in, every_metric_type, metrics_of};
use super::wire::{put_ivarint, put_str, put_uvarint};
use super::*;
use iotel_model::MetricType;

/// A frame around a raw body, uncompressed.
fn frame(signal: u8, records: u64, body: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, 0, signal]);
    put_str(&mut f, "agent");
    put_uvarint(&mut f, 9);
    put_uvarint(&mut f, records);
    put_uvarint(&mut f, body.len() as u64);
    f.extend_from_slice(body);
    f
}

/// A body: dictionary `strings`, one empty label set, then `section`.
fn body(strings: &[&str], section: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_uvarint(&mut b, strings.len() as u64);
    for s in strings {
        put_str(&mut b, s);
    }
    b.extend([1, 0]); // one label set, of no labels
    b.extend_from_slice(section);
    b
}

/// A metrics section of one series "up" (dictionary index 0) with one
/// sample, with `series` as the bytes after the family table and base.
fn metrics_section(kind: u8, series: &[u8]) -> Vec<u8> {
    let mut s = vec![1, 0, kind, 0, 0]; // one family: name 0, kind, no help, no unit
    put_ivarint(&mut s, 0); // base
    s.extend_from_slice(series);
    s
}

/// One series: name 0, family 0, labels 0, one sample at 0, XOR-coded
/// value 0.0, no exemplars.
const ONE_SERIES: &[u8] = &[1, 0, 0, 0, 1, 0, 0, 0, 0];

fn decode_err(frame: &[u8]) -> DecodeError {
    decode(frame, &Limits::default()).expect_err("must not decode")
}

/// A metrics frame of one record whose header gives `compression` and
/// declares a body of `declared` bytes, with `data` as the compressed body.
fn compressed_frame(compression: Compression, declared: u64, data: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, compression.code(), 0]);
    put_str(&mut f, "agent");
    put_uvarint(&mut f, 9);
    put_uvarint(&mut f, 1);
    put_uvarint(&mut f, declared);
    f.extend_from_slice(data);
    f
}

/// Twice the default `max_body_bytes`, of zeros: compresses to almost
/// nothing.
#[cfg(any(feature = "zstd", feature = "lz4"))]
fn bomb_content() -> Vec<u8> {
    vec![0; 2 * Limits::default().max_body_bytes]
}

#[test]
fn the_hand_built_frame_decodes() {
    let f = frame(0, 1, &body(&["up"], &metrics_section(2, ONE_SERIES)));
    let batch = decode(&f, &Limits::default()).unwrap();
    let m = metrics_of(batch.events);
    assert_eq!(
        (&*m[0].name, m[0].value, m[0].meta.kind),
        ("up", 0.0, MetricType::Gauge)
    );
}

#[test]
fn a_frame_without_the_magic_is_refused() {
    for f in [&b""[..], b"IOT", b"POST / HTTP/1.1\r\n"] {
        let e = decode_err(f);
        assert_eq!(e.code(), "bad_magic", "{e}");
        assert!(e.to_string().contains("expected magic"), "{e}");
    }
}

#[test]
fn an_unknown_version_names_it_and_the_supported_ones() {
    let mut f = frame(0, 1, &body(&["up"], &metrics_section(2, ONE_SERIES)));
    f[4] = 2;
    let e = decode_err(&f);
    assert_eq!(e.code(), "unsupported_version");
    assert_eq!(
        e.to_string(),
        "format version 2 is not supported: this build reads version(s) [1]"
    );
    assert_eq!(decode_header(&f).unwrap_err().code(), "unsupported_version");
}

#[test]
fn reserved_flag_bits_are_refused() {
    let mut f = frame(0, 0, &body(&[], &[]));
    f[5] = 0x05;
    assert_eq!(decode_err(&f).code(), "reserved_flags");
}

#[test]
fn built_in_compressions_follow_the_cargo_features() {
    assert!(Compression::None.is_built_in());
    assert!(Compression::Snappy.is_built_in());
    assert_eq!(Compression::Zstd.is_built_in(), cfg!(feature = "zstd"));
    assert_eq!(Compression::Lz4.is_built_in(), cfg!(feature = "lz4"));
}

/// Encoding with `compression` and decoding a frame that uses it are both
/// refused, naming it and what is built in.
#[cfg(not(all(feature = "zstd", feature = "lz4")))]
fn refused_both_ways(compression: Compression) {
    let f = compressed_frame(compression, 2, &body(&[], &[]));
    let e = decode_err(&f);
    assert_eq!(e.code(), "compression_not_built_in");
    assert!(e.to_string().contains(compression.as_str()), "{e}");
    assert!(e.to_string().contains("(built in: none, snappy"), "{e}");
    // The header alone still reads: a receiver can count by agent.
    assert_eq!(decode_header(&f).unwrap().compression, compression);
    let e = encode("a", 1, &Events::Logs(vec![]), compression).unwrap_err();
    assert_eq!(e.code(), "compression_not_built_in");
    assert!(e.to_string().contains("not built in"), "{e}");
    assert!(!e.to_string().contains(&format!(", {compression}")), "{e}");
}

#[cfg(not(feature = "zstd"))]
#[test]
fn zstd_without_its_feature_is_not_built_in_either_way() {
    refused_both_ways(Compression::Zstd);
}

#[cfg(not(feature = "lz4"))]
#[test]
fn lz4_without_its_feature_is_not_built_in_either_way() {
    refused_both_ways(Compression::Lz4);
}

#[test]
fn an_unknown_signal_is_refused() {
    let e = decode_err(&frame(3, 0, &body(&[], &[])));
    assert_eq!(e.code(), "unknown_signal");
    assert!(e.to_string().contains("unknown signal code 3"), "{e}");
}

#[test]
fn a_frame_cut_anywhere_in_its_header_is_truncated() {
    let f = encode(
        "agent-with-a-name",
        1 << 40,
        &Events::Metrics(every_metric_type()),
        Compression::Snappy,
    )
    .unwrap();
    // magic, version, flags, signal (7), agent id (1 + 17), sequence (6),
    // record count (1): cut anywhere up to the body length.
    let body_length_at = 7 + 1 + 17 + 6 + 1;
    for cut in 4..=body_length_at {
        let e = decode_header(&f[..cut]).unwrap_err();
        assert_eq!(e.code(), "truncated", "cut at {cut}: {e}");
        assert!(
            e.to_string().starts_with("frame header ends at byte"),
            "{e}"
        );
    }
}

#[test]
fn a_body_cut_inside_a_value_is_truncated() {
    // Value control byte 0x80 promises 8 bytes; 2 follow.
    let series = [1, 0, 0, 0, 1, 0, 0, 0x80, 1, 2];
    let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, &series))));
    assert_eq!(e.code(), "truncated");
    assert!(e.to_string().contains("inside the sample value"), "{e}");
    // A string longer than what is left.
    let e = decode_err(&frame(0, 0, &[1, 100, b'a']));
    assert_eq!(e.code(), "truncated");
    assert_eq!(
        e.to_string(),
        "body ends at byte 2 inside the dictionary string"
    );
}

#[test]
fn an_overlong_varint_is_refused() {
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, 0, 0, 0]); // empty agent id
    f.extend([0xff; 10]); // sequence: more than 64 bits
    let e = decode_err(&f);
    assert_eq!(e.code(), "bad_varint");
    assert!(e.to_string().contains("sequence"), "{e}");
}

#[test]
fn strings_that_are_not_utf8_are_refused() {
    let mut b = vec![1, 2, 0xc3, 0x28, 0];
    b.extend(metrics_section(2, &[0]));
    let e = decode_err(&frame(0, 0, &b));
    assert_eq!(e.code(), "bad_utf8");
    assert!(e.to_string().contains("dictionary string"), "{e}");
}

#[test]
fn a_body_over_the_limit_is_refused_before_decompressing() {
    let f = encode(
        "a",
        1,
        &Events::Metrics(every_metric_type()),
        Compression::Snappy,
    )
    .unwrap();
    let declared = decode_header(&f).unwrap().body_bytes as usize;
    let limits = Limits {
        max_body_bytes: declared - 1,
        ..Limits::default()
    };
    let e = decode(&f, &limits).unwrap_err();
    assert_eq!(e.code(), "body_too_large");
    assert!(e.to_string().contains("more than the limit"), "{e}");
    assert!(
        decode(
            &f,
            &Limits {
                max_body_bytes: declared,
                ..limits
            }
        )
        .is_ok()
    );
}

#[test]
fn a_decompression_bomb_is_refused_before_allocating() {
    // A snappy block claiming 4 GiB - 1 after a few bytes.
    let mut snappy = Vec::new();
    put_uvarint(&mut snappy, u64::from(u32::MAX));
    snappy.extend([0; 8]);
    // The header says so too: over the limit.
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, 1, 0, 0, 1, 1]);
    put_uvarint(&mut f, u64::from(u32::MAX));
    f.extend_from_slice(&snappy);
    assert_eq!(decode_err(&f).code(), "body_too_large");
    // The header lies small: the snappy header's claim is checked before
    // the buffer is allocated.
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, 1, 0, 0, 1, 1, 100]);
    f.extend_from_slice(&snappy);
    let e = decode_err(&f);
    assert_eq!(e.code(), "length_mismatch");
    assert_eq!(
        e.to_string(),
        "the header declares a body of 100 bytes, but it is 4294967295 (compression snappy)"
    );
}

#[cfg(feature = "zstd")]
fn zstd_compress(data: &[u8], with_content_size: bool) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
    c.include_contentsize(with_content_size).unwrap();
    c.compress(data).unwrap()
}

#[cfg(feature = "zstd")]
#[test]
fn a_zstd_bomb_is_refused_before_it_decompresses_past_the_declared_size() {
    use zstd::zstd_safe::get_frame_content_size;
    let content = bomb_content();
    let bomb = zstd_compress(&content, true);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    // The header tells the truth: over the limit.
    let e = decode_err(&compressed_frame(
        Compression::Zstd,
        content.len() as u64,
        &bomb,
    ));
    assert_eq!(e.code(), "body_too_large");
    // The header lies small: the frame's content size is checked before
    // the buffer is allocated.
    let e = decode_err(&compressed_frame(Compression::Zstd, 100, &bomb));
    assert_eq!(e.code(), "length_mismatch");
    assert_eq!(
        e.to_string(),
        "the header declares a body of 100 bytes, but it is 16777216 (compression zstd)"
    );
    // A frame that does not record its size: decompression stops when the
    // declared 100 bytes are full.
    let bomb = zstd_compress(&content, false);
    assert_eq!(get_frame_content_size(&bomb).unwrap(), None);
    let e = decode_err(&compressed_frame(Compression::Zstd, 100, &bomb));
    assert_eq!(e.code(), "decompressed_too_large");
    assert_eq!(
        e.to_string(),
        "the header declares a body of 100 bytes, but its zstd data decompresses to more"
    );
}

#[cfg(feature = "zstd")]
#[test]
fn a_zstd_body_shorter_than_declared_is_refused() {
    for with_content_size in [true, false] {
        let data = zstd_compress(&[7; 60], with_content_size);
        let e = decode_err(&compressed_frame(Compression::Zstd, 100, &data));
        assert_eq!(e.code(), "length_mismatch");
        assert_eq!(
            e.to_string(),
            "the header declares a body of 100 bytes, but it is 60 (compression zstd)"
        );
    }
}

#[cfg(feature = "zstd")]
#[test]
fn a_corrupt_zstd_body_is_refused() {
    let e = decode_err(&compressed_frame(
        Compression::Zstd,
        10,
        b"not a zstd frame",
    ));
    assert_eq!(e.code(), "zstd");
    assert!(
        e.to_string()
            .starts_with("zstd: the body of 16 bytes does not decompress (declared 10 bytes): "),
        "{e}"
    );
    // A real frame cut short.
    let f = encode(
        "a",
        1,
        &Events::Metrics(every_metric_type()),
        Compression::Zstd,
    )
    .unwrap();
    let e = decode_err(&f[..f.len() - 3]);
    assert_eq!(e.code(), "zstd", "{e}");
}

#[cfg(feature = "lz4")]
fn lz4_compress(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; lz4_flex::block::get_maximum_output_size(data.len())];
    let n = lz4_flex::block::compress_into(data, &mut out).unwrap();
    out.truncate(n);
    out
}

#[cfg(feature = "lz4")]
#[test]
fn an_lz4_bomb_is_refused_before_it_decompresses_past_the_declared_size() {
    let content = bomb_content();
    let bomb = lz4_compress(&content);
    // LZ4 stops at about 255 to 1.
    assert!(bomb.len() < content.len() / 200, "{}", bomb.len());
    // The header tells the truth: over the limit.
    let e = decode_err(&compressed_frame(
        Compression::Lz4,
        content.len() as u64,
        &bomb,
    ));
    assert_eq!(e.code(), "body_too_large");
    // The header lies small: an LZ4 block does not state its length, so
    // decompression stops when the declared 100 bytes are full.
    let e = decode_err(&compressed_frame(Compression::Lz4, 100, &bomb));
    assert_eq!(e.code(), "decompressed_too_large");
    assert_eq!(
        e.to_string(),
        "the header declares a body of 100 bytes, but its lz4 data decompresses to more"
    );
}

#[cfg(feature = "lz4")]
#[test]
fn an_lz4_body_shorter_than_declared_is_refused() {
    let data = lz4_compress(&[7; 60]);
    let e = decode_err(&compressed_frame(Compression::Lz4, 100, &data));
    assert_eq!(e.code(), "length_mismatch");
    assert_eq!(
        e.to_string(),
        "the header declares a body of 100 bytes, but it is 60 (compression lz4)"
    );
}

#[cfg(feature = "lz4")]
#[test]
fn a_corrupt_lz4_body_is_refused() {
    // One literal "a", then a match at offset 0.
    let e = decode_err(&compressed_frame(Compression::Lz4, 10, &[0x10, b'a', 0, 0]));
    assert_eq!(e.code(), "lz4");
    assert_eq!(
        e.to_string(),
        "lz4: the body of 4 bytes does not decompress (declared 10 bytes): \
         0 is not a valid match offset"
    );
    // A real frame cut short.
    let f = encode(
        "a",
        1,
        &Events::Metrics(every_metric_type()),
        Compression::Lz4,
    )
    .unwrap();
    let e = decode_err(&f[..f.len() - 3]);
    assert_eq!(e.code(), "lz4", "{e}");
}

#[test]
fn any_byte_of_a_compressed_body_corrupted_is_an_error_or_a_batch_never_a_panic() {
    let events = Events::Metrics(every_metric_type());
    for compression in built_in() {
        let f = encode("a", 1, &events, compression).unwrap();
        let header = decode_header(&f).unwrap();
        let compressed_bytes = f.len() - compressed_body_at(&f);
        let mut refused = 0;
        for i in compressed_body_at(&f)..f.len() {
            for flip in [0x01, 0x10, 0xff] {
                let mut f = f.clone();
                f[i] ^= flip;
                if let Ok(batch) = decode(&f, &Limits::default()) {
                    assert_eq!(batch.header, header, "{compression}");
                } else {
                    refused += 1;
                }
            }
        }
        println!(
            "{compression}: {refused} of {} corruptions refused",
            3 * compressed_bytes
        );
        assert!(refused > 0, "{compression}");
    }
}

/// Where a well-formed frame's (compressed) body starts.
fn compressed_body_at(f: &[u8]) -> usize {
    let header = decode_header(f).unwrap();
    // magic, version, flags, signal; agent id; sequence, records and body
    // length as varints.
    let mut at = 7;
    let mut varint = Vec::new();
    put_str(&mut varint, &header.agent_id);
    for n in [header.sequence, header.records, header.body_bytes] {
        put_uvarint(&mut varint, n);
    }
    at += varint.len();
    at
}

#[test]
fn more_records_than_the_limit_are_refused() {
    let f = frame(0, 1_000_001, &[]);
    let limits = Limits {
        max_records: 1_000_000,
        ..Limits::default()
    };
    let e = decode(&f, &limits).unwrap_err();
    assert_eq!(e.code(), "too_many_records");
}

#[test]
fn a_body_of_another_length_than_declared_is_refused() {
    let mut f = frame(0, 1, &body(&["up"], &metrics_section(2, ONE_SERIES)));
    f.push(0);
    assert_eq!(decode_err(&f).code(), "length_mismatch");
    f.truncate(f.len() - 2);
    assert_eq!(decode_err(&f).code(), "length_mismatch");
}

#[test]
fn a_corrupt_snappy_body_is_refused() {
    let mut f = MAGIC.to_vec();
    f.extend([VERSION, 1, 0, 0, 1, 1, 10]);
    f.extend([10, 0xff, 0xff, 0xff]); // claims 10 bytes, then a bad tag
    let e = decode_err(&f);
    assert_eq!(e.code(), "snappy", "{e}");
}

#[test]
fn counts_that_cannot_fit_are_refused() {
    // A dictionary of a million strings in 3 bytes.
    let mut b = Vec::new();
    put_uvarint(&mut b, 1_000_000);
    let e = decode_err(&frame(0, 0, &b));
    assert_eq!(e.code(), "impossible_count");
    assert!(e.to_string().contains("dictionary size"), "{e}");
    // More records than body bytes.
    let e = decode_err(&frame(1, 1000, &body(&[], &[0, 0])));
    assert_eq!(e.code(), "impossible_count");
    // A sample count past the bytes left.
    let series = [1, 0, 0, 0, 200, 0, 0, 0];
    let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, &series))));
    assert_eq!(e.code(), "impossible_count");
    assert!(e.to_string().contains("sample count"), "{e}");
}

#[test]
fn indices_past_their_table_are_refused() {
    let cases: [(&[u8], &str); 4] = [
        (&[1, 5, 0, 0, 1, 0, 0, 0, 0], "series name"),
        (&[1, 0, 3, 0, 1, 0, 0, 0, 0], "series family"),
        (&[1, 0, 0, 1, 1, 0, 0, 0, 0], "series labels"),
        // An exemplar at position 1 of a one-sample series.
        (
            &[1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "exemplar position",
        ),
    ];
    for (series, what) in cases {
        let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, series))));
        assert_eq!(e.code(), "bad_index", "{what}: {e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    // A label pair naming string 9 of a dictionary of 1.
    let e = decode_err(&frame(0, 0, &[1, 1, b'a', 1, 1, 9, 0, 0]));
    assert_eq!(e.code(), "bad_index");
    assert!(
        e.to_string().contains("past the end of its table of 1"),
        "{e}"
    );
}

#[test]
fn unknown_codes_inside_the_body_are_refused() {
    let e = decode_err(&frame(
        0,
        1,
        &body(&["up"], &metrics_section(9, ONE_SERIES)),
    ));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("metric type"), "{e}");
    // A value control byte of 9 significant bytes.
    let series = [1, 0, 0, 0, 1, 0, 0, 0x90, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
    let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, &series))));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("control byte"), "{e}");
    // An exemplar timestamp flag of 2.
    let series = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, &series))));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("exemplar timestamp flag"), "{e}");
    // A value coding of 8.
    let series = [1, 0, 0, 0, 1, 0, 8, 0, 0];
    let e = decode_err(&frame(0, 1, &body(&["up"], &metrics_section(2, &series))));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("value coding"), "{e}");
    // A log severity of 7: base, timestamp, labels, message, severity.
    let e = decode_err(&frame(1, 1, &body(&["m"], &[0, 0, 0, 0, 7, 0])));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("severity"), "{e}");
    // A span status of 3 and a parent flag of 2.
    let span = |parent: u8, status: u8| {
        let mut s = vec![0];
        s.extend([0; 24]);
        s.extend([parent, 0, 0, 0, 0, status, 0]);
        s
    };
    let e = decode_err(&frame(2, 1, &body(&["n"], &span(0, 3))));
    assert_eq!(e.code(), "bad_value");
    assert!(e.to_string().contains("span status"), "{e}");
    let e = decode_err(&frame(2, 1, &body(&["n"], &span(2, 0))));
    assert!(e.to_string().contains("parent flag"), "{e}");
}

#[test]
fn a_record_count_other_than_the_bodys_is_refused() {
    // Declares 2, holds 1.
    let e = decode_err(&frame(
        0,
        2,
        &body(&["up"], &metrics_section(2, ONE_SERIES)),
    ));
    assert_eq!(e.code(), "record_count_mismatch");
    assert!(
        e.to_string()
            .contains("declares 2 records, but the body holds 1"),
        "{e}"
    );
    // Declares 0, a series holds 1.
    let e = decode_err(&frame(
        0,
        0,
        &body(&["up"], &metrics_section(2, ONE_SERIES)),
    ));
    assert_eq!(e.code(), "record_count_mismatch");
}

#[test]
fn a_field_that_is_not_json_is_refused() {
    // One record: base, timestamp, labels, message 0, no severity, one
    // field named 0 with value 1.
    let e = decode_err(&frame(
        1,
        1,
        &body(&["k", "{not json"], &[0, 0, 0, 0, 0, 1, 0, 1]),
    ));
    assert_eq!(e.code(), "bad_json");
    assert!(e.to_string().starts_with("field \"k\""), "{e}");
}

#[test]
fn bytes_after_the_last_record_are_refused() {
    let mut section = metrics_section(2, ONE_SERIES);
    section.push(0);
    let e = decode_err(&frame(0, 1, &body(&["up"], &section)));
    assert_eq!(e.code(), "trailing_bytes");
    assert_eq!(e.to_string(), "1 bytes left over after the end of the body");
}

#[test]
fn every_error_code_is_distinct() {
    let codes = [
        "bad_magic",
        "unsupported_version",
        "reserved_flags",
        "compression_not_built_in",
        "unknown_signal",
        "truncated",
        "bad_varint",
        "bad_utf8",
        "body_too_large",
        "too_many_records",
        "length_mismatch",
        "decompressed_too_large",
        "snappy",
        "zstd",
        "lz4",
        "impossible_count",
        "bad_index",
        "bad_value",
        "record_count_mismatch",
        "bad_json",
        "trailing_bytes",
    ];
    let mut unique = codes.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
}
