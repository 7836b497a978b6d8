//! Tracking: the admission filter and the per-source keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_IPV6, KernelConfig},
    event::DetectionKind,
    stats::Counter,
};
use scanwatch_tests::packet::PacketBuilder;

use crate::{
    SCANNER_V4, SCANNER_V6, T0, TARGET_V4, TARGET_V6, assert_class, doc_v4, key_of, load,
    load_with, no_admission, scan_v4, scan_v6, send, state_of,
};

#[test]
fn first_probe_is_deferred_by_admission_filter() {
    let mut h = load();
    send(&mut h, scan_v4().syn(22));
    assert!(h.tracked(&key_of(SCANNER_V4)).unwrap().is_none());
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(h.counter(Counter::AdmissionDeferred).unwrap(), 1);
    assert_eq!(h.counter(Counter::Admitted).unwrap(), 0);
    assert_eq!(h.counter(Counter::TrackerInserts).unwrap(), 0);
}

#[test]
fn second_probe_admits_source() {
    let config = KernelConfig {
        clock_override_ns: T0,
        ..KernelConfig::default()
    };
    let mut h = load_with(&config);
    for (src, dst) in [
        (IpAddr::from(SCANNER_V4), IpAddr::from(TARGET_V4)),
        (SCANNER_V6.into(), TARGET_V6.into()),
    ] {
        send(&mut h, PacketBuilder::new(src, dst).syn(22));
        send(&mut h, PacketBuilder::new(src, dst).syn(23));
        send(&mut h, PacketBuilder::new(src, dst).udp(53));
        let state = state_of(&h, &key_of(src));
        // The deferred first probe is not counted.
        assert_eq!(state.probes[PacketClass::TcpSyn as usize], 1);
        assert_eq!(state.probes[PacketClass::Udp as usize], 1);
        assert_eq!(state.lifetime_probes, 2);
        assert_eq!(state.measures[DetectionKind::PortScan as usize], 1);
        assert_eq!(state.first_seen_ns, T0);
        assert_eq!(state.window_start_ns, T0);
        assert_eq!(state.last_seen_ns, T0);
    }
    assert_eq!(h.tracked_count().unwrap(), 2);
    assert_eq!(h.counter(Counter::AdmissionDeferred).unwrap(), 2);
    assert_eq!(h.counter(Counter::Admitted).unwrap(), 2);
    assert_eq!(h.counter(Counter::TrackerInserts).unwrap(), 2);
    assert_eq!(h.counter(Counter::TrackerUpdateFailures).unwrap(), 0);
}

#[test]
fn admission_filter_is_per_source() {
    // One probe each from many sources admits none of them.
    let mut h = load();
    for i in 0..200 {
        send(&mut h, PacketBuilder::new(doc_v4(i), TARGET_V4).syn(22));
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(h.counter(Counter::AdmissionDeferred).unwrap(), 200);
    assert_eq!(h.counter(Counter::Admitted).unwrap(), 0);
}

#[test]
fn no_admission_flag_tracks_from_first_probe() {
    let mut h = load_with(&no_admission());
    send(&mut h, scan_v4().syn(22));
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 1);
    assert_eq!(state.lifetime_probes, 1);
    assert_eq!(h.counter(Counter::TrackerInserts).unwrap(), 1);
    assert_eq!(h.counter(Counter::AdmissionDeferred).unwrap(), 0);
    assert_eq!(h.counter(Counter::Admitted).unwrap(), 0);
}

#[test]
fn ipv6_sources_in_one_64_share_a_key() {
    let mut h = load_with(&no_admission());
    let a = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 1, 2, 3, 4);
    let b = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0xffff, 0, 0, 0x99);
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x65, 1, 2, 3, 4);
    send(&mut h, PacketBuilder::new(a, TARGET_V6).syn(22));
    send(&mut h, PacketBuilder::new(b, TARGET_V6).syn(23));
    let shared = SourceKey {
        addr: Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0, 0, 0, 0).octets(),
    };
    assert_eq!(h.tracked_keys().unwrap(), vec![shared]);
    let state = state_of(&h, &shared);
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 2);
    assert_eq!(state.tcp_ports.bits_set(), 2);
    send(&mut h, PacketBuilder::new(other, TARGET_V6).syn(22));
    assert_eq!(
        h.tracked_count().unwrap(),
        2,
        "the next /64 is another source"
    );
}

#[test]
fn ipv6_rotation_inside_a_64_passes_the_admission_filter() {
    // A scanner that rotates its address inside its /64 is still one source to the filter.
    let mut h = load();
    let a = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0, 0, 0, 1);
    let b = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0, 0, 0, 2);
    send(&mut h, PacketBuilder::new(a, TARGET_V6).syn(22));
    send(&mut h, PacketBuilder::new(b, TARGET_V6).syn(23));
    assert_eq!(h.counter(Counter::Admitted).unwrap(), 1);
    assert!(h.tracked(&key_of(a)).unwrap().is_some());
}

#[test]
fn ipv6_prefix_len_change_applies_without_reload() {
    let mut config = no_admission();
    let mut h = load_with(&config);
    let a = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0, 0, 0, 0xa);
    let b = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x64, 0, 0, 0, 0xb);
    send(&mut h, PacketBuilder::new(a, TARGET_V6).syn(22));
    send(&mut h, PacketBuilder::new(b, TARGET_V6).syn(22));
    assert_eq!(h.tracked_count().unwrap(), 1);

    config.ipv6_prefix_len = 128;
    h.set_config(&config).unwrap();
    send(&mut h, PacketBuilder::new(a, TARGET_V6).syn(22));
    send(&mut h, PacketBuilder::new(b, TARGET_V6).syn(22));
    let mut keys = h.tracked_keys().unwrap();
    keys.sort_by_key(|k| k.addr);
    let mut expected = vec![
        key_of(a),
        SourceKey { addr: a.octets() },
        SourceKey { addr: b.octets() },
    ];
    expected.sort_by_key(|k| k.addr);
    assert_eq!(keys, expected, "/128 keys are whole addresses");

    config.ipv6_prefix_len = 48;
    h.set_config(&config).unwrap();
    let c = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0x99, 0, 0, 0, 1);
    send(&mut h, PacketBuilder::new(c, TARGET_V6).syn(22));
    let slash48 = SourceKey::from_ipv6(c.octets(), 48);
    assert_eq!(state_of(&h, &slash48).lifetime_probes, 1);
}

#[test]
fn ipv4_sources_are_tracked_per_address() {
    let mut h = load_with(&no_admission());
    for last in 1..=5 {
        let src = Ipv4Addr::new(192, 0, 2, last);
        send(&mut h, PacketBuilder::new(src, TARGET_V4).syn(22));
    }
    assert_eq!(h.tracked_count().unwrap(), 5);
    for key in h.tracked_keys().unwrap() {
        assert!(key.is_ipv4(), "IPv4 keys are v4-mapped");
        assert_eq!(state_of(&h, &key).lifetime_probes, 1);
    }
}

#[test]
fn no_ipv6_flag_leaves_ipv6_sources_untracked() {
    let mut h = load_with(&KernelConfig {
        flags: FLAG_NO_ADMISSION | FLAG_NO_IPV6,
        ..KernelConfig::default()
    });
    let v6 = scan_v6().syn(22).build();
    assert_class(&mut h, &v6, PacketClass::TcpSyn, "still classified");
    send(&mut h, scan_v4().syn(22));
    assert_eq!(h.tracked_keys().unwrap(), vec![key_of(SCANNER_V4)]);
}
