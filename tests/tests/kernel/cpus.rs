//! One scan's probes split across CPUs, as RSS splits a scanner's flows on a host: the counts
//! that decide an alert are the same as when one CPU sees every probe.

use scanwatch_common::{distinct::error_bound, event::DetectionKind, state::SourceState};
use scanwatch_tests::packet::PacketBuilder;

use crate::{TARGET_V4, key_of, load_with, no_admission, source_v4};

/// Scanners, each probing `PORTS` ports: enough runs for the two CPUs to race often.
const SCANNERS: u32 = 200;
const PORTS: u16 = 600;

/// Every scanner's SYNs to ports 1..=PORTS, split by port parity when `split`.
fn probes(odd: Option<bool>) -> Vec<Vec<u8>> {
    (0..SCANNERS)
        .flat_map(|s| {
            (1..=PORTS)
                .filter(move |p| odd.is_none_or(|odd| (p % 2 == 1) == odd))
                .map(move |p| PacketBuilder::new(source_v4(s), TARGET_V4).syn(p).build())
        })
        .collect()
}

/// Each scanner's port_scan measure and bits set.
fn counts(h: &scanwatch_tests::harness::Harness) -> Vec<(u32, u32)> {
    (0..SCANNERS)
        .map(|s| {
            let state: SourceState = h.tracked(&key_of(source_v4(s))).unwrap().unwrap();
            (
                state.measures[DetectionKind::PortScan as usize],
                state.tcp_ports.bits_set(),
            )
        })
        .collect()
}

#[test]
fn a_scan_split_across_two_cpus_counts_as_on_one() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let mut one = load_with(&no_admission());
    one.run_on_cpus(&[(0, probes(None))]).unwrap();
    let mut two = load_with(&no_admission());
    two.run_on_cpus(&[(0, probes(Some(true))), (1, probes(Some(false)))])
        .unwrap();
    let (alone, split) = (counts(&one), counts(&two));
    let lost_measure: i64 = alone
        .iter()
        .zip(&split)
        .map(|(a, s)| i64::from(a.0) - i64::from(s.0))
        .sum();
    let lost_bits: i64 = alone
        .iter()
        .zip(&split)
        .map(|(a, s)| i64::from(a.1) - i64::from(s.1))
        .sum();
    println!(
        "{SCANNERS} scanners x {PORTS} ports on two CPUs: port_scan measures {lost_measure} \
         lower in all than on one CPU, bits set {lost_bits} lower"
    );
    let bits = SourceState::estimator_bits(DetectionKind::PortScan).unwrap();
    for (s, (a, p)) in alone.iter().zip(&split).enumerate() {
        assert!(
            a.0.abs_diff(p.0) <= error_bound(u32::from(PORTS), bits).ceil() as u32,
            "scanner {s}: measure {} on two CPUs, {} on one",
            p.0,
            a.0
        );
        assert!(
            p.0 >= a.0,
            "scanner {s}: two CPUs counted {} of {}",
            p.0,
            a.0
        );
    }
}
