//! Deterministic trace and span ids for device protocols that carry no trace
//! header: every hop that sees one message (the device's log, the broker's,
//! the gateway's, the network server's) derives the same 16-byte trace id
//! from the message's protocol identifiers, so the hops line up in one trace
//! without the device doing anything.
//!
//! # Derivation (version 1)
//!
//! ```text
//! trace input = "iotel-trace-v1" 0x00 protocol 0x00 key scope bucket
//! trace id    = SHA-256(trace input)[0..16]      (next 16 bytes if all zero)
//! span input  = "iotel-span-v1" 0x00 trace id  len32(hop) hop
//! span id     = SHA-256(span input)[0..8]        (next 8 bytes if all zero)
//! ```
//!
//! `protocol` is `lorawan`, `coap` or `mqtt`; every variable-length part is
//! prefixed by its length as a big-endian u32 (`len32`), every number is
//! big-endian, optional parts carry a 0/1 tag byte, so no two different
//! inputs encode to the same bytes. The version in the prefix changes
//! whenever anything here changes; the known-answer tests in `tests.rs` pin
//! version 1, so it can never change silently. W3C Trace Context forbids
//! all-zero ids: when the first bytes of the digest are all zero (a chance
//! of 2^-128 for a trace id), the next bytes are taken, and should those be
//! zero too the last byte is set to 1.
//!
//! ```text
//! key, lorawan = DevAddr u32 · FCnt width u8 (16 | 32) · FCnt u32 (masked
//!                to the width) · DevEUI tag (0 | 1 + 8 bytes)
//! key, coap    = len32(endpoint) endpoint · len8(token) token (0-8 bytes) ·
//!                Message ID u16
//! key, mqtt    = len32(client id) client id · Packet Identifier u16 (1-65535)
//! scope        = len32(scope) scope   (empty when not set)
//! bucket       = 0 | 1 + width ns u64 + index i64  (see below)
//! ```
//!
//! # What identifies one message
//!
//! - **LoRaWAN uplink**: DevAddr + FCntUp. On air the frame counter has 16
//!   bits; the device and the network server know the full 32-bit counter,
//!   a gateway only the low 16. Choose the width every hop can see
//!   ([`FcntBits::Low16`] when a gateway's packet forwarder logs are a hop).
//!   DevAddr is not unique: a network server may give one DevAddr to several
//!   devices (it tells them apart by the MIC), another network may use the
//!   same one, and a rejoin gets a new DevAddr and restarts FCnt at 0 (an ABP
//!   device may restart FCnt at every reboot). So add the DevEUI when every
//!   hop knows it (device, network and application server do; a gateway
//!   does not), the network or tenant as `scope`, and a time bucket.
//! - **CoAP**: endpoint + token + Message ID. The Message ID has 16 bits and
//!   is unique per endpoint only within EXCHANGE_LIFETIME (247 s, RFC 7252
//!   §4.8.2); the token has 0-8 bytes and may be empty. The endpoint must be
//!   a value every hop logs alike: the device's id, or the client's address
//!   as the server sees it (which a NAT rebinding changes).
//! - **MQTT**: client id + Packet Identifier. Only QoS 1 and 2 publishes have
//!   one; it is freed by the acknowledgement and reused. The broker gives the
//!   message a new Packet Identifier towards each subscriber, so this lines
//!   up the device's and the broker's ingress hops (and the hops that log the
//!   publisher's id); a subscriber's side has another id and lines up only
//!   with its own hops. QoS 0 messages have no id and cannot be mapped.
//!
//! # Collision analysis
//!
//! Two distinct messages get one trace id in two ways:
//!
//! 1. **By the hash**: 128 bits, so among n messages in the window a trace
//!    search looks at, the chance of any collision is at most n²/2^129: for
//!    a billion messages (10^9) 1.5·10^-21. Negligible; so is a span id
//!    collision within one trace (a few hops, 64 bits).
//! 2. **By reused identifiers**: the real risk. The counters wrap:
//!
//!    | scheme | id space per source | wraps after, at 1 msg/s | at 10 msg/s |
//!    |---|---|---|---|
//!    | MQTT packet id | 65,535 | 18.2 h | 1.8 h |
//!    | CoAP Message ID | 65,536 | 18.2 h | 1.8 h |
//!    | LoRaWAN FCnt, 16 bits | 65,536 | 18.2 h (45.5 days at 1 msg/min) | — (duty cycle) |
//!    | LoRaWAN FCnt, 32 bits | 2^32 | 136 years | — |
//!
//!    and some are reused long before: an MQTT client that takes the lowest
//!    free id uses the same id for every message when only one is in flight;
//!    a rejoin or an ABP reboot restarts FCnt. So a **time bucket** is part
//!    of the input: `index = floor(record time / width)`. Within one bucket
//!    a source with an incrementing counter collides only when it sends more
//!    than the id space per bucket (with the default 1 h: more than 18.2
//!    msg/s for MQTT and CoAP, more than 18.2 msg/s on 16-bit FCnt). The
//!    price: hops whose record times straddle a bucket boundary get
//!    different trace ids. The chance of that is the spread of the hops'
//!    times over the width: for 1 s of spread and 1 h buckets, 1/3600 =
//!    0.028% of messages are split in two traces. The spread includes the
//!    hops' clock errors: a device whose log times are 30 s off splits 0.8%
//!    of its messages, one whose clock is off by more than the width never
//!    lines up (give its hops the receiving side's time, or correct its
//!    spans' times first). A shorter width lowers
//!    collisions and raises splits; a client that reuses one id for every
//!    message needs a width below its message interval, or it cannot be
//!    mapped at all.
//!
//! The module is pure: no clock, no I/O.

#[cfg(test)]
mod tests;

use sha2::{Digest, Sha256};
use std::num::{NonZeroU16, NonZeroU64};

/// The prefix of every trace id's input; the version changes with the
/// derivation.
pub const TRACE_DOMAIN: &[u8] = b"iotel-trace-v1\0";
/// The prefix of every span id's input.
pub const SPAN_DOMAIN: &[u8] = b"iotel-span-v1\0";

/// The frame counter width every hop of a LoRaWAN uplink can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FcntBits {
    /// The 16 bits on air: what a gateway sees.
    #[default]
    Low16,
    /// The full 32-bit counter the device and the network server keep.
    Full32,
}

impl FcntBits {
    fn width(self) -> u8 {
        match self {
            FcntBits::Low16 => 16,
            FcntBits::Full32 => 32,
        }
    }

    fn mask(self, fcnt: u32) -> u32 {
        match self {
            FcntBits::Low16 => fcnt & 0xffff,
            FcntBits::Full32 => fcnt,
        }
    }
}

/// A CoAP token: 0 to 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoapToken {
    len: u8,
    bytes: [u8; 8],
}

impl CoapToken {
    /// The token, or `None` past 8 bytes (RFC 7252 §3: TKL 9-15 are
    /// reserved).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len()).ok().filter(|l| *l <= 8)?;
        let mut t = CoapToken { len, bytes: [0; 8] };
        t.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(t)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// What identifies one message of a device protocol (see the module docs
/// for what each lines up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKey<'a> {
    /// A LoRaWAN uplink.
    Lorawan {
        dev_addr: u32,
        fcnt: u32,
        fcnt_bits: FcntBits,
        dev_eui: Option<[u8; 8]>,
    },
    /// A CoAP request or response.
    Coap {
        endpoint: &'a str,
        token: CoapToken,
        message_id: u16,
    },
    /// An MQTT publish of QoS 1 or 2.
    Mqtt {
        client_id: &'a str,
        packet_id: NonZeroU16,
    },
}

impl MessageKey<'_> {
    /// `lorawan`, `coap` or `mqtt`: the protocol's name in the input.
    pub fn protocol(&self) -> &'static str {
        match self {
            MessageKey::Lorawan { .. } => "lorawan",
            MessageKey::Coap { .. } => "coap",
            MessageKey::Mqtt { .. } => "mqtt",
        }
    }
}

/// A coarse time window that is part of the trace id's input, so that
/// reused protocol identifiers in different windows give different traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBucket {
    pub width_ns: NonZeroU64,
    pub index: i64,
}

impl TimeBucket {
    /// The bucket holding `time_ns` (floor division, so times before 1970
    /// fall in negative buckets).
    pub fn of(time_ns: i64, width_ns: NonZeroU64) -> Self {
        let w = i128::from(width_ns.get());
        let index = i128::from(time_ns).div_euclid(w);
        // |index| <= |time_ns| since w >= 1: it fits.
        TimeBucket {
            width_ns,
            index: i64::try_from(index).unwrap_or(i64::MAX),
        }
    }
}

/// What besides the message key tells messages apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Discriminator<'a> {
    /// A namespace every hop knows alike: a tenant, a LoRaWAN network, a
    /// broker. Empty when not used.
    pub scope: &'a str,
    pub bucket: Option<TimeBucket>,
}

fn put_len32(h: &mut Sha256, bytes: &[u8]) {
    // Lengths past 4 GiB cannot occur for in-memory record fields; saturate
    // rather than fail.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(bytes);
}

/// The message's trace id (see the module docs for the input).
pub fn trace_id(key: &MessageKey<'_>, d: &Discriminator<'_>) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(TRACE_DOMAIN);
    h.update(key.protocol().as_bytes());
    h.update([0]);
    match key {
        MessageKey::Lorawan {
            dev_addr,
            fcnt,
            fcnt_bits,
            dev_eui,
        } => {
            h.update(dev_addr.to_be_bytes());
            h.update([fcnt_bits.width()]);
            h.update(fcnt_bits.mask(*fcnt).to_be_bytes());
            match dev_eui {
                None => h.update([0]),
                Some(eui) => {
                    h.update([1]);
                    h.update(eui);
                }
            }
        }
        MessageKey::Coap {
            endpoint,
            token,
            message_id,
        } => {
            put_len32(&mut h, endpoint.as_bytes());
            h.update([token.len]);
            h.update(token.as_bytes());
            h.update(message_id.to_be_bytes());
        }
        MessageKey::Mqtt {
            client_id,
            packet_id,
        } => {
            put_len32(&mut h, client_id.as_bytes());
            h.update(packet_id.get().to_be_bytes());
        }
    }
    put_len32(&mut h, d.scope.as_bytes());
    match d.bucket {
        None => h.update([0]),
        Some(b) => {
            h.update([1]);
            h.update(b.width_ns.get().to_be_bytes());
            h.update(b.index.to_be_bytes());
        }
    }
    non_zero(&h.finalize())
}

/// The span id of hop `hop` (a name every record of that hop shares, such
/// as `device`, `gateway`, `network_server`) in trace `trace_id`.
pub fn span_id(trace_id: &[u8; 16], hop: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(SPAN_DOMAIN);
    h.update(trace_id);
    put_len32(&mut h, hop.as_bytes());
    non_zero(&h.finalize())
}

/// The first N bytes of `digest` that are not all zero, N at most 16.
fn non_zero<const N: usize>(digest: &[u8]) -> [u8; N] {
    let mut id = [0u8; N];
    for chunk in digest.chunks_exact(N) {
        id.copy_from_slice(chunk);
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
    id[N - 1] = 1;
    id
}

/// Lowercase hex, as trace ids are written in fields.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Hex digits (either case; `-`, `:` and spaces between them ignored, as
/// EUIs are often written `70-B3-D5-7E-D0-00-12-34`) into exactly N bytes.
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b'-' | b':' | b' '))
        .collect();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Hex digits of any even count up to 16 into a CoAP token (`""` is the
/// empty token).
pub fn parse_token(s: &str) -> Option<CoapToken> {
    if !s.len().is_multiple_of(2) || s.len() > 16 {
        return None;
    }
    let mut bytes = Vec::with_capacity(s.len() / 2);
    for pair in s.as_bytes().chunks_exact(2) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        bytes.push(u8::try_from(hi * 16 + lo).ok()?);
    }
    CoapToken::new(&bytes)
}
