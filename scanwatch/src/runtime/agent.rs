//! The running agent: loads and attaches the programs, writes their configuration, and owns
//! the event loop — kernel events become findings, blocks and alerts; ticks refresh metrics,
//! sweep expired blocks and write the status file; SIGHUP reloads; SIGINT/SIGTERM detach.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::anyhow;
use aya::Ebpf;
use log::{error, info, warn};
use scanwatch_common::{
    addr::SourceKey,
    block::BlockReason,
    event::{DetectionKind, ScanEvent},
    ticks::Ticks,
    web::WebSample,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
};

use crate::{
    config::{Config, Mode, source::ConfigSource},
    finding::{
        budget::AlertBudget,
        process::procfs::{Resolver, Roots},
        record::{Direction, Finding, Hops},
        report::{Counted, Reporter, WebReport},
        tool::ToolMatch,
        verdict::{Refusal, Verdict},
    },
    fleet::member::Fleet,
    kernel::{
        clock,
        clock::{Clock, rfc3339},
        loader,
        loader::Attachment,
        maps::Maps,
        pins::Instance,
        pressure::{FloodWatch, Limits},
        rings::{Events, WebSamples},
    },
    net,
    net::key_network,
    outputs::{alerts::AlertSink, metrics, metrics::Metrics},
    policy::{
        enforce::{BlockBudget, Enforcer},
        evidence::Proof,
        findings::{self, Subject},
        protect,
        protect::Snapshot,
    },
    runtime::{
        block_lists::ListReloads,
        status::AgentStatus,
        systemd::Notifier,
        walk::{STATUS_TOP, Walked},
    },
};

/// Counts a block decision of drop mode by what it did.
fn count_block(metrics: &Metrics, verdict: &Verdict) {
    match verdict {
        Verdict::Block { .. } => metrics
            .blocks_added
            .with_label_values(&[BlockReason::Detection.name()])
            .inc(),
        Verdict::WouldBlock { .. } => metrics
            .blocks_refused
            .with_label_values(&[Refusal::DryRun.name()])
            .inc(),
        Verdict::NotBlocked(why) => metrics
            .blocks_refused
            .with_label_values(&[why.name()])
            .inc(),
        Verdict::Alert | Verdict::AlreadyBlocked { .. } => {}
    }
}

/// How often the web-sample ring is drained: the kernel wakes the agent only when a burst fills
/// a quarter of it (a wakeup per sample costs the data path more than the sample).
const WEB_DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often kernel statistics are folded into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the status file is rewritten (tracked sources now, the last walk's top list).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired blocks are removed from the detection-block hash (the kernel already
/// stops dropping at expiry; this is garbage collection and the blocks-expired metric).
const BLOCK_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired manual CIDR blocks are removed (the trie may hold 100k list entries).
const BLOCKLIST_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long the agent waits at start for the first read of the protected peers (until then,
/// and whenever they cannot be read, nothing is auto-blocked).
const PROTECTED_FIRST_READ: Duration = Duration::from_secs(5);
/// `STATUS=` sent with `READY=1` (`systemctl status` shows it).
const READY_STATUS: &str = "attached, watching for scans";

/// Runs the agent until SIGINT or SIGTERM. `reset_state` drops pinned blocks first.
pub async fn run(
    source: ConfigSource,
    instance: &Instance,
    force: bool,
    reset_state: bool,
) -> anyhow::Result<()> {
    let config = source.load()?;
    let interfaces = if config.interfaces.is_empty() {
        let iface = loader::default_interface().await?;
        info!("no --iface given: watching {iface}, the interface of the default route");
        vec![iface]
    } else {
        config.interfaces.clone()
    };
    // Check every interface before loading anything, so a typo fails fast and cleanly.
    for iface in &interfaces {
        loader::ifindex(iface)?;
    }
    loader::check_privileges()?;
    instance.ensure_pin_dir()?;
    if reset_state {
        instance.reset()?;
    }
    let mut ebpf = loader::load(config.tracker_capacity, Some(instance))?;
    let mut maps = Maps::take(&mut ebpf)?;
    let events = Events::take(&mut ebpf)?;
    let web_samples = WebSamples::take(&mut ebpf)?;
    // SAFETY: as for `events` below: the AsyncFd owns the ring and its fd.
    let web_samples =
        unsafe { AsyncFd::register_with_interest(web_samples, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow!("polling the web-sample ring buffer: {e}"))?;
    // SAFETY: `Events` owns the ring's map fd, which stays open and unchanged until the
    // AsyncFd (which owns `Events`) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("polling the event ring buffer: {e}"))?;
    let startup = Startup {
        hash_seed: rand::random::<u64>(),
        ticks: clock::calibrate_kernel_clock(&mut ebpf),
    };
    apply_config(&mut maps, &config, &startup)?;

    let metrics = Arc::new(Metrics::new(config.tracker_capacity)?);
    let attachments = attach_all(&mut ebpf, &interfaces, &config, force, &metrics).await?;
    let mut agent = Agent::new(
        config,
        source,
        instance,
        maps,
        (events, web_samples),
        metrics,
        startup,
        &attachments,
    )
    .await;
    let result = agent.serve().await;
    loader::detach_all(&mut ebpf, attachments);
    AgentStatus::remove(instance);
    result
}

/// Attaches to every interface, or to none (what was attached is detached on failure).
async fn attach_all(
    ebpf: &mut Ebpf,
    interfaces: &[String],
    config: &Config,
    force: bool,
    metrics: &Metrics,
) -> anyhow::Result<Vec<Attachment>> {
    let mut attachments = Vec::new();
    for iface in interfaces {
        let egress_required = config.mode == Mode::Drop && !config.dry_run;
        match loader::attach(ebpf, iface, config.xdp_mode, force, egress_required).await {
            Ok(a) => {
                metrics
                    .attach_info
                    .with_label_values(&[a.interface.as_str(), a.mode])
                    .set(1);
                attachments.push(a);
            }
            Err(e) => {
                loader::detach_all(ebpf, attachments);
                return Err(e.into());
            }
        }
    }
    Ok(attachments)
}

/// What the kernel configuration takes from this agent's start rather than from the
/// configuration file; kept across reloads.
#[derive(Clone, Copy)]
struct Startup {
    /// Seed of every kernel hash, random per start.
    hash_seed: u64,
    /// The data path's clock calibration (`clock::calibrate_kernel_clock`); `None` keeps the
    /// coarse clock.
    ticks: Option<Ticks>,
}

/// Writes the kernel configuration and replaces the ignore list.
fn apply_config(maps: &mut Maps, config: &Config, startup: &Startup) -> anyhow::Result<()> {
    maps.ignore.replace(&config.ignore)?;
    let mut kernel = config.kernel_config(startup.hash_seed);
    if let Some(ticks) = startup.ticks {
        kernel.set_ticks(ticks);
    }
    maps.config.write(&kernel)
}

/// The agent's state between events.
struct Agent<'i> {
    config: Config,
    source: ConfigSource,
    instance: &'i Instance,
    startup: Startup,
    maps: Maps,
    events: AsyncFd<Events>,
    /// First requests of connections to web ports (`web`).
    web_samples: AsyncFd<WebSamples>,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    budget: AlertBudget,
    /// Event to finding: recent targets, tool traits and web clients per source.
    reporter: Reporter,
    enforcer: Enforcer,
    /// The protected peers, kept current by [`protect::watch`].
    protected: tokio::sync::watch::Receiver<Snapshot>,
    protected_task: tokio::task::JoinHandle<()>,
    /// Block-list and reputation reloads, and the reputation index they publish.
    lists: ListReloads,
    /// Names of the interfaces attached to, by index (events carry the index).
    ifnames: HashMap<u32, String>,
    status: AgentStatus,
    /// CrowdSec Local API roles (off without `[crowdsec]`).
    fleet: Fleet,
    /// The tracker's and the flow map's last full walk.
    walked: Walked,
    /// Which state guarantees the traffic has ended (`kernel::pressure`).
    floods: FloodWatch,
    /// Names the process behind an egress finding.
    processes: Resolver,
}

/// The signals the agent answers.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

impl<'i> Agent<'i> {
    #[expect(
        clippy::too_many_arguments,
        reason = "the pieces `run` built, handed over once"
    )]
    async fn new(
        config: Config,
        source: ConfigSource,
        instance: &'i Instance,
        maps: Maps,
        (events, web_samples): (AsyncFd<Events>, AsyncFd<WebSamples>),
        metrics: Arc<Metrics>,
        startup: Startup,
        attachments: &[Attachment],
    ) -> Self {
        let status = AgentStatus {
            pid: std::process::id(),
            started: rfc3339(SystemTime::now()),
            interfaces: attachments
                .iter()
                .map(|a| (a.interface.clone(), a.mode.to_owned()))
                .collect(),
            tracker_capacity: config.tracker_capacity,
            ..AgentStatus::default()
        };
        let walked = Walked::new(config.tracker_capacity);
        let floods = FloodWatch::new(flood_limits(&config));
        let (mut protected, protected_task) = protect::watch(config.resolv_conf.clone());
        if tokio::time::timeout(PROTECTED_FIRST_READ, protected.wait_for(Option::is_some))
            .await
            .is_err()
        {
            warn!(
                "the protected peers (addresses, routes, resolvers) cannot be read yet: findings \
                 are alert-only until they can (not_blocked: protected_set_unavailable)"
            );
        }
        let snapshot = protected.borrow_and_update().clone();
        metrics
            .protected_set_available
            .set(i64::from(snapshot.is_some()));
        let policy = config
            .policy(snapshot)
            .with_evidence(maps.answered.clone(), maps.verified.clone());
        let enforcer = Enforcer::new(policy, block_budget(&config));
        let fleet = Fleet::start(
            config.crowdsec.as_ref(),
            &metrics.registry,
            config.mode == Mode::Drop && !config.dry_run,
        );
        Self {
            fleet,
            protected,
            protected_task,
            lists: ListReloads::default(),
            budget: AlertBudget::new(config.max_alerts_per_second),
            alerts: AlertSink::stdout(),
            config,
            source,
            instance,
            startup,
            maps,
            events,
            web_samples,
            metrics,
            reporter: Reporter::default(),
            enforcer,
            ifnames: attachments
                .iter()
                .map(|a| (a.ifindex, a.interface.clone()))
                .collect(),
            status,
            walked,
            floods,
            processes: Resolver::new(Roots::host()),
        }
    }

    /// The event loop. Returns on SIGINT/SIGTERM (Ok) or a fatal error.
    async fn serve(&mut self) -> anyhow::Result<()> {
        // Signal handlers first: once /healthz answers, a SIGTERM must already mean a clean stop.
        let mut signals = Signals::install()?;
        let server = metrics::serve(self.config.metrics_addr, self.metrics.clone()).await?;
        info!("metrics on http://{}/metrics", self.config.metrics_addr);
        self.alerts = self.config.alert_sink()?;

        let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
        let mut status_file_tick = tokio::time::interval(STATUS_INTERVAL);
        let mut web_tick = tokio::time::interval(WEB_DRAIN_INTERVAL);
        let mut sweep_tick = tokio::time::interval(BLOCK_SWEEP_INTERVAL);
        let mut list_sweep_tick = tokio::time::interval(BLOCKLIST_SWEEP_INTERVAL);
        self.load_block_lists();
        // Before READY: the first findings already name their lists.
        self.lists.load_reputation(&self.config);
        self.lists.reputation_built().await;
        self.write_status(0, Vec::new());
        info!(
            "watching for scans: window {}s, thresholds {:?}",
            self.config.window.as_secs(),
            self.config.thresholds
        );
        // Both programs are attached (run() attached them) and the endpoint is bound.
        let systemd = Notifier::from_env();
        systemd.ready(READY_STATUS);
        let mut watchdog_tick = systemd.watchdog_interval().map(tokio::time::interval);

        let outcome = loop {
            tokio::select! {
                guard = self.events.readable_mut() => {
                    let events = match guard {
                        Ok(mut guard) => {
                            let drained = guard.get_inner_mut().drain();
                            guard.clear_ready();
                            drained.events
                        }
                        Err(e) => break Err(anyhow!(e).context("waiting for events")),
                    };
                    self.report_all(&events);
                }
                guard = self.web_samples.readable_mut() => {
                    let samples = match guard {
                        Ok(mut guard) => {
                            let drained = guard.get_inner_mut().drain();
                            guard.clear_ready();
                            drained
                        }
                        Err(e) => break Err(anyhow!(e).context("waiting for web samples")),
                    };
                    self.inspect_web(&samples);
                }
                _ = web_tick.tick() => {
                    let samples = self.web_samples.get_mut().drain();
                    self.inspect_web(&samples);
                }
                _ = sweep_tick.tick() => self.sweep_blocks(),
                _ = list_sweep_tick.tick() => self.sweep_blocklist(),
                _ = stats_tick.tick() => self.refresh_stats(),
                () = tokio::time::sleep_until(self.walked.next) => {
                    self.walked.walk(&self.maps, &self.metrics, self.config.ipv6_prefix, self.config.top_sources);
                    self.refresh_status();
                }
                _ = status_file_tick.tick() => self.refresh_status(),
                _ = signals.hangup.recv() => {
                    systemd.reloading();
                    self.reload();
                    systemd.ready(READY_STATUS);
                }
                () = async {
                    match watchdog_tick.as_mut() {
                        Some(tick) => {
                            tick.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                } => systemd.watchdog(),
                batch = self.fleet.next_decisions() => {
                    let added = self.fleet.apply(
                        batch,
                        &mut self.maps.blocklist,
                        &self.enforcer.policy,
                        self.config.ipv6_prefix,
                    );
                    self.count_crowdsec_blocks(added);
                }
                changed = self.protected.changed() => match changed {
                    Ok(()) => self.protected_changed(),
                    Err(_) => break Err(anyhow!("the protected-peers watcher stopped")),
                },
                outcome = self.lists.lists_done() => {
                    if self.lists.lists_loaded(outcome, &self.metrics) {
                        self.load_block_lists();
                    }
                }
                _ = signals.interrupt.recv() => break Ok(()),
                _ = signals.terminate.recv() => break Ok(()),
            }
        };
        info!("shutting down: flushing alerts and detaching");
        systemd.stopping();
        server.abort();
        self.fleet.stop();
        self.protected_task.abort();
        self.lists.abort();
        // Last events that arrived before the signal.
        let last = self.events.get_mut().drain().events;
        self.report_all(&last);
        if let Err(e) = self.alerts.flush() {
            warn!("flushing alerts: {e}");
        }
        outcome
    }

    /// Folds the kernel statistics into the metrics and says when a flood ends or restores a
    /// state's guarantee: one log line each way.
    fn refresh_stats(&mut self) {
        let Some(stats) = self.walked.refresh_stats(&self.maps, &self.metrics) else {
            return;
        };
        for change in self.floods.observe(Instant::now(), &stats) {
            let name = change.guarantee.name();
            if change.lost {
                warn!(
                    "under flood: the {name} state turns over {:.1} times in the time it must keep                      an entry; {} (scanwatch_flood_guarantee_lost{{state=\"{name}\"}} is 1)",
                    change.ratio,
                    change.guarantee.lost()
                );
            } else {
                info!(
                    "the {name} state keeps its guarantee again (churn ratio {:.2})",
                    change.ratio
                );
            }
            self.metrics
                .guarantee_lost
                .with_label_values(&[name])
                .set(i64::from(change.lost));
        }
        for (g, ratio) in self.floods.ratios() {
            self.metrics
                .state_churn
                .with_label_values(&[g.name()])
                .set(ratio);
        }
    }

    fn report_all(&mut self, events: &[ScanEvent]) {
        for event in events {
            self.report(event);
        }
    }

    /// One kernel event: its finding, enforcement in drop mode, and the alert (within the
    /// alert budget).
    fn report(&mut self, event: &ScanEvent) {
        let interface = self
            .ifnames
            .get(&event.ifindex)
            .cloned()
            .unwrap_or_else(|| net::ifname(event.ifindex));
        let Some((mut f, counted)) =
            self.reporter
                .event(event, &self.maps, &self.config.report(), interface)
        else {
            return;
        };
        match &counted {
            Counted::Sources(_) => {}
            Counted::Prefixes {
                wide: (prefix, len),
                ..
            } => {
                f.listed_in = self
                    .lists
                    .reputation
                    .borrow()
                    .listed_in(&key_network(prefix, *len));
            }
            Counted::Source => {
                if f.direction == Direction::Ingress {
                    f.listed_in = self
                        .lists
                        .reputation
                        .borrow()
                        .listed_in(&key_network(&event.source, self.config.ipv6_prefix));
                }
            }
        }
        let verdict = self.decide(&Subject::Event(event, &counted), f.kind);
        f.set_verdict(&verdict);
        // The hop counts the decision weighed (none for a kind counted from this host's
        // replies: the source's other probes in the window are not the finding's packets).
        if let Proof::Hops(probes) = findings::proof(event, f.kind)
            && Direction::of(event) == Direction::Ingress
        {
            f.hops = Some(Hops {
                verified: self.enforcer.policy.verified.verified_hops(&event.source),
                probes: [probes.min, probes.max],
            });
        }
        if f.direction == Direction::Egress {
            // Who sent the crossing probe, and with what tool: the headers of its socket's
            // first recorded packet.
            let owner = self.maps.owners.get(event.sender.cookie);
            f.tool = owner
                .filter(|o| o.sample.len > 0)
                .map(|o| ToolMatch::of(&[o.sample]));
            f.process = Some(self.processes.process(&event.sender, owner.as_ref()));
        }
        if !self.write_finding(&f, &event.source) {
            return;
        }
        let latency_ns = Clock::monotonic_ns().saturating_sub(event.timestamp_ns);
        self.metrics.latency.observe(latency_ns as f64 / 1e9);
    }

    /// Counts a finding, publishes it to the fleet and writes its alert within the alert
    /// budget (`source` is the key it is about, whose prefix shares the budget); false when it
    /// was not written.
    fn write_finding(&mut self, f: &Finding, source: &SourceKey) -> bool {
        self.metrics
            .detections
            .with_label_values(&[f.kind.name(), f.direction.name()])
            .inc();
        if let Some(process) = &f.process {
            let name = process.as_ref().and_then(|p| p.name.as_deref());
            self.metrics.egress_by_process.inc(name);
        }
        self.fleet.publish(f);
        if !self
            .budget
            .take(f.kind, f.direction, source, Instant::now())
        {
            self.metrics.alerts_suppressed.inc();
            return false;
        }
        if let Err(e) = self.alerts.write(f) {
            self.metrics.alert_write_errors.inc();
            error!("writing an alert failed: {e}");
            return false;
        }
        true
    }

    /// Sampled first requests of connections to web ports: a request matching a scanner's
    /// signature is a `web_scan` finding for its source (one per source and window; later
    /// ones are counted).
    fn inspect_web(&mut self, samples: &[WebSample]) {
        for sample in samples {
            let interface = self
                .ifnames
                .get(&sample.ifindex)
                .cloned()
                .unwrap_or_else(|| net::ifname(sample.ifindex));
            let report =
                self.reporter
                    .web(sample, &self.config.report(), interface, Instant::now());
            let Some(WebReport::Finding {
                finding: mut f,
                source,
            }) = report
            else {
                if matches!(report, Some(WebReport::Repeat)) {
                    self.metrics.web_repeats.inc();
                }
                continue;
            };
            f.listed_in = self
                .lists
                .reputation
                .borrow()
                .listed_in(&key_network(&source, self.config.ipv6_prefix));
            let verdict = self.decide(&Subject::WebClient(&source), DetectionKind::WebScan);
            f.set_verdict(&verdict);
            self.write_finding(&f, &source);
        }
    }

    /// The verdict on a finding about `subject` (see `policy::findings`), counting each block
    /// decision it made.
    fn decide(&mut self, subject: &Subject<'_>, kind: DetectionKind) -> Verdict {
        let metrics = &self.metrics;
        self.enforcer.decide(
            &mut self.maps.blocks,
            self.config.block_rules(),
            self.config.ipv6_prefix,
            subject,
            kind,
            Clock::monotonic_ns(),
            |verdict| count_block(metrics, verdict),
        )
    }

    /// Starts reloading the enforced block lists (see `ListReloads::load_block_lists`).
    fn load_block_lists(&mut self) {
        self.lists
            .load_block_lists(&self.config, &self.enforcer.policy, self.instance);
    }

    /// Counts blocks added for CrowdSec decisions with the other reasons'.
    fn count_crowdsec_blocks(&self, added: usize) {
        self.metrics
            .blocks_added
            .with_label_values(&[BlockReason::Crowdsec.name()])
            .inc_by(added as u64);
    }

    /// Removes expired per-source blocks and refreshes their gauge.
    fn sweep_blocks(&mut self) {
        let swept = self.maps.blocks.sweep(Clock::monotonic_ns());
        self.metrics
            .record_sweep("detection", swept.removed, swept.left);
    }

    /// Removes expired blocks from both maps and refreshes both gauges.
    fn sweep_blocklist(&mut self) {
        self.sweep_blocks();
        let swept = self.maps.blocklist.sweep(Clock::monotonic_ns());
        self.metrics.record_sweep("cidr", swept.removed, swept.left);
    }

    /// Rewrites the status file: sources tracked now (see `Walked::tracked_now`), the last
    /// walk's top.
    fn refresh_status(&mut self) {
        let tracked = self.walked.tracked_now(&self.maps);
        self.write_status(tracked, self.walked.top.clone());
    }

    fn write_status(&mut self, tracked: usize, top: Vec<(String, u64)>) {
        let status = &mut self.status;
        status.mode = self.config.mode;
        status.dry_run = self.config.dry_run;
        status.tracked_sources = tracked;
        status.top_sources = top.into_iter().take(STATUS_TOP).collect();
        status.never_block = self
            .config
            .never_block
            .iter()
            .map(ToString::to_string)
            .collect();
        status.ipv6_prefix = self.config.ipv6_prefix;
        status.resolv_conf.clone_from(&self.config.resolv_conf);
        status.crowdsec = self.fleet.status();
        if let Err(e) = status.write(self.instance) {
            warn!("writing the status file: {e:#}");
        }
    }

    /// SIGHUP: reloads the configuration (keeping the old one when the new one is bad) and the
    /// block lists, and reopens the alert log.
    fn reload(&mut self) {
        info!("SIGHUP: reloading configuration and reopening the alert log");
        match self.source.load() {
            Ok(new) => {
                warn_restart_only(&self.config, &new);
                if let Err(e) = apply_config(&mut self.maps, &new, &self.startup) {
                    error!(
                        "applying the reloaded configuration failed, keeping the old one: {e:#}"
                    );
                } else {
                    if !new.same_alert_output(&self.config) {
                        match new.alert_sink() {
                            Ok(sink) => self.alerts = sink,
                            Err(e) => error!("{e:#}"),
                        }
                    }
                    self.budget = AlertBudget::new(new.max_alerts_per_second);
                    // The current set stays in force until a new watcher (other resolver
                    // files) publishes its first read.
                    let snapshot = self.enforcer.policy.peers.clone();
                    if new.resolv_conf != self.config.resolv_conf {
                        self.protected_task.abort();
                        (self.protected, self.protected_task) =
                            protect::watch(new.resolv_conf.clone());
                    }
                    self.enforcer.policy = new
                        .policy(snapshot)
                        .with_evidence(self.maps.answered.clone(), self.maps.verified.clone());
                    if (new.max_blocks_per_second, new.block_burst)
                        != (self.config.max_blocks_per_second, self.config.block_burst)
                    {
                        self.enforcer.budget = block_budget(&new);
                    }
                    info!(
                        "configuration reloaded: {} web signatures",
                        new.web.signatures.len()
                    );
                    // The tracker keeps the capacity it was loaded with until a restart.
                    self.floods.set_limits(Limits {
                        tracker_capacity: self.config.tracker_capacity,
                        ..flood_limits(&new)
                    });
                    self.config = new;
                    self.load_block_lists();
                    self.lists.load_reputation(&self.config);
                }
            }
            Err(e) => error!("configuration not reloaded, keeping the old one: {e:#}"),
        }
        if let Err(e) = self.alerts.reopen() {
            error!("{e:#}");
        }
    }

    /// The protected peers changed (or became unreadable, or readable again): enforcement
    /// uses the new set at once, and the block lists are re-filtered against it.
    fn protected_changed(&mut self) {
        let snapshot = self.protected.borrow_and_update().clone();
        let was_known = self.enforcer.policy.peers.is_some();
        let known = snapshot.is_some();
        self.enforcer.policy.peers = snapshot;
        self.metrics.protected_set_available.set(i64::from(known));
        let added = self
            .fleet
            .protected_changed(&mut self.maps.blocklist, &self.enforcer.policy);
        self.count_crowdsec_blocks(added);
        if known {
            if !was_known {
                info!("the protected peers can be read: automatic blocks resume");
            }
            let enforcing = self.config.mode == Mode::Drop && !self.config.dry_run;
            if enforcing && !self.config.enforced_lists().is_empty() {
                self.load_block_lists();
            }
        }
    }
}

/// The budget of new automatic blocks of a configuration.
/// What the flood watch measures churn against: the windows and the tracker's capacity.
fn flood_limits(config: &Config) -> Limits {
    Limits {
        window: config.window,
        long_window: config.long_window,
        tracker_capacity: config.tracker_capacity,
    }
}

fn block_budget(config: &Config) -> BlockBudget {
    BlockBudget::new(config.max_blocks_per_second, config.block_burst)
}

fn warn_restart_only(old: &Config, new: &Config) {
    for (changed, key) in [
        (old.interfaces != new.interfaces, "interfaces"),
        (old.xdp_mode != new.xdp_mode, "xdp_mode"),
        (old.metrics_addr != new.metrics_addr, "metrics_addr"),
        (
            old.tracker_capacity != new.tracker_capacity,
            "tracker_capacity",
        ),
        (old.crowdsec != new.crowdsec, "crowdsec"),
    ] {
        if changed {
            warn!("`{key}` changed; it takes effect on restart, not on reload");
        }
    }
}
