//! Layout of the kernel's per-CPU statistics array: one `u64` per slot, summed over CPUs by the
//! daemon. Three groups: packets by class, parse errors by reason, and data-path counters.

use crate::{
    block::BlockReason,
    classify::{PACKET_CLASSES, PacketClass},
};

/// Why a packet could not be parsed. Such packets always pass.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// Shorter than an Ethernet header (includes empty frames).
    EthTruncated = 0,
    /// A VLAN tag announced but cut off.
    VlanTruncated = 1,
    /// Shorter than the fixed IPv4 header.
    Ipv4Truncated = 2,
    /// IHL < 5, or the header runs past the packet.
    Ipv4BadHeaderLength = 3,
    /// Shorter than the fixed IPv6 header.
    Ipv6Truncated = 4,
    /// An IPv6 extension header runs past the packet.
    Ipv6ExtTruncated = 5,
    /// More IPv6 extension headers than the bounded walk follows.
    Ipv6ExtChainTooLong = 6,
    /// A complete (unfragmented) TCP segment shorter than 20 bytes.
    TcpTruncated = 7,
    /// TCP data offset < 5.
    TcpBadDataOffset = 8,
    /// A complete UDP datagram shorter than 8 bytes.
    UdpTruncated = 9,
    /// A complete ICMP message shorter than its 4-byte header.
    IcmpTruncated = 10,
    /// The IP version field disagrees with the EtherType.
    BadIpVersion = 11,
}

/// Number of parse-error reasons.
pub const PARSE_ERRORS: usize = 12;

impl ParseError {
    /// Every reason, in index order.
    pub const ALL: [ParseError; PARSE_ERRORS] = [
        Self::EthTruncated,
        Self::VlanTruncated,
        Self::Ipv4Truncated,
        Self::Ipv4BadHeaderLength,
        Self::Ipv6Truncated,
        Self::Ipv6ExtTruncated,
        Self::Ipv6ExtChainTooLong,
        Self::TcpTruncated,
        Self::TcpBadDataOffset,
        Self::UdpTruncated,
        Self::IcmpTruncated,
        Self::BadIpVersion,
    ];

    /// Stable label for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EthTruncated => "eth_truncated",
            Self::VlanTruncated => "vlan_truncated",
            Self::Ipv4Truncated => "ipv4_truncated",
            Self::Ipv4BadHeaderLength => "ipv4_bad_header_length",
            Self::Ipv6Truncated => "ipv6_truncated",
            Self::Ipv6ExtTruncated => "ipv6_ext_truncated",
            Self::Ipv6ExtChainTooLong => "ipv6_ext_chain_too_long",
            Self::TcpTruncated => "tcp_truncated",
            Self::TcpBadDataOffset => "tcp_bad_data_offset",
            Self::UdpTruncated => "udp_truncated",
            Self::IcmpTruncated => "icmp_truncated",
            Self::BadIpVersion => "bad_ip_version",
        }
    }
}

/// Data-path counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Probes from a source on the ignore list (never tracked).
    Ignored = 0,
    /// First probe of an untracked source: remembered in the admission filter, not tracked.
    AdmissionDeferred = 1,
    /// Second probe of an untracked source: admitted to the tracker.
    Admitted = 2,
    /// New entries written into the tracker.
    TrackerInserts = 3,
    /// Tracker inserts or lookups that failed (map full without eviction, ENOMEM).
    TrackerUpdateFailures = 4,
    /// Per-source windows that expired and were restarted.
    WindowResets = 5,
    /// Threshold-crossing events sent to the daemon.
    EventsEmitted = 6,
    /// Events lost because the ring buffer was full.
    EventsDropped = 7,
    /// Packets handled while the config map had no entry (never expected).
    ConfigMissing = 8,
    /// XDP_DROP verdicts. Every other packet passes: passes = sum of classes - drops, so the
    /// fast path pays for one counter increment, not two.
    VerdictDrop = 9,
    /// Packets dropped because their source was blocked for a finding.
    DroppedDetection = 10,
    /// Packets dropped because of a manual block.
    DroppedManual = 11,
    /// Packets dropped because of a block list.
    DroppedList = 12,
    /// Bytes dropped because their source was blocked for a finding.
    DroppedBytesDetection = 13,
    /// Bytes dropped because of a manual block.
    DroppedBytesManual = 14,
    /// Bytes dropped because of a block list.
    DroppedBytesList = 15,
    /// Packets that matched a block entry whose TTL had run out, and so passed.
    BlockExpiredPass = 16,
    /// Outbound flow openers recorded as new flows by the egress program.
    FlowsRecorded = 17,
    /// Ingress TCP packets recognised as replies to our own flows (SYN-ACK, RST, FIN|ACK, ...).
    RepliesTcp = 18,
    /// Ingress UDP datagrams recognised as replies (DNS answers, NTP, ...).
    RepliesUdp = 19,
    /// ICMP errors recognised as quoting one of our own datagrams.
    RepliesIcmp = 20,
    /// Packets seen by the egress program.
    EgressPackets = 21,
    /// Egress packets that could not be parsed (passed untouched).
    EgressParseErrors = 22,
    /// Failed outbound attempts (RST or ICMP unreachable answering our own flow).
    EgressFailures = 23,
}

/// Number of data-path counters.
pub const COUNTERS: usize = 24;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS] = [
        Self::Ignored,
        Self::AdmissionDeferred,
        Self::Admitted,
        Self::TrackerInserts,
        Self::TrackerUpdateFailures,
        Self::WindowResets,
        Self::EventsEmitted,
        Self::EventsDropped,
        Self::ConfigMissing,
        Self::VerdictDrop,
        Self::DroppedDetection,
        Self::DroppedManual,
        Self::DroppedList,
        Self::DroppedBytesDetection,
        Self::DroppedBytesManual,
        Self::DroppedBytesList,
        Self::BlockExpiredPass,
        Self::FlowsRecorded,
        Self::RepliesTcp,
        Self::RepliesUdp,
        Self::RepliesIcmp,
        Self::EgressPackets,
        Self::EgressParseErrors,
        Self::EgressFailures,
    ];

    /// Stable label for metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ignored => "ignored",
            Self::AdmissionDeferred => "admission_deferred",
            Self::Admitted => "admitted",
            Self::TrackerInserts => "tracker_inserts",
            Self::TrackerUpdateFailures => "tracker_update_failures",
            Self::WindowResets => "window_resets",
            Self::EventsEmitted => "events_emitted",
            Self::EventsDropped => "events_dropped",
            Self::ConfigMissing => "config_missing",
            Self::VerdictDrop => "verdict_drop",
            Self::DroppedDetection => "dropped_detection",
            Self::DroppedManual => "dropped_manual",
            Self::DroppedList => "dropped_list",
            Self::DroppedBytesDetection => "dropped_bytes_detection",
            Self::DroppedBytesManual => "dropped_bytes_manual",
            Self::DroppedBytesList => "dropped_bytes_list",
            Self::BlockExpiredPass => "block_expired_pass",
            Self::FlowsRecorded => "flows_recorded",
            Self::RepliesTcp => "replies_tcp",
            Self::RepliesUdp => "replies_udp",
            Self::RepliesIcmp => "replies_icmp",
            Self::EgressPackets => "egress_packets",
            Self::EgressParseErrors => "egress_parse_errors",
            Self::EgressFailures => "egress_failures",
        }
    }
}

impl Counter {
    /// The dropped-packets counter of a block reason.
    #[inline(always)]
    pub const fn dropped_packets(reason: BlockReason) -> Self {
        match reason {
            BlockReason::Detection => Self::DroppedDetection,
            BlockReason::Manual => Self::DroppedManual,
            BlockReason::List => Self::DroppedList,
        }
    }

    /// The dropped-bytes counter of a block reason.
    #[inline(always)]
    pub const fn dropped_bytes(reason: BlockReason) -> Self {
        match reason {
            BlockReason::Detection => Self::DroppedBytesDetection,
            BlockReason::Manual => Self::DroppedBytesManual,
            BlockReason::List => Self::DroppedBytesList,
        }
    }
}

/// First slot of the packets-by-class group.
pub const CLASS_BASE: u32 = 0;
/// First slot of the parse-error group.
pub const PARSE_ERROR_BASE: u32 = 24;
/// First slot of the counter group.
pub const COUNTER_BASE: u32 = 40;
/// Slots in the statistics array.
pub const STATS_LEN: u32 = 72;

const _: () = assert!(CLASS_BASE as usize + PACKET_CLASSES <= PARSE_ERROR_BASE as usize);
const _: () = assert!(PARSE_ERROR_BASE as usize + PARSE_ERRORS <= COUNTER_BASE as usize);
const _: () = assert!(COUNTER_BASE as usize + COUNTERS <= STATS_LEN as usize);

/// Slot of a packet class.
#[inline(always)]
pub const fn class_slot(class: PacketClass) -> u32 {
    CLASS_BASE + class as u32
}

/// Slot of a parse-error reason.
#[inline(always)]
pub const fn parse_error_slot(reason: ParseError) -> u32 {
    PARSE_ERROR_BASE + reason as u32
}

/// Slot of a counter.
#[inline(always)]
pub const fn counter_slot(counter: Counter) -> u32 {
    COUNTER_BASE + counter as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_indices_match_all() {
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
