//! What the fleet roles share with the agent: their health, metrics and the status they report.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use log::{info, warn};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use super::{
    lapi::{Alert, LapiError},
    settings::Settings,
};
use crate::{finding::verdict::Refusal, kernel::clock::rfc3339};

/// Refusal label of a decision whose trie write failed (the trie full, or another error).
pub(crate) const WRITE_ERROR: &str = "error";

/// The roles, as metric labels.
pub(crate) const ROLES: [&str; 2] = ["publish", "enforce"];

/// The CrowdSec metrics (registered in the agent's registry).
pub struct FleetMetrics {
    /// 1 while the role's last LAPI exchange succeeded.
    pub up: IntGaugeVec,
    pub errors: IntCounterVec,
    pub last_success: IntGaugeVec,
    pub published: IntCounter,
    pub dropped: IntCounter,
    pub queued: IntGauge,
    pub skipped: IntCounter,
    pub decisions_received: IntCounterVec,
    pub decisions_refused: IntCounterVec,
    pub decisions_active: IntGauge,
    pub unblocked: IntCounter,
}

impl FleetMetrics {
    pub fn new(registry: &Registry) -> anyhow::Result<Self> {
        fn reg<M: prometheus::core::Collector + Clone + 'static>(
            r: &Registry,
            m: M,
        ) -> anyhow::Result<M> {
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }
        let up = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "scanwatch_crowdsec_lapi_up",
                    "1 while the role's last exchange with the CrowdSec Local API succeeded.",
                ),
                &["role"],
            )?,
        )?;
        let errors = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "scanwatch_crowdsec_lapi_errors_total",
                    "Failed exchanges with the CrowdSec Local API, by role and error.",
                ),
                &["role", "error"],
            )?,
        )?;
        let last_success = reg(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "scanwatch_crowdsec_lapi_last_success_timestamp_seconds",
                    "Unix time of the role's last successful exchange with the Local API.",
                ),
                &["role"],
            )?,
        )?;
        let decisions_received = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "scanwatch_crowdsec_decisions_received_total",
                    "Decisions received from the decisions stream, new or deleted.",
                ),
                &["action"],
            )?,
        )?;
        let decisions_refused = reg(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "scanwatch_crowdsec_decisions_refused_total",
                    "Decisions not enforced, by why (a protected peer, an answered peer or verified client, not a ban of an Ip or Range, a duration that is not one, or a failed write).",
                ),
                &["reason"],
            )?,
        )?;
        for role in ROLES {
            up.with_label_values(&[role]).set(0);
            for e in LapiError::NAMES {
                errors.with_label_values(&[role, e]).inc_by(0);
            }
        }
        for r in refusal_names() {
            decisions_refused.with_label_values(&[r]).inc_by(0);
        }
        for a in ["new", "deleted"] {
            decisions_received.with_label_values(&[a]).inc_by(0);
        }
        Ok(Self {
            up,
            errors,
            last_success,
            published: reg(
                registry,
                IntCounter::new(
                    "scanwatch_crowdsec_alerts_published_total",
                    "Findings the Local API accepted as alerts.",
                )?,
            )?,
            dropped: reg(
                registry,
                IntCounter::new(
                    "scanwatch_crowdsec_alerts_dropped_total",
                    "Findings dropped from the full alert queue while the Local API did not take them.",
                )?,
            )?,
            queued: reg(
                registry,
                IntGauge::new(
                    "scanwatch_crowdsec_alerts_queued",
                    "Findings waiting for the Local API.",
                )?,
            )?,
            skipped: reg(
                registry,
                IntCounter::new(
                    "scanwatch_crowdsec_alerts_skipped_total",
                    "Findings not published: egress findings (they name this host).",
                )?,
            )?,
            decisions_received,
            decisions_refused,
            decisions_active: reg(
                registry,
                IntGauge::new(
                    "scanwatch_crowdsec_decisions_active",
                    "Addresses and ranges blocked for CrowdSec decisions.",
                )?,
            )?,
            unblocked: reg(
                registry,
                IntCounter::new(
                    "scanwatch_crowdsec_decisions_unblocked_total",
                    "Blocks lifted because their decision was deleted or expired.",
                )?,
            )?,
        })
    }
}

/// One role's health, for the status file and `scanwatch status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleHealth {
    pub up: bool,
    #[serde(default)]
    pub last_success: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub consecutive_failures: u64,
}

/// The fleet part of the status file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FleetStatus {
    pub lapi_url: String,
    #[serde(default)]
    pub publish: Option<RoleHealth>,
    #[serde(default)]
    pub enforce: Option<RoleHealth>,
    #[serde(default)]
    pub alerts_queued: usize,
    #[serde(default)]
    pub decisions_active: usize,
    /// Decisions refused since the agent started, by reason (the reasons with any).
    #[serde(default)]
    pub decisions_refused: BTreeMap<String, u64>,
}

/// What the threads and the agent share.
pub struct Shared {
    pub settings: Settings,
    pub stop: AtomicBool,
    pub(crate) stop_signal: (Mutex<()>, Condvar),
    pub queue: Queue,
    pub metrics: FleetMetrics,
    pub(crate) health: Mutex<[RoleHealth; 2]>,
}

impl Shared {
    fn role_index(role: &str) -> usize {
        usize::from(role == "enforce")
    }

    pub(crate) fn success(&self, role: &str) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = &mut h[Self::role_index(role)];
        if !h.up && h.consecutive_failures > 0 {
            info!("crowdsec ({role}): the Local API answers again");
        }
        h.up = true;
        h.consecutive_failures = 0;
        h.last_success = Some(rfc3339(SystemTime::now()));
        self.metrics.up.with_label_values(&[role]).set(1);
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.metrics
            .last_success
            .with_label_values(&[role])
            .set(unix as i64);
    }

    pub(crate) fn failure(&self, role: &str, e: &LapiError) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = &mut h[Self::role_index(role)];
        h.up = false;
        h.consecutive_failures += 1;
        h.last_error = Some(e.to_string());
        // The first failure and then every 10th: a long outage must not flood the log.
        if h.consecutive_failures % 10 == 1 {
            warn!(
                "crowdsec ({role}): {e}; retrying with backoff (failure {}), detection and local \
                 enforcement go on",
                h.consecutive_failures
            );
        }
        self.metrics.up.with_label_values(&[role]).set(0);
        self.metrics
            .errors
            .with_label_values(&[role, e.name()])
            .inc();
    }

    /// Sleeps, returning early on stop.
    pub(crate) fn sleep(&self, d: Duration) {
        let (lock, cvar) = &self.stop_signal;
        let guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = cvar
            .wait_timeout_while(guard, d, |()| !self.stop.load(Ordering::SeqCst))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Why a decision is not enforced (metric label), besides the protected set's refusals.
pub const UNSUPPORTED: &str = "unsupported";

/// Refusal label of a decision whose duration is not one.
pub const BAD_DURATION: &str = "bad_duration";

/// Refusal label of a ban of a client that completed a TCP handshake with this host (the
/// kernel's `VERIFIED` map).
pub const VERIFIED_CLIENT: &str = "verified_client";

/// Findings waiting for the LAPI; over `cap`, the oldest is dropped (counted): during a long
/// outage the latest findings name the scanners still active.
pub struct Queue {
    items: Mutex<VecDeque<Alert>>,
    ready: Condvar,
    cap: usize,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            cap,
        }
    }

    /// Adds an alert; true when an older one had to be dropped.
    pub fn push(&self, alert: Alert) -> (bool, usize) {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = if items.len() >= self.cap {
            items.pop_front();
            true
        } else {
            false
        };
        items.push_back(alert);
        self.ready.notify_one();
        (dropped, items.len())
    }

    /// Up to `n` alerts from the front, waiting up to `wait` for one.
    pub(crate) fn peek(&self, n: usize, wait: Duration) -> Vec<Alert> {
        let items = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (items, _) = self
            .ready
            .wait_timeout_while(items, wait, |i| i.is_empty())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        items.iter().take(n).cloned().collect()
    }

    /// Removes the `n` alerts at the front (sent); returns what is left.
    pub(crate) fn pop(&self, n: usize) -> usize {
        let mut items = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = n.min(items.len());
        items.drain(..n);
        items.len()
    }

    pub fn wake(&self) {
        self.ready.notify_all();
    }
}

/// Refusal names a decision may be refused with (label values, present from the start).
pub(crate) fn refusal_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        Refusal::NeverBlock,
        Refusal::OwnAddress,
        Refusal::Gateway,
        Refusal::Resolver,
        Refusal::ConnectedNetwork,
        Refusal::Loopback,
        Refusal::ProtectedSetUnavailable,
        Refusal::AnsweredPeer,
    ]
    .iter()
    .map(|r| r.name())
    .collect();
    v.extend([VERIFIED_CLIENT, UNSUPPORTED, BAD_DURATION, WRITE_ERROR]);
    v
}
