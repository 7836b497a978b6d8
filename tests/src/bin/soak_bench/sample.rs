//! What the soak reads every minute, and what it makes of it: the daemon's memory and CPU from
//! `/proc`, its gauges and counters from `/metrics`, turned into one table row per minute and,
//! at the end, least-squares slopes.

use std::{fmt::Write as _, time::Instant};

use anyhow::Result;
use scanwatch_tests::{
    metrics::{metric_sample, metric_sum},
    procstat::{cpu_ticks, vm_rss_kib},
};

/// The alert-latency histogram.
const LATENCY: &str = "scanwatch_event_to_alert_latency_seconds";

/// The daemon's state at one instant: absolute values, turned into rates between two.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at: Instant,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    pub rss_kib: f64,
    /// Packets the XDP program has seen (every class).
    pub packets: f64,
    pub tracker_fill: f64,
    pub flow_fill: f64,
    pub events_emitted: f64,
    pub events_dropped: f64,
    /// `scanwatch_parse_errors_total` by reason.
    pub parse_errors: Vec<(String, f64)>,
    /// `(state, churn ratio, guarantee lost)`, in the order the daemon exports them.
    pub states: Vec<(String, f64, bool)>,
    /// Cumulative `(le, count)` buckets of the alert latency, `+Inf` last.
    pub latency_buckets: Vec<(f64, f64)>,
    pub latency_sum: f64,
    pub latency_count: f64,
}

impl Snapshot {
    /// Reads `/proc` for `pid` and the metrics text `metrics`.
    pub fn take(pid: u32, metrics: &str) -> Result<Self> {
        let (user, system) = cpu_ticks(pid)?;
        let value = |name: &str| metric_sample(metrics, name).unwrap_or(0.0);
        Ok(Self {
            at: Instant::now(),
            cpu_ticks: user + system,
            rss_kib: vm_rss_kib(pid)?,
            packets: metric_sum(metrics, "scanwatch_packets_total").unwrap_or(0.0),
            tracker_fill: value("scanwatch_tracker_fill_ratio"),
            flow_fill: value("scanwatch_flow_fill_ratio"),
            events_emitted: value("scanwatch_events_emitted_total"),
            events_dropped: value("scanwatch_events_dropped_total"),
            parse_errors: labelled(metrics, "scanwatch_parse_errors_total", "reason"),
            states: states(metrics),
            latency_buckets: buckets(metrics, LATENCY),
            latency_sum: value(&format!("{LATENCY}_sum")),
            latency_count: value(&format!("{LATENCY}_count")),
        })
    }
}

/// Each `state` label of `scanwatch_state_churn_ratio` with its ratio, and whether
/// `scanwatch_flood_guarantee_lost` is 1 for it.
fn states(metrics: &str) -> Vec<(String, f64, bool)> {
    labelled(metrics, "scanwatch_state_churn_ratio", "state")
        .into_iter()
        .map(|(state, ratio)| {
            let lost = metric_sample(
                metrics,
                &format!("scanwatch_flood_guarantee_lost{{state=\"{state}\"}}"),
            ) == Some(1.0);
            (state, ratio, lost)
        })
        .collect()
}

/// Each value of `label` of metric `name` (which has that one label) with its sample, in the
/// order written.
fn labelled(metrics: &str, name: &str, label: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{{label}=\"");
    metrics
        .lines()
        .filter_map(|l| {
            let (value, rest) = l.strip_prefix(&prefix)?.split_once("\"}")?;
            Some((value.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

/// The cumulative buckets `(le, count)` of histogram `name`, in the order written (`+Inf`
/// last, as infinity).
pub fn buckets(metrics: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|l| {
            let (le, rest) = l.strip_prefix(&prefix)?.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound of the bucket holding quantile `q` of the observations made between two
/// readings of a histogram's cumulative buckets (the same buckets in the same order; `before`
/// empty for "since the start"); `None` when nothing was observed.
pub fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let new = |i: usize| after[i].1 - before.get(i).map_or(0.0, |b| b.1);
    let total = new(after.len().checked_sub(1)?);
    if total <= 0.0 {
        return None;
    }
    (0..after.len())
        .find(|&i| new(i) >= q * total)
        .map(|i| after[i].0)
}

/// The least-squares slope of `points` (x, y); `None` with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// One minute of the soak: the snapshot at its end, rates against the one at its start, and
/// the scans so far.
#[derive(Clone, Debug)]
pub struct Row {
    pub minute: u64,
    pub end: Snapshot,
    /// % of one core over the minute.
    pub cpu_percent: f64,
    pub packets_per_s: f64,
    pub dropped: f64,
    pub latency_p99: Option<f64>,
    pub latency_mean: Option<f64>,
    pub scans_sent: usize,
    pub scans_reported: usize,
}

impl Row {
    /// The row of minute `minute`, from the snapshots at its start and end; `ticks` a second.
    pub fn new(
        minute: u64,
        start: &Snapshot,
        end: Snapshot,
        ticks: f64,
        scans: (usize, usize),
    ) -> Self {
        let seconds = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
        let alerts = end.latency_count - start.latency_count;
        Self {
            minute,
            cpu_percent: (end.cpu_ticks - start.cpu_ticks) as f64 / ticks / seconds * 100.0,
            packets_per_s: (end.packets - start.packets) / seconds,
            dropped: end.events_dropped - start.events_dropped,
            latency_p99: quantile_bound(&start.latency_buckets, &end.latency_buckets, 0.99),
            latency_mean: (alerts > 0.0).then(|| (end.latency_sum - start.latency_sum) / alerts),
            scans_sent: scans.0,
            scans_reported: scans.1,
            end,
        }
    }

    /// The churn column's title: the first letters of each state's name, in the order of
    /// `states`.
    fn churn_title(states: &[(String, f64, bool)]) -> String {
        let names: Vec<&str> = states
            .iter()
            .map(|(s, ..)| s.get(..4).unwrap_or(s))
            .collect();
        format!("churn {}", names.join("/"))
    }

    /// The churn column's width: its title, or a ratio up to `99.99` for each state.
    fn churn_width(states: &[(String, f64, bool)]) -> usize {
        Self::churn_title(states).len().max(6 * states.len())
    }

    /// The table's header, naming the churn column's states in the order of `states`.
    pub fn header(states: &[(String, f64, bool)]) -> String {
        let width = Self::churn_width(states);
        format!(
            "{:>4} {:>8} {:>6} {:>9} {:>7} {:>7} {:>7} {:>9} {:>8} {:>7} {:<width$} {}",
            "min",
            "RSS MiB",
            "CPU %",
            "XDP pps",
            "tracker",
            "flows",
            "ev lost",
            "alert p99",
            "mean ms",
            "scans",
            Self::churn_title(states),
            "guarantee lost"
        )
    }

    /// The row, under [`Row::header`].
    pub fn line(&self) -> String {
        let p99 = bound(self.latency_p99);
        let mean = self
            .latency_mean
            .map_or_else(|| "-".to_owned(), |m| format!("{:.2}", m * 1e3));
        let churn: Vec<String> = self
            .end
            .states
            .iter()
            .map(|(_, r, _)| format!("{r:.2}"))
            .collect();
        let lost: Vec<&str> = self
            .end
            .states
            .iter()
            .filter(|(.., lost)| *lost)
            .map(|(s, ..)| s.as_str())
            .collect();
        let width = Self::churn_width(&self.end.states);
        // Minute 0 is the start: no rates yet.
        let rate = |value: String| {
            if self.minute == 0 {
                "-".to_owned()
            } else {
                value
            }
        };
        let mut line = format!(
            "{:>4} {:>8.1} {:>6} {:>9} {:>7.3} {:>7.4} {:>7} {:>9} {:>8} {:>7} {:<width$} {}",
            self.minute,
            self.end.rss_kib / 1024.0,
            rate(format!("{:.1}", self.cpu_percent)),
            rate(format!("{:.0}", self.packets_per_s)),
            self.end.tracker_fill,
            self.end.flow_fill,
            rate(format!("{:.0}", self.dropped)),
            p99,
            mean,
            format!("{}/{}", self.scans_reported, self.scans_sent),
            churn.join("/"),
            if lost.is_empty() {
                "-".to_owned()
            } else {
                lost.join(",")
            }
        );
        line.truncate(line.trim_end().len());
        line
    }
}

/// A [`quantile_bound`] for the table: `<=5 ms`, `>2.5 s` (past the last bucket), `-`.
pub fn bound(le: Option<f64>) -> String {
    match le {
        None => "-".to_owned(),
        Some(le) if le.is_infinite() => ">2.5 s".to_owned(),
        Some(le) => format!("<={}", ms(le)),
    }
}

/// Seconds as milliseconds, without trailing zeros ("0.1 ms", "5 ms").
fn ms(seconds: f64) -> String {
    let mut text = String::new();
    let _ = write!(text, "{}", (seconds * 1e7).round() / 1e4);
    text + " ms"
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP scanwatch_event_to_alert_latency_seconds Time.
scanwatch_event_to_alert_latency_seconds_bucket{le=\"0.001\"} 2
scanwatch_event_to_alert_latency_seconds_bucket{le=\"0.005\"} 9
scanwatch_event_to_alert_latency_seconds_bucket{le=\"+Inf\"} 10
scanwatch_event_to_alert_latency_seconds_sum 0.03
scanwatch_event_to_alert_latency_seconds_count 10
scanwatch_state_churn_ratio{state=\"admission\"} 1.5
scanwatch_state_churn_ratio{state=\"tracker\"} 0.25
scanwatch_flood_guarantee_lost{state=\"admission\"} 1
scanwatch_flood_guarantee_lost{state=\"tracker\"} 0
scanwatch_parse_errors_total{reason=\"tcp_truncated\"} 7
";

    #[test]
    fn reads_histogram_buckets_and_states() {
        assert_eq!(
            buckets(TEXT, LATENCY),
            [(0.001, 2.0), (0.005, 9.0), (f64::INFINITY, 10.0)]
        );
        assert_eq!(
            states(TEXT),
            [
                ("admission".to_owned(), 1.5, true),
                ("tracker".to_owned(), 0.25, false)
            ]
        );
        assert_eq!(
            labelled(TEXT, "scanwatch_parse_errors_total", "reason"),
            [("tcp_truncated".to_owned(), 7.0)]
        );
    }

    #[test]
    fn quantile_bound_counts_only_the_observations_between_readings() {
        let before = [(0.001, 2.0), (0.005, 2.0), (f64::INFINITY, 2.0)];
        let after = [(0.001, 2.0), (0.005, 101.0), (f64::INFINITY, 102.0)];
        // 100 new observations: 99 at most 5 ms, one above 2.5 s.
        assert_eq!(quantile_bound(&before, &after, 0.99), Some(0.005));
        assert_eq!(quantile_bound(&before, &after, 1.0), Some(f64::INFINITY));
        assert_eq!(quantile_bound(&after, &after, 0.99), None);
        assert_eq!(quantile_bound(&[], &after, 0.01), Some(0.001));
    }

    #[test]
    fn slope_is_the_least_squares_fit() {
        assert_eq!(slope(&[(2.0, 10.0), (3.0, 12.0), (4.0, 14.0)]), Some(2.0));
        let noisy = slope(&[(0.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 4.0)]).unwrap();
        assert!((noisy - 0.9).abs() < 1e-9, "{noisy}");
        assert_eq!(slope(&[(1.0, 5.0)]), None);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), None);
    }

    #[test]
    fn milliseconds_drop_trailing_zeros() {
        assert_eq!(ms(0.005), "5 ms");
        assert_eq!(ms(0.0001), "0.1 ms");
        assert_eq!(ms(0.25), "250 ms");
    }
}
