//! What a packet is, for scan detection: the probe classes that count toward a finding and the
//! non-probe classes that take the fast path. Pure tables, shared by the kernel and the tests.

indexed_enum! {
    /// Every packet gets exactly one class. The first [`PROBE_CLASSES`] are probes: they update
    /// per-source state. The rest pass with no state update.
    pub enum PacketClass {
        /// TCP SYN without ACK: a connection attempt (nmap -sS/-sT).
        TcpSyn = 0 => "tcp_syn",
        /// TCP FIN alone (nmap -sF).
        TcpFin = 1 => "tcp_fin",
        /// TCP with no flags (nmap -sN).
        TcpNull = 2 => "tcp_null",
        /// TCP FIN|PSH|URG (nmap -sX).
        TcpXmas = 3 => "tcp_xmas",
        /// TCP FIN|ACK (nmap --scanflags / -sM). Also a normal close; counted by distinct port, so a
        /// client closing many connections to one service is not a scan.
        TcpMaimon = 4 => "tcp_maimon",
        /// A UDP datagram.
        Udp = 5 => "udp",
        /// ICMP echo request / ICMPv6 echo request.
        IcmpEcho = 6 => "icmp_echo",
        /// ICMP timestamp request (type 13) or information request (15).
        IcmpTimestamp = 7 => "icmp_timestamp",
        /// ICMP address-mask request (type 17).
        IcmpAddrMask = 8 => "icmp_addr_mask",
        /// The first fragment of a datagram that is too short to hold its complete L4 header: the
        /// tiny-fragment trick (RFC 1858, nmap -f) used to slip probes past filters.
        Fragment = 9 => "fragment",
        /// TCP with ACK and without SYN/FIN/RST: established traffic, the fast path.
        TcpEstablished = 10 => "tcp_established",
        /// Other TCP: SYN-ACK, RST, RST-ACK, odd flag mixes. Replies, never probes.
        TcpOther = 11 => "tcp_other",
        /// Other ICMP/ICMPv6: echo replies, errors, neighbour discovery.
        IcmpOther = 12 => "icmp_other",
        /// A non-first fragment (its L4 header is in another packet).
        NonFirstFragment = 13 => "non_first_fragment",
        /// Another IP protocol (GRE, ESP, SCTP, ...).
        OtherL4 = 14 => "other_l4",
        /// Not IP (ARP, LLDP, ...).
        NonIp = 15 => "non_ip",
        /// Could not be parsed; see the parse-error counters.
        Malformed = 16 => "malformed",
    }
    /// Number of packet classes.
    pub const PACKET_CLASSES: usize;
}

/// Number of probe classes (the first classes of [`PacketClass`]).
pub const PROBE_CLASSES: usize = 10;

impl PacketClass {
    /// True for classes that update per-source state.
    #[inline(always)]
    pub const fn is_probe(self) -> bool {
        (self as u32) < PROBE_CLASSES as u32
    }

    /// True for the stealth TCP probes (FIN, NULL, Xmas, Maimon).
    #[inline(always)]
    pub const fn is_stealth(self) -> bool {
        matches!(
            self,
            Self::TcpFin | Self::TcpNull | Self::TcpXmas | Self::TcpMaimon
        )
    }

    /// True for ICMP probes (echo, timestamp, address mask).
    #[inline(always)]
    pub const fn is_icmp_probe(self) -> bool {
        matches!(
            self,
            Self::IcmpEcho | Self::IcmpTimestamp | Self::IcmpAddrMask
        )
    }
}

pub use crate::proto::tcp_flags;
use crate::proto::{
    ICMP_ADDRESS, ICMP_ECHO, ICMP_INFO_REQUEST, ICMP_TIMESTAMP, ICMPV6_ECHO_REQUEST,
};

/// Classifies a TCP segment by its flags. ECE/CWR (0xc0) are ignored: ECN-setup SYNs are SYNs.
#[inline(always)]
pub const fn classify_tcp(flags: u8) -> PacketClass {
    use tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
    let f = flags & 0x3f;
    if f & (ACK | SYN | FIN | RST) == ACK {
        return PacketClass::TcpEstablished;
    }
    if f & (SYN | ACK | RST) == SYN {
        return PacketClass::TcpSyn;
    }
    match f {
        0 => PacketClass::TcpNull,
        FIN => PacketClass::TcpFin,
        x if x == FIN | PSH | URG => PacketClass::TcpXmas,
        x if x == FIN | ACK => PacketClass::TcpMaimon,
        _ => PacketClass::TcpOther,
    }
}

/// Classifies an ICMPv4 message by type.
#[inline(always)]
pub const fn classify_icmpv4(icmp_type: u8) -> PacketClass {
    match icmp_type {
        ICMP_ECHO => PacketClass::IcmpEcho,
        ICMP_TIMESTAMP | ICMP_INFO_REQUEST => PacketClass::IcmpTimestamp,
        ICMP_ADDRESS => PacketClass::IcmpAddrMask,
        _ => PacketClass::IcmpOther,
    }
}

/// Classifies an ICMPv6 message by type.
#[inline(always)]
pub const fn classify_icmpv6(icmp_type: u8) -> PacketClass {
    match icmp_type {
        ICMPV6_ECHO_REQUEST => PacketClass::IcmpEcho,
        _ => PacketClass::IcmpOther,
    }
}

#[cfg(test)]
mod tests {
    use super::{tcp_flags::*, *};

    #[test]
    fn tcp_flag_table() {
        assert_eq!(classify_tcp(SYN), PacketClass::TcpSyn);
        assert_eq!(classify_tcp(SYN | 0xc0), PacketClass::TcpSyn); // ECN setup
        assert_eq!(classify_tcp(SYN | ACK), PacketClass::TcpOther);
        assert_eq!(classify_tcp(ACK), PacketClass::TcpEstablished);
        assert_eq!(classify_tcp(ACK | PSH), PacketClass::TcpEstablished);
        assert_eq!(classify_tcp(RST), PacketClass::TcpOther);
        assert_eq!(classify_tcp(RST | ACK), PacketClass::TcpOther);
        assert_eq!(classify_tcp(FIN), PacketClass::TcpFin);
        assert_eq!(classify_tcp(0), PacketClass::TcpNull);
        assert_eq!(classify_tcp(FIN | PSH | URG), PacketClass::TcpXmas);
        assert_eq!(classify_tcp(FIN | ACK), PacketClass::TcpMaimon);
        assert_eq!(classify_tcp(FIN | ACK | PSH), PacketClass::TcpOther);
        assert_eq!(classify_tcp(SYN | FIN), PacketClass::TcpSyn);
    }

    #[test]
    fn icmp_tables() {
        assert_eq!(classify_icmpv4(8), PacketClass::IcmpEcho);
        assert_eq!(classify_icmpv4(0), PacketClass::IcmpOther);
        assert_eq!(classify_icmpv4(3), PacketClass::IcmpOther);
        assert_eq!(classify_icmpv4(13), PacketClass::IcmpTimestamp);
        assert_eq!(classify_icmpv4(17), PacketClass::IcmpAddrMask);
        assert_eq!(classify_icmpv6(128), PacketClass::IcmpEcho);
        assert_eq!(classify_icmpv6(129), PacketClass::IcmpOther);
    }

    #[test]
    fn class_indices_match_all() {
        for (i, c) in PacketClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(c.is_probe(), i < PROBE_CLASSES);
        }
    }
}
