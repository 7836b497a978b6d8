//! The data path's clock: jiffies converted with the agent's calibration
//! (`scanwatch_common::ticks`) read as CLOCK_MONOTONIC, like the coarse clock it replaces.

use std::time::Duration;

use scanwatch::kernel::clock::Clock;
use scanwatch_common::{config::KernelConfig, state::SourceState, ticks::KNOWN_HZ};
use scanwatch_tests::harness::{Harness, kernel_ticks};

use crate::{SCANNER_V4, key_of, load, no_admission, scan_v4, send, state_of};

/// Sends a probe between two CLOCK_MONOTONIC readings; returns them and the source's state.
fn probe_between(h: &mut Harness) -> (u64, SourceState, u64) {
    let before = Clock::monotonic_ns();
    send(h, scan_v4().syn(22));
    let after = Clock::monotonic_ns();
    (before, state_of(h, &key_of(SCANNER_V4)), after)
}

#[test]
fn the_calibration_finds_the_kernels_tick() {
    let ticks = kernel_ticks().unwrap();
    let hz = 1_000_000_000 / ticks.tick_ns;
    assert!(KNOWN_HZ.contains(&hz), "{} ns per tick", ticks.tick_ns);
}

#[test]
fn the_calibrated_clock_reads_monotonic_time_like_the_coarse_clock() {
    let tick = kernel_ticks().unwrap().tick_ns;
    for calibrated in [true, false] {
        let mut h = load();
        let config = no_admission();
        if calibrated {
            h.set_config(&config).unwrap();
        } else {
            h.set_config_raw(&KernelConfig {
                tick_ns: 0,
                ..config
            })
            .unwrap();
        }
        let (before, first, after) = probe_between(&mut h);
        // Both clocks read the time of the last tick.
        assert!(
            first.last_seen_ns + 2 * tick >= before && first.last_seen_ns <= after + tick,
            "calibrated {calibrated}: {} not in [{before}, {after}]",
            first.last_seen_ns
        );
        std::thread::sleep(Duration::from_millis(300));
        let (before2, second, after2) = probe_between(&mut h);
        let kernel = second.last_seen_ns - first.last_seen_ns;
        // The kernel's elapsed time is the monotonic one's, to a tick at each end.
        assert!(
            kernel + 2 * tick >= before2 - after && kernel <= after2 - before + 2 * tick,
            "calibrated {calibrated}: {kernel} ns between probes, monotonic {}..{}",
            before2 - after,
            after2 - before
        );
    }
}
