//! Scanner fingerprints: stable single-packet header defaults of popular scanners (traits), as data.
//!
//! Each [`Trait`] names one tool, the probe it applies to, the conditions a probe's headers
//! must all meet, a weight (how rarely benign clients show it, in percent) and where in the
//! tool's own source the default is set (repository, commit, `file:line`). User space decodes a
//! [`ProbeSample`](crate::sample::ProbeSample) with [`Header::decode`] and checks it against
//! [`TRAITS`]; the kernel only copies the bytes. Adding a trait is adding a row.
//!
//! Source commits cited: nmap `db4aefdd` (github.com/nmap/nmap), masscan `2be4093b`
//! (github.com/robertdavidgraham/masscan), zmap `8de8833d` (github.com/zmap/zmap), hping
//! `3547c769` (github.com/antirez/hping). Each row was checked against the packets of the
//! Debian 12 builds (nmap 7.93, masscan 1.3.2, zmap 2.1.1, hping3 3.0.0-alpha-2) in the
//! tests' captures.

use crate::proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

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

/// The kind of probe a trait applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP segment with SYN and none of ACK, RST, FIN.
    TcpSyn,
    Udp,
    /// ICMP / ICMPv6 echo request.
    IcmpEcho,
    /// Any of the above.
    Any,
}

/// One condition on a probe's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// IPv4 identification equals this value.
    IpIdIs(u16),
    /// IPv4 identification equals the low 16 bits of destination address XOR destination port
    /// XOR sequence number (masscan's stateless ID).
    IpIdFromTarget,
    /// Received TTL (IPv6: hop limit) within this range, inclusive: the tool's initial value
    /// less the hops a probe may have travelled.
    TtlIn(u8, u8),
    /// IPv4 Don't Fragment bit is set (`true`) or clear (`false`); never holds for IPv6.
    DontFragment(bool),
    /// TCP window equals this value.
    WindowIs(u16),
    /// TCP options are exactly these bytes (empty: no options).
    OptionsAre(&'static [u8]),
    /// The TCP acknowledgement number is non-zero although the ACK flag is clear.
    AckWithoutFlag,
    /// UDP or ICMP echo payload length equals this value.
    PayloadLen(u16),
}

/// One scanner trait: a row of [`TRAITS`].
#[derive(Clone, Copy, Debug)]
pub struct Trait {
    /// Stable name, as written in alerts.
    pub name: &'static str,
    pub tool: Tool,
    pub probe: ProbeKind,
    /// Every condition must hold.
    pub all: &'static [Cond],
    /// How specific the trait is, in percent: the chance it is not a benign client's probe.
    pub weight: u8,
    /// Where the tool sets the default (repository `file:line` at the commit in the module docs).
    pub source: &'static str,
}

/// TCP MSS option of 1460 bytes, alone.
const MSS_1460: &[u8] = &[0x02, 0x04, 0x05, 0xb4];

/// The trait table.
pub const TRAITS: &[Trait] = &[
    Trait {
        name: "nmap_syn_window_1024_mss_only",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpSyn,
        all: &[
            Cond::WindowIs(1024),
            Cond::OptionsAre(MSS_1460),
            Cond::TtlIn(1, 64),
        ],
        weight: 85,
        source: "nmap tcpip.cc:607 (window 1024 when none given), nmap.h:163 (TCP_SYN_PROBE_OPTIONS: MSS 1460), scan_engine_raw.cc:1213 (SYN probes carry them)",
    },
    Trait {
        name: "nmap_syn_window_1024_mss_only_hop_limit_255",
        tool: Tool::Nmap,
        probe: ProbeKind::TcpSyn,
        all: &[
            Cond::WindowIs(1024),
            Cond::OptionsAre(MSS_1460),
            Cond::TtlIn(200, 255),
        ],
        weight: 85,
        source: "nmap scan_engine_raw.cc:1212-1214 (SYN options whatever the family), tcpip.cc:659 (build_tcp_raw_ipv6 takes the hop limit as u8: the default o.ttl -1 arrives as 255), tcpip.cc:558-559 (so the random 37..59 never applies to IPv6)",
    },
    Trait {
        name: "nmap_random_ttl_no_df",
        tool: Tool::Nmap,
        probe: ProbeKind::Any,
        all: &[Cond::TtlIn(7, 59), Cond::DontFragment(false)],
        weight: 30,
        source: "nmap tcpip.cc:533 (TTL random in 37..59), scan_engine_raw.cc:1220 (df false)",
    },
    Trait {
        name: "nmap_icmp_echo_empty",
        tool: Tool::Nmap,
        probe: ProbeKind::IcmpEcho,
        all: &[Cond::PayloadLen(0), Cond::DontFragment(false)],
        weight: 60,
        source: "nmap scan_engine_raw.cc:1394-1398 (echo with o.extra_payload: none by default)",
    },
    Trait {
        name: "nmap_udp_empty",
        tool: Tool::Nmap,
        probe: ProbeKind::Udp,
        all: &[Cond::PayloadLen(0), Cond::DontFragment(false)],
        weight: 40,
        source: "nmap scan_engine_raw.cc:1255-1264 (nmap-payloads for known ports, else empty)",
    },
    Trait {
        name: "masscan_syn_template",
        tool: Tool::Masscan,
        probe: ProbeKind::TcpSyn,
        all: &[Cond::WindowIs(1024), Cond::TtlIn(200, 255)],
        weight: 70,
        source: "masscan src/templ-pkt.c:39 (TTL 255), src/templ-pkt.c:50 (window 1024)",
    },
    Trait {
        name: "masscan_ip_id",
        tool: Tool::Masscan,
        probe: ProbeKind::TcpSyn,
        all: &[Cond::IpIdFromTarget],
        weight: 95,
        source: "masscan src/templ-pkt.c:942 (ip_id = ip_them ^ port_them ^ seqno)",
    },
    Trait {
        name: "zmap_ip_id_54321",
        tool: Tool::Zmap,
        probe: ProbeKind::Any,
        all: &[Cond::IpIdIs(54321)],
        weight: 95,
        source: "zmap src/probe_modules/packet.c:91 (ip_id = htons(54321))",
    },
    Trait {
        name: "zmap_syn_window_65535_ttl_255",
        tool: Tool::Zmap,
        probe: ProbeKind::TcpSyn,
        all: &[Cond::WindowIs(65535), Cond::TtlIn(200, 255)],
        weight: 60,
        source: "zmap src/probe_modules/packet.c:93 (TTL MAXTTL), src/probe_modules/packet.c:116 (window 65535)",
    },
    Trait {
        name: "hping3_syn_window_512",
        tool: Tool::Hping3,
        probe: ProbeKind::TcpSyn,
        all: &[Cond::WindowIs(512), Cond::OptionsAre(&[])],
        weight: 75,
        source: "hping hping2.h:116 (DEFAULT_SRCWINSIZE 512), sendtcp.c:63-64",
    },
    Trait {
        name: "hping3_ack_without_flag",
        tool: Tool::Hping3,
        probe: ProbeKind::TcpSyn,
        all: &[Cond::AckWithoutFlag],
        weight: 70,
        source: "hping sendtcp.c:61 (th_ack = rand() unless set)",
    },
];

/// Traits the table may hold (each source keeps a bit per trait).
pub const MAX_TRAITS: usize = 32;
const _: () = assert!(TRAITS.len() <= MAX_TRAITS);

/// A probe's L4 header, as far as traits look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp {
        flags: u8,
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
        payload_len: u16,
    },
    IcmpEcho {
        payload_len: u16,
    },
    Other,
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

impl<'a> Header<'a> {
    /// Decodes a sample (bytes from the IP header on). `None` when it is too short for the IP
    /// header and the first 8 bytes of L4 (TCP: 20), or not IP. IPv6 extension headers are
    /// not walked: such a probe decodes as `L4::Other`.
    pub fn decode(b: &'a [u8]) -> Option<Self> {
        let version = b.first()? >> 4;
        let (ipv6, ttl, ip_id, dont_fragment, dst_low, proto, l4_at, l4_len) = match version {
            4 => {
                let ihl = usize::from(b[0] & 0x0f) * 4;
                let total = usize::from(be16(b, 2)?);
                let frag = be16(b, 6)?;
                (
                    false,
                    *b.get(8)?,
                    Some(be16(b, 4)?),
                    frag & 0x4000 != 0,
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
                be16(b, 38)?,
                *b.get(6)?,
                40,
                usize::from(be16(b, 4)?),
            ),
            _ => return None,
        };
        let payload = |header: usize| u16::try_from(l4_len.saturating_sub(header)).unwrap_or(0);
        let l4 = match proto {
            IPPROTO_TCP => {
                let doff = usize::from(b.get(l4_at + 12)? >> 4) * 4;
                let options_len = doff.saturating_sub(20);
                let start = (l4_at + 20).min(b.len());
                let end = (l4_at + doff).min(b.len()).max(start);
                L4::Tcp {
                    flags: *b.get(l4_at + 13)?,
                    dst_port: be16(b, l4_at + 2)?,
                    seq: be32(b, l4_at + 4)?,
                    ack: be32(b, l4_at + 8)?,
                    window: be16(b, l4_at + 14)?,
                    options: &b[start..end],
                    options_len,
                }
            }
            IPPROTO_UDP => {
                be16(b, l4_at + 6)?;
                L4::Udp {
                    payload_len: payload(8),
                }
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                let echo = if ipv6 { 128 } else { 8 };
                if *b.get(l4_at)? == echo && b.get(l4_at + 7).is_some() {
                    L4::IcmpEcho {
                        payload_len: payload(8),
                    }
                } else {
                    L4::Other
                }
            }
            _ => L4::Other,
        };
        Some(Self {
            ipv6,
            ttl,
            ip_id,
            dont_fragment,
            dst_low,
            l4,
        })
    }

    /// The probe kind, if a trait can apply.
    pub fn kind(&self) -> Option<ProbeKind> {
        match self.l4 {
            // SYN without ACK, RST, FIN.
            L4::Tcp { flags, .. } if flags & 0x17 == 0x02 => Some(ProbeKind::TcpSyn),
            L4::Udp { .. } => Some(ProbeKind::Udp),
            L4::IcmpEcho { .. } => Some(ProbeKind::IcmpEcho),
            _ => None,
        }
    }

    /// Whether `cond` holds for this probe.
    pub fn meets(&self, cond: &Cond) -> bool {
        match (*cond, self.l4) {
            (Cond::IpIdIs(id), _) => self.ip_id == Some(id),
            (Cond::IpIdFromTarget, L4::Tcp { dst_port, seq, .. }) => {
                self.ip_id == Some(self.dst_low ^ dst_port ^ (seq as u16))
            }
            (Cond::TtlIn(lo, hi), _) => (lo..=hi).contains(&self.ttl),
            // IPv6 has no DF bit: a condition on it holds for IPv4 only.
            (Cond::DontFragment(df), _) => !self.ipv6 && self.dont_fragment == df,
            (Cond::WindowIs(w), L4::Tcp { window, .. }) => window == w,
            (
                Cond::OptionsAre(want),
                L4::Tcp {
                    options,
                    options_len,
                    ..
                },
            ) => options_len == want.len() && options == want,
            (Cond::AckWithoutFlag, L4::Tcp { flags, ack, .. }) => flags & 0x10 == 0 && ack != 0,
            (Cond::PayloadLen(n), L4::Udp { payload_len } | L4::IcmpEcho { payload_len }) => {
                payload_len == n
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
    pub fn matched(&self) -> u32 {
        TRAITS
            .iter()
            .enumerate()
            .filter(|(_, t)| self.matches(t))
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;

    /// An IPv4 probe's bytes (IP header on): TTL, ID, DF, then `l4` (protocol, header, payload
    /// length) to 10.99.0.1.
    fn ipv4(ttl: u8, id: u16, df: bool, proto: u8, l4: &[u8], payload: usize) -> Vec<u8> {
        let total = (20 + l4.len() + payload) as u16;
        let mut b = vec![0x45, 0];
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0]);
        b.extend_from_slice(&[10, 99, 0, 2, 10, 99, 0, 1]);
        b.extend_from_slice(l4);
        b
    }

    fn syn(port: u16, seq: u32, ack: u32, window: u16, options: &[u8]) -> Vec<u8> {
        let mut t = vec![0xc3, 0x50];
        t.extend_from_slice(&port.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.push((((20 + options.len()) / 4) as u8) << 4);
        t.push(0x02);
        t.extend_from_slice(&window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(options);
        t
    }

    fn names(bytes: &[u8]) -> Vec<&'static str> {
        let bits = Header::decode(bytes).expect("decodes").matched();
        TRAITS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, t)| t.name)
            .collect()
    }

    #[test]
    fn the_table_is_well_formed() {
        for (i, t) in TRAITS.iter().enumerate() {
            assert!(t.weight > 0 && t.weight < 100, "{}", t.name);
            assert!(t.source.contains(':'), "{} cites file:line", t.name);
            assert!(!t.all.is_empty(), "{}", t.name);
            assert!(TRAITS[..i].iter().all(|o| o.name != t.name), "{}", t.name);
            assert!(t.name.starts_with(t.tool.name()), "{}", t.name);
        }
    }

    #[test]
    fn each_tools_default_probe_matches_its_traits() {
        let nmap = ipv4(45, 777, false, 6, &syn(22, 1, 0, 1024, MSS_1460), 0);
        assert_eq!(
            names(&nmap),
            ["nmap_syn_window_1024_mss_only", "nmap_random_ttl_no_df"]
        );
        let echo = ipv4(40, 1, false, 1, &[8, 0, 0, 0, 0, 1, 0, 0], 0);
        assert_eq!(
            names(&echo),
            ["nmap_random_ttl_no_df", "nmap_icmp_echo_empty"]
        );
        let udp = ipv4(50, 1, false, 17, &[0xc3, 0x50, 0, 7, 0, 8, 0, 0], 0);
        assert_eq!(names(&udp), ["nmap_random_ttl_no_df", "nmap_udp_empty"]);
        // masscan: ID = dst (0x0001) ^ port ^ seq.
        let seq = 0x4acc_6dbe;
        let id = 0x0001 ^ 7 ^ (seq as u16);
        let masscan = ipv4(255, id, false, 6, &syn(7, seq, 0, 1024, &[]), 0);
        assert_eq!(names(&masscan), ["masscan_syn_template", "masscan_ip_id"]);
        let zmap = ipv4(255, 54321, false, 6, &syn(80, 9, 0, 65535, &[]), 0);
        assert_eq!(
            names(&zmap),
            ["zmap_ip_id_54321", "zmap_syn_window_65535_ttl_255"]
        );
        let hping = ipv4(64, 5, false, 6, &syn(1, 9, 0x4929_0bbb, 512, &[]), 0);
        assert_eq!(
            names(&hping),
            ["hping3_syn_window_512", "hping3_ack_without_flag"]
        );
    }

    #[test]
    fn client_syns_match_nothing() {
        let linux = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let windows = [2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];
        let macos = [
            2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 4, 2, 0, 0,
        ];
        for (ttl, window, options) in [
            (64, 64240, &linux[..]),
            (128, 64240, &windows[..]),
            (128, 65535, &windows[..]),
            (64, 65535, &macos[..]),
            // Far away: TTLs in nmap's range, but DF set and a client's options.
            (50, 64240, &linux[..]),
        ] {
            let probe = ipv4(ttl, 4242, true, 6, &syn(443, 77, 0, window, options), 0);
            assert!(names(&probe).is_empty(), "{ttl} {window} {options:?}");
        }
        // A Linux ping: 56 bytes of payload, DF set.
        let ping = ipv4(64, 1, true, 1, &[8, 0, 0, 0, 0, 1, 0, 1], 56);
        assert!(names(&ping).is_empty());
    }

    #[test]
    fn ipv6_probes_decode_and_df_traits_stay_ipv4_only() {
        // An IPv6 client SYN from afar (hop limit 50): nmap's TTL range, but no DF bit to read.
        let tcp = syn(443, 77, 0, 64800, &[2, 4, 5, 0xa0]);
        let mut b = vec![0x60, 0, 0, 0];
        b.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        b.extend_from_slice(&[6, 50]);
        b.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        b.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&tcp);
        let header = Header::decode(&b).expect("decodes");
        assert!(header.ipv6 && header.ip_id.is_none() && header.ttl == 50);
        assert_eq!(header.kind(), Some(ProbeKind::TcpSyn));
        assert!(names(&b).is_empty(), "{:?}", names(&b));
        // nmap's IPv6 SYN: window 1024, MSS 1460 only.
        let nmap = syn(22, 1, 0, 1024, MSS_1460);
        let mut n = b[..40].to_vec();
        n[4..6].copy_from_slice(&(nmap.len() as u16).to_be_bytes());
        n.extend_from_slice(&nmap);
        assert_eq!(names(&n), ["nmap_syn_window_1024_mss_only"]);
        // As nmap really sends it over IPv6: hop limit 255 (its u8 hop limit turns the random
        // TTL's -1 into 255), which masscan's template (window 1024, TTL 255) also matches;
        // the MSS-only layout names nmap, with the higher weight.
        n[7] = 255;
        assert_eq!(
            names(&n),
            [
                "nmap_syn_window_1024_mss_only_hop_limit_255",
                "masscan_syn_template"
            ]
        );
    }

    #[test]
    fn truncated_or_foreign_samples_do_not_decode() {
        assert!(Header::decode(&[]).is_none());
        assert!(Header::decode(&[0x45, 0, 0]).is_none());
        assert!(Header::decode(&[0x55; 40]).is_none());
        let nmap = ipv4(45, 777, false, 6, &syn(22, 1, 0, 1024, MSS_1460), 0);
        assert!(Header::decode(&nmap[..30]).is_none(), "TCP header cut");
    }
}
