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
        /// Any other TCP flag mix no legitimate stack sends (see [`classify_tcp`]): FIN|PSH,
        /// FIN|URG, PSH, URG, SYN|FIN, SYN|RST, FIN|RST, ... (nmap --scanflags). A stealth probe.
        TcpOddFlags = 10 => "tcp_odd_flags",
        /// An IP protocol other than TCP, UDP, ICMP (of its IP version) and SCTP: GRE, ESP,
        /// IGMP, OSPF, ... Counted by distinct protocol number (nmap -sO).
        IpProtocol = 11 => "ip_protocol",
        /// SCTP whose first chunk is INIT: an association attempt (nmap -sY).
        SctpInit = 12 => "sctp_init",
        /// SCTP whose first chunk is COOKIE ECHO, the stealthier probe (nmap -sZ).
        SctpCookieEcho = 13 => "sctp_cookie_echo",
        /// TCP with ACK and without SYN/FIN/RST: established traffic, the fast path.
        TcpEstablished = 14 => "tcp_established",
        /// Other TCP a legitimate stack sends: SYN-ACK, RST, RST-ACK, FIN|ACK with PSH or URG
        /// (a close carrying data). Replies and closes, never probes.
        TcpOther = 15 => "tcp_other",
        /// Other ICMP/ICMPv6: echo replies, errors, neighbour discovery.
        IcmpOther = 16 => "icmp_other",
        /// A non-first fragment (its L4 header is in another packet).
        NonFirstFragment = 17 => "non_first_fragment",
        /// SCTP of an association (first chunk neither INIT nor COOKIE ECHO), or an SCTP
        /// packet too short for a chunk header. Not a probe.
        OtherL4 = 18 => "other_l4",
        /// Not IP (ARP, LLDP, ...).
        NonIp = 19 => "non_ip",
        /// Could not be parsed; see the parse-error counters.
        Malformed = 20 => "malformed",
    }
    /// Number of packet classes.
    pub const PACKET_CLASSES: usize;
}

/// Number of probe classes (the first classes of [`PacketClass`]).
pub const PROBE_CLASSES: usize = 14;

impl PacketClass {
    /// True for classes that update per-source state.
    #[inline(always)]
    pub const fn is_probe(self) -> bool {
        (self as u32) < PROBE_CLASSES as u32
    }

    /// True for the stealth TCP probes (FIN, NULL, Xmas, Maimon, odd flag mixes).
    #[inline(always)]
    pub const fn is_stealth(self) -> bool {
        matches!(
            self,
            Self::TcpFin | Self::TcpNull | Self::TcpXmas | Self::TcpMaimon | Self::TcpOddFlags
        )
    }

    /// True for the SCTP probes (INIT, COOKIE ECHO).
    #[inline(always)]
    pub const fn is_sctp_probe(self) -> bool {
        matches!(self, Self::SctpInit | Self::SctpCookieEcho)
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

/// Classifies a TCP segment by its flags: the flag table, one class per flag byte.
///
/// ECE and CWR (0xc0) never change the class: they only negotiate and signal ECN (RFC 3168 §6.1),
/// on a SYN, a SYN-ACK or data alike. Of the six other bits, what legitimate stacks send:
/// - ACK without SYN, FIN, RST (PSH, URG allowed): established traffic, the fast path;
/// - SYN without ACK, FIN, RST: a connection attempt (PSH or URG on a SYN is odd, yet it still
///   asks for a connection and is counted as one);
/// - SYN|ACK without FIN, RST: a connection accepted (a reply);
/// - RST without SYN, FIN (ACK, PSH, URG allowed): a reset (a reply);
/// - FIN|ACK: a close, also nmap's Maimon probe, kept as its own class so a socket lookup can
///   tell quiet closes of real connections; FIN|ACK with PSH or URG: a close carrying data.
///
/// Everything else is a probe: NULL, FIN, Xmas (FIN|PSH|URG) by their nmap names, and every
/// other mix (`TcpOddFlags`): FIN|PSH, FIN|URG, PSH, URG, PSH|URG, SYN|FIN, SYN|RST, FIN|RST,
/// SYN|ACK|FIN, SYN|ACK|RST, ... No stack sends a segment without ACK after its SYN, nor SYN or
/// FIN together with RST.
#[inline(always)]
pub const fn classify_tcp(flags: u8) -> PacketClass {
    use tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};
    let f = flags & 0x3f;
    // The fast path first: established traffic pays one mask and one compare.
    if f & (ACK | SYN | FIN | RST) == ACK {
        return PacketClass::TcpEstablished;
    }
    match f & (ACK | SYN | FIN | RST) {
        SYN => PacketClass::TcpSyn,
        x if x == SYN | ACK => PacketClass::TcpOther,
        RST => PacketClass::TcpOther,
        x if x == RST | ACK => PacketClass::TcpOther,
        x if x == FIN | ACK => {
            if f == FIN | ACK {
                PacketClass::TcpMaimon
            } else {
                PacketClass::TcpOther
            }
        }
        _ => match f {
            0 => PacketClass::TcpNull,
            FIN => PacketClass::TcpFin,
            x if x == FIN | PSH | URG => PacketClass::TcpXmas,
            _ => PacketClass::TcpOddFlags,
        },
    }
}

/// [`classify_tcp`] for every flag byte, for documentation and tools; the kernel calls the
/// function (a few ALU operations, no memory load).
pub const TCP_FLAG_CLASSES: [PacketClass; 256] = {
    let mut table = [PacketClass::TcpOther; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = classify_tcp(i as u8);
        i += 1;
    }
    table
};

/// Classifies an SCTP packet by its first chunk's type (RFC 9260 §3.2): INIT (1) and COOKIE
/// ECHO (10) open an association and are probes; every other chunk belongs to one.
#[inline(always)]
pub const fn classify_sctp(first_chunk: u8) -> PacketClass {
    match first_chunk {
        crate::proto::SCTP_CHUNK_INIT => PacketClass::SctpInit,
        crate::proto::SCTP_CHUNK_COOKIE_ECHO => PacketClass::SctpCookieEcho,
        _ => PacketClass::OtherL4,
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
        assert_eq!(classify_tcp(SYN | FIN), PacketClass::TcpOddFlags);
        assert_eq!(classify_tcp(FIN | PSH), PacketClass::TcpOddFlags);
        assert_eq!(classify_tcp(SYN | RST), PacketClass::TcpOddFlags);
    }

    /// The flag table, written independently: by what each bit means rather than by masks.
    fn reference(byte: u8) -> PacketClass {
        let has = |bit: u8| byte & bit != 0;
        let (fin, syn, rst, psh, ack, urg) =
            (has(FIN), has(SYN), has(RST), has(PSH), has(ACK), has(URG));
        // ECE and CWR: ignored (RFC 3168).
        if ack && !syn && !fin && !rst {
            PacketClass::TcpEstablished
        } else if syn && !ack && !fin && !rst {
            PacketClass::TcpSyn
        } else if (syn && ack && !fin && !rst) || (rst && !syn && !fin) {
            PacketClass::TcpOther
        } else if fin && ack && !syn && !rst {
            if psh || urg {
                PacketClass::TcpOther
            } else {
                PacketClass::TcpMaimon
            }
        } else if !fin && !syn && !rst && !psh && !ack && !urg {
            PacketClass::TcpNull
        } else if fin && !syn && !rst && !psh && !ack && !urg {
            PacketClass::TcpFin
        } else if fin && psh && urg && !syn && !rst && !ack {
            PacketClass::TcpXmas
        } else {
            PacketClass::TcpOddFlags
        }
    }

    #[test]
    fn every_flag_byte_matches_the_reference() {
        let mut probes = 0;
        for byte in 0..=255u8 {
            let class = classify_tcp(byte);
            assert_eq!(class, reference(byte), "flags {byte:#04x}");
            assert_eq!(TCP_FLAG_CLASSES[usize::from(byte)], class);
            // ECN bits never change the class.
            assert_eq!(class, classify_tcp(byte & 0x3f), "flags {byte:#04x}");
            if class.is_probe() {
                assert!(class == PacketClass::TcpSyn || class.is_stealth());
                probes += 1;
            }
        }
        // Of the 64 mixes of the six classic bits, 19 are not probes: 4 established, 4 SYN-ACK,
        // 8 RST, 3 FIN|ACK closes with data. Probes: 4 SYN, 1 Maimon and the 40 other mixes,
        // each times the 4 ECN combinations.
        assert_eq!(probes, (4 + 1 + 40) * 4);
    }

    #[test]
    fn sctp_first_chunk_table() {
        assert_eq!(classify_sctp(1), PacketClass::SctpInit);
        assert_eq!(classify_sctp(10), PacketClass::SctpCookieEcho);
        for other in [0u8, 2, 3, 6, 11, 14] {
            assert_eq!(classify_sctp(other), PacketClass::OtherL4);
        }
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
