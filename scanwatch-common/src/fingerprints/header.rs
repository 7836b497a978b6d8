//! A sampled probe's headers, decoded as far as the trait table looks: the IP fields scanners
//! set (TTL, ID, DF, flow label) and the first bytes of the transport header.

use crate::{
    classify::classify_tcp,
    proto::{
        ICMP_ADDRESS, ICMP_ECHO, ICMP_INFO_REQUEST, ICMP_TIMESTAMP, ICMPV6_ECHO_REQUEST,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
        SCTP_CHUNK_COOKIE_ECHO, SCTP_CHUNK_INIT,
    },
};

/// The kind of probe a trait applies to: what a scanner's mode sends, as the kernel classes
/// probes (`classify::PacketClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP segment with SYN and none of ACK, RST, FIN.
    TcpSyn,
    /// Any other TCP probe: FIN, NULL, Xmas, FIN|ACK (Maimon), odd flag mixes. Bare ACKs are
    /// established traffic to the kernel and never sampled.
    TcpFlags,
    Udp,
    /// ICMP or ICMPv6 echo request.
    IcmpEcho,
    /// ICMP timestamp, information or address-mask request.
    IcmpQuery,
    /// SCTP whose first chunk is INIT or COOKIE ECHO.
    Sctp,
    /// Any other IP protocol (nmap -sO's raw probes).
    IpOther,
    /// Every kind above.
    Any,
}

/// A probe's transport header, as far as traits look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp {
        flags: u8,
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        window: u16,
        /// The options in the sample; `options_len` says how many the header declared (the
        /// sample may hold fewer).
        options: &'a [u8],
        options_len: usize,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
        payload_len: u16,
    },
    Icmp {
        kind: Option<ProbeKind>,
        ident: u16,
        seq: u16,
        payload_len: u16,
        /// The payload bytes the sample holds.
        payload: &'a [u8],
    },
    Sctp {
        src_port: u16,
        dst_port: u16,
        vtag: u32,
        /// The first chunk, as far as the sample holds it (type, flags, length, value).
        chunk: &'a [u8],
    },
    /// Another protocol (or ICMP that is no request, or SCTP of an association).
    Other {
        proto: u8,
        payload_len: u16,
        payload: &'a [u8],
    },
}

/// The header fields of one sampled probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub ipv6: bool,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 identification (IPv6: none).
    pub ip_id: Option<u16>,
    pub dont_fragment: bool,
    /// IPv6 flow label (IPv4: none).
    pub flow_label: Option<u32>,
    /// Low 16 bits of the destination address.
    pub dst_low: u16,
    pub l4: L4<'a>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The bytes of `b` from `start` to `end`, as far as `b` holds them.
fn held(b: &[u8], start: usize, end: usize) -> &[u8] {
    let start = start.min(b.len());
    &b[start..end.min(b.len()).max(start)]
}

impl<'a> Header<'a> {
    /// Decodes a sample (bytes from the IP header on). `None` when it is too short for the IP
    /// header and the first 8 bytes of L4 (TCP: 20), or not IP. IPv6 extension headers are
    /// not walked: such a probe decodes as `L4::Other` of the extension's number.
    pub fn decode(b: &'a [u8]) -> Option<Self> {
        let version = b.first()? >> 4;
        let (ipv6, ttl, ip_id, dont_fragment, flow_label, dst_low, proto, l4_at, l4_len) =
            match version {
                4 => {
                    let ihl = usize::from(b[0] & 0x0f) * 4;
                    let total = usize::from(be16(b, 2)?);
                    let frag = be16(b, 6)?;
                    (
                        false,
                        *b.get(8)?,
                        Some(be16(b, 4)?),
                        frag & 0x4000 != 0,
                        None,
                        be16(b, 18)?,
                        *b.get(9)?,
                        ihl,
                        total.checked_sub(ihl)?,
                    )
                }
                6 => (
                    true,
                    *b.get(7)?,
                    None,
                    false,
                    Some(be32(b, 0)? & 0x000f_ffff),
                    be16(b, 38)?,
                    *b.get(6)?,
                    40,
                    usize::from(be16(b, 4)?),
                ),
                _ => return None,
            };
        let payload_len =
            |header: usize| u16::try_from(l4_len.saturating_sub(header)).unwrap_or(u16::MAX);
        let l4 = match proto {
            IPPROTO_TCP => {
                let doff = usize::from(b.get(l4_at + 12)? >> 4) * 4;
                L4::Tcp {
                    flags: *b.get(l4_at + 13)?,
                    src_port: be16(b, l4_at)?,
                    dst_port: be16(b, l4_at + 2)?,
                    seq: be32(b, l4_at + 4)?,
                    ack: be32(b, l4_at + 8)?,
                    window: be16(b, l4_at + 14)?,
                    options: held(b, l4_at + 20, l4_at + doff),
                    options_len: doff.saturating_sub(20),
                }
            }
            IPPROTO_UDP => {
                be16(b, l4_at + 6)?;
                L4::Udp {
                    src_port: be16(b, l4_at)?,
                    dst_port: be16(b, l4_at + 2)?,
                    payload_len: payload_len(8),
                }
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                let kind = match (ipv6, *b.get(l4_at)?) {
                    (false, ICMP_ECHO) | (true, ICMPV6_ECHO_REQUEST) => Some(ProbeKind::IcmpEcho),
                    (false, ICMP_TIMESTAMP | ICMP_INFO_REQUEST | ICMP_ADDRESS) => {
                        Some(ProbeKind::IcmpQuery)
                    }
                    _ => None,
                };
                L4::Icmp {
                    kind,
                    ident: be16(b, l4_at + 4)?,
                    seq: be16(b, l4_at + 6)?,
                    payload_len: payload_len(8),
                    payload: held(b, l4_at + 8, l4_at + l4_len),
                }
            }
            IPPROTO_SCTP => {
                be32(b, l4_at + 4)?;
                L4::Sctp {
                    src_port: be16(b, l4_at)?,
                    dst_port: be16(b, l4_at + 2)?,
                    vtag: be32(b, l4_at + 4)?,
                    chunk: held(b, l4_at + 12, l4_at + l4_len),
                }
            }
            _ => L4::Other {
                proto,
                payload_len: payload_len(0),
                payload: held(b, l4_at, l4_at + l4_len),
            },
        };
        Some(Self {
            ipv6,
            ttl,
            ip_id,
            dont_fragment,
            flow_label,
            dst_low,
            l4,
        })
    }

    /// The probe kind, if a trait can apply (`None`: replies, established TCP, SCTP of an
    /// association).
    pub fn kind(&self) -> Option<ProbeKind> {
        match self.l4 {
            L4::Tcp { flags, .. } if flags & 0x17 == 0x02 => Some(ProbeKind::TcpSyn),
            L4::Tcp { flags, .. } if classify_tcp(flags).is_stealth() => Some(ProbeKind::TcpFlags),
            L4::Tcp { .. } => None,
            L4::Udp { .. } => Some(ProbeKind::Udp),
            L4::Icmp { kind, .. } => kind,
            L4::Sctp { chunk, .. } => match chunk.first() {
                Some(&(SCTP_CHUNK_INIT | SCTP_CHUNK_COOKIE_ECHO)) => Some(ProbeKind::Sctp),
                _ => None,
            },
            L4::Other { .. } => Some(ProbeKind::IpOther),
        }
    }

    /// The transport destination port (TCP, UDP, SCTP).
    pub fn dst_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Tcp { dst_port, .. } | L4::Udp { dst_port, .. } | L4::Sctp { dst_port, .. } => {
                Some(dst_port)
            }
            _ => None,
        }
    }

    /// The transport source port (TCP, UDP, SCTP).
    pub fn src_port(&self) -> Option<u16> {
        match self.l4 {
            L4::Tcp { src_port, .. } | L4::Udp { src_port, .. } | L4::Sctp { src_port, .. } => {
                Some(src_port)
            }
            _ => None,
        }
    }
}
