//! Encapsulation: VLAN tags, IPv4 options, IPv6 extension headers, fragments, padding.

use std::net::IpAddr;

use scanwatch_common::{classify::PacketClass, event::DetectionKind, stats::ParseError};
use scanwatch_tests::packet::{
    Ext, PacketBuilder,
    tcp_flags::{ACK, FIN},
};

use crate::{
    SCANNER_V4, SCANNER_V6, TARGET_V4, TARGET_V6, assert_class, assert_malformed, key_of, load,
    load_with, no_admission, scan_v4, scan_v6, state_of, tracking_counters,
};

/// Checks that a SYN, a UDP datagram and an echo request from `src` built by `wrap` classify as
/// if untagged, and that the source is tracked under its own key.
fn check_wrapped(src: IpAddr, dst: IpAddr, wrap: impl Fn(PacketBuilder) -> PacketBuilder) {
    let mut h = load_with(&no_admission());
    let p = || wrap(PacketBuilder::new(src, dst));
    assert_class(&mut h, &p().syn(80).build(), PacketClass::TcpSyn, "SYN");
    assert_class(&mut h, &p().udp(53).build(), PacketClass::Udp, "UDP");
    let echo = p().echo_request().build();
    assert_class(&mut h, &echo, PacketClass::IcmpEcho, "echo");
    let ack = p().tcp(80, ACK).build();
    assert_class(&mut h, &ack, PacketClass::TcpEstablished, "ACK");
    let state = state_of(&h, &key_of(src));
    assert_eq!(state.lifetime_probes, 3);
    assert_eq!(h.tracked_count().unwrap(), 1);
}

/// A packet from `SCANNER_V6` to `TARGET_V6` in a first fragment (offset 0; `more` fragments
/// follow, or none: an atomic fragment), the IPv6 fragment most of these tests send.
fn first_fragment_v6(more: bool) -> PacketBuilder {
    scan_v6().ext(Ext::Fragment { offset: 0, more })
}

#[test]
fn classifies_behind_single_vlan_tag() {
    check_wrapped(SCANNER_V4.into(), TARGET_V4.into(), |p| p.vlan(100));
    check_wrapped(SCANNER_V6.into(), TARGET_V6.into(), |p| p.vlan(100));
}

#[test]
fn classifies_behind_qinq_tags() {
    check_wrapped(SCANNER_V4.into(), TARGET_V4.into(), |p| p.vlan(10).vlan(20));
    check_wrapped(SCANNER_V6.into(), TARGET_V6.into(), |p| p.vlan(10).vlan(20));
}

#[test]
fn classifies_two_802_1q_tags() {
    // Some switches stack two 802.1Q tags instead of 802.1ad + 802.1Q.
    let mut h = load_with(&no_admission());
    let mut f = scan_v4().vlan(10).vlan(20).syn(80).build();
    f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
    assert_class(&mut h, &f, PacketClass::TcpSyn, "802.1Q in 802.1Q");
}

#[test]
fn frames_with_three_vlan_tags_are_not_parsed_as_ip() {
    // The parser follows at most two tags; a third leaves an 802.1Q ethertype, which is not IP.
    let mut h = load_with(&no_admission());
    let f = scan_v4().vlan(1).vlan(2).vlan(3).syn(80).build();
    assert_class(&mut h, &f, PacketClass::NonIp, "three tags");
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn classifies_ipv4_with_options() {
    let mut h = load_with(&no_admission());
    for words in [1, 3, 10] {
        let p = || scan_v4().ipv4_options(words);
        let syn = p().syn(1000 + words as u16).build();
        assert_eq!(syn[14] & 0x0f, 5 + words as u8, "IHL");
        assert_class(&mut h, &syn, PacketClass::TcpSyn, "SYN with options");
        assert_class(&mut h, &p().udp(53).build(), PacketClass::Udp, "UDP");
        let ping = p().echo_request().build();
        assert_class(&mut h, &ping, PacketClass::IcmpEcho, "echo with options");
    }
    // The destination port is read past the options: three distinct ports.
    let state = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(state.tcp_ports.bits_set(), 3);
}

#[test]
fn walks_ipv6_extension_headers_to_tcp() {
    let mut h = load_with(&no_admission());
    let p = || {
        scan_v6()
            .ext(Ext::HopByHop)
            .ext(Ext::Routing)
            .ext(Ext::DestOpts)
    };
    assert_class(&mut h, &p().syn(80).build(), PacketClass::TcpSyn, "SYN");
    assert_class(
        &mut h,
        &p().tcp(80, FIN).build(),
        PacketClass::TcpFin,
        "FIN",
    );
    assert_class(&mut h, &p().udp(53).build(), PacketClass::Udp, "UDP");
    let echo = p().echo_request().build();
    assert_class(&mut h, &echo, PacketClass::IcmpEcho, "echo");
    let state = state_of(&h, &key_of(SCANNER_V6));
    assert_eq!(state.lifetime_probes, 4);
}

#[test]
fn walks_eight_ipv6_extension_headers() {
    // Eight is the most the bounded walk follows (MAX_IPV6_EXT).
    let mut h = load_with(&no_admission());
    let mut p = scan_v6();
    for _ in 0..8 {
        p = p.ext(Ext::DestOpts);
    }
    assert_class(&mut h, &p.syn(80).build(), PacketClass::TcpSyn, "8 headers");
}

#[test]
fn walks_ipv6_authentication_header() {
    // AH (RFC 4302) counts its length in 4-byte words, minus 2: a 12-byte AH has length 1.
    let mut h = load_with(&no_admission());
    let plain = scan_v6().syn(8080);
    let tcp = &plain.build()[plain.l4_offset()..];
    let mut ah = vec![6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    ah.extend_from_slice(tcp);
    let f = scan_v6().raw(51, ah).build();
    assert_class(&mut h, &f, PacketClass::TcpSyn, "AH then TCP");
    let state = state_of(&h, &key_of(SCANNER_V6));
    assert_eq!(state.probes[PacketClass::TcpSyn as usize], 1);
}

#[test]
fn first_fragment_with_full_tcp_header_is_a_syn() {
    let mut h = load_with(&no_admission());
    let v4 = scan_v4().ipv4_fragment(0, true).syn(80).build();
    assert_class(&mut h, &v4, PacketClass::TcpSyn, "IPv4 first fragment");
    let v6 = first_fragment_v6(true).syn(80).build();
    assert_class(&mut h, &v6, PacketClass::TcpSyn, "IPv6 first fragment");
    // An atomic fragment (offset 0, no more fragments, RFC 6946) is a whole packet.
    let atomic = first_fragment_v6(false).syn(81).build();
    assert_class(&mut h, &atomic, PacketClass::TcpSyn, "IPv6 atomic fragment");
    assert_eq!(h.tracked_count().unwrap(), 2);
}

#[test]
fn tiny_first_fragment_is_a_fragment_probe() {
    let tiny_v4 = scan_v4().ipv4_fragment(0, true).syn(80).l4_len(8).build();
    let tiny_v6 = first_fragment_v6(true).syn(80).l4_len(8).build();
    let mut h = load();
    for (what, f, key) in [
        ("IPv4", &tiny_v4, key_of(SCANNER_V4)),
        ("IPv6", &tiny_v6, key_of(SCANNER_V6)),
    ] {
        // A probe like any other: the admission filter defers the first, admits the second.
        assert_class(&mut h, f, PacketClass::Fragment, what);
        assert!(h.tracked(&key).unwrap().is_none(), "{what}: first deferred");
        assert_class(&mut h, f, PacketClass::Fragment, what);
        let state = state_of(&h, &key);
        assert_eq!(state.probes[PacketClass::Fragment as usize], 1, "{what}");
        assert_eq!(
            state.measures[DetectionKind::FragmentScan as usize],
            1,
            "{what}: one datagram, one bit"
        );
    }
    // Tiny fragments of UDP and ICMP hide their headers too.
    let udp = scan_v4().ipv4_fragment(0, true).udp(53).l4_len(4).build();
    assert_class(&mut h, &udp, PacketClass::Fragment, "tiny UDP fragment");
    let icmp = first_fragment_v6(true).echo_request().l4_len(2).build();
    assert_class(&mut h, &icmp, PacketClass::Fragment, "tiny ICMPv6 fragment");
}

#[test]
fn non_first_fragments_are_not_probes() {
    let mut h = load_with(&no_admission());
    for more in [true, false] {
        let v4 = scan_v4()
            .ipv4_fragment(185, more)
            .raw(6, vec![0xab; 64])
            .build();
        assert_class(&mut h, &v4, PacketClass::NonFirstFragment, "IPv4");
        // Offset 1 (8 bytes): the smallest non-first fragment.
        let v4 = scan_v4().ipv4_fragment(1, more).syn(80).build();
        assert_class(&mut h, &v4, PacketClass::NonFirstFragment, "IPv4 offset 1");
        let v6 = scan_v6()
            .ext(Ext::Fragment { offset: 185, more })
            .syn(80)
            .build();
        assert_class(&mut h, &v6, PacketClass::NonFirstFragment, "IPv6");
        let v6 = scan_v6()
            .ext(Ext::HopByHop)
            .ext(Ext::Fragment { offset: 1, more })
            .syn(80)
            .build();
        assert_class(&mut h, &v6, PacketClass::NonFirstFragment, "IPv6 after HBH");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
}

#[test]
fn ethernet_padding_does_not_change_classification() {
    // Frames shorter than 60 bytes are padded on the wire; the parser goes by the IP lengths,
    // so a padded tiny fragment is still tiny and a padded truncated header still truncated.
    let mut h = load_with(&no_admission());
    let pad = |mut f: Vec<u8>| {
        f.resize(f.len().max(60) + 8, 0);
        f
    };
    let tiny_v4 = scan_v4().ipv4_fragment(0, true).syn(80).l4_len(8).build();
    assert_class(&mut h, &pad(tiny_v4), PacketClass::Fragment, "IPv4 tiny");
    let tiny_v6 = first_fragment_v6(true).syn(80).l4_len(8).build();
    assert_class(&mut h, &pad(tiny_v6), PacketClass::Fragment, "IPv6 tiny");
    let syn = pad(scan_v4().syn(80).build());
    assert_class(&mut h, &syn, PacketClass::TcpSyn, "padded SYN");
    let udp = pad(scan_v4().udp(53).l4_len(4).build());
    assert_malformed(&mut h, &udp, ParseError::UdpTruncated, "padded cut UDP");
}

#[test]
fn ipv6_zero_payload_length_is_read_to_the_end_of_the_frame() {
    // Payload length 0 announces a jumbogram (RFC 2675): the frame's end is the packet's.
    let mut h = load_with(&no_admission());
    let p = scan_v6().syn(80);
    let mut f = p.build();
    f[p.l3_offset() + 4..][..2].copy_from_slice(&[0, 0]);
    assert_class(&mut h, &f, PacketClass::TcpSyn, "jumbo SYN");
}
