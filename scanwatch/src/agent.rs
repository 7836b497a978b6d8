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
    addr::SourceKey, config::KernelConfig, event::ScanEvent, maps, state::SourceState,
    stats::STATS_LEN,
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    alerts::AlertSink,
    config::{Config, FileConfig, Overrides},
    detect::{AlertBudget, Clock, finding, format_source},
    loader::{self, Attachment},
    metrics::{self, Metrics},
};

/// How often kernel statistics are folded into the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the tracker is walked for the tracked-sources gauges.
const TRACKER_WALK_INTERVAL: Duration = Duration::from_secs(10);

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

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(source: ConfigSource, force: bool) -> anyhow::Result<()> {
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
    let mut ebpf = loader::load(config.tracker_capacity)?;
    let hash_seed = rand::random::<u64>();
    apply_config(&mut ebpf, &config, hash_seed)?;

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

    let result = serve(
        &mut ebpf,
        &mut config,
        &source,
        metrics,
        hash_seed,
        &ifnames,
    )
    .await;
    loader::detach_all(&mut ebpf, attachments);
    result
}

/// The event loop, after attach. Returns on SIGINT/SIGTERM (Ok) or a fatal error.
async fn serve(
    ebpf: &mut Ebpf,
    config: &mut Config,
    source: &ConfigSource,
    metrics: Metrics,
    hash_seed: u64,
    ifnames: &StdHashMap<u32, String>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Mutex::new(metrics));
    let render = {
        let metrics = metrics.clone();
        Arc::new(move || metrics.lock().map(|m| m.render()).unwrap_or_default())
    };
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

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    let mut walk_tick = tokio::time::interval(TRACKER_WALK_INTERVAL);
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
                    report(event, config, ifnames, &mut alerts, &mut budget, &m);
                }
            }
            _ = stats_tick.tick() => {
                match read_stats(ebpf) {
                    Ok(stats) => metrics.lock().expect("metrics lock").update_kernel(&stats),
                    Err(e) => warn!("reading kernel statistics: {e:#}"),
                }
            }
            _ = walk_tick.tick() => {
                match walk_tracker(ebpf, config.top_sources, config.ipv6_prefix) {
                    Ok((tracked, top)) => {
                        let m = metrics.lock().expect("metrics lock");
                        m.set_tracked(tracked);
                        m.set_top_sources(&top);
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
                            *config = new;
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
            report(event, config, ifnames, &mut alerts, &mut budget, &m);
        }
    }
    if let Err(e) = alerts.flush() {
        warn!("flushing alerts: {e}");
    }
    outcome
}

/// Writes the finding for one event, within the alert budget.
fn report(
    event: &ScanEvent,
    config: &Config,
    ifnames: &StdHashMap<u32, String>,
    alerts: &mut AlertSink,
    budget: &mut AlertBudget,
    metrics: &Metrics,
) {
    let interface = ifnames
        .get(&event.ifindex)
        .cloned()
        .unwrap_or_else(|| loader::ifname(event.ifindex));
    let Some(f) = finding(event, interface, config.window, config.ipv6_prefix) else {
        return;
    };
    metrics.detections.with_label_values(&[f.kind]).inc();
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

/// The LPM key of a network: IPv4 as v4-mapped IPv6 with the prefix shifted by 96.
pub fn lpm_key(net: &IpNet) -> Key<[u8; 16]> {
    match net {
        IpNet::V4(n) => Key::new(
            u32::from(n.prefix_len()) + 96,
            SourceKey::from_ipv4(n.network().octets()).addr,
        ),
        IpNet::V6(n) => Key::new(u32::from(n.prefix_len()), n.network().octets()),
    }
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
