//! Distributed scans: many sources, each below every threshold, probing many ports of one
//! destination, reported once for the destination with a sample of the sources; visitors of a
//! busy server (few ports each) and a lone scanner never are.

use scanwatch_common::{
    addr::SourceKey,
    config::KernelConfig,
    distributed::SAMPLE_SOURCES,
    event::{DetectionKind, ScanEvent},
};
use scanwatch_tests::{
    harness::Harness,
    packet::{PacketBuilder, tcp_flags},
};

use crate::{
    SECOND, T0, TARGET_V4, assert_sample_of_scanners, key_of, load_with, medium_config, send,
    source_v4, visit_web_server,
};

/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;

/// The clients of the host's open services, sources 100.. ([`source_v4`]): a web client
/// (80, 443), a client of several services (22, 80, 443, 3306, 5432) and NAT'd clients' DNS
/// queries from one address (UDP 53, many source ports); the host answers each.
const VISITORS: [u32; 3] = [100, 101, 102];

/// Runs a frame the host sends through the TC egress program.
fn egress(h: &mut Harness, packet: &PacketBuilder) {
    assert_eq!(h.run_egress(&packet.build()).unwrap(), TC_ACT_UNSPEC);
}

/// A connection to an open TCP service of `TARGET_V4`: the client's SYN, the host's SYN-ACK.
fn connect(h: &mut Harness, client: u32, port: u16) {
    send(
        h,
        PacketBuilder::new(source_v4(client), TARGET_V4).syn(port),
    );
    egress(
        h,
        &PacketBuilder::new(TARGET_V4, source_v4(client))
            .src_port(port)
            .tcp(40000, tcp_flags::SYN | tcp_flags::ACK),
    );
}

/// [`VISITORS`] using the open services, twice each (a source's first probe primes the
/// admission filter).
fn visit_open_services(h: &mut Harness) {
    for _ in 0..2 {
        for port in [80, 443] {
            connect(h, VISITORS[0], port);
        }
        for port in [22, 80, 443, 3306, 5432] {
            connect(h, VISITORS[1], port);
        }
        for src_port in 0..4 {
            send(
                h,
                PacketBuilder::new(source_v4(VISITORS[2]), TARGET_V4)
                    .src_port(50000 + src_port)
                    .udp(53),
            );
            egress(
                h,
                &PacketBuilder::new(TARGET_V4, source_v4(VISITORS[2]))
                    .src_port(53)
                    .udp(50000 + src_port),
            );
        }
    }
}

fn assert_no_visitor(sample: &[SourceKey]) {
    for v in VISITORS {
        assert!(
            !sample.contains(&key_of(source_v4(v))),
            "visitor {} is sampled: {sample:?}",
            source_v4(v)
        );
    }
}

/// Distinct ports of one destination that make a distributed scan in these tests.
const TARGET_PORTS: u32 = 40;

/// The medium thresholds, a clock and the admission filter on ([`medium_config`]).
fn config() -> KernelConfig {
    medium_config(0xd157, TARGET_PORTS)
}

fn distributed(events: &[ScanEvent]) -> Vec<ScanEvent> {
    events
        .iter()
        .filter(|e| e.kind == DetectionKind::DistributedScan as u32)
        .copied()
        .collect()
}

/// Six sources each SYN-scan eleven ports of `TARGET_V4` (the first probe primes the admission
/// filter; ten ports are counted): the events they raised.
fn six_sources_of_ten_ports(h: &mut Harness) -> Vec<ScanEvent> {
    let mut events = Vec::new();
    for s in 0..6u32 {
        for p in 0..11u16 {
            let port = 1000 + (s as u16) * 11 + p;
            send(h, PacketBuilder::new(source_v4(s), TARGET_V4).syn(port));
        }
        events.extend(h.events());
    }
    events
}

#[test]
fn six_sources_of_ten_ports_each_are_a_distributed_scan_of_the_target() {
    let mut h = load_with(&config());
    let events = six_sources_of_ten_ports(&mut h);
    let found = distributed(&events);
    assert_eq!(
        found.len(),
        1,
        "one distributed_scan, no per-source finding: {events:?}"
    );
    assert_eq!(events.len(), 1, "no source crossed a threshold of its own");
    let e = found[0];
    assert_eq!(e.source, key_of(TARGET_V4), "the finding names the target");
    let state = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    let sample: Vec<_> = state.sample().collect();
    assert!(
        sample.len() >= 4 && sample.len() <= SAMPLE_SOURCES,
        "{sample:?}"
    );
    assert_sample_of_scanners(&sample, 6);
}

#[test]
fn two_hundred_visitors_of_ports_80_and_443_raise_nothing() {
    let mut h = load_with(&config());
    visit_web_server(&mut h, 200, 3);
    assert!(h.events().is_empty());
    let state = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    assert_eq!(state.ports_set, 2, "two ports, however many visitors");
}

#[test]
fn one_scanner_alone_is_a_port_scan_not_a_distributed_one() {
    let mut h = load_with(&config());
    for port in 1..=200u16 {
        send(
            &mut h,
            PacketBuilder::new(source_v4(0), TARGET_V4).syn(port),
        );
    }
    let events = h.events();
    assert!(!events.is_empty(), "the port scan is reported");
    assert!(distributed(&events).is_empty(), "{events:?}");
    let state = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    assert!(
        state.ports_set <= 21,
        "a reported source stops counting: {}",
        state.ports_set
    );
}

#[test]
fn replies_and_established_traffic_never_reach_the_target_state() {
    let mut h = load_with(&config());
    for s in 0..30u32 {
        for p in 0..20u16 {
            let b = PacketBuilder::new(source_v4(s), TARGET_V4);
            send(&mut h, b.clone().tcp(2000 + p, tcp_flags::ACK));
            send(
                &mut h,
                b.clone().tcp(3000 + p, tcp_flags::SYN | tcp_flags::ACK),
            );
            send(&mut h, b.tcp(4000 + p, tcp_flags::RST));
        }
    }
    assert!(h.events().is_empty());
    assert!(h.target_state(&key_of(TARGET_V4)).unwrap().is_none());
}

#[test]
fn threshold_zero_keeps_no_target_state() {
    let mut c = config();
    c.thresholds[DetectionKind::DistributedScan as usize] = 0;
    let mut h = load_with(&c);
    for s in 0..6u32 {
        for p in 0..11u16 {
            send(
                &mut h,
                PacketBuilder::new(source_v4(s), TARGET_V4).udp(5000 + s as u16 * 11 + p),
            );
        }
    }
    assert!(h.events().is_empty());
    assert!(h.target_state(&key_of(TARGET_V4)).unwrap().is_none());
}

#[test]
fn a_new_window_starts_the_count_again() {
    let mut c = config();
    let mut h: Harness = load_with(&c);
    let probe = |h: &mut Harness, s: u32, ports: std::ops::Range<u16>| {
        for port in ports {
            send(h, PacketBuilder::new(source_v4(s), TARGET_V4).syn(port));
        }
    };
    for s in 0..3 {
        probe(&mut h, s, 100 + s as u16 * 20..111 + s as u16 * 20);
    }
    c.clock_override_ns = T0 + 301 * SECOND;
    h.set_config(&c).unwrap();
    for s in 3..6 {
        probe(&mut h, s, 100 + s as u16 * 20..111 + s as u16 * 20);
    }
    assert!(
        distributed(&h.events()).is_empty(),
        "30 ports per window stay below 40"
    );
}

#[test]
fn two_scanners_reported_on_their_own_beside_visitors_are_no_distributed_scan() {
    let mut h = load_with(&config());
    visit_open_services(&mut h);
    for (s, first) in [(0u32, 1000u16), (1, 2000)] {
        // 25 ports each, and the first probe: each crosses `port_scan` (20) on its own.
        for port in first..first + 26 {
            send(
                &mut h,
                PacketBuilder::new(source_v4(s), TARGET_V4).syn(port),
            );
        }
        visit_open_services(&mut h);
    }
    let events = h.events();
    for s in 0..2 {
        assert!(
            events
                .iter()
                .any(|e| e.kind == DetectionKind::PortScan as u32
                    && e.source == key_of(source_v4(s))),
            "scanner {s} is reported on its own: {events:?}"
        );
    }
    assert!(
        distributed(&events).is_empty(),
        "the scanners' ports are reported with them, the visitors' ports are served: {events:?}"
    );
    let state = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    let sample: Vec<_> = state.sample().collect();
    assert_no_visitor(&sample);
}

#[test]
fn six_sources_of_ten_ports_each_beside_visitors_are_sampled_without_the_visitors() {
    let mut h = load_with(&config());
    let mut events = six_sources_of_ten_ports(&mut h);
    // The last scanner also meets an open port, which answers it: still a scanner.
    connect(&mut h, 5, 8443);
    // The visitors come last: the last sources to add a port are theirs.
    visit_open_services(&mut h);
    events.extend(h.events());
    let found = distributed(&events);
    assert_eq!(found.len(), 1, "one distributed_scan: {events:?}");
    let state = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    let sample: Vec<_> = state.sample().collect();
    assert_no_visitor(&sample);
    assert!(sample.len() >= 4, "{sample:?}");
    assert_sample_of_scanners(&sample, 6);
}
