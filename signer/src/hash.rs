//! HMAC-SHA256 with keyed states this crate owns, so that every copy of
//! secret material (the padded key, the keyed states, the intermediate keys
//! of a derivation) is wiped when it is dropped.
//!
//! The SHA-256 block function is the `sha2` crate's (with its SHA-NI and
//! assembly paths); the buffering and padding around it are here, so no
//! state the crate cannot reach ever holds key material.

use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// SHA-256 initial hash value.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

type Block = GenericArray<u8, sha2::digest::consts::U64>;

/// Runs the block function over `blocks`, whose length is a multiple of 64.
fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// Hashes `msg` on from `state`, which has already absorbed `prefix_len`
/// bytes (a whole number of blocks), padding included: `state` ends as the
/// digest's words. The padded tail is built in `tail` (zeros on entry),
/// with the whole message when it fits there, so that the block function
/// runs once; returns how many bytes of `tail` were written.
fn absorb_last(state: &mut [u32; 8], prefix_len: u64, msg: &[u8], tail: &mut [Block; 2]) -> usize {
    let total_bits = (prefix_len + msg.len() as u64) * 8;
    // whole blocks that do not fit in `tail` go straight from `msg`
    let mut rest = msg;
    if msg.len() + 9 > 64 * tail.len() {
        let full = msg.len() - msg.len() % 64;
        compress(state, &msg[..full]);
        rest = &msg[full..];
    }
    let blocks = (rest.len() + 9).div_ceil(64);
    let used = &mut tail[..blocks];
    let mut at = 0;
    for (block, chunk) in used.iter_mut().zip(rest.chunks(64)) {
        block[..chunk.len()].copy_from_slice(chunk);
        at += chunk.len();
    }
    used[at / 64][at % 64] = 0x80;
    used[blocks - 1][56..].copy_from_slice(&total_bits.to_be_bytes());
    sha2::compress256(state, used);
    blocks * 64
}

/// The digest bytes of a final state.
fn digest_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state.iter()) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Hashes `msg` on from `state`, which has already absorbed `prefix_len`
/// bytes (a whole number of blocks), for a digest that is secret (a key,
/// or a step of a key derivation): the working state is wiped, and the
/// copy of the message's tail too with `wipe_tail` (the message is key
/// material).
fn hash_from(state: &[u32; 8], prefix_len: u64, msg: &[u8], wipe_tail: bool) -> [u8; 32] {
    let mut st = *state;
    let mut tail = [Block::default(); 2];
    let written = absorb_last(&mut st, prefix_len, msg, &mut tail);
    let out = digest_bytes(&st);
    st.zeroize();
    if wipe_tail {
        for block in &mut tail[..written / 64] {
            block.as_mut_slice().zeroize();
        }
    }
    out
}

/// [`hash_from`] for a public digest of a public message (the signature
/// of a string to sign, and its inner hash): nothing to wipe. The states
/// that hold the key are only ever copied into `st`, which the block
/// function overwrites.
fn public_hash_from(state: &[u32; 8], prefix_len: u64, msg: &[u8]) -> [u8; 32] {
    let mut st = *state;
    let mut tail = [Block::default(); 2];
    absorb_last(&mut st, prefix_len, msg, &mut tail);
    digest_bytes(&st)
}

/// SHA-256 of `data`, which may be key material: nothing of it is left on
/// the stack.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    hash_from(&IV, 0, data, true)
}

/// An HMAC-SHA256 key, ready to use: the hash states after the inner and
/// outer padded key blocks. Wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    /// Keys the HMAC with `key` (of any length).
    pub fn new(key: &[u8]) -> HmacKey {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            let mut h = sha256(key);
            block[..32].copy_from_slice(&h);
            h.zeroize();
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; 64];
        let mut keyed = |x: u8| {
            for (p, b) in pad.iter_mut().zip(block.iter()) {
                *p = b ^ x;
            }
            let mut st = IV;
            compress(&mut st, &pad);
            st
        };
        let inner = keyed(0x36);
        let outer = keyed(0x5c);
        block.zeroize();
        pad.zeroize();
        HmacKey { inner, outer }
    }

    /// HMAC-SHA256 of `msg`. The working states are wiped; the message
    /// (a date, a region, a string to sign: never a secret here) is not.
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut inner = hash_from(&self.inner, 64, msg, false);
        let out = hash_from(&self.outer, 64, &inner, false);
        inner.zeroize();
        out
    }
}

/// An HMAC key with the inner hash carried on over one whole block of
/// message: for the strings to sign of one second, whose first block
/// (algorithm, time and the start of the scope) is the same for every
/// request. The carried state is as secret as the key: wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HmacPrefix {
    block: [u8; 64],
    inner: [u32; 8],
}

impl std::fmt::Debug for HmacPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacPrefix(..)")
    }
}

impl HmacPrefix {
    /// Whether this is the state after `block`.
    pub fn is_for(&self, block: &[u8; 64]) -> bool {
        self.block == *block
    }
}

impl HmacKey {
    /// The inner state after `block`, the first block of messages to come.
    pub fn prefix(&self, block: &[u8; 64]) -> HmacPrefix {
        let mut prefix = HmacPrefix {
            block: *block,
            inner: self.inner,
        };
        compress(&mut prefix.inner, block);
        prefix
    }

    /// [`HmacKey::mac`] of `prefix`'s block followed by `rest`; `prefix`
    /// must have been made by this key.
    ///
    /// This is the signature of a string to sign: neither it nor the inner
    /// hash it is made from is secret (the inner hash gives nothing
    /// without the outer keyed state), so nothing is wiped here.
    pub fn mac_after(&self, prefix: &HmacPrefix, rest: &[u8]) -> [u8; 32] {
        let inner = public_hash_from(&prefix.inner, 128, rest);
        public_hash_from(&self.outer, 64, &inner)
    }
}

/// HMAC-SHA256 of `msg` under `key`, for one-off use (key derivation).
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    HmacKey::new(key).mac(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    #[test]
    fn sha256_matches_sha2_at_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..data.len() {
            assert_eq!(
                sha256(&data[..n]),
                <[u8; 32]>::from(Sha256::digest(&data[..n])),
                "{n}"
            );
        }
    }

    #[test]
    fn a_carried_prefix_gives_the_same_mac() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 11 + 5) as u8).collect();
        let key = HmacKey::new(b"a key of some length");
        let block: [u8; 64] = data[..64].try_into().unwrap();
        let prefix = key.prefix(&block);
        for n in [64, 65, 119, 120, 127, 128, 129, 200, 299] {
            assert_eq!(
                key.mac_after(&prefix, &data[64..n]),
                key.mac(&data[..n]),
                "{n}"
            );
        }
        // it is the state after its own block only
        assert!(prefix.is_for(&block));
        for i in [0, 17, 63] {
            let mut other = block;
            other[i] ^= 1;
            assert!(!prefix.is_for(&other), "{i}");
        }
    }

    #[test]
    fn hmac_matches_the_hmac_crate() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 13 + 1) as u8).collect();
        for key_len in [0, 1, 32, 63, 64, 65, 100, 150] {
            for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 199] {
                let key = &data[..key_len];
                let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
                m.update(&data[..n]);
                let want: [u8; 32] = m.finalize().into_bytes().into();
                assert_eq!(hmac(key, &data[..n]), want, "key {key_len} msg {n}");
            }
        }
    }
}
