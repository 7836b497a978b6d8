//! Classification: each probe class, and the traffic that is no probe.

use std::net::IpAddr;

use scanwatch_common::classify::PacketClass;
use scanwatch_tests::packet::{
    PacketBuilder, ethernet_frame,
    tcp_flags::{ACK, FIN, PSH, RST, SYN, URG},
};

use crate::{
    SCANNER_V4, SCANNER_V6, TARGET_V4, TARGET_V6, assert_class, key_of, load, load_with,
    no_admission, scan_v4, scan_v6, state_of, tracking_counters,
};

/// Probes of one IP version, each with the class it must land in.
fn probe_cases(src: IpAddr, dst: IpAddr) -> Vec<(&'static str, PacketBuilder, PacketClass)> {
    let p = || PacketBuilder::new(src, dst);
    let mut cases = vec![
        ("SYN", p().syn(22), PacketClass::TcpSyn),
        ("SYN|ECE|CWR", p().tcp(22, SYN | 0xc0), PacketClass::TcpSyn),
        ("FIN", p().tcp(23, FIN), PacketClass::TcpFin),
        ("NULL", p().tcp(24, 0), PacketClass::TcpNull),
        ("Xmas", p().tcp(25, FIN | PSH | URG), PacketClass::TcpXmas),
        ("Maimon", p().tcp(26, FIN | ACK), PacketClass::TcpMaimon),
        ("UDP", p().udp(53), PacketClass::Udp),
        ("echo request", p().echo_request(), PacketClass::IcmpEcho),
    ];
    if src.is_ipv4() {
        cases.extend([
            (
                "timestamp request",
                p().icmp(13, 0),
                PacketClass::IcmpTimestamp,
            ),
            (
                "information request",
                p().icmp(15, 0),
                PacketClass::IcmpTimestamp,
            ),
            (
                "address mask request",
                p().icmp(17, 0),
                PacketClass::IcmpAddrMask,
            ),
        ]);
    }
    cases
}

/// Sends every probe of `probe_cases` from one source and checks class counters, verdicts
/// and the per-class probe counts of the source's state.
fn check_probe_classes(src: IpAddr, dst: IpAddr) {
    let mut h = load_with(&no_admission());
    let cases = probe_cases(src, dst);
    for (what, builder, class) in &cases {
        assert!(class.is_probe());
        assert_class(&mut h, &builder.build(), *class, what);
    }
    let state = state_of(&h, &key_of(src));
    for class in PacketClass::ALL.iter().filter(|c| c.is_probe()) {
        let sent = cases.iter().filter(|(_, _, c)| c == class).count() as u32;
        assert_eq!(
            state.probes[*class as usize],
            sent,
            "probes counted as {}",
            class.name()
        );
    }
    assert_eq!(state.lifetime_probes, cases.len() as u32);
}

#[test]
fn classifies_ipv4_probes() {
    check_probe_classes(SCANNER_V4.into(), TARGET_V4.into());
}

#[test]
fn classifies_ipv6_probes() {
    check_probe_classes(SCANNER_V6.into(), TARGET_V6.into());
}

#[test]
fn icmpv6_has_no_timestamp_or_address_mask_probes() {
    // Types 13 and 17 mean nothing in ICMPv6 (RFC 4443): they are not probes there.
    let mut h = load_with(&no_admission());
    for t in [13, 17] {
        let f = scan_v6().icmp(t, 0).build();
        assert_class(&mut h, &f, PacketClass::IcmpOther, "ICMPv6 type 13/17");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn established_ack_takes_fast_path_without_state() {
    let acks = |src: IpAddr, dst: IpAddr| {
        [ACK, ACK | PSH, ACK | URG, ACK | PSH | 0xc0]
            .map(|flags| PacketBuilder::new(src, dst).tcp(443, flags).build())
    };
    // Default config: an ACK sent twice would be admitted if it were a probe.
    let mut h = load();
    for src_dst in [
        (SCANNER_V4.into(), TARGET_V4.into()),
        (SCANNER_V6.into(), TARGET_V6.into()),
    ] {
        for f in acks(src_dst.0, src_dst.1) {
            assert_class(&mut h, &f, PacketClass::TcpEstablished, "ACK");
            assert_class(&mut h, &f, PacketClass::TcpEstablished, "ACK again");
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3], "admission/insert counters");

    // Without the admission filter: still no state, no insert.
    let mut h = load_with(&no_admission());
    for f in acks(SCANNER_V4.into(), TARGET_V4.into())
        .into_iter()
        .chain(acks(SCANNER_V6.into(), TARGET_V6.into()))
    {
        assert_class(&mut h, &f, PacketClass::TcpEstablished, "ACK");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3], "admission/insert counters");
}

#[test]
fn syn_ack_and_rst_are_tcp_other_without_state() {
    let mut h = load_with(&no_admission());
    for (src, dst) in [
        (IpAddr::from(SCANNER_V4), IpAddr::from(TARGET_V4)),
        (SCANNER_V6.into(), TARGET_V6.into()),
    ] {
        for (what, flags) in [
            ("SYN-ACK", SYN | ACK),
            ("RST", RST),
            ("RST-ACK", RST | ACK),
            ("FIN-PSH-ACK", FIN | PSH | ACK),
        ] {
            let f = PacketBuilder::new(src, dst).tcp(80, flags).build();
            assert_class(&mut h, &f, PacketClass::TcpOther, what);
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
}

#[test]
fn icmp_replies_and_errors_are_icmp_other_without_state() {
    let mut h = load_with(&no_admission());
    let v4 = |t, c| scan_v4().icmp(t, c).build();
    let v6 = |t, c| scan_v6().icmp(t, c).build();
    for (what, f) in [
        ("echo reply", v4(0, 0)),
        ("port unreachable", v4(3, 3)),
        ("time exceeded", v4(11, 0)),
        ("timestamp reply", v4(14, 0)),
        ("ICMPv6 destination unreachable", v6(1, 4)),
        ("ICMPv6 time exceeded", v6(3, 0)),
        ("ICMPv6 echo reply", v6(129, 0)),
        ("ICMPv6 neighbour solicitation", v6(135, 0)),
    ] {
        assert_class(&mut h, &f, PacketClass::IcmpOther, what);
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
}

#[test]
fn non_ip_frames_are_counted_and_passed() {
    let mut h = load_with(&no_admission());
    // ARP request (RFC 826): Ethernet/IPv4, who-has 198.51.100.1 tell 192.0.2.10.
    let mut arp = vec![0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x02];
    arp.extend_from_slice(&SCANNER_V4.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&TARGET_V4.octets());
    assert_class(
        &mut h,
        &ethernet_frame(0x0806, &arp),
        PacketClass::NonIp,
        "ARP",
    );
    assert_class(
        &mut h,
        &ethernet_frame(0x88cc, &[0; 32]),
        PacketClass::NonIp,
        "LLDP",
    );
    // An Ethernet header with nothing after it is a complete non-IP frame.
    assert_class(
        &mut h,
        &ethernet_frame(0x0806, &[]),
        PacketClass::NonIp,
        "bare",
    );
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn other_ip_protocols_are_protocol_probes() {
    let mut h = load_with(&no_admission());
    // SCTP is parsed by its chunks (tests/kernel/protocols.rs): a bare common header is none.
    assert_class(
        &mut h,
        &scan_v4().raw(132, vec![0; 12]).build(),
        PacketClass::OtherL4,
        "SCTP common header only",
    );
    assert_eq!(h.tracked_count().unwrap(), 0);
    for (what, f) in [
        (
            "GRE over IPv4",
            scan_v4().raw(47, vec![0, 0, 0x08, 0]).build(),
        ),
        ("ESP over IPv4", scan_v4().raw(50, vec![0; 16]).build()),
        (
            "GRE over IPv6",
            scan_v6().raw(47, vec![0, 0, 0x86, 0xdd]).build(),
        ),
        ("ESP over IPv6", scan_v6().raw(50, vec![0; 16]).build()),
        // Each ICMP is only ICMP under its own IP version.
        (
            "ICMPv6 number over IPv4",
            scan_v4().raw(58, vec![128, 0, 0, 0]).build(),
        ),
        (
            "ICMPv4 number over IPv6",
            scan_v6().raw(1, vec![8, 0, 0, 0]).build(),
        ),
        // No next header at all.
        ("IPv6 no next header", scan_v6().raw(59, vec![]).build()),
    ] {
        assert_class(&mut h, &f, PacketClass::IpProtocol, what);
    }
    // Counted per source: one IPv4 and one IPv6 scanner.
    assert_eq!(h.tracked_count().unwrap(), 2);
}
