//! Packet parsing: Ethernet with up to two VLAN tags, IPv4 (options, fragments), IPv6 with a
//! bounded walk over extension headers, then TCP/UDP/ICMP/ICMPv6 just far enough to classify.
//! The same parser serves the XDP (ingress) and TC (egress) programs through [`Frame`].
//!
//! Speed: the parser reads only the fields it needs, each with one load of its own width
//! ([`load`]), and leaves addresses in the packet until a probe needs them
//! ([`Packet::src`], [`Packet::dst`]): established traffic never pays for them.

use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use scanwatch_common::{
    addr::SourceKey,
    classify::{PacketClass, classify_icmpv4, classify_icmpv6, classify_sctp, classify_tcp},
    icmp::{icmpv4_meaning, icmpv6_meaning},
    proto::{
        self, ETH_HLEN, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT, IPPROTO_HOPOPTS,
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
        SCTP_MIN_LEN,
    },
    stats::ParseError,
};

// EtherTypes as they lie in memory (network order) when loaded as a u16.
const ETH_P_IP_BE: u16 = proto::ETH_P_IP.to_be();
const ETH_P_IPV6_BE: u16 = proto::ETH_P_IPV6.to_be();
const ETH_P_8021Q_BE: u16 = proto::ETH_P_8021Q.to_be();
const ETH_P_8021AD_BE: u16 = proto::ETH_P_8021AD.to_be();

/// IPv6 extension headers followed before giving up (`Ipv6ExtChainTooLong`). Real traffic
/// rarely carries more than two; eight covers every legitimate combination (RFC 8200 §4.1).
const MAX_IPV6_EXT: usize = 8;
/// Extension headers may not push the L4 header past this offset; keeps packet offsets small
/// and known to the verifier.
const MAX_L4_OFFSET: usize = 2048;
/// The IP header starts within the first 22 bytes (Ethernet + two VLAN tags).
const MAX_L3_OFFSET: usize = ETH_HLEN + 8;
/// A mask that keeps every offset up to [`MAX_L3_OFFSET`].
const L3_OFFSET_MASK: usize = 31;
const _: () = assert!(MAX_L3_OFFSET <= L3_OFFSET_MASK);

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
    pub src: SourceKey,
    pub dst: SourceKey,
    pub src_port: u16,
    pub dst_port: u16,
    /// The error is a failed attempt ([`IcmpMeaning::Failure`]), not only a path report.
    ///
    /// [`IcmpMeaning::Failure`]: scanwatch_common::icmp::IcmpMeaning::Failure
    pub failure: bool,
}

/// What the programs need to know about a packet: 16 bytes, 8-aligned, so it lives on the stack
/// and initialises with two stores (not a call to `memset`, which a 24-byte struct gets).
///
/// After a parse error, `class` tells whether the network header was read: `NonIp` if not,
/// anything else if `l3` and `ipv6` locate a complete fixed IP header (so the source address
/// can be read and checked against the block maps).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Packet {
    pub class: PacketClass,
    /// Offset of the IP header.
    pub l3: u16,
    /// Offset of the datagram an ICMP error quotes (0: not an ICMP error).
    pub quoted_l3: u16,
    /// Source port for TCP and UDP; the identifier for ICMP echo/timestamp; for a tiny first
    /// fragment (class `Fragment`, whose ports are unknown), its datagram's identification
    /// (IPv4: the 16-bit field; IPv6: the 32-bit one's halves XORed); else 0.
    pub src_port: u16,
    /// Destination port for TCP and UDP, else 0.
    pub dst_port: u16,
    /// IP protocol of the L4 header (0 when none was reached).
    pub proto: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    pub ipv6: bool,
    /// The ICMP error is a failed attempt (see [`Quoted::failure`]).
    pub quoted_failure: bool,
}

impl Packet {
    /// An empty packet to parse into: class `NonIp`, every other field zero.
    #[inline(always)]
    pub const fn new() -> Self {
        // SAFETY: `Packet` is `repr(C)`, 16 bytes (asserted below), with `class` (a `u32` enum)
        // in the first four bytes of little-endian memory and only integers and bools after
        // it, for which zero is valid. Built from two words so LLVM emits two stores rather
        // than a call to `memset`.
        unsafe { core::mem::transmute::<[u64; 2], Packet>([PacketClass::NonIp as u64, 0]) }
    }

    /// Source and destination addresses (IPv4 as v4-mapped), read from the packet after one
    /// bounds check: with two separate checks LLVM proves that the second cannot pass when the
    /// first failed and drops a branch, while the verifier cannot follow that proof.
    #[inline(always)]
    pub fn addrs<C: Frame>(&self, ctx: &C) -> Option<(SourceKey, SourceKey)> {
        // The mask (a no-op: `l3 <= MAX_L3_OFFSET`) bounds the offset for the verifier, which
        // cannot always see what `parse` stored in the stack slot.
        let l3 = usize::from(self.l3) & L3_OFFSET_MASK;
        if self.ipv6 {
            let [src_hi, src_lo, dst_hi, dst_lo]: [u64; 4] = load(ctx, l3 + 8)?;
            Some((
                SourceKey::from_words([src_hi, src_lo]),
                SourceKey::from_words([dst_hi, dst_lo]),
            ))
        } else {
            let [src, dst]: [u32; 2] = load(ctx, l3 + 12)?;
            Some((
                SourceKey::from_ipv4_word(src),
                SourceKey::from_ipv4_word(dst),
            ))
        }
    }

    /// The IP TTL (IPv6: hop limit), read from the packet.
    ///
    /// Loads two bytes (IPv4 TTL and protocol, IPv6 next header and hop limit): LLVM turns the
    /// bounds check of a one-byte load into `end > ptr`, from which the verifier learns no range.
    #[inline(always)]
    pub fn ttl<C: Frame>(&self, ctx: &C) -> Option<u8> {
        let l3 = usize::from(self.l3) & L3_OFFSET_MASK;
        if self.ipv6 {
            load::<[u8; 2], C>(ctx, l3 + 6).map(|b| b[1])
        } else {
            load::<[u8; 2], C>(ctx, l3 + 8).map(|b| b[0])
        }
    }

    /// A TCP segment's sequence and acknowledgement numbers, read from the packet. `None` for
    /// an IPv6 segment behind extension headers (never a handshake we verify).
    #[inline(always)]
    pub fn tcp_seq_ack<C: Frame>(&self, ctx: &C) -> Option<(u32, u32)> {
        let l3 = usize::from(self.l3) & L3_OFFSET_MASK;
        // Two-byte loads, as in `ttl`.
        let l4 = if self.ipv6 {
            let [next, _]: [u8; 2] = load(ctx, l3 + 6)?;
            if next != IPPROTO_TCP {
                return None;
            }
            l3 + 40
        } else {
            let [ver_ihl, _]: [u8; 2] = load(ctx, l3)?;
            l3 + usize::from(ver_ihl & 0x0f) * 4
        };
        let [seq, ack]: [u32; 2] = load(ctx, l4 + 4)?;
        Some((u32::from_be(seq), u32::from_be(ack)))
    }

    /// Source address (IPv4 as v4-mapped), read from the packet.
    #[inline(always)]
    pub fn src<C: Frame>(&self, ctx: &C) -> Option<SourceKey> {
        self.addrs(ctx).map(|(src, _)| src)
    }

    /// The datagram an ICMP error quotes, read from the packet.
    #[inline(always)]
    pub fn quoted<C: Frame>(&self, ctx: &C) -> Option<Quoted> {
        if self.quoted_l3 == 0 {
            return None;
        }
        parse_quoted(
            ctx,
            usize::from(self.quoted_l3),
            self.ipv6,
            self.quoted_failure,
        )
    }
}

/// Loads a `T` from the packet at `offset`, if it lies inside the packet.
///
/// Packet data has no alignment guarantee, so this is an unaligned read. The programs are built
/// with `+allows-misaligned-mem-access` (see `scanwatch/build.rs`), so it is still one load of
/// `T`'s width; the verifier accepts misaligned packet loads on architectures with efficient
/// unaligned access (x86_64, arm64) and refuses the program at load time elsewhere.
#[inline(always)]
fn load<T: Copy, C: Frame>(ctx: &C, offset: usize) -> Option<T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked against data_end above; unaligned reads are allowed.
    Some(unsafe { ((start + offset) as *const T).read_unaligned() })
}

/// Parses one frame into `packet`. `Err` only for malformed input; non-IP frames are `Ok` with
/// class `NonIp`.
#[inline(always)]
pub fn parse<C: Frame>(ctx: &C, packet: &mut Packet) -> Result<(), ParseError> {
    let mut ethertype: u16 = load(ctx, 12).ok_or(ParseError::EthTruncated)?;
    let mut offset = ETH_HLEN;
    // Up to two tags: 802.1Q, or 802.1ad outer + 802.1Q inner (QinQ).
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q_BE || ethertype == ETH_P_8021AD_BE {
            ethertype = load(ctx, offset + 2).ok_or(ParseError::VlanTruncated)?;
            offset += 4;
        }
    }
    if offset > MAX_L3_OFFSET {
        return Ok(());
    }
    packet.l3 = offset as u16;
    match ethertype {
        ETH_P_IP_BE => parse_ipv4(ctx, offset, packet),
        ETH_P_IPV6_BE => parse_ipv6(ctx, offset, packet),
        _ => Ok(()),
    }
}

#[inline(always)]
fn parse_ipv4<C: Frame>(ctx: &C, offset: usize, packet: &mut Packet) -> Result<(), ParseError> {
    // Bytes 0..20: version/IHL, total length, fragment, protocol.
    let first: u32 = load(ctx, offset).ok_or(ParseError::Ipv4Truncated)?;
    let fragment: u32 = load(ctx, offset + 4).ok_or(ParseError::Ipv4Truncated)?;
    let ttl_proto: u32 = load(ctx, offset + 8).ok_or(ParseError::Ipv4Truncated)?;
    if ctx.data() + offset + 20 > ctx.data_end() {
        return Err(ParseError::Ipv4Truncated);
    }
    let [ver_ihl, _, len_hi, len_lo] = first.to_ne_bytes();
    if ver_ihl >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    // The fixed header, with the addresses, is in the packet: the source can be checked.
    packet.ipv6 = false;
    packet.class = PacketClass::OtherL4;
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    if header_len < 20 || total_len < header_len {
        return Err(ParseError::Ipv4BadHeaderLength);
    }
    let l4_offset = offset + header_len;
    if ctx.data() + l4_offset > ctx.data_end() {
        return Err(ParseError::Ipv4BadHeaderLength);
    }
    let [id_hi, id_lo, frag_hi, frag_lo] = fragment.to_ne_bytes();
    let fragment = u16::from_be_bytes([frag_hi, frag_lo]);
    if fragment & 0x1fff != 0 {
        packet.class = PacketClass::NonFirstFragment;
        return Ok(());
    }
    let more_fragments = fragment & 0x2000 != 0;
    classify_l4(
        ctx,
        packet,
        ttl_proto.to_ne_bytes()[1],
        l4_offset,
        total_len - header_len,
        more_fragments,
    )?;
    if packet.class == PacketClass::Fragment {
        packet.src_port = u16::from_be_bytes([id_hi, id_lo]);
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv6<C: Frame>(ctx: &C, offset: usize, packet: &mut Packet) -> Result<(), ParseError> {
    // Bytes 0..8: version, payload length, next header; addresses stay in the packet.
    let head: u64 = load(ctx, offset).ok_or(ParseError::Ipv6Truncated)?;
    if ctx.data() + offset + 40 > ctx.data_end() {
        return Err(ParseError::Ipv6Truncated);
    }
    let head = head.to_ne_bytes();
    if head[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    packet.ipv6 = true;
    packet.class = PacketClass::OtherL4;

    let payload_len = usize::from(u16::from_be_bytes([head[4], head[5]]));
    // Payload length 0 means a jumbogram (RFC 2675): trust the frame.
    let ip_end = if payload_len == 0 {
        ctx.data_end() - ctx.data()
    } else {
        offset + 40 + payload_len
    };
    let chain = walk_ipv6_ext(ctx, head[6], offset + 40)?;
    if chain.is_non_first_fragment() {
        packet.class = PacketClass::NonFirstFragment;
        return Ok(());
    }
    classify_l4(
        ctx,
        packet,
        chain.next,
        chain.offset,
        ip_end.saturating_sub(chain.offset),
        chain.more_fragments(),
    )?;
    if packet.class == PacketClass::Fragment {
        packet.src_port = (chain.id ^ (chain.id >> 16)) as u16;
    }
    Ok(())
}

/// Where an IPv6 extension-header chain ends.
struct ExtChain {
    /// The header after the chain (the L4 protocol).
    next: u8,
    /// Offset of that header.
    offset: usize,
    /// Offset and flags of the last fragment header (0: none).
    fragment: u16,
    /// Identification of the last fragment header (0: none).
    id: u32,
}

impl ExtChain {
    /// A fragment other than the first: its L4 header is in another packet.
    #[inline(always)]
    fn is_non_first_fragment(&self) -> bool {
        self.fragment >> 3 != 0
    }

    /// The first fragment of a fragmented datagram.
    #[inline(always)]
    fn more_fragments(&self) -> bool {
        self.fragment & 1 != 0
    }
}

/// Walks at most [`MAX_IPV6_EXT`] extension headers starting at `cursor` with header type
/// `next`: for a packet's own IPv6 header and for the one an ICMPv6 error quotes. Stops early
/// at a non-first fragment header.
#[inline(always)]
fn walk_ipv6_ext<C: Frame>(
    ctx: &C,
    mut next: u8,
    mut cursor: usize,
) -> Result<ExtChain, ParseError> {
    let packet_len = ctx.data_end() - ctx.data();
    let mut fragment = 0;
    let mut id = 0;
    for _ in 0..MAX_IPV6_EXT {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let h: [u8; 2] = load(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                next = h[0];
                (usize::from(h[1]) + 1) * 8
            }
            IPPROTO_AH => {
                let h: [u8; 2] = load(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                next = h[0];
                (usize::from(h[1]) + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let [h, ident]: [u32; 2] = load(ctx, cursor).ok_or(ParseError::Ipv6ExtTruncated)?;
                let h = h.to_ne_bytes();
                next = h[0];
                fragment = u16::from_be_bytes([h[2], h[3]]);
                id = u32::from_be(ident);
                if fragment >> 3 != 0 {
                    return Ok(ExtChain {
                        next,
                        offset: cursor,
                        fragment,
                        id,
                    });
                }
                8
            }
            _ => break,
        };
        cursor += len;
        if cursor > packet_len {
            return Err(ParseError::Ipv6ExtTruncated);
        }
        // A chain that runs on past the offsets the parser reads, inside the packet, hides its
        // L4 header as a chain of too many headers does: the same evasion probe.
        if cursor > MAX_L4_OFFSET {
            return Err(ParseError::Ipv6ExtChainTooLong);
        }
    }
    if matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    ) {
        return Err(ParseError::Ipv6ExtChainTooLong);
    }
    Ok(ExtChain {
        next,
        offset: cursor,
        fragment,
        id,
    })
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
        IPPROTO_SCTP => {
            classify_sctp_chunk(ctx, packet, offset, l4_len, more_fragments);
            return Ok(());
        }
        // Any other protocol number is an IP-protocol probe, counted by number (nmap -sO).
        _ => {
            packet.proto = proto;
            packet.class = PacketClass::IpProtocol;
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
            // Ports (4 bytes), then data offset and flags at 12..14.
            let ports: u32 = load(ctx, offset).ok_or(truncated)?;
            let off_flags: u16 = load(ctx, offset + 12).ok_or(truncated)?;
            if ctx.data() + offset + 20 > ctx.data_end() {
                return Err(truncated);
            }
            let [doff, flags] = off_flags.to_ne_bytes();
            if doff >> 4 < 5 {
                return Err(ParseError::TcpBadDataOffset);
            }
            set_ports(packet, ports);
            packet.tcp_flags = flags;
            packet.class = classify_tcp(flags);
        }
        IPPROTO_UDP => {
            let ports: u32 = load(ctx, offset).ok_or(truncated)?;
            if ctx.data() + offset + 8 > ctx.data_end() {
                return Err(truncated);
            }
            set_ports(packet, ports);
            packet.class = PacketClass::Udp;
        }
        _ => {
            let icmp: u32 = load(ctx, offset).ok_or(truncated)?;
            let [icmp_type, code, _, _] = icmp.to_ne_bytes();
            packet.class = if packet.ipv6 {
                classify_icmpv6(icmp_type)
            } else {
                classify_icmpv4(icmp_type)
            };
            // Echo, timestamp and their replies carry an identifier: the flow's "port".
            if l4_len >= 8
                && let Some(id) = load::<u16, C>(ctx, offset + 4)
            {
                packet.src_port = u16::from_be(id);
            }
            let meaning = if packet.ipv6 {
                icmpv6_meaning(icmp_type, code)
            } else {
                icmpv4_meaning(icmp_type, code)
            };
            if meaning.quotes_datagram() && offset + 8 <= MAX_L4_OFFSET {
                packet.quoted_l3 = (offset + 8) as u16;
                packet.quoted_failure = meaning.is_failure();
            }
        }
    }
    Ok(())
}

/// Classifies SCTP by its first chunk (RFC 9260 §3): ports from the common header, the chunk
/// type at byte 12. A packet too short for a chunk header is no probe (`OtherL4`), unless it is
/// a first fragment that hides it (`Fragment`).
#[inline(always)]
fn classify_sctp_chunk<C: Frame>(
    ctx: &C,
    packet: &mut Packet,
    offset: usize,
    l4_len: usize,
    more_fragments: bool,
) {
    packet.proto = IPPROTO_SCTP;
    packet.class = PacketClass::OtherL4;
    if l4_len < SCTP_MIN_LEN {
        if more_fragments {
            packet.class = PacketClass::Fragment;
        }
        return;
    }
    let (Some(ports), Some(chunk)) = (load::<u32, C>(ctx, offset), load::<u8, C>(ctx, offset + 12))
    else {
        return;
    };
    set_ports(packet, ports);
    packet.class = classify_sctp(chunk);
}

/// Source and destination ports from the first four bytes of a TCP/UDP header.
#[inline(always)]
fn set_ports(packet: &mut Packet, ports: u32) {
    let [s0, s1, d0, d1] = ports.to_ne_bytes();
    packet.src_port = u16::from_be_bytes([s0, s1]);
    packet.dst_port = u16::from_be_bytes([d0, d1]);
}

/// Parses the datagram quoted by an ICMP error at `offset`: its IP header and the first 8
/// bytes of its L4 header (RFC 792 / RFC 4443 guarantee at least these). A quoted IPv6
/// datagram's extension headers are walked as the packet's own are (RFC 4443 §2.4(c): the error
/// carries as much of it as fits); a quoted non-first fragment has no ports and matches nothing.
#[inline(always)]
fn parse_quoted<C: Frame>(ctx: &C, offset: usize, ipv6: bool, failure: bool) -> Option<Quoted> {
    if offset > MAX_L4_OFFSET {
        return None;
    }
    let (proto, src, dst, l4) = if ipv6 {
        let [head, src_hi, src_lo, dst_hi, dst_lo]: [u64; 5] = load(ctx, offset)?;
        let chain = walk_ipv6_ext(ctx, head.to_ne_bytes()[6], offset + 40).ok()?;
        if chain.is_non_first_fragment() {
            return None;
        }
        (
            chain.next,
            SourceKey::from_words([src_hi, src_lo]),
            SourceKey::from_words([dst_hi, dst_lo]),
            chain.offset,
        )
    } else {
        let [first, _, ttl_proto, src, dst]: [u32; 5] = load(ctx, offset)?;
        let header_len = usize::from(first.to_ne_bytes()[0] & 0x0f) * 4;
        if header_len < 20 {
            return None;
        }
        (
            ttl_proto.to_ne_bytes()[1],
            SourceKey::from_ipv4_word(src),
            SourceKey::from_ipv4_word(dst),
            offset + header_len,
        )
    };
    let head: u64 = load(ctx, l4)?;
    let b = head.to_ne_bytes();
    let (src_port, dst_port) = match proto {
        IPPROTO_TCP | IPPROTO_UDP => (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        ),
        // Quoted echo/timestamp request: its identifier.
        _ => (u16::from_be_bytes([b[4], b[5]]), 0),
    };
    Some(Quoted {
        proto,
        src,
        dst,
        src_port,
        dst_port,
        failure,
    })
}

const _: () = assert!(size_of::<Packet>() == 16);

impl Default for Packet {
    fn default() -> Self {
        Self::new()
    }
}
