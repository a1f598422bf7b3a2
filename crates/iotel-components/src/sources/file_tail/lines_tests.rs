use super::*;
use iotel_engine::ComponentMetrics;
use proptest::prelude::*;

/// A line as the tests compare it: text, start, end, full length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    text: Vec<u8>,
    start: u64,
    end: u64,
    len: u64,
}

impl Got {
    fn of(l: Line<'_>) -> Self {
        Self {
            text: l.bytes.to_vec(),
            start: l.start,
            end: l.end,
            len: l.len,
        }
    }

    fn new(text: &str, start: u64, end: u64) -> Self {
        Self {
            text: text.as_bytes().to_vec(),
            start,
            end,
            len: text.len() as u64,
        }
    }
}

/// Feeds `chunks` one after the other, collecting every line.
fn feed_all(r: &mut LineReader, chunks: &[&[u8]]) -> Vec<Got> {
    let mut got = Vec::new();
    for c in chunks {
        let n = r.feed(c, &mut |l| {
            got.push(Got::of(l));
            ControlFlow::Continue(())
        });
        assert_eq!(n, c.len());
    }
    got
}

#[test]
fn lines_end_at_newline_and_lose_a_carriage_return_before_it() {
    let mut r = LineReader::new(100, 0);
    let got = feed_all(&mut r, &[b"one\r\ntwo\n\r\nthree\r"]);
    assert_eq!(
        got,
        [
            Got::new("one", 0, 5),
            Got::new("two", 5, 9),
            Got::new("", 9, 11)
        ]
    );
    // `three\r` waits; its `\n` arrives in the next read.
    assert!(r.has_partial());
    let got = feed_all(&mut r, &[b"\nfour\n"]);
    assert_eq!(got, [Got::new("three", 11, 18), Got::new("four", 18, 23)]);
    assert!(!r.has_partial());
    assert_eq!(r.offset(), 23);
}

#[test]
fn a_partial_last_line_waits_for_its_newline_across_reads() {
    let mut r = LineReader::new(100, 1000);
    assert_eq!(feed_all(&mut r, &[b"hel", b"lo wor"]), []);
    assert!(r.has_partial());
    assert_eq!(r.offset(), 1009);
    assert_eq!(
        feed_all(&mut r, &[b"ld\nnext"]),
        [Got::new("hello world", 1000, 1012)]
    );
    // At the end of a stream the unterminated line is handed on as it is.
    let mut last = Vec::new();
    r.finish(&mut |l| {
        last.push(Got::of(l));
        ControlFlow::Continue(())
    });
    assert_eq!(last, [Got::new("next", 1012, 1016)]);
    assert!(!r.has_partial());
}

#[test]
fn a_long_line_keeps_max_bytes_and_the_rest_streams_past_without_being_held() {
    let mut r = LineReader::new(1024, 0);
    let chunk = vec![b'x'; 64 * 1024];
    let mut got = Vec::new();
    // 10 MiB of one line, then its newline and a good line.
    for _ in 0..160 {
        assert_eq!(feed_all(&mut r, &[&chunk]), []);
        assert!(r.partial.capacity() <= 2048, "{}", r.partial.capacity());
    }
    got.extend(feed_all(&mut r, &[b"yyy\r\ngood\n"]));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].text, vec![b'x'; 1024]);
    assert_eq!(got[0].len, 10 * 1024 * 1024 + 3);
    assert_eq!(got[0].end, 10 * 1024 * 1024 + 5);
    assert_eq!(
        got[1],
        Got::new("good", 10 * 1024 * 1024 + 5, 10 * 1024 * 1024 + 10)
    );
}

#[test]
fn a_line_of_exactly_max_bytes_is_not_truncated_with_or_without_crlf() {
    let mut r = LineReader::new(4, 0);
    let got = feed_all(&mut r, &[b"abcd\nab", b"cd\r\nabcde\n"]);
    assert_eq!(got[0], Got::new("abcd", 0, 5));
    assert_eq!(got[1], Got::new("abcd", 5, 11));
    assert_eq!(
        got[2],
        Got {
            text: b"abcd".to_vec(),
            start: 11,
            end: 17,
            len: 5
        }
    );
    let lines: Vec<bool> = got.iter().map(|g| g.len > g.text.len() as u64).collect();
    assert_eq!(lines, [false, false, true]);
}

#[test]
fn truncation_cuts_back_to_a_character_boundary() {
    // "é" is two bytes: a limit of 4 would cut "aaa\xC3".
    let mut r = LineReader::new(4, 0);
    let got = feed_all(&mut r, &["aaaé\n".as_bytes()]);
    assert_eq!(got[0].text, b"aaa");
    assert_eq!(got[0].len, 5);
    // The same when the line spans reads.
    let got = feed_all(&mut r, &[b"aa", "aéé\n".as_bytes()]);
    assert_eq!(got[0].text, b"aaa");
    assert_eq!(trim_partial_char(b"ab\xF0\x9F\x98"), b"ab");
    assert_eq!(trim_partial_char(b"ab\xFF"), b"ab\xFF");
    assert_eq!(trim_partial_char("a😀".as_bytes()), "a😀".as_bytes());
}

#[test]
fn feed_stops_after_the_line_for_which_emit_breaks() {
    let mut r = LineReader::new(100, 0);
    let data = b"a\nbb\nccc\n";
    let mut got = Vec::new();
    let n = r.feed(data, &mut |l| {
        got.push(Got::of(l));
        if got.len() == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(n, 5);
    assert_eq!(r.offset(), 5);
    assert_eq!(got, [Got::new("a", 0, 2), Got::new("bb", 2, 5)]);
    // The caller feeds the rest again.
    assert_eq!(feed_all(&mut r, &[&data[n..]]), [Got::new("ccc", 5, 9)]);
}

#[test]
fn reset_forgets_the_partial_line_and_starts_at_the_offset() {
    let mut r = LineReader::new(100, 0);
    feed_all(&mut r, &[b"abc\npartial"]);
    r.reset(4);
    assert!(!r.has_partial());
    assert_eq!(
        feed_all(&mut r, &[b"partial line\n"]),
        [Got::new("partial line", 4, 17)]
    );
}

fn origin(labels: &Labels) -> Origin<'_> {
    Origin {
        name: "/var/log/app.log",
        labels,
        max_line_bytes: 4,
    }
}

#[test]
fn invalid_utf8_is_replaced_flagged_and_counted() {
    let metrics = ComponentMetrics::detached("t", "file_tail");
    let counters = LineCounters::new(&metrics);
    let mut warnings = Warnings::default();
    let labels = Labels::from_pairs([("job", "app")]);
    let now = Instant::now();
    let line = Line {
        bytes: b"ok\xFF\xFEok",
        start: 10,
        end: 17,
        len: 6,
    };
    let r = to_record(line, 5, origin(&labels), &counters, &mut warnings, now);
    assert_eq!(r.message, "ok\u{FFFD}\u{FFFD}ok");
    assert_eq!(r.fields["invalid_utf8"], true);
    assert!(!r.fields.contains_key("truncated"));
    assert_eq!(r.labels, labels);
    assert_eq!(r.timestamp_ns, 5);
    assert_eq!(counters.invalid_utf8.get(), 1);
    assert_eq!(counters.truncated.get(), 0);
    let good = Line {
        bytes: b"fine",
        start: 17,
        end: 22,
        len: 4,
    };
    let r = to_record(good, 5, origin(&labels), &counters, &mut warnings, now);
    assert_eq!(r.message, "fine");
    assert!(r.fields.is_empty());
    assert_eq!(counters.invalid_utf8.get(), 1);
}

#[test]
fn a_truncated_line_is_flagged_and_counted() {
    let metrics = ComponentMetrics::detached("t", "file_tail");
    let counters = LineCounters::new(&metrics);
    let mut warnings = Warnings::default();
    let labels = Labels::empty();
    let line = Line {
        bytes: b"abcd",
        start: 0,
        end: 11,
        len: 10,
    };
    let now = Instant::now();
    let r = to_record(line, 0, origin(&labels), &counters, &mut warnings, now);
    assert_eq!(r.message, "abcd");
    assert_eq!(r.fields["truncated"], true);
    assert_eq!(counters.truncated.get(), 1);
    // Warnings are rate-limited; counting is not.
    to_record(line, 0, origin(&labels), &counters, &mut warnings, now);
    assert_eq!(counters.truncated.get(), 2);
    assert_eq!(warnings.truncated.unsaid, 1);
}

fn rule(pattern: &str, max_lines: usize) -> MultilineRule {
    MultilineRule {
        start: regex::bytes::Regex::new(pattern).unwrap(),
        timeout: Duration::from_secs(1),
        max_lines,
    }
}

/// Feeds `text` through a line reader and `m`, collecting records.
fn join(m: &mut Multiline, r: &mut LineReader, text: &[u8], now: Instant) -> Vec<Got> {
    let mut got = Vec::new();
    let mut emit = |l: Line<'_>| {
        got.push(Got::of(l));
        ControlFlow::Continue(())
    };
    r.feed(text, &mut |l| m.push(l, now, &mut emit));
    got
}

#[test]
fn multiline_joins_continuation_lines_to_the_line_that_starts_a_record() {
    let mut m = Multiline::new(rule(r"^\d{4}-", 100), 1000);
    let mut r = LineReader::new(1000, 0);
    let t0 = Instant::now();
    let text = b"2024-01-01 boom\n  at a()\n  at b()\n2024-01-01 next\n";
    let got = join(&mut m, &mut r, text, t0);
    assert_eq!(
        got,
        [Got::new("2024-01-01 boom\n  at a()\n  at b()", 0, 34)]
    );
    // The second record waits for a line that starts the next one, or
    // for its timeout.
    assert!(m.is_pending());
    let flush_at = |m: &mut Multiline, at: Instant| {
        let mut flushed = Vec::new();
        let _ = m.flush_due(at, &mut |l: Line<'_>| {
            flushed.push(Got::of(l));
            ControlFlow::Continue(())
        });
        flushed
    };
    assert_eq!(flush_at(&mut m, t0 + Duration::from_millis(999)), []);
    assert_eq!(
        flush_at(&mut m, t0 + Duration::from_secs(1)),
        [Got::new("2024-01-01 next", 34, 50)]
    );
    assert!(!m.is_pending());
}

#[test]
fn multiline_hands_on_a_record_at_max_lines() {
    let mut m = Multiline::new(rule("^start", 2), 1000);
    let mut r = LineReader::new(1000, 0);
    let got = join(&mut m, &mut r, b"start\na\nb\nc\n", Instant::now());
    assert_eq!(got, [Got::new("start\na", 0, 8), Got::new("b\nc", 8, 12)]);
}

#[test]
fn multiline_record_is_held_to_max_bytes_and_flagged_truncated() {
    let mut m = Multiline::new(rule("^start", 100), 8);
    let mut r = LineReader::new(8, 0);
    let got = join(
        &mut m,
        &mut r,
        b"start\nabcdef\nxy\nstart\n",
        Instant::now(),
    );
    assert_eq!(
        got,
        [Got {
            text: b"start\nab".to_vec(),
            start: 0,
            end: 16,
            len: 15
        }]
    );
}

/// The lines of `data` as a plain split would give them: every `\n`-ended
/// piece, `\r` before `\n` dropped, clipped to `max`.
fn reference_split(data: &[u8], max: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            let piece = &data[start..i];
            let full = piece.strip_suffix(b"\r").unwrap_or(piece);
            got.push(Got {
                text: clip(full, max).to_vec(),
                start: start as u64,
                end: i as u64 + 1,
                len: full.len() as u64,
            });
            start = i + 1;
        }
    }
    got
}

proptest! {
    #[test]
    fn random_chunk_boundaries_give_the_same_lines_as_a_plain_split(
        data in proptest::collection::vec(
            prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'z'),
                Just(0xC3u8), Just(0xA9u8), Just(0xFFu8),
            ],
            0..400,
        ),
        cuts in proptest::collection::vec(0usize..400, 0..20),
        max in 1usize..40,
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
        cuts.push(0);
        cuts.push(data.len());
        cuts.sort_unstable();
        let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
        let mut r = LineReader::new(max, 0);
        let got = feed_all(&mut r, &chunks);
        prop_assert_eq!(got, reference_split(&data, max));
        let tail = data.len() - data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        prop_assert_eq!(r.has_partial(), tail > 0);
        prop_assert_eq!(r.offset(), data.len() as u64);
    }
}
