//! Windows and events: threshold crossings, doublings, window expiry, the event ring.

use std::net::{Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_EVENTS, KernelConfig},
    distinct::{bits_for_count, error_bound},
    event::{DetectionKind, ScanEvent},
    state::SourceState,
    stats::Counter,
};
use scanwatch_tests::{
    harness::Harness,
    packet::{PacketBuilder, tcp_flags::FIN},
};

use crate::{
    SCANNER_V4, SCANNER_V6, SECOND, T0, TARGET_V4, TARGET_V6, doc_v4, key_of, load_with, scan_v4,
    send, state_of,
};

/// Port-scan threshold used by the event tests, in distinct ports.
const PORTS: u32 = 20;

/// A config with a clock, a 60 s window, no admission filter and a port-scan threshold of
/// `PORTS` distinct ports.
fn event_config() -> KernelConfig {
    let mut config = KernelConfig {
        window_ns: 60 * SECOND,
        clock_override_ns: T0,
        hash_seed: 0x1234_5678,
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    };
    config.thresholds[DetectionKind::PortScan as usize] = port_threshold(PORTS);
    config
}

/// The kernel-unit port-scan threshold for `ports` distinct ports.
fn port_threshold(ports: u32) -> u32 {
    let bits = SourceState::estimator_bits(DetectionKind::PortScan).unwrap();
    bits_for_count(ports, bits)
}

/// Sends SYNs from `SCANNER_V4` to ports `first..`, one at a time, until the port-scan measure
/// reaches `threshold`; checks no event arrives before that and returns the events that arrived
/// with the crossing probe and the ports sent.
fn scan_until_threshold(h: &mut Harness, first: u16, threshold: u32) -> (Vec<ScanEvent>, u32) {
    let key = key_of(SCANNER_V4);
    let mut sent = 0u32;
    loop {
        let port = first + sent as u16;
        send(h, scan_v4().syn(port));
        sent += 1;
        let events = h.events();
        let measure = state_of(h, &key).measures[DetectionKind::PortScan as usize];
        if measure >= threshold {
            assert_eq!(measure, threshold, "the measure grows by one bit at most");
            return (events, sent);
        }
        assert!(events.is_empty(), "event below threshold at {measure} bits");
        assert!(sent < 1000, "threshold {threshold} never reached");
    }
}

#[test]
fn crossing_port_scan_threshold_sends_one_event() {
    let config = event_config();
    let threshold = config.thresholds[DetectionKind::PortScan as usize];
    let mut h = load_with(&config);
    let (events, sent) = scan_until_threshold(&mut h, 1, threshold);
    assert_eq!(events.len(), 1, "one event at the crossing probe");
    let e = events[0];
    assert_eq!(e.source, key_of(SCANNER_V4));
    assert_eq!(
        DetectionKind::from_index(e.kind),
        Some(DetectionKind::PortScan)
    );
    assert_eq!(e.measures[DetectionKind::PortScan as usize], threshold);
    assert_eq!(e.measures[DetectionKind::HostSweep as usize], 1);
    assert_eq!(e.probes[PacketClass::TcpSyn as usize], sent);
    assert_eq!(e.timestamp_ns, T0);
    assert_eq!(e.first_seen_ns, T0);
    assert_eq!(e.window_start_ns, T0);
    // bits_for_count makes the threshold a distinct-port count, within the estimator's bound.
    let err = (f64::from(sent) - f64::from(PORTS)).abs();
    assert!(
        err <= error_bound(PORTS, 1024),
        "crossed after {sent} ports"
    );
    assert_eq!(h.counter(Counter::EventsEmitted).unwrap(), 1);
    assert_eq!(h.counter(Counter::EventsDropped).unwrap(), 0);
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.reported, 1 << DetectionKind::PortScan as u32);
}

#[test]
fn continuing_scan_is_reported_again_only_when_it_doubles() {
    let mut config = event_config();
    let threshold = config.thresholds[DetectionKind::PortScan as usize];
    let mut h = load_with(&config);
    let (events, sent) = scan_until_threshold(&mut h, 1, threshold);
    assert_eq!(events.len(), 1);
    // More new ports later in the same window: silence until the measure doubles, then one
    // event with the grown count; never more than eight events per window.
    config.clock_override_ns = T0 + 59 * SECOND;
    h.set_config(&config).unwrap();
    let key = key_of(SCANNER_V4);
    let mut reports = vec![threshold];
    for port in 0..3000 {
        send(&mut h, scan_v4().syn(1000 + port));
        for e in h.events() {
            let measure = e.measures[DetectionKind::PortScan as usize];
            let expected = threshold << reports.len();
            assert_eq!(
                measure, expected,
                "reported at each doubling, not in between"
            );
            reports.push(measure);
        }
    }
    assert!(reports.len() >= 3, "reports at {reports:?}");
    assert!(reports.len() <= 8, "bounded: {reports:?}");
    assert_eq!(
        h.counter(Counter::EventsEmitted).unwrap(),
        reports.len() as u64
    );
    assert_eq!(h.counter(Counter::WindowResets).unwrap(), 0);
    let state = state_of(&h, &key);
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], sent + 3000);
    assert_eq!(
        state.reported & 0xf,
        reports.len() as u64,
        "4-bit report count of port_scan"
    );
}

#[test]
fn window_expiry_resets_counts_and_rearms_event() {
    let mut config = event_config();
    let threshold = config.thresholds[DetectionKind::PortScan as usize];
    let mut h = load_with(&config);
    let (events, sent) = scan_until_threshold(&mut h, 1, threshold);
    assert_eq!(events.len(), 1);

    // One nanosecond before the window ends: still the same window.
    config.clock_override_ns = T0 + config.window_ns - 1;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(1));
    assert_eq!(h.counter(Counter::WindowResets).unwrap(), 0);

    // At the window's end the next probe starts a new one.
    let t1 = T0 + config.window_ns;
    config.clock_override_ns = t1;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(1));
    assert_eq!(h.counter(Counter::WindowResets).unwrap(), 1);
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.window_start_ns, t1);
    assert_eq!(
        state.first_seen_ns, T0,
        "first_seen covers the entry's life"
    );
    assert_eq!(state.last_seen_ns, t1);
    assert_eq!(state.reported, 0);
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 1);
    assert_eq!(state.measures[DetectionKind::PortScan as usize], 1);
    assert_eq!(state.tcp_ports.bits_set(), 1);
    assert_eq!(state.lifetime_probes, sent + 2);

    // The same ports again cross the threshold again: a new event for the new window.
    let (events, sent_again) = scan_until_threshold(&mut h, 2, threshold);
    assert_eq!(sent_again + 1, sent, "same ports, same bits");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].window_start_ns, t1);
    assert_eq!(events[0].first_seen_ns, T0);
    assert_eq!(events[0].timestamp_ns, t1);
    assert_eq!(events[0].probes[PacketClass::TcpSyn as usize], sent);
    assert_eq!(h.counter(Counter::EventsEmitted).unwrap(), 2);
}

#[test]
fn threshold_change_applies_without_reload() {
    let mut config = event_config();
    config.thresholds[DetectionKind::PortScan as usize] = port_threshold(50);
    let mut h = load_with(&config);
    for port in 1..=10 {
        send(&mut h, scan_v4().syn(port));
    }
    assert!(h.events().is_empty());
    let measure = state_of(&h, &key_of(SCANNER_V4)).measures[DetectionKind::PortScan as usize];

    // Lower the threshold below the current measure: the next new port sends the event.
    config.thresholds[DetectionKind::PortScan as usize] = port_threshold(5);
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(11));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].measures[DetectionKind::PortScan as usize],
        measure + 1
    );

    // Disabling a kind (threshold 0) stops its events in the next window.
    config.thresholds[DetectionKind::PortScan as usize] = 0;
    config.clock_override_ns = T0 + config.window_ns;
    h.set_config(&config).unwrap();
    for port in 1..=100 {
        send(&mut h, scan_v4().syn(port));
    }
    assert!(h.events().is_empty());
}

#[test]
fn window_change_applies_without_reload() {
    let mut config = event_config();
    config.window_ns = 0; // the default, 300 s
    let mut h = load_with(&config);
    send(&mut h, scan_v4().syn(1));
    config.clock_override_ns = T0 + 20 * SECOND;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(2));
    assert_eq!(h.counter(Counter::WindowResets).unwrap(), 0, "20 s < 300 s");

    config.window_ns = 10 * SECOND;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(3));
    assert_eq!(h.counter(Counter::WindowResets).unwrap(), 1, "20 s ≥ 10 s");
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.window_start_ns, T0 + 20 * SECOND);
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 1);
}

#[test]
fn no_events_flag_suppresses_events() {
    let mut config = event_config();
    config.flags |= FLAG_NO_EVENTS;
    let threshold = config.thresholds[DetectionKind::PortScan as usize];
    let mut h = load_with(&config);
    for port in 1..=200 {
        send(&mut h, scan_v4().syn(port));
    }
    assert!(h.events().is_empty());
    assert_eq!(h.counter(Counter::EventsEmitted).unwrap(), 0);
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert!(
        state.measures[DetectionKind::PortScan as usize] > threshold,
        "still measured"
    );
    assert_eq!(state.reported, 0);

    // Switching events back on reports the source on its next new port.
    config.flags &= !FLAG_NO_EVENTS;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(201));
    assert_eq!(h.events().len(), 1);
}

/// The `n`th probe of a scan.
type ProbeFn = Box<dyn Fn(u32) -> PacketBuilder>;

#[test]
fn each_detection_kind_sends_its_event() {
    let mut config = KernelConfig {
        clock_override_ns: T0,
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    };
    for kind in DetectionKind::ALL {
        config.thresholds[kind as usize] =
            SourceState::estimator_bits(kind).map_or(15, |bits| bits_for_count(15, bits));
    }
    // These six sources probing one target's ports would also make a distributed scan of it
    // at so low a threshold; that kind has its own tests (`distributed.rs`).
    config.thresholds[DetectionKind::DistributedScan as usize] = 0;
    let mut h = load_with(&config);
    let src = |i: u8| Ipv4Addr::new(203, 0, 113, i);
    let tiny = |s| {
        PacketBuilder::new(s, TARGET_V4)
            .ipv4_fragment(0, true)
            .syn(80)
            .l4_len(8)
    };
    let scans: [(DetectionKind, ProbeFn); 6] = [
        (
            DetectionKind::PortScan,
            Box::new(move |i| PacketBuilder::new(src(1), TARGET_V4).syn(i as u16)),
        ),
        (
            DetectionKind::HostSweep,
            Box::new(move |i| PacketBuilder::new(src(2), doc_v4(256 + i)).syn(80)),
        ),
        (
            DetectionKind::IcmpSweep,
            Box::new(move |i| PacketBuilder::new(src(3), doc_v4(256 + i)).echo_request()),
        ),
        (
            DetectionKind::StealthScan,
            Box::new(move |i| PacketBuilder::new(src(4), TARGET_V4).tcp(i as u16, FIN)),
        ),
        (
            DetectionKind::UdpScan,
            Box::new(move |i| PacketBuilder::new(src(5), TARGET_V4).udp(i as u16)),
        ),
        // Distinct datagrams: one identification each.
        (
            DetectionKind::FragmentScan,
            Box::new(move |i| tiny(src(6)).ident(i)),
        ),
    ];
    let mut emitted = 0;
    for (i, (kind, probe)) in scans.iter().enumerate() {
        for n in 1..=40 {
            send(&mut h, probe(n));
        }
        let events = h.events();
        emitted += events.len() as u64;
        let source = key_of(src(i as u8 + 1));
        let mut kinds: Vec<_> = events
            .iter()
            .map(|e| {
                assert_eq!(e.source, source);
                DetectionKind::from_index(e.kind).unwrap()
            })
            .collect();
        kinds.sort_by_key(|k| *k as u32);
        // Low thresholds cross and double within 40 probes: one kind, several reports.
        kinds.dedup();
        // An ICMP sweep is also a host sweep (kinds sorted by index).
        let expected = if *kind == DetectionKind::IcmpSweep {
            vec![DetectionKind::HostSweep, DetectionKind::IcmpSweep]
        } else {
            vec![*kind]
        };
        assert_eq!(kinds, expected, "{kind:?}");
        let e = events.iter().find(|e| e.kind == *kind as u32).unwrap();
        assert_eq!(
            e.measures[*kind as usize],
            config.thresholds[*kind as usize]
        );
    }
    assert_eq!(h.counter(Counter::EventsEmitted).unwrap(), emitted);
}

#[test]
fn events_carry_the_ingress_interface() {
    // BPF_PROG_TEST_RUN runs XDP as if received on the loopback device of the caller's
    // network namespace.
    let mut config = event_config();
    config.thresholds[DetectionKind::PortScan as usize] = 1;
    let mut h = load_with(&config);
    send(&mut h, scan_v4().syn(1));
    let events = h.events();
    assert_eq!(events.len(), 1);
    // SAFETY: the name is a NUL-terminated C string.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert_eq!(events[0].ifindex, lo);
}

#[test]
fn ipv6_events_carry_the_aggregated_source() {
    let mut config = event_config();
    config.thresholds[DetectionKind::PortScan as usize] = port_threshold(3);
    let mut h = load_with(&config);
    // Three addresses of one /64, one port each.
    for i in 1..=3u16 {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0, 0, 0, 0, i);
        send(&mut h, PacketBuilder::new(src, TARGET_V6).syn(i));
    }
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].source, key_of(SCANNER_V6));
    assert!(!events[0].source.is_ipv4());
}

/// Fills the event ring: one port-scan event from each of `sources` IPv6 /64s (the config's
/// port-scan threshold must be 1 bit). Nothing drains the ring meanwhile.
fn fill_event_ring(h: &mut Harness, sources: u16) {
    for i in 0..sources {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0xf111, i, 0, 0, 0, 1);
        send(h, PacketBuilder::new(src, TARGET_V6).syn(80));
    }
}

/// More events than the 256 KiB ring holds (about 2180 of 120 bytes each).
const MORE_EVENTS_THAN_RING: u16 = 3000;

#[test]
fn full_event_ring_counts_dropped_events() {
    let mut config = event_config();
    config.thresholds[DetectionKind::PortScan as usize] = 1;
    let mut h = load_with(&config);
    fill_event_ring(&mut h, MORE_EVENTS_THAN_RING);
    let emitted = h.counter(Counter::EventsEmitted).unwrap();
    let dropped = h.counter(Counter::EventsDropped).unwrap();
    assert_eq!(emitted + dropped, u64::from(MORE_EVENTS_THAN_RING));
    assert!(dropped > 0, "the ring should have filled up");
    assert_eq!(
        h.events().len() as u64,
        emitted,
        "every emitted event arrives"
    );
    // Drained, the ring takes events again.
    send(&mut h, scan_v4().syn(1));
    assert_eq!(h.events().len(), 1);
}

#[test]
fn source_whose_event_was_dropped_is_reported_once_the_ring_drains() {
    // The daemon learns of scans only through events (see scanwatch/src/finding/from_event.rs). If the
    // crossing probe's event is dropped because the ring is full, the source must still be
    // reported on a later probe of the same window, not silenced until the window ends.
    let mut config = event_config();
    config.thresholds[DetectionKind::PortScan as usize] = 1;
    let mut h = load_with(&config);
    fill_event_ring(&mut h, MORE_EVENTS_THAN_RING);
    let threshold = port_threshold(3);
    config.thresholds[DetectionKind::PortScan as usize] = threshold;
    h.set_config(&config).unwrap();
    let dropped = h.counter(Counter::EventsDropped).unwrap();
    for port in 1..=3 {
        send(&mut h, scan_v4().syn(port));
    }
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.measures[DetectionKind::PortScan as usize], threshold);
    assert_eq!(
        h.counter(Counter::EventsDropped).unwrap(),
        dropped + 1,
        "the scanner's event was dropped"
    );
    h.events(); // the daemon catches up
    send(&mut h, scan_v4().syn(100));
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(
        state.measures[DetectionKind::PortScan as usize],
        threshold + 1,
        "a new port"
    );
    let events = h.events();
    assert_eq!(events.len(), 1, "the scanner is reported on its next probe");
    assert_eq!(events[0].source, key_of(SCANNER_V4));
}
