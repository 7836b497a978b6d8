//! Repeats of a source's last probe (retransmissions, a flood of one port) are counted in the
//! short window only and skip the estimators and the other levels (`track::count_if_repeat`):
//! distinct counts, events and window handling come out as without the shortcut.

use scanwatch_common::{
    classify::PacketClass,
    config::{FLAG_DROP, FLAG_NO_ADMISSION, KernelConfig},
    distinct::bits_for_count,
    event::{DetectionKind, ScanEvent},
    evidence::hops_from_ttl,
    state::SourceState,
};
use scanwatch_tests::{harness::Harness, packet::tcp_flags::RST};

use crate::{SCANNER_V4, SECOND, T0, TARGET_V4, key_of, load_with, scan_v4, send, state_of};

/// 300 s window, port_scan at 10 distinct ports, host_sweep at 4 hosts, admission off (exact
/// counts), clock at T0.
fn config() -> KernelConfig {
    let bits = |n, kind| bits_for_count(n, SourceState::estimator_bits(kind).unwrap());
    let mut c = KernelConfig {
        window_ns: 300 * SECOND,
        clock_override_ns: T0,
        hash_seed: 0x7e_9e47,
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    };
    c.thresholds[DetectionKind::PortScan as usize] = bits(10, DetectionKind::PortScan);
    c.thresholds[DetectionKind::HostSweep as usize] = bits(4, DetectionKind::HostSweep);
    c
}

fn at(h: &mut Harness, c: &mut KernelConfig, seconds: u64) {
    c.clock_override_ns = T0 + seconds * SECOND;
    h.set_config(c).unwrap();
}

/// What an event says about the scan, without its packet counts (which include repeats).
fn findings(events: &[ScanEvent]) -> Vec<(u32, [u32; 11], u16)> {
    events
        .iter()
        .map(|e| (e.kind, e.measures, e.target_port))
        .collect()
}

#[test]
fn a_scan_with_retransmissions_counts_and_reports_as_without_them() {
    let c = config();
    let (mut once, mut thrice) = (load_with(&c), load_with(&c));
    let (mut events_once, mut events_thrice) = (Vec::new(), Vec::new());
    // 40 ports over 5 hosts: every probe of the second scan is sent three times in a row.
    for i in 0..40u16 {
        let dst = std::net::Ipv4Addr::new(198, 51, 100, 1 + (i % 5) as u8);
        let probe = || scanwatch_tests::packet::PacketBuilder::new(SCANNER_V4, dst).syn(1000 + i);
        send(&mut once, probe());
        events_once.extend(once.events());
        for _ in 0..3 {
            send(&mut thrice, probe());
            events_thrice.extend(thrice.events());
        }
    }
    let (a, b) = (
        state_of(&once, &key_of(SCANNER_V4)),
        state_of(&thrice, &key_of(SCANNER_V4)),
    );
    assert_eq!(a.measures, b.measures);
    assert_eq!(a.tcp_ports, b.tcp_ports);
    assert_eq!(a.hosts, b.hosts);
    assert_eq!(b.probes[PacketClass::TcpSyn as usize], 120);
    assert_eq!(b.lifetime_probes, 120);
    assert!(!events_once.is_empty());
    assert_eq!(findings(&events_once), findings(&events_thrice));
}

#[test]
fn a_repeat_still_moves_time_hops_and_probe_counts() {
    let mut c = KernelConfig {
        flags: FLAG_NO_ADMISSION | FLAG_DROP,
        ..config()
    };
    let mut h = load_with(&c);
    // The first probe and the one after fill the two sample slots; the rest are repeats.
    for (second, ttl) in [(0, 64), (1, 64), (2, 64), (3, 50), (4, 64), (9, 63)] {
        at(&mut h, &mut c, second);
        send(&mut h, scan_v4().ttl(ttl).syn(22));
    }
    let s = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(s.probes[PacketClass::TcpSyn as usize], 6);
    assert_eq!(s.lifetime_probes, 6);
    assert_eq!(s.last_seen_ns, T0 + 9 * SECOND);
    assert_eq!(s.first_seen_ns, T0);
    assert_eq!(s.min_hops, hops_from_ttl(64));
    assert_eq!(s.max_hops, hops_from_ttl(50));
    assert_eq!(s.measures[DetectionKind::PortScan as usize], 1);
    assert_eq!(s.measures[DetectionKind::HostSweep as usize], 1);
}

#[test]
fn a_repeat_after_the_window_ended_counts_in_the_new_window() {
    let mut c = config();
    let mut h = load_with(&c);
    for _ in 0..4 {
        send(&mut h, scan_v4().syn(22));
    }
    at(&mut h, &mut c, 301);
    send(&mut h, scan_v4().syn(22));
    let s = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(s.window_start_ns, T0 + 301 * SECOND);
    assert_eq!(s.probes[PacketClass::TcpSyn as usize], 1);
    assert_eq!(s.measures[DetectionKind::PortScan as usize], 1);
    assert_eq!(s.tcp_ports.bits_set(), 1);
}

#[test]
fn a_window_rolled_by_the_egress_program_forgets_the_last_probe() {
    let mut c = config();
    let mut h = load_with(&c);
    for _ in 0..4 {
        send(&mut h, scan_v4().syn(22));
    }
    // Past the window, the host resets an ACK of the scanner: the TC egress program rolls the
    // scanner's window. The same SYN again must set its bit in that new window.
    at(&mut h, &mut c, 301);
    let reset = scanwatch_tests::packet::PacketBuilder::new(TARGET_V4, SCANNER_V4)
        .src_port(443)
        .tcp(51_000, RST)
        .build();
    h.run_egress(&reset).unwrap();
    let rolled = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(rolled.window_start_ns, T0 + 301 * SECOND);
    send(&mut h, scan_v4().syn(22));
    let s = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(s.measures[DetectionKind::PortScan as usize], 1);
    assert_eq!(s.tcp_ports.bits_set(), 1);
}

#[test]
fn repeats_reach_no_other_level() {
    let mut c = KernelConfig {
        long_window_ns: 3600 * SECOND,
        ..config()
    };
    c.long_thresholds[DetectionKind::PortScan as usize] = 100;
    c.thresholds[DetectionKind::DistributedScan as usize] = 100;
    let mut h = load_with(&c);
    // One window first: a source gets its long-window state when it probes in a later one.
    send(&mut h, scan_v4().syn(21));
    at(&mut h, &mut c, 301);
    for _ in 0..10 {
        send(&mut h, scan_v4().syn(22));
    }
    send(&mut h, scan_v4().syn(23));
    let short = state_of(&h, &key_of(SCANNER_V4));
    assert_eq!(short.probes[PacketClass::TcpSyn as usize], 11);
    // The long window starts with the first window (port 21); then the first probe of each
    // port reached it and the target, and after it the samples were full, so ports 22 (twice:
    // one sample each) and 23.
    let long = h.long_state(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert_eq!(long.probes[PacketClass::TcpSyn as usize], 4);
    assert_eq!(long.measures[DetectionKind::PortScan as usize], 3);
    let target = h.target_state(&key_of(TARGET_V4)).unwrap().unwrap();
    assert_eq!(target.probes[PacketClass::TcpSyn as usize], 3);
}
