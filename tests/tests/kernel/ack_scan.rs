//! ACK and window scans (nmap -sA, -sW): the ACKs take the established fast path at XDP; the
//! bare RSTs the host answers them with are seen by the TC egress program and counted per
//! remote (the scanner) by distinct local port, in the remote's ingress state.

use scanwatch_common::{
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, KernelConfig},
    event::{DIRECTION_INGRESS, DetectionKind},
};
use scanwatch_tests::packet::{
    PacketBuilder,
    tcp_flags::{ACK, RST},
};

use crate::{
    SCANNER_V4, SCANNER_V6, T0, TARGET_V4, TARGET_V6, assert_class, key_of, load_with, state_of,
    tracking_counters,
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
