//! IP-protocol scans (nmap -sO: distinct protocol numbers, an exact set) and SCTP scans (nmap
//! -sY INIT, -sZ COOKIE ECHO: distinct SCTP ports); SCTP of an association is no probe.

use scanwatch_common::{classify::PacketClass, event::DetectionKind};

use crate::{
    SCANNER_V4, SCANNER_V6, T0, assert_class, key_of, load_with, no_admission, scan_v4, scan_v6,
    send, state_of,
};

#[test]
fn distinct_protocol_numbers_are_counted_exactly() {
    let mut h = load_with(&no_admission());
    // Every number but TCP, UDP, ICMP, SCTP (and IPv6's extension headers).
    let protocols: Vec<u8> = (0..=255u8)
        .filter(|p| !matches!(p, 1 | 6 | 17 | 132))
        .collect();
    for p in &protocols {
        send(&mut h, scan_v4().raw(*p, vec![]));
        // A repeat counts once.
        send(&mut h, scan_v4().raw(*p, vec![0; 8]));
    }
    let state = state_of(&h, &key_of(SCANNER_V4));
    let n = protocols.len() as u32;
    assert_eq!(state.probes[PacketClass::IpProtocol as usize], 2 * n);
    assert_eq!(state.protocols.bits_set(), n);
    assert_eq!(state.measures[DetectionKind::ProtocolScan as usize], n);
}

#[test]
fn protocol_scan_event_at_its_threshold() {
    let mut config = no_admission();
    config.clock_override_ns = T0;
    config.thresholds[DetectionKind::ProtocolScan as usize] = 10;
    let mut h = load_with(&config);
    // IPv6: GRE, ESP, OSPF, ..., ten numbers; the ninth leaves it below.
    let protos = [2u8, 4, 41, 47, 50, 89, 103, 112, 115, 59];
    for p in &protos[..9] {
        send(&mut h, scan_v6().raw(*p, vec![0; 4]));
    }
    assert!(h.events().is_empty());
    send(&mut h, scan_v6().raw(protos[9], vec![]));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, DetectionKind::ProtocolScan as u32);
    assert_eq!(events[0].source, key_of(SCANNER_V6));
}

#[test]
fn sctp_init_and_cookie_echo_are_probes_other_chunks_are_not() {
    let mut h = load_with(&no_admission());
    for (port, (what, chunk, class)) in (2900u16..).zip([
        ("INIT", 1, PacketClass::SctpInit),
        ("COOKIE ECHO", 10, PacketClass::SctpCookieEcho),
    ]) {
        assert_class(&mut h, &scan_v4().sctp(port, chunk).build(), class, what);
        assert_class(&mut h, &scan_v6().sctp(port, chunk).build(), class, what);
    }
    for src in [key_of(SCANNER_V4), key_of(SCANNER_V6)] {
        let state = state_of(&h, &src);
        assert_eq!(state.sctp_ports.bits_set(), 2);
        assert_eq!(state.protocols.bits_set(), 0, "SCTP is no protocol probe");
    }
    let mut h = load_with(&no_admission());
    for (what, chunk) in [
        ("DATA", 0),
        ("INIT ACK", 2),
        ("SACK", 3),
        ("HEARTBEAT", 4),
        ("ABORT", 6),
        ("COOKIE ACK", 11),
    ] {
        assert_class(
            &mut h,
            &scan_v4().sctp(3868, chunk).build(),
            PacketClass::OtherL4,
            what,
        );
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn sctp_scan_event_counts_ports_not_packets() {
    let mut config = no_admission();
    config.clock_override_ns = T0;
    config.thresholds[DetectionKind::SctpScan as usize] = 10;
    let mut h = load_with(&config);
    // Many associations to one port (a Diameter peer) are one port.
    for _ in 0..50 {
        send(&mut h, scan_v4().sctp(3868, 1));
    }
    for port in 1..=8u16 {
        send(
            &mut h,
            scan_v4().sctp(port, if port % 2 == 0 { 1 } else { 10 }),
        );
    }
    assert!(h.events().is_empty(), "nine ports");
    send(&mut h, scan_v4().sctp(9, 10));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, DetectionKind::SctpScan as u32);
    assert_eq!(events[0].target_port, 9);
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.probes[PacketClass::SctpInit as usize], 54);
    assert_eq!(state.probes[PacketClass::SctpCookieEcho as usize], 5);
}
