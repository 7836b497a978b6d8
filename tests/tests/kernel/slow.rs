//! Slow scans: the long window beside the short one catches a scan too slow for the short
//! window and a scan that straddles a short window's end; a scan already reported in its short
//! window is not reported again over the long one.

use scanwatch_common::{
    config::KernelConfig,
    distinct::bits_for_count,
    event::{DetectionKind, ScanEvent, WINDOW_LONG},
    state::SourceState,
};
use scanwatch_tests::harness::Harness;

use crate::{SCANNER_V4, SECOND, T0, key_of, load_with, scan_v4, send};

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

/// Sends a SYN to `port` at `T0 + at` seconds.
fn syn_at(h: &mut Harness, c: &mut KernelConfig, at: u64, port: u16) {
    c.clock_override_ns = T0 + at * SECOND;
    h.set_config(c).unwrap();
    send(h, scan_v4().syn(port));
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
