//! Token buckets: how the daemon bounds what a flood can make it do (alerts written, blocks
//! added). A bucket holds at most `burst` tokens and refills at `per_second`, continuously.
//! [`Shares`] give each source prefix a bucket of its own beside the overall one, so a flood
//! that claims one prefix spends that prefix's share, not the budget a real scanner elsewhere
//! needs.

use std::{collections::HashMap, hash::Hash, time::Instant};

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

/// Keys whose share is remembered; past it the shares start over (a flood spread over more
/// prefixes than this is bounded by the overall bucket alone).
pub const MAX_SHARES: usize = 4096;

/// A share's rate or burst from the whole's: a tenth, at least one.
pub const fn share_of(whole: u32) -> u32 {
    if whole / 10 > 1 { whole / 10 } else { 1 }
}

/// A token bucket per key (a source prefix), each starting full, bounded in keys.
#[derive(Debug)]
pub struct Shares<K> {
    per_second: u32,
    burst: u32,
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Hash + Eq> Shares<K> {
    /// Buckets of `burst` tokens refilled at `per_second`, one per key.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token of `key`'s bucket at `now`; false when that share is spent.
    pub fn take(&mut self, key: K, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SHARES && !self.buckets.contains_key(&key) {
            self.buckets.clear();
        }
        let (per_second, burst) = (self.per_second, self.burst);
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::starting_at(per_second, burst, now))
            .take(now)
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
    fn a_flood_on_one_key_spends_its_share_only() {
        let start = Instant::now();
        let mut shares = Shares::new(2, 3);
        assert_eq!((0..100).filter(|_| shares.take(1, start)).count(), 3);
        assert!(shares.take(2, start), "another key has its own share");
        let later = start + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| shares.take(1, later)).count(), 2);
        assert_eq!(share_of(10), 1);
        assert_eq!(share_of(50), 5);
        assert_eq!(share_of(0), 1);
    }

    #[test]
    fn shares_stay_bounded_in_keys() {
        let start = Instant::now();
        let mut shares = Shares::new(1, 1);
        for key in 0..(MAX_SHARES as u32 * 3) {
            assert!(shares.take(key, start));
        }
        assert!(shares.buckets.len() <= MAX_SHARES);
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
