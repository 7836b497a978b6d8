//! Flood pressure: whether the traffic of the last minute has ended one of the guarantees the
//! data path's fixed-size state gives, read from its counters.
//!
//! Each guarantee holds while a state turns over less than once in the time it must keep an
//! entry: the *churn ratio* is the rate of the counter that takes a place in the state, times
//! that time, over the state's places. At or above 1 the guarantee is lost:
//!
//! | state | guarantee | counter | kept for | places |
//! |---|---|---|---|---|
//! | admission | a new source probing twice within a window is admitted | `admission_deferred` | the window (a held first probe) | `ADMISSION_SLOTS` |
//! | tracker | a tracked source keeps its state for its window | `tracker_inserts` | the window | the tracker's capacity |
//! | long_window | a slow scanner keeps its long-window state | `long_inserts` | the long window | `LONG_CAPACITY` |
//! | port_slots | a sweep's port keeps its slot in the window | `port_slots_taken` | the window | `PORT_SLOTS` |
//! | targets | a destination keeps its distributed-scan state for the window | `target_inserts` | the window | `TARGETS_CAPACITY` |
//! | wide_prefix | a wide IPv6 prefix keeps its state for the window | `wide_inserts` | the window | `WIDE_CAPACITY` |
//!
//! The agent exports each ratio and says once in its log when a guarantee is lost and when it
//! holds again ([`FloodWatch::observe`]).

use std::time::{Duration, Instant};

use scanwatch_common::{
    maps::{ADMISSION_SLOTS, LONG_CAPACITY, PORT_SLOTS, TARGETS_CAPACITY, WIDE_CAPACITY},
    stats::{Counter, counter_slot},
};

/// A guarantee of the data path's state that a flood can end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    Admission,
    Tracker,
    LongWindow,
    PortSlots,
    Targets,
    WidePrefix,
}

impl Guarantee {
    pub const ALL: [Self; 6] = [
        Self::Admission,
        Self::Tracker,
        Self::LongWindow,
        Self::PortSlots,
        Self::Targets,
        Self::WidePrefix,
    ];

    /// The state's name, the `state` label of the metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Admission => "admission",
            Self::Tracker => "tracker",
            Self::LongWindow => "long_window",
            Self::PortSlots => "port_slots",
            Self::Targets => "targets",
            Self::WidePrefix => "wide_prefix",
        }
    }

    /// What is no longer guaranteed while the state churns, for the log line.
    pub const fn lost(self) -> &'static str {
        match self {
            Self::Admission => {
                "a new source probing slower than the flood refills the admission filter may not be \
                 admitted (sources already tracked are unaffected)"
            }
            Self::Tracker => {
                "tracked sources may be evicted before their window ends, so scans may be counted \
                 low or missed"
            }
            Self::LongWindow => {
                "slow scanners may lose their long-window state before the long window ends"
            }
            Self::PortSlots => {
                "distributed sweeps may lose their port's slot to other ports and be missed"
            }
            Self::Targets => {
                "destinations may lose their distributed-scan state before the window ends, so \
                 distributed scans of them may be missed"
            }
            Self::WidePrefix => {
                "wide IPv6 prefixes may lose their state before the window ends, so a scanner \
                 rotating its /64s may be missed"
            }
        }
    }

    /// The counter that takes a place in the state.
    const fn counter(self) -> Counter {
        match self {
            Self::Admission => Counter::AdmissionDeferred,
            Self::Tracker => Counter::TrackerInserts,
            Self::LongWindow => Counter::LongInserts,
            Self::PortSlots => Counter::PortSlotsTaken,
            Self::Targets => Counter::TargetInserts,
            Self::WidePrefix => Counter::WideInserts,
        }
    }
}

/// How long each state must keep an entry, and how many places it has.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub window: Duration,
    /// Zero when the long window is off (then its state is not watched).
    pub long_window: Duration,
    pub tracker_capacity: u32,
}

impl Limits {
    /// The time an entry must be kept and the places, of `g`.
    fn of(&self, g: Guarantee) -> (Duration, u32) {
        match g {
            Guarantee::Admission => (self.window, ADMISSION_SLOTS),
            Guarantee::Tracker => (self.window, self.tracker_capacity),
            Guarantee::LongWindow => (self.long_window, LONG_CAPACITY),
            Guarantee::PortSlots => (self.window, PORT_SLOTS),
            Guarantee::Targets => (self.window, TARGETS_CAPACITY),
            Guarantee::WidePrefix => (self.window, WIDE_CAPACITY),
        }
    }
}

/// The rate is measured over periods this long (shorter when the window is).
const PERIOD: Duration = Duration::from_secs(60);

/// A guarantee that was lost or holds again, at the end of a period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    pub guarantee: Guarantee,
    pub lost: bool,
    pub ratio: f64,
}

/// The churn ratios of the last full period, and which guarantees they ended.
#[derive(Debug)]
pub struct FloodWatch {
    limits: Limits,
    /// When the current period started, and the counters then.
    period_start: Option<(Instant, Vec<u64>)>,
    ratios: [f64; Guarantee::ALL.len()],
    lost: [bool; Guarantee::ALL.len()],
}

impl FloodWatch {
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            period_start: None,
            ratios: [0.0; Guarantee::ALL.len()],
            lost: [false; Guarantee::ALL.len()],
        }
    }

    /// New windows or capacity (a reload): ratios from the next period on use them.
    pub const fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The churn ratio of each guarantee over the last full period.
    pub fn ratios(&self) -> impl Iterator<Item = (Guarantee, f64)> + '_ {
        Guarantee::ALL.into_iter().zip(self.ratios)
    }

    /// Feeds one reading of the kernel statistics (`stats`, by counter slot) taken at `now`;
    /// when that ends a period, recomputes the ratios and returns the guarantees that changed.
    pub fn observe(&mut self, now: Instant, stats: &[u64]) -> Vec<Change> {
        let Some((started, at_start)) = &self.period_start else {
            self.period_start = Some((now, stats.to_vec()));
            return Vec::new();
        };
        let elapsed = now.saturating_duration_since(*started);
        if elapsed < PERIOD.min(self.limits.window) || elapsed.is_zero() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        for (i, g) in Guarantee::ALL.into_iter().enumerate() {
            let slot = counter_slot(g.counter()) as usize;
            let delta = match (stats.get(slot), at_start.get(slot)) {
                // A counter that went back (another program instance): no rate this period.
                (Some(now), Some(then)) => now.saturating_sub(*then),
                _ => 0,
            };
            let (kept, places) = self.limits.of(g);
            let ratio = churn_ratio(delta, elapsed, kept, places);
            let lost = ratio >= 1.0;
            if lost != self.lost[i] {
                changes.push(Change {
                    guarantee: g,
                    lost,
                    ratio,
                });
            }
            self.ratios[i] = ratio;
            self.lost[i] = lost;
        }
        self.period_start = Some((now, stats.to_vec()));
        changes
    }
}

/// `delta` places taken over `elapsed`, as a rate, times the time `kept` an entry must last,
/// over the `places`; 0 for a state not in use (no time to keep, or no places).
fn churn_ratio(delta: u64, elapsed: Duration, kept: Duration, places: u32) -> f64 {
    if kept.is_zero() || places == 0 || elapsed.is_zero() {
        return 0.0;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a rate for a gauge: counters far below 2^52 per period"
    )]
    let rate = delta as f64 / elapsed.as_secs_f64();
    rate * kept.as_secs_f64() / f64::from(places)
}

#[cfg(test)]
mod tests {
    use scanwatch_common::stats::STATS_LEN;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn limits() -> Limits {
        Limits {
            window: WINDOW,
            long_window: Duration::from_secs(3600),
            tracker_capacity: 32_768,
        }
    }

    fn stats(counts: &[(Counter, u64)]) -> Vec<u64> {
        let mut s = vec![0; STATS_LEN as usize];
        for &(c, n) in counts {
            s[counter_slot(c) as usize] = n;
        }
        s
    }

    #[test]
    fn a_flood_above_the_admission_rate_ends_its_guarantee_once() {
        let mut w = FloodWatch::new(limits());
        let t0 = Instant::now();
        assert!(w.observe(t0, &stats(&[])).is_empty());
        // 2,000 forged first probes a second: 2000 × 300 / 65536 ≈ 9.2.
        let minute = 2000 * 60;
        assert!(
            w.observe(
                t0 + Duration::from_secs(30),
                &stats(&[(Counter::AdmissionDeferred, 1)])
            )
            .is_empty(),
            "no ratio before a period ends"
        );
        let changes = w.observe(t0 + PERIOD, &stats(&[(Counter::AdmissionDeferred, minute)]));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].guarantee, Guarantee::Admission);
        assert!(changes[0].lost);
        assert!(
            (changes[0].ratio - 9.155).abs() < 0.01,
            "{}",
            changes[0].ratio
        );
        // The same rate another minute: nothing new to say.
        assert!(
            w.observe(
                t0 + 2 * PERIOD,
                &stats(&[(Counter::AdmissionDeferred, 2 * minute)])
            )
            .is_empty()
        );
        // It stops: the guarantee holds again.
        let changes = w.observe(
            t0 + 3 * PERIOD,
            &stats(&[(Counter::AdmissionDeferred, 2 * minute + 10)]),
        );
        assert_eq!(changes.len(), 1);
        assert!(!changes[0].lost);
    }

    #[test]
    fn benign_rates_keep_every_guarantee() {
        let mut w = FloodWatch::new(limits());
        let t0 = Instant::now();
        w.observe(t0, &stats(&[]));
        // 100 new sources a minute, 10 of them back in a later window, a few port slots.
        let changes = w.observe(
            t0 + PERIOD,
            &stats(&[
                (Counter::AdmissionDeferred, 100),
                (Counter::TrackerInserts, 60),
                (Counter::LongInserts, 10),
                (Counter::PortSlotsTaken, 5),
            ]),
        );
        assert!(changes.is_empty());
        assert!(
            w.ratios().all(|(_, r)| r < 0.1),
            "{:?}",
            w.ratios().collect::<Vec<_>>()
        );
    }

    #[test]
    fn each_state_is_measured_against_its_own_time_and_places() {
        let mut w = FloodWatch::new(limits());
        let t0 = Instant::now();
        w.observe(t0, &stats(&[]));
        // 8192 long-window entries an hour fill LONG exactly once per long window.
        let per_minute = 8192 / 60;
        w.observe(t0 + PERIOD, &stats(&[(Counter::LongInserts, per_minute)]));
        let long = w
            .ratios()
            .find(|(g, _)| *g == Guarantee::LongWindow)
            .unwrap()
            .1;
        assert!((0.99..1.0).contains(&long), "{long}");
    }

    #[test]
    fn a_long_window_switched_off_is_not_watched() {
        let mut w = FloodWatch::new(Limits {
            long_window: Duration::ZERO,
            ..limits()
        });
        let t0 = Instant::now();
        w.observe(t0, &stats(&[]));
        assert!(
            w.observe(t0 + PERIOD, &stats(&[(Counter::LongInserts, u64::MAX)]))
                .is_empty()
        );
    }

    #[test]
    fn a_counter_that_goes_back_gives_no_rate() {
        let mut w = FloodWatch::new(limits());
        let t0 = Instant::now();
        w.observe(t0, &stats(&[(Counter::TrackerInserts, 1_000_000)]));
        assert!(
            w.observe(t0 + PERIOD, &stats(&[(Counter::TrackerInserts, 5)]))
                .is_empty()
        );
    }
}
