//! Source keys: every address is stored as 16 bytes (IPv4 as v4-mapped IPv6), and IPv6 sources
//! are aggregated to a prefix because IPv6 scanners rotate addresses inside their /64.

/// The key of the per-source tracker: a 16-byte address, IPv4 v4-mapped (`::ffff:a.b.c.d`),
/// IPv6 masked to the configured prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SourceKey {
    pub addr: [u8; 16],
}

/// The 12-byte prefix of a v4-mapped IPv6 address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Default IPv6 aggregation prefix (/64: one subnet, the unit a scanner rotates inside).
pub const DEFAULT_IPV6_PREFIX_LEN: u32 = 64;

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

    /// True when this key holds an IPv4 source.
    pub fn is_ipv4(&self) -> bool {
        self.addr[..12] == V4_MAPPED_PREFIX
    }
}

/// Keeps the first `prefix_len` bits of `octets` and zeroes the rest.
/// `prefix_len` outside 1..=128 is clamped, so a bad configuration can never widen a key to `::/0`.
#[inline(always)]
pub fn mask_ipv6(octets: [u8; 16], prefix_len: u32) -> [u8; 16] {
    let prefix_len = if prefix_len == 0 {
        1
    } else if prefix_len > 128 {
        128
    } else {
        prefix_len
    };
    let mut hi = u64::from_be_bytes([
        octets[0], octets[1], octets[2], octets[3], octets[4], octets[5], octets[6], octets[7],
    ]);
    let mut lo = u64::from_be_bytes([
        octets[8], octets[9], octets[10], octets[11], octets[12], octets[13], octets[14],
        octets[15],
    ]);
    if prefix_len <= 64 {
        lo = 0;
        if prefix_len < 64 {
            hi &= !(u64::MAX >> prefix_len);
        }
    } else if prefix_len < 128 {
        lo &= !(u64::MAX >> (prefix_len - 64));
    }
    let hi = hi.to_be_bytes();
    let lo = lo.to_be_bytes();
    [
        hi[0], hi[1], hi[2], hi[3], hi[4], hi[5], hi[6], hi[7], lo[0], lo[1], lo[2], lo[3], lo[4],
        lo[5], lo[6], lo[7],
    ]
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
