//! Per-source state kept in the kernel's LRU tracker.

use crate::{
    classify::PROBE_CLASSES,
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
    pub reserved: [u8; 6],
    /// Headers of the window's first tracked probes (ingress tracker only), for tool
    /// attribution: user space reads them from the tracker when it reports the source (copying
    /// them into every event would cost the verifier a copy on each event path). Slots fill
    /// in order; a window reset empties them.
    pub samples: [ProbeSample; SAMPLES],
}

impl SourceState {
    /// The bit count of the estimator behind a distinct-count kind, or `None` for exact counts
    /// (protocol_scan: one bit per protocol number, no collisions).
    pub const fn estimator_bits(kind: DetectionKind) -> Option<u32> {
        match kind {
            // DistributedScan: the target's distinct ports (`target::TargetState::ports`).
            DetectionKind::PortScan | DetectionKind::HostSweep | DetectionKind::DistributedScan => {
                Some(WideBitmap::BITS)
            }
            DetectionKind::IcmpSweep
            | DetectionKind::StealthScan
            | DetectionKind::UdpScan
            | DetectionKind::FragmentScan
            | DetectionKind::AckScan
            | DetectionKind::SctpScan => Some(NarrowBitmap::BITS),
            // WebScan: a signature match, no count.
            DetectionKind::ProtocolScan | DetectionKind::WebScan => None,
        }
    }
}

const _: () = assert!(core::mem::size_of::<SourceState>() == 968);
