//! Block entries: sources the XDP program drops in drop mode. Two maps hold them, both pinned
//! by the daemon so enforcement state survives a restart:
//! - `BLOCKS`, a hash keyed like the tracker (`SourceKey`): blocks the daemon adds for findings.
//!   A hash lookup is the cheapest check on the drop path.
//! - `BLOCKLIST`, an LPM trie of CIDRs: static block lists (FireHOL, Spamhaus DROP) and manual
//!   `scanwatch block CIDR` entries, and CrowdSec `ban` decisions (one entry per address or range).

indexed_enum! {
    /// Why a source is blocked; also the label of the drop counters.
    pub enum BlockReason {
        /// The daemon blocked a source it detected scanning.
        Detection = 0 => "detection",
        /// An operator ran `scanwatch block`.
        Manual = 1 => "manual",
        /// A static block-list file.
        List = 2 => "block_list",
        /// A CrowdSec Local API `ban` decision (the agent's bouncer role).
        Crowdsec = 3 => "crowdsec",
    }
    /// Number of block reasons.
    pub const BLOCK_REASONS: usize;
}

/// Bytes of free text kept with a block (the operator's `--reason`, or the finding's kind).
pub const BLOCK_NOTE_LEN: usize = 48;

/// One block. Times are CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`), which keeps counting
/// across daemon restarts (pinned maps do not survive a reboot anyway).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    pub added_ns: u64,
    /// The entry stops dropping at this time; 0 = never.
    pub expires_ns: u64,
    /// Packets dropped because of this entry.
    pub packets: u64,
    /// Bytes dropped because of this entry.
    pub bytes: u64,
    /// `BlockReason` index.
    pub reason: u32,
    /// How many times this source was blocked (repeat offenders get longer TTLs).
    pub offenses: u32,
    /// NUL-padded UTF-8 note.
    pub note: [u8; BLOCK_NOTE_LEN],
}

impl BlockEntry {
    /// True once `now_ns` has reached the expiry time.
    #[inline(always)]
    pub const fn expired(&self, now_ns: u64) -> bool {
        expired(self.expires_ns, now_ns)
    }
}

/// True once `now_ns` has reached `expires_ns` (0 = never): [`BlockEntry::expired`] for a
/// caller that reads the field alone (the kernel, which never borrows a whole entry that other
/// CPUs are counting into).
#[inline(always)]
pub const fn expired(expires_ns: u64, now_ns: u64) -> bool {
    expires_ns != 0 && now_ns >= expires_ns
}

const _: () = assert!(core::mem::size_of::<BlockEntry>() == 88);
// The kernel adds to `packets` and `bytes` with 8-byte atomics: they must stay 8-aligned.
const _: () = assert!(core::mem::offset_of!(BlockEntry, packets) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(BlockEntry, bytes) % 8 == 0);

/// A `BLOCK_CACHE` entry: a source the block trie was found to block, so its next packets skip
/// the trie walk. Valid while `generation` equals the block-list generation
/// (`presence::GENERATION_WORD`), which user space bumps after every trie change.
///
/// Drops served from the cache are counted here (atomic adds, as in `BlockEntry`); user space
/// adds them to the covering trie entry when it reads the trie, and the kernel moves them into
/// that entry when it refills a stale cache entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedBlock {
    pub generation: u64,
    /// As the trie entry's.
    pub expires_ns: u64,
    /// Packets dropped through this cache entry.
    pub packets: u64,
    /// Bytes dropped through this cache entry.
    pub bytes: u64,
    /// As the trie entry's.
    pub reason: u32,
    pub reserved: u32,
}

const _: () = assert!(core::mem::offset_of!(CachedBlock, packets) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(CachedBlock, bytes) % 8 == 0);
