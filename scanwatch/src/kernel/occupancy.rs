//! How many entries the tracker and the flow map hold, between full walks.
//!
//! Counting an LRU hash map means reading all of it: with 100,000 sources of 816 bytes a batch
//! walk ([`crate::kernel::batch`]) costs tens of milliseconds of CPU. The daemon walks both maps for the
//! exact counts and the top list every 5 to 60 s (longer as walks get costlier), and in between
//! derives the counts from the data path's insert counters (`tracker_inserts`,
//! `flows_recorded`), read every second with the other statistics.
//!
//! Neither map loses entries except by LRU eviction (no program or tool deletes from them), and
//! the LRU evicts only when the map is (nearly) full. So between walks, the entries present
//! are at most `walked + inserts since the walk`, capped at the capacity: exact while the map
//! is filling, the capacity once full; the next walk corrects any overshoot (entries the
//! kernel evicted before the map was exactly full, about 0.1 % of it here).

/// One map's occupancy: its last full walk plus the inserts counted since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    capacity: u64,
    /// Entries the last walk met; `None` before the first walk.
    walked: Option<u64>,
    /// The insert counter read just before that walk started.
    inserts_at_walk: u64,
}

impl Occupancy {
    pub const fn new(capacity: u32) -> Self {
        Self {
            capacity: capacity as u64,
            walked: None,
            inserts_at_walk: 0,
        }
    }

    /// A full walk met `present` entries; `inserts` is the insert counter read just *before*
    /// it started (an insert during the walk may be met by it and counted again: an overshoot
    /// until the next walk, never a miss).
    pub fn walked(&mut self, present: usize, inserts: u64) {
        self.walked = Some(present as u64);
        self.inserts_at_walk = inserts;
    }

    /// The entries present now, given the insert counter now; `None` before the first walk.
    pub fn estimate(&self, inserts: u64) -> Option<usize> {
        let since = inserts.saturating_sub(self.inserts_at_walk);
        self.walked.map(|walked| {
            let present = walked.saturating_add(since).min(self.capacity);
            usize::try_from(present).unwrap_or(usize::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_known_before_the_first_walk() {
        assert_eq!(Occupancy::new(100).estimate(7), None);
    }

    #[test]
    fn inserts_after_a_walk_add_to_its_count() {
        let mut o = Occupancy::new(1000);
        o.walked(40, 500);
        assert_eq!(o.estimate(500), Some(40));
        assert_eq!(o.estimate(510), Some(50));
    }

    #[test]
    fn a_full_map_stays_at_its_capacity() {
        let mut o = Occupancy::new(100);
        o.walked(99, 10);
        assert_eq!(o.estimate(10_000), Some(100));
    }

    #[test]
    fn the_next_walk_replaces_the_estimate() {
        let mut o = Occupancy::new(100);
        o.walked(90, 0);
        assert_eq!(o.estimate(20), Some(100));
        o.walked(97, 20);
        assert_eq!(o.estimate(20), Some(97));
    }

    #[test]
    fn a_counter_that_went_back_adds_nothing() {
        // A restarted data path (a new object) starts its counters at zero.
        let mut o = Occupancy::new(100);
        o.walked(30, 50);
        assert_eq!(o.estimate(5), Some(30));
    }
}
