//! The running agent: loads and attaches the program, writes its configuration, turns ring
//! buffer events into alerts, refreshes metrics, reloads on SIGHUP and detaches on
//! SIGINT/SIGTERM.

use std::{
    collections::HashMap as StdHashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
};
use ipnet::IpNet;
use log::{error, info, warn};
use scanwatch_common::{
    addr::SourceKey,
    block::{BlockEntry, BlockReason},
    config::KernelConfig,
    event::{DIRECTION_EGRESS, ScanEvent},
    flow::{FlowKey, FlowState},
    maps,
    state::SourceState,
    stats::STATS_LEN,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    alerts::AlertSink,
    config::{Config, FileConfig, Mode, Overrides},
    detect::{AlertBudget, Clock, Examples, finding, format_source},
    enforce::{self, Enforcer, Policy, Verdict, lpm_key},
    loader::{self, Attachment},
    metrics::{self, Metrics},
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
    let mut config = source.load()?;
    let interfaces = if config.interfaces.is_empty() {
        let iface = loader::default_interface()?;
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
    let hash_seed = rand::random::<u64>();
    apply_config(&mut ebpf, &config, hash_seed)?;
    let mut enforcer = Enforcer::new(policy(&config));

    let metrics = Metrics::new(config.tracker_capacity)?;
    let mut attachments: Vec<Attachment> = Vec::new();
    for iface in &interfaces {
        match loader::attach(&mut ebpf, iface, config.xdp_mode, force) {
            Ok(a) => {
                metrics
                    .attach_info
                    .with_label_values(&[a.interface.as_str(), a.mode])
                    .set(1);
                attachments.push(a);
            }
            Err(e) => {
                loader::detach_all(&mut ebpf, attachments);
                return Err(e.into());
            }
        }
    }
    let ifnames: StdHashMap<u32, String> = attachments
        .iter()
        .map(|a| (a.ifindex, a.interface.clone()))
        .collect();

    let mut status = AgentStatus {
        pid: std::process::id(),
        started: crate::detect::rfc3339(std::time::SystemTime::now()),
        interfaces: attachments
            .iter()
            .map(|a| (a.interface.clone(), a.mode.to_owned()))
            .collect(),
        tracker_capacity: config.tracker_capacity,
        ..AgentStatus::default()
    };
    let result = serve(
        &mut ebpf,
        &mut config,
        &source,
        metrics,
        hash_seed,
        &ifnames,
        &mut enforcer,
        (&mut status, instance),
    )
    .await;
    loader::detach_all(&mut ebpf, attachments);
    AgentStatus::remove(instance);
    result
}

/// The event loop, after attach. Returns on SIGINT/SIGTERM (Ok) or a fatal error.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's whole state, passed once"
)]
async fn serve(
    ebpf: &mut Ebpf,
    config: &mut Config,
    source: &ConfigSource,
    metrics: Metrics,
    hash_seed: u64,
    ifnames: &StdHashMap<u32, String>,
    enforcer: &mut Enforcer,
    (status, instance): (&mut AgentStatus, &Instance),
) -> anyhow::Result<()> {
    let metrics = Arc::new(Mutex::new(metrics));
    let render = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.lock().map(|m| m.render()).unwrap_or_default())
    };
    // Signal handlers first: once /healthz answers, a SIGTERM must already mean a clean stop.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let server = metrics::serve(config.metrics_addr, render).await?;
    info!("metrics on http://{}/metrics", config.metrics_addr);

    let ring = RingBuf::try_from(
        ebpf.take_map(maps::EVENTS)
            .ok_or_else(|| anyhow!("EVENTS map missing from the object"))?,
    )?;
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the AsyncFd
    // (which owns the RingBuf) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow!("polling the event ring buffer: {e}"))?;
    let mut alerts = AlertSink::open(config.alert_log.as_deref())?;
    let mut budget = AlertBudget::new(config.max_alerts_per_second);
    let mut examples = Examples::default();

    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    let mut walk_tick = tokio::time::interval(TRACKER_WALK_INTERVAL);
    let mut sweep_tick = tokio::time::interval(BLOCK_SWEEP_INTERVAL);
    let mut list_sweep_tick = tokio::time::interval(BLOCKLIST_SWEEP_INTERVAL);
    load_block_lists(ebpf, config, &enforcer.policy, &metrics).await;
    update_status(status, instance, config, 0, Vec::new());
    info!(
        "watching for scans: window {}s, thresholds {:?}",
        config.window.as_secs(),
        config.thresholds
    );

    let outcome = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => break Err(anyhow!(e).context("waiting for events")),
                };
                let mut events = Vec::new();
                while let Some(item) = guard.get_inner_mut().next() {
                    if item.len() == size_of::<ScanEvent>() {
                        // SAFETY: the kernel wrote a ScanEvent of exactly this size.
                        events.push(unsafe { item.as_ptr().cast::<ScanEvent>().read_unaligned() });
                    }
                }
                guard.clear_ready();
                let m = metrics.lock().expect("metrics lock");
                for event in &events {
                    report(event, config, ifnames, &mut alerts, &mut budget, &m, ebpf, (enforcer, &mut examples));
                }
            }
            _ = sweep_tick.tick() => {
                let m = metrics.lock().expect("metrics lock");
                sweep(ebpf, &m, false);
            }
            _ = list_sweep_tick.tick() => {
                let m = metrics.lock().expect("metrics lock");
                sweep(ebpf, &m, true);
            }
            _ = stats_tick.tick() => {
                match read_stats(ebpf) {
                    Ok(kernel_stats) => metrics.lock().expect("metrics lock").update_kernel(&kernel_stats),
                    Err(e) => warn!("reading kernel statistics: {e:#}"),
                }
            }
            _ = walk_tick.tick() => {
                match walk_tracker(ebpf, config.top_sources.max(STATUS_TOP), config.ipv6_prefix) {
                    Ok((tracked, top)) => {
                        let flows = count_flows(ebpf);
                        let m = metrics.lock().expect("metrics lock");
                        m.set_flows(flows);
                        m.set_tracked(tracked);
                        m.set_top_sources(&top);
                        update_status(status, instance, config, tracked, top);
                    }
                    Err(e) => warn!("walking the tracker: {e:#}"),
                }
            }
            _ = sighup.recv() => {
                info!("SIGHUP: reloading configuration and reopening the alert log");
                match source.load() {
                    Ok(new) => {
                        warn_restart_only(config, &new);
                        if let Err(e) = apply_config(ebpf, &new, hash_seed) {
                            error!("applying the reloaded configuration failed, keeping the old one: {e:#}");
                        } else {
                            if new.alert_log != config.alert_log {
                                match AlertSink::open(new.alert_log.as_deref()) {
                                    Ok(sink) => alerts = sink,
                                    Err(e) => error!("{e:#}"),
                                }
                            }
                            budget = AlertBudget::new(new.max_alerts_per_second);
                            enforcer.policy = policy(&new);
                            *config = new;
                            load_block_lists(ebpf, config, &enforcer.policy, &metrics).await;
                        }
                    }
                    Err(e) => error!("configuration not reloaded, keeping the old one: {e:#}"),
                }
                if let Err(e) = alerts.reopen() {
                    error!("{e:#}");
                }
            }
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
        }
    };
    info!("shutting down: flushing alerts and detaching");
    server.abort();
    // Last events that arrived before the signal.
    let mut events = Vec::new();
    while let Some(item) = ring.get_mut().next() {
        if item.len() == size_of::<ScanEvent>() {
            // SAFETY: as above.
            events.push(unsafe { item.as_ptr().cast::<ScanEvent>().read_unaligned() });
        }
    }
    {
        let m = metrics.lock().expect("metrics lock");
        for event in &events {
            report(
                event,
                config,
                ifnames,
                &mut alerts,
                &mut budget,
                &m,
                ebpf,
                (enforcer, &mut examples),
            );
        }
    }
    if let Err(e) = alerts.flush() {
        warn!("flushing alerts: {e}");
    }
    outcome
}

/// Writes the finding for one event, within the alert budget, after enforcement acted on it.
#[expect(clippy::too_many_arguments, reason = "one call site, the loop's state")]
fn report(
    event: &ScanEvent,
    config: &Config,
    ifnames: &StdHashMap<u32, String>,
    alerts: &mut AlertSink,
    budget: &mut AlertBudget,
    metrics: &Metrics,
    ebpf: &mut Ebpf,
    (enforcer, examples): (&mut Enforcer, &mut Examples),
) {
    let interface = ifnames
        .get(&event.ifindex)
        .cloned()
        .unwrap_or_else(|| loader::ifname(event.ifindex));
    let Some(mut f) = finding(event, interface, config.window, config.ipv6_prefix) else {
        return;
    };
    f.examples = examples.add(event);
    metrics
        .detections
        .with_label_values(&[f.kind, f.direction])
        .inc();
    // Egress findings are this host's own probes: alert only, never a block.
    let verdict = if event.direction == DIRECTION_EGRESS {
        Verdict::Alert
    } else {
        match blocks_map(ebpf) {
            Ok(mut blocks) => enforcer.on_finding(
                &mut blocks,
                &event.source,
                config.ipv6_prefix,
                f.kind,
                Clock::monotonic_ns(),
            ),
            Err(e) => {
                error!("{e:#}");
                Verdict::NotBlocked("error")
            }
        }
    };
    match &verdict {
        Verdict::Block { .. } => {
            metrics
                .blocks_added
                .with_label_values(&[BlockReason::Detection.name()])
                .inc();
        }
        Verdict::WouldBlock { .. } => metrics.blocks_refused.with_label_values(&["dry_run"]).inc(),
        Verdict::NotBlocked(why) => metrics.blocks_refused.with_label_values(&[why]).inc(),
        _ => {}
    }
    f.set_verdict(&verdict);
    if !budget.take(Instant::now()) {
        metrics.alerts_suppressed.inc();
        return;
    }
    if let Err(e) = alerts.write(&f) {
        metrics.alert_write_errors.inc();
        error!("writing an alert failed: {e}");
        return;
    }
    let latency_ns = Clock::monotonic_ns().saturating_sub(event.timestamp_ns);
    metrics.latency.observe(latency_ns as f64 / 1e9);
}

/// Sources listed in the status file's top list.
const STATUS_TOP: usize = 10;

fn update_status(
    status: &mut AgentStatus,
    instance: &Instance,
    config: &Config,
    tracked: usize,
    top: Vec<(String, u64)>,
) {
    status.mode = match config.mode {
        Mode::Monitor => "monitor".into(),
        Mode::Drop => "drop".into(),
    };
    status.dry_run = config.dry_run;
    status.tracked_sources = tracked;
    status.top_sources = top.into_iter().take(STATUS_TOP).collect();
    status.never_block = config.never_block.iter().map(ToString::to_string).collect();
    status.ipv6_prefix = config.ipv6_prefix;
    if let Err(e) = status.write(instance) {
        warn!("writing the status file: {e:#}");
    }
}

/// The enforcement policy of a configuration, with this host's addresses and gateways.
fn policy(config: &Config) -> Policy {
    Policy {
        drop: config.mode == Mode::Drop,
        dry_run: config.dry_run,
        ttl: config.block_ttl,
        max_ttl: config.max_block_ttl,
        never_block: config.never_block.clone(),
        own: enforce::own_addresses(),
        gateways: enforce::default_gateways(),
    }
}

/// The detection-block hash.
fn blocks_map(ebpf: &mut Ebpf) -> anyhow::Result<HashMap<&mut MapData, SourceKey, BlockEntry>> {
    Ok(HashMap::try_from(
        ebpf.map_mut(scanwatch_common::maps::BLOCKS)
            .context("BLOCKS map")?,
    )?)
}

/// The CIDR block trie.
fn blocklist_map(ebpf: &mut Ebpf) -> anyhow::Result<LpmTrie<&mut MapData, [u8; 16], BlockEntry>> {
    Ok(LpmTrie::try_from(
        ebpf.map_mut(scanwatch_common::maps::BLOCKLIST)
            .context("BLOCKLIST map")?,
    )?)
}

/// Removes expired blocks (from the trie too when `cidr`) and refreshes the block gauges.
fn sweep(ebpf: &mut Ebpf, metrics: &Metrics, cidr: bool) {
    let now = Clock::monotonic_ns();
    match blocks_map(ebpf) {
        Ok(mut blocks) => {
            let swept = enforce::sweep_blocks(&mut blocks, now);
            metrics.blocks_expired.inc_by(swept.removed as u64);
            metrics
                .blocked_sources
                .with_label_values(&["detection"])
                .set(swept.left as i64);
        }
        Err(e) => warn!("sweeping blocks: {e:#}"),
    }
    if cidr {
        match blocklist_map(ebpf) {
            Ok(mut trie) => {
                let swept = enforce::sweep_blocklist(&mut trie, now);
                metrics.blocks_expired.inc_by(swept.removed as u64);
                metrics
                    .blocked_sources
                    .with_label_values(&["cidr"])
                    .set(swept.left as i64);
            }
            Err(e) => warn!("sweeping CIDR blocks: {e:#}"),
        }
    }
}

/// Loads the configured block lists into the trie (drop mode, not dry run).
async fn load_block_lists(
    ebpf: &mut Ebpf,
    config: &Config,
    policy: &Policy,
    metrics: &Arc<Mutex<Metrics>>,
) {
    if config.mode != Mode::Drop || config.dry_run {
        if !config.block_lists.is_empty() {
            info!("block lists are enforced in drop mode only (not in monitor mode or dry run)");
        }
        return;
    }
    let wanted = enforce::read_block_lists(&config.block_lists, policy);
    let mut trie = match blocklist_map(ebpf) {
        Ok(t) => t,
        Err(e) => {
            error!("{e:#}");
            return;
        }
    };
    match enforce::sync_block_lists(&mut trie, &wanted, Clock::monotonic_ns()).await {
        Ok((added, removed)) => {
            info!(
                "block lists: {} CIDRs enforced ({added} added, {removed} removed)",
                wanted.len()
            );
            let m = metrics.lock().expect("metrics lock");
            m.blocks_added
                .with_label_values(&[BlockReason::List.name()])
                .inc_by(added as u64);
            m.blocked_sources
                .with_label_values(&["cidr"])
                .set(trie.keys().flatten().count() as i64);
        }
        Err(e) => error!("{e:#}"),
    }
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

/// Writes the kernel configuration and replaces the ignore list.
pub fn apply_config(ebpf: &mut Ebpf, config: &Config, hash_seed: u64) -> anyhow::Result<()> {
    write_ignore_list(ebpf, &config.ignore)?;
    write_kernel_config(ebpf, &config.kernel_config(hash_seed))
}

/// Writes the kernel's runtime configuration (takes effect on the next packet).
pub fn write_kernel_config(ebpf: &mut Ebpf, kernel: &KernelConfig) -> anyhow::Result<()> {
    let mut array: Array<&mut MapData, KernelConfig> =
        Array::try_from(ebpf.map_mut(maps::CONFIG).context("CONFIG map")?)?;
    array.set(0, kernel, 0).context("writing CONFIG")?;
    Ok(())
}

fn write_ignore_list(ebpf: &mut Ebpf, ignore: &[IpNet]) -> anyhow::Result<()> {
    let mut trie: LpmTrie<&mut MapData, [u8; 16], u32> =
        LpmTrie::try_from(ebpf.map_mut(maps::IGNORE).context("IGNORE map")?)?;
    let old: Vec<Key<[u8; 16]>> = trie.keys().filter_map(Result::ok).collect();
    for net in ignore {
        trie.insert(&lpm_key(net), 1, 0)
            .with_context(|| format!("adding {net} to the ignore list"))?;
    }
    let wanted: Vec<Key<[u8; 16]>> = ignore.iter().map(lpm_key).collect();
    for key in old {
        let stale = !wanted
            .iter()
            .any(|w| w.prefix_len() == key.prefix_len() && w.data() == key.data());
        if stale {
            trie.remove(&key)
                .context("removing a stale ignore-list entry")?;
        }
    }
    Ok(())
}

/// Kernel statistics summed over CPUs, indexed by slot.
pub fn read_stats(ebpf: &Ebpf) -> anyhow::Result<Vec<u64>> {
    let array: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map(maps::STATS).context("STATS map")?)?;
    (0..STATS_LEN)
        .map(|slot| Ok(array.get(&slot, 0)?.iter().sum()))
        .collect()
}

/// Outbound flows in the flow map.
fn count_flows(ebpf: &Ebpf) -> usize {
    ebpf.map(scanwatch_common::maps::FLOWS)
        .and_then(|m| HashMap::<&MapData, FlowKey, FlowState>::try_from(m).ok())
        .map_or(0, |m| m.keys().flatten().count())
}

/// Walks the tracker: the number of sources, and the `top` most active in their window.
fn walk_tracker(
    ebpf: &Ebpf,
    top: usize,
    ipv6_prefix: u32,
) -> anyhow::Result<(usize, Vec<(String, u64)>)> {
    let map: HashMap<&MapData, SourceKey, SourceState> =
        HashMap::try_from(ebpf.map(maps::TRACKER).context("TRACKER map")?)?;
    if top == 0 {
        return Ok((map.keys().flatten().count(), Vec::new()));
    }
    let mut all: Vec<(u64, SourceKey)> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, s)| (s.probes.iter().map(|n| u64::from(*n)).sum(), k))
        .collect();
    let tracked = all.len();
    all.sort_unstable_by_key(|(probes, _)| std::cmp::Reverse(*probes));
    Ok((
        tracked,
        all.into_iter()
            .take(top)
            .map(|(n, k)| (format_source(&k, ipv6_prefix), n))
            .collect(),
    ))
}
