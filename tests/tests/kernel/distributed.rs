//! Distributed scans: many sources, each below every threshold, probing many ports of one
//! destination, reported once for the destination with a sample of the sources; visitors of a
//! busy server (few ports each) and a lone scanner never are.

use scanwatch_common::{
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

#[test]
fn six_sources_of_ten_ports_each_are_a_distributed_scan_of_the_target() {
    let mut h = load_with(&config());
    let mut events = Vec::new();
    for s in 0..6u32 {
        // The first probe primes the admission filter; ten ports are counted.
        for p in 0..11u16 {
            let port = 1000 + (s as u16) * 11 + p;
            send(
                &mut h,
                PacketBuilder::new(source_v4(s), TARGET_V4).syn(port),
            );
        }
        events.extend(h.events());
    }
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
