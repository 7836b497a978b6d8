//! From kernel events to findings: the kernel decides *when* a source crosses a threshold (so
//! the daemon never walks the tracker to find scans); this module turns the event into a
//! finding with estimates a person can read, and throttles the output.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use scanwatch_common::{
    addr::SourceKey,
    classify::{PROBE_CLASSES, PacketClass},
    distinct::estimate,
    event::{DIRECTION_EGRESS, DetectionKind, SCOPE_PORT, ScanEvent, WINDOW_WIDE},
    kinds::{Estimator, Figures},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    state::{NarrowBitmap, SourceState},
};
use serde::Serialize;
use strum::VariantArray as _;

use crate::{
    clock::{Clock, rfc3339},
    enforce::{Refusal, Verdict},
    net::{format_source, format_target},
    rate::TokenBucket,
    tool::ToolMatch,
};

/// Which way a finding's probes went.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Direction {
    /// Probes arriving at this host.
    Ingress,
    /// Probes this host sends (the finding's source is a local address).
    Egress,
}

impl Direction {
    /// The direction of a kernel event.
    pub fn of(event: &ScanEvent) -> Self {
        if event.direction == DIRECTION_EGRESS {
            Self::Egress
        } else {
            Self::Ingress
        }
    }

    /// The metric label and alert value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// The transport protocol of a swept port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// From an IP protocol number (`None` for the others).
    pub fn of(proto: u8) -> Option<Self> {
        match proto {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }
}

/// What was done about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Monitor mode, or not blocked (see `not_blocked`).
    Alert,
    /// Blocked in drop mode.
    Block,
    /// Dry run: would have been blocked.
    WouldBlock,
}

/// One finding, as written to the alert log (one JSON object per line).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    /// When the daemon wrote the finding (RFC 3339, UTC).
    pub timestamp: String,
    /// The scanning source: an address, or `prefix/len` for aggregated IPv6; `*` for a
    /// `distributed_scan` (many sources: see `target` and `sources`).
    pub source: String,
    /// The probed destination of a `distributed_scan` (`*` for a distributed sweep of one port
    /// across many hosts, see `port`); the server (`host:port`) of a `web_scan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The probed port of a distributed sweep (a `distributed_scan` whose `target` is `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The transport protocol of that port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Transport>,
    /// A sample of a `distributed_scan`'s sources (the last distinct ones to add a port, oldest
    /// first; at most `scanwatch_common::target::SAMPLE_SOURCES`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// The first-level prefixes (`ipv6_prefix`, /64 by default) a wide-level finding's source
    /// (`ipv6_wide_prefix`, /48 by default) used: the last distinct ones to probe, oldest first;
    /// at most `scanwatch_common::wide::SAMPLE_PREFIXES`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<Vec<String>>,
    pub kind: DetectionKind,
    /// MITRE ATT&CK technique.
    pub technique: &'static str,
    /// `ingress`: probes arriving at this host; `egress`: probes this host sends (`source` is
    /// then the local address).
    pub direction: Direction,
    /// Distinct destination ports of the kind's probes (TCP SYN for port_scan, UDP for
    /// udp_scan, stealth probes for stealth_scan, ports answered with a RST to a bare ACK for
    /// ack_scan, SCTP INIT / COOKIE ECHO for sctp_scan; TCP SYN otherwise), estimated.
    pub distinct_ports: u64,
    /// Distinct destination hosts (ICMP probes only for icmp_sweep), estimated.
    pub distinct_hosts: u64,
    /// IP protocol numbers probed (protocol_scan only), exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_protocols: Option<u64>,
    /// Present and true when an estimator behind this finding's counts is saturated: the
    /// counts are lower bounds (the source probed at least that many).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_least: bool,
    /// Probes from the source in this window (ack_scan's ACKs are not among them: they take
    /// the established fast path; their RSTs are the evidence).
    pub packets: u64,
    /// Probes by class in this window (non-zero classes only).
    pub probes: BTreeMap<&'static str, u32>,
    /// A few targets of this source's probes (`host:port`, or `host`), newest last; at most
    /// [`MAX_EXAMPLES`].
    pub examples: Vec<String>,
    pub window_seconds: u64,
    /// When the tracker first saw the source (RFC 3339).
    pub first_seen: String,
    /// The probe that crossed the threshold (RFC 3339).
    pub last_seen: String,
    pub interface: String,
    pub action: Action,
    /// How long the block lasts, when `action` is `block` or `would_block`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_ttl_seconds: Option<u64>,
    /// Why a finding in drop mode was not blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_blocked: Option<Refusal>,
    /// Names of the block lists covering the source (enforced or enrichment-only), in
    /// configuration order; absent when none does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listed_in: Vec<String>,
    /// Hop counts, when known (drop mode): the source's completed handshake's, and the fewest
    /// and most of its probes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<Hops>,
    /// The scanner the source's sampled probes look like (`name` `unknown` when they match no
    /// trait): of its /64s for a wide finding, of its sampled sources for a `distributed_scan`;
    /// absent for egress findings and a `web_scan` (whose `web` names its tool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolMatch>,
    /// The matched request of a `web_scan` (signatures, tool, request line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<crate::web::WebDetail>,
}

/// The hop counts behind a `suspected_spoof` decision, as written in the alert:
/// `"hops": {"verified": 3, "probes": [7, 7]}`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Hops {
    /// Hops of the source's completed TCP handshake, if it completed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<u8>,
    /// Fewest and most hops of the probes in the window.
    pub probes: [u8; 2],
}

impl Finding {
    /// A port-scan finding from `source` with fixed times and counts, for unit tests of the
    /// modules that write findings out.
    #[cfg(test)]
    pub(crate) fn sample(source: &str) -> Self {
        Self {
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            source: source.into(),
            kind: DetectionKind::PortScan,
            technique: DetectionKind::PortScan.technique(),
            direction: Direction::Ingress,
            distinct_ports: 20,
            distinct_hosts: 1,
            distinct_protocols: None,
            at_least: false,
            packets: 21,
            probes: BTreeMap::new(),
            examples: Vec::new(),
            window_seconds: 300,
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            last_seen: "2026-01-01T00:00:00.000Z".into(),
            interface: "eth0".into(),
            action: Action::Alert,
            block_ttl_seconds: None,
            not_blocked: None,
            hops: None,
            listed_in: Vec::new(),
            target: None,
            port: None,
            protocol: None,
            sources: None,
            prefixes: None,
            tool: None,
            web: None,
        }
    }

    /// Records what enforcement did.
    pub fn set_verdict(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Alert => {}
            Verdict::Block { ttl, .. } | Verdict::AlreadyBlocked { ttl } => {
                self.action = Action::Block;
                self.block_ttl_seconds = Some(ttl.as_secs());
            }
            Verdict::WouldBlock { ttl } => {
                self.action = Action::WouldBlock;
                self.block_ttl_seconds = Some(ttl.as_secs());
            }
            Verdict::NotBlocked(why) => self.not_blocked = Some(*why),
        }
    }
}

/// Targets kept per finding.
pub const MAX_EXAMPLES: usize = 5;

/// The last few targets of each (source, direction), bounded in sources too: under a storm of
/// findings from many sources the memory stays fixed.
#[derive(Debug, Default)]
pub struct Examples {
    by_source: std::collections::HashMap<(SourceKey, u32), std::collections::VecDeque<String>>,
}

/// Sources whose examples are remembered.
const EXAMPLE_SOURCES: usize = 4096;

impl Examples {
    /// Adds an event's target and returns the source's examples.
    pub fn add(&mut self, event: &ScanEvent) -> Vec<String> {
        if self.by_source.len() >= EXAMPLE_SOURCES {
            self.by_source.clear();
        }
        let list = self
            .by_source
            .entry((event.source, event.direction))
            .or_default();
        let target = format_target(&event.target, event.target_port);
        if !list.contains(&target) {
            if list.len() == MAX_EXAMPLES {
                list.pop_front();
            }
            list.push_back(target);
        }
        list.iter().cloned().collect()
    }
}

/// True when the estimator behind a kernel measure has every bit set: its estimate is a lower
/// bound.
fn saturated(kind: DetectionKind, measures: &[u32]) -> bool {
    let raw = measures.get(kind as usize).copied().unwrap_or(0);
    SourceState::estimator_bits(kind).is_some_and(|bits| raw >= bits)
}

/// Estimated distinct items behind a kernel measure.
fn estimated(kind: DetectionKind, measures: &[u32]) -> u64 {
    let raw = measures.get(kind as usize).copied().unwrap_or(0);
    match SourceState::estimator_bits(kind) {
        Some(bits) => estimate(raw, bits).round() as u64,
        None => u64::from(raw),
    }
}

/// Builds the finding for a kernel event.
pub fn finding(
    event: &ScanEvent,
    interface: String,
    window: Duration,
    ipv6_prefix: u32,
) -> Option<Finding> {
    let kind = DetectionKind::from_index(event.kind)?;
    if kind == DetectionKind::DistributedScan {
        return Some(distributed(event, interface, window));
    }
    // The kinds whose measures are the finding's distinct ports and hosts (`kinds::Figures`).
    let (ports_kind, hosts_kind) = match kind.spec().figures {
        Figures::Source { ports, hosts } => (ports, hosts),
        // No source's event has these (distributed events are above, web_scan has none).
        Figures::Target | Figures::Request => (DetectionKind::PortScan, DetectionKind::HostSweep),
    };
    let direction = Direction::of(event);
    let (source, prefixes) = match wide_source(event) {
        // The agent fills `prefixes` from the wide prefix's entry.
        Some((key, len)) => (format_source(&key, len), Some(Vec::new())),
        // Egress sources are local addresses, tracked at full length.
        None => (
            format_source(
                &event.source,
                match direction {
                    Direction::Egress => 128,
                    Direction::Ingress => ipv6_prefix,
                },
            ),
            None,
        ),
    };
    Some(Finding {
        source,
        prefixes,
        direction,
        distinct_ports: estimated(ports_kind, &event.measures),
        distinct_hosts: estimated(hosts_kind, &event.measures),
        distinct_protocols: (kind.spec().estimator == Estimator::ProtocolSet)
            .then(|| estimated(kind, &event.measures)),
        at_least: [kind, ports_kind, hosts_kind]
            .into_iter()
            .any(|k| saturated(k, &event.measures)),
        ..base(event, kind, interface, window)
    })
}

/// The prefix (as a plain key) and its length of a wide-level event's source; `None` for an
/// event of any other level.
pub fn wide_source(event: &ScanEvent) -> Option<(SourceKey, u32)> {
    if event.window != WINDOW_WIDE {
        return None;
    }
    let (addr, len) = event.source.wide_prefix()?;
    Some((SourceKey { addr }, len))
}

/// `Finding::prefixes` of a wide-level finding: its `WIDE` entry's sample of first-level
/// prefixes, named as the tracker's sources are.
pub fn name_prefixes(sample: &[SourceKey], ipv6_prefix: u32) -> Vec<String> {
    sample
        .iter()
        .map(|k| format_source(k, ipv6_prefix))
        .collect()
}

/// What every finding of `event` says before its kind decides what it counts: times, probes by
/// class, the window and the interface; monitor-mode action.
fn base(event: &ScanEvent, kind: DetectionKind, interface: String, window: Duration) -> Finding {
    let probes: BTreeMap<&'static str, u32> = PacketClass::ALL[..PROBE_CLASSES]
        .iter()
        .zip(event.probes.iter())
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| (c.name(), *n))
        .collect();
    Finding {
        timestamp: rfc3339(SystemTime::now()),
        source: String::new(),
        target: None,
        port: None,
        protocol: None,
        sources: None,
        prefixes: None,
        kind,
        technique: kind.technique(),
        direction: Direction::of(event),
        distinct_ports: 0,
        distinct_hosts: 0,
        distinct_protocols: None,
        at_least: false,
        packets: event.probes.iter().map(|n| u64::from(*n)).sum(),
        probes,
        examples: Vec::new(),
        window_seconds: window.as_secs(),
        first_seen: rfc3339(Clock::wall(event.first_seen_ns)),
        last_seen: rfc3339(Clock::wall(event.timestamp_ns)),
        interface,
        action: Action::Alert,
        block_ttl_seconds: None,
        not_blocked: None,
        hops: None,
        listed_in: Vec::new(),
        tool: None,
        web: None,
    }
}

/// The finding of a distributed scan: `source` is `*`, the event's source is the target, its
/// target the source whose probe crossed; the agent fills `sources` from the target's sample.
/// A distributed sweep (scope `SCOPE_PORT`) names the port instead, with `target` `*`.
fn distributed(event: &ScanEvent, interface: String, window: Duration) -> Finding {
    let kind = DetectionKind::DistributedScan;
    if event.scope == SCOPE_PORT {
        // The kernel measure: bits of the port's 512-bit host bitmap whose host did not answer.
        let raw = event.measures[kind as usize];
        return Finding {
            source: "*".into(),
            target: Some("*".into()),
            port: Some(event.target_port),
            protocol: Transport::of(event.proto),
            sources: Some(Vec::new()),
            direction: Direction::Ingress,
            distinct_ports: 1,
            distinct_hosts: estimate(raw, NarrowBitmap::BITS).round() as u64,
            at_least: raw >= NarrowBitmap::BITS,
            // The probe that crossed: one of the swept hosts.
            examples: vec![format_target(&event.target, event.target_port)],
            ..base(event, kind, interface, window)
        };
    }
    Finding {
        source: "*".into(),
        target: Some(format_target(&event.source.addr, 0)),
        sources: Some(Vec::new()),
        prefixes: None,
        direction: Direction::Ingress,
        distinct_ports: estimated(kind, &event.measures),
        distinct_hosts: 1,
        at_least: saturated(kind, &event.measures),
        ..base(event, kind, interface, window)
    }
}

/// Token buckets over alert output, one per (kind, direction): under attack, unthrottled
/// alert logs become their own denial of service, and one shared budget would let a forged
/// flood of one kind mute every other. Findings over their kind's budget are counted, not
/// written.
#[derive(Debug)]
pub struct AlertBudget {
    buckets: Vec<TokenBucket>,
}

impl AlertBudget {
    /// `per_second` alerts per (kind, direction), in bursts of as many, starting full.
    pub fn new(per_second: u32) -> Self {
        Self::starting_at(per_second, Instant::now())
    }

    fn starting_at(per_second: u32, now: Instant) -> Self {
        let bucket = TokenBucket::starting_at(per_second, per_second, now);
        Self {
            buckets: vec![bucket; DetectionKind::ALL.len() * Direction::VARIANTS.len()],
        }
    }

    /// Takes a token of `kind` in `direction` at `now`; false when that budget is spent.
    pub fn take(&mut self, kind: DetectionKind, direction: Direction, now: Instant) -> bool {
        let index = kind as usize * Direction::VARIANTS.len() + direction as usize;
        self.buckets[index].take(now)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use scanwatch_common::{distinct::bits_for_count, event::DETECTION_KINDS};

    use super::*;

    fn event(kind: DetectionKind, measures: [u32; DETECTION_KINDS]) -> ScanEvent {
        let mut probes = [0; PROBE_CLASSES];
        probes[PacketClass::TcpSyn as usize] = 30;
        probes[PacketClass::Udp as usize] = 2;
        ScanEvent {
            timestamp_ns: Clock::monotonic_ns(),
            first_seen_ns: Clock::monotonic_ns() - 5_000_000_000,
            window_start_ns: 0,
            source: SourceKey::from_ipv4([192, 0, 2, 9]),
            probes,
            measures,
            kind: kind as u32,
            ifindex: 1,
            direction: 0,
            target_port: 22,
            min_hops: scanwatch_common::evidence::HOPS_UNKNOWN,
            max_hops: scanwatch_common::evidence::HOPS_UNKNOWN,
            window: 0,
            scope: 0,
            proto: IPPROTO_TCP,
            target: SourceKey::from_ipv4([198, 51, 100, 1]).addr,
        }
    }

    #[test]
    fn wide_findings_name_the_wide_prefix() {
        let mut e = event(DetectionKind::PortScan, [0; DETECTION_KINDS]);
        let addr = "2001:db8:1:5::9".parse::<Ipv6Addr>().unwrap().octets();
        e.source = SourceKey::wide_from_ipv6(addr, 48);
        e.window = WINDOW_WIDE;
        let f = finding(&e, "x".into(), Duration::from_secs(60), 64).unwrap();
        assert_eq!(f.source, "2001:db8:1::/48");
        assert_eq!(f.prefixes, Some(Vec::new()));
        // The same key in a short-window event is not read as a wide prefix.
        e.window = 0;
        assert_eq!(
            finding(&e, "x".into(), Duration::from_secs(60), 64)
                .unwrap()
                .prefixes,
            None
        );
    }

    #[test]
    fn egress_findings_name_the_local_source_and_keep_examples() {
        let mut e = event(DetectionKind::PortScan, [0; DETECTION_KINDS]);
        e.direction = DIRECTION_EGRESS;
        e.source = SourceKey {
            addr: "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets(),
        };
        let f = finding(&e, "x".into(), Duration::from_secs(60), 64).unwrap();
        assert_eq!(f.direction, Direction::Egress);
        assert_eq!(f.source, "2001:db8::7");
        let mut examples = Examples::default();
        for port in 1..=8u16 {
            e.target_port = port;
            examples.add(&e);
        }
        let list = examples.add(&e);
        assert_eq!(list.len(), MAX_EXAMPLES);
        assert_eq!(list.last().unwrap(), "198.51.100.1:8");
        assert_eq!(format_target(&e.target, 0), "198.51.100.1");
    }

    #[test]
    fn suspected_spoofs_show_their_hop_counts() {
        let mut f = finding(
            &event(DetectionKind::PortScan, [0; DETECTION_KINDS]),
            "eth0".into(),
            Duration::from_secs(300),
            64,
        )
        .unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("\"hops\""), "{json}");
        f.set_verdict(&Verdict::NotBlocked(Refusal::SuspectedSpoof));
        f.hops = Some(Hops {
            verified: Some(3),
            probes: [7, 7],
        });
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains("\"not_blocked\":\"suspected_spoof\""),
            "{json}"
        );
        assert!(
            json.contains("\"hops\":{\"verified\":3,\"probes\":[7,7]}"),
            "{json}"
        );
        f.hops = Some(Hops {
            verified: None,
            probes: [2, 5],
        });
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"hops\":{\"probes\":[2,5]}"), "{json}");
    }

    #[test]
    fn finding_reports_estimates_and_technique() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::PortScan as usize] = bits_for_count(30, 1024);
        m[DetectionKind::HostSweep as usize] = 1;
        let f = finding(
            &event(DetectionKind::PortScan, m),
            "eth0".into(),
            Duration::from_secs(300),
            64,
        )
        .unwrap();
        assert_eq!(f.source, "192.0.2.9");
        assert_eq!(f.kind, DetectionKind::PortScan);
        assert_eq!(f.technique, "T1046");
        assert_eq!(f.distinct_ports, 30);
        assert_eq!(f.distinct_hosts, 1);
        assert_eq!(f.packets, 32);
        assert_eq!(f.probes.get("tcp_syn"), Some(&30));
        assert!(!f.probes.contains_key("tcp_fin"));
        assert_eq!(f.window_seconds, 300);
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains('\n'));
        for key in [
            "timestamp",
            "source",
            "kind",
            "technique",
            "distinct_ports",
            "distinct_hosts",
            "packets",
            "window_seconds",
            "first_seen",
            "last_seen",
            "interface",
            "action",
        ] {
            assert!(
                json.contains(&format!("\"{key}\":")),
                "{key} missing in {json}"
            );
        }
    }

    #[test]
    fn icmp_sweep_counts_icmp_hosts() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::IcmpSweep as usize] = bits_for_count(40, 512);
        m[DetectionKind::HostSweep as usize] = bits_for_count(45, 1024);
        let f = finding(
            &event(DetectionKind::IcmpSweep, m),
            "x".into(),
            Duration::from_secs(60),
            64,
        )
        .unwrap();
        assert_eq!(f.technique, "T1595.001");
        assert!(f.distinct_hosts.abs_diff(40) <= 1, "{}", f.distinct_hosts);
    }

    #[test]
    fn saturated_estimator_says_at_least() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::UdpScan as usize] = 512;
        let f = finding(
            &event(DetectionKind::UdpScan, m),
            "x".into(),
            Duration::from_secs(60),
            64,
        )
        .unwrap();
        assert!(f.at_least);
        assert!(f.distinct_ports >= 3000, "{}", f.distinct_ports);
        assert!(
            serde_json::to_string(&f)
                .unwrap()
                .contains("\"at_least\":true")
        );
        m[DetectionKind::UdpScan as usize] = 511;
        let f = finding(
            &event(DetectionKind::UdpScan, m),
            "x".into(),
            Duration::from_secs(60),
            64,
        )
        .unwrap();
        assert!(!f.at_least);
        assert!(!serde_json::to_string(&f).unwrap().contains("at_least"));
    }

    #[test]
    fn new_kinds_report_their_own_counts() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::AckScan as usize] = bits_for_count(12, 512);
        m[DetectionKind::SctpScan as usize] = bits_for_count(14, 512);
        m[DetectionKind::ProtocolScan as usize] = 200;
        let at = |kind| finding(&event(kind, m), "x".into(), Duration::from_secs(60), 64).unwrap();
        let ack = at(DetectionKind::AckScan);
        assert_eq!((ack.distinct_ports, ack.technique), (12, "T1046"));
        assert_eq!(at(DetectionKind::SctpScan).distinct_ports, 14);
        let proto = at(DetectionKind::ProtocolScan);
        // An exact set: all 256 protocols set is no saturation.
        assert_eq!(proto.distinct_protocols, Some(200));
        assert!(!proto.at_least);
        assert_eq!(ack.distinct_protocols, None);
    }

    #[test]
    fn distributed_finding_names_the_target_not_a_source() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::DistributedScan as usize] = bits_for_count(54, 1024);
        let e = event(DetectionKind::DistributedScan, m);
        let f = finding(&e, "x".into(), Duration::from_secs(300), 64).unwrap();
        assert_eq!(f.source, "*");
        assert_eq!(f.target.as_deref(), Some("192.0.2.9"));
        assert_eq!(f.distinct_ports, 54);
        assert_eq!(f.technique, "T1046");
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"source\":\"*\",\"target\":\"192.0.2.9\",\"sources\":[]"));
        let port = finding(
            &event(DetectionKind::PortScan, [0; DETECTION_KINDS]),
            "x".into(),
            Duration::from_secs(1),
            64,
        )
        .unwrap();
        let json = serde_json::to_string(&port).unwrap();
        assert!(!json.contains("\"target\"") && !json.contains("\"sources\""));
    }

    #[test]
    fn distributed_sweep_names_the_port_and_counts_hosts() {
        let mut m = [0; DETECTION_KINDS];
        m[DetectionKind::DistributedScan as usize] = bits_for_count(45, NarrowBitmap::BITS);
        let mut e = event(DetectionKind::DistributedScan, m);
        e.scope = SCOPE_PORT;
        e.source = SourceKey::default();
        let f = finding(&e, "x".into(), Duration::from_secs(300), 64).unwrap();
        assert_eq!((f.source.as_str(), f.target.as_deref()), ("*", Some("*")));
        assert_eq!((f.port, f.protocol), (Some(22), Some(Transport::Tcp)));
        assert_eq!((f.distinct_hosts, f.distinct_ports), (45, 1));
        assert!(!f.at_least);
        assert_eq!(f.examples, ["198.51.100.1:22"]);
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains(
                "\"source\":\"*\",\"target\":\"*\",\"port\":22,\"protocol\":\"tcp\",\"sources\":[]"
            ),
            "{json}"
        );
        e.proto = IPPROTO_UDP;
        e.measures[DetectionKind::DistributedScan as usize] = NarrowBitmap::BITS;
        let f = finding(&e, "x".into(), Duration::from_secs(300), 64).unwrap();
        assert_eq!(f.protocol, Some(Transport::Udp));
        assert!(f.at_least, "a saturated host bitmap is a lower bound");
    }

    #[test]
    fn unknown_kind_is_no_finding() {
        let mut e = event(DetectionKind::PortScan, [0; DETECTION_KINDS]);
        e.kind = 99;
        assert!(finding(&e, "x".into(), Duration::from_secs(1), 64).is_none());
    }

    #[test]
    fn budget_limits_burst_and_refills() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(3, start);
        let (port, ingress) = (DetectionKind::PortScan, Direction::Ingress);
        let take = |b: &mut AlertBudget, at| b.take(port, ingress, at);
        assert!(take(&mut b, start) && take(&mut b, start) && take(&mut b, start));
        assert!(!take(&mut b, start));
        assert!(take(&mut b, start + Duration::from_millis(400)));
        assert!(!take(&mut b, start + Duration::from_millis(400)));
    }

    #[test]
    fn a_flood_of_one_kind_cannot_spend_another_kinds_budget() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(50, start);
        let flooded = (0..10_000)
            .filter(|_| b.take(DetectionKind::PortScan, Direction::Ingress, start))
            .count();
        assert_eq!(flooded, 50);
        for kind in DetectionKind::ALL {
            assert!(
                b.take(kind, Direction::Egress, start),
                "egress {}",
                kind.name()
            );
            if kind != DetectionKind::PortScan {
                assert!(
                    b.take(kind, Direction::Ingress, start),
                    "ingress {}",
                    kind.name()
                );
            }
        }
    }
}
