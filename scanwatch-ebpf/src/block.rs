//! Drop mode: the first check once the source address is known (before any L4 header is
//! parsed, so no header can hide a blocked source). A packet whose source is in `BLOCKS` (exact
//! tracker key) or `BLOCKLIST` (CIDR) is dropped unless the entry's TTL has run out; expired
//! entries pass at once, before the daemon's sweep removes them.
//!
//! Both lookups are skipped when the source's bit in `BLOCK_PRESENCE` is clear (no block covers
//! its IPv4 /24 or IPv6 /48, see `scanwatch_common::presence`): an array lookup, which the
//! verifier inlines, is all a source with no block near it pays.
//!
//! An entry's `packets` and `bytes` are shared by every CPU that drops for it, so they are
//! updated with atomic adds (one BPF atomic instruction each) through a raw pointer to the map
//! value; no reference to an entry is ever formed, since another CPU may be adding to it.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::bpf_map_def, helpers::bpf_map_lookup_elem, maps::LpmTrie, programs::XdpContext,
};
use scanwatch_common::{
    addr::SourceKey,
    block::{BlockEntry, BlockReason, CachedBlock, expired},
    config::KernelConfig,
    presence::{GENERATION_WORD, V6_BIT_PREFIX, v4_bit, v6_bit},
    stats::{Counter, counter_slot},
};

use crate::{
    atomic::atomic_add,
    clock::now,
    maps::{BLOCK_CACHE, BLOCK_PRESENCE, BLOCKLIST, BLOCKS, lpm_key},
    parse::Packet,
    stats::{add, count},
    track::source_key,
};

// `blocklist_entry` passes the map's address as its definition, as aya-ebpf's own maps do:
// they are `repr(transparent)` over `UnsafeCell<bpf_map_def>`.
const _: () = assert!(size_of::<LpmTrie<[u8; 16], BlockEntry>>() == size_of::<bpf_map_def>());

/// The `BLOCKLIST` entry covering `addr`, as a raw pointer from `bpf_map_lookup_elem`:
/// aya-ebpf's `LpmTrie::get` hands out shared references only, and a shared reference must
/// not be written through.
#[inline(always)]
fn blocklist_entry(addr: &SourceKey) -> Option<*mut BlockEntry> {
    let key = lpm_key(addr)?;
    let map = ptr::from_ref(&BLOCKLIST).cast_mut().cast::<c_void>();
    // SAFETY: `map` is the map definition the loader relocates to the map; `key` points to a
    // full `Key<[u8; 16]>`, the trie's key type.
    let entry = unsafe { bpf_map_lookup_elem(map, ptr::from_ref(key).cast()) };
    (!entry.is_null()).then_some(entry.cast())
}

/// False when no block can cover `src`: its presence bit is clear. IPv6 sources aggregated to
/// a prefix shorter than the bitmap's /48, and IPv6 packets from v4-mapped addresses (which
/// the block trie matches against IPv4 entries), always take the full lookup.
#[inline(always)]
fn may_be_blocked(src: &SourceKey, ipv6: bool, config: &KernelConfig) -> bool {
    let (word, mask) = if ipv6 {
        let [hi, lo] = src.words();
        let v4_mapped = hi == 0 && lo as u32 == u32::from_ne_bytes([0, 0, 0xff, 0xff]);
        if v4_mapped || config.ipv6_prefix() < V6_BIT_PREFIX {
            return true;
        }
        v6_bit(src)
    } else {
        v4_bit(src)
    };
    BLOCK_PRESENCE.get(word).is_none_or(|w| w & mask != 0)
}

/// The verdict for a source the block trie blocked in this generation: dropped unless the
/// entry has expired since. Counted per reason and in the cache entry, whose counts user space
/// adds to the covering trie entry's (`BlockList::entries`).
#[inline(always)]
fn drop_cached(
    ctx: &XdpContext,
    cached: *mut CachedBlock,
    expires_ns: u64,
    reason: u32,
    config: &KernelConfig,
) -> bool {
    if expired(expires_ns, now(config)) {
        count(Counter::BlockExpiredPass);
        return false;
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    // SAFETY: 8-aligned `u64` fields of a map value (asserted in `scanwatch_common::block`),
    // valid for this run; updated through `atomic_add` only.
    unsafe {
        atomic_add(&raw mut (*cached).packets, 1);
        atomic_add(&raw mut (*cached).bytes, bytes);
    }
    let reason = BlockReason::from_index(reason).unwrap_or(BlockReason::Manual);
    count(Counter::dropped_packets(reason));
    add(counter_slot(Counter::dropped_bytes(reason)), bytes);
    count(Counter::VerdictDrop);
    true
}

/// True when the packet must be dropped; counts the drop. Needs only the network header:
/// `packet.l3` and `packet.ipv6`.
#[inline(always)]
pub fn is_blocked(ctx: &XdpContext, packet: &Packet, config: &KernelConfig) -> bool {
    let Some(src) = packet.src(ctx) else {
        return false;
    };
    if !may_be_blocked(&src, packet.ipv6, config) {
        return false;
    }
    let key: SourceKey = source_key(&src, packet.ipv6, config);
    let entry = if let Some(entry) = BLOCKS.get_ptr_mut(key) {
        entry
    } else {
        let generation = BLOCK_PRESENCE.get(GENERATION_WORD).copied().unwrap_or(0);
        let mut carried = (0, 0);
        if let Some(cached) = BLOCK_CACHE.get_ptr_mut(src) {
            // SAFETY: a map value, valid for this run. `generation`, `expires_ns` and `reason`
            // are written only when the entry is (re)filled, whole.
            let (cached_generation, expires_ns, reason) = unsafe {
                (
                    (&raw const (*cached).generation).read(),
                    (&raw const (*cached).expires_ns).read(),
                    (&raw const (*cached).reason).read(),
                )
            };
            if cached_generation == generation {
                return drop_cached(ctx, cached, expires_ns, reason, config);
            }
            // SAFETY: as above; the counters are only ever added to atomically.
            carried = unsafe {
                (
                    (&raw const (*cached).packets).read(),
                    (&raw const (*cached).bytes).read(),
                )
            };
        }
        let Some(entry) = blocklist_entry(&src) else {
            return false;
        };
        // SAFETY: as below; `expires_ns` and `reason` are written by the daemon only. A stale
        // cache entry's drops move into the trie entry now covering the source.
        let refill = unsafe {
            if carried.0 != 0 {
                atomic_add(&raw mut (*entry).packets, carried.0);
                atomic_add(&raw mut (*entry).bytes, carried.1);
            }
            CachedBlock {
                generation,
                expires_ns: (&raw const (*entry).expires_ns).read(),
                packets: 0,
                bytes: 0,
                reason: (&raw const (*entry).reason).read(),
                reserved: 0,
            }
        };
        let _ = BLOCK_CACHE.insert(src, refill, 0);
        entry
    };
    // SAFETY: `entry` points to a map value, valid for this run. `expires_ns` and `reason`
    // are written by the daemon only (through the map), never by the program.
    let (expires_ns, reason) = unsafe {
        (
            (&raw const (*entry).expires_ns).read(),
            (&raw const (*entry).reason).read(),
        )
    };
    if expired(expires_ns, now(config)) {
        count(Counter::BlockExpiredPass);
        return false;
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    // SAFETY: 8-aligned `u64` fields of a map value (map values are 8-aligned; the offsets are
    // asserted in `scanwatch_common::block`), valid for this run; every CPU updates them
    // through `atomic_add` only.
    unsafe {
        atomic_add(&raw mut (*entry).packets, 1);
        atomic_add(&raw mut (*entry).bytes, bytes);
    }
    let reason = BlockReason::from_index(reason).unwrap_or(BlockReason::Manual);
    count(Counter::dropped_packets(reason));
    add(counter_slot(Counter::dropped_bytes(reason)), bytes);
    count(Counter::VerdictDrop);
    true
}
