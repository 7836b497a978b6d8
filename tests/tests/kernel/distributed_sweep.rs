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
    state::NarrowBitmap,
    stats::Counter,
};
use scanwatch_tests::{
    harness::Harness,
    packet::{PacketBuilder, tcp_flags},
};

use crate::{
    Forger, SECOND, T0, assert_sample_of_scanners, doc_v4, load_with, medium_config, send,
    source_v4, visit_web_server,
};

/// Distinct unanswered hosts of one port that make a distributed sweep in these tests (the
/// medium preset's).
const SWEEP_HOSTS: u32 = 32;

/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;

/// The medium thresholds, a clock and the admission filter on ([`medium_config`]), and the
/// distributed sweep on too.
fn config() -> KernelConfig {
    KernelConfig {
        distributed_hosts: bits_for_count(SWEEP_HOSTS, NarrowBitmap::BITS),
        ..medium_config(0x5eeb, 40)
    }
}

fn sweeps(events: &[ScanEvent]) -> Vec<ScanEvent> {
    events
        .iter()
        .filter(|e| e.kind == DetectionKind::DistributedScan as u32 && e.scope == SCOPE_PORT)
        .copied()
        .collect()
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
                PacketBuilder::new(source_v4(s), host(s * 10 + i)).syn(22),
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
    assert_sample_of_scanners(&sample, 6);
    assert!(state.hosts_set >= 50, "{}", state.hosts_set);
}

#[test]
fn a_load_balanced_farm_answering_its_visitors_raises_nothing() {
    let mut h = load_with(&config());
    // 200 visitors, each reaching port 443 of three of the farm's 60 servers, which answer.
    for s in 0..200u32 {
        for k in 0..3 {
            let server = host((s * 3 + k) % 60);
            send(&mut h, PacketBuilder::new(source_v4(s), server).syn(443));
            egress(
                &mut h,
                &PacketBuilder::new(server, source_v4(s))
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
            send(&mut h, PacketBuilder::new(source_v4(s), target).syn(22));
            if (s * 10 + i) % 6 == 0 {
                egress(
                    &mut h,
                    &PacketBuilder::new(target, source_v4(s))
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
    visit_web_server(&mut h, 200, 2);
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
        send(&mut h, PacketBuilder::new(source_v4(0), host(i)).syn(22));
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
            send(&mut h, PacketBuilder::new(source_v4(s), target).udp(53));
            egress(
                &mut h,
                &PacketBuilder::new(target, source_v4(s))
                    .src_port(53)
                    .udp(40_000),
            );
            send(&mut h, PacketBuilder::new(source_v4(s), target).udp(161));
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
                PacketBuilder::new(source_v4(s), host(s * 10 + i)).syn(22),
            );
        }
    }
    assert!(h.events().is_empty());
    assert!(h.port_state(IPPROTO_TCP, 22).unwrap().is_none());
    egress(
        &mut h,
        &PacketBuilder::new(host(0), source_v4(0))
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
                send(
                    h,
                    PacketBuilder::new(source_v4(s), host(s * 10 + i)).syn(22),
                );
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

#[test]
fn a_sweep_interleaved_with_a_spoofed_port_spray_is_still_reported() {
    // Between two probes of the sweep, 576 forged sources each send eight SYNs to new ports
    // (below every threshold): 4,608 other ports, more than an LRU of 4,096 ports would keep.
    let mut h = load_with(&config());
    // Ports from 1025 up, wrapping to 1024: never the sweep's port 22.
    let mut spray = Forger::new(host(200), Ipv4Addr::new(10, 0, 0, 2), 1024);
    let mut events = Vec::new();
    for s in 0..4u32 {
        for i in 0..11 {
            send(
                &mut h,
                PacketBuilder::new(source_v4(s), host(s * 11 + i)).syn(22),
            );
            spray.send(&mut h, 576, 8);
            events.extend(h.events());
        }
    }
    let found: Vec<_> = sweeps(&events)
        .into_iter()
        .filter(|e| e.target_port == 22)
        .collect();
    assert_eq!(found.len(), 1, "{:?}", sweeps(&events));
    let state = h.port_state(IPPROTO_TCP, 22).unwrap().unwrap();
    assert!(state.hosts_set >= SWEEP_HOSTS, "{}", state.hosts_set);
    assert_sample_of_scanners(&state.sample().collect::<Vec<_>>(), 4);
    assert!(
        h.counter(Counter::PortSlotsHeld).unwrap() > 0,
        "the spray met the held slot"
    );
}
