//! The ignore list: listed sources are never tracked.

use std::net::{Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    addr::SourceKey, classify::PacketClass, config::KernelConfig, stats::Counter,
};
use scanwatch_tests::packet::{PacketBuilder, tcp_flags::ACK};

use crate::{
    SCANNER_V4, TARGET_V4, TARGET_V6, assert_class, key_of, load, load_with, no_admission, scan_v4,
    send, tracking_counters,
};

/// A v4-mapped ignore-list address for an IPv4 prefix.
fn v4_mapped(a: Ipv4Addr) -> [u8; 16] {
    SourceKey::from_ipv4(a.octets()).addr
}

#[test]
fn ignored_ipv4_prefix_is_never_tracked() {
    let mut config = no_admission();
    let mut h = load_with(&config);
    h.ignore(v4_mapped(Ipv4Addr::new(192, 0, 2, 0)), 96 + 24, &mut config)
        .unwrap();
    for last in [0, 1, 77, 255] {
        let inside = Ipv4Addr::new(192, 0, 2, last);
        for port in [22, 23] {
            let f = PacketBuilder::new(inside, TARGET_V4).syn(port).build();
            assert_class(&mut h, &f, PacketClass::TcpSyn, "ignored but classified");
        }
        assert!(h.tracked(&key_of(inside)).unwrap().is_none());
    }
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 8);
    let outside = Ipv4Addr::new(198, 51, 100, 77);
    send(&mut h, PacketBuilder::new(outside, TARGET_V4).syn(22));
    assert_eq!(h.tracked_keys().unwrap(), vec![key_of(outside)]);
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 8);
}

#[test]
fn ignored_ipv6_prefix_is_never_tracked() {
    let mut config = no_admission();
    let mut h = load_with(&config);
    let net = Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 0);
    h.ignore(net.octets(), 48, &mut config).unwrap();
    for inside in [
        Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0xaaaa, 0xffff, 1, 2, 3, 4),
    ] {
        send(&mut h, PacketBuilder::new(inside, TARGET_V6).syn(22));
        send(&mut h, PacketBuilder::new(inside, TARGET_V6).udp(53));
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 4);
    let outside = Ipv6Addr::new(0x2001, 0xdb8, 0xaaab, 0, 0, 0, 0, 1);
    send(&mut h, PacketBuilder::new(outside, TARGET_V6).syn(22));
    assert_eq!(h.tracked_keys().unwrap(), vec![key_of(outside)]);
}

#[test]
fn ignored_source_skips_the_admission_filter() {
    // An ignored source costs a trie lookup, not an admission-filter slot.
    let mut config = KernelConfig::default();
    let mut h = load();
    h.ignore(v4_mapped(SCANNER_V4), 128, &mut config).unwrap();
    for port in 1..=3 {
        send(&mut h, scan_v4().syn(port));
    }
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 3);
    assert_eq!(tracking_counters(&h), [0; 3]);
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn ignore_list_applies_to_probes_only() {
    let mut config = no_admission();
    let mut h = load_with(&config);
    h.ignore(v4_mapped(Ipv4Addr::new(192, 0, 2, 0)), 120, &mut config)
        .unwrap();
    let ack = scan_v4().tcp(80, ACK).build();
    assert_class(&mut h, &ack, PacketClass::TcpEstablished, "ACK");
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 0, "fast path first");
}

#[test]
fn ignore_list_is_skipped_while_config_counts_no_entries() {
    // The program trusts `ignore_entries`: with 0 it never looks at the trie.
    let mut config = no_admission();
    let mut h = load_with(&config);
    h.ignore(v4_mapped(SCANNER_V4), 128, &mut config).unwrap();
    config.ignore_entries = 0;
    h.set_config(&config).unwrap();
    send(&mut h, scan_v4().syn(22));
    assert!(h.tracked(&key_of(SCANNER_V4)).unwrap().is_some());
    assert_eq!(h.counter(Counter::Ignored).unwrap(), 0);
}
