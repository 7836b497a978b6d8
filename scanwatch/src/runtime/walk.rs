//! The agent's view of how full the tracker and the flow map are: a full walk of both every 5
//! to 60 s (exact counts and the busiest sources), and between walks the data path's insert
//! counters (`kernel::occupancy`).

use std::time::Duration;

use log::{debug, warn};
use scanwatch_common::{
    maps::FLOWS_CAPACITY,
    stats::{Counter, counter_slot},
};

use crate::{
    kernel::{maps::Maps, occupancy::Occupancy},
    net::format_source,
    outputs::metrics::Metrics,
};

/// The shortest interval between full reads of the tracker and the flow map (batch lookups):
/// exact counts, the top-sources gauge and the status file's top list. Between walks the
/// tracked-sources and flow gauges follow the data path's insert counters ([`Occupancy`]),
/// refreshed with the other statistics.
const MIN_WALK_INTERVAL: Duration = Duration::from_secs(5);
/// The longest interval between full walks.
const MAX_WALK_INTERVAL: Duration = Duration::from_secs(60);
/// The next walk waits this many times the CPU time the last one took, so walks use at most
/// 1/200 (0.5 %) of a core: a batch walk of 100,000 sources and a full flow map takes tens of
/// ms, which every 5 s kept an idle daemon above 1 % of a core. Small maps are still walked
/// every [`MIN_WALK_INTERVAL`].
const WALK_COST_FACTOR: u32 = 200;
/// Sources listed in the status file's top list.
pub const STATUS_TOP: usize = 10;

/// What the last full walk found, for the gauges and the status file between walks.
pub struct Walked {
    tracker: Occupancy,
    flows: Occupancy,
    /// The busiest sources (formatted), most first.
    pub top: Vec<(String, u64)>,
    /// When the next walk is due.
    pub next: tokio::time::Instant,
}

impl Walked {
    /// Nothing walked yet; the first walk is due now.
    pub fn new(tracker_capacity: u32) -> Self {
        Self {
            tracker: Occupancy::new(tracker_capacity),
            flows: Occupancy::new(FLOWS_CAPACITY),
            top: Vec::new(),
            next: tokio::time::Instant::now(),
        }
    }

    /// Folds the kernel statistics into the metrics, and the inserts since the last walk into
    /// the tracked-sources and flow gauges; returns the statistics read.
    pub fn refresh_stats(&self, maps: &Maps, metrics: &Metrics) -> Option<Vec<u64>> {
        match maps.stats.read() {
            Ok(stats) => {
                metrics.update_kernel(&stats);
                let inserts = |counter| {
                    stats
                        .get(counter_slot(counter) as usize)
                        .copied()
                        .unwrap_or(0)
                };
                if let Some(tracked) = self.tracker.estimate(inserts(Counter::TrackerInserts)) {
                    metrics.set_tracked(tracked);
                }
                if let Some(flows) = self.flows.estimate(inserts(Counter::FlowsRecorded)) {
                    metrics.set_flows(flows);
                }
                Some(stats)
            }
            Err(e) => {
                warn!("reading kernel statistics: {e:#}");
                None
            }
        }
    }

    /// Walks the tracker and the flow map in full: exact counts for the gauges, the top
    /// sources for their gauge (`top_sources` of them) and the status file.
    pub fn walk(&mut self, maps: &Maps, metrics: &Metrics, ipv6_prefix: u32, top_sources: usize) {
        let started = thread_cpu_time();
        // Before the walk: an insert during it is then counted twice at worst, never missed.
        // Unreadable counters: a baseline no later reading exceeds, so the gauges keep this
        // walk's counts until the next walk.
        let (tracker_inserts, flow_inserts) = insert_counters(maps).unwrap_or((u64::MAX, u64::MAX));
        let (tracked, top) = maps.tracker.top(top_sources.max(STATUS_TOP));
        let flows = maps.flows.len();
        self.tracker.walked(tracked, tracker_inserts);
        self.flows.walked(flows, flow_inserts);
        self.top = top
            .into_iter()
            .map(|(key, probes)| (format_source(&key, ipv6_prefix), probes))
            .collect();
        // CPU time, not wall time: on a busy host a walk waits for the CPU without costing any.
        let took = thread_cpu_time().saturating_sub(started);
        metrics.map_walk_cpu_seconds.set(took.as_secs_f64());
        self.next = tokio::time::Instant::now() + walk_interval(took);
        debug!("walked {tracked} sources and {flows} flows in {took:?}");
        metrics.set_flows(flows);
        metrics.set_tracked(tracked);
        metrics.set_top_sources(&self.top[..self.top.len().min(top_sources)]);
    }

    /// Sources tracked now: the last walk's count plus the inserts since (see [`Occupancy`]).
    pub fn tracked_now(&self, maps: &Maps) -> usize {
        // Unreadable counters: 0 adds nothing to the last walk's count.
        let (tracker_inserts, _) = insert_counters(maps).unwrap_or((0, 0));
        self.tracker.estimate(tracker_inserts).unwrap_or(0)
    }
}

/// The insert counters of the tracker and the flow map, summed over CPUs; `None` when they
/// cannot be read.
fn insert_counters(maps: &Maps) -> Option<(u64, u64)> {
    let read = |counter| maps.stats.get(counter_slot(counter)).ok();
    Some((
        read(Counter::TrackerInserts)?,
        read(Counter::FlowsRecorded)?,
    ))
}

/// CPU time of the calling thread (zero if the clock cannot be read: walks then run every
/// [`MIN_WALK_INTERVAL`]).
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// The wait before the next full walk, given the CPU time the last one took.
fn walk_interval(took: Duration) -> Duration {
    (took * WALK_COST_FACTOR).clamp(MIN_WALK_INTERVAL, MAX_WALK_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_slow_down_as_they_get_costlier() {
        // A small map: the shortest interval.
        assert_eq!(walk_interval(Duration::from_millis(2)), MIN_WALK_INTERVAL);
        // 100,000 sources (about 60 ms): 12 s, so walks take 0.5 % of a core.
        assert_eq!(
            walk_interval(Duration::from_millis(60)),
            Duration::from_secs(12)
        );
        // A stalled walk never stops the gauges for more than a minute.
        assert_eq!(walk_interval(Duration::from_secs(3)), MAX_WALK_INTERVAL);
    }
}
