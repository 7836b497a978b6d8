//! The running agent: loads and attaches the programs, writes their configuration, and owns
//! the event loop — kernel events become findings, blocks and alerts; ticks refresh metrics,
//! sweep expired blocks and write the status file; SIGHUP reloads; SIGINT/SIGTERM detach.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::anyhow;
use aya::Ebpf;
use log::{error, info, warn};
use scanwatch_common::{
    block::BlockReason,
    event::{DetectionKind, ScanEvent},
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
};

use crate::{
    alerts::AlertSink,
    clock::{Clock, rfc3339},
    config::{Config, FileConfig, Mode, Overrides},
    detect::{AlertBudget, Direction, Examples, finding},
    enforce::{self, Enforcer, Policy, Refusal, Verdict},
    kernel::{Events, Maps},
    loader::{self, Attachment},
    metrics::{self, Metrics},
    net::{self, HostNetwork, format_source},
    pins::{AgentStatus, Instance},
};

/// How often kernel statistics are folded into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the tracker is walked for the tracked-sources gauges and the status file.
const TRACKER_WALK_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired blocks are removed from the detection-block hash (the kernel already
/// stops dropping at expiry; this is garbage collection and the blocks-expired metric).
const BLOCK_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired manual CIDR blocks are removed (the trie may hold 100k list entries).
const BLOCKLIST_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Sources listed in the status file's top list.
const STATUS_TOP: usize = 10;

/// Where the configuration came from, so SIGHUP can rebuild it.
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads and validates the configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        let file = self.path.as_deref().map(FileConfig::read).transpose()?;
        Ok(Config::build(file.as_ref(), &self.overrides)?)
    }
}

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
    if !loader::has_privileges() {
        return Err(loader::LoadError::NotPrivileged.into());
    }
    instance.ensure_pin_dir()?;
    if reset_state {
        instance.reset()?;
    }
    let mut ebpf = loader::load(config.tracker_capacity, Some(instance))?;
    let mut maps = Maps::take(&mut ebpf)?;
    let events = Events::take(&mut ebpf)?;
    // SAFETY: `Events` owns the ring's map fd, which stays open and unchanged until the
    // AsyncFd (which owns `Events`) is dropped.
    let events = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("polling the event ring buffer: {e}"))?;
    let hash_seed = rand::random::<u64>();
    apply_config(&mut maps, &config, hash_seed)?;

    let metrics = Arc::new(Metrics::new(config.tracker_capacity)?);
    let attachments = attach_all(&mut ebpf, &interfaces, &config, force, &metrics).await?;
    let mut agent = Agent::new(
        config,
        source,
        instance,
        maps,
        events,
        metrics,
        hash_seed,
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
        match loader::attach(ebpf, iface, config.xdp_mode, force).await {
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

/// Writes the kernel configuration and replaces the ignore list.
fn apply_config(maps: &mut Maps, config: &Config, hash_seed: u64) -> anyhow::Result<()> {
    maps.ignore.replace(&config.ignore)?;
    maps.config.write(&config.kernel_config(hash_seed))
}

/// The agent's state between events.
struct Agent<'i> {
    config: Config,
    source: ConfigSource,
    instance: &'i Instance,
    hash_seed: u64,
    maps: Maps,
    events: AsyncFd<Events>,
    metrics: Arc<Metrics>,
    alerts: AlertSink,
    budget: AlertBudget,
    examples: Examples,
    enforcer: Enforcer,
    /// Names of the interfaces attached to, by index (events carry the index).
    ifnames: HashMap<u32, String>,
    status: AgentStatus,
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
        events: AsyncFd<Events>,
        metrics: Arc<Metrics>,
        hash_seed: u64,
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
        let enforcer = Enforcer::new(policy(&config).await);
        Self {
            budget: AlertBudget::new(config.max_alerts_per_second),
            alerts: AlertSink::Stdout,
            config,
            source,
            instance,
            hash_seed,
            maps,
            events,
            metrics,
            examples: Examples::default(),
            enforcer,
            ifnames: attachments
                .iter()
                .map(|a| (a.ifindex, a.interface.clone()))
                .collect(),
            status,
        }
    }

    /// The event loop. Returns on SIGINT/SIGTERM (Ok) or a fatal error.
    async fn serve(&mut self) -> anyhow::Result<()> {
        // Signal handlers first: once /healthz answers, a SIGTERM must already mean a clean stop.
        let mut signals = Signals::install()?;
        let server = metrics::serve(self.config.metrics_addr, self.metrics.clone()).await?;
        info!("metrics on http://{}/metrics", self.config.metrics_addr);
        self.alerts = AlertSink::open(self.config.alert_log.as_deref())?;

        let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
        let mut walk_tick = tokio::time::interval(TRACKER_WALK_INTERVAL);
        let mut sweep_tick = tokio::time::interval(BLOCK_SWEEP_INTERVAL);
        let mut list_sweep_tick = tokio::time::interval(BLOCKLIST_SWEEP_INTERVAL);
        self.load_block_lists().await;
        self.write_status(0, Vec::new());
        info!(
            "watching for scans: window {}s, thresholds {:?}",
            self.config.window.as_secs(),
            self.config.thresholds
        );

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
                _ = sweep_tick.tick() => self.sweep_blocks(),
                _ = list_sweep_tick.tick() => self.sweep_blocklist(),
                _ = stats_tick.tick() => self.refresh_stats(),
                _ = walk_tick.tick() => self.walk_maps(),
                _ = signals.hangup.recv() => self.reload().await,
                _ = signals.interrupt.recv() => break Ok(()),
                _ = signals.terminate.recv() => break Ok(()),
            }
        };
        info!("shutting down: flushing alerts and detaching");
        server.abort();
        // Last events that arrived before the signal.
        let last = self.events.get_mut().drain().events;
        self.report_all(&last);
        if let Err(e) = self.alerts.flush() {
            warn!("flushing alerts: {e}");
        }
        outcome
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
        let Some(mut f) = finding(
            event,
            interface,
            self.config.window,
            self.config.ipv6_prefix,
        ) else {
            return;
        };
        f.examples = self.examples.add(event);
        self.metrics
            .detections
            .with_label_values(&[f.kind.name(), f.direction.name()])
            .inc();
        let verdict = self.enforce(event, f.kind);
        f.set_verdict(&verdict);
        if !self.budget.take(f.kind, f.direction, Instant::now()) {
            self.metrics.alerts_suppressed.inc();
            return;
        }
        if let Err(e) = self.alerts.write(&f) {
            self.metrics.alert_write_errors.inc();
            error!("writing an alert failed: {e}");
            return;
        }
        let latency_ns = Clock::monotonic_ns().saturating_sub(event.timestamp_ns);
        self.metrics.latency.observe(latency_ns as f64 / 1e9);
    }

    /// Blocks the source of an ingress finding in drop mode (egress findings are this host's
    /// own probes: alert only, never a block), and counts what was done.
    fn enforce(&mut self, event: &ScanEvent, kind: DetectionKind) -> Verdict {
        if Direction::of(event) == Direction::Egress {
            return Verdict::Alert;
        }
        let verdict = self.enforcer.block_finding(
            &mut self.maps.blocks,
            &event.source,
            self.config.ipv6_prefix,
            kind.name(),
            Clock::monotonic_ns(),
        );
        match &verdict {
            Verdict::Block { .. } => self
                .metrics
                .blocks_added
                .with_label_values(&[BlockReason::Detection.name()])
                .inc(),
            Verdict::WouldBlock { .. } => self
                .metrics
                .blocks_refused
                .with_label_values(&[Refusal::DryRun.name()])
                .inc(),
            Verdict::NotBlocked(why) => self
                .metrics
                .blocks_refused
                .with_label_values(&[why.name()])
                .inc(),
            Verdict::Alert | Verdict::AlreadyBlocked { .. } => {}
        }
        verdict
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

    fn refresh_stats(&self) {
        match self.maps.stats.read() {
            Ok(stats) => self.metrics.update_kernel(&stats),
            Err(e) => warn!("reading kernel statistics: {e:#}"),
        }
    }

    /// Walks the tracker and the flow map for the gauges and the status file.
    fn walk_maps(&mut self) {
        let prefix = self.config.ipv6_prefix;
        let (tracked, top) = self
            .maps
            .tracker
            .top(self.config.top_sources.max(STATUS_TOP));
        let top: Vec<(String, u64)> = top
            .into_iter()
            .map(|(key, probes)| (format_source(&key, prefix), probes))
            .collect();
        self.metrics.set_flows(self.maps.flows.len());
        self.metrics.set_tracked(tracked);
        self.metrics
            .set_top_sources(&top[..top.len().min(self.config.top_sources)]);
        self.write_status(tracked, top);
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
        if let Err(e) = status.write(self.instance) {
            warn!("writing the status file: {e:#}");
        }
    }

    /// SIGHUP: reloads the configuration (keeping the old one when the new one is bad) and the
    /// block lists, and reopens the alert log.
    async fn reload(&mut self) {
        info!("SIGHUP: reloading configuration and reopening the alert log");
        match self.source.load() {
            Ok(new) => {
                warn_restart_only(&self.config, &new);
                if let Err(e) = apply_config(&mut self.maps, &new, self.hash_seed) {
                    error!(
                        "applying the reloaded configuration failed, keeping the old one: {e:#}"
                    );
                } else {
                    if new.alert_log != self.config.alert_log {
                        match AlertSink::open(new.alert_log.as_deref()) {
                            Ok(sink) => self.alerts = sink,
                            Err(e) => error!("{e:#}"),
                        }
                    }
                    self.budget = AlertBudget::new(new.max_alerts_per_second);
                    self.enforcer.policy = policy(&new).await;
                    self.config = new;
                    self.load_block_lists().await;
                }
            }
            Err(e) => error!("configuration not reloaded, keeping the old one: {e:#}"),
        }
        if let Err(e) = self.alerts.reopen() {
            error!("{e:#}");
        }
    }

    /// Loads the configured block lists into the trie (drop mode, not dry run).
    async fn load_block_lists(&mut self) {
        if self.config.mode != Mode::Drop || self.config.dry_run {
            if !self.config.block_lists.is_empty() {
                info!(
                    "block lists are enforced in drop mode only (not in monitor mode or dry run)"
                );
            }
            return;
        }
        let wanted = enforce::read_block_lists(&self.config.block_lists, &self.enforcer.policy);
        let trie = &mut self.maps.blocklist;
        match trie.sync_lists(&wanted, Clock::monotonic_ns()).await {
            Ok((added, removed)) => {
                info!(
                    "block lists: {} CIDRs enforced ({added} added, {removed} removed)",
                    wanted.len()
                );
                self.metrics
                    .blocks_added
                    .with_label_values(&[BlockReason::List.name()])
                    .inc_by(added as u64);
                self.metrics
                    .blocked_sources
                    .with_label_values(&["cidr"])
                    .set(trie.len() as i64);
            }
            Err(e) => error!("{e:#}"),
        }
    }
}

/// The enforcement policy of a configuration, with this host's addresses and gateways.
async fn policy(config: &Config) -> Policy {
    let host = HostNetwork::read().await.unwrap_or_else(|e| {
        warn!("reading this host's addresses and routes (netlink) failed: {e}");
        HostNetwork::default()
    });
    Policy::new(config, &host)
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
    ] {
        if changed {
            warn!("`{key}` changed; it takes effect on restart, not on reload");
        }
    }
}
