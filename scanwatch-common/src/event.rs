//! Detection kinds and the event the kernel sends when a source crosses a threshold.

use crate::{addr::SourceKey, classify::PROBE_CLASSES, owner::Sender};

indexed_enum! {
    /// What a finding is. Each maps to a MITRE ATT&CK technique; everything else about a kind
    /// (presets, estimator, directions, blocking) is its row of `kinds::KINDS`.
    pub enum DetectionKind {
        /// Many distinct destination TCP ports (SYN probes). T1046.
        PortScan = 0 => "port_scan",
        /// Many distinct destination hosts. T1595.001.
        HostSweep = 1 => "host_sweep",
        /// ICMP echo/timestamp/address-mask requests to many hosts. T1595.001.
        IcmpSweep = 2 => "icmp_sweep",
        /// FIN/NULL/Xmas/Maimon and other odd-flag probes to many ports. T1046.
        StealthScan = 3 => "stealth_scan",
        /// Many distinct destination UDP ports. T1046.
        UdpScan = 4 => "udp_scan",
        /// Tiny first fragments that hide their L4 header. T1046.
        FragmentScan = 5 => "fragment_scan",
        /// Many distinct ports answered with a RST to a bare ACK that belonged to no
        /// connection (nmap -sA, -sW), seen at TC egress. T1046.
        AckScan = 6 => "ack_scan",
        /// Many distinct IP protocol numbers other than TCP, UDP, ICMP and SCTP (nmap -sO). T1046.
        ProtocolScan = 7 => "protocol_scan",
        /// SCTP INIT / COOKIE ECHO probes to many distinct ports (nmap -sY, -sZ). T1046.
        SctpScan = 8 => "sctp_scan",
        /// Many distinct ports of one destination, probed by sources that each stay below every
        /// threshold (Snort's distributed port scan). The event's `source` is the *target*
        /// address, `target` the source whose probe crossed; the sample of sources is in the
        /// `TARGETS` map. T1046.
        DistributedScan = 9 => "distributed_scan",
        /// An HTTP request whose request line or headers match a known scanner's signature
        /// (user agent, referer, probing path), seen in the first request of a connection on a
        /// web port. Found in user space from `WEB_SAMPLES`; the kernel has no threshold for it
        /// (its slots in the per-kind arrays stay 0). T1595.002.
        WebScan = 10 => "web_scan",
    }
    /// Number of detection kinds.
    pub const DETECTION_KINDS: usize;
}

impl DetectionKind {
    /// MITRE ATT&CK technique ID (the kind's row of `kinds::KINDS`).
    pub const fn technique(self) -> &'static str {
        self.spec().technique.id
    }
}

/// Sent through the ring buffer when a source's measure for `kind` reaches its threshold, at
/// most once per source, kind and window.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEvent {
    /// Kernel monotonic time of the probe that crossed the threshold.
    pub timestamp_ns: u64,
    pub first_seen_ns: u64,
    pub window_start_ns: u64,
    pub source: SourceKey,
    /// Probes in the window, by probe class.
    pub probes: [u32; PROBE_CLASSES],
    /// Kernel-unit measures, by `DetectionKind`.
    pub measures: [u32; DETECTION_KINDS],
    /// `DetectionKind` index.
    pub kind: u32,
    /// Interface the crossing probe arrived on (ingress) or left by (egress).
    pub ifindex: u32,
    /// `DIRECTION_INGRESS` (probes arriving) or `DIRECTION_EGRESS` (probes this host sends;
    /// `source` is then the local address).
    pub direction: u32,
    /// Destination port of the crossing probe (0 for ICMP and fragments).
    pub target_port: u16,
    /// Fewest and most hops of the source's probes in the window (`SourceState::min_hops`),
    /// `evidence::HOPS_UNKNOWN` when not measured (monitor mode, egress).
    pub min_hops: u8,
    pub max_hops: u8,
    /// Which window the counts cover: [`WINDOW_SHORT`] (`KernelConfig::window_ns`) or
    /// [`WINDOW_LONG`] (`KernelConfig::long_window_ns`, slow scans).
    pub window: u16,
    /// `DistributedScan` events only (written by `distributed.rs`; other writers leave it
    /// unset): what `source` names, [`SCOPE_ADDRESS`] (the probed target) or [`SCOPE_PORT`]
    /// (a distributed sweep of one port: `source` is all-zero, the port is
    /// `proto`/`target_port`).
    pub scope: u8,
    /// `DistributedScan` events only: IP protocol of the crossing probe (`proto::IPPROTO_*`).
    pub proto: u8,
    /// Destination address of the crossing probe (v4-mapped for IPv4): an example target.
    pub target: [u8; 16],
    /// Egress events: the socket that sent the crossing probe (its flow's opener for a
    /// failure), `Sender::NONE` otherwise. User space names its process (`owner`).
    pub sender: Sender,
}

/// `ScanEvent::window` of counts over the (short) detection window.
pub const WINDOW_SHORT: u16 = 0;
/// `ScanEvent::window` of counts over the long window (slow scans).
pub const WINDOW_LONG: u16 = 1;
/// `ScanEvent::window` of counts over the (short) detection window at the wide IPv6 level:
/// `source` is a wide key (`SourceKey::wide_prefix`), its first-level prefixes are in `WIDE`.
pub const WINDOW_WIDE: u16 = 2;

/// `ScanEvent::scope` of an event about one address (a source, or a distributed scan's target).
pub const SCOPE_ADDRESS: u8 = 0;
/// `ScanEvent::scope` of a distributed sweep: one (protocol, port) probed across many
/// destination hosts by many sources (`distributed::PortState`).
pub const SCOPE_PORT: u8 = 1;

/// `ScanEvent::direction` of probes arriving at this host.
pub const DIRECTION_INGRESS: u32 = 0;
/// `ScanEvent::direction` of probes this host sends.
pub const DIRECTION_EGRESS: u32 = 1;

const _: () = assert!(core::mem::size_of::<ScanEvent>() == 192);
