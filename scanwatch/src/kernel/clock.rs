//! Time as the kernel programs see it (CLOCK_MONOTONIC, at tick resolution) and as people read
//! it (RFC 3339, UTC), and the calibration that lets the programs read it cheaply.

use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::Array,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use log::{info, warn};
use nix::time::{ClockId, clock_gettime};
use scanwatch_common::{
    maps::CLOCK_SAMPLE,
    programs::CLOCK,
    ticks::{self, ClockSample, MIN_CALIBRATION_NS, Ticks},
};

/// Converts the kernel programs' timestamps (CLOCK_MONOTONIC nanoseconds, at tick resolution)
/// to wall time.
#[derive(Clone, Copy, Debug)]
pub struct Clock;

impl Clock {
    /// Current CLOCK_MONOTONIC in nanoseconds: the kernel programs' clock.
    pub fn monotonic_ns() -> u64 {
        // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make every TTL look expired.
        clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
            ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
        })
    }

    /// Wall-clock time of a kernel monotonic timestamp.
    pub fn wall(kernel_ns: u64) -> SystemTime {
        let now_mono = Self::monotonic_ns();
        let now = SystemTime::now();
        if kernel_ns <= now_mono {
            now - Duration::from_nanos(now_mono - kernel_ns)
        } else {
            now + Duration::from_nanos(kernel_ns - now_mono)
        }
    }
}

/// Measures the kernel's tick rate and offset with the calibration program
/// (`programs::CLOCK`), so the data path reads jiffies instead of calling
/// `bpf_ktime_get_coarse_ns` (`scanwatch_common::ticks`). Takes
/// [`MIN_CALIBRATION_NS`] and a little more. `None`, logged, when it fails: the data path then
/// keeps the coarse clock, which is correct, only slower. Blocks while it waits: the agent
/// calls it once at start, before it serves anything.
pub fn calibrate_kernel_clock(ebpf: &mut Ebpf) -> Option<Ticks> {
    match calibrate(ebpf) {
        Ok(Some(ticks)) => {
            info!(
                "data-path clock: jiffies at {} Hz ({} ns per tick)",
                1_000_000_000 / ticks.tick_ns,
                ticks.tick_ns
            );
            Some(ticks)
        }
        Ok(None) => {
            warn!("data-path clock: the tick rate matches no CONFIG_HZ; using the coarse clock");
            None
        }
        Err(e) => {
            warn!("data-path clock: calibration failed ({e:#}); using the coarse clock");
            None
        }
    }
}

/// [`calibrate_kernel_clock`] with its failure, for callers (tests) that want to see it.
pub fn calibrate(ebpf: &mut Ebpf) -> anyhow::Result<Option<Ticks>> {
    clock_program(ebpf)?
        .load()
        .context("loading the calibration program")?;
    let first = clock_sample(ebpf)?;
    std::thread::sleep(Duration::from_nanos(MIN_CALIBRATION_NS) + Duration::from_millis(20));
    let last = clock_sample(ebpf)?;
    Ok(ticks::calibrate(first, last))
}

/// One run of the calibration program: both clocks, read together in the kernel.
fn clock_sample(ebpf: &mut Ebpf) -> anyhow::Result<ClockSample> {
    // The program reads no packet; XDP test runs want at least an Ethernet header.
    let frame = [0u8; 64];
    clock_program(ebpf)?
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: 1,
            ..TestRunOptions::default()
        })
        .context("test run of the calibration program")?;
    let map = ebpf
        .map(CLOCK_SAMPLE)
        .ok_or_else(|| anyhow!("map {CLOCK_SAMPLE} missing from the object"))?;
    let samples: Array<_, ClockSample> = Array::try_from(map)?;
    Ok(samples.get(&0, 0)?)
}

/// The calibration program of the object.
fn clock_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(CLOCK)
        .ok_or_else(|| anyhow!("program {CLOCK} missing from the object"))?
        .try_into()?)
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_timestamps_map_to_wall_time_around_now() {
        let mono = Clock::monotonic_ns();
        assert!(mono > 0);
        let wall = Clock::wall(mono - 2_000_000_000);
        let age = SystemTime::now().duration_since(wall).unwrap();
        assert!(
            age >= Duration::from_secs(2) && age < Duration::from_secs(3),
            "{age:?}"
        );
        assert!(rfc3339(SystemTime::UNIX_EPOCH).starts_with("1970-01-01T00:00:00.000Z"));
    }
}
