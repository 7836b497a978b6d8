//! The kernel maps, one typed handle each: the only place user space reads or writes them. The
//! running agent takes its handles out of the loaded object ([`Maps::take`]); the control CLI
//! opens the pinned block maps ([`Blocks::open_pinned`], [`BlockList::open_pinned`]); the tests
//! use the same handles on the objects they load.
//!
//! Who writes what: the agent writes `CONFIG` and `IGNORE` (configuration), `BLOCKS` (findings
//! in drop mode) and `BLOCKLIST` (block lists); the control CLI writes both block maps; the
//! kernel writes everything else. The agent reads `STATS` (metrics), `TRACKER` and `FLOWS`
//! (gauges, status) and drains `EVENTS` (findings).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    os::fd::{AsFd as _, OwnedFd},
    sync::Arc,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
};
use ipnet::IpNet;
use scanwatch_common::{
    addr::SourceKey,
    config::KernelConfig,
    distributed::{PortState, TargetState, port_slot},
    evidence::Verified,
    flow::{FlowKey, FlowState},
    maps,
    owner::SocketOwner,
    state::SourceState,
    stats::STATS_LEN,
    wide::WideState,
};

use crate::{
    kernel::{
        batch,
        blocks::{BlockList, Blocks, Presence},
        take::{dup, found, take, take_hash, take_map_data},
    },
    net::lpm_key,
};

/// Every map of the product object but the event ring ([`Events::take`]), taken out of it
/// once after loading.
pub struct Maps {
    pub config: ConfigMap,
    pub ignore: IgnoreList,
    pub stats: Stats,
    /// Per-source ingress state.
    pub tracker: Tracker,
    /// Per-local-source egress state (same layout as the tracker).
    pub egress: Tracker,
    /// Per-source state over the long window (same layout as the tracker).
    pub long: Tracker,
    pub flows: Flows,
    /// Per-destination distributed-scan state.
    pub targets: Targets,
    /// Per-prefix state at the wide IPv6 level.
    pub wide: Wide,
    /// Per-port distributed-sweep state.
    pub ports: Ports,
    pub blocks: Blocks,
    pub blocklist: BlockList,
    /// Who sent through each socket (`owner`), for the process of an egress finding.
    pub owners: Owners,
    /// Remotes that answered our flows (drop mode), shared with the enforcement policy.
    pub answered: Arc<Answered>,
    /// Remotes that completed a handshake (drop mode), shared with the enforcement policy.
    pub verified: Arc<VerifiedPeers>,
}

impl Maps {
    /// Takes every map out of a loaded product object (the programs keep using them).
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let blocks = take_map_data(ebpf, maps::BLOCKS)?;
        let blocks_dup = dup(&blocks)?;
        let presence = Arc::new(Presence::map(&take_map_data(ebpf, maps::BLOCK_PRESENCE)?)?);
        let blocks = Blocks::new(blocks, presence.clone())?;
        let blocklist = BlockList::new(
            take_map_data(ebpf, maps::BLOCKLIST)?,
            blocks_dup,
            take_map_data(ebpf, maps::BLOCK_CACHE)?,
            presence,
        )?;
        // Pinned blocks may predate this object's bitmap: bring it up to date.
        blocklist.rebuild_presence();
        Ok(Self {
            config: ConfigMap(Array::try_from(take(ebpf, maps::CONFIG)?)?),
            ignore: IgnoreList(LpmTrie::try_from(take(ebpf, maps::IGNORE)?)?),
            stats: Stats(PerCpuArray::try_from(take(ebpf, maps::STATS)?)?),
            tracker: Tracker::take(ebpf, maps::TRACKER)?,
            egress: Tracker::take(ebpf, maps::EGRESS)?,
            long: Tracker::take(ebpf, maps::LONG)?,
            flows: Flows::take(ebpf)?,
            targets: Targets(HashMap::try_from(take(ebpf, maps::TARGETS)?)?),
            wide: Wide(HashMap::try_from(take(ebpf, maps::WIDE)?)?),
            ports: Ports(Array::try_from(take(ebpf, maps::PORTS)?)?),
            blocks,
            blocklist,
            owners: Owners(HashMap::try_from(take(ebpf, maps::OWNERS)?)?),
            answered: Arc::new(Answered(HashMap::try_from(take(ebpf, maps::ANSWERED)?)?)),
            verified: Arc::new(VerifiedPeers(HashMap::try_from(take(
                ebpf,
                maps::VERIFIED,
            )?)?)),
        })
    }
}

/// `OWNERS`: socket cookie → the process that sent the socket's first probe or flow opener,
/// written by the TC egress program (`owner`).
pub struct Owners(HashMap<MapData, u64, SocketOwner>);

impl Owners {
    /// The recorded sender of the socket with this cookie, if the map still holds it.
    pub fn get(&self, cookie: u64) -> Option<SocketOwner> {
        if cookie == 0 {
            return None;
        }
        found(self.0.get(&cookie, 0)).ok().flatten()
    }
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owners(OWNERS map)")
    }
}

/// `ANSWERED`: remotes (tracker keys) that answered a flow this host opened → time of the
/// latest answer (kernel monotonic ns), written by the XDP program in drop mode.
pub struct Answered(HashMap<MapData, SourceKey, u64>);

impl Answered {
    /// When `key` last answered one of our flows.
    pub fn get(&self, key: &SourceKey) -> anyhow::Result<Option<u64>> {
        found(self.0.get(key, 0))
    }
}

impl std::fmt::Debug for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answered(ANSWERED map)")
    }
}

/// `VERIFIED`: remotes (tracker keys) whose ACK completed a SYN-ACK of ours, with the hop count
/// it arrived at, written by the XDP program in drop mode.
pub struct VerifiedPeers(HashMap<MapData, SourceKey, Verified>);

impl VerifiedPeers {
    pub fn get(&self, key: &SourceKey) -> anyhow::Result<Option<Verified>> {
        found(self.0.get(key, 0))
    }
}

impl std::fmt::Debug for VerifiedPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedPeers(VERIFIED map)")
    }
}

/// `CONFIG`: the kernel's runtime configuration (one slot; takes effect on the next packet).
pub struct ConfigMap(Array<MapData, KernelConfig>);

impl ConfigMap {
    pub fn write(&mut self, config: &KernelConfig) -> anyhow::Result<()> {
        self.0.set(0, config, 0).context("writing CONFIG")
    }

    /// The configuration the programs run with.
    pub fn read(&self) -> anyhow::Result<KernelConfig> {
        self.0.get(&0, 0).context("reading CONFIG")
    }
}

/// `IGNORE`: CIDRs whose probes are never tracked.
pub struct IgnoreList(LpmTrie<MapData, [u8; 16], u32>);

impl IgnoreList {
    /// Makes the trie hold exactly `nets`.
    pub fn replace(&mut self, nets: &[IpNet]) -> anyhow::Result<()> {
        let old: Vec<Key<[u8; 16]>> = self.0.keys().filter_map(Result::ok).collect();
        for net in nets {
            self.0
                .insert(&lpm_key(net), 1, 0)
                .with_context(|| format!("adding {net} to the ignore list"))?;
        }
        let wanted: Vec<Key<[u8; 16]>> = nets.iter().map(lpm_key).collect();
        for key in old {
            let stale = !wanted
                .iter()
                .any(|w| w.prefix_len() == key.prefix_len() && w.data() == key.data());
            if stale {
                self.0
                    .remove(&key)
                    .context("removing a stale ignore-list entry")?;
            }
        }
        Ok(())
    }

    /// Adds one network.
    pub fn insert(&mut self, net: &IpNet) -> anyhow::Result<()> {
        self.0
            .insert(&lpm_key(net), 1, 0)
            .with_context(|| format!("adding {net} to the ignore list"))
    }
}

/// `STATS`: per-CPU counters, laid out by `scanwatch_common::stats`.
pub struct Stats(PerCpuArray<MapData, u64>);

impl Stats {
    /// One slot summed over CPUs.
    pub fn get(&self, slot: u32) -> anyhow::Result<u64> {
        if slot >= STATS_LEN {
            bail!("statistics slot {slot} out of range (0..{STATS_LEN})");
        }
        Ok(self.0.get(&slot, 0)?.iter().sum())
    }

    /// Every slot summed over CPUs, indexed by slot.
    pub fn read(&self) -> anyhow::Result<Vec<u64>> {
        (0..STATS_LEN).map(|slot| self.get(slot)).collect()
    }
}

/// `TRACKER` (ingress) or `EGRESS` (this host's own probes): per-source detection state.
pub struct Tracker {
    map: HashMap<MapData, SourceKey, SourceState>,
    /// The same map, for batch reads.
    fd: OwnedFd,
}

impl Tracker {
    fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<Self> {
        let (map, fd) = take_hash(ebpf, name)?;
        Ok(Self { map, fd })
    }

    pub fn get(&self, key: &SourceKey) -> anyhow::Result<Option<SourceState>> {
        found(self.map.get(key, 0))
    }

    pub fn keys(&self) -> Vec<SourceKey> {
        self.map.keys().filter_map(Result::ok).collect()
    }

    /// The number of sources present (one full walk: see [`Tracker::top`]).
    pub fn len(&self) -> usize {
        self.top(0).0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of sources, and the `top` most active (probes in their window), most first.
    ///
    /// One walk of the whole map, by batch lookups ([`crate::kernel::batch`], a few dozen system calls
    /// for 100,000 sources) or, on kernels without them, key by key. The count is exact for a
    /// map nobody writes meanwhile; under traffic it is the entries the walk met.
    pub fn top(&self, top: usize) -> (usize, Vec<(SourceKey, u64)>) {
        let mut best = TopN::new(top);
        let walked = batch::for_each(
            self.fd.as_fd(),
            |keys: &[SourceKey], states: &[SourceState]| {
                for (key, state) in keys.iter().zip(states) {
                    best.offer(*key, state);
                }
            },
        );
        if let Err(e) = walked {
            if !batch::is_unsupported(&e) {
                log::warn!("batch read of the tracker failed, walking it key by key: {e}");
            }
            best = TopN::new(top);
            for (key, state) in self.map.iter().filter_map(Result::ok) {
                best.offer(key, &state);
            }
        }
        best.finish()
    }
}

/// The `n` sources with the most probes among those offered, and how many were offered;
/// memory is bounded by `n`, not by the tracker's size.
struct TopN {
    n: usize,
    seen: usize,
    /// A min-heap on probes: the root is the first to go when a busier source comes.
    heap: BinaryHeap<Reverse<Ranked>>,
}

/// A source and its probes, ordered by probes only.
struct Ranked(u64, SourceKey);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl TopN {
    fn new(n: usize) -> Self {
        Self {
            n,
            seen: 0,
            heap: BinaryHeap::with_capacity(n + 1),
        }
    }

    fn offer(&mut self, key: SourceKey, state: &SourceState) {
        self.seen += 1;
        if self.n == 0 {
            return;
        }
        let probes = state.probes.iter().map(|n| u64::from(*n)).sum();
        if self.heap.len() < self.n {
            self.heap.push(Reverse(Ranked(probes, key)));
        } else if self
            .heap
            .peek()
            .is_some_and(|Reverse(least)| probes > least.0)
        {
            self.heap.pop();
            self.heap.push(Reverse(Ranked(probes, key)));
        }
    }

    fn finish(self) -> (usize, Vec<(SourceKey, u64)>) {
        let mut top: Vec<(SourceKey, u64)> = self
            .heap
            .into_iter()
            .map(|Reverse(Ranked(probes, key))| (key, probes))
            .collect();
        top.sort_unstable_by_key(|(_, probes)| Reverse(*probes));
        (self.seen, top)
    }
}

/// `TARGETS`: per-destination distributed-scan state (`scanwatch_common::distributed`).
pub struct Targets(HashMap<MapData, SourceKey, TargetState>);

impl Targets {
    pub fn get(&self, target: &SourceKey) -> anyhow::Result<Option<TargetState>> {
        found(self.0.get(target, 0))
    }

    /// The sampled sources of `target`'s distributed scan, oldest first (none when the entry
    /// was evicted meanwhile).
    pub fn sample(&self, target: &SourceKey) -> Vec<SourceKey> {
        match self.get(target) {
            Ok(Some(state)) => state.sample().collect(),
            _ => Vec::new(),
        }
    }
}

/// `WIDE`: per-prefix state at the wide IPv6 level (`scanwatch_common::wide`).
pub struct Wide(HashMap<MapData, SourceKey, WideState>);

impl Wide {
    pub fn get(&self, key: &SourceKey) -> anyhow::Result<Option<WideState>> {
        found(self.0.get(key, 0))
    }

    /// Every wide prefix held.
    pub fn keys(&self) -> Vec<SourceKey> {
        self.0.keys().filter_map(Result::ok).collect()
    }

    /// The first-level prefixes that contributed to wide prefix `key`, oldest first (none when
    /// the entry was evicted meanwhile).
    pub fn sample(&self, key: &SourceKey) -> Vec<SourceKey> {
        match self.get(key) {
            Ok(Some(state)) => state.sample().collect(),
            _ => Vec::new(),
        }
    }
}

/// `PORTS`: per-port distributed-sweep state (`scanwatch_common::distributed::PortState`), one
/// slot per seeded hash of the (protocol, port) (`distributed::port_slot`).
pub struct Ports(Array<MapData, PortState>);

impl Ports {
    /// The state of port `key` (`distributed::port_key`), if its slot holds it; `seed` is the
    /// programs' `hash_seed`.
    pub fn get(&self, seed: u64, key: u32) -> anyhow::Result<Option<PortState>> {
        let state = self
            .0
            .get(&port_slot(seed, key), 0)
            .context("reading PORTS")?;
        Ok((state.key == key).then_some(state))
    }
}

impl Maps {
    /// The state of port `key` (`distributed::port_key`), if its slot holds it.
    pub fn port_state(&self, key: u32) -> anyhow::Result<Option<PortState>> {
        self.ports.get(self.config.read()?.hash_seed, key)
    }

    /// The sampled sources of a sweep of the port `key`, oldest first (none when another port
    /// took its slot meanwhile).
    pub fn port_sample(&self, key: u32) -> Vec<SourceKey> {
        match self.port_state(key) {
            Ok(Some(state)) => state.sample().collect(),
            _ => Vec::new(),
        }
    }
}

/// `FLOWS`: flows this host opened (written by the egress program).
pub struct Flows {
    map: HashMap<MapData, FlowKey, FlowState>,
    /// The same map, for batch reads.
    fd: OwnedFd,
}

impl Flows {
    fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let (map, fd) = take_hash(ebpf, maps::FLOWS)?;
        Ok(Self { map, fd })
    }

    /// The number of flows present: one walk, by batch lookups where the kernel has them
    /// (see [`Tracker::top`]).
    pub fn len(&self) -> usize {
        let mut n = 0;
        match batch::for_each(self.fd.as_fd(), |keys: &[FlowKey], _: &[FlowState]| {
            n += keys.len();
        }) {
            Ok(()) => n,
            Err(e) => {
                if !batch::is_unsupported(&e) {
                    log::warn!("batch read of the flow map failed, walking it key by key: {e}");
                }
                self.map.keys().filter_map(Result::ok).count()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
