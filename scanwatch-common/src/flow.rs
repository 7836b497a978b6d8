//! The host's own outbound flows, recorded by the TC egress program so the XDP program can tell
//! a reply (DNS answer, SYN-ACK, RST, ICMP error about our own datagram) from a probe.
//!
//! Only flow *openers* are recorded: TCP SYN, UDP datagrams, ICMP echo/timestamp/address-mask
//! requests. Established TCP takes no map write on egress. A UDP datagram answering an inbound
//! conversation (noted by the XDP program in the `INBOUND` map, same key layout) is the host
//! serving, not opening: it records and refreshes nothing.
//!
//! When the map is full the LRU evicts the least recently used flow; when an entry is older than
//! `KernelConfig::flow_timeout_ns` it no longer matches. Either way a late reply is then counted
//! as a probe: the error goes toward detection, not toward blindness, because a spoofer must
//! never be able to launder probes as "replies". It is also harmless in practice: detection
//! counts *distinct* ports and hosts, and the late packets of one flow add one port and one host
//! at most, far below any threshold.

use crate::addr::SourceKey;

/// A flow from this host's point of view. For ICMP, `local_port` is the echo identifier and
/// `remote_port` is 0.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Local address (v4-mapped for IPv4).
    pub local: SourceKey,
    /// Remote address (v4-mapped for IPv4).
    pub remote: SourceKey,
    pub local_port: u16,
    pub remote_port: u16,
    /// IP protocol (6, 17, 1 or 58); a u32 so the key has no padding bytes to clear.
    pub proto: u32,
}

/// What is kept per flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// Last outbound opener (CLOCK_MONOTONIC ns).
    pub last_seen_ns: u64,
    /// Outbound openers seen.
    pub packets: u32,
    /// 1 once a SYN-ACK answered the flow: a later RST closes a connection that was made, it
    /// is not a failed attempt. Reset by each new opener.
    pub answered: u32,
}

/// Default flow lifetime: 120 s. A DNS answer comes within seconds; a refused or answered TCP
/// SYN within a round trip; nmap and traceroute replies within their timeouts.
pub const DEFAULT_FLOW_TIMEOUT_NS: u64 = 120 * 1_000_000_000;

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
