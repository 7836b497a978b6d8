//! Protocol numbers the programs read from packets, once, under their Linux header names
//! (`linux/if_ether.h`, `linux/in.h`, `linux/in6.h`, `linux/icmp.h`, `linux/icmpv6.h`), so a
//! reader can grep for them. Values are in host order; the parser converts what it compares
//! against raw packet memory.

/// Ethernet header length (no VLAN tags).
pub const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ outer) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// IPv6 hop-by-hop options header.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 routing header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// Authentication header.
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 destination options header.
pub const IPPROTO_DSTOPTS: u8 = 60;
/// Stream Control Transmission Protocol (RFC 9260).
pub const IPPROTO_SCTP: u8 = 132;

/// SCTP chunk type INIT (RFC 9260 §3.3.2).
pub const SCTP_CHUNK_INIT: u8 = 1;
/// SCTP chunk type COOKIE ECHO (RFC 9260 §3.3.11).
pub const SCTP_CHUNK_COOKIE_ECHO: u8 = 10;
/// SCTP common header (12 bytes) plus a chunk's type, flags and length.
pub const SCTP_MIN_LEN: usize = 16;

/// ICMP destination unreachable.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP source quench (deprecated, RFC 6633).
pub const ICMP_SOURCE_QUENCH: u8 = 4;
/// ICMP redirect.
pub const ICMP_REDIRECT: u8 = 5;
/// ICMP echo request.
pub const ICMP_ECHO: u8 = 8;
/// ICMP time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP parameter problem.
pub const ICMP_PARAMETERPROB: u8 = 12;
/// ICMP timestamp request.
pub const ICMP_TIMESTAMP: u8 = 13;
/// ICMP information request (obsolete; probed like a timestamp request).
pub const ICMP_INFO_REQUEST: u8 = 15;
/// ICMP address-mask request.
pub const ICMP_ADDRESS: u8 = 17;

/// Codes of ICMP destination unreachable (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1).
pub mod icmp_unreach {
    pub const ICMP_NET_UNREACH: u8 = 0;
    pub const ICMP_HOST_UNREACH: u8 = 1;
    pub const ICMP_PROT_UNREACH: u8 = 2;
    pub const ICMP_PORT_UNREACH: u8 = 3;
    /// Fragmentation needed and DF set: path MTU discovery (RFC 1191).
    pub const ICMP_FRAG_NEEDED: u8 = 4;
    /// Source route failed.
    pub const ICMP_SR_FAILED: u8 = 5;
    pub const ICMP_NET_UNKNOWN: u8 = 6;
    pub const ICMP_HOST_UNKNOWN: u8 = 7;
    /// Source host isolated (obsolete).
    pub const ICMP_HOST_ISOLATED: u8 = 8;
    /// Network administratively prohibited.
    pub const ICMP_NET_ANO: u8 = 9;
    /// Host administratively prohibited.
    pub const ICMP_HOST_ANO: u8 = 10;
    pub const ICMP_NET_UNR_TOS: u8 = 11;
    pub const ICMP_HOST_UNR_TOS: u8 = 12;
    /// Communication administratively prohibited (filtered).
    pub const ICMP_PKT_FILTERED: u8 = 13;
    /// Host precedence violation.
    pub const ICMP_PREC_VIOLATION: u8 = 14;
    /// Precedence cutoff in effect.
    pub const ICMP_PREC_CUTOFF: u8 = 15;
}

/// ICMPv6 destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 packet too big.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPv6 time exceeded.
pub const ICMPV6_TIME_EXCEED: u8 = 3;
/// ICMPv6 parameter problem.
pub const ICMPV6_PARAMPROB: u8 = 4;
/// ICMPv6 echo request.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;

/// Codes of ICMPv6 destination unreachable (RFC 4443 §3.1, RFC 6550, RFC 8883).
pub mod icmpv6_unreach {
    /// No route to destination.
    pub const ICMPV6_NOROUTE: u8 = 0;
    /// Communication with destination administratively prohibited.
    pub const ICMPV6_ADM_PROHIBITED: u8 = 1;
    /// Beyond scope of source address.
    pub const ICMPV6_NOT_NEIGHBOUR: u8 = 2;
    pub const ICMPV6_ADDR_UNREACH: u8 = 3;
    pub const ICMPV6_PORT_UNREACH: u8 = 4;
    /// Source address failed ingress/egress policy.
    pub const ICMPV6_POLICY_FAIL: u8 = 5;
    /// Reject route to destination.
    pub const ICMPV6_REJECT_ROUTE: u8 = 6;
}

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// ECN echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}
