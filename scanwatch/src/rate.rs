//! Token buckets: how the daemon bounds what a flood can make it do (alerts written, blocks
//! added). A bucket holds at most `burst` tokens and refills at `per_second`, continuously.

use std::time::Instant;

/// A token bucket, starting full.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket of `burst` tokens refilled at `per_second`, starting full.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::starting_at(per_second, burst, Instant::now())
    }

    /// [`TokenBucket::new`] with the clock starting at `now` (for tests).
    pub fn starting_at(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::starting_at(10, 5, start);
        assert_eq!((0..20).filter(|_| b.take(start)).count(), 5);
        // 1 s later: 10 tokens refilled, capped at the burst of 5.
        let later = start + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| b.take(later)).count(), 5);
        // 100 ms later: one more.
        let t = later + Duration::from_millis(100);
        assert_eq!((0..20).filter(|_| b.take(t)).count(), 1);
    }

    #[test]
    fn bucket_grants_at_most_burst_plus_rate_times_time_under_a_flood() {
        let start = Instant::now();
        let mut b = TokenBucket::starting_at(10, 100, start);
        // 10 s of a flood asking 1000 times a second.
        let granted = (0..10_000)
            .filter(|i| b.take(start + Duration::from_millis(*i)))
            .count();
        assert!((190..=200).contains(&granted), "{granted}");
    }
}
