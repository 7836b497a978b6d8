//! Spoofed floods: the admission filter keeps the tracker for real scanners.

use rand::Rng as _;
use scanwatch_common::{classify::PacketClass, state::SourceState, stats::Counter};
use scanwatch_tests::{
    harness::{Harness, Object, XDP_PASS},
    require_root,
};

use crate::{SCANNER_V4, key_of, no_admission, pass, scan_v4, send, state_of};

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
