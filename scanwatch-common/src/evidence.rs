//! Evidence that a remote's address is real, kept by the kernel in drop mode only (monitor mode
//! pays nothing for it) and read by the daemon before it blocks a finding's source:
//!
//! - **Answered flows** (`ANSWERED`): a remote that answered a flow this host opened (a UDP reply,
//!   a SYN-ACK; never an ICMP error, which any router sends) matched the exact 4-tuple the host
//!   chose, so its address is real. Tracker key → time of the latest answer.
//! - **Completed handshakes** (`HANDSHAKES`, `HANDSHAKE_HINTS`, `VERIFIED`): the TC egress program
//!   notes each SYN-ACK the host sends with the ack number that answers it (our ISN + 1); an ACK
//!   carrying that number proves the remote received our SYN-ACK, so its address is real. Its
//!   hop count (from the IP TTL) is remembered: probes that claim the address but arrive at
//!   another hop count were forged from elsewhere (hop-count filtering, Jin, Wang & Shin, ACM
//!   CCS 2003).

/// An answer is written to `ANSWERED` at most once per this interval per remote: a busy peer
/// costs one lookup per reply, not a write.
pub const ANSWER_REFRESH_NS: u64 = 1_000_000_000;

/// `VERIFIED` value: a remote (tracker key) that completed a TCP handshake with this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Verified {
    /// When the handshake completed (CLOCK_MONOTONIC_COARSE ns).
    pub verified_ns: u64,
    /// Hops from the remote to this host, from the completing ACK's TTL ([`hops_from_ttl`]).
    pub hops: u32,
    pub reserved: u32,
}

/// A hop count no packet can have (the nearest initial TTL minus an arriving TTL ≥ 1 is at most
/// 254): "no probe hop count known" in `SourceState` and `ScanEvent`.
pub const HOPS_UNKNOWN: u8 = 0xff;

/// The initial TTLs (hop limits) operating systems use: 32 (old Windows), 64 (Linux, BSD,
/// macOS), 128 (Windows), 255 (network gear, Solaris).
pub const INITIAL_TTLS: [u8; 4] = [32, 64, 128, 255];

/// Hops a packet travelled, from its arriving TTL (or IPv6 hop limit): the nearest initial TTL
/// at or above it, minus it. Paths are far shorter than the gaps between initial TTLs, so the
/// guess is exact for every real path shorter than 32 hops (Jin et al.).
#[inline(always)]
pub const fn hops_from_ttl(ttl: u8) -> u8 {
    let initial = if ttl <= 32 {
        32
    } else if ttl <= 64 {
        64
    } else if ttl <= 128 {
        128
    } else {
        255
    };
    initial - ttl
}

/// Slots of `HANDSHAKE_HINTS` (power of two).
pub const HANDSHAKE_HINT_SLOTS: u32 = 4096;

/// The `HANDSHAKE_HINTS` slot of an expected ack number. ISNs are random (RFC 6528), so their
/// low bits spread evenly.
#[inline(always)]
pub const fn hint_slot(expected_ack: u32) -> u32 {
    expected_ack & (HANDSHAKE_HINT_SLOTS - 1)
}

/// True when probes at hop counts `min..=max` cannot all have come from a remote verified at
/// `verified` hops, allowing `tolerance` hops either way: someone elsewhere forged its address.
#[inline(always)]
pub const fn hops_disagree(verified: u8, min: u8, max: u8, tolerance: u8) -> bool {
    if min == HOPS_UNKNOWN || max == HOPS_UNKNOWN {
        return false;
    }
    min.saturating_add(tolerance) < verified || max > verified.saturating_add(tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_count_down_from_the_nearest_initial_ttl() {
        assert_eq!(hops_from_ttl(64), 0);
        assert_eq!(hops_from_ttl(61), 3);
        assert_eq!(hops_from_ttl(57), 7);
        assert_eq!(hops_from_ttl(128), 0);
        assert_eq!(hops_from_ttl(117), 11);
        assert_eq!(hops_from_ttl(255), 0);
        assert_eq!(hops_from_ttl(240), 15);
        assert_eq!(hops_from_ttl(32), 0);
        assert_eq!(hops_from_ttl(30), 2);
        // Just above an initial TTL counts from the next one up.
        assert_eq!(hops_from_ttl(65), 63);
        assert_eq!(hops_from_ttl(1), 31);
        for ttl in 1..=255u8 {
            assert_ne!(hops_from_ttl(ttl), HOPS_UNKNOWN, "ttl {ttl}");
        }
    }

    #[test]
    fn probes_at_another_hop_count_disagree() {
        assert!(!hops_disagree(3, 3, 3, 0));
        assert!(hops_disagree(3, 7, 7, 0));
        assert!(hops_disagree(3, 2, 2, 0));
        // One probe elsewhere is enough: the verified peer's own SYNs do not hide a forger.
        assert!(hops_disagree(3, 3, 7, 0));
        assert!(!hops_disagree(3, 2, 4, 1));
        assert!(hops_disagree(3, 1, 3, 1));
        assert!(!hops_disagree(3, HOPS_UNKNOWN, HOPS_UNKNOWN, 0));
        assert!(!hops_disagree(254, 254, 254, 1));
    }

    #[test]
    fn hint_slots_stay_in_the_array() {
        assert!(hint_slot(u32::MAX) < HANDSHAKE_HINT_SLOTS);
        assert_eq!(hint_slot(4097), 1);
    }
}
