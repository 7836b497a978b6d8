//! The kernel's tick counter (jiffies) read as CLOCK_MONOTONIC nanoseconds.
//!
//! The data path needs "now" once per tracked probe, at the resolution of its windows
//! (minutes) and flow timeouts (seconds). `bpf_ktime_get_coarse_ns` is a helper call (15–20 ns
//! under `BPF_PROG_TEST_RUN` here); `bpf_jiffies64` is inlined by the verifier into one
//! load. Jiffies count ticks, so the program converts them with a tick length and an offset the
//! daemon measures at start ([`calibrate`]): Linux advances `jiffies_64` by exactly one tick
//! length (`TICK_NSEC`) of CLOCK_MONOTONIC per tick, so `jiffies · tick_ns + offset_ns` stays
//! within a tick of the coarse monotonic clock for the life of the boot.

/// Tick rates a kernel is built with (`CONFIG_HZ`): the values Kconfig offers.
pub const KNOWN_HZ: [u64; 4] = [100, 250, 300, 1000];

/// The shortest interval between the two samples of [`calibrate`]: 20 ticks at 100 Hz, enough
/// to tell every rate of [`KNOWN_HZ`] from its neighbours.
pub const MIN_CALIBRATION_NS: u64 = 200_000_000;

/// The largest relative error between the measured and a known rate that still names it.
const TOLERANCE: f64 = 0.1;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Both clocks, read together by one run of the kernel's calibration program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSample {
    /// `bpf_jiffies64()`.
    pub jiffies: u64,
    /// `bpf_ktime_get_coarse_ns()`: CLOCK_MONOTONIC_COARSE.
    pub monotonic_ns: u64,
}

/// How the data path turns jiffies into CLOCK_MONOTONIC nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticks {
    /// Nanoseconds per tick: the kernel's `TICK_NSEC`, `(10⁹ + HZ/2) / HZ`.
    pub tick_ns: u64,
    /// CLOCK_MONOTONIC at jiffies 0 (wrapping: jiffies start near 2³² − 300·HZ, not at 0).
    pub offset_ns: u64,
}

impl Ticks {
    /// CLOCK_MONOTONIC nanoseconds of a jiffies reading.
    #[inline(always)]
    pub const fn ns(&self, jiffies: u64) -> u64 {
        jiffies
            .wrapping_mul(self.tick_ns)
            .wrapping_add(self.offset_ns)
    }
}

/// The tick length and offset from two samples at least [`MIN_CALIBRATION_NS`] apart, or
/// `None` when the samples are too close, out of order, or the measured rate is no known
/// `CONFIG_HZ` (then the data path keeps the coarse clock).
pub fn calibrate(first: ClockSample, last: ClockSample) -> Option<Ticks> {
    let elapsed = last.monotonic_ns.checked_sub(first.monotonic_ns)?;
    if elapsed < MIN_CALIBRATION_NS {
        return None;
    }
    let ticks = last.jiffies.checked_sub(first.jiffies)?;
    let measured = ticks as f64 * NS_PER_SEC as f64 / elapsed as f64;
    let hz = KNOWN_HZ
        .into_iter()
        .find(|&hz| (measured - hz as f64).abs() <= hz as f64 * TOLERANCE)?;
    let tick_ns = (NS_PER_SEC + hz / 2) / hz;
    // Both clocks move on the tick, so one sample fixes the offset to within a tick.
    let offset_ns = last
        .monotonic_ns
        .wrapping_sub(last.jiffies.wrapping_mul(tick_ns));
    Some(Ticks { tick_ns, offset_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel at `hz` whose jiffies started at Linux's `INITIAL_JIFFIES` at boot.
    fn sample(hz: u64, monotonic_ns: u64) -> ClockSample {
        let initial = u64::from((-300i64 * hz as i64) as u32);
        let tick = (NS_PER_SEC + hz / 2) / hz;
        ClockSample {
            jiffies: initial.wrapping_add(monotonic_ns / tick),
            // The coarse clock reads the time of the last tick.
            monotonic_ns: monotonic_ns / tick * tick,
        }
    }

    #[test]
    fn every_known_rate_is_recognised_and_converts_within_a_tick() {
        for hz in KNOWN_HZ {
            let boot = 3_600 * NS_PER_SEC + 123_456_789;
            let t = calibrate(sample(hz, boot), sample(hz, boot + 250_000_000)).unwrap();
            assert_eq!(t.tick_ns, (NS_PER_SEC + hz / 2) / hz, "HZ {hz}");
            // A day later, still the coarse clock to the tick.
            for later in [boot, boot + 86_400 * NS_PER_SEC + 7] {
                let s = sample(hz, later);
                let ns = t.ns(s.jiffies);
                assert!(ns.abs_diff(later) < t.tick_ns, "HZ {hz}: {ns} vs {later}");
            }
        }
    }

    #[test]
    fn a_tick_of_jitter_still_names_the_rate() {
        let mut last = sample(100, 200_000_000 + NS_PER_SEC);
        let first = sample(100, NS_PER_SEC);
        last.jiffies += 1;
        assert_eq!(calibrate(first, last).unwrap().tick_ns, 10_000_000);
        last.jiffies -= 2;
        assert_eq!(calibrate(first, last).unwrap().tick_ns, 10_000_000);
    }

    #[test]
    fn too_close_backwards_or_unknown_rates_are_refused() {
        let first = sample(250, NS_PER_SEC);
        assert_eq!(calibrate(first, sample(250, NS_PER_SEC + 10_000_000)), None);
        assert_eq!(calibrate(sample(250, 2 * NS_PER_SEC), first), None);
        // 500 Hz is no CONFIG_HZ choice: keep the coarse clock rather than guess.
        let odd = ClockSample {
            jiffies: first.jiffies + 250,
            monotonic_ns: first.monotonic_ns + 500_000_000,
        };
        assert_eq!(calibrate(first, odd), None);
        // Jiffies that did not move (a frozen counter).
        let frozen = ClockSample {
            jiffies: first.jiffies,
            monotonic_ns: first.monotonic_ns + NS_PER_SEC,
        };
        assert_eq!(calibrate(first, frozen), None);
    }
}
