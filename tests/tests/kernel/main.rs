//! Kernel tests: the real scanwatch XDP object under `BPF_PROG_TEST_RUN`, one file per feature.
//!
//! Every test loads a fresh program (so fresh maps), feeds it frames built by `PacketBuilder`
//! and checks outcomes: the verdict, the statistics slots, the tracker's per-source state and
//! the events in the ring buffer. Packets use documentation addresses only (RFC 5737, RFC 3849)
//! and never leave the test run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Error;
use scanwatch_common::{
    addr::{DEFAULT_IPV6_PREFIX_LEN, SourceKey},
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, KernelConfig},
    distinct::bits_for_count,
    event::DetectionKind,
    state::SourceState,
    stats::{Counter, PARSE_ERROR_BASE, PARSE_ERRORS, ParseError, class_slot, parse_error_slot},
};
use scanwatch_tests::{
    harness::{Harness, XDP_PASS},
    packet::PacketBuilder,
    require_root,
};

// One file per feature; the helpers below are theirs to share.
mod ack_scan;
mod block;
mod classify;
mod clock;
mod closes;
mod cpus;
mod differential;
mod distributed;
mod distributed_sweep;
mod encapsulation;
mod estimates;
mod events;
mod evidence;
mod flags;
mod flood;
mod fragments;
mod gauges;
mod ignore;
mod load;
mod malformed;
mod protocols;
mod repeats;
mod replies;
mod slow;
mod tools;
mod tracking;
mod web;
mod wide_prefix;

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

/// The kernel-unit threshold of `kind` for `count` distinct targets (in its estimator's bits).
fn threshold(kind: DetectionKind, count: u32) -> u32 {
    bits_for_count(count, SourceState::estimator_bits(kind).unwrap())
}

/// What the distributed tests run under, each file with its own `hash_seed`: a clock, a 300 s
/// window, the admission filter on (a source's first probe is not counted, as in production),
/// the medium thresholds of the per-source scans (port scan 20, host sweep 25, UDP scan 15) and
/// a distributed scan at `distributed_ports` ports of one destination.
fn medium_config(hash_seed: u64, distributed_ports: u32) -> KernelConfig {
    let mut c = KernelConfig {
        window_ns: 300 * SECOND,
        clock_override_ns: T0,
        hash_seed,
        ..KernelConfig::default()
    };
    for (kind, count) in [
        (DetectionKind::PortScan, 20),
        (DetectionKind::HostSweep, 25),
        (DetectionKind::UdpScan, 15),
        (DetectionKind::DistributedScan, distributed_ports),
    ] {
        c.thresholds[kind as usize] = threshold(kind, count);
    }
    c
}

/// Source `i` of the distributed tests: TEST-NET-1 and TEST-NET-3, never TEST-NET-2, where
/// their targets are.
fn source_v4(i: u32) -> Ipv4Addr {
    doc_v4(if i < 256 { i } else { i + 256 })
}

/// Forged SYNs to one destination: each source a new address counting up from a first one
/// (never one twice), each SYN to a new port counting up from just above `ports_from` and
/// wrapping back to it.
struct Forger {
    frame: Vec<u8>,
    src: usize,
    dst_port: usize,
    next_source: u32,
    ports_from: u16,
    next_port: u16,
}

impl Forger {
    fn new(dst: Ipv4Addr, first_source: Ipv4Addr, ports_from: u16) -> Self {
        let builder = PacketBuilder::new(first_source, dst).syn(ports_from);
        Self {
            frame: builder.build(),
            src: builder.l3_offset() + 12,
            dst_port: builder.l4_offset() + 2,
            next_source: u32::from(first_source),
            ports_from,
            next_port: ports_from,
        }
    }

    /// `sources` forged sources, each sending `syns` SYNs to new ports.
    fn send(&mut self, h: &mut Harness, sources: u32, syns: u32) {
        for _ in 0..sources {
            let source = self.next_source;
            self.next_source += 1;
            self.frame[self.src..self.src + 4].copy_from_slice(&source.to_be_bytes());
            for _ in 0..syns {
                self.next_port = if self.next_port == u16::MAX {
                    self.ports_from
                } else {
                    self.next_port + 1
                };
                self.frame[self.dst_port..self.dst_port + 2]
                    .copy_from_slice(&self.next_port.to_be_bytes());
                pass(h, &self.frame);
            }
        }
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

/// Checks a statistics diff over one family of slots (`family`: the packet classes, the parse
/// errors), each given as (slot, name): the one named `moved` moved by one, every other not at
/// all. One check for both families, so a frame's class and its parse error are held alike.
fn assert_only_slot_moved(
    diff: &[u64],
    family: &str,
    slots: impl IntoIterator<Item = (u32, &'static str)>,
    moved: &str,
    what: &str,
) {
    for (slot, name) in slots {
        let expected = u64::from(name == moved);
        assert_eq!(
            diff[slot as usize], expected,
            "{what}: {family} {name} moved by {} (expected only {moved} to move, by one)",
            diff[slot as usize]
        );
    }
}

/// Checks a statistics diff: `class` moved by one, every other class not at all.
fn assert_only_class_moved(diff: &[u64], class: PacketClass, what: &str) {
    let slots = PacketClass::ALL.map(|c| (class_slot(c), c.name()));
    assert_only_slot_moved(diff, "class", slots, class.name(), what);
}

/// Runs `frame` and checks that it passed, was counted in `class` and nowhere else among the
/// classes, and raised no parse error.
fn assert_class(h: &mut Harness, frame: &[u8], class: PacketClass, what: &str) {
    let (verdict, diff) = run_diff(h, frame);
    assert_eq!(verdict, XDP_PASS, "{what}: verdict");
    assert_only_class_moved(&diff, class, what);
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
    assert_only_class_moved(&diff, PacketClass::Malformed, what);
    let slots = ParseError::ALL.map(|r| (parse_error_slot(r), r.name()));
    assert_only_slot_moved(&diff, "parse error", slots, reason.name(), what);
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

/// A busy web server's visitors, which no distributed detection may take for scanners:
/// sources 0..`visitors` ([`source_v4`]) each send `rounds` SYNs to ports 80 and 443 of
/// `TARGET_V4`.
fn visit_web_server(h: &mut Harness, visitors: u32, rounds: u32) {
    for s in 0..visitors {
        for _ in 0..rounds {
            for port in [80, 443] {
                send(h, PacketBuilder::new(source_v4(s), TARGET_V4).syn(port));
            }
        }
    }
}

/// Checks the sample of sources a distributed finding carries: every one is among the
/// scanners, sources 0..`scanners` ([`source_v4`]), and the last scanner, whose probes crossed
/// the threshold, is in it.
fn assert_sample_of_scanners(sample: &[SourceKey], scanners: u32) {
    for k in sample {
        assert!(
            (0..scanners).any(|s| *k == key_of(source_v4(s))),
            "{k:?} is not a scanner"
        );
    }
    assert!(
        sample.contains(&key_of(source_v4(scanners - 1))),
        "the last scanner, which crossed the threshold, is sampled"
    );
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
