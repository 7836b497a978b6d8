//! This host as a member of the fleet: starts the roles, hands them findings, applies the
//! decisions they bring.

use std::sync::{
    Arc, Condvar, Mutex,
    atomic::{AtomicBool, Ordering},
};

use log::{error, info};
use prometheus::Registry;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{
    bouncer,
    bouncer::{Applied, Batch, Decisions},
    lapi::{Lapi, Secret},
    publisher,
    settings::Settings,
    shared::{FleetMetrics, FleetStatus, Queue, Shared, WRITE_ERROR, refusal_names},
};
use crate::{finding::record::Finding, kernel::blocks::BlockList, policy::enforce::Policy};

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
    /// `ipv6_prefix` is the tracker's, at which the evidence is keyed.
    pub fn apply(
        &mut self,
        batch: Option<Batch>,
        trie: &mut BlockList,
        policy: &Policy,
        ipv6_prefix: u32,
    ) -> usize {
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
        let applied = self
            .decisions
            .apply(&batch, trie, policy, ipv6_prefix, true);
        self.count(&applied);
        applied.blocked
    }

    /// The protected set changed: decisions refused or enforced before are re-checked against
    /// it (a refusal by evidence stands); the number of new blocks.
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
            decisions_refused: refusal_names()
                .into_iter()
                .map(|r| {
                    let n = shared
                        .metrics
                        .decisions_refused
                        .with_label_values(&[r])
                        .get();
                    (r.to_owned(), n)
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
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

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        error!("crowdsec: starting the {name} thread failed: {e}");
    }
}
