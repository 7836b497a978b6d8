//! Small, verifier-friendly hashes. Seeded per agent start (from `KernelConfig::hash_seed`) so a
//! remote sender cannot pick ports or addresses that collide in the estimators or the admission
//! filter.

use crate::addr::SourceKey;

/// Final mixer of `MurmurHash3` (avalanches all 32 bits).
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Final mixer of `SplitMix64`.
#[inline(always)]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a destination port within one protocol (both halves of the seed count).
#[inline(always)]
pub const fn hash_port(seed: u64, proto: u8, port: u16) -> u32 {
    fmix32(((seed ^ (seed >> 32)) as u32) ^ ((proto as u32) << 16) ^ port as u32)
}

/// Hash of one fragmented datagram: its destination (`host`, already a seeded hash of the
/// address) and its IP identification. A sender repeating one fragment hits one bit.
#[inline(always)]
pub const fn hash_datagram(host: u32, id: u32) -> u32 {
    fmix32(host ^ id.wrapping_mul(0x9e37_79b9))
}

/// 64-bit hash of a 16-byte address (taken as two words, see `SourceKey::words`).
#[inline(always)]
pub const fn hash_addr(seed: u64, addr: &SourceKey) -> u64 {
    let [a, b] = addr.words();
    mix64(mix64(a ^ seed) ^ b)
}

/// 64-bit hash of a conversation: both addresses and both ports. Every word goes through a
/// mixing round of its own (none is merged into another by a plain XOR), so no choice of address
/// and port bits collides with another conversation whatever the seed.
#[inline(always)]
pub const fn hash_conversation(
    seed: u64,
    local: &SourceKey,
    remote: &SourceKey,
    local_port: u16,
    remote_port: u16,
) -> u64 {
    let [r0, r1] = remote.words();
    let ports = ((local_port as u64) << 16) | remote_port as u64;
    mix64(mix64(mix64(hash_addr(seed, local) ^ r0) ^ r1) ^ ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_changes_hash() {
        assert_ne!(hash_port(1, 6, 80), hash_port(2, 6, 80));
        let a = SourceKey { addr: [1; 16] };
        assert_ne!(hash_addr(1, &a), hash_addr(2, &a));
        assert_ne!(hash_port(1 << 32, 6, 80), hash_port(2 << 32, 6, 80));
    }

    #[test]
    fn datagram_hash_separates_ids_and_hosts() {
        assert_eq!(hash_datagram(7, 0x1234), hash_datagram(7, 0x1234));
        assert_ne!(hash_datagram(7, 0x1234), hash_datagram(7, 0x1235));
        assert_ne!(hash_datagram(7, 0x1234), hash_datagram(8, 0x1234));
        let mut seen = [false; 512];
        for id in 0..512u32 {
            seen[(hash_datagram(99, id) & 511) as usize] = true;
        }
        let filled = seen.iter().filter(|s| **s).count();
        assert!((290..=360).contains(&filled), "filled {filled}");
    }

    #[test]
    fn conversation_hash_depends_on_every_field_and_the_seed() {
        let local = SourceKey::from_ipv4([192, 0, 2, 1]);
        let remote = SourceKey::from_ipv4([203, 0, 113, 7]);
        let h = hash_conversation(7, &local, &remote, 53, 5353);
        assert_eq!(h, hash_conversation(7, &local, &remote, 53, 5353));
        let other = SourceKey::from_ipv4([203, 0, 113, 8]);
        assert_ne!(h, hash_conversation(8, &local, &remote, 53, 5353));
        assert_ne!(h, hash_conversation(7, &remote, &local, 53, 5353));
        assert_ne!(h, hash_conversation(7, &local, &other, 53, 5353));
        assert_ne!(h, hash_conversation(7, &local, &remote, 54, 5353));
        assert_ne!(h, hash_conversation(7, &local, &remote, 53, 5354));
        assert_ne!(h, hash_conversation(7, &local, &remote, 5353, 53));
        // Flipping the same low bit of the remote address and of a port (what a plain XOR of
        // the two would merge) still gives another hash.
        let flipped = SourceKey::from_ipv4([203, 0, 113, 7 ^ 1]);
        assert_ne!(h, hash_conversation(7, &local, &flipped, 53, 0x14e9 ^ 1));
    }

    #[test]
    fn protocol_separates_ports() {
        assert_ne!(hash_port(7, 6, 53), hash_port(7, 17, 53));
    }

    #[test]
    fn port_hash_spreads_over_bitmap() {
        // 1024 consecutive ports into 1024 buckets should fill most of them, as random would
        // (expected occupancy 1 - 1/e = 63%).
        let mut seen = [false; 1024];
        for p in 0..1024u16 {
            seen[(hash_port(99, 6, p) & 1023) as usize] = true;
        }
        let filled = seen.iter().filter(|s| **s).count();
        assert!((600..=690).contains(&filled), "filled {filled}");
    }
}
