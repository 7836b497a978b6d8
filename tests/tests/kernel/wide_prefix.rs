//! IPv6 prefix rotation: the wide level (/48 by default) counts the probes of its /64s, so a
//! scanner rotating /64s inside its /48, each below every threshold, is reported as the /48
//! with the /64s it used; a /64 reported on its own is not reported again as its /48.

use std::net::{Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    addr::SourceKey,
    config::{FLAG_DROP, KernelConfig},
    distinct::bits_for_count,
    event::{DetectionKind, ScanEvent, WINDOW_SHORT, WINDOW_WIDE},
    state::SourceState,
    stats::Counter,
};
use scanwatch_tests::{harness::Harness, packet::PacketBuilder};

use crate::{SECOND, T0, TARGET_V4, TARGET_V6, key_of, load, load_with, pass};

/// port_scan's threshold in these tests (distinct ports).
const PORTS: u32 = 20;

/// The scanner's /48.
const WIDE: u32 = 48;

/// port_scan at 20 distinct ports, wide level at /48, admission on (each /64's first probe
/// is deferred, as in production).
fn config() -> KernelConfig {
    let mut c = KernelConfig {
        clock_override_ns: T0 + SECOND,
        hash_seed: 0x3e_48,
        ipv6_wide_prefix_len: WIDE,
        ..KernelConfig::default()
    };
    c.thresholds[DetectionKind::PortScan as usize] = bits_for_count(
        PORTS,
        SourceState::estimator_bits(DetectionKind::PortScan).unwrap(),
    );
    c
}

/// Host 0x10 of the `i`th /64 of the scanner's /48, 2001:db8:48::/48.
fn rotated(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x48, i, 0, 0, 0, 0x10)
}

/// The wide key of the scanner's /48.
fn wide_key() -> SourceKey {
    SourceKey::wide_from_ipv6(rotated(0).octets(), WIDE)
}

/// Ten SYNs from each of `prefixes` /64s, each to ten ports of its own (below the threshold
/// of 20 per /64); returns the events.
fn rotate(h: &mut Harness, prefixes: u16) -> Vec<ScanEvent> {
    let mut events = Vec::new();
    for i in 1..=prefixes {
        for p in 0..10 {
            pass(
                h,
                &PacketBuilder::new(rotated(i), TARGET_V6)
                    .syn(1000 + 10 * i + p)
                    .build(),
            );
        }
        events.extend(h.events());
    }
    events
}

/// The verifier's processed-instruction counts, printed for the report (`--nocapture`): the
/// program loads with every level compiled in, which `load` checks.
#[test]
fn program_loads_and_reports_its_verifier_cost() {
    let h = load();
    let (xdp, egress) = h.verified_instructions().unwrap();
    println!("verifier: XDP {xdp} processed instructions, TC egress {egress:?}");
    assert!(xdp < 1_000_000);
}

/// Every per-probe level at once, in drop mode: the short window, the long window, the wide
/// level and the target's distributed-scan count all see a tracked IPv6 probe, which passes.
#[test]
fn every_level_counts_an_ipv6_probe_in_drop_mode() {
    let mut c = config();
    c.flags |= FLAG_DROP;
    c.long_window_ns = 3600 * SECOND;
    c.long_thresholds = c.thresholds;
    c.thresholds[DetectionKind::DistributedScan as usize] = bits_for_count(40, 1024);
    c.window_ns = 300 * SECOND;
    let mut h = load_with(&c);
    rotate(&mut h, 2);
    // The long window's state comes with a probe in a later short window.
    c.clock_override_ns += 301 * SECOND;
    h.set_config(&c).unwrap();
    pass(
        &mut h,
        &PacketBuilder::new(rotated(1), TARGET_V6).syn(999).build(),
    );
    let first = key_of(rotated(1));
    assert!(h.tracked(&first).unwrap().is_some(), "short window");
    assert!(h.long_state(&first).unwrap().is_some(), "long window");
    assert!(
        h.target_state(&SourceKey {
            addr: TARGET_V6.octets()
        })
        .unwrap()
        .is_some(),
        "distributed scans"
    );
    let wide = h.wide_state(&wide_key()).unwrap().expect("wide level");
    assert_eq!(wide.sample().count(), 2);
    // One insert each, counted for the flood watch.
    assert_eq!(h.counter(Counter::WideInserts).unwrap(), 1);
    assert_eq!(h.counter(Counter::TargetInserts).unwrap(), 1);
    assert_eq!(h.counter(Counter::LongInserts).unwrap(), 1);
}

#[test]
fn six_64s_of_one_48_are_reported_as_the_48_with_the_64s() {
    let mut h = load_with(&config());
    let events = rotate(&mut h, 6);
    // Only the /48 is reported: no /64 reached the threshold.
    assert!(!events.is_empty(), "the /48 must be reported");
    for e in &events {
        assert_eq!(e.source, wide_key(), "only the /48 is reported");
        assert_eq!(e.window, WINDOW_WIDE);
        assert_eq!(e.kind, DetectionKind::PortScan as u32);
    }
    // Nine counted ports per /64 (the first is deferred by admission): 20 is crossed on the
    // third /64, then doubles at 40 on the fifth.
    assert_eq!(events.len(), 2, "at the threshold and at its doubling");
    let state = h.wide_state(&wide_key()).unwrap().expect("the /48's entry");
    let used: Vec<SourceKey> = state.sample().collect();
    let expected: Vec<SourceKey> = (1..=6).map(|i| key_of(rotated(i))).collect();
    assert_eq!(used, expected, "the six /64s, oldest first");
    assert_eq!(state.state.lifetime_probes, 6 * 9);
}

#[test]
fn a_64_reported_alone_is_not_reported_again_as_its_48() {
    let mut h = load_with(&config());
    let mut events = Vec::new();
    for p in 0..40u16 {
        pass(
            &mut h,
            &PacketBuilder::new(rotated(1), TARGET_V6)
                .syn(2000 + p)
                .build(),
        );
        events.extend(h.events());
    }
    assert!(!events.is_empty(), "the /64 must be reported");
    for e in &events {
        assert_eq!(e.source, key_of(rotated(1)), "only the /64 is reported");
        assert_eq!(e.window, WINDOW_SHORT);
    }
    // The /48 counted the /64's probes until it was reported, and no more: below its
    // threshold.
    let state = h.wide_state(&wide_key()).unwrap().expect("the /48's entry");
    let kind = DetectionKind::PortScan as usize;
    assert!(state.state.lifetime_probes > 0);
    assert!(state.state.measures[kind] < config().thresholds[kind]);
}

#[test]
fn wide_level_off_counts_nothing_at_the_48() {
    let mut c = config();
    c.ipv6_wide_prefix_len = 0;
    let mut h = load_with(&c);
    assert!(rotate(&mut h, 6).is_empty(), "no /64 crosses on its own");
    assert!(h.wide_keys().unwrap().is_empty());
}

#[test]
fn ipv4_sources_never_enter_the_wide_level() {
    let mut h = load_with(&config());
    let mut events = Vec::new();
    for i in 1..=6u8 {
        for p in 0..10 {
            pass(
                &mut h,
                &PacketBuilder::new(Ipv4Addr::new(192, 0, 2, i), TARGET_V4)
                    .syn(1000 + 10 * u16::from(i) + p)
                    .build(),
            );
        }
        events.extend(h.events());
    }
    assert!(
        events.is_empty(),
        "six IPv4 sources each below the threshold"
    );
    assert!(h.wide_keys().unwrap().is_empty());
}

#[test]
fn a_different_48_is_counted_apart() {
    let mut h = load_with(&config());
    // Two /64s of the scanner's /48 and two of the next /48: their 36 counted ports together
    // would cross, but neither /48 reaches 20 on its own.
    let mut events = rotate(&mut h, 2);
    for i in 1..=2u16 {
        for p in 0..10 {
            let other = Ipv6Addr::new(0x2001, 0xdb8, 0x49, i, 0, 0, 0, 0x10);
            pass(
                &mut h,
                &PacketBuilder::new(other, TARGET_V6)
                    .syn(1500 + 10 * i + p)
                    .build(),
            );
        }
    }
    events.extend(h.events());
    assert!(events.is_empty(), "18 ports per /48, below 20");
    assert_eq!(h.wide_keys().unwrap().len(), 2);
}
