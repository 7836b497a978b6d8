//! Kernel tests: the real scanwatch XDP object under `BPF_PROG_TEST_RUN`.
//!
//! Every test loads a fresh program (so fresh maps), feeds it frames built by `PacketBuilder`
//! and checks outcomes: the verdict, the statistics slots, the tracker's per-source state and
//! the events in the ring buffer. Packets use documentation addresses only (RFC 5737, RFC 3849)
//! and never leave the test run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Error;
use rand::Rng as _;
use scanwatch_common::{
    addr::{DEFAULT_IPV6_PREFIX_LEN, SourceKey},
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_EVENTS, FLAG_NO_IPV6, KernelConfig},
    distinct::{bits_for_count, error_bound, estimate},
    event::{DETECTION_KINDS, DetectionKind, ScanEvent},
    state::SourceState,
    stats::{
        COUNTER_BASE, Counter, PARSE_ERROR_BASE, PARSE_ERRORS, ParseError, class_slot,
        parse_error_slot,
    },
};
use scanwatch_tests::{
    harness::{Harness, Object, XDP_PASS},
    packet::{
        Ext, PacketBuilder, ethernet_frame,
        tcp_flags::{ACK, FIN, PSH, RST, SYN, URG},
    },
    require_root,
};

// ---------------------------------------------------------------------------------------------
// Addresses, keys and configurations
// ---------------------------------------------------------------------------------------------

/// The IPv4 scanner of most tests (TEST-NET-1).
const SCANNER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The IPv4 target of most tests (TEST-NET-2).
const TARGET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The IPv6 scanner of most tests (documentation prefix).
const SCANNER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0, 0, 0, 0, 0x10);
/// The IPv6 target of most tests.
const TARGET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x7a7, 0, 0, 0, 0, 1);

/// A clock value for tests that drive windows: far from zero, so `now - window` never wraps.
const T0: u64 = 1_000 * 1_000_000_000;
const SECOND: u64 = 1_000_000_000;

/// Hash seeds the estimator tests repeat with.
const SEEDS: [u64; 3] = [1, 0x5eed_5eed, 0xdead_beef_cafe_f00d];

/// The tracker key of `ip` under the default configuration.
fn key_of(ip: impl Into<IpAddr>) -> SourceKey {
    match ip.into() {
        IpAddr::V4(a) => SourceKey::from_ipv4(a.octets()),
        IpAddr::V6(a) => SourceKey::from_ipv6(a.octets(), DEFAULT_IPV6_PREFIX_LEN),
    }
}

/// An address of 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 by index (0..768).
fn doc_v4(i: u32) -> Ipv4Addr {
    let nets = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let [a, b, c] = nets[(i / 256) as usize];
    Ipv4Addr::new(a, b, c, (i % 256) as u8)
}

/// The `i`th host of 2001:db8:7a7::/48 (the IPv6 targets).
fn doc_v6_target(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x7a7, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// A packet from `SCANNER_V4` to `TARGET_V4` (a SYN to port 80 unless changed).
fn scan_v4() -> PacketBuilder {
    PacketBuilder::new(SCANNER_V4, TARGET_V4)
}

/// A packet from `SCANNER_V6` to `TARGET_V6` (a SYN to port 80 unless changed).
fn scan_v6() -> PacketBuilder {
    PacketBuilder::new(SCANNER_V6, TARGET_V6)
}

/// A configuration that tracks a source from its first probe, so counts are exact.
fn no_admission() -> KernelConfig {
    KernelConfig {
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    }
}

/// Fails the test unless running as root, then loads the product program.
fn load() -> Harness {
    require_root();
    Harness::load().expect("loading the scanwatch XDP program")
}

/// Loads the product program and writes `config`.
fn load_with(config: &KernelConfig) -> Harness {
    let mut h = load();
    h.set_config(config).unwrap();
    h
}

// ---------------------------------------------------------------------------------------------
// Running frames and checking what moved
// ---------------------------------------------------------------------------------------------

/// Runs `frame` once; returns the verdict and how much each statistics slot moved.
fn run_diff(h: &mut Harness, frame: &[u8]) -> (u32, Vec<u64>) {
    let before = h.stats().unwrap();
    let verdict = h.run(frame).unwrap();
    let after = h.stats().unwrap();
    let diff = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    (verdict, diff)
}

/// Runs `frame` and checks that it passed, was counted in `class` and nowhere else among the
/// classes, and raised no parse error.
fn assert_class(h: &mut Harness, frame: &[u8], class: PacketClass, what: &str) {
    let (verdict, diff) = run_diff(h, frame);
    assert_eq!(verdict, XDP_PASS, "{what}: verdict");
    for c in PacketClass::ALL {
        let expected = u64::from(c == class);
        assert_eq!(
            diff[class_slot(c) as usize],
            expected,
            "{what}: class {} moved by {} (expected the packet in {})",
            c.name(),
            diff[class_slot(c) as usize],
            class.name()
        );
    }
    let errors: u64 = diff[PARSE_ERROR_BASE as usize..][..PARSE_ERRORS]
        .iter()
        .sum();
    assert_eq!(errors, 0, "{what}: unexpected parse error");
}

/// Runs `frame` and checks that it passed, was counted as `Malformed` with exactly one parse
/// error, `reason`.
fn assert_malformed(h: &mut Harness, frame: &[u8], reason: ParseError, what: &str) {
    let (verdict, diff) = run_diff(h, frame);
    assert_eq!(verdict, XDP_PASS, "{what}: malformed frames must pass");
    for c in PacketClass::ALL {
        let expected = u64::from(c == PacketClass::Malformed);
        assert_eq!(
            diff[class_slot(c) as usize],
            expected,
            "{what}: class {} moved",
            c.name()
        );
    }
    for r in ParseError::ALL {
        let expected = u64::from(r == reason);
        assert_eq!(
            diff[parse_error_slot(r) as usize],
            expected,
            "{what}: parse error {} moved by {} (expected {})",
            r.name(),
            diff[parse_error_slot(r) as usize],
            reason.name()
        );
    }
}

/// Builds `packet` and sends it once, checking the verdict.
#[expect(
    clippy::needless_pass_by_value,
    reason = "callers build the packet inline; by value keeps every call site short"
)]
fn send(h: &mut Harness, packet: PacketBuilder) {
    pass(h, &packet.build());
}

/// Runs `frame` once and checks the verdict.
fn pass(h: &mut Harness, frame: &[u8]) {
    assert_eq!(h.run(frame).unwrap(), XDP_PASS);
}

/// The tracker's state for `key`; fails the test when the source is not tracked.
fn state_of(h: &Harness, key: &SourceKey) -> SourceState {
    h.tracked(key)
        .unwrap()
        .unwrap_or_else(|| panic!("source {:?} should be tracked", key.addr))
}

/// The admission-filter and insert counters, which must not move on the fast path.
fn tracking_counters(h: &Harness) -> [u64; 3] {
    [
        h.counter(Counter::AdmissionDeferred).unwrap(),
        h.counter(Counter::Admitted).unwrap(),
        h.counter(Counter::TrackerInserts).unwrap(),
    ]
}

/// The errno of a failed `BPF_PROG_TEST_RUN`, if the error carries one.
fn errno(err: &Error) -> Option<i32> {
    err.chain()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
}

// ---------------------------------------------------------------------------------------------
// Loading (the original smoke tests)
// ---------------------------------------------------------------------------------------------

#[test]
fn product_program_loads_and_passes_a_syn() {
    let mut h = load();
    let f = scan_v4().syn(80).build();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
}

#[test]
fn bench_programs_load_and_pass_a_syn() {
    require_root();
    let f = scan_v4().syn(80).build();
    let mut h = Harness::load_with(Object::Empty, None).unwrap();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
    let mut h = Harness::load_with(Object::SpoofBench, None).unwrap();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
    assert_eq!(h.class_count(PacketClass::TcpSyn).unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// 1. Classification
// ---------------------------------------------------------------------------------------------

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
fn other_ip_protocols_are_other_l4() {
    let mut h = load_with(&no_admission());
    for (what, f) in [
        (
            "GRE over IPv4",
            scan_v4().raw(47, vec![0, 0, 0x08, 0]).build(),
        ),
        ("ESP over IPv4", scan_v4().raw(50, vec![0; 16]).build()),
        ("SCTP over IPv4", scan_v4().raw(132, vec![0; 12]).build()),
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
        assert_class(&mut h, &f, PacketClass::OtherL4, what);
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. Encapsulation
// ---------------------------------------------------------------------------------------------

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
    let v6 = scan_v6()
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
        .syn(80)
        .build();
    assert_class(&mut h, &v6, PacketClass::TcpSyn, "IPv6 first fragment");
    // An atomic fragment (offset 0, no more fragments, RFC 6946) is a whole packet.
    let atomic = scan_v6()
        .ext(Ext::Fragment {
            offset: 0,
            more: false,
        })
        .syn(81)
        .build();
    assert_class(&mut h, &atomic, PacketClass::TcpSyn, "IPv6 atomic fragment");
    assert_eq!(h.tracked_count().unwrap(), 2);
}

#[test]
fn tiny_first_fragment_is_a_fragment_probe() {
    let tiny_v4 = scan_v4().ipv4_fragment(0, true).syn(80).l4_len(8).build();
    let tiny_v6 = scan_v6()
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
        .syn(80)
        .l4_len(8)
        .build();
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
            "{what}: fragment probes are counted, not estimated"
        );
    }
    // Tiny fragments of UDP and ICMP hide their headers too.
    let udp = scan_v4().ipv4_fragment(0, true).udp(53).l4_len(4).build();
    assert_class(&mut h, &udp, PacketClass::Fragment, "tiny UDP fragment");
    let icmp = scan_v6()
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
        .echo_request()
        .l4_len(2)
        .build();
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
    let tiny_v6 = scan_v6()
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
        .syn(80)
        .l4_len(8)
        .build();
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

// ---------------------------------------------------------------------------------------------
// 3. Malformed frames
// ---------------------------------------------------------------------------------------------

#[test]
fn kernel_rejects_frames_shorter_than_ethernet_header() {
    // BPF_PROG_TEST_RUN refuses data_in shorter than ETH_HLEN with EINVAL (bpf_test_init in
    // net/bpf/test_run.c), so the program never sees such a frame and `EthTruncated` cannot be
    // reached from a test run. The program still checks for it, as defence in depth.
    let mut h = load();
    let full = scan_v4().syn(80).build();
    for len in 0..14 {
        let err = h
            .run(&full[..len])
            .expect_err("a frame shorter than 14 bytes");
        assert_eq!(errno(&err), Some(libc::EINVAL), "{len} bytes: {err:#}");
    }
    assert_eq!(h.stats().unwrap().iter().sum::<u64>(), 0, "nothing counted");
    // 14 bytes is the shortest frame the kernel runs.
    assert_malformed(&mut h, &full[..14], ParseError::Ipv4Truncated, "14 bytes");
}

#[test]
fn truncated_vlan_tag_is_malformed() {
    let mut h = load();
    let single = scan_v4().vlan(7).build();
    for len in [14, 15, 17] {
        assert_malformed(&mut h, &single[..len], ParseError::VlanTruncated, "1 tag");
    }
    let qinq = scan_v6().vlan(7).vlan(8).build();
    for len in [18, 20, 21] {
        assert_malformed(&mut h, &qinq[..len], ParseError::VlanTruncated, "QinQ");
    }
}

#[test]
fn truncated_ipv4_header_is_malformed() {
    let mut h = load();
    let f = scan_v4().syn(80).build();
    for len in [14, 15, 24, 33] {
        assert_malformed(&mut h, &f[..len], ParseError::Ipv4Truncated, "cut IPv4");
    }
    let tagged = scan_v4().vlan(5).build();
    assert_malformed(&mut h, &tagged[..30], ParseError::Ipv4Truncated, "tagged");
}

#[test]
fn ipv4_header_length_below_five_words_is_malformed() {
    let mut h = load();
    for ihl in 0..5 {
        let mut f = scan_v4().syn(80).build();
        f[14] = 0x40 | ihl;
        assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "IHL < 5");
    }
}

#[test]
fn ipv4_header_length_beyond_packet_is_malformed() {
    let mut h = load();
    // IHL 15 (60 bytes) and a total length that agrees, in a 54-byte frame.
    let mut f = scan_v4().syn(80).build();
    f[14] = 0x4f;
    f[16..18].copy_from_slice(&60u16.to_be_bytes());
    assert_eq!(f.len(), 54);
    assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "IHL past end");
    // Options announced but the frame is cut inside them.
    let opts = scan_v4().ipv4_options(4).syn(80).build();
    assert_malformed(
        &mut h,
        &opts[..40],
        ParseError::Ipv4BadHeaderLength,
        "cut options",
    );
    // A total length shorter than the header.
    let mut f = scan_v4().syn(80).build();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "total < IHL");
}

#[test]
fn ip_version_disagreeing_with_ethertype_is_malformed() {
    let mut h = load();
    for version in [0, 5, 6, 15] {
        let mut f = scan_v4().syn(80).build();
        f[14] = (version << 4) | 5;
        assert_malformed(&mut h, &f, ParseError::BadIpVersion, "IPv4 ethertype");
    }
    for version in [0, 4, 7] {
        let mut f = scan_v6().syn(80).build();
        f[14] = version << 4;
        assert_malformed(&mut h, &f, ParseError::BadIpVersion, "IPv6 ethertype");
    }
}

#[test]
fn truncated_ipv6_header_is_malformed() {
    let mut h = load();
    let f = scan_v6().syn(80).build();
    for len in [14, 20, 44, 53] {
        assert_malformed(&mut h, &f[..len], ParseError::Ipv6Truncated, "cut IPv6");
    }
    let tagged = scan_v6().vlan(9).build();
    assert_malformed(&mut h, &tagged[..57], ParseError::Ipv6Truncated, "tagged");
}

#[test]
fn ipv6_extension_chain_too_long_is_malformed() {
    let mut h = load_with(&no_admission());
    for headers in [9, 12] {
        let mut p = scan_v6();
        for _ in 0..headers {
            p = p.ext(Ext::DestOpts);
        }
        let f = p.syn(80).build();
        assert_malformed(&mut h, &f, ParseError::Ipv6ExtChainTooLong, "9+ headers");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn truncated_ipv6_extension_header_is_malformed() {
    let mut h = load();
    let p = scan_v6()
        .ext(Ext::HopByHop)
        .ext(Ext::Fragment {
            offset: 0,
            more: false,
        })
        .syn(80);
    let f = p.build();
    let ip = p.l3_offset();
    // Cut inside the hop-by-hop header's first two bytes.
    assert_malformed(&mut h, &f[..ip + 41], ParseError::Ipv6ExtTruncated, "HBH");
    // Cut inside the hop-by-hop header's body (its length runs past the frame).
    assert_malformed(
        &mut h,
        &f[..ip + 44],
        ParseError::Ipv6ExtTruncated,
        "HBH body",
    );
    // Cut inside the fragment header.
    assert_malformed(
        &mut h,
        &f[..ip + 52],
        ParseError::Ipv6ExtTruncated,
        "fragment",
    );
    // A hop-by-hop length (255 → 2048 bytes) far past the frame.
    let mut long = f.clone();
    long[ip + 41] = 255;
    assert_malformed(&mut h, &long, ParseError::Ipv6ExtTruncated, "HBH length");
    // An AH whose length runs past the frame.
    let ah = scan_v6().raw(51, vec![6, 200, 0, 0, 0, 0, 0, 0]).build();
    assert_malformed(&mut h, &ah, ParseError::Ipv6ExtTruncated, "AH length");
}

#[test]
fn truncated_tcp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    let v4 = scan_v4().syn(80).l4_len(10);
    assert_malformed(&mut h, &v4.build(), ParseError::TcpTruncated, "IPv4");
    let v6 = scan_v6().syn(80).l4_len(10);
    assert_malformed(&mut h, &v6.build(), ParseError::TcpTruncated, "IPv6");
    // The IP header declares a full segment but the frame is cut short of it.
    let full = scan_v4().syn(80);
    let f = full.build();
    let cut = &f[..full.l4_offset() + 10];
    assert_malformed(&mut h, cut, ParseError::TcpTruncated, "IPv4 frame cut");
    let full = scan_v6().syn(80);
    let f = full.build();
    let cut = &f[..full.l4_offset() + 19];
    assert_malformed(&mut h, cut, ParseError::TcpTruncated, "IPv6 frame cut");
    // A last fragment (offset 0, no more fragments) is a whole datagram: no excuse.
    let atomic = scan_v4().ipv4_fragment(0, false).syn(80).l4_len(8);
    assert_malformed(
        &mut h,
        &atomic.build(),
        ParseError::TcpTruncated,
        "offset 0, no MF",
    );
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn tcp_data_offset_below_five_is_malformed() {
    let mut h = load_with(&no_admission());
    for (src, dst) in [
        (IpAddr::from(SCANNER_V4), IpAddr::from(TARGET_V4)),
        (SCANNER_V6.into(), TARGET_V6.into()),
    ] {
        for offset in [0u8, 4] {
            let p = PacketBuilder::new(src, dst).syn(80);
            let mut f = p.build();
            f[p.l4_offset() + 12] = offset << 4;
            assert_malformed(&mut h, &f, ParseError::TcpBadDataOffset, "data offset");
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn truncated_udp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    for len in [0, 4, 7] {
        let v4 = scan_v4().udp(53).l4_len(len);
        assert_malformed(&mut h, &v4.build(), ParseError::UdpTruncated, "IPv4");
        let v6 = scan_v6().udp(53).l4_len(len);
        assert_malformed(&mut h, &v6.build(), ParseError::UdpTruncated, "IPv6");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn truncated_icmp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    for len in [0, 2, 3] {
        let v4 = scan_v4().echo_request().l4_len(len);
        assert_malformed(&mut h, &v4.build(), ParseError::IcmpTruncated, "ICMP");
        let v6 = scan_v6().echo_request().l4_len(len);
        assert_malformed(&mut h, &v6.build(), ParseError::IcmpTruncated, "ICMPv6");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn random_garbage_always_passes() {
    // Not a fuzzer, but a cheap net: random bytes behind each ethertype the parser knows never
    // fail the run, and every frame lands in exactly one class.
    let mut h = load_with(&no_admission());
    let mut rng = rand::rng();
    let mut frames = 0u64;
    for ethertype in [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806] {
        for _ in 0..500 {
            let len = rng.random_range(0..200);
            let mut payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Make most frames get past the version check.
            if let Some(b) = payload.first_mut() {
                match ethertype {
                    0x0800 => *b = 0x40 | (*b & 0x0f),
                    0x86dd => *b = 0x60 | (*b & 0x0f),
                    _ => {}
                }
            }
            pass(&mut h, &ethernet_frame(ethertype, &payload));
            frames += 1;
        }
    }
    let classes: u64 = PacketClass::ALL
        .iter()
        .map(|c| h.class_count(*c).unwrap())
        .sum();
    assert_eq!(classes, frames);
    let errors: u64 = ParseError::ALL
        .iter()
        .map(|r| h.parse_errors(*r).unwrap())
        .sum();
    assert_eq!(errors, h.class_count(PacketClass::Malformed).unwrap());
}

// ---------------------------------------------------------------------------------------------
// 4. Tracking: admission filter and keys
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 5. Distinct-count estimates
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 6. Ignore list
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 7. Spoofed floods
// ---------------------------------------------------------------------------------------------

const FLOOD: u32 = 100_000;
/// A small tracker, so that a flood without the admission filter certainly wraps it.
const SMALL_TRACKER: u32 = 1024;

/// Makes `SCANNER_V4` tracked (three SYNs), then sends `FLOOD` single SYNs from random
/// spoofed IPv4 sources; returns the scanner's state before and after.
fn scanner_then_flood(h: &mut Harness) -> (SourceState, Option<SourceState>) {
    for port in [22, 23, 25] {
        send(h, scan_v4().syn(port));
    }
    let before = state_of(h, &key_of(SCANNER_V4));
    let mut rng = rand::rng();
    let mut frame = scan_v4().syn(80).build();
    let src = scan_v4().l3_offset() + 12;
    let mut sent = 0;
    while sent < FLOOD {
        let spoofed: [u8; 4] = rng.random();
        if spoofed == SCANNER_V4.octets() {
            continue;
        }
        frame[src..src + 4].copy_from_slice(&spoofed);
        pass(h, &frame);
        sent += 1;
    }
    (before, h.tracked(&key_of(SCANNER_V4)).unwrap())
}

#[test]
fn spoofed_flood_does_not_displace_tracked_scanner() {
    require_root();
    let mut h = Harness::load_with(Object::Product, Some(SMALL_TRACKER)).unwrap();
    let (before, after) = scanner_then_flood(&mut h);
    assert_eq!(before.probes[PacketClass::TcpSyn as usize], 2);
    assert_eq!(after, Some(before), "the scanner's state is untouched");
    let tracked = h.tracked_count().unwrap();
    assert!(tracked <= 5, "{tracked} sources tracked after the flood");
    let deferred = h.counter(Counter::AdmissionDeferred).unwrap();
    let flood = u64::from(FLOOD);
    // The scanner's own first probe was deferred too; a random source seen twice may be
    // admitted (birthday collisions among 2^32 addresses: about one expected).
    assert!(
        (flood - 5..=flood + 1).contains(&deferred),
        "AdmissionDeferred = {deferred}"
    );
    assert_eq!(
        h.counter(Counter::Admitted).unwrap(),
        tracked as u64,
        "every tracked source was admitted once"
    );
}

#[test]
fn spoofed_flood_without_admission_filter_evicts_scanner() {
    // Why the admission filter exists: without it, every spoofed packet is an LRU insert and
    // a flood wraps the tracker, taking a real scanner's state with it.
    require_root();
    let mut h = Harness::load_with(Object::Product, Some(SMALL_TRACKER)).unwrap();
    h.set_config(&no_admission()).unwrap();
    let (before, after) = scanner_then_flood(&mut h);
    assert_eq!(before.probes[PacketClass::TcpSyn as usize], 3);
    assert_eq!(after, None, "the scanner was evicted");
    assert!(h.tracked_count().unwrap() <= SMALL_TRACKER as usize);
    assert!(h.counter(Counter::TrackerInserts).unwrap() >= u64::from(FLOOD));
}

#[test]
fn in_kernel_spoofed_flood_is_deferred() {
    // The bench program randomises the source in the kernel: one test run is the flood.
    require_root();
    let mut h = Harness::load_with(Object::SpoofBench, Some(SMALL_TRACKER)).unwrap();
    let frame = scan_v4().syn(80).build();
    let (verdict, _) = h.run_repeat(&frame, FLOOD).unwrap();
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        h.class_count(PacketClass::TcpSyn).unwrap(),
        u64::from(FLOOD)
    );
    let deferred = h.counter(Counter::AdmissionDeferred).unwrap();
    assert!(
        deferred >= u64::from(FLOOD) - 5,
        "AdmissionDeferred = {deferred}"
    );
    assert!(h.tracked_count().unwrap() <= 5);
}

// ---------------------------------------------------------------------------------------------
// 8. Windows and events
// ---------------------------------------------------------------------------------------------

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
        reports.len() as u32,
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
        config.thresholds[kind as usize] = match SourceState::estimator_bits(kind) {
            Some(bits) => bits_for_count(15, bits),
            None => 5, // fragment probes are counted
        };
    }
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
        (DetectionKind::FragmentScan, Box::new(move |_| tiny(src(6)))),
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
    // The daemon learns of scans only through events (see scanwatch/src/detect.rs). If the
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

// ---------------------------------------------------------------------------------------------
// 9. Replies never count
// ---------------------------------------------------------------------------------------------

#[test]
fn replies_to_many_ports_and_hosts_leave_no_state() {
    // A busy server answers many clients: SYN-ACKs, RSTs and ICMP errors to many ports and
    // hosts must never make it look like a scanner, whatever the thresholds.
    let mut config = no_admission();
    config.thresholds = [1; DETECTION_KINDS];
    let mut h = load_with(&config);
    let server_v4 = TARGET_V4;
    let server_v6 = TARGET_V6;
    for i in 0..300u32 {
        let client_v4 = doc_v4(i % 256 + 512);
        let client_v6 = doc_v6_target(0x1_0000 + i);
        let port = 1024 + i as u16;
        for f in [
            PacketBuilder::new(server_v4, client_v4).tcp(port, SYN | ACK),
            PacketBuilder::new(server_v4, client_v4).tcp(port, RST),
            PacketBuilder::new(server_v4, client_v4).tcp(port, RST | ACK),
            PacketBuilder::new(server_v4, client_v4).icmp(3, 3),
            PacketBuilder::new(server_v4, client_v4).icmp(11, 0),
            PacketBuilder::new(server_v4, client_v4).icmp(0, 0),
            PacketBuilder::new(server_v6, client_v6).tcp(port, SYN | ACK),
            PacketBuilder::new(server_v6, client_v6).tcp(port, RST),
            PacketBuilder::new(server_v6, client_v6).icmp(1, 4),
            PacketBuilder::new(server_v6, client_v6).icmp(129, 0),
        ] {
            send(&mut h, f);
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
    assert!(h.events().is_empty());
    assert_eq!(h.class_count(PacketClass::TcpOther).unwrap(), 300 * 5);
    assert_eq!(h.class_count(PacketClass::IcmpOther).unwrap(), 300 * 5);
    let counters: u64 = h.stats().unwrap()[COUNTER_BASE as usize..].iter().sum();
    assert_eq!(counters, 0, "no data-path counter moved");
    let probes: u64 = PacketClass::ALL
        .iter()
        .filter(|c| c.is_probe())
        .map(|c| h.class_count(*c).unwrap())
        .sum();
    assert_eq!(probes, 0);
}
