//! Source keys: every address is stored as 16 bytes (IPv4 as v4-mapped IPv6), and IPv6 sources
//! are aggregated to a prefix because IPv6 scanners rotate addresses inside their /64.

/// The key of the per-source tracker: a 16-byte address, IPv4 v4-mapped (`::ffff:a.b.c.d`),
/// IPv6 masked to the configured prefix length. Also the kernel's in-memory address type.
///
/// 8-byte aligned so the kernel program moves, compares and hashes it as two 64-bit words
/// rather than sixteen bytes (the BPF backend splits unaligned copies into byte operations).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceKey {
    pub addr: [u8; 16],
}

/// The 12-byte prefix of a v4-mapped IPv6 address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Default IPv6 aggregation prefix (/64: one subnet, the unit a scanner rotates inside).
pub const DEFAULT_IPV6_PREFIX_LEN: u32 = 64;

/// Default wide IPv6 level (/48: a site's allocation), counted beside the first level so a
/// scanner rotating /64s inside its /48 is seen as one source.
pub const DEFAULT_IPV6_WIDE_PREFIX_LEN: u32 = 48;

/// Longest wide prefix: the key's last byte must be masked off to hold the marker.
pub const MAX_IPV6_WIDE_PREFIX_LEN: u32 = 120;

/// High bit of a wide key's last byte; the low seven bits hold its prefix length. A first-level
/// key (prefix at most 120) always has a zero last byte, so a wide key never equals one.
pub const WIDE_MARKER: u8 = 0x80;

impl SourceKey {
    /// Key for an IPv4 source given in network byte order.
    #[inline(always)]
    pub const fn from_ipv4(octets: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12] = octets[0];
        addr[13] = octets[1];
        addr[14] = octets[2];
        addr[15] = octets[3];
        Self { addr }
    }

    /// Key for an IPv6 source aggregated to `prefix_len` bits (clamped to 1..=128).
    #[inline(always)]
    pub fn from_ipv6(octets: [u8; 16], prefix_len: u32) -> Self {
        Self {
            addr: mask_ipv6(octets, prefix_len),
        }
    }

    /// The address as two words, in memory order (each word holds 8 address bytes as they lie
    /// in memory, so on little-endian machines byte 0 is the word's low byte).
    #[inline(always)]
    pub const fn words(&self) -> [u64; 2] {
        // SAFETY: [u8; 16] and [u64; 2] have the same size; every bit pattern is valid.
        unsafe { core::mem::transmute::<[u8; 16], [u64; 2]>(self.addr) }
    }

    /// A key from two words in memory order (see [`SourceKey::words`]).
    #[inline(always)]
    pub const fn from_words(words: [u64; 2]) -> Self {
        // SAFETY: as in `words`.
        Self {
            addr: unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(words) },
        }
    }

    /// Key for an IPv4 address loaded as a `u32` straight from packet memory (network order
    /// in memory): the v4-mapped words, with no byte shuffling.
    #[inline(always)]
    pub const fn from_ipv4_word(raw: u32) -> Self {
        let mut bytes = [0u8; 8];
        bytes[2] = 0xff;
        bytes[3] = 0xff;
        let raw = raw.to_ne_bytes();
        bytes[4] = raw[0];
        bytes[5] = raw[1];
        bytes[6] = raw[2];
        bytes[7] = raw[3];
        Self::from_words([0, u64::from_ne_bytes(bytes)])
    }

    /// Key for an IPv6 address given as words in memory order, aggregated to `prefix_len`.
    #[inline(always)]
    pub const fn from_ipv6_words(words: [u64; 2], prefix_len: u32) -> Self {
        Self::from_words(mask_words(words, prefix_len))
    }

    /// Wide-level key for an IPv6 address (given as words in memory order): masked to
    /// `prefix_len` (clamped to 1..=[`MAX_IPV6_WIDE_PREFIX_LEN`]) with [`WIDE_MARKER`] and the
    /// length in the last byte, which the mask has zeroed. It can therefore never equal a
    /// first-level key, whatever the two prefix lengths, and names its own prefix length.
    #[inline(always)]
    pub const fn wide_from_ipv6_words(words: [u64; 2], prefix_len: u32) -> Self {
        let len = if prefix_len == 0 {
            1
        } else if prefix_len > MAX_IPV6_WIDE_PREFIX_LEN {
            MAX_IPV6_WIDE_PREFIX_LEN
        } else {
            prefix_len
        };
        let [hi, lo] = mask_words(words, len);
        let mut marker = [0u8; 8];
        marker[7] = WIDE_MARKER | len as u8;
        Self::from_words([hi, lo | u64::from_ne_bytes(marker)])
    }

    /// [`SourceKey::wide_from_ipv6_words`] for an address given as bytes.
    #[inline(always)]
    pub fn wide_from_ipv6(octets: [u8; 16], prefix_len: u32) -> Self {
        Self::wide_from_ipv6_words(SourceKey { addr: octets }.words(), prefix_len)
    }

    /// The prefix (address bytes with the marker cleared, and its length) of a wide-level key;
    /// `None` for a key that is not one (no marker, or bits set beyond the prefix).
    pub fn wide_prefix(&self) -> Option<([u8; 16], u32)> {
        let last = self.addr[15];
        if last & WIDE_MARKER == 0 {
            return None;
        }
        let len = u32::from(last & !WIDE_MARKER);
        if len == 0 || len > MAX_IPV6_WIDE_PREFIX_LEN {
            return None;
        }
        let mut addr = self.addr;
        addr[15] = 0;
        (mask_ipv6(addr, len) == addr).then_some((addr, len))
    }

    /// True when this key holds an IPv4 source.
    pub fn is_ipv4(&self) -> bool {
        self.addr[..12] == V4_MAPPED_PREFIX
    }
}

/// Keeps the first `prefix_len` bits of `octets` and zeroes the rest.
/// `prefix_len` outside 1..=128 is clamped, so a bad configuration can never widen a key to `::/0`.
#[inline(always)]
pub fn mask_ipv6(octets: [u8; 16], prefix_len: u32) -> [u8; 16] {
    SourceKey::from_words(mask_words(SourceKey { addr: octets }.words(), prefix_len)).addr
}

/// [`mask_ipv6`] on words in memory order: the masks are built in network order and byte-swapped
/// to memory order, so the kernel masks with two ANDs.
#[inline(always)]
pub const fn mask_words(words: [u64; 2], prefix_len: u32) -> [u64; 2] {
    let prefix_len = if prefix_len == 0 {
        1
    } else if prefix_len > 128 {
        128
    } else {
        prefix_len
    };
    let (hi_mask, lo_mask) = if prefix_len <= 64 {
        (mask_bits(prefix_len), 0)
    } else {
        (u64::MAX, mask_bits(prefix_len - 64))
    };
    [words[0] & hi_mask.to_be(), words[1] & lo_mask.to_be()]
}

/// The top `n` bits of a u64 set (0 ≤ n ≤ 64).
#[inline(always)]
const fn mask_bits(n: u32) -> u64 {
    if n == 0 {
        0
    } else if n >= 64 {
        u64::MAX
    } else {
        !(u64::MAX >> n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_v4_mapped() {
        let key = SourceKey::from_ipv4([192, 0, 2, 7]);
        assert!(key.is_ipv4());
        assert_eq!(&key.addr[12..], &[192, 0, 2, 7]);
        assert_eq!(&key.addr[..12], &V4_MAPPED_PREFIX);
    }

    #[test]
    fn ipv6_masks_to_prefix() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4,
        ];
        assert_eq!(&mask_ipv6(a, 64)[..8], &a[..8]);
        assert_eq!(&mask_ipv6(a, 64)[8..], &[0; 8]);
        assert_eq!(mask_ipv6(a, 128), a);
        let m56 = mask_ipv6(a, 56);
        assert_eq!(&m56[..7], &a[..7]);
        assert_eq!(&m56[7..], &[0; 9]);
        let m100 = mask_ipv6(a, 100);
        assert_eq!(&m100[..12], &a[..12]);
        assert_eq!(m100[12], 0); // bits 96..100 of 0x01 are 0000
        assert_eq!(&m100[13..], &[0; 3]);
        // Clamped, never ::/0.
        assert_eq!(mask_ipv6(a, 0)[0], 0);
        assert_eq!(mask_ipv6([0xff; 16], 0)[0], 0x80);
        assert_eq!(mask_ipv6(a, 999), a);
    }

    #[test]
    fn word_constructors_agree_with_byte_ones() {
        let v4 = [192, 0, 2, 7];
        assert_eq!(
            SourceKey::from_ipv4_word(u32::from_ne_bytes(v4)),
            SourceKey::from_ipv4(v4)
        );
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4,
        ];
        for prefix in [0, 1, 7, 8, 48, 56, 63, 64, 65, 96, 100, 127, 128, 200] {
            let words = SourceKey { addr: a }.words();
            assert_eq!(
                SourceKey::from_ipv6_words(words, prefix),
                SourceKey::from_ipv6(a, prefix),
                "/{prefix}"
            );
        }
    }

    #[test]
    fn rotated_64s_of_one_48_share_a_wide_key_that_no_first_level_key_equals() {
        let mut a = [
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x07, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1,
        ];
        let wide = SourceKey::wide_from_ipv6(a, 48);
        for subnet in 1..=6u8 {
            a[7] = subnet;
            a[15] = subnet;
            assert_eq!(SourceKey::wide_from_ipv6(a, 48), wide);
            for first in [48, 56, 64, 96, 120] {
                assert_ne!(SourceKey::from_ipv6(a, first), wide, "/{first}");
            }
        }
        a[5] = 8;
        assert_ne!(SourceKey::wide_from_ipv6(a, 48), wide, "another /48");
    }

    #[test]
    fn wide_key_names_its_prefix() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4,
        ];
        for len in [1, 16, 48, 56, 64, 100, 120] {
            let (prefix, got) = SourceKey::wide_from_ipv6(a, len).wide_prefix().unwrap();
            assert_eq!((prefix, got), (mask_ipv6(a, len), len), "/{len}");
        }
        // Clamped to 1..=120.
        assert_eq!(SourceKey::wide_from_ipv6(a, 0).wide_prefix().unwrap().1, 1);
        assert_eq!(
            SourceKey::wide_from_ipv6(a, 128).wide_prefix().unwrap().1,
            120
        );
        // First-level and IPv4 keys are not wide keys.
        assert_eq!(SourceKey::from_ipv6(a, 64).wide_prefix(), None);
        assert_eq!(SourceKey::from_ipv6(a, 120).wide_prefix(), None);
        assert_eq!(SourceKey::from_ipv4([192, 0, 2, 7]).wide_prefix(), None);
    }

    #[test]
    fn wide_word_constructor_agrees_with_byte_one() {
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4,
        ];
        let words = SourceKey { addr: a }.words();
        for len in [0, 1, 32, 48, 63, 64, 65, 120, 200] {
            let key = SourceKey::wide_from_ipv6_words(words, len);
            assert_eq!(key, SourceKey::wide_from_ipv6(a, len), "/{len}");
            assert_eq!(key.addr[15] & WIDE_MARKER, WIDE_MARKER, "/{len}");
        }
    }

    #[test]
    fn sources_in_one_prefix_share_a_key() {
        let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let k1 = SourceKey::from_ipv6(a, 64);
        a[15] = 0x99;
        a[9] = 0x42;
        assert_eq!(k1, SourceKey::from_ipv6(a, 64));
        a[7] = 2;
        assert_ne!(k1, SourceKey::from_ipv6(a, 64));
    }
}
