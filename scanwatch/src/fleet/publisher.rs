//! Machine role: findings become LAPI alerts, pushed by a thread of their own from a bounded
//! queue, so a slow or absent LAPI never holds up detection or local enforcement.
//!
//! What is published: ingress findings only (an egress finding names this host). An alert asks
//! the LAPI for remediation (`remediation: true`, which the default profile turns into a 4 h ban
//! of an `Ip`) only when the finding itself blocked here (`action` `block`): a finding naming a
//! protected peer (`not_blocked` set), one in monitor mode, is published with
//! `remediation: false`, information for the fleet, never a ban candidate. A dry run stays on
//! this host: its findings (`action` `would_block`) go out with `remediation: false` and
//! `simulated: true`, so neither the default profile nor one that ignores `remediation` makes
//! them a decision any bouncer enforces.

use std::{sync::atomic::Ordering, time::Duration};

use log::{info, warn};
use scanwatch_common::event::DetectionKind;

use super::{
    lapi::{Alert, Event, Lapi, LapiError, Meta, Secret, Source},
    shared::Shared,
};
use crate::finding::record::{Action, Direction, Finding};

/// Alerts per `POST /v1/alerts`.
const BATCH: usize = 50;

/// The LAPI alert of a finding, or `None` when it is not published: egress findings, and
/// distributed scans, whose source is `"*"` (many sources, none of them scanning on its own:
/// the Local API takes one IP or range per alert, and no one of the sampled sources earned a
/// ban).
pub fn alert_of(f: &Finding) -> Option<Alert> {
    if f.direction == Direction::Egress || f.kind == DetectionKind::DistributedScan {
        return None;
    }
    let range = f.source.contains('/');
    // A dry run tests a configuration on this host: it never asks the fleet for a ban.
    let simulated = f.action == Action::WouldBlock;
    // A wide IPv6 finding's blocks are the /64s it names (`prefixes`), never the /48 in
    // `source`: the fleet is not asked to ban a whole site.
    let remediation = f.action == Action::Block && f.not_blocked.is_none() && f.prefixes.is_none();
    let mut labels = vec![format!("attack.{}", f.technique)];
    if f.technique.starts_with("T1595") {
        labels.push("attack.T1595".into());
    }
    labels.push("scanwatch".into());
    let meta = |k: &str, v: String| Meta {
        key: k.into(),
        value: v,
    };
    let mut metas = vec![
        meta(
            if range { "source_range" } else { "source_ip" },
            f.source.clone(),
        ),
        meta("kind", f.kind.name().into()),
        meta("distinct_ports", f.distinct_ports.to_string()),
        meta("distinct_hosts", f.distinct_hosts.to_string()),
        meta("interface", f.interface.clone()),
    ];
    if let Some(why) = f.not_blocked {
        metas.push(meta("not_blocked", why.name().into()));
    }
    if !f.listed_in.is_empty() {
        metas.push(meta("listed_in", f.listed_in.join(",")));
    }
    let scope = if range { "Range" } else { "Ip" };
    Some(Alert {
        scenario: format!("scanwatch/{}", f.kind.name()),
        scenario_hash: String::new(),
        scenario_version: env!("CARGO_PKG_VERSION").into(),
        message: format!(
            "{scope} {} performed 'scanwatch/{}' ({} probes, {} ports, {} hosts in {} s)",
            f.source,
            f.kind.name(),
            f.packets,
            f.distinct_ports,
            f.distinct_hosts,
            f.window_seconds
        ),
        events_count: f.packets.min(i32::MAX as u64) as i32,
        start_at: f.first_seen.clone(),
        stop_at: f.last_seen.clone(),
        capacity: 0,
        leakspeed: format!("{}s", f.window_seconds),
        simulated,
        remediation,
        labels,
        events: vec![Event {
            timestamp: f.last_seen.clone(),
            meta: metas,
        }],
        source: Source {
            scope: scope.into(),
            value: f.source.clone(),
            ip: (!range).then(|| f.source.clone()),
            range: range.then(|| f.source.clone()),
        },
    })
}

/// The publisher thread: logs in, pushes the queue in batches, backs off on errors.
pub fn run(lapi: &Lapi, machine_id: &str, password: &Secret, shared: &Shared) {
    let role = "publish";
    let mut token: Option<Secret> = None;
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    while !shared.stop.load(Ordering::SeqCst) {
        // Log in first, queue or not: wrong credentials show at start, not at the first scan.
        let Some(t) = &token else {
            match lapi.login(machine_id, password) {
                Ok(t) => {
                    token = Some(t);
                    shared.success(role);
                    backoff.reset();
                }
                Err(e) => {
                    shared.failure(role, &e);
                    backoff.sleep(shared);
                }
            }
            continue;
        };
        let batch = shared.queue.peek(BATCH, Duration::from_millis(500));
        if batch.is_empty() {
            continue;
        }
        match lapi.push_alerts(t, &batch) {
            Ok(_) => {
                let left = shared.queue.pop(batch.len());
                shared.metrics.published.inc_by(batch.len() as u64);
                shared.metrics.queued.set(left as i64);
                shared.success(role);
                backoff.reset();
            }
            Err(LapiError::Http(status @ 400..=499)) => {
                // The LAPI rejects these alerts as such: retrying them would block the queue
                // for good. Dropped, counted and said.
                let left = shared.queue.pop(batch.len());
                shared.metrics.queued.set(left as i64);
                shared.metrics.dropped.inc_by(batch.len() as u64);
                warn!(
                    "crowdsec: the Local API rejected {} alert(s) with HTTP {status}; dropped \
                     (is it an older CrowdSec than 1.4?)",
                    batch.len()
                );
                shared.failure(role, &LapiError::Http(status));
            }
            Err(e) => {
                if matches!(e, LapiError::Unauthorized(_)) {
                    token = None;
                }
                shared.failure(role, &e);
                backoff.sleep(shared);
            }
        }
    }
    info!("crowdsec publisher stopped");
}

/// Exponential backoff from 1 s, doubling up to a cap, cut short by a stop.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_secs(1).min(max),
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_secs(1).min(self.max);
    }

    pub fn sleep(&mut self, shared: &Shared) {
        shared.sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }
}

/// Warns once that a finding could not be queued in order.
pub fn warn_dropped(total: u64) {
    if total.is_power_of_two() {
        warn!(
            "crowdsec: the alert queue is full (the Local API is not taking alerts); dropped the \
             oldest finding ({total} so far, scanwatch_crowdsec_alerts_dropped_total)"
        );
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::{finding::verdict::Refusal, fleet::shared::Queue};

    fn finding(source: &str, direction: Direction, action: Action) -> Finding {
        Finding {
            timestamp: "2026-11-30T09:00:05.000Z".into(),
            direction,
            first_seen: "2026-11-30T09:00:00.000Z".into(),
            last_seen: "2026-11-30T09:00:05.000Z".into(),
            action,
            ..Finding::sample(source)
        }
    }

    #[test]
    fn a_blocking_finding_asks_for_remediation_of_its_ip() {
        let a = alert_of(&finding("192.0.2.7", Direction::Ingress, Action::Block)).unwrap();
        assert!(a.remediation);
        assert_eq!(a.scenario, "scanwatch/port_scan");
        assert_eq!(
            (a.source.scope.as_str(), a.source.ip.as_deref()),
            ("Ip", Some("192.0.2.7"))
        );
        assert!(a.labels.contains(&"attack.T1046".to_owned()));
        assert_eq!(a.events_count, 21);
    }

    #[test]
    fn a_dry_run_finding_is_a_simulation_asking_for_no_ban() {
        let a = alert_of(&finding(
            "192.0.2.7",
            Direction::Ingress,
            Action::WouldBlock,
        ))
        .unwrap();
        assert!(!a.remediation);
        assert!(a.simulated);
        assert_eq!(a.source.ip.as_deref(), Some("192.0.2.7"));
        let v6 = alert_of(&finding(
            "2001:db8::/64",
            Direction::Ingress,
            Action::WouldBlock,
        ))
        .unwrap();
        assert!(!v6.remediation && v6.simulated);
        // Blocks and monitor-mode findings are no simulation.
        for action in [Action::Block, Action::Alert] {
            assert!(
                !alert_of(&finding("192.0.2.7", Direction::Ingress, action))
                    .unwrap()
                    .simulated
            );
        }
    }

    #[test]
    fn distributed_findings_are_not_published() {
        let mut f = finding("*", Direction::Ingress, Action::Alert);
        f.kind = DetectionKind::DistributedScan;
        f.sources = Some(vec!["192.0.2.7".into(), "192.0.2.8".into()]);
        assert!(alert_of(&f).is_none());
    }

    #[test]
    fn listed_sources_carry_their_lists_as_event_meta() {
        let mut f = finding("192.0.2.7", Direction::Ingress, Action::Alert);
        let listed = |a: &Alert| {
            a.events[0]
                .meta
                .iter()
                .find(|m| m.key == "listed_in")
                .map(|m| m.value.clone())
        };
        assert_eq!(listed(&alert_of(&f).unwrap()), None);
        f.listed_in = vec!["spamhaus_drop".into(), "firehol_level1".into()];
        assert_eq!(
            listed(&alert_of(&f).unwrap()).as_deref(),
            Some("spamhaus_drop,firehol_level1")
        );
    }

    #[test]
    fn ipv6_prefixes_are_ranges() {
        let a = alert_of(&finding("2001:db8::/64", Direction::Ingress, Action::Block)).unwrap();
        assert_eq!(a.source.scope, "Range");
        assert_eq!(a.source.range.as_deref(), Some("2001:db8::/64"));
        assert!(a.remediation);
    }

    #[test]
    fn a_blocking_wide_finding_is_no_ban_candidate_for_its_48() {
        let mut f = finding("2001:db8:1::/48", Direction::Ingress, Action::Block);
        f.prefixes = Some(vec!["2001:db8:1:1::/64".into()]);
        let a = alert_of(&f).unwrap();
        assert_eq!(a.source.range.as_deref(), Some("2001:db8:1::/48"));
        assert!(!a.remediation);
    }

    #[test]
    fn protected_monitor_and_egress_findings_are_never_ban_candidates() {
        let mut protected = finding("192.0.2.1", Direction::Ingress, Action::Alert);
        protected.not_blocked = Some(Refusal::Gateway);
        assert!(!alert_of(&protected).unwrap().remediation);
        let monitor = finding("192.0.2.7", Direction::Ingress, Action::Alert);
        assert!(!alert_of(&monitor).unwrap().remediation);
        assert!(alert_of(&finding("10.0.0.1", Direction::Egress, Action::Alert)).is_none());
    }

    #[test]
    fn queue_drops_the_oldest_over_its_bound() {
        let q = Queue::new(2);
        let a = |v: &str| Alert {
            scenario: v.into(),
            scenario_hash: String::new(),
            scenario_version: String::new(),
            message: String::new(),
            events_count: 0,
            start_at: String::new(),
            stop_at: String::new(),
            capacity: 0,
            leakspeed: String::new(),
            simulated: false,
            remediation: false,
            labels: vec![],
            events: vec![],
            source: Source {
                scope: "Ip".into(),
                value: v.into(),
                ip: None,
                range: None,
            },
        };
        assert!(!q.push(a("1")).0);
        assert!(!q.push(a("2")).0);
        assert!(q.push(a("3")).0);
        let left: Vec<String> = q
            .peek(10, Duration::ZERO)
            .into_iter()
            .map(|a| a.scenario)
            .collect();
        assert_eq!(left, ["2", "3"]);
        assert_eq!(q.pop(1), 1);
    }
}
