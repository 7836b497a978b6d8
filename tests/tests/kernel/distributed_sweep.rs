//! Distributed sweeps: many sources, each below every threshold, probing one (protocol, port)
//! across many destination hosts, reported once for the port with a sample of the sources;
//! hosts that answer on the port (a load-balanced farm's servers) do not count, one server's
//! visitors touch one host, and a source already reported stops counting.

use std::net::Ipv4Addr;

use scanwatch_common::{
    addr::SourceKey,
    config::KernelConfig,
    distinct::bits_for_count,
    event::{DIRECTION_INGRESS, DetectionKind, SCOPE_PORT, ScanEvent},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    state::{NarrowBitmap, SourceState},
};
use scanwatch_tests::{
    harness::Harness,
    packet::{PacketBuilder, tcp_flags},
};

use crate::{SECOND, T0, TARGET_V4, doc_v4, key_of, load_with, send};

/// Distinct unanswered hosts of one port that make a distributed sweep in these tests (the
/// medium preset's).
const SWEEP_HOSTS: u32 = 32;

/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;

/// The medium thresholds that matter here, both distributed forms on, a clock and the
/// admission filter on (a source's first probe is not counted, as in production).
fn config() -> KernelConfig {
    let mut c = KernelConfig {
        window_ns: 300 * SECOND,
        clock_override_ns: T0,
        hash_seed: 0x5eeb,
        distributed_hosts: bits_for_count(SWEEP_HOSTS, NarrowBitmap::BITS),
        ..KernelConfig::default()
    };
    let bits =
        |kind: DetectionKind, n| bits_for_count(n, SourceState::estimator_bits(kind).unwrap());
    c.thresholds[DetectionKind::PortScan as usize] = bits(DetectionKind::PortScan, 20);
    c.thresholds[DetectionKind::HostSweep as usize] = bits(DetectionKind::HostSweep, 25);
    c.thresholds[DetectionKind::UdpScan as usize] = bits(DetectionKind::UdpScan, 15);
    c.thresholds[DetectionKind::DistributedScan as usize] =
        bits(DetectionKind::DistributedScan, 40);
    c
}

fn sweeps(events: &[ScanEvent]) -> Vec<ScanEvent> {
    events
        .iter()
        .filter(|e| e.kind == DetectionKind::DistributedScan as u32 && e.scope == SCOPE_PORT)
        .copied()
        .collect()
}

/// Source `i` of the tests (TEST-NET-1 and TEST-NET-3).
fn source(i: u32) -> Ipv4Addr {
    doc_v4(if i < 256 { i } else { i + 256 })
}

/// Host `i` (0..256) of the swept network (TEST-NET-2).
fn host(i: u32) -> Ipv4Addr {
    doc_v4(256 + i)
}

/// Runs a frame the host sends through the TC egress program.
fn egress(h: &mut Harness, packet: &PacketBuilder) {
    assert_eq!(h.run_egress(&packet.build()).unwrap(), TC_ACT_UNSPEC);
}

#[test]
fn six_sources_sweeping_port_22_of_sixty_hosts_are_one_distributed_sweep() {
    let mut h = load_with(&config());
    let mut events = Vec::new();
    for s in 0..6u32 {
        // Eleven hosts each: the first probe primes the admission filter, ten are counted.
        for i in 0..11 {
            send(
                &mut h,
                PacketBuilder::new(source(s), host(s * 10 + i)).syn(22),
            );
        }
        events.extend(h.events());
    }
    let found = sweeps(&events);
    assert_eq!(found.len(), 1, "one distributed sweep: {events:?}");
    assert_eq!(
        events.len(),
        1,
        "nothing else: no source crossed a threshold"
    );
    let e = found[0];
    assert_eq!((e.proto, e.target_port), (IPPROTO_TCP, 22));
    assert_eq!(e.direction, DIRECTION_INGRESS);
    assert_eq!(e.source, SourceKey::default(), "no single target");
    let unserved = e.measures[DetectionKind::DistributedScan as usize];
    assert!(unserved >= config().distributed_hosts, "{unserved}");
    let state = h.port_state(IPPROTO_TCP, 22).unwrap().unwrap();
    let sample: Vec<_> = state.sample().collect();
    assert!(sample.len() >= 4, "{sample:?}");
    for k in &sample {
        assert!(
            (0..6).any(|s| *k == key_of(source(s))),
            "{k:?} is no scanner"
        );
    }
    assert!(
        sample.contains(&key_of(source(5))),
        "the last source is sampled"
    );
    assert!(state.hosts_set >= 50, "{}", state.hosts_set);
}

#[test]
fn a_load_balanced_farm_answering_its_visitors_raises_nothing() {
    let mut h = load_with(&config());
    // 200 visitors, each reaching port 443 of three of the farm's 60 servers, which answer.
    for s in 0..200u32 {
        for k in 0..3 {
            let server = host((s * 3 + k) % 60);
            send(&mut h, PacketBuilder::new(source(s), server).syn(443));
            egress(
                &mut h,
                &PacketBuilder::new(server, source(s))
                    .src_port(443)
                    .tcp(40_000, tcp_flags::SYN | tcp_flags::ACK),
            );
        }
    }
    assert!(h.events().is_empty());
    let state = h.port_state(IPPROTO_TCP, 443).unwrap().unwrap();
    // Each visitor's first SYN only primes the admission filter: 40 of the 60 servers count.
    assert!(
        state.hosts_set >= config().distributed_hosts,
        "without the answers this would be a sweep: {}",
        state.hosts_set
    );
    assert_eq!(state.unserved(), 0, "every server answered");
}

#[test]
fn closed_ports_of_a_farm_still_count_when_open_ones_answer() {
    let mut h = load_with(&config());
    // Six bots sweep port 22 of sixty hosts; ten of them run sshd and answer.
    for s in 0..6u32 {
        for i in 0..11 {
            let target = host(s * 10 + i);
            send(&mut h, PacketBuilder::new(source(s), target).syn(22));
            if (s * 10 + i) % 6 == 0 {
                egress(
                    &mut h,
                    &PacketBuilder::new(target, source(s))
                        .src_port(22)
                        .tcp(40_000, tcp_flags::SYN | tcp_flags::ACK),
                );
            }
        }
    }
    let found = sweeps(&h.events());
    assert_eq!(found.len(), 1, "fifty unanswered hosts are still a sweep");
    let state = h.port_state(IPPROTO_TCP, 22).unwrap().unwrap();
    assert!(
        state.unserved() < state.hosts_set,
        "the answering hosts are left out"
    );
}

#[test]
fn visitors_of_one_server_touch_one_host_per_port() {
    let mut h = load_with(&config());
    for s in 0..200u32 {
        for _ in 0..2 {
            for port in [80, 443] {
                send(&mut h, PacketBuilder::new(source(s), TARGET_V4).syn(port));
            }
        }
    }
    assert!(h.events().is_empty());
    for port in [80, 443] {
        let state = h.port_state(IPPROTO_TCP, port).unwrap().unwrap();
        assert_eq!(state.hosts_set, 1, "one host, however many visitors");
    }
}

#[test]
fn a_source_already_reported_stops_counting() {
    let mut h = load_with(&config());
    for i in 0..100 {
        send(&mut h, PacketBuilder::new(source(0), host(i)).syn(22));
    }
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == DetectionKind::HostSweep as u32),
        "the lone sweep is reported as the source's host_sweep: {events:?}"
    );
    assert!(sweeps(&events).is_empty(), "{events:?}");
    let state = h.port_state(IPPROTO_TCP, 22).unwrap().unwrap();
    assert!(state.hosts_set <= 26, "{}", state.hosts_set);
}

#[test]
fn udp_sweeps_count_hosts_that_did_not_answer() {
    let mut h = load_with(&config());
    for s in 0..6u32 {
        for i in 0..11 {
            // Port 53 on the same hosts answers (a resolver farm), port 161 does not.
            let target = host(s * 10 + i);
            send(&mut h, PacketBuilder::new(source(s), target).udp(53));
            egress(
                &mut h,
                &PacketBuilder::new(target, source(s))
                    .src_port(53)
                    .udp(40_000),
            );
            send(&mut h, PacketBuilder::new(source(s), target).udp(161));
        }
    }
    let found = sweeps(&h.events());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].proto, found[0].target_port), (IPPROTO_UDP, 161));
    let dns = h.port_state(IPPROTO_UDP, 53).unwrap().unwrap();
    assert_eq!(dns.unserved(), 0);
}

#[test]
fn threshold_zero_keeps_no_port_state() {
    let mut c = config();
    c.distributed_hosts = 0;
    let mut h = load_with(&c);
    for s in 0..6u32 {
        for i in 0..11 {
            send(
                &mut h,
                PacketBuilder::new(source(s), host(s * 10 + i)).syn(22),
            );
        }
    }
    assert!(h.events().is_empty());
    assert!(h.port_state(IPPROTO_TCP, 22).unwrap().is_none());
    egress(
        &mut h,
        &PacketBuilder::new(host(0), source(0))
            .src_port(22)
            .tcp(40_000, tcp_flags::SYN | tcp_flags::ACK),
    );
    assert!(h.port_state(IPPROTO_TCP, 22).unwrap().is_none());
}

#[test]
fn a_new_window_starts_the_count_and_the_answers_again() {
    let mut c = config();
    let mut h = load_with(&c);
    let sweep = |h: &mut Harness, sources: std::ops::Range<u32>| {
        for s in sources {
            for i in 0..11 {
                send(h, PacketBuilder::new(source(s), host(s * 10 + i)).syn(22));
            }
        }
    };
    sweep(&mut h, 0..3);
    c.clock_override_ns = T0 + 301 * SECOND;
    h.set_config(&c).unwrap();
    sweep(&mut h, 3..6);
    assert!(
        sweeps(&h.events()).is_empty(),
        "30 hosts per window stay below 32"
    );
    let state = h.port_state(IPPROTO_TCP, 22).unwrap().unwrap();
    assert!(state.hosts_set <= 31, "{}", state.hosts_set);
}
