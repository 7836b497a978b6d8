//! Packet parsing: Ethernet with up to two VLAN tags, IPv4 (options, fragments), IPv6 with a
//! bounded walk over extension headers, then TCP/UDP/ICMP/ICMPv6 just far enough to classify.
//! Every read goes through [`read`], which checks bounds against `data_end`. The same parser
//! serves the XDP (ingress) and TC (egress) programs through [`Frame`].

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use scanwatch_common::{
    addr::SourceKey,
    classify::{PacketClass, classify_icmpv4, classify_icmpv6, classify_tcp},
    stats::ParseError,
};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

/// IPv6 extension headers followed before giving up (`Ipv6ExtChainTooLong`). Real traffic
/// rarely carries more than two; eight covers every legitimate combination (RFC 8200 §4.1).
const MAX_IPV6_EXT: usize = 8;
/// Extension headers may not push the L4 header past this offset; keeps packet offsets small
/// and known to the verifier.
const MAX_L4_OFFSET: usize = 2048;

/// A packet buffer with bounds: the XDP and TC contexts.
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }

    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

/// The datagram an ICMP error quotes: the packet *we* sent (so `src` is local).
#[derive(Clone, Copy)]
pub struct Quoted {
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// Destination unreachable (port/host/admin), as opposed to time exceeded.
    pub unreachable: bool,
}

/// What the programs need to know about a packet.
pub struct Packet {
    pub class: PacketClass,
    pub ipv6: bool,
    /// Source address; IPv4 as v4-mapped IPv6.
    pub src: [u8; 16],
    /// Destination address; IPv4 as v4-mapped IPv6.
    pub dst: [u8; 16],
    /// Source port for TCP and UDP; the identifier for ICMP echo/timestamp; else 0.
    pub src_port: u16,
    /// Destination port for TCP and UDP, else 0.
    pub dst_port: u16,
    /// IP protocol of the L4 header (0 when none was reached).
    pub proto: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// For ICMP errors: the datagram they quote.
    pub quoted: Option<Quoted>,
}

impl Packet {
    /// An empty packet to parse into.
    pub const fn new(ipv6: bool) -> Self {
        Self {
            class: PacketClass::NonIp,
            ipv6,
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            proto: 0,
            tcp_flags: 0,
            quoted: None,
        }
    }
}

/// Copies a `T` out of the packet at `offset`, if it lies inside the packet.
#[inline(always)]
fn read<T: Copy, C: Frame>(ctx: &C, offset: usize) -> Option<T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked against data_end above; packet memory is readable, may be
    // unaligned.
    Some(unsafe { ((start + offset) as *const T).read_unaligned() })
}

#[inline(always)]
const fn be16(hi: u8, lo: u8) -> u16 {
    u16::from_be_bytes([hi, lo])
}

/// Parses one frame into `packet`. `Err` only for malformed input; non-IP frames are `Ok` with
/// class `NonIp`. Filling the caller's `Packet` (rather than returning one) keeps copies of it
/// off the 512-byte BPF stack.
#[inline(always)]
pub fn parse<C: Frame>(ctx: &C, packet: &mut Packet) -> Result<(), ParseError> {
    let eth: [u8; ETH_HLEN] = read(ctx, 0).ok_or(ParseError::EthTruncated)?;
    let mut ethertype = be16(eth[12], eth[13]);
    let mut offset = ETH_HLEN;
    // Up to two tags: 802.1Q, or 802.1ad outer + 802.1Q inner (QinQ).
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let tag: [u8; 4] = read(ctx, offset).ok_or(ParseError::VlanTruncated)?;
            ethertype = be16(tag[2], tag[3]);
            offset += 4;
        }
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(ctx, offset, packet),
        ETH_P_IPV6 => parse_ipv6(ctx, offset, packet),
        _ => Ok(()),
    }
}

#[inline(always)]
fn parse_ipv4<C: Frame>(ctx: &C, offset: usize, packet: &mut Packet) -> Result<(), ParseError> {
    let ip: [u8; 20] = read(ctx, offset).ok_or(ParseError::Ipv4Truncated)?;
    if ip[0] >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(be16(ip[2], ip[3]));
    if header_len < 20 || total_len < header_len {
        return Err(ParseError::Ipv4BadHeaderLength);
    }
    let l4_offset = offset + header_len;
    if ctx.data() + l4_offset > ctx.data_end() {
        return Err(ParseError::Ipv4BadHeaderLength);
    }
    let fragment = be16(ip[6], ip[7]);
    packet.ipv6 = false;
    packet.class = PacketClass::OtherL4;
    packet.src = SourceKey::from_ipv4([ip[12], ip[13], ip[14], ip[15]]).addr;
    packet.dst = SourceKey::from_ipv4([ip[16], ip[17], ip[18], ip[19]]).addr;
    if fragment & 0x1fff != 0 {
        packet.class = PacketClass::NonFirstFragment;
        return Ok(());
    }
    let more_fragments = fragment & 0x2000 != 0;
    classify_l4(
        ctx,
        packet,
        ip[9],
        l4_offset,
        total_len - header_len,
        more_fragments,
    )
}

#[inline(always)]
fn parse_ipv6<C: Frame>(ctx: &C, offset: usize, packet: &mut Packet) -> Result<(), ParseError> {
    let ip: [u8; 40] = read(ctx, offset).ok_or(ParseError::Ipv6Truncated)?;
    if ip[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    packet.ipv6 = true;
    packet.class = PacketClass::OtherL4;
    packet.src.copy_from_slice(&ip[8..24]);
    packet.dst.copy_from_slice(&ip[24..40]);

    let packet_len = ctx.data_end() - ctx.data();
    let payload_len = usize::from(be16(ip[4], ip[5]));
    // Payload length 0 means a jumbogram (RFC 2675): trust the frame.
    let ip_end = if payload_len == 0 {
        packet_len
    } else {
        offset + 40 + payload_len
    };
    let mut next = ip[6];
    let mut cursor = offset + 40;
    let mut more_fragments = false;
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h: [u8; 2] = read(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                next = h[0];
                (usize::from(h[1]) + 1) * 8
            }
            IPPROTO_AH => {
                let h: [u8; 2] = read(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                next = h[0];
                (usize::from(h[1]) + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let h: [u8; 8] = read(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                next = h[0];
                let offset_flags = be16(h[2], h[3]);
                if offset_flags >> 3 != 0 {
                    packet.class = PacketClass::NonFirstFragment;
                    return Ok(());
                }
                more_fragments = offset_flags & 1 != 0;
                8
            }
            _ => break,
        };
        cursor += len;
        if cursor > packet_len || cursor > MAX_L4_OFFSET {
            return Err(ParseError::Ipv6ExtTruncated);
        }
    }
    if matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    ) {
        return Err(ParseError::Ipv6ExtChainTooLong);
    }
    classify_l4(
        ctx,
        packet,
        next,
        cursor,
        ip_end.saturating_sub(cursor),
        more_fragments,
    )
}

/// Classifies by the L4 header at `offset`. `l4_len` is what the IP header declares;
/// `more_fragments` marks a first fragment, which may legitimately end before the L4 header.
#[inline(always)]
fn classify_l4<C: Frame>(
    ctx: &C,
    packet: &mut Packet,
    proto: u8,
    offset: usize,
    l4_len: usize,
    more_fragments: bool,
) -> Result<(), ParseError> {
    let (needed, truncated) = match proto {
        IPPROTO_TCP => (20, ParseError::TcpTruncated),
        IPPROTO_UDP => (8, ParseError::UdpTruncated),
        IPPROTO_ICMP if !packet.ipv6 => (4, ParseError::IcmpTruncated),
        IPPROTO_ICMPV6 if packet.ipv6 => (4, ParseError::IcmpTruncated),
        _ => {
            packet.class = PacketClass::OtherL4;
            return Ok(());
        }
    };
    packet.proto = proto;
    if l4_len < needed {
        if more_fragments {
            packet.class = PacketClass::Fragment;
            return Ok(());
        }
        return Err(truncated);
    }
    match proto {
        IPPROTO_TCP => {
            let tcp: [u8; 20] = read(ctx, offset).ok_or(truncated)?;
            if tcp[12] >> 4 < 5 {
                return Err(ParseError::TcpBadDataOffset);
            }
            packet.src_port = be16(tcp[0], tcp[1]);
            packet.dst_port = be16(tcp[2], tcp[3]);
            packet.tcp_flags = tcp[13];
            packet.class = classify_tcp(tcp[13]);
        }
        IPPROTO_UDP => {
            let udp: [u8; 8] = read(ctx, offset).ok_or(truncated)?;
            packet.src_port = be16(udp[0], udp[1]);
            packet.dst_port = be16(udp[2], udp[3]);
            packet.class = PacketClass::Udp;
        }
        _ => {
            let icmp: [u8; 4] = read(ctx, offset).ok_or(truncated)?;
            packet.class = if packet.ipv6 {
                classify_icmpv6(icmp[0])
            } else {
                classify_icmpv4(icmp[0])
            };
            // Echo, timestamp and their replies carry an identifier: the flow's "port".
            if l4_len >= 8
                && let Some(id) = read::<[u8; 2], C>(ctx, offset + 4)
            {
                packet.src_port = be16(id[0], id[1]);
            }
            let (unreachable, exceeded) = if packet.ipv6 {
                (icmp[0] == 1, icmp[0] == 3)
            } else {
                (icmp[0] == 3, icmp[0] == 11)
            };
            if unreachable || exceeded {
                packet.quoted = parse_quoted(ctx, offset + 8, packet.ipv6, unreachable);
            }
        }
    }
    Ok(())
}

/// Parses the datagram quoted by an ICMP error at `offset`: its IP header and the first 8
/// bytes of its L4 header (RFC 792 / RFC 4443 guarantee at least these). No extension-header
/// walk for IPv6: a quoted datagram with extension headers is simply not matched.
#[inline(always)]
fn parse_quoted<C: Frame>(ctx: &C, offset: usize, ipv6: bool, unreachable: bool) -> Option<Quoted> {
    let mut q = Quoted {
        proto: 0,
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        unreachable,
    };
    let l4 = if ipv6 {
        let next: [u8; 2] = read(ctx, offset + 6)?;
        q.proto = next[0];
        q.src = read(ctx, offset + 8)?;
        q.dst = read(ctx, offset + 24)?;
        offset + 40
    } else {
        let ip: [u8; 20] = read(ctx, offset)?;
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        if header_len < 20 {
            return None;
        }
        q.proto = ip[9];
        q.src = SourceKey::from_ipv4([ip[12], ip[13], ip[14], ip[15]]).addr;
        q.dst = SourceKey::from_ipv4([ip[16], ip[17], ip[18], ip[19]]).addr;
        offset + header_len
    };
    let ports: [u8; 8] = read(ctx, l4)?;
    match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            q.src_port = be16(ports[0], ports[1]);
            q.dst_port = be16(ports[2], ports[3]);
        }
        // Quoted echo/timestamp request: its identifier.
        _ => q.src_port = be16(ports[4], ports[5]),
    }
    Some(q)
}
