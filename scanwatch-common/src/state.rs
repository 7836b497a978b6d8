//! Per-source state kept in the kernel's LRU tracker.

use crate::{
    classify::PROBE_CLASSES,
    distinct::DistinctBitmap,
    event::{DETECTION_KINDS, DetectionKind},
};

/// 1024-bit estimator, for the measures that matter most (TCP ports, hosts).
pub type WideBitmap = DistinctBitmap<16>;
/// 512-bit estimator, for the rest.
pub type NarrowBitmap = DistinctBitmap<8>;

/// Everything the tracker knows about one source (624 bytes). Counters and bitmaps cover the
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
    /// threshold, then at each doubling). Room for kinds 0..8 only: `DistributedScan` (9)
    /// keeps its reports in `target::TargetState`; a per-source kind at index 8 or above needs a
    /// wider field.
    pub reported: u32,
    /// The kernel-unit measure of each detection kind (bits set), indexed by `DetectionKind`;
    /// compared against `KernelConfig::thresholds`.
    pub measures: [u32; DETECTION_KINDS],
    /// Distinct destination TCP ports of SYN probes.
    pub tcp_ports: WideBitmap,
    /// Distinct destination hosts of any probe.
    pub hosts: WideBitmap,
    /// Distinct destination UDP ports.
    pub udp_ports: NarrowBitmap,
    /// Distinct destination ports of stealth probes (FIN, NULL, Xmas, Maimon).
    pub stealth_ports: NarrowBitmap,
    /// Distinct destination hosts of ICMP probes.
    pub icmp_hosts: NarrowBitmap,
    /// Distinct datagrams (destination and IP identification) of tiny first fragments, so
    /// repeating one forged fragment counts once.
    pub fragments: NarrowBitmap,
}

impl SourceState {
    /// The bit count of the estimator behind a distinct-count kind, or `None` for plain counts
    /// (none today: every kind counts distinct items).
    pub const fn estimator_bits(kind: DetectionKind) -> Option<u32> {
        match kind {
            // DistributedScan: the target's distinct ports (`target::TargetState::ports`).
            DetectionKind::PortScan | DetectionKind::HostSweep | DetectionKind::DistributedScan => {
                Some(WideBitmap::BITS)
            }
            // AckScan, ProtocolScan, SctpScan: counted by the issue-12a branch (disabled here).
            DetectionKind::IcmpSweep
            | DetectionKind::StealthScan
            | DetectionKind::UdpScan
            | DetectionKind::FragmentScan
            | DetectionKind::AckScan
            | DetectionKind::ProtocolScan
            | DetectionKind::SctpScan => Some(NarrowBitmap::BITS),
        }
    }
}

const _: () = assert!(core::mem::size_of::<SourceState>() == 624);
