//! The fleet: findings and blocks shared across hosts through CrowdSec's Local API (LAPI).
//!
//! - `publisher`: the machine role, findings → alerts (`POST /v1/alerts`), from a bounded queue.
//! - `bouncer`: the bouncer role, `ban` decisions (`GET /v1/decisions/stream`) → block trie.
//! - `lapi`: the HTTP client and the minimal JSON models; `settings`: the `[crowdsec]` section.
//!
//! Both roles run on threads of their own with blocking HTTP, retrying with backoff: a LAPI
//! that is down, slow or answering garbage never holds up detection or local enforcement. Their
//! health is exported as metrics and in the status file.

pub mod bouncer;
pub mod lapi;
pub mod publisher;
pub mod settings;

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use log::{error, info, warn};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

pub use self::settings::{Section, Settings};
use self::{
    bouncer::{Applied, Batch, Decisions},
    lapi::{Lapi, LapiError, Secret},
    publisher::Queue,
};
use crate::{
    clock::rfc3339,
    detect::Finding,
    enforce::{Policy, Refusal},
    kernel::BlockList,
};

/// Refusal label of a decision whose trie write failed (the trie full, or another error).
const WRITE_ERROR: &str = "error";

/// The roles, as metric labels.
const ROLES: [&str; 2] = ["publish", "enforce"];

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
                    "Decisions not enforced, by why (a protected peer, not a ban of an Ip or Range, or a failed write).",
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
}

/// What the threads and the agent share.
pub struct Shared {
    pub settings: Settings,
    pub stop: AtomicBool,
    stop_signal: (Mutex<()>, Condvar),
    pub queue: Queue,
    pub metrics: FleetMetrics,
    health: Mutex<[RoleHealth; 2]>,
}

impl Shared {
    fn role_index(role: &str) -> usize {
        usize::from(role == "enforce")
    }

    fn success(&self, role: &str) {
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

    fn failure(&self, role: &str, e: &LapiError) {
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
    fn sleep(&self, d: Duration) {
        let (lock, cvar) = &self.stop_signal;
        let guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = cvar
            .wait_timeout_while(guard, d, |()| !self.stop.load(Ordering::SeqCst))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// The agent's handle on the fleet: off when `[crowdsec]` is absent.
#[derive(Default)]
pub struct Fleet {
    shared: Option<Arc<Shared>>,
    decisions_rx: Option<UnboundedReceiver<Batch>>,
    decisions: Decisions,
}

impl Fleet {
    /// Starts the configured roles. The bouncer role runs only when `enforcing` (drop mode, not
    /// a dry run), as block lists do. A role whose credentials cannot be read is off, said once.
    pub fn start(settings: Option<&Settings>, registry: &Registry, enforcing: bool) -> Self {
        let Some(settings) = settings else {
            return Self::default();
        };
        let metrics = match FleetMetrics::new(registry) {
            Ok(m) => m,
            Err(e) => {
                error!("crowdsec: registering metrics failed, the fleet is off: {e}");
                return Self::default();
            }
        };
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            stop: AtomicBool::new(false),
            stop_signal: (Mutex::new(()), Condvar::new()),
            queue: Queue::new(settings.queue_size),
            metrics,
            health: Mutex::new(Default::default()),
        });
        let client = || match Lapi::new(settings) {
            Ok(l) => Some(l),
            Err(e) => {
                error!("crowdsec: {e:#}; the fleet is off");
                None
            }
        };
        let mut fleet = Self {
            shared: Some(shared.clone()),
            ..Self::default()
        };
        if settings.publish {
            let password = settings.password_file.as_deref().map(Secret::read);
            match (password, client()) {
                (Some(Ok(password)), Some(lapi)) => {
                    let (s, id) = (shared.clone(), settings.machine_id.clone());
                    spawn("crowdsec-publish", move || {
                        publisher::run(&lapi, &id, &password, &s);
                    });
                    info!(
                        "crowdsec: publishing findings to {} as machine {}",
                        settings.lapi_url, settings.machine_id
                    );
                }
                (Some(Err(e)), _) => error!("crowdsec: {e:#}; findings are not published"),
                _ => {}
            }
        }
        if settings.enforce && !enforcing {
            info!(
                "crowdsec: decisions are enforced in drop mode only (not in monitor mode or dry run)"
            );
        } else if settings.enforce {
            let key = settings.api_key_file.as_deref().map(Secret::read);
            match (key, client()) {
                (Some(Ok(key)), Some(lapi)) => {
                    let (tx, rx) = unbounded_channel();
                    fleet.decisions_rx = Some(rx);
                    let s = shared.clone();
                    spawn("crowdsec-bounce", move || {
                        bouncer::run(&lapi, &key, &s, &tx);
                    });
                    info!(
                        "crowdsec: enforcing decisions from {} every {}s",
                        settings.lapi_url,
                        settings.poll_interval.as_secs_f64()
                    );
                }
                (Some(Err(e)), _) => error!("crowdsec: {e:#}; decisions are not enforced"),
                _ => {}
            }
        }
        fleet
    }

    /// Queues a finding for the LAPI (machine role on).
    pub fn publish(&self, finding: &Finding) {
        let Some(shared) = &self.shared else { return };
        if !shared.settings.publish {
            return;
        }
        let Some(alert) = publisher::alert_of(finding) else {
            shared.metrics.skipped.inc();
            return;
        };
        let (dropped, len) = shared.queue.push(alert);
        shared.metrics.queued.set(len as i64);
        if dropped {
            shared.metrics.dropped.inc();
            publisher::warn_dropped(shared.metrics.dropped.get());
        }
    }

    /// The next answer of the decisions stream; pending forever when the bouncer is off.
    pub async fn next_decisions(&mut self) -> Option<Batch> {
        match self.decisions_rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Enforces a stream answer (`None`: the bouncer thread ended); the number of new blocks.
    pub fn apply(&mut self, batch: Option<Batch>, trie: &mut BlockList, policy: &Policy) -> usize {
        let Some(batch) = batch else {
            self.decisions_rx = None;
            return 0;
        };
        let Some(shared) = &self.shared else { return 0 };
        let m = &shared.metrics;
        m.decisions_received
            .with_label_values(&["new"])
            .inc_by(batch.stream.new.len() as u64);
        m.decisions_received
            .with_label_values(&["deleted"])
            .inc_by(batch.stream.deleted.len() as u64);
        let applied = self.decisions.apply(&batch, trie, policy, true);
        self.count(&applied);
        applied.blocked
    }

    /// The protected set changed: decisions refused or enforced before are re-checked; the
    /// number of new blocks.
    pub fn protected_changed(&mut self, trie: &mut BlockList, policy: &Policy) -> usize {
        if self.decisions_rx.is_none() {
            return 0;
        }
        let applied = self.decisions.reapply(trie, policy, true);
        self.count(&applied);
        applied.blocked
    }

    fn count(&self, applied: &Applied) {
        let Some(shared) = &self.shared else { return };
        let m = &shared.metrics;
        for (_, why) in &applied.refused {
            m.decisions_refused.with_label_values(&[why]).inc();
        }
        m.unblocked.inc_by(applied.unblocked as u64);
        m.decisions_refused
            .with_label_values(&[WRITE_ERROR])
            .inc_by(applied.errors as u64);
        m.decisions_active.set(applied.active as i64);
    }

    /// The fleet's part of the status file.
    pub fn status(&self) -> Option<FleetStatus> {
        let shared = self.shared.as_ref()?;
        let health = shared
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let [publish, enforce] = health;
        Some(FleetStatus {
            lapi_url: shared.settings.lapi_url.clone(),
            publish: shared.settings.publish.then_some(publish),
            enforce: self.decisions_rx.is_some().then_some(enforce),
            alerts_queued: shared.metrics.queued.get() as usize,
            decisions_active: shared.metrics.decisions_active.get() as usize,
        })
    }

    /// Stops both threads (they finish their request in flight, bounded by `timeout`).
    pub fn stop(&self) {
        if let Some(shared) = &self.shared {
            shared.stop.store(true, Ordering::SeqCst);
            shared.stop_signal.1.notify_all();
            shared.queue.wake();
        }
    }
}

/// Refusal names a decision may be refused with (label values, present from the start).
fn refusal_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = [
        Refusal::NeverBlock,
        Refusal::OwnAddress,
        Refusal::Gateway,
        Refusal::Resolver,
        Refusal::ConnectedNetwork,
        Refusal::Loopback,
        Refusal::ProtectedSetUnavailable,
    ]
    .iter()
    .map(|r| r.name())
    .collect();
    v.extend([bouncer::UNSUPPORTED, WRITE_ERROR]);
    v
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        error!("crowdsec: starting the {name} thread failed: {e}");
    }
}
