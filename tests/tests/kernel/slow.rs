//! Slow scans: the long window beside the short one catches a scan too slow for the short
//! window and a scan that straddles a short window's end; a scan already reported in its short
//! window is not reported again over the long one.

use std::net::Ipv4Addr;

use scanwatch_common::{
    config::KernelConfig,
    distinct::bits_for_count,
    event::{DetectionKind, ScanEvent, WINDOW_LONG},
    state::SourceState,
    stats::Counter,
};
use scanwatch_tests::{harness::Harness, packet::PacketBuilder};

use crate::{
    Forger, SCANNER_V4, SECOND, T0, TARGET_V4, key_of, load_with, scan_v4, send, threshold,
};

const PORTS: u32 = 20;

/// 300 s window, 3600 s long window, port_scan 20 distinct ports in both, admission on.
fn config() -> KernelConfig {
    let bits = bits_for_count(
        PORTS,
        SourceState::estimator_bits(DetectionKind::PortScan).unwrap(),
    );
    let mut c = KernelConfig {
        window_ns: 300 * SECOND,
        long_window_ns: 3600 * SECOND,
        clock_override_ns: T0,
        hash_seed: 0x51_0e,
        ..KernelConfig::default()
    };
    c.thresholds[DetectionKind::PortScan as usize] = bits;
    c.long_thresholds[DetectionKind::PortScan as usize] = bits;
    c
}

/// Sends `packet` at `T0 + at` seconds.
fn syn_at_from(h: &mut Harness, c: &mut KernelConfig, at: u64, packet: PacketBuilder) {
    c.clock_override_ns = T0 + at * SECOND;
    h.set_config(c).unwrap();
    send(h, packet);
}

/// Sends a SYN to `port` at `T0 + at` seconds.
fn syn_at(h: &mut Harness, c: &mut KernelConfig, at: u64, port: u16) {
    syn_at_from(h, c, at, scan_v4().syn(port));
}

fn port_scans(events: &[ScanEvent]) -> Vec<ScanEvent> {
    events
        .iter()
        .filter(|e| e.kind == DetectionKind::PortScan as u32)
        .copied()
        .collect()
}

#[test]
fn one_probe_every_twenty_seconds_crosses_the_long_threshold() {
    let mut c = config();
    let mut h = load_with(&c);
    let mut events = Vec::new();
    // 15 new ports per 5-minute window, below 20; 45 in the hour.
    for i in 0..45u16 {
        syn_at(&mut h, &mut c, u64::from(i) * 20, 100 + i);
        events.extend(h.events());
    }
    let found = port_scans(&events);
    assert!(!found.is_empty(), "the slow scan is reported");
    assert!(
        found.iter().all(|e| e.window == WINDOW_LONG),
        "only over the long window: {found:?}"
    );
    assert_eq!(found[0].source, key_of(SCANNER_V4));
    let long = h.long_state(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert!(long.measures[DetectionKind::PortScan as usize] >= 40);
}

#[test]
fn a_scan_straddling_a_window_end_is_not_halved() {
    let mut c = config();
    let mut h = load_with(&c);
    // The source's short window starts when it enters the tracker (its second probe, at 0 s);
    // with 13 more ports just before that window's end and 12 just after, each half alone
    // stays below 20.
    syn_at(&mut h, &mut c, 0, 198);
    syn_at(&mut h, &mut c, 0, 199);
    for i in 0..13u16 {
        syn_at(&mut h, &mut c, 280 + u64::from(i), 200 + i);
    }
    assert!(
        h.events().is_empty(),
        "the first half alone crosses nothing"
    );
    for i in 0..12u16 {
        syn_at(&mut h, &mut c, 301 + u64::from(i), 300 + i);
    }
    let found = port_scans(&h.events());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].window, WINDOW_LONG);
    let short = h.tracked(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert!(
        short.measures[DetectionKind::PortScan as usize] < 20,
        "the short window holds only the second half"
    );
}

#[test]
fn a_fast_scan_is_reported_once_in_its_short_window() {
    let mut c = config();
    let mut h = load_with(&c);
    for i in 0..60u16 {
        syn_at(&mut h, &mut c, 1, 1000 + i);
    }
    let found = port_scans(&h.events());
    assert!(!found.is_empty());
    assert!(found.iter().all(|e| e.window != WINDOW_LONG), "{found:?}");
}

#[test]
fn long_window_off_keeps_no_long_state() {
    let mut c = config();
    c.long_window_ns = 0;
    let mut h = load_with(&c);
    for i in 0..45u16 {
        syn_at(&mut h, &mut c, u64::from(i) * 20, 100 + i);
    }
    assert!(port_scans(&h.events()).is_empty());
    assert!(h.long_state(&key_of(SCANNER_V4)).unwrap().is_none());
}

/// The daemon's defaults around the slow-scan test: the long window and both distributed
/// forms on (per-target at 30 ports, per-port sweeps at 40 hosts).
fn defaults_config() -> KernelConfig {
    let mut c = config();
    c.thresholds[DetectionKind::DistributedScan as usize] =
        threshold(DetectionKind::DistributedScan, 30);
    c.distributed_hosts = 40;
    c
}

/// The slow scanner of the flood tests: 21 new ports, one every 150 s, with `between` run after
/// each probe; returns every event.
fn slow_scan_with(
    h: &mut Harness,
    c: &mut KernelConfig,
    mut between: impl FnMut(&mut Harness),
) -> Vec<ScanEvent> {
    let mut events = Vec::new();
    for i in 0..21u16 {
        syn_at(h, c, u64::from(i) * 150, 2000 + i);
        between(h);
        events.extend(h.events());
    }
    events
}

fn long_port_scans_of(events: &[ScanEvent], source: Ipv4Addr) -> usize {
    port_scans(events)
        .iter()
        .filter(|e| e.window == WINDOW_LONG && e.source == key_of(source))
        .count()
}

#[test]
fn the_slow_scanner_alone_is_reported_over_the_long_window() {
    let mut c = defaults_config();
    let mut h = load_with(&c);
    let events = slow_scan_with(&mut h, &mut c, |_| {});
    assert_eq!(
        long_port_scans_of(&events, SCANNER_V4),
        1,
        "{:?}",
        port_scans(&events)
    );
}

#[test]
fn forged_pairs_between_a_slow_scanners_probes_do_not_hide_it() {
    // Two SYNs per forged source are the cheapest way past the admission filter: 8,192 such
    // pairs after each probe used to evict the scanner's long-window state.
    let mut c = defaults_config();
    let mut h = load_with(&c);
    let mut forger = Forger::new(TARGET_V4, Ipv4Addr::new(10, 0, 0, 1), 1);
    let events = slow_scan_with(&mut h, &mut c, |h| forger.send(h, 8192, 2));
    assert_eq!(
        long_port_scans_of(&events, SCANNER_V4),
        1,
        "{:?}",
        port_scans(&events)
    );
    // Only the scanner returned in a later window: no forged pair took a long-window slot.
    assert_eq!(h.counter(Counter::LongInserts).unwrap(), 1);
    assert!(h.counter(Counter::Admitted).unwrap() >= 21 * 8192);
}

#[test]
fn a_forged_source_enters_the_long_window_only_by_returning() {
    let mut c = defaults_config();
    let mut h = load_with(&c);
    let forged = PacketBuilder::new(Ipv4Addr::new(10, 9, 9, 9), crate::TARGET_V4);
    syn_at_from(&mut h, &mut c, 0, forged.clone().syn(7));
    syn_at_from(&mut h, &mut c, 1, forged.clone().syn(8));
    syn_at_from(&mut h, &mut c, 299, forged.clone().syn(9));
    let key = key_of(Ipv4Addr::new(10, 9, 9, 9));
    assert!(h.tracked(&key).unwrap().is_some());
    assert!(
        h.long_state(&key).unwrap().is_none(),
        "not within its first window"
    );
    syn_at_from(&mut h, &mut c, 302, forged.syn(10));
    let long = h.long_state(&key).unwrap().expect("back in a later window");
    // The first window (admitted at its second SYN: ports 8 and 9) carried over, then port 10.
    assert_eq!(long.measures[DetectionKind::PortScan as usize], 3);
    assert_eq!(long.window_start_ns, T0 + SECOND);
}

#[test]
fn a_one_packet_flood_between_a_slow_scanners_probes_does_not_hide_it() {
    // 2,000 forged single SYNs a second for the 150 s between probes: each slot of the
    // admission filter is overwritten about 4.6 times between two probes of the scanner.
    let mut c = defaults_config();
    let mut h = load_with(&c);
    let mut forger = Forger::new(TARGET_V4, Ipv4Addr::new(10, 0, 0, 1), 1);
    let events = slow_scan_with(&mut h, &mut c, |h| forger.send(h, 2000 * 150, 1));
    assert_eq!(
        long_port_scans_of(&events, SCANNER_V4),
        1,
        "{:?}",
        port_scans(&events)
    );
    assert!(h.tracked(&key_of(SCANNER_V4)).unwrap().is_some());
    assert!(h.counter(Counter::AdmissionDeferred).unwrap() >= 21 * 2000 * 150);
}
