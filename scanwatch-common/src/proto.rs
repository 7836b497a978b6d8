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

/// ICMP destination unreachable.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMP echo request.
pub const ICMP_ECHO: u8 = 8;
/// ICMP time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP timestamp request.
pub const ICMP_TIMESTAMP: u8 = 13;
/// ICMP information request (obsolete; probed like a timestamp request).
pub const ICMP_INFO_REQUEST: u8 = 15;
/// ICMP address-mask request.
pub const ICMP_ADDRESS: u8 = 17;

/// ICMPv6 destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 time exceeded.
pub const ICMPV6_TIME_EXCEED: u8 = 3;
/// ICMPv6 echo request.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}
