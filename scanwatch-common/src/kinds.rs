//! The table of detection kinds: one row per [`DetectionKind`], in its order, with every fact
//! about the kind that more than one place needs — its name, ATT&CK technique, the directions
//! it is measured in, the counter behind it (and so its counting limit), the presets of each
//! sensitivity, the figures its finding reports, the evidence drop mode blocks on, and a line
//! for the docs.
//!
//! The daemon's configuration (keys, presets, limits, refusals), findings, ECS documents and
//! metrics read it; the kernel reads only what folds into constants; tests compare the packaged
//! configuration and the docs with it. A row out of place does not compile.

use crate::{
    event::{DETECTION_KINDS, DetectionKind},
    state::{NarrowBitmap, ProtocolSet, WideBitmap},
};

/// An ATT&CK tactic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tactic {
    pub id: &'static str,
    pub name: &'static str,
}

/// An ATT&CK technique or sub-technique, as findings (`technique`) and ECS's `threat.*` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Technique {
    /// `T1046`, or a sub-technique's `T1595.001`.
    pub id: &'static str,
    pub name: &'static str,
    /// The parent technique of a sub-technique.
    pub parent: Option<&'static Technique>,
    pub tactic: Tactic,
}

pub const RECONNAISSANCE: Tactic = Tactic {
    id: "TA0043",
    name: "Reconnaissance",
};
pub const DISCOVERY: Tactic = Tactic {
    id: "TA0007",
    name: "Discovery",
};
pub const ACTIVE_SCANNING: Technique = Technique {
    id: "T1595",
    name: "Active Scanning",
    parent: None,
    tactic: RECONNAISSANCE,
};
pub const SCANNING_IP_BLOCKS: Technique = Technique {
    id: "T1595.001",
    name: "Scanning IP Blocks",
    parent: Some(&ACTIVE_SCANNING),
    tactic: RECONNAISSANCE,
};
pub const VULNERABILITY_SCANNING: Technique = Technique {
    id: "T1595.002",
    name: "Vulnerability Scanning",
    parent: Some(&ACTIVE_SCANNING),
    tactic: RECONNAISSANCE,
};
pub const NETWORK_SERVICE_DISCOVERY: Technique = Technique {
    id: "T1046",
    name: "Network Service Discovery",
    parent: None,
    tactic: DISCOVERY,
};

/// Where a kind is measured, which decides the threshold tables that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directions {
    /// A source's probes arriving (`[thresholds]`, `[long_thresholds]`) and this host's own
    /// probes (`[egress_thresholds]`).
    IngressAndEgress,
    /// A remote source's probes arriving only: a non-zero `[egress_thresholds]` value would
    /// never fire and is refused.
    Ingress,
    /// Probes arriving at one destination (or one port) from sources below every threshold,
    /// counted per target over the short window only (its long and egress presets are 0).
    IngressPerTarget,
    /// A request's text, in user space (`WEB_SAMPLES`): no kernel threshold, no key in the
    /// threshold tables.
    IngressUserSpace,
}

impl Directions {
    /// Measured from this host's own probes too.
    pub const fn egress(self) -> bool {
        matches!(self, Self::IngressAndEgress)
    }

    /// Has a count with a threshold (a key in `[thresholds]`).
    pub const fn counted(self) -> bool {
        !matches!(self, Self::IngressUserSpace)
    }

    /// As the docs write it.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::IngressAndEgress => "ingress, egress",
            Self::Ingress => "ingress",
            Self::IngressPerTarget => "ingress, per target",
            Self::IngressUserSpace => "ingress, user space",
        }
    }
}

/// The counter behind a kind's measure (`SourceState`'s fields, `TargetState::ports`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimator {
    /// [`WideBitmap`]: 1024 bits, for the measures that matter most (TCP ports, hosts).
    Wide,
    /// [`NarrowBitmap`]: 512 bits.
    Narrow,
    /// [`ProtocolSet`]: one bit per IP protocol number, an exact set.
    ProtocolSet,
    /// No count (a signature match).
    None,
}

impl Estimator {
    /// Bits of a distinct-count estimator; `None` for an exact set or no count.
    pub const fn bits(self) -> Option<u32> {
        match self {
            Self::Wide => Some(WideBitmap::BITS),
            Self::Narrow => Some(NarrowBitmap::BITS),
            Self::ProtocolSet | Self::None => None,
        }
    }

    /// The most distinct items the counter tells apart: a linear-counting bitmap of `m` bits
    /// saturates near `m · ln m` items (`distinct::saturation_estimate`, floored; a test holds
    /// these to it), the exact set holds 256 protocol numbers. A threshold above it could never
    /// be crossed honestly.
    pub const fn limit(self) -> u32 {
        match self {
            Self::Wide => 7097,
            Self::Narrow => 3194,
            // No count: like the exact set, so a (refused) key never reads a smaller limit.
            Self::ProtocolSet | Self::None => ProtocolSet::BITS,
        }
    }
}

/// One threshold per sensitivity preset, in the kind's distinct items; 0 disables the kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presets {
    pub low: u32,
    pub medium: u32,
    pub high: u32,
}

const fn presets(low: u32, medium: u32, high: u32) -> Presets {
    Presets { low, medium, high }
}

const OFF: Presets = presets(0, 0, 0);

/// What a finding of the kind reports as its distinct ports and hosts (`detect::finding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figures {
    /// A source's finding: `distinct_ports` is the measure of `ports`, `distinct_hosts` that of
    /// `hosts`, both from the event's measures.
    Source {
        ports: DetectionKind,
        hosts: DetectionKind,
    },
    /// An aggregate over sources: one target's distinct ports (1 host), or one port's distinct
    /// hosts (1 port), from the kind's own measure.
    Target,
    /// One request: 1 port, 1 host.
    Request,
}

/// What proves that a finding's packets came from the address it names, and so what drop mode
/// needs before it blocks for a finding of the kind (egress findings, this host's own probes,
/// never block; every block also passes `enforce::Policy::protected`, and is refused for a
/// source that answered one of this host's flows, `answered_peer`).
///
/// The rule every variant but [`BlockEvidence::EstablishedConnection`] follows: evidence without
/// the probes' hop counts never blocks a source that completed a TCP handshake with this host
/// (`unverified_evidence`), since a verified client is the victim a forger wants blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockEvidence {
    /// Blocked by default, on the source's own probes and their hop counts: refused when they
    /// arrive at another hop count than the source's verified handshake (`suspected_spoof`),
    /// or, when their hop counts were not measured, for any source that completed a handshake
    /// (`unverified_evidence`).
    ReturnPath,
    /// Blocked by default, on this host's own replies to the source's packets (the RSTs an ACK
    /// scan draws): they carry no hop count of the prober, and the packets that drew them cost
    /// nothing to forge, so only a source that never completed a handshake with this host is
    /// blocked (`unverified_evidence`). Hop counts the source's other probes left in the window
    /// say nothing about these packets and are not consulted.
    HostReplies,
    /// Blocked only when this configuration key is true, each sampled source of the aggregate
    /// without hop counts of its own: a source that completed a handshake is not blocked
    /// (`unverified_evidence`).
    OptIn(&'static str),
    /// Blocked only when this configuration key is true, on data that arrived over a TCP
    /// connection from the source (a `web_scan`'s request): the connection's handshake is the
    /// evidence, so a source's verified handshake does not refuse it.
    EstablishedConnection(&'static str),
}

impl BlockEvidence {
    /// The configuration key that must be true before the kind blocks, if it needs one.
    pub const fn opt_in(self) -> Option<&'static str> {
        match self {
            Self::OptIn(key) | Self::EstablishedConnection(key) => Some(key),
            Self::ReturnPath | Self::HostReplies => None,
        }
    }
}

/// Everything about one detection kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSpec {
    pub kind: DetectionKind,
    /// Its name in the configuration, alerts and metrics (`DetectionKind::name`).
    pub name: &'static str,
    pub technique: &'static Technique,
    pub directions: Directions,
    pub estimator: Estimator,
    /// `[thresholds]`: the short window's presets.
    pub short: Presets,
    /// `[long_thresholds]`: the long window's (slow scans).
    pub long: Presets,
    /// `[egress_thresholds]`: this host's own probes.
    pub egress: Presets,
    pub figures: Figures,
    pub block: BlockEvidence,
    /// One line for the docs.
    pub description: &'static str,
}

impl KindSpec {
    /// The most distinct items its counter tells apart (see [`Estimator::limit`]).
    pub const fn counting_limit(&self) -> u32 {
        self.estimator.limit()
    }
}

/// The distributed-sweep threshold (`[thresholds] distributed_hosts`, the per-port form of
/// distributed_scan, counted in a [`NarrowBitmap`]): distinct destination hosts probed on one
/// (protocol, port) by sources below every threshold, that did not answer on it. Medium 32:
/// above host_sweep's 25, so one source's sweep (which stops counting once reported) never
/// reaches it alone and at least two sources are needed, and low enough that six bots sweeping
/// ten hosts each cross it. Low 64 (above 50), high 20 (above 15).
pub const DISTRIBUTED_HOSTS: Presets = presets(64, 32, 20);

/// The counter of [`DISTRIBUTED_HOSTS`].
pub const DISTRIBUTED_HOSTS_ESTIMATOR: Estimator = Estimator::Narrow;

/// Every detection kind, in [`DetectionKind`] order.
///
/// Short-window presets (medium): port_scan 20 distinct TCP ports (between Zeek's 15 and
/// scanlogd's weighted 21, since every SYN counts, not only failed connections as Zeek's);
/// host_sweep 25 hosts (Zeek); icmp_sweep 15 hosts; stealth_scan 10 ports (FIN/NULL/Xmas are
/// never legitimate; FIN|ACK is, so a few ports of slack); udp_scan 15 ports (CrowdSec's
/// multi-port 15); fragment_scan 20 distinct datagrams sent as tiny first fragments, as many as
/// port_scan's ports: a tiny fragment is as cheap to forge as a SYN, so it must not block
/// sooner. ack_scan 10 ports: a RST to a bare ACK of no connection also answers late segments
/// of connections the host already forgot (a peer's stale keep-alives after a restart), but
/// those touch the few ports the peer used. protocol_scan 10 protocol numbers besides TCP, UDP,
/// ICMP and SCTP: a router speaks a handful (OSPF, PIM, VRRP, IGMP, GRE, ESP), nmap -sO tries
/// all 256. sctp_scan 10 ports: SCTP services are few (Diameter, M3UA, S1AP) and a client opens
/// associations to one or two of them. distributed_scan 40 distinct ports of one destination
/// from sources below every threshold: twice port_scan, so one source's scan (which stops
/// counting once reported) never reaches it alone, and far above the two or three ports a web
/// server's visitors use. web_scan: a signature match, not a count.
///
/// Long-window presets are the short window's, so a scan is reported whether it takes five
/// minutes or an hour, and one that straddles a short window's end is not halved; not
/// distributed_scan (per destination, short window).
///
/// Egress presets: port_scan, udp_scan and host_sweep count *failed* attempts (RST or ICMP
/// unreachable answering this host), as Zeek's scan policy counted failed connections: 20
/// (host, port) pairs, 15 UDP pairs, 25 hosts. icmp_sweep counts hosts this host pings: 25,
/// above what a host's own health checks touch. stealth_scan counts FIN/NULL/Xmas probes sent
/// (never legitimate): 5. fragment_scan: 5. The kinds measured at ingress only: 0.
pub const KINDS: [KindSpec; DETECTION_KINDS] = [
    KindSpec {
        kind: DetectionKind::PortScan,
        name: "port_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Wide,
        short: presets(50, 20, 10),
        long: presets(50, 20, 10),
        egress: presets(50, 20, 10),
        figures: Figures::Source {
            ports: DetectionKind::PortScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "Many distinct destination TCP ports probed with SYNs.",
    },
    KindSpec {
        kind: DetectionKind::HostSweep,
        name: "host_sweep",
        technique: &SCANNING_IP_BLOCKS,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Wide,
        short: presets(50, 25, 15),
        long: presets(50, 25, 15),
        egress: presets(50, 25, 15),
        figures: Figures::Source {
            ports: DetectionKind::PortScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "Many distinct destination hosts probed.",
    },
    KindSpec {
        kind: DetectionKind::IcmpSweep,
        name: "icmp_sweep",
        technique: &SCANNING_IP_BLOCKS,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Narrow,
        short: presets(30, 15, 8),
        long: presets(30, 15, 8),
        egress: presets(60, 25, 12),
        figures: Figures::Source {
            ports: DetectionKind::PortScan,
            hosts: DetectionKind::IcmpSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "ICMP echo, timestamp or address-mask requests to many hosts.",
    },
    KindSpec {
        kind: DetectionKind::StealthScan,
        name: "stealth_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Narrow,
        short: presets(20, 10, 5),
        long: presets(20, 10, 5),
        egress: presets(10, 5, 3),
        figures: Figures::Source {
            ports: DetectionKind::StealthScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "FIN, NULL, Xmas, Maimon and other odd-flag probes to many ports.",
    },
    KindSpec {
        kind: DetectionKind::UdpScan,
        name: "udp_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Narrow,
        short: presets(40, 15, 8),
        long: presets(40, 15, 8),
        egress: presets(40, 15, 8),
        figures: Figures::Source {
            ports: DetectionKind::UdpScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "Many distinct destination UDP ports.",
    },
    KindSpec {
        kind: DetectionKind::FragmentScan,
        name: "fragment_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::IngressAndEgress,
        estimator: Estimator::Narrow,
        short: presets(50, 20, 10),
        long: presets(50, 20, 10),
        egress: presets(10, 5, 3),
        figures: Figures::Source {
            ports: DetectionKind::PortScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "Tiny first fragments that hide their transport header, by datagram.",
    },
    KindSpec {
        kind: DetectionKind::AckScan,
        name: "ack_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::Ingress,
        estimator: Estimator::Narrow,
        short: presets(20, 10, 5),
        long: presets(20, 10, 5),
        egress: OFF,
        figures: Figures::Source {
            ports: DetectionKind::AckScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::HostReplies,
        description: "Many distinct ports answered with a RST to a bare ACK of no connection \
                      (nmap -sA, -sW).",
    },
    KindSpec {
        kind: DetectionKind::ProtocolScan,
        name: "protocol_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::Ingress,
        estimator: Estimator::ProtocolSet,
        short: presets(20, 10, 6),
        long: presets(20, 10, 6),
        egress: OFF,
        figures: Figures::Source {
            ports: DetectionKind::PortScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "Many IP protocol numbers other than TCP, UDP, ICMP and SCTP (nmap -sO).",
    },
    KindSpec {
        kind: DetectionKind::SctpScan,
        name: "sctp_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::Ingress,
        estimator: Estimator::Narrow,
        short: presets(20, 10, 5),
        long: presets(20, 10, 5),
        egress: OFF,
        figures: Figures::Source {
            ports: DetectionKind::SctpScan,
            hosts: DetectionKind::HostSweep,
        },
        block: BlockEvidence::ReturnPath,
        description: "SCTP INIT or COOKIE ECHO probes to many distinct ports (nmap -sY, -sZ).",
    },
    KindSpec {
        kind: DetectionKind::DistributedScan,
        name: "distributed_scan",
        technique: &NETWORK_SERVICE_DISCOVERY,
        directions: Directions::IngressPerTarget,
        // The target's distinct ports (`distributed::TargetState::ports`).
        estimator: Estimator::Wide,
        short: presets(80, 40, 20),
        long: OFF,
        egress: OFF,
        figures: Figures::Target,
        block: BlockEvidence::OptIn("block_distributed"),
        description: "Many distinct ports of one destination (or hosts on one port, \
                      `distributed_hosts`) from sources each below every threshold.",
    },
    KindSpec {
        kind: DetectionKind::WebScan,
        name: "web_scan",
        technique: &VULNERABILITY_SCANNING,
        directions: Directions::IngressUserSpace,
        estimator: Estimator::None,
        short: OFF,
        long: OFF,
        egress: OFF,
        figures: Figures::Request,
        block: BlockEvidence::EstablishedConnection("block_web_scan"),
        description: "An HTTP request matching a known scanner's signature (`[web]`).",
    },
];

// Row `i` is kind `i`, under its own name: a transposed row does not compile.
const _: () = {
    let mut i = 0;
    while i < DETECTION_KINDS {
        assert!(
            KINDS[i].kind as usize == i,
            "KINDS: rows must follow DetectionKind order"
        );
        assert!(
            crate::programs::same_name(KINDS[i].name, KINDS[i].kind.name()),
            "KINDS: a row's name must be its kind's"
        );
        i += 1;
    }
};

/// Kinds with a threshold (a key in the threshold tables).
pub const COUNTED_KINDS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < DETECTION_KINDS {
        if KINDS[i].directions.counted() {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The keys of a threshold table: the counted kinds' names, in order, then
/// `distributed_hosts` (accepted under `[thresholds]` only).
pub const THRESHOLD_KEYS: [&str; COUNTED_KINDS + 1] = {
    let mut keys = [""; COUNTED_KINDS + 1];
    let (mut n, mut i) = (0, 0);
    while i < DETECTION_KINDS {
        if KINDS[i].directions.counted() {
            keys[n] = KINDS[i].name;
            n += 1;
        }
        i += 1;
    }
    keys[n] = "distributed_hosts";
    keys
};

impl DetectionKind {
    /// The kind's row of [`KINDS`].
    pub const fn spec(self) -> &'static KindSpec {
        &KINDS[self as usize]
    }
}

/// The docs' table of kinds (between `<!-- kinds:begin -->` and `<!-- kinds:end -->` in
/// `docs/configuration.md`, and in `docs/detections.md` when it has the markers): each kind's
/// technique, directions and medium-centred presets (0 where a table does not measure it).
#[cfg(feature = "std")]
pub fn markdown_table() -> std::string::String {
    use std::{fmt::Write as _, string::String};

    let mut out = String::from(
        "| kind | ATT&CK | direction | low | medium | high | egress low | egress medium \
         | egress high | long medium |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for spec in &KINDS {
        let direction = if spec.directions.egress() {
            "ingress, egress"
        } else {
            "ingress"
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {direction} | {} | {} | {} | {} | {} | {} | {} |",
            spec.name,
            spec.technique.id,
            spec.short.low,
            spec.short.medium,
            spec.short.high,
            spec.egress.low,
            spec.egress.medium,
            spec.egress.high,
            spec.long.medium,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_row_in_order() {
        assert_eq!(KINDS.len(), DetectionKind::ALL.len());
        for (spec, kind) in KINDS.iter().zip(DetectionKind::ALL) {
            assert_eq!(spec.kind, kind);
            assert_eq!(spec.name, kind.name());
            assert_eq!(kind.spec(), spec);
        }
    }

    #[test]
    fn presets_rise_with_sensitivity_and_stay_below_the_counting_limit() {
        for spec in &KINDS {
            for p in [spec.short, spec.long, spec.egress] {
                let limit = spec.counting_limit();
                assert!(p.high <= p.medium && p.medium <= p.low, "{}", spec.name);
                assert!(p.low <= limit, "{}: {} above {limit}", spec.name, p.low);
            }
        }
        assert!(DISTRIBUTED_HOSTS.low <= DISTRIBUTED_HOSTS_ESTIMATOR.limit());
    }

    #[test]
    fn long_window_presets_are_the_short_windows_or_off() {
        for spec in &KINDS {
            let expected = match spec.directions {
                Directions::IngressAndEgress | Directions::Ingress => spec.short,
                Directions::IngressPerTarget | Directions::IngressUserSpace => OFF,
            };
            assert_eq!(spec.long, expected, "{}", spec.name);
        }
    }

    #[test]
    fn kinds_not_measured_at_egress_have_no_egress_presets() {
        for spec in KINDS.iter().filter(|s| !s.directions.egress()) {
            assert_eq!(spec.egress, OFF, "{}", spec.name);
        }
        for spec in KINDS.iter().filter(|s| !s.directions.counted()) {
            assert_eq!((spec.short, spec.estimator), (OFF, Estimator::None));
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn threshold_keys_are_the_counted_kinds_and_distributed_hosts() {
        let counted: std::vec::Vec<&str> = KINDS
            .iter()
            .filter(|s| s.directions.counted())
            .map(|s| s.name)
            .collect();
        assert_eq!(THRESHOLD_KEYS[..COUNTED_KINDS], counted[..]);
        assert_eq!(THRESHOLD_KEYS[COUNTED_KINDS], "distributed_hosts");
    }

    #[cfg(feature = "std")]
    #[test]
    fn counting_limits_are_where_the_estimators_saturate() {
        use crate::distinct::saturation_estimate;
        for estimator in [Estimator::Wide, Estimator::Narrow] {
            let bits = estimator.bits().unwrap();
            assert_eq!(
                estimator.limit(),
                saturation_estimate(bits).floor() as u32,
                "{estimator:?}"
            );
        }
        assert_eq!(Estimator::ProtocolSet.limit(), 256);
    }

    #[test]
    fn findings_report_figures_of_counted_kinds() {
        for spec in &KINDS {
            if let Figures::Source { ports, hosts } = spec.figures {
                assert!(ports.spec().estimator.bits().is_some(), "{}", spec.name);
                assert!(hosts.spec().estimator.bits().is_some(), "{}", spec.name);
            }
        }
    }

    #[test]
    fn sub_techniques_name_their_parent() {
        for spec in &KINDS {
            let t = spec.technique;
            assert_eq!(t.id.contains('.'), t.parent.is_some(), "{}", t.id);
            if let Some(parent) = t.parent {
                assert!(t.id.starts_with(parent.id));
                assert_eq!(t.tactic, parent.tactic);
            }
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn markdown_table_has_a_row_per_kind() {
        let table = markdown_table();
        assert_eq!(table.lines().count(), 2 + DETECTION_KINDS);
        assert!(table.contains("| `port_scan` | T1046 | ingress, egress | 50 | 20 | 10 | 50 |"));
        assert!(table.contains("| `web_scan` | T1595.002 |"));
    }
}
