//! Where a tracked probe's cost goes: the product program timed under
//! `BPF_PROG_TEST_RUN` on one frame with one piece of work switched off at a time through its
//! configuration (no source change), next to the empty program and the reference counter.
//! Run with `cargo run --release -p scanwatch-tests --bin path_cost` as root.
//!
//! This VM exposes no hardware performance counters, so `bpftool prog profile` cannot count
//! cycles or instructions; differences of timings in one run stand in for them. Each figure
//! is the median of [`RUNS`] calls of [`REPEAT`] runs, pinned to CPU 0. Nothing is asserted.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result};
use scanwatch::config::{Config, Overrides};
use scanwatch_common::{addr::SourceKey, config::KernelConfig};
use scanwatch_tests::{
    harness::{Harness, Object},
    packet::{PacketBuilder, tcp_flags},
    require_root,
};

const REPEAT: u32 = 1_000_000;
/// A case whose configuration is written as it is, without the harness's clock calibration:
/// the program then calls `bpf_ktime_get_coarse_ns`.
const AS_WRITTEN: bool = true;
const RUNS: usize = 5;
const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn main() -> Result<()> {
    require_root();
    pin_to_cpu0()?;
    let syn = PacketBuilder::new(SRC, DST).syn(80).build();
    let udp = PacketBuilder::new(SRC, DST)
        .src_port(33_000)
        .udp(53)
        .build();
    let ack = PacketBuilder::new(SRC, DST)
        .src_port(443)
        .tcp(40_000, tcp_flags::ACK)
        .build();
    let daemon = Config::build(None, &Overrides::default())
        .context("the default configuration")?
        .kernel_config(0x5eed);
    let bare = KernelConfig::default();
    let fixed_clock = KernelConfig {
        clock_override_ns: 1_000_000_000_000,
        ..bare
    };
    let no_long = KernelConfig {
        long_window_ns: 0,
        ..daemon
    };
    let mut no_distributed = no_long;
    no_distributed.thresholds[scanwatch_common::event::DetectionKind::DistributedScan as usize] = 0;

    println!("frame / configuration                                   ns/packet  over empty");
    let floor = time(&mut Harness::load_with(Object::Empty, None)?, &syn)?;
    println!("{:<56} {floor:>9}", "empty program (SYN frame)");
    let mut reference = Harness::load_with(Object::Reference, None)?;
    reference.run_repeat(&syn, 3)?;
    row(
        "reference counter, SYN (one LRU lookup, one increment)",
        time(&mut reference, &syn)?,
        floor,
    );
    // Every configuration gets the agent's clock calibration (jiffies) from the harness, but
    // `fixed_clock` (no clock read) and those written `AS_WRITTEN`.
    let cases: [(&str, &[u8], KernelConfig, bool); 11] = [
        (
            "established ACK (parse, classify, CONFIG)",
            &ack,
            bare,
            false,
        ),
        (
            "tracked SYN, all-zero config (the bench's tracked_syn)",
            &syn,
            bare,
            false,
        ),
        (
            "  same, fixed clock (no clock read)",
            &syn,
            fixed_clock,
            false,
        ),
        (
            "  same, coarse clock (bpf_ktime_get_coarse_ns)",
            &syn,
            bare,
            AS_WRITTEN,
        ),
        (
            "tracked SYN, the daemon's default config",
            &syn,
            daemon,
            false,
        ),
        (
            "  same without the long window (LONG)",
            &syn,
            no_long,
            false,
        ),
        (
            "  same without long window and distributed (TARGETS)",
            &syn,
            no_distributed,
            false,
        ),
        ("tracked UDP probe, all-zero config", &udp, bare, false),
        ("  same, fixed clock", &udp, fixed_clock, false),
        ("  same, coarse clock", &udp, bare, AS_WRITTEN),
        (
            "tracked UDP probe, the daemon's default config",
            &udp,
            daemon,
            false,
        ),
    ];
    for (name, frame, config, as_written) in cases {
        let mut h = Harness::load()?;
        if as_written {
            h.set_config_raw(&config)?;
        } else {
            h.set_config(&config)?;
        }
        for _ in 0..3 {
            h.run(frame)?;
        }
        if frame != ack.as_slice() {
            let key = SourceKey::from_ipv4(SRC.octets());
            anyhow::ensure!(
                h.tracked(&key)?.is_some(),
                "{name}: the source is not tracked"
            );
        }
        row(name, time(&mut h, frame)?, floor);
    }
    Ok(())
}

fn row(name: &str, ns: u64, floor: u64) {
    println!("{name:<56} {ns:>9} {:>11}", ns.saturating_sub(floor));
}

/// Median ns/packet of [`RUNS`] calls.
fn time(h: &mut Harness, frame: &[u8]) -> Result<u64> {
    let mut ns = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        ns.push(h.run_repeat(frame, REPEAT)?.1);
    }
    ns.sort_unstable();
    Ok(ns[RUNS / 2])
}

fn pin_to_cpu0() -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        anyhow::ensure!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) == 0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
