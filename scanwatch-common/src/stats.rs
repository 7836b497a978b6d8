//! Layout of the kernel's per-CPU statistics array: one `u64` per slot, summed over CPUs by the
//! daemon. Three groups: packets by class, parse errors by reason, and data-path counters.

use crate::{
    block::BlockReason,
    classify::{PACKET_CLASSES, PacketClass},
};

indexed_enum! {
    /// Why a packet could not be parsed. Such packets always pass.
    pub enum ParseError {
        /// Shorter than an Ethernet header (includes empty frames).
        EthTruncated = 0 => "eth_truncated",
        /// A VLAN tag announced but cut off.
        VlanTruncated = 1 => "vlan_truncated",
        /// Shorter than the fixed IPv4 header.
        Ipv4Truncated = 2 => "ipv4_truncated",
        /// IHL < 5, or the header runs past the packet.
        Ipv4BadHeaderLength = 3 => "ipv4_bad_header_length",
        /// Shorter than the fixed IPv6 header.
        Ipv6Truncated = 4 => "ipv6_truncated",
        /// An IPv6 extension header runs past the packet.
        Ipv6ExtTruncated = 5 => "ipv6_ext_truncated",
        /// More IPv6 extension headers than the bounded walk follows, or a chain that runs on,
        /// inside the packet, past the offsets the parser reads (2048 bytes).
        Ipv6ExtChainTooLong = 6 => "ipv6_ext_chain_too_long",
        /// A complete (unfragmented) TCP segment shorter than 20 bytes.
        TcpTruncated = 7 => "tcp_truncated",
        /// TCP data offset < 5.
        TcpBadDataOffset = 8 => "tcp_bad_data_offset",
        /// A complete UDP datagram shorter than 8 bytes.
        UdpTruncated = 9 => "udp_truncated",
        /// A complete ICMP message shorter than its 4-byte header.
        IcmpTruncated = 10 => "icmp_truncated",
        /// The IP version field disagrees with the EtherType.
        BadIpVersion = 11 => "bad_ip_version",
    }
    /// Number of parse-error reasons.
    pub const PARSE_ERRORS: usize;
}

indexed_enum! {
    /// Data-path counters.
    pub enum Counter {
        /// Probes from a source on the ignore list (never tracked).
        Ignored = 0 => "ignored",
        /// First probe of an untracked source: remembered in the admission filter, not tracked.
        AdmissionDeferred = 1 => "admission_deferred",
        /// Second probe of an untracked source: admitted to the tracker.
        Admitted = 2 => "admitted",
        /// New entries written into the tracker.
        TrackerInserts = 3 => "tracker_inserts",
        /// Tracker inserts or lookups that failed (map full without eviction, ENOMEM).
        TrackerUpdateFailures = 4 => "tracker_update_failures",
        /// Per-source windows that expired and were restarted.
        WindowResets = 5 => "window_resets",
        /// Threshold-crossing events sent to the daemon.
        EventsEmitted = 6 => "events_emitted",
        /// Events lost because the ring buffer was full.
        EventsDropped = 7 => "events_dropped",
        /// Packets handled while the config map had no entry (never expected).
        ConfigMissing = 8 => "config_missing",
        /// XDP_DROP verdicts. Every other packet passes: passes = sum of classes - drops, so the
        /// fast path pays for one counter increment, not two.
        VerdictDrop = 9 => "verdict_drop",
        /// Packets dropped because their source was blocked for a finding.
        DroppedDetection = 10 => "dropped_detection",
        /// Packets dropped because of a manual block.
        DroppedManual = 11 => "dropped_manual",
        /// Packets dropped because of a block list.
        DroppedList = 12 => "dropped_list",
        /// Bytes dropped because their source was blocked for a finding.
        DroppedBytesDetection = 13 => "dropped_bytes_detection",
        /// Bytes dropped because of a manual block.
        DroppedBytesManual = 14 => "dropped_bytes_manual",
        /// Bytes dropped because of a block list.
        DroppedBytesList = 15 => "dropped_bytes_list",
        /// Packets that matched a block entry whose TTL had run out, and so passed.
        BlockExpiredPass = 16 => "block_expired_pass",
        /// Outbound flow openers recorded as new flows by the egress program.
        FlowsRecorded = 17 => "flows_recorded",
        /// Ingress TCP packets recognised as replies to our own flows (SYN-ACK, RST, FIN|ACK, ...).
        RepliesTcp = 18 => "replies_tcp",
        /// Ingress UDP datagrams recognised as replies (DNS answers, NTP, ...).
        RepliesUdp = 19 => "replies_udp",
        /// ICMP errors recognised as quoting one of our own datagrams.
        RepliesIcmp = 20 => "replies_icmp",
        /// Packets seen by the egress program.
        EgressPackets = 21 => "egress_packets",
        /// Egress packets that could not be parsed (passed untouched).
        EgressParseErrors = 22 => "egress_parse_errors",
        /// Failed outbound attempts (RST or ICMP unreachable answering our own flow).
        EgressFailures = 23 => "egress_failures",
        /// New inbound UDP conversations noted by the XDP program (datagrams answering none of
        /// our flows): the host's answers to them are not flows it opened.
        InboundNoted = 24 => "inbound_noted",
        /// Outbound UDP datagrams that answer an inbound conversation: no flow recorded.
        EgressAnswers = 25 => "egress_answers",
        /// TCP FIN|ACK with no live flow that belongs to a connection the kernel holds (socket
        /// lookup on the exact 4-tuple): a close, not a probe.
        ConnectionCloses = 26 => "connection_closes",
        /// Packets dropped because of a CrowdSec decision.
        DroppedCrowdsec = 27 => "dropped_crowdsec",
        /// Bytes dropped because of a CrowdSec decision.
        DroppedBytesCrowdsec = 28 => "dropped_bytes_crowdsec",
        /// SYN-ACKs this host sent, noted to verify the ACK that completes them (drop mode).
        HandshakesNoted = 29 => "handshakes_noted",
        /// Remotes that completed a handshake with the ack number our SYN-ACK asked for: their
        /// address and hop count are proven (drop mode).
        HandshakesVerified = 30 => "handshakes_verified",
        /// First requests of connections to a web port copied to `WEB_SAMPLES`.
        WebSamples = 31 => "web_samples",
        /// Web samples lost because the `WEB_SAMPLES` ring was full.
        WebSamplesDropped = 32 => "web_samples_dropped",
        /// First requests to a web port whose 4-tuple has no established connection in the
        /// kernel (a forged or stray segment): not sampled.
        WebUnconnected = 33 => "web_requests_unconnected",
        /// Bare RSTs this host sent on a connection it opened (`FLOWS`) or accepted
        /// (`ACCEPTED`) within `flow_timeout`: the end of its own connection, no ack_scan
        /// evidence.
        OwnConnectionResets = 34 => "own_connection_resets",
        /// Sources given a long-window (slow scan) state: tracked sources that probed again in a
        /// later short window.
        LongInserts = 35 => "long_inserts",
        /// Probes of a port not counted toward a distributed sweep: its `PORTS` slot was held by
        /// another port with more hosts this window.
        PortSlotsHeld = 36 => "port_slots_held",
        /// `PORTS` slots taken from another port within its window.
        PortSlotsTaken = 37 => "port_slots_taken",
        /// Destinations given distributed-scan state (`TARGETS` inserts).
        TargetInserts = 38 => "target_inserts",
        /// Wide IPv6 prefixes given state (`WIDE` inserts).
        WideInserts = 39 => "wide_inserts",
        /// Sockets whose sender the egress program recorded (`OWNERS` inserts).
        OwnersRecorded = 40 => "owners_recorded",
        /// Egress packets of an unrecorded socket sent outside its sender's context (the
        /// current task in another cgroup, or none): their socket's process is not recorded.
        OwnersUnsure = 41 => "owners_unsure",
    }
    /// Number of data-path counters.
    pub const COUNTERS: usize;
}

impl Counter {
    /// The dropped-packets counter of a block reason.
    #[inline(always)]
    pub const fn dropped_packets(reason: BlockReason) -> Self {
        match reason {
            BlockReason::Detection => Self::DroppedDetection,
            BlockReason::Manual => Self::DroppedManual,
            BlockReason::List => Self::DroppedList,
            BlockReason::Crowdsec => Self::DroppedCrowdsec,
        }
    }

    /// The dropped-bytes counter of a block reason.
    #[inline(always)]
    pub const fn dropped_bytes(reason: BlockReason) -> Self {
        match reason {
            BlockReason::Detection => Self::DroppedBytesDetection,
            BlockReason::Manual => Self::DroppedBytesManual,
            BlockReason::List => Self::DroppedBytesList,
            BlockReason::Crowdsec => Self::DroppedBytesCrowdsec,
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
pub const STATS_LEN: u32 = 96;

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
