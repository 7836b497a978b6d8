//! The programs' clock: CLOCK_MONOTONIC nanoseconds at tick resolution, read once per packet
//! that needs it.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use scanwatch_common::{config::KernelConfig, ticks::ClockSample};

use crate::maps::CLOCK_SAMPLE;

/// Now, in CLOCK_MONOTONIC nanoseconds: jiffies converted with the daemon's calibration
/// (`scanwatch_common::ticks`; the verifier inlines `bpf_jiffies64` into one load), or the
/// injected clock of a test (`clock_override_ns`, with `tick_ns` 0), or, with neither,
/// CLOCK_MONOTONIC_COARSE (`bpf_ktime_get_coarse_ns`, a helper call). Windows last minutes and
/// flows seconds, so a tick (1-10 ms) is resolution enough.
///
/// One branch, as before the calibration: the clock is read on most paths, and each branch
/// here is walked by the verifier on every one of them.
#[inline(always)]
pub fn now(config: &KernelConfig) -> u64 {
    if config.tick_ns | config.clock_override_ns == 0 {
        // SAFETY: helper with no arguments.
        return unsafe { bpf_ktime_get_coarse_ns() };
    }
    // SAFETY: helper with no arguments. A test's clock has `tick_ns` 0 and no offset.
    config
        .ticks()
        .ns(unsafe { bpf_jiffies64() })
        .wrapping_add(config.clock_override_ns)
}

/// Writes both clocks, read back to back, into `CLOCK_SAMPLE` for the daemon's calibration.
#[inline(always)]
pub fn write_sample() {
    if let Some(slot) = CLOCK_SAMPLE.get_ptr_mut(0) {
        // SAFETY: helpers with no arguments; `slot` points into the array's only value.
        unsafe {
            *slot = ClockSample {
                jiffies: bpf_jiffies64(),
                monotonic_ns: bpf_ktime_get_coarse_ns(),
            };
        }
    }
}
