//! Names and sizes of the kernel maps, shared so the daemon and tests open the same maps.

/// One-entry array holding the `KernelConfig`.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU `u64` statistics, laid out by `stats`.
pub const STATS: &str = "STATS";
/// LRU hash: `SourceKey` → `SourceState`.
pub const TRACKER: &str = "TRACKER";
/// Array of `u32` fingerprints: the admission filter.
pub const ADMISSION: &str = "ADMISSION";
/// LPM trie of source prefixes never tracked (v4 as v4-mapped, prefix + 96).
pub const IGNORE: &str = "IGNORE";
/// Ring buffer of `ScanEvent`s.
pub const EVENTS: &str = "EVENTS";
/// One-entry array holding an all-zero `SourceState`, the template for tracker inserts (the
/// state is larger than the 512-byte BPF stack, so it cannot be built there).
pub const EMPTY_STATE: &str = "EMPTY_STATE";

/// Hash of blocked sources (`SourceKey` → `BlockEntry`), pinned by the daemon.
pub const BLOCKS: &str = "BLOCKS";
/// LPM trie of blocked CIDRs (keys as in `IGNORE`) → `BlockEntry`, pinned by the daemon.
pub const BLOCKLIST: &str = "BLOCKLIST";

/// Array of `u64` words, one bit per IPv4 /24 and per hashed IPv6 /48 that any block covers
/// (`presence`): consulted before `BLOCKS` and `BLOCKLIST`; memory-mapped and pinned by the
/// daemon.
pub const BLOCK_PRESENCE: &str = "BLOCK_PRESENCE";

/// LRU hash: source address (v4-mapped, full length) → `CachedBlock`, the trie's verdict for
/// sources it blocks.
pub const BLOCK_CACHE: &str = "BLOCK_CACHE";

/// LRU hash of the host's outbound flows (`FlowKey` → `FlowState`), written by the TC egress
/// program, read by the XDP program.
pub const FLOWS: &str = "FLOWS";
/// LRU hash of inbound UDP conversations (`FlowKey` → last datagram's `CLOCK_MONOTONIC` ns),
/// written by the XDP program, read by the TC egress program: the host's answers to them are
/// not flows it opened.
pub const INBOUND: &str = "INBOUND";
/// LRU hash of per-destination state for distributed-scan detection (`SourceKey` of the
/// destination → `target::TargetState`), written by the XDP program, read by the daemon for a
/// finding's sample of sources.
pub const TARGETS: &str = "TARGETS";
/// One-entry array holding an all-zero `TargetState`, the template for `TARGETS` inserts.
pub const EMPTY_TARGET: &str = "EMPTY_TARGET";
/// LRU hash of per-source state over the long window (`SourceKey` → `SourceState`): slow scans.
pub const LONG: &str = "LONG";
/// LRU hash of per-local-source state for egress scan detection (`SourceKey` → `SourceState`).
pub const EGRESS: &str = "EGRESS";

/// Default tracker capacity. Each entry costs about 670 bytes of kernel memory (624-byte value,
/// 16-byte key, LRU bookkeeping), so 32768 sources ≈ 22 MiB. Adjustable at load time.
pub const TRACKER_CAPACITY: u32 = 32_768;
/// Admission-filter slots (power of two). 65536 × 4 bytes = 256 KiB. Under a flood of `R`
/// spoofed packets/s, a real scanner's first probe survives `Δ` seconds with probability
/// `exp(-R·Δ / ADMISSION_SLOTS)`; every later probe gets another chance.
pub const ADMISSION_SLOTS: u32 = 65_536;
/// Ignore-list capacity (prefixes).
pub const IGNORE_CAPACITY: u32 = 16_384;
/// Ring-buffer size: 256 KiB ≈ 1600 events (152 bytes + 8-byte header each).
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Blocked sources held at once (hash, preallocated: 65536 × ~120 bytes ≈ 8 MiB). When full the
/// daemon refuses new blocks (counted as `scanwatch_blocks_refused_total{reason="full"}`) rather
/// than evict a live block: an attacker must not be able to unblock itself by flooding.
pub const BLOCKS_CAPACITY: u32 = 65_536;
/// Block-list CIDRs held at once (LPM trie, allocated per entry): room for the largest public
/// lists (FireHOL level 1 ≈ 4500, Spamhaus DROP ≈ 1500) many times over.
pub const BLOCKLIST_CAPACITY: u32 = 262_144;
/// Sources whose block-list verdict is cached (LRU, 16384 × ~90 bytes ≈ 1.5 MiB): only blocked
/// sources enter, so a flood from unlisted addresses never churns it; when it is full the
/// least recently dropped source pays the trie walk again.
pub const BLOCK_CACHE_CAPACITY: u32 = 16_384;
/// Outbound flows remembered (LRU): 65536 × ~110 bytes ≈ 7 MiB. A busy resolver client opens a
/// few hundred flows a second; with the 120 s lifetime this holds ~500 new flows/s before the
/// oldest are evicted early.
pub const FLOWS_CAPACITY: u32 = 65_536;
/// Inbound UDP conversations remembered (LRU): 65536 × ~100 bytes ≈ 6.5 MiB. Filled by every
/// inbound datagram that answers none of our flows (one insert per new conversation, a
/// timestamp refresh for the next). The host's answer only needs its conversation to survive
/// the service's response time: at 10⁶ spoofed datagrams/s an entry lives ~65 ms before
/// eviction. An answer whose entry was evicted is recorded as a flow (the old behaviour).
pub const INBOUND_CAPACITY: u32 = 65_536;
/// Local sources tracked for egress detection: the host's own addresses (and, on a router,
/// the hosts behind it). 1024 × ~600 bytes ≈ 600 KiB.
pub const EGRESS_CAPACITY: u32 = 1024;
/// Destinations tracked for distributed scans: this host's addresses (on a router, the hosts
/// behind it). Only destinations that reach this interface enter, and only through probes of
/// tracked sources, so spoofed sources cannot add keys. 4096 × ~400 bytes (336-byte value,
/// 16-byte key, LRU bookkeeping) ≈ 1.6 MiB.
pub const TARGETS_CAPACITY: u32 = 4096;
/// Sources tracked over the long window (slow scans): 8192 × ~670 bytes ≈ 5.4 MiB, a quarter of
/// the tracker: only sources already in the tracker enter, and only while they have not been
/// reported in their short window. A slow scanner sends a probe every few seconds to minutes, so
/// it is among the most recently active of the sources still quiet enough to be here; under
/// churn the LRU forgets the longest-idle first.
pub const LONG_CAPACITY: u32 = 8192;
