//! ACK and window scans (nmap -sA, -sW): the ACKs take the established fast path at XDP; the
//! bare RSTs the host answers them with are seen by the TC egress program and counted per
//! remote (the scanner) by distinct local port, in the remote's ingress state.

use scanwatch_common::{
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, KernelConfig},
    event::{DIRECTION_INGRESS, DetectionKind},
    stats::Counter,
};
use scanwatch_tests::packet::{
    PacketBuilder,
    tcp_flags::{ACK, RST, SYN},
};

use crate::{
    SCANNER_V4, SCANNER_V6, SECOND, T0, TARGET_V4, TARGET_V6, assert_class, doc_v4, key_of,
    load_with, state_of, tracking_counters,
};

/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;

fn config(flags: u32) -> KernelConfig {
    let mut c = KernelConfig {
        clock_override_ns: T0,
        flags,
        ..KernelConfig::default()
    };
    c.thresholds[DetectionKind::AckScan as usize] = 10;
    c
}

/// The host's RST from its `port` to the scanner's port 51000, with `flags`.
fn reset_v4(port: u16, flags: u8) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, SCANNER_V4)
        .src_port(port)
        .tcp(51_000, flags)
        .build()
}

fn egress(h: &mut scanwatch_tests::harness::Harness, frame: &[u8]) {
    assert_eq!(h.run_egress(frame).unwrap(), TC_ACT_UNSPEC);
}

#[test]
fn bare_acks_stay_on_the_fast_path_at_xdp() {
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    for port in 1..=20u16 {
        let ack = PacketBuilder::new(SCANNER_V4, TARGET_V4)
            .tcp(port, ACK)
            .build();
        assert_class(&mut h, &ack, PacketClass::TcpEstablished, "bare ACK");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
}

#[test]
fn resets_to_bare_acks_raise_ack_scan_for_the_remote() {
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    for port in 1..=9u16 {
        egress(&mut h, &reset_v4(port, RST));
        // A repeat to the same port counts once (window scans probe twice).
        egress(&mut h, &reset_v4(port, RST));
    }
    assert!(h.events().is_empty(), "nine ports");
    egress(&mut h, &reset_v4(10, RST));
    let events = h.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.kind, DetectionKind::AckScan as u32);
    assert_eq!(e.direction, DIRECTION_INGRESS);
    assert_eq!(e.source, key_of(SCANNER_V4), "the scanner is the remote");
    assert_eq!(e.target_port, 10);
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.ack_ports.bits_set(), 10);
    assert_eq!(state.hosts.bits_set(), 1);
    assert!(
        h.egress_state(&key_of(TARGET_V4)).unwrap().is_none(),
        "the host's answers are no egress scan"
    );
}

#[test]
fn resets_with_ack_are_not_ack_scan_evidence() {
    // RST|ACK answers a SYN or a FIN/NULL/Xmas probe (counted at XDP) or aborts a connection.
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    for port in 1..=30u16 {
        egress(&mut h, &reset_v4(port, RST | ACK));
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert!(h.events().is_empty());
}

#[test]
fn ipv6_resets_count_for_the_remotes_prefix_behind_the_admission_filter() {
    let mut h = load_with(&config(0));
    for port in 1..=11u16 {
        let rst = PacketBuilder::new(TARGET_V6, SCANNER_V6)
            .src_port(port)
            .tcp(51_000, RST)
            .build();
        egress(&mut h, &rst);
    }
    // The first reset only left a fingerprint: 10 ports counted.
    let state = state_of(&h, &key_of(SCANNER_V6));
    assert_eq!(state.ack_ports.bits_set(), 10);
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, DetectionKind::AckScan as u32);
}

/// A remote this host talks to (a CDN, or a client of this host's servers).
fn peer_v4() -> std::net::Ipv4Addr {
    doc_v4(512 + 80)
}

/// The host opens a connection from its `local_port` to the peer's port 443 (its SYN).
fn open_v4(local_port: u16) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, peer_v4())
        .src_port(local_port)
        .tcp(443, SYN)
        .build()
}

/// The host accepts a connection on its `local_port` from the peer's port 40000 (its SYN-ACK).
fn accept_v4(local_port: u16) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, peer_v4())
        .src_port(local_port)
        .tcp(40_000, SYN | ACK)
        .build()
}

/// The host's bare RST on a connection it opened (`open_v4`).
fn reset_opened_v4(local_port: u16) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, peer_v4())
        .src_port(local_port)
        .tcp(443, RST)
        .build()
}

/// The host's bare RST on a connection it accepted (`accept_v4`).
fn reset_accepted_v4(local_port: u16) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, peer_v4())
        .src_port(local_port)
        .tcp(40_000, RST)
        .build()
}

#[test]
fn resets_of_connections_the_host_opened_are_not_ack_scan() {
    // A client closed 30 pooled connections to one server while the server still sent: each
    // late segment is answered with a bare RST on the connection's own 4-tuple.
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    for port in 0..30u16 {
        egress(&mut h, &open_v4(50_000 + port));
    }
    for port in 0..30u16 {
        egress(&mut h, &reset_opened_v4(50_000 + port));
    }
    assert!(h.events().is_empty(), "{:?}", h.events());
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(h.counter(Counter::OwnConnectionResets).unwrap(), 30);
}

#[test]
fn resets_of_connections_the_host_accepted_are_not_ack_scan() {
    // A client of 30 of this host's services whose connections the servers closed while it
    // still sent.
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    for port in 0..30u16 {
        egress(&mut h, &accept_v4(8_000 + port));
    }
    for port in 0..30u16 {
        egress(&mut h, &reset_accepted_v4(8_000 + port));
    }
    assert!(h.events().is_empty(), "{:?}", h.events());
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(h.counter(Counter::OwnConnectionResets).unwrap(), 30);
}

#[test]
fn resets_to_bare_acks_still_raise_ack_scan_beside_own_connections() {
    let mut h = load_with(&config(FLAG_NO_ADMISSION));
    // The host's own connections with a peer, reset after their close...
    for port in 0..30u16 {
        egress(&mut h, &open_v4(50_000 + port));
        egress(&mut h, &reset_opened_v4(50_000 + port));
    }
    // ... and with the scanner itself (it connected to port 22 from its port 51000).
    egress(
        &mut h,
        &PacketBuilder::new(TARGET_V4, SCANNER_V4)
            .src_port(22)
            .tcp(51_000, SYN | ACK)
            .build(),
    );
    egress(&mut h, &reset_v4(22, RST));
    // The scanner's ACKs to 14 ports of no connection.
    for port in 1..=14u16 {
        egress(&mut h, &reset_v4(1_000 + port, RST));
    }
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, DetectionKind::AckScan as u32);
    assert_eq!(events[0].source, key_of(SCANNER_V4));
    assert_eq!(state_of(&h, &key_of(SCANNER_V4)).ack_ports.bits_set(), 14);
    assert!(h.tracked(&key_of(peer_v4())).unwrap().is_none());
    assert_eq!(h.counter(Counter::OwnConnectionResets).unwrap(), 31);
}

#[test]
fn resets_after_the_flow_timeout_count_again() {
    let mut c = config(FLAG_NO_ADMISSION);
    let mut h = load_with(&c);
    for port in 0..10u16 {
        egress(&mut h, &open_v4(50_000 + port));
        egress(&mut h, &accept_v4(8_000 + port));
    }
    // Within the flow timeout: the host's own connections.
    c.clock_override_ns = T0 + c.flow_timeout() - SECOND;
    h.set_config(&c).unwrap();
    for port in 0..10u16 {
        egress(&mut h, &reset_opened_v4(50_000 + port));
        egress(&mut h, &reset_accepted_v4(8_000 + port));
    }
    assert!(h.events().is_empty(), "within the flow timeout");
    assert_eq!(h.counter(Counter::OwnConnectionResets).unwrap(), 20);
    // Past it, the connections are forgotten: their resets are evidence again.
    c.clock_override_ns = T0 + c.flow_timeout() + SECOND;
    h.set_config(&c).unwrap();
    for port in 0..10u16 {
        egress(&mut h, &reset_opened_v4(50_000 + port));
        egress(&mut h, &reset_accepted_v4(8_000 + port));
    }
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, DetectionKind::AckScan as u32);
    assert_eq!(events[0].source, key_of(peer_v4()));
    // 20 ports in the estimator's bits (two collide under the default seed).
    assert!(state_of(&h, &key_of(peer_v4())).ack_ports.bits_set() >= 10);
    assert_eq!(h.counter(Counter::OwnConnectionResets).unwrap(), 20);
}
