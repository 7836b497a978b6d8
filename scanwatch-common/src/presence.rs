//! Block presence bitmap: which parts of the address space hold any block at all, so the drop
//! check of a source with no block anywhere near it costs one array lookup instead of a hash
//! lookup in `BLOCKS` and a trie walk in `BLOCKLIST`.
//!
//! One bit per IPv4 /24 (2^24 bits, 2 MiB) and one bit per hashed IPv6 /48 (2^20 bits,
//! 128 KiB), as `u64` words of one BPF array. A clear bit means no block covers any source that
//! maps to it; a set bit only means "look it up". User space keeps the bits a superset of the
//! blocks: it sets a prefix's bits *before* writing the prefix's block entry, and clears bits
//! only when rebuilding from both block maps. Extra bits cost time, never a missed drop.
//!
//! Prefixes shorter than the bit granularity set every bit they cover: an IPv4 /8 sets 65536
//! bits (1024 whole words); an IPv6 prefix shorter than /48 sets every IPv6 bit (the hash
//! scatters its /48s), so while one is loaded every IPv6 source takes the full lookup. A prefix
//! that covers the v4-mapped range `::ffff:0:0/96` (e.g. `::/0`) sets every IPv4 bit too.
//!
//! The IPv6 hash is unseeded so the daemon and the control CLI agree without sharing a seed; a
//! sender that picks addresses colliding with a blocked /48 only buys itself the full lookup.

use crate::{
    addr::{SourceKey, V4_MAPPED_PREFIX, mask_words},
    hash::fmix32,
};

/// Bits for IPv4: one per /24.
pub const V4_BITS: u32 = 1 << 24;
/// Bits for IPv6: one per hashed /48.
pub const V6_BITS: u32 = 1 << 20;
/// Words of the IPv4 part (first in the array).
pub const V4_WORDS: u32 = V4_BITS / 64;
/// Words of the IPv6 part (after the IPv4 part).
pub const V6_WORDS: u32 = V6_BITS / 64;
/// Bitmap words of the presence array: 278528 × 8 bytes = 2.125 MiB.
pub const PRESENCE_WORDS: u32 = V4_WORDS + V6_WORDS;
/// The word after the bitmap: the block-list generation, bumped by user space after every
/// change to `BLOCKLIST`; entries of `BLOCK_CACHE` from another generation are ignored.
pub const GENERATION_WORD: u32 = PRESENCE_WORDS;
/// Entries of the presence array: the bitmap and the generation.
pub const PRESENCE_ENTRIES: u32 = PRESENCE_WORDS + 1;
/// Bytes user space maps: the array rounded up to whole pages, as the kernel allocates a
/// memory-mappable array.
pub const PRESENCE_MMAP_BYTES: usize = (PRESENCE_ENTRIES as usize * 8).div_ceil(4096) * 4096;
/// The shortest IPv6 prefix the IPv6 bits resolve; shorter ones set every IPv6 bit.
pub const V6_BIT_PREFIX: u32 = 48;

/// Word index and bit mask of the IPv4 /24 holding `addr` (a v4-mapped key).
#[inline(always)]
pub const fn v4_bit(addr: &SourceKey) -> (u32, u64) {
    let a = &addr.addr;
    let slash24 = ((a[12] as u32) << 16) | ((a[13] as u32) << 8) | a[14] as u32;
    (slash24 >> 6, 1 << (slash24 & 63))
}

/// Word index and bit mask of the hashed IPv6 /48 holding `addr`.
#[inline(always)]
pub const fn v6_bit(addr: &SourceKey) -> (u32, u64) {
    let [hi, _] = mask_words(addr.words(), V6_BIT_PREFIX);
    let h = fmix32((hi ^ (hi >> 32)) as u32) & (V6_BITS - 1);
    (V4_WORDS + (h >> 6), 1 << (h & 63))
}

/// True when the first `bits` bits of `a` and `b` agree.
fn same_prefix(a: &[u8; 16], b: &[u8; 16], bits: u32) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rest = bits % 8;
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// The words a prefix's bits lie in, each with the mask of its bits: a run of words for the
/// IPv4 part and one for the IPv6 part. Iterate with [`PrefixBits::for_each`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixBits {
    /// IPv4 words `first..first + count`, each with `mask`.
    v4: Option<(u32, u32, u64)>,
    v6: Option<V6Bits>,
}

/// The IPv6 bits of a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V6Bits {
    /// One word and mask: the hashed /48 of a prefix of /48 or longer.
    One((u32, u64)),
    /// Every IPv6 bit: a prefix shorter than /48.
    All,
}

impl PrefixBits {
    /// The bits covering `addr/prefix_len` (16-byte address, IPv6-terms length as in the
    /// block trie: IPv4 as v4-mapped, length + 96). A per-source block key is `/128`.
    pub fn of(addr: &[u8; 16], prefix_len: u32) -> Self {
        let len = prefix_len.min(128);
        let key = SourceKey { addr: *addr };
        let mut mapped = [0u8; 16];
        mapped[..12].copy_from_slice(&V4_MAPPED_PREFIX);
        if len >= 96 && same_prefix(addr, &mapped, 96) {
            return Self {
                v4: Some(v4_words(&key, len - 96)),
                v6: None,
            };
        }
        let v6 = if len >= V6_BIT_PREFIX {
            V6Bits::One(v6_bit(&key))
        } else {
            V6Bits::All
        };
        // A shorter prefix that covers the whole v4-mapped range covers every IPv4 source.
        let v4 = same_prefix(addr, &mapped, len).then_some((0, V4_WORDS, u64::MAX));
        Self { v4, v6: Some(v6) }
    }

    /// Calls `f(word, mask)` for every word holding bits of the prefix.
    pub fn for_each(&self, mut f: impl FnMut(u32, u64)) {
        if let Some((first, count, mask)) = self.v4 {
            for w in first..first + count {
                f(w, mask);
            }
        }
        match self.v6 {
            Some(V6Bits::All) => {
                for w in V4_WORDS..PRESENCE_WORDS {
                    f(w, u64::MAX);
                }
            }
            Some(V6Bits::One((word, mask))) => f(word, mask),
            None => {}
        }
    }
}

/// IPv4 `addr/len` (len 0..=32) as a run of words: (first word, word count, mask per word).
fn v4_words(addr: &SourceKey, len: u32) -> (u32, u32, u64) {
    if len >= 24 {
        let (word, mask) = v4_bit(addr);
        return (word, 1, mask);
    }
    let net = u32::from_be_bytes([addr.addr[12], addr.addr[13], addr.addr[14], addr.addr[15]]);
    let net = if len == 0 {
        0
    } else {
        net & (u32::MAX << (32 - len))
    };
    let first_bit = net >> 8;
    let bits = 1u32 << (24 - len);
    if bits >= 64 {
        (first_bit >> 6, bits / 64, u64::MAX)
    } else {
        let mask = ((1u64 << bits) - 1) << (first_bit & 63);
        (first_bit >> 6, 1, mask)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn words(addr: [u8; 16], len: u32) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        PrefixBits::of(&addr, len).for_each(|w, m| out.push((w, m)));
        out
    }

    fn covers(addr: [u8; 16], len: u32, source: &SourceKey, ipv4: bool) -> bool {
        let (word, mask) = if ipv4 { v4_bit(source) } else { v6_bit(source) };
        words(addr, len)
            .iter()
            .any(|(w, m)| *w == word && m & mask != 0)
    }

    fn v4(a: [u8; 4]) -> SourceKey {
        SourceKey::from_ipv4(a)
    }

    #[test]
    fn ipv4_host_and_slash24_set_one_bit() {
        let src = v4([192, 0, 2, 77]);
        assert_eq!(words(v4([192, 0, 2, 1]).addr, 128), [v4_bit(&src)]);
        assert_eq!(words(v4([192, 0, 2, 0]).addr, 120), [v4_bit(&src)]);
        assert!(!covers(v4([192, 0, 3, 0]).addr, 120, &src, true));
    }

    #[test]
    fn short_ipv4_prefixes_cover_every_slash24_inside() {
        // /20: 16 bits in one word; /8: 1024 whole words.
        let w20 = words(v4([198, 51, 96, 0]).addr, 96 + 20);
        assert_eq!(w20.len(), 1);
        assert_eq!(w20[0].1.count_ones(), 16);
        let w8 = words(v4([10, 0, 0, 0]).addr, 96 + 8);
        assert_eq!(w8.len(), 1024);
        for a in [[10, 0, 0, 1], [10, 255, 255, 255], [10, 77, 3, 9]] {
            assert!(
                covers(v4([10, 0, 0, 0]).addr, 96 + 8, &v4(a), true),
                "{a:?}"
            );
        }
        assert!(!covers(
            v4([10, 0, 0, 0]).addr,
            96 + 8,
            &v4([11, 0, 0, 0]),
            true
        ));
        for len in 0..=32u32 {
            let src = v4([203, 0, 113, 200]);
            assert!(covers(src.addr, 96 + len, &src, true), "/{len}");
        }
    }

    #[test]
    fn ipv6_slash64_sets_its_slash48_bit() {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0x5c, 0xa7, 0, 1]);
        let mut src = a;
        src[15] = 0x10;
        src[7] = 0x99; // same /48, another /64
        assert!(covers(a, 64, &SourceKey { addr: src }, false));
        assert_eq!(words(a, 64).len(), 1);
    }

    #[test]
    fn ipv6_shorter_than_48_sets_every_ipv6_bit_and_no_ipv4_bit() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let w = words(a, 32);
        assert_eq!(w.len(), V6_WORDS as usize);
        assert!(w.iter().all(|(i, m)| *i >= V4_WORDS && *m == u64::MAX));
    }

    #[test]
    fn prefixes_covering_v4_mapped_range_set_ipv4_bits() {
        let any = [0u8; 16];
        assert!(covers(any, 0, &v4([1, 2, 3, 4]), true));
        assert!(covers(any, 80, &v4([1, 2, 3, 4]), true));
        // ::ffff:0:0/96 is every IPv4 source.
        assert!(covers(v4([0, 0, 0, 0]).addr, 96, &v4([9, 9, 9, 9]), true));
        // 2001:db8::/32 covers no IPv4 source.
        let doc = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(!covers(doc, 32, &v4([1, 2, 3, 4]), true));
    }

    #[test]
    fn layout_is_whole_pages() {
        assert_eq!(PRESENCE_MMAP_BYTES, PRESENCE_WORDS as usize * 8 + 4096);
        let (w, _) = v6_bit(&SourceKey { addr: [0xff; 16] });
        assert!((V4_WORDS..PRESENCE_WORDS).contains(&w));
        let (w, _) = v4_bit(&v4([255, 255, 255, 255]));
        assert_eq!(w, V4_WORDS - 1);
    }
}
