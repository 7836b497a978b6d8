//! Distinct-count estimates held to their error bound against exact counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    classify::PacketClass,
    distinct::{error_bound, estimate},
    event::DetectionKind,
    state::SourceState,
};
use scanwatch_tests::packet::{
    PacketBuilder,
    tcp_flags::{ACK, FIN, PSH, URG},
};

use crate::{
    SCANNER_V4, SEEDS, TARGET_V4, TARGET_V6, doc_v4, doc_v6_target, key_of, load_with,
    no_admission, scan_v4, send, state_of,
};

/// Checks that `kind`'s measure in `state` estimates `n` within the documented bound, and that
/// it equals the bits set in the estimator's bitmap.
fn assert_estimate(state: &SourceState, kind: DetectionKind, bits_set: u32, n: u32, seed: u64) {
    let bits = SourceState::estimator_bits(kind).expect("a distinct-count kind");
    let measure = state.measures[kind as usize];
    assert_eq!(
        measure, bits_set,
        "{kind:?}: measure is the bitmap's bits set"
    );
    let est = estimate(measure, bits);
    let bound = error_bound(n, bits);
    let err = (est - f64::from(n)).abs();
    assert!(
        err <= bound,
        "{kind:?} seed {seed:#x}: n={n} bits={bits} set={measure} est={est:.1} err={err:.1} \
         bound={bound:.1}"
    );
}

/// For each seed and N in 1, 10, 100, 1000: sends N probes built by `probe(i)` from a fresh
/// source (one per seed and N) and checks `kind`'s estimate.
fn check_estimates(
    kind: DetectionKind,
    v6_source: bool,
    probe: impl Fn(IpAddr, u32) -> PacketBuilder,
    bitmap_bits: impl Fn(&SourceState) -> u32,
) {
    let mut config = no_admission();
    let mut h = load_with(&config);
    let mut source = 0u32;
    for seed in SEEDS {
        config.hash_seed = seed;
        h.set_config(&config).unwrap();
        for n in [1, 10, 100, 1000] {
            source += 1;
            let src: IpAddr = if v6_source {
                Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, source as u16, 0, 0, 0, 1).into()
            } else {
                doc_v4(source).into()
            };
            for i in 0..n {
                send(&mut h, probe(src, i));
            }
            let state = state_of(&h, &key_of(src));
            assert_eq!(state.lifetime_probes, n);
            assert_estimate(&state, kind, bitmap_bits(&state), n, seed);
        }
    }
}

#[test]
fn estimates_distinct_tcp_ports_within_bound() {
    check_estimates(
        DetectionKind::PortScan,
        false,
        |src, i| PacketBuilder::new(src, IpAddr::from(TARGET_V4)).syn(1 + i as u16),
        |s| s.tcp_ports.bits_set(),
    );
}

#[test]
fn estimates_distinct_hosts_within_bound() {
    // 1000 distinct IPv4 documentation hosts do not exist: sweep IPv6 targets.
    check_estimates(
        DetectionKind::HostSweep,
        true,
        |src, i| PacketBuilder::new(src, IpAddr::from(doc_v6_target(i))).syn(80),
        |s| s.hosts.bits_set(),
    );
}

#[test]
fn estimates_distinct_ipv4_hosts_within_bound() {
    // The IPv4 counterpart, up to the 768 documentation addresses.
    let mut config = no_admission();
    let mut h = load_with(&config);
    for (s, seed) in SEEDS.into_iter().enumerate() {
        config.hash_seed = seed;
        h.set_config(&config).unwrap();
        let src = Ipv4Addr::new(192, 0, 2, 200 + s as u8);
        for i in 0..768 {
            send(&mut h, PacketBuilder::new(src, doc_v4(i)).syn(443));
        }
        let state = state_of(&h, &key_of(src));
        assert_estimate(
            &state,
            DetectionKind::HostSweep,
            state.hosts.bits_set(),
            768,
            seed,
        );
    }
}

#[test]
fn estimates_distinct_udp_ports_within_bound() {
    check_estimates(
        DetectionKind::UdpScan,
        false,
        |src, i| PacketBuilder::new(src, IpAddr::from(TARGET_V4)).udp(1 + i as u16),
        |s| s.udp_ports.bits_set(),
    );
}

#[test]
fn estimates_distinct_stealth_ports_within_bound() {
    let flags = [FIN, 0, FIN | PSH | URG, FIN | ACK];
    check_estimates(
        DetectionKind::StealthScan,
        true,
        |src, i| {
            PacketBuilder::new(src, IpAddr::from(TARGET_V6))
                .tcp(1 + i as u16, flags[i as usize % 4])
        },
        |s| s.stealth_ports.bits_set(),
    );
}

#[test]
fn estimates_distinct_icmp_hosts_within_bound() {
    check_estimates(
        DetectionKind::IcmpSweep,
        true,
        |src, i| PacketBuilder::new(src, IpAddr::from(doc_v6_target(i))).echo_request(),
        |s| s.icmp_hosts.bits_set(),
    );
}

#[test]
fn repeated_ports_are_counted_once() {
    let mut h = load_with(&no_admission());
    for _ in 0..5 {
        for port in [22, 80, 443] {
            send(&mut h, scan_v4().syn(port));
        }
    }
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 15);
    assert_eq!(state.measures[DetectionKind::PortScan as usize], 3);
    assert_eq!(state.measures[DetectionKind::HostSweep as usize], 1);
}
