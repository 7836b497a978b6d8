//! A host model of the ingress data path's first steps: how the XDP program parses and counts a
//! frame, and the verdict it gives. The differential kernel test and the `datapath` fuzz target
//! run frames through the real program and through this model, and fail where they disagree.
//!
//! The model is written from the protocol specifications and the parser's documented rules, as
//! plain reads of a byte slice, not by calling or copying the kernel code: a slip in either
//! shows as a disagreement. The class tables it ends in ([`classify_tcp`], [`classify_icmpv4`],
//! [`classify_icmpv6`], [`classify_sctp`]) are the shared pure tables, which have their own
//! reference tests; what is modelled here is everything before them: headers, offsets, length
//! fields, bounds.
//!
//! The rules, in parse order:
//! - **Ethernet.** A frame shorter than its 14-byte header is `EthTruncated`. Up to two VLAN
//!   tags are skipped, each 802.1Q (0x8100) or 802.1ad (0x88a8) in either position; a tag whose
//!   4 bytes are cut is `VlanTruncated`. A third tag, like any EtherType but IPv4 and IPv6, is
//!   `NonIp`.
//! - **IPv4** (RFC 791). Shorter than 20 bytes: `Ipv4Truncated`; a version other than 4:
//!   `BadIpVersion`. Then the fixed header, with the source address, has been read. IHL below 5,
//!   a total length below the header length, or a header (options included) that runs past the
//!   frame: `Ipv4BadHeaderLength`. A non-zero fragment offset: `NonFirstFragment`. The L4
//!   length is the total length less the header, as declared (Ethernet padding and frames cut
//!   short are told apart from it by the frame's own bounds below).
//! - **IPv6** (RFC 8200). Shorter than 40 bytes: `Ipv6Truncated`; version other than 6:
//!   `BadIpVersion`. Then the source has been read. The datagram ends at 40 + payload length,
//!   or at the frame's end for payload length 0 (a jumbogram, RFC 2675). Extension headers are
//!   walked: hop-by-hop, routing and destination options (8 × (Hdr Ext Len + 1) bytes), AH
//!   (RFC 4302: 4 × (Payload Len + 2) bytes) and fragment headers (8 bytes), at most
//!   [`MAX_IPV6_EXT`] of them. A header whose fixed part or whose length runs past the frame
//!   is `Ipv6ExtTruncated`; a ninth header, or a chain that reaches past [`MAX_L4_OFFSET`]
//!   bytes from the frame's start, is `Ipv6ExtChainTooLong`. A fragment header with a non-zero
//!   offset ends the walk: `NonFirstFragment`. The last fragment header's M flag marks a first
//!   fragment.
//! - **L4.** TCP (20 bytes), UDP (8) and the ICMP of the IP version (4) need their header, both
//!   by the IP length fields and in the frame: a first fragment (M set) too short by its length
//!   fields is a `Fragment` (the tiny-fragment trick, RFC 1858); otherwise a short one is
//!   `TcpTruncated`, `UdpTruncated` or `IcmpTruncated`. TCP with data offset below 5 is
//!   `TcpBadDataOffset`; other TCP is classified by its flags, ICMP by its type. SCTP
//!   (RFC 9260) needs its common header and one chunk header (16 bytes by the length fields):
//!   shorter, it is `OtherL4` (or `Fragment` for a first fragment); with the chunk type cut off
//!   by the frame, `OtherL4`; else it is classified by its first chunk's type. Any other
//!   protocol number, the other IP version's ICMP included, is an `IpProtocol` probe.
//!
//! The program counts a frame in its class, or in `Malformed` and its parse error. In drop mode
//! it drops a frame whose fixed IP header was read and whose source is blocked, whatever
//! follows that header; every other frame passes, malformed ones included. Probes go to the
//! tracker, and so does a chain of too many extension headers, as a `Fragment`: it hides its L4
//! header from every filter that walks as far as the program does.

use crate::{
    addr::SourceKey,
    classify::{PacketClass, classify_icmpv4, classify_icmpv6, classify_sctp, classify_tcp},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS,
        IPPROTO_FRAGMENT, IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_ROUTING,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, SCTP_MIN_LEN,
    },
    stats::ParseError,
};

/// IPv6 extension headers the program walks before it calls the chain too long: eight covers
/// every legitimate combination (RFC 8200 §4.1 orders six kinds, destination options twice).
pub const MAX_IPV6_EXT: usize = 8;

/// The furthest offset from the frame's start an IPv6 extension-header chain may reach: the
/// program reads no L4 header past it.
pub const MAX_L4_OFFSET: usize = 2048;

/// XDP verdicts (`enum xdp_action`, `linux/bpf.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Verdict {
    Drop = 1,
    Pass = 2,
}

/// What the program does with one frame, before any per-source state is involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The class the frame is counted in: `Malformed` after a parse error.
    pub class: PacketClass,
    /// Why the frame could not be parsed, counted beside `Malformed`.
    pub error: Option<ParseError>,
    /// The source address (IPv4 v4-mapped), once a complete fixed IP header was read: what
    /// drop mode checks against the block maps.
    pub source: Option<SourceKey>,
}

impl Outcome {
    /// The class the tracker records the frame under: a probe's own class, and `Fragment` for
    /// an IPv6 chain of too many extension headers. `None` for everything else.
    pub fn probe(&self) -> Option<PacketClass> {
        match self.error {
            Some(ParseError::Ipv6ExtChainTooLong) => Some(PacketClass::Fragment),
            Some(_) => None,
            None => self.class.is_probe().then_some(self.class),
        }
    }

    /// The verdict: in monitor mode (`drop_mode` false) always `Pass`; in drop mode `Drop` when
    /// the source was read and `blocked` holds for it.
    pub fn verdict(&self, drop_mode: bool, blocked: impl Fn(&SourceKey) -> bool) -> Verdict {
        match self.source {
            Some(source) if drop_mode && blocked(&source) => Verdict::Drop,
            _ => Verdict::Pass,
        }
    }
}

/// Parses `frame` (the bytes the program sees, from the Ethernet header on) as the model says.
pub fn parse(frame: &[u8]) -> Outcome {
    let mut source = None;
    match ethernet(frame, &mut source) {
        Ok(class) => Outcome {
            class,
            error: None,
            source,
        },
        Err(error) => Outcome {
            class: PacketClass::Malformed,
            error: Some(error),
            source,
        },
    }
}

/// The IP version whose header carries the L4 header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ip {
    V4,
    V6,
}

/// A big-endian `u16` at `at`, if the frame holds it.
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// `len` bytes at `at`, if the frame holds them.
fn bytes_at(frame: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    frame.get(at..at.checked_add(len)?)
}

fn ethernet(frame: &[u8], source: &mut Option<SourceKey>) -> Result<PacketClass, ParseError> {
    let mut ethertype = be16(frame, 12).ok_or(ParseError::EthTruncated)?;
    let mut l3 = ETH_HLEN;
    for _tag in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // A tag: TPID (the EtherType just read), TCI, then the next EtherType.
        ethertype = be16(frame, l3 + 2).ok_or(ParseError::VlanTruncated)?;
        l3 += 4;
    }
    match ethertype {
        ETH_P_IP => ipv4(frame, l3, source),
        ETH_P_IPV6 => ipv6(frame, l3, source),
        _ => Ok(PacketClass::NonIp),
    }
}

fn ipv4(
    frame: &[u8],
    l3: usize,
    source: &mut Option<SourceKey>,
) -> Result<PacketClass, ParseError> {
    let header = bytes_at(frame, l3, 20).ok_or(ParseError::Ipv4Truncated)?;
    if header[0] >> 4 != 4 {
        return Err(ParseError::BadIpVersion);
    }
    *source = Some(SourceKey::from_ipv4([
        header[12], header[13], header[14], header[15],
    ]));
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header_len < 20 || total_len < header_len || frame.len() < l3 + header_len {
        return Err(ParseError::Ipv4BadHeaderLength);
    }
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    if flags_offset & 0x1fff != 0 {
        return Ok(PacketClass::NonFirstFragment);
    }
    let more_fragments = flags_offset & 0x2000 != 0;
    transport(
        frame,
        Ip::V4,
        header[9],
        l3 + header_len,
        total_len - header_len,
        more_fragments,
    )
}

fn ipv6(
    frame: &[u8],
    l3: usize,
    source: &mut Option<SourceKey>,
) -> Result<PacketClass, ParseError> {
    let header = bytes_at(frame, l3, 40).ok_or(ParseError::Ipv6Truncated)?;
    if header[0] >> 4 != 6 {
        return Err(ParseError::BadIpVersion);
    }
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&header[8..24]);
    *source = Some(SourceKey { addr });
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let end = if payload_len == 0 {
        frame.len()
    } else {
        l3 + 40 + payload_len
    };
    let chain = extension_headers(frame, header[6], l3 + 40)?;
    if chain.non_first_fragment {
        return Ok(PacketClass::NonFirstFragment);
    }
    transport(
        frame,
        Ip::V6,
        chain.next,
        chain.end,
        end.saturating_sub(chain.end),
        chain.more_fragments,
    )
}

/// The end of an IPv6 extension-header chain.
struct Chain {
    /// The header after the chain.
    next: u8,
    /// Its offset in the frame.
    end: usize,
    /// A fragment header with a non-zero offset ended the walk.
    non_first_fragment: bool,
    /// The M flag of the last fragment header.
    more_fragments: bool,
}

fn is_extension_header(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    )
}

fn extension_headers(frame: &[u8], mut next: u8, mut at: usize) -> Result<Chain, ParseError> {
    let mut walked = 0;
    let mut more_fragments = false;
    while is_extension_header(next) {
        if walked == MAX_IPV6_EXT {
            return Err(ParseError::Ipv6ExtChainTooLong);
        }
        walked += 1;
        let len = if next == IPPROTO_FRAGMENT {
            // Next header, reserved, offset (13 bits) | res (2) | M, identification (RFC 8200 §4.5).
            let h = bytes_at(frame, at, 8).ok_or(ParseError::Ipv6ExtTruncated)?;
            next = h[0];
            let offset_flags = u16::from_be_bytes([h[2], h[3]]);
            if offset_flags >> 3 != 0 {
                return Ok(Chain {
                    next,
                    end: at,
                    non_first_fragment: true,
                    more_fragments: offset_flags & 1 != 0,
                });
            }
            more_fragments = offset_flags & 1 != 0;
            8
        } else {
            let h = bytes_at(frame, at, 2).ok_or(ParseError::Ipv6ExtTruncated)?;
            let kind = next;
            next = h[0];
            let units = usize::from(h[1]);
            if kind == IPPROTO_AH {
                (units + 2) * 4
            } else {
                (units + 1) * 8
            }
        };
        at += len;
        if at > frame.len() {
            return Err(ParseError::Ipv6ExtTruncated);
        }
        if at > MAX_L4_OFFSET {
            return Err(ParseError::Ipv6ExtChainTooLong);
        }
    }
    Ok(Chain {
        next,
        end: at,
        non_first_fragment: false,
        more_fragments,
    })
}

/// Classifies the L4 header at `at`; `declared` is its length by the IP length fields.
fn transport(
    frame: &[u8],
    ip: Ip,
    proto: u8,
    at: usize,
    declared: usize,
    more_fragments: bool,
) -> Result<PacketClass, ParseError> {
    let (needed, truncated) = match (proto, ip) {
        (IPPROTO_TCP, _) => (20, ParseError::TcpTruncated),
        (IPPROTO_UDP, _) => (8, ParseError::UdpTruncated),
        (IPPROTO_ICMP, Ip::V4) | (IPPROTO_ICMPV6, Ip::V6) => (4, ParseError::IcmpTruncated),
        (IPPROTO_SCTP, _) => return Ok(sctp(frame, at, declared, more_fragments)),
        _ => return Ok(PacketClass::IpProtocol),
    };
    if declared < needed {
        return if more_fragments {
            Ok(PacketClass::Fragment)
        } else {
            Err(truncated)
        };
    }
    let header = bytes_at(frame, at, needed).ok_or(truncated)?;
    Ok(match (proto, ip) {
        (IPPROTO_TCP, _) => {
            if header[12] >> 4 < 5 {
                return Err(ParseError::TcpBadDataOffset);
            }
            classify_tcp(header[13])
        }
        (IPPROTO_UDP, _) => PacketClass::Udp,
        (_, Ip::V4) => classify_icmpv4(header[0]),
        (_, Ip::V6) => classify_icmpv6(header[0]),
    })
}

/// SCTP by its first chunk: common header (ports, verification tag, checksum: 12 bytes), then
/// the chunk's type.
fn sctp(frame: &[u8], at: usize, declared: usize, more_fragments: bool) -> PacketClass {
    if declared < SCTP_MIN_LEN {
        return if more_fragments {
            PacketClass::Fragment
        } else {
            PacketClass::OtherL4
        };
    }
    frame
        .get(at + 12)
        .map_or(PacketClass::OtherL4, |&chunk| classify_sctp(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (no options) + `l4`, with protocol `proto` and agreeing lengths.
    fn ipv4(proto: u8, l4: &[u8]) -> [u8; 128] {
        let mut f = [0u8; 128];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
        f[23] = proto;
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[34..34 + l4.len()].copy_from_slice(l4);
        f
    }

    fn tcp(flags: u8) -> [u8; 20] {
        let mut t = [0u8; 20];
        t[12] = 0x50;
        t[13] = flags;
        t
    }

    #[test]
    fn reads_a_syn_behind_two_tags() {
        let plain = ipv4(IPPROTO_TCP, &tcp(0x02));
        let mut f = [0u8; 136];
        f[..12].copy_from_slice(&plain[..12]);
        f[12..14].copy_from_slice(&ETH_P_8021AD.to_be_bytes());
        f[16..18].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        f[20..].copy_from_slice(&plain[12..]);
        let o = parse(&f[..20 + 2 + 40]);
        assert_eq!(o.class, PacketClass::TcpSyn);
        assert_eq!(o.source, Some(SourceKey::from_ipv4([192, 0, 2, 1])));
        assert_eq!(o.probe(), Some(PacketClass::TcpSyn));
    }

    #[test]
    fn a_header_error_after_the_source_still_names_the_source() {
        let mut f = ipv4(IPPROTO_TCP, &tcp(0x02));
        f[14] = 0x44;
        let o = parse(&f);
        assert_eq!(o.error, Some(ParseError::Ipv4BadHeaderLength));
        assert_eq!(o.class, PacketClass::Malformed);
        assert_eq!(o.verdict(true, |_| true), Verdict::Drop);
        assert_eq!(o.verdict(false, |_| true), Verdict::Pass);
        f[14] = 0x55;
        let o = parse(&f);
        assert_eq!(o.error, Some(ParseError::BadIpVersion));
        assert_eq!(o.source, None);
        assert_eq!(o.verdict(true, |_| true), Verdict::Pass);
    }

    #[test]
    fn a_tiny_first_fragment_is_a_fragment_and_a_whole_one_is_truncated() {
        let mut f = ipv4(IPPROTO_TCP, &tcp(0x02)[..8]);
        assert_eq!(parse(&f).error, Some(ParseError::TcpTruncated));
        f[20] = 0x20; // MF
        assert_eq!(parse(&f).class, PacketClass::Fragment);
        f[21] = 1; // offset 8 bytes
        assert_eq!(parse(&f).class, PacketClass::NonFirstFragment);
    }

    #[test]
    fn nine_extension_headers_are_a_chain_too_long_tracked_as_a_fragment() {
        for (headers, expected) in [(8, None), (9, Some(ParseError::Ipv6ExtChainTooLong))] {
            let mut f = [0u8; 14 + 40 + 9 * 8 + 8];
            f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
            f[14] = 0x60;
            f[20] = IPPROTO_DSTOPTS;
            for h in 0..headers {
                let next = if h + 1 == headers {
                    IPPROTO_UDP
                } else {
                    IPPROTO_DSTOPTS
                };
                f[54 + 8 * h] = next;
            }
            let o = parse(&f[..54 + 8 * headers + 8]);
            assert_eq!(o.error, expected, "{headers} headers");
            let probe = if expected.is_some() {
                PacketClass::Fragment
            } else {
                PacketClass::Udp
            };
            assert_eq!(o.probe(), Some(probe));
        }
    }

    #[test]
    fn icmp_of_the_other_ip_version_is_an_ip_protocol_probe() {
        let f = ipv4(IPPROTO_ICMPV6, &[128, 0, 0, 0]);
        assert_eq!(parse(&f).class, PacketClass::IpProtocol);
    }
}
