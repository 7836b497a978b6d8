//! Per-source state kept in the kernel's LRU tracker.

use crate::{
    classify::{PROBE_CLASSES, PacketClass},
    distinct::DistinctBitmap,
    event::{DETECTION_KINDS, DetectionKind},
    sample::{ProbeSample, SAMPLES},
};

/// 1024-bit estimator, for the measures that matter most (TCP ports, hosts).
pub type WideBitmap = DistinctBitmap<16>;
/// 512-bit estimator, for the rest.
pub type NarrowBitmap = DistinctBitmap<8>;
/// 256 bits, one per IP protocol number: an exact set, not an estimator.
pub type ProtocolSet = DistinctBitmap<4>;

/// Everything the tracker knows about one source (968 bytes). Counters and bitmaps cover the
/// current tumbling window; `first_seen_ns` covers the entry's life.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceState {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub window_start_ns: u64,
    /// Probes in this window, by probe class.
    pub probes: [u32; PROBE_CLASSES],
    /// Probes over the entry's life.
    pub lifetime_probes: u32,
    /// Bits `4k..4k+4`: how many events for `DetectionKind` `k` were sent in this window (at the
    /// threshold, then at each doubling).
    pub reported: u64,
    /// The kernel-unit measure of each detection kind (bits set), indexed by `DetectionKind`;
    /// compared against `KernelConfig::thresholds`.
    pub measures: [u32; DETECTION_KINDS],
    /// Explicit padding: `measures` has an odd number of `u32`s, the bitmaps are 8-aligned.
    pub measures_pad: u32,
    /// Distinct destination TCP ports of SYN probes.
    pub tcp_ports: WideBitmap,
    /// Distinct destination hosts of any probe.
    pub hosts: WideBitmap,
    /// Distinct destination UDP ports.
    pub udp_ports: NarrowBitmap,
    /// Distinct destination ports of stealth probes (FIN, NULL, Xmas, Maimon, odd flags).
    pub stealth_ports: NarrowBitmap,
    /// Distinct destination hosts of ICMP probes.
    pub icmp_hosts: NarrowBitmap,
    /// Distinct datagrams (destination and IP identification) of tiny first fragments, so
    /// repeating one forged fragment counts once.
    pub fragments: NarrowBitmap,
    /// Distinct local ports the host answered with a RST to a bare ACK of no connection
    /// (ingress state only: written by the TC egress program).
    pub ack_ports: NarrowBitmap,
    /// Distinct SCTP destination ports of INIT / COOKIE ECHO probes.
    pub sctp_ports: NarrowBitmap,
    /// IP protocol numbers of `IpProtocol` probes, exactly.
    pub protocols: ProtocolSet,
    /// Fewest and most hops (`evidence::hops_from_ttl`) of the window's probes, drop mode
    /// only; `evidence::HOPS_UNKNOWN` when none was measured.
    pub min_hops: u8,
    pub max_hops: u8,
    pub reserved: u16,
    /// The [`probe_id`] of the source's last probe that every level counted, XOR the low 32
    /// bits of `window_start_ns` (ingress tracker only): the same probe again in the same
    /// window (a retransmission, a flood of one port) sets no new bit anywhere, so the data
    /// path only counts it here. A new window's start no longer matches, so a roll forgets it.
    pub last_probe: u32,
    /// Headers of the window's first tracked probes (ingress tracker only), for tool
    /// attribution: user space reads them from the tracker when it reports the source (copying
    /// them into every event would cost the verifier a copy on each event path). Slots fill
    /// in order; a window reset empties them.
    pub samples: [ProbeSample; SAMPLES],
}

impl SourceState {
    /// The bit count of the estimator behind a distinct-count kind, or `None` for exact counts
    /// (protocol_scan: one bit per protocol number, no collisions) and no count (web_scan): the
    /// kind's `kinds::Estimator`.
    pub const fn estimator_bits(kind: DetectionKind) -> Option<u32> {
        kind.spec().estimator.bits()
    }
}

const _: () = assert!(core::mem::size_of::<SourceState>() == 968);

/// Probe classes whose estimator bit depends on the destination host, class and port only:
/// every probe class but `Fragment` (its datagram's identification counts) and `IpProtocol`
/// (its protocol number counts). One bit per `PacketClass` index.
pub const REPEATABLE_CLASSES: u32 = !((1 << PacketClass::Fragment as u32)
    | (1 << PacketClass::IpProtocol as u32))
    & ((1 << PROBE_CLASSES) - 1);

/// Names a probe by its destination host (`host`: the seeded hash of the address), class and
/// port, for [`SourceState::last_probe`]: never 0 for a class of [`REPEATABLE_CLASSES`], always
/// 0 for any other (computed without a branch: the data path's verifier walks every branch).
///
/// Two probes of one host get the same id only with the same class and port. Probes of two
/// hosts share one when the hosts' seeded hashes differ by exactly the class and port bits: a
/// sender who does not know the seed cannot choose that, so it cannot make new probes pass for
/// repeats (and skip the estimators).
#[inline(always)]
pub const fn probe_id(host: u32, class: PacketClass, port: u16) -> u32 {
    let repeatable = (REPEATABLE_CLASSES >> (class as u32 & 31)) & 1;
    ((host ^ (((port as u32) << 16) | ((class as u32) << 8))) | 1) & 0u32.wrapping_sub(repeatable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{addr::SourceKey, hash::hash_addr};

    #[test]
    fn probe_ids_of_one_host_differ_by_class_and_port_and_are_never_zero() {
        let host = hash_addr(7, &SourceKey::from_ipv4([198, 51, 100, 1])) as u32;
        let classes = [
            PacketClass::TcpSyn,
            PacketClass::Udp,
            PacketClass::TcpFin,
            PacketClass::TcpNull,
            PacketClass::TcpXmas,
            PacketClass::TcpMaimon,
        ];
        let mut seen = std::collections::HashSet::new();
        for class in classes {
            for port in 0..=u16::MAX {
                let id = probe_id(host, class, port);
                assert_ne!(id, 0);
                assert!(seen.insert(id), "{class:?} port {port} repeats another id");
            }
        }
        assert_eq!(
            probe_id(host, PacketClass::TcpSyn, 22),
            probe_id(host, PacketClass::TcpSyn, 22)
        );
        for class in [
            PacketClass::IcmpEcho,
            PacketClass::TcpOddFlags,
            PacketClass::SctpInit,
        ] {
            assert_ne!(probe_id(host, class, 0), 0, "{class:?}");
        }
    }

    #[test]
    fn probes_whose_bit_needs_more_than_host_and_port_have_no_id() {
        let host = hash_addr(7, &SourceKey::from_ipv4([198, 51, 100, 1])) as u32;
        for class in [
            PacketClass::Fragment,
            PacketClass::IpProtocol,
            PacketClass::TcpEstablished,
            PacketClass::TcpOther,
            PacketClass::IcmpOther,
        ] {
            for port in [0, 1, 22, u16::MAX] {
                assert_eq!(probe_id(host, class, port), 0, "{class:?}");
            }
        }
    }

    #[test]
    fn probe_ids_of_neighbouring_hosts_differ() {
        let ids: std::collections::HashSet<u32> = (0..=255u8)
            .map(|last| {
                let host = hash_addr(7, &SourceKey::from_ipv4([198, 51, 100, last])) as u32;
                probe_id(host, PacketClass::TcpSyn, 22)
            })
            .collect();
        assert_eq!(ids.len(), 256);
    }
}
