//! The block maps: `BLOCKS` (per-source blocks from findings, the control CLI and the fleet),
//! `BLOCKLIST` (block-list CIDRs) and `BLOCK_PRESENCE` (which prefixes any block covers), all
//! pinned so a restart keeps them and the control CLI reaches them.

use std::{
    borrow::Borrow,
    num::NonZeroUsize,
    os::fd::AsFd as _,
    path::Path,
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, LpmTrie, Map, MapData, MapError, lpm_trie::Key};
use ipnet::IpNet;
use nix::errno::Errno;
use scanwatch_common::{
    addr::{SourceKey, mask_ipv6},
    block::{BLOCK_NOTE_LEN, BlockEntry, BlockReason, CachedBlock},
    maps,
    presence::{GENERATION_WORD, PRESENCE_MMAP_BYTES, PRESENCE_WORDS, PrefixBits},
};

use crate::{
    kernel::{pins::Instance, take::found},
    net::{lpm_key, lpm_network},
};

/// `BLOCK_PRESENCE`, memory-mapped: which IPv4 /24s and hashed IPv6 /48s any block covers
/// (`scanwatch_common::presence`). Bits are set with atomic ORs in shared memory, so the agent
/// and the control CLI never lose each other's bits; a prefix's bits are set before its block
/// entry is written and checked again after, and cleared only by [`BlockList::rebuild_presence`].
pub struct Presence {
    words: NonNull<AtomicU64>,
    /// Set when a block was removed: the next sweep rebuilds the bitmap.
    dirty: AtomicBool,
}

// SAFETY: the mapping is shared memory accessed only through atomics; it lives as long as
// the `Presence`.
unsafe impl Send for Presence {}
// SAFETY: as above.
unsafe impl Sync for Presence {}

impl Presence {
    /// Maps the array (created `BPF_F_MMAPABLE`) into this process.
    pub(crate) fn map(map: &MapData) -> anyhow::Result<Self> {
        // SAFETY: a fresh shared mapping of the whole array (PRESENCE_MMAP_BYTES, as the kernel
        // allocates it); unmapped in Drop, never handed out beyond `&self`.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                NonZeroUsize::new(PRESENCE_MMAP_BYTES).expect("non-zero"),
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .context("memory-mapping the block presence bitmap")?;
        Ok(Self {
            words: ptr.cast(),
            dirty: AtomicBool::new(false),
        })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: PRESENCE_WORDS u64s of shared memory, 8-aligned (page-aligned mapping).
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), PRESENCE_WORDS as usize) }
    }

    fn generation_word(&self) -> &AtomicU64 {
        // SAFETY: the word after the bitmap, inside the mapping.
        unsafe { &*self.words.as_ptr().add(GENERATION_WORD as usize) }
    }

    /// Invalidates the kernel's cached block-list verdicts: called after every trie change.
    fn bump_generation(&self) {
        self.generation_word().fetch_add(1, Ordering::SeqCst);
    }

    /// Sets the bits of `addr/prefix_len` (IPv6-terms length; a per-source key is /128).
    pub fn add(&self, addr: &[u8; 16], prefix_len: u32) {
        let words = self.words();
        PrefixBits::of(addr, prefix_len).for_each(|w, m| {
            words[w as usize].fetch_or(m, Ordering::SeqCst);
        });
    }

    /// True when bit `word`/`mask` is set (tests).
    pub fn covers(&self, addr: &[u8; 16], prefix_len: u32) -> bool {
        let words = self.words();
        let mut all = true;
        PrefixBits::of(addr, prefix_len).for_each(|w, m| {
            all &= words[w as usize].load(Ordering::SeqCst) & m == m;
        });
        all
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of that length.
        let _ = unsafe { nix::sys::mman::munmap(self.words.cast(), PRESENCE_MMAP_BYTES) };
    }
}

/// Why a block could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BlockWriteError {
    #[error("the block map is full")]
    Full,
    #[error("{0}")]
    Map(#[from] MapError),
}

impl BlockWriteError {
    fn from_map(e: MapError) -> Self {
        let errno = match &e {
            MapError::SyscallError(s) => s.io_error.raw_os_error().map(Errno::from_raw),
            _ => None,
        };
        match errno {
            Some(Errno::E2BIG | Errno::ENOSPC) => Self::Full,
            _ => Self::Map(e),
        }
    }
}

/// The longest block TTL: manual blocks (`scanwatch block --ttl`), `block_ttl` and
/// `max_block_ttl`, and CrowdSec decisions (cut to it). A block meant to last longer is a
/// permanent one (no TTL).
pub const MAX_BLOCK_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_BLOCK_TTL`] as the error messages write it (a duration `parse_ttl` reads).
pub const MAX_BLOCK_TTL_TEXT: &str = "365days";

/// A TTL no longer than [`MAX_BLOCK_TTL`], or why not.
pub fn check_ttl(ttl: Duration) -> Result<Duration, String> {
    if ttl > MAX_BLOCK_TTL {
        return Err(format!(
            "{} is longer than the longest block TTL, {MAX_BLOCK_TTL_TEXT}; for a block that never \
             expires, give no TTL",
            humantime::format_duration(ttl)
        ));
    }
    Ok(ttl)
}

/// A block TTL as the command line takes it (`30m`, `4h`, `7days`), at most [`MAX_BLOCK_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}`: {e} (e.g. 30m, 4h, 7days)"))?;
    check_ttl(ttl)
}

/// A new block entry, with nothing dropped yet. `ttl: None` never expires; the expiry
/// saturates, so no TTL wraps it into the past.
pub fn new_block(
    reason: BlockReason,
    now_ns: u64,
    ttl: Option<Duration>,
    offenses: u32,
    note: &str,
) -> BlockEntry {
    BlockEntry {
        added_ns: now_ns,
        expires_ns: ttl.map_or(0, |t| now_ns.saturating_add(nanos(t))),
        packets: 0,
        bytes: 0,
        reason: reason as u32,
        offenses,
        note: note_bytes(note),
    }
}

/// A duration in nanoseconds, `u64::MAX` past it (about 584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A NUL-padded note, cut on a character boundary.
fn note_bytes(text: &str) -> [u8; BLOCK_NOTE_LEN] {
    let mut out = [0u8; BLOCK_NOTE_LEN];
    let mut end = text.len().min(BLOCK_NOTE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// The text of a block entry's note.
pub fn note_text(entry: &BlockEntry) -> String {
    let end = entry
        .note
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(entry.note.len());
    String::from_utf8_lossy(&entry.note[..end]).into_owned()
}

/// What one sweep of a block map did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub removed: usize,
    /// Entries left in the map.
    pub left: usize,
}

/// Removes expired blocks among `entries` (one walk of a block map) with `remove`; counts
/// what was removed and what is left, so the caller need not walk the map again.
fn sweep<K>(
    entries: impl Iterator<Item = (K, BlockEntry)>,
    now_ns: u64,
    mut remove: impl FnMut(&K) -> bool,
) -> Swept {
    let mut total = 0;
    let expired: Vec<K> = entries
        .inspect(|_| total += 1)
        .filter(|(_, e)| e.expired(now_ns))
        .map(|(k, _)| k)
        .collect();
    let removed = expired.iter().filter(|k| remove(k)).count();
    Swept {
        removed,
        left: total - removed,
    }
}

/// Opens a pinned map of a running agent, or explains that none is running.
fn open_pinned(instance: &Instance, name: &str) -> anyhow::Result<MapData> {
    let path = instance.pin_path(name);
    if !Path::new(&path).exists() {
        bail!(
            "no pinned {name} map at {} — is a scanwatch agent running (`scanwatch run`) with \
             the same --instance?",
            path.display()
        );
    }
    MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))
}

/// `BLOCKS`: per-source blocks (exact tracker keys) from findings, pinned.
pub struct Blocks(PresentMap);

/// `BLOCKS` with its presence bits: every insert sets the key's bit first.
pub struct PresentMap {
    map: HashMap<MapData, SourceKey, BlockEntry>,
    presence: Arc<Presence>,
}

impl PresentMap {
    pub fn get(&self, key: &SourceKey, flags: u64) -> Result<BlockEntry, MapError> {
        self.map.get(key, flags)
    }

    /// Sets the key's presence bit, writes the entry, then makes sure the bit is still set.
    pub fn insert(
        &mut self,
        key: &SourceKey,
        entry: impl Borrow<BlockEntry>,
        flags: u64,
    ) -> Result<(), MapError> {
        self.presence.add(&key.addr, 128);
        self.map.insert(key, entry, flags)?;
        self.presence.add(&key.addr, 128);
        Ok(())
    }

    pub fn remove(&mut self, key: &SourceKey) -> Result<(), MapError> {
        self.map.remove(key)?;
        self.presence.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Every entry (as `HashMap::iter`).
    pub fn walk(&self) -> impl Iterator<Item = Result<(SourceKey, BlockEntry), MapError>> + '_ {
        self.map.iter()
    }
}

impl Blocks {
    pub(crate) fn new(map: MapData, presence: Arc<Presence>) -> anyhow::Result<Self> {
        Ok(Self(PresentMap {
            map: HashMap::try_from(Map::HashMap(map))?,
            presence,
        }))
    }

    /// The running agent's pinned map.
    pub fn open_pinned(instance: &Instance) -> anyhow::Result<Self> {
        let presence = Presence::map(&open_pinned(instance, maps::BLOCK_PRESENCE)?)?;
        Self::new(open_pinned(instance, maps::BLOCKS)?, Arc::new(presence))
    }

    pub fn get(&self, key: &SourceKey) -> anyhow::Result<Option<BlockEntry>> {
        found(self.0.get(key, 0))
    }

    pub fn insert(&mut self, key: &SourceKey, entry: &BlockEntry) -> Result<(), BlockWriteError> {
        self.0
            .insert(key, entry, 0)
            .map_err(BlockWriteError::from_map)
    }

    /// True when the key was there.
    pub fn remove(&mut self, key: &SourceKey) -> bool {
        self.0.remove(key).is_ok()
    }

    pub fn entries(&self) -> Vec<(SourceKey, BlockEntry)> {
        self.0.walk().filter_map(Result::ok).collect()
    }

    /// Removes expired entries.
    pub fn sweep(&mut self, now_ns: u64) -> Swept {
        let entries = self.entries();
        sweep(entries.into_iter(), now_ns, |k| self.remove(k))
    }
}

/// `BLOCKLIST`: CIDR blocks (block lists and manual blocks), pinned.
pub struct BlockList(PresentTrie);

/// `BLOCKLIST` with its presence bits: every insert sets the prefix's bits first. Holds a
/// read-only handle on `BLOCKS` too, to rebuild the bitmap from both maps.
pub struct PresentTrie {
    trie: LpmTrie<MapData, [u8; 16], BlockEntry>,
    blocks: HashMap<MapData, SourceKey, BlockEntry>,
    /// `BLOCK_CACHE`: drops the kernel served from its cache, counted per source.
    cache: HashMap<MapData, SourceKey, CachedBlock>,
    presence: Arc<Presence>,
}

impl PresentTrie {
    pub fn get(&self, key: &Key<[u8; 16]>, flags: u64) -> Result<BlockEntry, MapError> {
        self.trie.get(key, flags)
    }

    /// Sets the prefix's presence bits, writes the entry, then makes sure the bits are still
    /// set (a concurrent rebuild may have cleared them in between).
    pub fn insert(
        &mut self,
        key: &Key<[u8; 16]>,
        entry: impl Borrow<BlockEntry>,
        flags: u64,
    ) -> Result<(), MapError> {
        self.presence.add(&key.data(), key.prefix_len());
        let inserted = self.trie.insert(key, entry, flags);
        self.presence.bump_generation();
        inserted?;
        self.presence.add(&key.data(), key.prefix_len());
        Ok(())
    }

    pub fn remove(&mut self, key: &Key<[u8; 16]>) -> Result<(), MapError> {
        self.trie.remove(key)?;
        self.presence.bump_generation();
        self.presence.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Every entry (as `LpmTrie::iter`).
    pub fn walk(&self) -> impl Iterator<Item = Result<(Key<[u8; 16]>, BlockEntry), MapError>> + '_ {
        self.trie.iter()
    }

    pub fn keys(&self) -> aya::maps::MapKeys<'_, Key<[u8; 16]>> {
        self.trie.keys()
    }
}

impl BlockList {
    /// `blocks`: a handle on `BLOCKS`, read when rebuilding the bitmap; `cache`: on
    /// `BLOCK_CACHE`, whose drop counts belong to the trie's entries.
    pub(crate) fn new(
        map: MapData,
        blocks: MapData,
        cache: MapData,
        presence: Arc<Presence>,
    ) -> anyhow::Result<Self> {
        Ok(Self(PresentTrie {
            trie: LpmTrie::try_from(Map::LpmTrie(map))?,
            blocks: HashMap::try_from(Map::HashMap(blocks))?,
            cache: HashMap::try_from(Map::LruHashMap(cache))?,
            presence,
        }))
    }

    /// The running agent's pinned map.
    pub fn open_pinned(instance: &Instance) -> anyhow::Result<Self> {
        let presence = Presence::map(&open_pinned(instance, maps::BLOCK_PRESENCE)?)?;
        Self::new(
            open_pinned(instance, maps::BLOCKLIST)?,
            open_pinned(instance, maps::BLOCKS)?,
            open_pinned(instance, maps::BLOCK_CACHE)?,
            Arc::new(presence),
        )
    }

    /// True when the presence bitmap covers `net` (tests).
    pub fn presence_covers(&self, net: &IpNet) -> bool {
        let key = lpm_key(net);
        self.0.presence.covers(&key.data(), key.prefix_len())
    }

    /// Rebuilds the presence bitmap from both block maps, clearing the bits of removed blocks:
    /// clears every bit no entry needs, then walks both maps again setting theirs, so an entry
    /// written meanwhile (its writer sets its bits before and after) never loses its bits for
    /// longer than this call.
    pub fn rebuild_presence(&self) {
        let t = &self.0;
        t.presence.dirty.store(false, Ordering::SeqCst);
        let mut fresh = vec![0u64; PRESENCE_WORDS as usize];
        let mut set = |addr: &[u8; 16], len: u32| {
            PrefixBits::of(addr, len).for_each(|w, m| fresh[w as usize] |= m);
        };
        for (k, _) in t.blocks.iter().filter_map(Result::ok) {
            set(&k.addr, 128);
        }
        for (k, _) in t.trie.iter().filter_map(Result::ok) {
            set(&k.data(), k.prefix_len());
        }
        for (word, keep) in t.presence.words().iter().zip(&fresh) {
            word.fetch_and(*keep, Ordering::SeqCst);
        }
        for (k, _) in t.blocks.iter().filter_map(Result::ok) {
            t.presence.add(&k.addr, 128);
        }
        for (k, _) in t.trie.iter().filter_map(Result::ok) {
            t.presence.add(&k.data(), k.prefix_len());
        }
    }

    pub fn insert(&mut self, net: &IpNet, entry: &BlockEntry) -> Result<(), BlockWriteError> {
        self.0
            .insert(&lpm_key(net), entry, 0)
            .map_err(BlockWriteError::from_map)
    }

    /// True when `net` was there.
    pub fn remove(&mut self, net: &IpNet) -> bool {
        self.0.remove(&lpm_key(net)).is_ok()
    }

    /// Every entry, with the drops the kernel served from its verdict cache added to the entry
    /// covering each cached source.
    fn entries_raw(&self) -> Vec<(Key<[u8; 16]>, BlockEntry)> {
        let mut entries: Vec<(Key<[u8; 16]>, BlockEntry)> =
            self.0.walk().filter_map(Result::ok).collect();
        let generation = self.0.presence.generation_word().load(Ordering::SeqCst);
        let cached: Vec<(SourceKey, CachedBlock)> = self
            .0
            .cache
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, c)| c.generation == generation && c.packets != 0)
            .collect();
        if cached.is_empty() {
            return entries;
        }
        let index: std::collections::HashMap<(u32, [u8; 16]), usize> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| ((k.prefix_len(), k.data()), i))
            .collect();
        let mut lengths: Vec<u32> = index.keys().map(|(len, _)| *len).collect();
        lengths.sort_unstable_by(|a, b| b.cmp(a));
        lengths.dedup();
        for (src, c) in cached {
            let covering = lengths.iter().find_map(|&len| {
                let net = if len == 0 {
                    [0; 16]
                } else {
                    mask_ipv6(src.addr, len)
                };
                index.get(&(len, net))
            });
            if let Some(&i) = covering {
                entries[i].1.packets += c.packets;
                entries[i].1.bytes += c.bytes;
            }
        }
        entries
    }

    pub fn entries(&self) -> Vec<(IpNet, BlockEntry)> {
        self.entries_raw()
            .into_iter()
            .map(|(k, e)| (lpm_network(&k), e))
            .collect()
    }

    /// Removes expired (manual, TTL'd) entries; then, if any block (of either map) was
    /// removed since the last rebuild, rebuilds the presence bitmap.
    pub fn sweep(&mut self, now_ns: u64) -> Swept {
        let entries = self.entries_raw();
        let swept = sweep(entries.into_iter(), now_ns, |k| self.0.remove(k).is_ok());
        if self.0.presence.dirty.load(Ordering::SeqCst) {
            self.rebuild_presence();
        }
        swept
    }

    /// Makes the block-list entries of the trie equal `wanted`, leaving manual entries alone;
    /// returns (added, removed). All or nothing: on a trie error (full, or another failure)
    /// what was added is removed and what was removed restored, so the old lists stay
    /// enforced. Works in batches of `batch`, yielding between them: large LPM updates can
    /// stall the kernel, and the caller's other tasks must keep running.
    pub async fn sync_lists(
        &mut self,
        wanted: &[IpNet],
        now_ns: u64,
        batch: usize,
    ) -> Result<(usize, usize), SyncError> {
        sync_lists(&mut TrieOps(&mut self.0), wanted, now_ns, batch).await
    }

    pub fn len(&self) -> usize {
        self.0.keys().filter_map(Result::ok).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a block-list reload was refused; the trie holds the old lists.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "loading block list entry {net} failed ({error}); the reload was rolled back and the \
         previous lists stay enforced"
    )]
    RolledBack { net: IpNet, error: String },
    #[error(
        "the block-list reload failed at {net} ({error}) and rolling it back failed too \
         ({rollback}); restart the agent to reload the lists from scratch"
    )]
    RollbackFailed {
        net: IpNet,
        error: String,
        rollback: String,
    },
}

/// The operations a block-list sync needs of a trie (the kernel map, or a fake in tests).
trait ListTrie {
    fn entries(&self) -> Vec<(IpNet, BlockEntry)>;
    fn insert(&mut self, net: &IpNet, entry: &BlockEntry) -> Result<(), String>;
    fn remove(&mut self, net: &IpNet) -> Result<(), String>;
}

struct TrieOps<'a>(&'a mut PresentTrie);

impl ListTrie for TrieOps<'_> {
    fn entries(&self) -> Vec<(IpNet, BlockEntry)> {
        self.0
            .walk()
            .filter_map(Result::ok)
            .map(|(k, e)| (lpm_network(&k), e))
            .collect()
    }

    fn insert(&mut self, net: &IpNet, entry: &BlockEntry) -> Result<(), String> {
        self.0
            .insert(&lpm_key(net), entry, 0)
            .map_err(|e| BlockWriteError::from_map(e).to_string())
    }

    fn remove(&mut self, net: &IpNet) -> Result<(), String> {
        self.0.remove(&lpm_key(net)).map_err(|e| e.to_string())
    }
}

/// Removes stale list entries, then adds new ones, in batches; on an error, undoes both.
async fn sync_lists(
    trie: &mut impl ListTrie,
    wanted: &[IpNet],
    now_ns: u64,
    batch: usize,
) -> Result<(usize, usize), SyncError> {
    let batch = batch.max(1);
    let present = trie.entries();
    let wanted_set: std::collections::HashSet<&IpNet> = wanted.iter().collect();
    let present_set: std::collections::HashSet<IpNet> = present.iter().map(|(n, _)| *n).collect();
    // Stale list entries, with their counters, to restore on a rollback.
    let stale: Vec<(IpNet, BlockEntry)> = present
        .into_iter()
        .filter(|(n, e)| e.reason == BlockReason::List as u32 && !wanted_set.contains(n))
        .collect();
    // Present entries (list or manual) keep their counters.
    let new: Vec<IpNet> = wanted
        .iter()
        .filter(|n| !present_set.contains(*n))
        .copied()
        .collect();
    let entry = new_block(BlockReason::List, now_ns, None, 0, "block list");
    let mut removed = 0;
    let mut added = 0;
    let mut failure = None;
    'work: {
        for chunk in stale.chunks(batch) {
            for (net, _) in chunk {
                if let Err(error) = trie.remove(net) {
                    failure = Some((*net, error));
                    break 'work;
                }
                removed += 1;
            }
            tokio::task::yield_now().await;
        }
        for chunk in new.chunks(batch) {
            for net in chunk {
                if let Err(error) = trie.insert(net, &entry) {
                    failure = Some((*net, error));
                    break 'work;
                }
                added += 1;
            }
            tokio::task::yield_now().await;
        }
    }
    let Some((net, error)) = failure else {
        return Ok((added, removed));
    };
    // Roll back: first take out what was added (frees room), then restore what was removed.
    let mut rollback = Vec::new();
    for (i, n) in new[..added].iter().enumerate() {
        if let Err(e) = trie.remove(n) {
            rollback.push(format!("removing {n}: {e}"));
        }
        if i % batch == batch - 1 {
            tokio::task::yield_now().await;
        }
    }
    for (i, (n, e)) in stale[..removed].iter().enumerate() {
        if let Err(err) = trie.insert(n, e) {
            rollback.push(format!("restoring {n}: {err}"));
        }
        if i % batch == batch - 1 {
            tokio::task::yield_now().await;
        }
    }
    if rollback.is_empty() {
        Err(SyncError::RolledBack { net, error })
    } else {
        Err(SyncError::RollbackFailed {
            net,
            error,
            rollback: rollback.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_ns: u64) -> BlockEntry {
        BlockEntry {
            expires_ns,
            ..new_block(BlockReason::Detection, 1, None, 1, "")
        }
    }

    #[test]
    fn a_huge_ttl_never_wraps_the_expiry() {
        let now = 5_000_000_000_000;
        let year = Duration::from_secs(365 * 24 * 3600);
        for ttl in [year * 600, Duration::MAX, Duration::from_nanos(u64::MAX)] {
            let e = new_block(BlockReason::Manual, now, Some(ttl), 1, "manual");
            assert!(e.expires_ns > now, "{ttl:?} wrapped to {}", e.expires_ns);
            assert!(!e.expired(now + year.as_nanos() as u64), "{ttl:?}");
        }
        let late = new_block(BlockReason::Manual, u64::MAX - 1, Some(year), 1, "");
        assert_eq!(late.expires_ns, u64::MAX);
        let e = new_block(
            BlockReason::Manual,
            now,
            Some(Duration::from_secs(60)),
            1,
            "",
        );
        assert_eq!(e.expires_ns, now + 60_000_000_000);
    }

    #[test]
    fn ttls_beyond_the_longest_block_are_refused() {
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("365days"), Ok(MAX_BLOCK_TTL));
        for text in [
            "600y",
            "366days",
            "99999999999999999999h",
            "forever",
            "",
            "-1h",
        ] {
            let e = parse_ttl(text).unwrap_err();
            assert!(!e.is_empty(), "{text}");
        }
        assert!(parse_ttl("600y").unwrap_err().contains("365days"));
        assert_eq!(parse_ttl(MAX_BLOCK_TTL_TEXT), Ok(MAX_BLOCK_TTL));
    }

    #[test]
    fn sweep_removes_expired_and_counts_what_is_left() {
        let entries = vec![
            (1, entry(50)),
            (2, entry(0)),
            (3, entry(200)),
            (4, entry(100)),
        ];
        let mut removed = Vec::new();
        let swept = sweep(entries.into_iter(), 100, |k| {
            removed.push(*k);
            true
        });
        assert_eq!(removed, [1, 4]);
        assert_eq!(
            swept,
            Swept {
                removed: 2,
                left: 2
            }
        );
    }

    #[test]
    fn notes_truncate_on_char_boundaries() {
        let e = new_block(BlockReason::Manual, 5, None, 1, &"é".repeat(40));
        assert_eq!(note_text(&e).chars().count(), 24);
        let e = new_block(
            BlockReason::Detection,
            5,
            Some(Duration::from_secs(2)),
            3,
            "port_scan",
        );
        assert_eq!(note_text(&e), "port_scan");
        assert_eq!(e.expires_ns, 5 + 2_000_000_000);
        assert_eq!((e.offenses, e.reason), (3, BlockReason::Detection as u32));
    }

    /// A trie of fixed capacity, as the kernel's LPM trie refuses inserts when full.
    #[derive(Default)]
    struct FakeTrie {
        entries: std::collections::BTreeMap<IpNet, BlockEntry>,
        capacity: usize,
        fail_on: Option<IpNet>,
    }

    impl ListTrie for FakeTrie {
        fn entries(&self) -> Vec<(IpNet, BlockEntry)> {
            self.entries.iter().map(|(n, e)| (*n, *e)).collect()
        }

        fn insert(&mut self, net: &IpNet, entry: &BlockEntry) -> Result<(), String> {
            if Some(*net) == self.fail_on {
                return Err("injected failure".into());
            }
            if !self.entries.contains_key(net) && self.entries.len() >= self.capacity {
                return Err("the block map is full".into());
            }
            self.entries.insert(*net, *entry);
            Ok(())
        }

        fn remove(&mut self, net: &IpNet) -> Result<(), String> {
            self.entries
                .remove(net)
                .map(|_| ())
                .ok_or("no such key".into())
        }
    }

    fn nets(prefix: u8, n: u32) -> Vec<IpNet> {
        (0..n)
            .map(|i| {
                let [_, _, b, c] = i.to_be_bytes();
                IpNet::new(std::net::IpAddr::from([prefix, b, c, 0]), 24).unwrap()
            })
            .collect()
    }

    fn listed(trie: &FakeTrie) -> Vec<IpNet> {
        trie.entries
            .iter()
            .filter(|(_, e)| e.reason == BlockReason::List as u32)
            .map(|(n, _)| *n)
            .collect()
    }

    #[tokio::test]
    async fn sync_replaces_lists_and_keeps_manual_entries_and_counters() {
        let mut trie = FakeTrie {
            capacity: 100,
            ..FakeTrie::default()
        };
        let manual: IpNet = "203.0.113.0/24".parse().unwrap();
        trie.insert(&manual, &new_block(BlockReason::Manual, 1, None, 1, "m"))
            .unwrap();
        let old = nets(1, 10);
        assert_eq!(sync_lists(&mut trie, &old, 1, 3).await.unwrap(), (10, 0));
        trie.entries.get_mut(&old[0]).unwrap().packets = 7;
        let mut wanted = old[..5].to_vec();
        wanted.extend(nets(2, 20));
        assert_eq!(sync_lists(&mut trie, &wanted, 2, 3).await.unwrap(), (20, 5));
        let mut sorted = wanted.clone();
        sorted.sort();
        assert_eq!(listed(&trie), sorted);
        assert_eq!(
            trie.entries[&old[0]].packets, 7,
            "kept entries keep counters"
        );
        assert!(trie.entries.contains_key(&manual));
    }

    #[tokio::test]
    async fn a_failed_sync_leaves_the_old_lists_exactly() {
        let mut trie = FakeTrie {
            capacity: 30,
            ..FakeTrie::default()
        };
        let old = nets(1, 20);
        sync_lists(&mut trie, &old, 1, 4).await.unwrap();
        trie.entries.get_mut(&old[3]).unwrap().packets = 9;
        let before = trie.entries.clone();
        // Too many for the trie: fails part-way through the adds, after the removals.
        let mut wanted = old[..10].to_vec();
        wanted.extend(nets(2, 25));
        let e = sync_lists(&mut trie, &wanted, 2, 4).await.unwrap_err();
        assert!(matches!(e, SyncError::RolledBack { .. }), "{e}");
        assert_eq!(
            trie.entries, before,
            "old lists restored, counters included"
        );
        // Any other trie error rolls back too.
        let mut wanted = old[5..].to_vec();
        wanted.extend(nets(3, 5));
        trie.fail_on = Some(wanted[wanted.len() - 1]);
        sync_lists(&mut trie, &wanted, 3, 2).await.unwrap_err();
        assert_eq!(trie.entries, before);
    }
}
