//! dlt's `digest128`: the shake-128 digest of a text, `len` bytes, base64 without padding. dlt
//! derives nested rows' `_dlt_id`s (10 bytes) and incremental de-duplication keys (its default,
//! 15 bytes) with it.

use base64::Engine;
use tiny_keccak::{Hasher, Xof};

/// `digest128(text, len)` of the text made of `parts` (joined without separators, so callers
/// need not allocate the text). `len` is at most 32.
pub fn digest128(parts: &[&[u8]], len: usize) -> String {
    let mut h = tiny_keccak::Shake::v128();
    for part in parts {
        h.update(part);
    }
    let mut out = [0u8; 32];
    h.squeeze(&mut out[..len]);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(&out[..len])
}

/// The first `N` bytes of the shake-128 digest of the text made of `parts` (the bytes
/// [`digest128`] encodes).
pub fn shake128<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut h = tiny_keccak::Shake::v128();
    for part in parts {
        h.update(part);
    }
    let mut out = [0u8; N];
    h.squeeze(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dlt() {
        // python: dlt.common.utils.digest128("abc_forums__tags_0", 10) and digest128("5")
        assert_eq!(digest128(&[b"abc_forums__tags_0"], 10), "eUJfyaNS1T1d0Q");
        assert_eq!(digest128(&[b"abc", b"_forums__tags_", b"0"], 10), "eUJfyaNS1T1d0Q");
        assert_eq!(digest128(&[b"5"], 15), "tIXXf9wiHssyAgHEzQnu");
    }
}
