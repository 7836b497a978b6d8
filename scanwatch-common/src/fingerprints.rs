//! Scanner fingerprints: for each known tool and each kind of probe it sends, the header
//! defaults every such probe carries (a trait), as data, each cited to the tool's source.
//!
//! A trait is a *profile*: every probe of that kind the tool sends by default meets all its
//! conditions, so a probe that fails them all rules the tool out for that kind. A probe's
//! candidates are the tools with a trait it meets ([`Header::candidates`]); a tool is named
//! only when it is the one candidate (user space, `finding::tool`). Two probes of one source
//! can rule a tool out together ([`EXCLUSIONS`]). Adding a tool's mode is adding rows; a
//! tool without a row for a probe kind is taken never to send that kind.
//!
//! TTL ranges allow for [`HOPS`] routers between the scanner and us: the sent value less up to
//! that many hops. The kernel copies the first [`SAMPLE_BYTES`](crate::sample::SAMPLE_BYTES)
//! of a probe; a condition on bytes the sample lacks holds (it cannot rule a tool out).
//!
//! Source commits cited: nmap `db4aefdd` (github.com/nmap/nmap), masscan `2be4093b` and the
//! tags `1.0.4`, `1.3.2` (github.com/robertdavidgraham/masscan), zmap `8de8833d`
//! (github.com/zmap/zmap), hping `3547c769` (github.com/antirez/hping). The attribution
//! matrix (`tests/tests/tool_matrix.rs`) replays each mode of the Debian 12 builds (nmap 7.93,
//! masscan 1.3.2, zmap 2.1.1, hping3 3.0.0-alpha-2) against this table.

mod header;

pub use header::{Header, L4, ProbeKind};

use crate::proto::SCTP_CHUNK_INIT;

indexed_enum! {
    /// A scanner the trait table knows.
    pub enum Tool {
        Nmap = 0 => "nmap",
        Masscan = 1 => "masscan",
        Zmap = 2 => "zmap",
        Hping3 = 3 => "hping3",
    }
    /// Number of known tools.
    pub const TOOLS: usize;
}

/// Routers a probe may have crossed: a TTL range is the sent value less up to this many
/// (traceroute's default limit; few Internet paths are longer).
pub const HOPS: u8 = 30;

/// One condition on a probe's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Ipv4,
    Ipv6,
    /// IPv4 identification equals this value.
    IpIdIs(u16),
    /// IPv4 identification equals the low 16 bits of destination address XOR destination port
    /// XOR sequence number (masscan's stateless ID).
    IpIdFromTarget,
    /// TTL (IPv6: hop limit) as sent, in this range: the received value is within [`HOPS`]
    /// below it.
    SentTtl(u8, u8),
    /// IPv4 Don't Fragment bit is set (`true`) or clear (`false`); holds for IPv6.
    DontFragment(bool),
    /// IPv6 flow label within this range; holds for IPv4.
    FlowLabelIn(u32, u32),
    /// TCP window equals this value.
    WindowIs(u16),
    /// TCP options are exactly these bytes (empty: no options).
    OptionsAre(&'static [u8]),
    /// With the ACK flag clear, the acknowledgement number is zero (`true`) or not (`false`);
    /// holds when the flag is set.
    AckZeroWithoutFlag(bool),
    /// With the ACK flag set, the sequence number is zero; holds when it is clear.
    SeqZeroWithAckFlag,
    /// ICMP sequence number equals this value.
    IcmpSeqIs(u16),
    /// UDP, ICMP or raw IP payload length equals this value.
    PayloadLen(u16),
    /// The ICMP or raw IP payload starts with these bytes.
    PayloadStarts(&'static [u8]),
    /// SCTP's first chunk is of this type.
    SctpChunk(u8),
    /// SCTP verification tag is zero.
    SctpVtagZero,
    /// An SCTP INIT's advertised window, outbound and inbound streams.
    SctpInit(u32, u16, u16),
    /// An SCTP INIT's initial TSN.
    SctpInitTsn(u32),
    /// SCTP's first chunk's length.
    SctpChunkLen(u16),
}

/// One scanner trait: a row of [`TRAITS`].
#[derive(Clone, Copy, Debug)]
pub struct Trait {
    /// Stable name, as written in alerts.
    pub name: &'static str,
    pub tool: Tool,
    pub probe: ProbeKind,
    /// Every condition holds for every such probe the tool sends by default.
    pub all: &'static [Cond],
    /// Where the tool sets each default (`file:line` at the commits in the module docs).
    pub source: &'static str,
}

/// TCP MSS option of 1460 bytes, alone.
pub const MSS_1460: &[u8] = &[0x02, 0x04, 0x05, 0xb4];

/// nmap's raw IPv4 probes: random TTL 37..=59, DF clear.
const NMAP_V4: [Cond; 3] = [Cond::Ipv4, Cond::SentTtl(37, 59), Cond::DontFragment(false)];
/// nmap's raw IPv6 TCP, UDP, SCTP and ICMPv6 probes: hop limit 255, flow label 0.
const NMAP_V6: [Cond; 3] = [Cond::Ipv6, Cond::SentTtl(255, 255), Cond::FlowLabelIn(0, 0)];
/// masscan's templates: TTL (hop limit) 255, DF clear, flow label 0.
const MASSCAN: [Cond; 3] = [
    Cond::SentTtl(255, 255),
    Cond::DontFragment(false),
    Cond::FlowLabelIn(0, 0),
];
/// hping3: IPv4 only, TTL 64, DF clear.
const HPING3: [Cond; 3] = [Cond::Ipv4, Cond::SentTtl(64, 64), Cond::DontFragment(false)];

/// Concatenates condition lists in a constant.
macro_rules! conds {
    ($base:expr; $($more:expr),* $(,)?) => {{
        const BASE: [Cond; 3] = $base;
        const MORE: &[Cond] = &[$($more),*];
        const ALL: [Cond; 3 + MORE.len()] = {
            let mut all = [Cond::Ipv4; 3 + MORE.len()];
            let mut i = 0;
            while i < 3 {
                all[i] = BASE[i];
                i += 1;
            }
            while i < all.len() {
                all[i] = MORE[i - 3];
                i += 1;
            }
            all
        };
        &ALL
    }};
}

/// Where nmap sets the IP fields of [`NMAP_V4`], cited by each IPv4 row.
macro_rules! nmap_ipv4 {
    () => {
        "; IPv4: tcpip.cc:532-533 (TTL random 37..59 while NmapOps.cc:301 leaves o.ttl -1), \
         scan_engine_raw.cc:1177 (IP ID random per probe), :1220 (df false)"
    };
}

/// Where nmap sets the IP fields of [`NMAP_V6`], cited by each IPv6 row.
macro_rules! nmap_ipv6 {
    () => {
        "; IPv6: scan_engine_raw.cc:1238 (traffic class and flow label 0), tcpip.cc:659, :788, \
         :907, :998 (the IPv6 builders take the hop limit as u8: o.ttl -1 arrives as 255, so \
         the random range of tcpip.cc:558-559 never applies)"
    };
}

/// The trait table.
pub const TRAITS: &[Trait] = &[
    Trait {
        name: "nmap_raw_syn_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpSyn,
        all: conds![NMAP_V4; Cond::WindowIs(1024), Cond::OptionsAre(MSS_1460), Cond::AckZeroWithoutFlag(true)],
        source: concat!(
            "nmap tcpip.cc:604-607 (window 1024 when none given), nmap.h:163 and \
                 scan_engine_raw.cc:1212-1215 (SYN probes carry MSS 1460 alone), \
                 scan_engine_raw.cc:1206-1210 (ack 0 without the ACK flag)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_raw_syn_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpSyn,
        all: conds![NMAP_V6; Cond::WindowIs(1024), Cond::OptionsAre(MSS_1460), Cond::AckZeroWithoutFlag(true)],
        source: concat!(
            "nmap tcpip.cc:604-607, nmap.h:163, scan_engine_raw.cc:1212-1215 and :1237 \
                 (the IPv4 choices over IPv6)",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_raw_tcp_flags_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpFlags,
        all: conds![NMAP_V4; Cond::WindowIs(1024), Cond::OptionsAre(&[]), Cond::AckZeroWithoutFlag(true), Cond::SeqZeroWithAckFlag],
        source: concat!(
            "nmap scan_engine_raw.cc:1206-1210 (the try number goes to seq, or to ack when \
                 the ACK flag is set, leaving seq 0), :1212 (options only on SYN), tcpip.cc:591-594 \
                 (no random seq without SYN), tcpip.cc:604-607 (window 1024): -sF, -sN, -sX, -sM, \
                 --scanflags",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_raw_tcp_flags_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpFlags,
        all: conds![NMAP_V6; Cond::WindowIs(1024), Cond::OptionsAre(&[]), Cond::AckZeroWithoutFlag(true), Cond::SeqZeroWithAckFlag],
        source: concat!(
            "nmap scan_engine_raw.cc:1206-1212 and :1237, tcpip.cc:590-607",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_raw_udp_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::Udp,
        all: &NMAP_V4,
        source: concat!(
            "nmap scan_engine_raw.cc:1259-1265 (build_udp_raw with o.ttl and df false; \
                 nmap-payloads for known ports, else empty)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_raw_udp_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::Udp,
        all: &NMAP_V6,
        source: concat!(
            "nmap scan_engine_raw.cc:1278-1281 (build_udp_raw_ipv6, flow label 0)",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_raw_echo_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::IcmpEcho,
        all: conds![NMAP_V4; Cond::IcmpSeqIs(0), Cond::PayloadLen(0)],
        source: concat!(
            "nmap scan_engine_raw.cc:1394-1398 (sequence 0, o.extra_payload: none by default)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_raw_echo_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::IcmpEcho,
        all: conds![NMAP_V6; Cond::IcmpSeqIs(0), Cond::PayloadLen(0)],
        source: concat!(
            "nmap scan_engine_raw.cc:1410-1413 (build_icmpv6_raw: sequence 0, no payload)",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_raw_icmp_query_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::IcmpQuery,
        all: conds![NMAP_V4; Cond::IcmpSeqIs(0)],
        source: concat!(
            "nmap scan_engine_raw.cc:1394-1398 (timestamp and mask requests, sequence 0)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_sctp_init_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::Sctp,
        all: conds![NMAP_V4; Cond::SctpChunk(SCTP_CHUNK_INIT), Cond::SctpVtagZero, Cond::SctpInit(32768, 10, 2048)],
        source: concat!(
            "nmap scan_engine_raw.cc:1296-1303 (INIT: window 32768, 10 and 2048 streams, \
                 verification tag 0), :1318-1321",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_sctp_init_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::Sctp,
        all: conds![NMAP_V6; Cond::SctpChunk(SCTP_CHUNK_INIT), Cond::SctpVtagZero, Cond::SctpInit(32768, 10, 2048)],
        source: concat!(
            "nmap scan_engine_raw.cc:1296-1303, :1335-1336",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_sctp_cookie_echo_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::Sctp,
        all: conds![NMAP_V4; Cond::SctpChunk(10), Cond::SctpChunkLen(8)],
        source: concat!(
            "nmap scan_engine_raw.cc:1305-1310 (COOKIE ECHO: a 4-byte cookie, chunk length 8)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_sctp_cookie_echo_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::Sctp,
        all: conds![NMAP_V6; Cond::SctpChunk(10), Cond::SctpChunkLen(8)],
        source: concat!(
            "nmap scan_engine_raw.cc:1305-1310, :1335-1336",
            nmap_ipv6!()
        ),
    },
    Trait {
        name: "nmap_raw_protocol_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::IpOther,
        all: conds![NMAP_V4; Cond::PayloadLen(0)],
        source: concat!(
            "nmap scan_engine_raw.cc:1109-1113 (-sO: build_ip_raw, no payload)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_igmp_query_ipv4",
        tool: Tool::Nmap,
        probe: ProbeKind::IpOther,
        all: conds![NMAP_V4; Cond::PayloadLen(8), Cond::PayloadStarts(&[0x11])],
        source: concat!(
            "nmap scan_engine_raw.cc:1087-1090 (-sO: an IGMP membership query)",
            nmap_ipv4!()
        ),
    },
    Trait {
        name: "nmap_raw_protocol_ipv6",
        tool: Tool::Nmap,
        probe: ProbeKind::IpOther,
        all: &[
            Cond::Ipv6,
            Cond::SentTtl(37, 59),
            Cond::FlowLabelIn(0, 0xffff),
            Cond::PayloadLen(0),
        ],
        source: "nmap scan_engine_raw.cc:1152-1154 (-sO: build_ipv6_raw with the random IP ID \
                 as flow label and o.ttl as int), tcpip.cc:558-559 (so a random hop limit 37..59)",
    },
    Trait {
        name: "masscan_syn_ipv4",
        tool: Tool::Masscan,
        probe: ProbeKind::TcpSyn,
        all: conds![MASSCAN; Cond::Ipv4, Cond::IpIdFromTarget],
        source: "masscan src/templ-pkt.c:39 (TTL 255), :942 (ip_id = ip_them ^ port_them ^ seqno; \
                 1.3.2 :940, 1.0.4 :611)",
    },
    Trait {
        name: "masscan_syn_ipv6",
        tool: Tool::Masscan,
        probe: ProbeKind::TcpSyn,
        all: conds![MASSCAN; Cond::Ipv6, Cond::WindowIs(1025), Cond::OptionsAre(MSS_1460)],
        source: "masscan src/templ-pkt.c:1199 (hop limit 255), :50 (window bytes 0x0401), :53 (MSS 1460)",
    },
    Trait {
        name: "masscan_syn_ipv6_no_options",
        tool: Tool::Masscan,
        probe: ProbeKind::TcpSyn,
        all: conds![MASSCAN; Cond::Ipv6, Cond::WindowIs(1024), Cond::OptionsAre(&[])],
        source: "masscan 1.3.2 src/templ-pkt.c:46-48 (a 20-byte header, window 1024), and the \
                 hop limit 255 of its IPv6 template",
    },
    Trait {
        name: "masscan_udp",
        tool: Tool::Masscan,
        probe: ProbeKind::Udp,
        all: &MASSCAN,
        source: "masscan src/templ-pkt.c:65 (TTL 255; 1.3.2 :63, 1.0.4 :61), :1199 (IPv6 hop limit \
                 255); payloads from templ-payloads.c for known ports, else none (1.0.4 :518)",
    },
    Trait {
        name: "masscan_echo",
        tool: Tool::Masscan,
        probe: ProbeKind::IcmpEcho,
        all: conds![MASSCAN; Cond::PayloadLen(48), Cond::PayloadStarts(&[8, 9, 10, 11])],
        source: "masscan src/templ-pkt.c:111-124 (TTL 255, 48 bytes of payload 08 09 0a 0b ...)",
    },
    Trait {
        name: "masscan_icmp_timestamp",
        tool: Tool::Masscan,
        probe: ProbeKind::IcmpQuery,
        all: &MASSCAN,
        source: "masscan src/templ-pkt.c:147 (timestamp template, TTL 255)",
    },
    Trait {
        name: "masscan_sctp_init",
        tool: Tool::Masscan,
        probe: ProbeKind::Sctp,
        all: conds![MASSCAN; Cond::SctpChunk(SCTP_CHUNK_INIT), Cond::SctpVtagZero, Cond::SctpInitTsn(0x461a_df3d)],
        source: "masscan src/templ-pkt.c:85 (TTL 255), :94-101 (INIT, tag 0, initial TSN 0x461adf3d)",
    },
    Trait {
        name: "zmap_ip_id_54321",
        tool: Tool::Zmap,
        probe: ProbeKind::Any,
        all: &[Cond::Ipv4, Cond::IpIdIs(54321), Cond::SentTtl(255, 255)],
        source: "zmap src/probe_modules/packet.c:91 (ip_id 54321), :93 (TTL MAXTTL); IPv4 only \
                 (make_ip_header builds a struct ip)",
    },
    Trait {
        name: "hping3_tcp",
        tool: Tool::Hping3,
        probe: ProbeKind::TcpSyn,
        all: conds![HPING3; Cond::WindowIs(512), Cond::OptionsAre(&[]), Cond::AckZeroWithoutFlag(false)],
        source: "hping hping2.h:115 (TTL 64), :116 (window 512), sendtcp.c:60-61 (random seq and \
                 ack, whatever the flags), sendip.c:84-85 (DF only with -y)",
    },
    Trait {
        name: "hping3_tcp_flags",
        tool: Tool::Hping3,
        probe: ProbeKind::TcpFlags,
        all: conds![HPING3; Cond::WindowIs(512), Cond::OptionsAre(&[]), Cond::AckZeroWithoutFlag(false)],
        source: "hping hping2.h:115-116, sendtcp.c:60-64 (-F, -P, -U, no flags)",
    },
    Trait {
        name: "hping3_udp",
        tool: Tool::Hping3,
        probe: ProbeKind::Udp,
        all: &HPING3,
        source: "hping hping2.h:115 (TTL 64), sendudp.c:33 (data_size bytes, main.c:51: none)",
    },
    Trait {
        name: "hping3_echo",
        tool: Tool::Hping3,
        probe: ProbeKind::IcmpEcho,
        all: conds![HPING3; Cond::PayloadLen(0)],
        source: "hping sendicmp.c:71-87 (data_size bytes, none by default; id and sequence in \
                 host byte order)",
    },
    Trait {
        name: "hping3_icmp_query",
        tool: Tool::Hping3,
        probe: ProbeKind::IcmpQuery,
        all: &HPING3,
        source: "hping sendicmp.c:109-190 (-C 13, -C 17)",
    },
    Trait {
        name: "hping3_raw_ip",
        tool: Tool::Hping3,
        probe: ProbeKind::IpOther,
        all: conds![HPING3; Cond::PayloadLen(0)],
        source: "hping sendrawip.c:18-25 (-0: data_size bytes, none by default)",
    },
];

/// Traits the table may hold (a source keeps a bit per trait).
pub const MAX_TRAITS: usize = 64;
const _: () = assert!(TRAITS.len() <= MAX_TRAITS);

/// What two probes of one source share that a tool's two probes never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pair {
    /// Both of `kind`, from one transport source port.
    SameSourcePort(ProbeKind),
    /// One IPv4 identification, though sent to different (address, port) targets.
    SameIpIdToOtherTargets,
}

/// A tool two probes of one source rule out together, when each alone could be its.
#[derive(Clone, Copy, Debug)]
pub struct Exclusion {
    /// Stable name, as written in alerts.
    pub name: &'static str,
    pub tool: Tool,
    pub pair: Pair,
    /// Why the pair cannot be the tool's, in its source.
    pub source: &'static str,
}

/// The pair rules.
pub const EXCLUSIONS: &[Exclusion] = &[
    Exclusion {
        name: "not_hping3_one_udp_source_port",
        tool: Tool::Hping3,
        pair: Pair::SameSourcePort(ProbeKind::Udp),
        source: "hping sendudp.c:74-77 (the source port moves on with every datagram unless \
                 -k); nmap keeps one per try, scan_engine_raw.cc:1193-1196",
    },
    Exclusion {
        name: "not_masscan_one_ip_id",
        tool: Tool::Masscan,
        pair: Pair::SameIpIdToOtherTargets,
        source: "masscan src/templ-pkt.c:942 (the ID mixes the target's address and port with \
                 its SYN cookie; 1.3.2 :940, 1.0.4 :611), where zmap sends 54321 to every target",
    },
];

impl Exclusion {
    /// Whether probes `a` and `b` (of one source) rule the tool out.
    pub fn rules_out(&self, a: &Header<'_>, b: &Header<'_>) -> bool {
        match self.pair {
            Pair::SameSourcePort(kind) => {
                a.kind() == Some(kind)
                    && b.kind() == Some(kind)
                    && a.src_port().is_some()
                    && a.src_port() == b.src_port()
            }
            Pair::SameIpIdToOtherTargets => {
                a.ip_id.is_some()
                    && a.ip_id == b.ip_id
                    && (a.dst_low, a.dst_port()) != (b.dst_low, b.dst_port())
            }
        }
    }
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

impl Header<'_> {
    /// Whether `cond` holds for this probe (a condition on a field the probe lacks, or on
    /// bytes the sample lacks, holds).
    pub fn meets(&self, cond: &Cond) -> bool {
        match (*cond, self.l4) {
            (Cond::Ipv4, _) => !self.ipv6,
            (Cond::Ipv6, _) => self.ipv6,
            (Cond::IpIdIs(id), _) => self.ip_id == Some(id),
            (Cond::IpIdFromTarget, L4::Tcp { dst_port, seq, .. }) => {
                self.ip_id == Some(self.dst_low ^ dst_port ^ (seq as u16))
            }
            (Cond::SentTtl(lo, hi), _) => {
                self.ttl <= hi && u16::from(self.ttl) + u16::from(HOPS) >= u16::from(lo)
            }
            (Cond::DontFragment(df), _) => self.ipv6 || self.dont_fragment == df,
            (Cond::FlowLabelIn(lo, hi), _) => {
                self.flow_label.is_none_or(|f| (lo..=hi).contains(&f))
            }
            (Cond::WindowIs(w), L4::Tcp { window, .. }) => window == w,
            (
                Cond::OptionsAre(want),
                L4::Tcp {
                    options,
                    options_len,
                    ..
                },
            ) => options_len == want.len() && want.starts_with(options),
            (Cond::AckZeroWithoutFlag(zero), L4::Tcp { flags, ack, .. }) => {
                flags & 0x10 != 0 || (ack == 0) == zero
            }
            (Cond::SeqZeroWithAckFlag, L4::Tcp { flags, seq, .. }) => flags & 0x10 == 0 || seq == 0,
            (Cond::IcmpSeqIs(want), L4::Icmp { seq, .. }) => seq == want,
            (
                Cond::PayloadLen(n),
                L4::Udp { payload_len, .. }
                | L4::Icmp { payload_len, .. }
                | L4::Other { payload_len, .. },
            ) => payload_len == n,
            (Cond::PayloadStarts(want), L4::Icmp { payload, .. } | L4::Other { payload, .. }) => {
                payload.iter().zip(want).all(|(a, b)| a == b)
            }
            (Cond::SctpChunk(t), L4::Sctp { chunk, .. }) => chunk.first() == Some(&t),
            (Cond::SctpVtagZero, L4::Sctp { vtag, .. }) => vtag == 0,
            (Cond::SctpInit(window, out, inbound), L4::Sctp { chunk, .. }) => {
                be32(chunk, 8).is_none_or(|w| w == window)
                    && be16(chunk, 12).is_none_or(|o| o == out)
                    && be16(chunk, 14).is_none_or(|i| i == inbound)
            }
            (Cond::SctpInitTsn(tsn), L4::Sctp { chunk, .. }) => {
                be32(chunk, 16).is_none_or(|t| t == tsn)
            }
            (Cond::SctpChunkLen(len), L4::Sctp { chunk, .. }) => {
                be16(chunk, 2).is_none_or(|l| l == len)
            }
            _ => false,
        }
    }

    /// Whether `t` matches this probe.
    pub fn matches(&self, t: &Trait) -> bool {
        let Some(kind) = self.kind() else {
            return false;
        };
        (t.probe == ProbeKind::Any || t.probe == kind) && t.all.iter().all(|c| self.meets(c))
    }

    /// Bit `i` set for each `TRAITS[i]` this probe matches.
    pub fn matched(&self) -> u64 {
        TRAITS
            .iter()
            .enumerate()
            .filter(|(_, t)| self.matches(t))
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }

    /// Bit `t` set for each tool with a trait this probe matches: the tools it may be from.
    pub fn candidates(&self) -> u32 {
        tools_of(self.matched())
    }
}

/// Bit `t` set for each tool owning a trait in `traits` (bits of [`TRAITS`]).
pub fn tools_of(traits: u64) -> u32 {
    TRAITS
        .iter()
        .enumerate()
        .filter(|(i, _)| traits & (1 << i) != 0)
        .fold(0, |bits, (_, t)| bits | 1 << t.tool as u32)
}

#[cfg(test)]
mod tests;

/// How the docs write a condition.
#[cfg(feature = "std")]
fn cond_text(cond: &Cond) -> std::string::String {
    use std::{format, string::ToString};

    let bytes = |b: &[u8]| -> std::string::String {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<std::vec::Vec<_>>()
            .join(" ")
    };
    match *cond {
        Cond::Ipv4 => "IPv4".to_string(),
        Cond::Ipv6 => "IPv6".to_string(),
        Cond::IpIdIs(id) => format!("IP ID {id}"),
        Cond::IpIdFromTarget => "IP ID = dst ^ dport ^ seq (low 16 bits)".to_string(),
        Cond::SentTtl(lo, hi) if lo == hi => format!("TTL sent {lo}"),
        Cond::SentTtl(lo, hi) => format!("TTL sent {lo}–{hi}"),
        Cond::DontFragment(df) => if df { "DF set" } else { "DF clear" }.to_string(),
        Cond::FlowLabelIn(0, 0) => "flow label 0".to_string(),
        Cond::FlowLabelIn(lo, hi) => format!("flow label {lo:#x}–{hi:#x}"),
        Cond::WindowIs(w) => format!("window {w}"),
        Cond::OptionsAre([]) => "no options".to_string(),
        Cond::OptionsAre(o) if o == MSS_1460 => "options MSS 1460 alone".to_string(),
        Cond::OptionsAre(o) => format!("options {}", bytes(o)),
        Cond::AckZeroWithoutFlag(true) => "ack 0 without the ACK flag".to_string(),
        Cond::AckZeroWithoutFlag(false) => "ack ≠ 0 without the ACK flag".to_string(),
        Cond::SeqZeroWithAckFlag => "seq 0 with the ACK flag".to_string(),
        Cond::IcmpSeqIs(s) => format!("ICMP sequence {s}"),
        Cond::PayloadLen(0) => "no payload".to_string(),
        Cond::PayloadLen(n) => format!("payload {n} bytes"),
        Cond::PayloadStarts(b) => format!("payload from {}", bytes(b)),
        Cond::SctpChunk(SCTP_CHUNK_INIT) => "INIT".to_string(),
        Cond::SctpChunk(10) => "COOKIE ECHO".to_string(),
        Cond::SctpChunk(t) => format!("chunk type {t}"),
        Cond::SctpVtagZero => "verification tag 0".to_string(),
        Cond::SctpInit(w, o, i) => format!("window {w}, streams {o} / {i}"),
        Cond::SctpInitTsn(t) => format!("initial TSN {t:#x}"),
        Cond::SctpChunkLen(l) => format!("chunk length {l}"),
    }
}

/// The docs' trait table (between `<!-- traits:begin -->` and `<!-- traits:end -->` in
/// `docs/detections.md`): every trait with its conditions and citation, then the pair rules.
#[cfg(feature = "std")]
pub fn markdown_table() -> std::string::String {
    use std::{fmt::Write as _, string::String, vec::Vec};

    let kind = |k: ProbeKind| match k {
        ProbeKind::TcpSyn => "TCP SYN",
        ProbeKind::TcpFlags => "TCP, other flags",
        ProbeKind::Udp => "UDP",
        ProbeKind::IcmpEcho => "ICMP echo",
        ProbeKind::IcmpQuery => "ICMP timestamp / mask",
        ProbeKind::Sctp => "SCTP",
        ProbeKind::IpOther => "other IP protocol",
        ProbeKind::Any => "any",
    };
    let mut out = String::from(
        "| trait | tool | probe | every such probe has | source (file:line) |\n|---|---|---|---|---|\n",
    );
    for t in TRAITS {
        let conds: Vec<_> = t.all.iter().map(cond_text).collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            t.name,
            t.tool.name(),
            kind(t.probe),
            conds.join(", "),
            t.source
        );
    }
    out.push_str("\n| pair rule | rules out | when two probes of one source | source (file:line) |\n|---|---|---|---|\n");
    for e in EXCLUSIONS {
        let when = match e.pair {
            Pair::SameSourcePort(k) => std::format!("are {} from one source port", kind(k)),
            Pair::SameIpIdToOtherTargets => String::from("carry one IPv4 ID to different targets"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {when} | {} |",
            e.name,
            e.tool.name(),
            e.source
        );
    }
    out
}
