//! Why a header did not parse: what was wrong and where.

/// A propagation header or binary value that does not follow its format.
///
/// Positions (`at`) are byte offsets into the value as received, after the
/// optional whitespace a format allows around it was removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The carrier has no such header / property / field.
    #[error("no `{header}` in the carrier")]
    Missing { header: &'static str },
    /// A header that must appear once appeared several times.
    #[error("`{header}` appears {count} times, expected once")]
    Duplicate { header: &'static str, count: usize },
    /// A part of the value has the wrong length.
    #[error("{what}: expected {expected}, found {found}")]
    Length {
        what: &'static str,
        expected: &'static str,
        found: usize,
    },
    /// A character that the format does not allow at this place.
    #[error("{what}: invalid character {found:?} at byte {at}, expected {expected}")]
    InvalidChar {
        what: &'static str,
        at: usize,
        found: char,
        expected: &'static str,
    },
    /// An all-zero trace or span id, which every format reserves as invalid.
    #[error("{what} is all zeros, which is invalid")]
    ZeroId { what: &'static str },
    /// `traceparent` version `ff`, forbidden by W3C Trace Context.
    #[error("traceparent version ff is invalid")]
    ForbiddenVersion,
    /// A `tracestate` list member that is not `key=value`.
    #[error("tracestate member {index}: {reason} in {member:?}")]
    TraceStateMember {
        index: usize,
        member: String,
        reason: &'static str,
    },
    /// The same `tracestate` key twice.
    #[error("tracestate key {key:?} appears more than once")]
    TraceStateDuplicateKey { key: String },
    /// More than 32 `tracestate` list members.
    #[error("tracestate has {count} list members, at most 32 are allowed")]
    TraceStateTooLong { count: usize },
    /// A B3 sampling state other than `0`, `1`, `d` (or `true`/`false` in
    /// `X-B3-Sampled`).
    #[error("b3 sampling state {found:?} is not one of 0, 1, d")]
    B3Sampling { found: String },
    /// A B3 header with ids but without a span id or trace id.
    #[error("b3: {0}")]
    B3Incomplete(&'static str),
    /// A `grpc-trace-bin` value of another version than 0.
    #[error("grpc-trace-bin version {found} is not supported (only 0)")]
    BinaryVersion { found: u8 },
    /// A `grpc-trace-bin` value that is cut short or has fields out of order.
    #[error("grpc-trace-bin at byte {at}: {reason}")]
    Binary { at: usize, reason: &'static str },
    /// An MQTT 3.1.1 JSON envelope that is not a JSON object or whose trace
    /// fields are not strings.
    #[error("json envelope: {0}")]
    Envelope(&'static str),
}

impl ParseError {
    /// A stable short name for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing",
            Self::Duplicate { .. } => "duplicate",
            Self::Length { .. } => "length",
            Self::InvalidChar { .. } => "invalid_char",
            Self::ZeroId { .. } => "zero_id",
            Self::ForbiddenVersion => "forbidden_version",
            Self::TraceStateMember { .. } => "tracestate_member",
            Self::TraceStateDuplicateKey { .. } => "tracestate_duplicate_key",
            Self::TraceStateTooLong { .. } => "tracestate_too_long",
            Self::B3Sampling { .. } => "b3_sampling",
            Self::B3Incomplete(_) => "b3_incomplete",
            Self::BinaryVersion { .. } => "binary_version",
            Self::Binary { .. } => "binary",
            Self::Envelope(_) => "envelope",
        }
    }
}
