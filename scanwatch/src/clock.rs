//! Time as the kernel programs see it (CLOCK_MONOTONIC, `bpf_ktime_get_ns`) and as people read
//! it (RFC 3339, UTC).

use std::time::{Duration, SystemTime};

use nix::time::{ClockId, clock_gettime};

/// Converts kernel monotonic timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall time.
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
