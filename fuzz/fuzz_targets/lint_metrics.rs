//! Feeds arbitrary bytes to the exposition linter, in both formats: it must
//! not panic, and how the body is cut into chunks must not change its
//! report.

#![no_main]

use iotel_formats::prometheus::Format;
use iotel_formats::prometheus::lint::{LintOptions, Linter, lint_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the body is cut; the rest is the body.
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) % (body.len() + 1);
    for format in [Format::Text, Format::OpenMetrics] {
        let whole = lint_bytes(body, LintOptions::new(format));
        let mut linter = Linter::new(LintOptions::new(format));
        linter.feed(&body[..cut]);
        linter.feed(&body[cut..]);
        let chunked = linter.finish();
        assert_eq!(whole.findings, chunked.findings);
        assert_eq!(whole.families, chunked.families);
        assert_eq!(
            (whole.errors, whole.warnings, whole.lines, whole.samples),
            (chunked.errors, chunked.warnings, chunked.lines, chunked.samples)
        );
        for f in &whole.findings {
            assert!(f.line >= 1 && f.column >= 1);
        }
    }
});
