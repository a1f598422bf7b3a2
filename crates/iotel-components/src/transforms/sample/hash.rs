//! The hash `sample` picks records by: fixed, so the choice is the same on
//! every node, across restarts and across versions. Changing it changes
//! which devices a running fleet samples; do not.

/// 64-bit FNV-1a over `bytes`, then MurmurHash3's `fmix64` finalizer so
/// that values differing only in their last bytes (`dev-0001`, `dev-0002`)
/// spread over the whole range, high bits included.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned_so_fleets_keep_sampling_the_same_devices() {
        // FNV-1a of "" is the offset basis; these pin the finalizer too.
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"dev-0001"), 0xe82b_6a15_0715_763d);
    }
}
