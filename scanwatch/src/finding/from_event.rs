//! From kernel events to findings: the kernel decides *when* a source crosses a threshold (so
//! the daemon never walks the tracker to find scans); this module turns the event into a
//! finding with estimates a person can read.

use std::{collections::BTreeMap, time::Duration};

use scanwatch_common::{
    addr::SourceKey,
    classify::{PROBE_CLASSES, PacketClass},
    distinct::estimate,
    event::{DetectionKind, SCOPE_PORT, ScanEvent, WINDOW_WIDE},
    kinds::{Estimator, Figures},
    state::{NarrowBitmap, SourceState},
};

use crate::{
    finding::record::{Direction, Finding, Transport},
    kernel::clock::{Clock, rfc3339},
    net::{format_source, format_target},
};

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
        packets: event.probes.iter().map(|n| u64::from(*n)).sum(),
        probes,
        ..Finding::new(
            kind,
            Direction::of(event),
            String::new(),
            [
                rfc3339(Clock::wall(event.first_seen_ns)),
                rfc3339(Clock::wall(event.timestamp_ns)),
            ],
            window,
            interface,
        )
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

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use scanwatch_common::{
        distinct::bits_for_count,
        event::{DETECTION_KINDS, DIRECTION_EGRESS},
        proto::{IPPROTO_TCP, IPPROTO_UDP},
    };

    use super::*;
    use crate::finding::{
        record::Hops,
        verdict::{Refusal, Verdict},
    };

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
            sender: scanwatch_common::owner::Sender::NONE,
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
}
