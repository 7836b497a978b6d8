//! Drop mode's evidence of real addresses: remotes that answered our flows (`ANSWERED`),
//! remotes whose ACK completed our SYN-ACK (`VERIFIED`, with their hop count), and the hop
//! counts of each source's probes. Monitor mode keeps none of it.

use scanwatch_common::{
    config::{FLAG_DROP, FLAG_NO_ADMISSION, KernelConfig},
    event::DETECTION_KINDS,
    evidence::{ANSWER_REFRESH_NS, HOPS_UNKNOWN},
    stats::Counter,
};
use scanwatch_tests::packet::{
    PacketBuilder,
    tcp_flags::{ACK, ECE, PSH, SYN},
};

use crate::{SCANNER_V4, SCANNER_V6, SECOND, T0, TARGET_V4, TARGET_V6, key_of, load_with, send};

/// Drop mode, every source tracked from its first probe, the clock at `now`.
fn drop_mode(now: u64) -> KernelConfig {
    KernelConfig {
        flags: FLAG_DROP | FLAG_NO_ADMISSION,
        clock_override_ns: now,
        ..KernelConfig::default()
    }
}

/// Our ISN in the SYN-ACKs of these tests.
const ISN: u32 = 0x1234_5678;

/// The host (`TARGET_V4`, port 443) answers a client's SYN from port 40000 (egress).
fn syn_ack_v4(client: std::net::Ipv4Addr) -> Vec<u8> {
    PacketBuilder::new(TARGET_V4, client)
        .src_port(443)
        .tcp(40_000, SYN | ACK)
        .seq(ISN)
        .build()
}

/// The client's ACK to the host's port 443, arriving with `ttl` and ack number `ack`.
fn ack_v4(client: std::net::Ipv4Addr, ttl: u8, ack: u32) -> PacketBuilder {
    PacketBuilder::new(client, TARGET_V4)
        .src_port(40_000)
        .tcp(443, ACK)
        .ack(ack)
        .ttl(ttl)
}

#[test]
fn an_ack_completing_our_syn_ack_proves_the_source_and_its_hop_count() {
    let mut h = load_with(&drop_mode(T0));
    h.run_egress(&syn_ack_v4(SCANNER_V4)).unwrap();
    assert_eq!(h.counter(Counter::HandshakesNoted).unwrap(), 1);
    // Three hops from a Linux client: TTL 61.
    send(&mut h, ack_v4(SCANNER_V4, 61, ISN.wrapping_add(1)));
    let v = h.verified(&key_of(SCANNER_V4)).unwrap().expect("verified");
    assert_eq!((v.hops, v.verified_ns), (3, T0));
    assert_eq!(h.counter(Counter::HandshakesVerified).unwrap(), 1);
    // The handshake is consumed: the same ACK again verifies nothing more.
    send(&mut h, ack_v4(SCANNER_V4, 50, ISN.wrapping_add(1)));
    assert_eq!(h.counter(Counter::HandshakesVerified).unwrap(), 1);
    assert_eq!(h.verified(&key_of(SCANNER_V4)).unwrap().unwrap().hops, 3);
    // ECN bits on the ACK do not matter; IPv6 (hop limit, /64 key) works alike.
    let syn_ack = PacketBuilder::new(TARGET_V6, SCANNER_V6)
        .src_port(443)
        .tcp(40_000, SYN | ACK)
        .seq(7)
        .build();
    h.run_egress(&syn_ack).unwrap();
    send(
        &mut h,
        PacketBuilder::new(SCANNER_V6, TARGET_V6)
            .src_port(40_000)
            .tcp(443, ACK | ECE)
            .ack(8)
            .ttl(117),
    );
    assert_eq!(h.verified(&key_of(SCANNER_V6)).unwrap().unwrap().hops, 11);
}

#[test]
fn a_forger_cannot_complete_a_handshake_it_never_saw() {
    let mut h = load_with(&drop_mode(T0));
    h.run_egress(&syn_ack_v4(SCANNER_V4)).unwrap();
    let other = std::net::Ipv4Addr::new(203, 0, 113, 66);
    for forged in [
        // A wrong ack number (not our ISN + 1).
        ack_v4(SCANNER_V4, 57, ISN.wrapping_add(2)),
        ack_v4(SCANNER_V4, 57, ISN),
        // The right number from another port or another address.
        ack_v4(SCANNER_V4, 57, ISN.wrapping_add(1)).src_port(40_001),
        ack_v4(other, 57, ISN.wrapping_add(1)),
        // A data segment (not a bare ACK) is not checked.
        ack_v4(SCANNER_V4, 57, ISN.wrapping_add(1)).tcp(443, ACK | PSH),
        // The ack of 0 a zero hint slot holds.
        ack_v4(SCANNER_V4, 57, 0),
    ] {
        send(&mut h, forged);
    }
    assert_eq!(h.verified(&key_of(SCANNER_V4)).unwrap(), None);
    assert_eq!(h.verified(&key_of(other)).unwrap(), None);
    assert_eq!(h.counter(Counter::HandshakesVerified).unwrap(), 0);
    // The real ACK still completes it afterwards.
    send(&mut h, ack_v4(SCANNER_V4, 64, ISN.wrapping_add(1)));
    assert_eq!(h.verified(&key_of(SCANNER_V4)).unwrap().unwrap().hops, 0);
}

#[test]
fn answers_to_our_flows_mark_their_remote_and_nothing_else_does() {
    let resolver = std::net::Ipv4Addr::new(203, 0, 113, 53);
    let web = std::net::Ipv4Addr::new(203, 0, 113, 80);
    let router = std::net::Ipv4Addr::new(203, 0, 113, 1);
    let mut h = load_with(&drop_mode(T0));
    let query = PacketBuilder::new(TARGET_V4, resolver)
        .src_port(33_000)
        .udp(53);
    h.run_egress(&query.build()).unwrap();
    let syn = PacketBuilder::new(TARGET_V4, web).src_port(41_000).syn(443);
    h.run_egress(&syn.build()).unwrap();
    // An ICMP error about our query, from a router: no evidence about anyone.
    send(
        &mut h,
        PacketBuilder::new(router, TARGET_V4).icmp_error_quoting(3, 3, &query),
    );
    // Datagrams and SYN-ACKs that match no flow of ours: no evidence either.
    send(
        &mut h,
        PacketBuilder::new(resolver, TARGET_V4)
            .src_port(53)
            .udp(33_001),
    );
    send(
        &mut h,
        PacketBuilder::new(web, TARGET_V4)
            .src_port(443)
            .tcp(41_001, SYN | ACK),
    );
    assert_eq!(h.answered(&key_of(router)).unwrap(), None);
    assert_eq!(h.answered(&key_of(resolver)).unwrap(), None);
    assert_eq!(h.answered(&key_of(web)).unwrap(), None);
    // The answers.
    let answer = PacketBuilder::new(resolver, TARGET_V4)
        .src_port(53)
        .udp(33_000);
    send(&mut h, answer.clone());
    send(
        &mut h,
        PacketBuilder::new(web, TARGET_V4)
            .src_port(443)
            .tcp(41_000, SYN | ACK),
    );
    assert_eq!(h.answered(&key_of(resolver)).unwrap(), Some(T0));
    assert_eq!(h.answered(&key_of(web)).unwrap(), Some(T0));
    // Refreshed at most once a second.
    h.set_config(&drop_mode(T0 + ANSWER_REFRESH_NS / 2))
        .unwrap();
    send(&mut h, answer.clone());
    assert_eq!(h.answered(&key_of(resolver)).unwrap(), Some(T0));
    h.set_config(&drop_mode(T0 + 2 * SECOND)).unwrap();
    send(&mut h, answer);
    assert_eq!(
        h.answered(&key_of(resolver)).unwrap(),
        Some(T0 + 2 * SECOND)
    );
}

#[test]
fn monitor_mode_keeps_no_evidence() {
    let resolver = std::net::Ipv4Addr::new(203, 0, 113, 53);
    let mut h = load_with(&KernelConfig {
        flags: FLAG_NO_ADMISSION,
        clock_override_ns: T0,
        ..KernelConfig::default()
    });
    h.run_egress(&syn_ack_v4(SCANNER_V4)).unwrap();
    send(&mut h, ack_v4(SCANNER_V4, 61, ISN.wrapping_add(1)));
    let query = PacketBuilder::new(TARGET_V4, resolver)
        .src_port(33_000)
        .udp(53);
    h.run_egress(&query.build()).unwrap();
    send(
        &mut h,
        PacketBuilder::new(resolver, TARGET_V4)
            .src_port(53)
            .udp(33_000),
    );
    for p in 1..=3 {
        send(
            &mut h,
            PacketBuilder::new(SCANNER_V4, TARGET_V4).syn(p).ttl(57),
        );
    }
    assert_eq!(h.counter(Counter::HandshakesNoted).unwrap(), 0);
    assert_eq!(h.verified(&key_of(SCANNER_V4)).unwrap(), None);
    assert_eq!(h.answered(&key_of(resolver)).unwrap(), None);
    let s = h.tracked(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert_eq!((s.min_hops, s.max_hops), (HOPS_UNKNOWN, HOPS_UNKNOWN));
}

#[test]
fn probes_carry_their_hop_counts_into_state_and_events() {
    let mut config = drop_mode(T0);
    config.thresholds = [0; DETECTION_KINDS];
    config.thresholds[0] = 3;
    let mut h = load_with(&config);
    for (port, ttl) in [(1, 57), (2, 61), (3, 59)] {
        send(
            &mut h,
            PacketBuilder::new(SCANNER_V4, TARGET_V4).syn(port).ttl(ttl),
        );
    }
    let s = h.tracked(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert_eq!((s.min_hops, s.max_hops), (3, 7));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].min_hops, events[0].max_hops), (3, 7));
    // A new window forgets the old hop counts.
    h.set_config(&KernelConfig {
        clock_override_ns: T0 + 400 * SECOND,
        ..config
    })
    .unwrap();
    send(
        &mut h,
        PacketBuilder::new(SCANNER_V4, TARGET_V4).syn(9).ttl(120),
    );
    let s = h.tracked(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert_eq!((s.min_hops, s.max_hops), (8, 8));
}
