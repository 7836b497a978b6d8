//! Every TCP flag mix no legitimate stack sends is a stealth probe (nmap --scanflags), counted
//! with FIN/NULL/Xmas/Maimon by distinct port; the mixes stacks do send stay untracked.

use scanwatch_common::{classify::PacketClass, event::DetectionKind};
use scanwatch_tests::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};

use crate::{
    SCANNER_V4, SCANNER_V6, T0, assert_class, key_of, load_with, no_admission, scan_v4, scan_v6,
    send, state_of,
};

/// Mixes nmap --scanflags can send that no stack does, each with its name.
const ODD_MIXES: [(&str, u8); 10] = [
    ("FIN|PSH", FIN | PSH),
    ("FIN|URG", FIN | URG),
    ("PSH", PSH),
    ("URG", URG),
    ("PSH|URG", PSH | URG),
    ("SYN|FIN", SYN | FIN),
    ("SYN|RST", SYN | RST),
    ("FIN|RST", FIN | RST),
    ("SYN|ACK|FIN", SYN | ACK | FIN),
    ("SYN|FIN|PSH|URG|ECE|CWR", SYN | FIN | PSH | URG | 0xc0),
];

#[test]
fn odd_flag_mixes_are_stealth_probes_in_both_ip_versions() {
    let mut h = load_with(&no_admission());
    for (port, (what, flags)) in (1000u16..).zip(ODD_MIXES) {
        assert_class(
            &mut h,
            &scan_v4().tcp(port, flags).build(),
            PacketClass::TcpOddFlags,
            what,
        );
        assert_class(
            &mut h,
            &scan_v6().tcp(port, flags).build(),
            PacketClass::TcpOddFlags,
            what,
        );
    }
    for src in [key_of(SCANNER_V4), key_of(SCANNER_V6)] {
        let state = state_of(&h, &src);
        assert_eq!(state.probes[PacketClass::TcpOddFlags as usize], 10);
        assert_eq!(
            state.stealth_ports.bits_set(),
            10,
            "one stealth port per mix"
        );
        assert_eq!(
            state.tcp_ports.bits_set(),
            0,
            "SYN|FIN is no connection attempt"
        );
    }
}

#[test]
fn fin_psh_scan_raises_stealth_scan() {
    let mut config = no_admission();
    config.clock_override_ns = T0;
    config.thresholds[DetectionKind::StealthScan as usize] = 10;
    let mut h = load_with(&config);
    for port in 1..=9u16 {
        send(&mut h, scan_v4().tcp(port, FIN | PSH));
    }
    assert!(h.events().is_empty(), "nine ports are below the threshold");
    send(&mut h, scan_v4().tcp(10, FIN | PSH));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, DetectionKind::StealthScan as u32);
    assert_eq!(events[0].source, key_of(SCANNER_V4));
}

#[test]
fn mixes_stacks_send_are_not_probes() {
    let mut h = load_with(&no_admission());
    for (what, flags, class) in [
        ("ACK|PSH|URG", ACK | PSH | URG, PacketClass::TcpEstablished),
        ("ACK|ECE", ACK | 0x40, PacketClass::TcpEstablished),
        ("SYN|ACK|ECE", SYN | ACK | 0x40, PacketClass::TcpOther),
        ("RST|ACK|PSH", RST | ACK | PSH, PacketClass::TcpOther),
        ("FIN|ACK|URG", FIN | ACK | URG, PacketClass::TcpOther),
    ] {
        assert_class(&mut h, &scan_v4().tcp(80, flags).build(), class, what);
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}
