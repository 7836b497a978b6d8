//! Drop mode: the first check after parsing. A packet whose source is in `BLOCKS` (exact
//! tracker key) or `BLOCKLIST` (CIDR) is dropped unless the entry's TTL has run out; expired
//! entries pass at once, before the daemon's sweep removes them.

use aya_ebpf::programs::XdpContext;
use scanwatch_common::{
    addr::SourceKey,
    block::{BlockEntry, BlockReason},
    config::KernelConfig,
    stats::Counter,
};

use crate::{
    maps::{BLOCKLIST, BLOCKS, lpm_key},
    parse::Packet,
    stats::{add, count},
    track::{now, source_key},
};

/// True when the packet must be dropped; counts the drop.
#[inline(always)]
pub fn is_blocked(ctx: &XdpContext, packet: &Packet, config: &KernelConfig) -> bool {
    let Some(src) = packet.src(ctx) else {
        return false;
    };
    let key: SourceKey = source_key(&src, packet.ipv6, config);
    let entry = match BLOCKS.get_ptr_mut(key) {
        Some(e) => e,
        // aya-ebpf's LpmTrie hands out shared references only; the value lives in writable map
        // memory like any other map value.
        None => match lpm_key(&src).and_then(|k| BLOCKLIST.get(k)) {
            Some(e) => core::ptr::from_ref(e).cast_mut(),
            None => return false,
        },
    };
    // SAFETY: pointer into a map value, valid for this run.
    let entry: &mut BlockEntry = unsafe { &mut *entry };
    if entry.expired(now(config)) {
        count(Counter::BlockExpiredPass);
        return false;
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    entry.packets = entry.packets.wrapping_add(1);
    entry.bytes = entry.bytes.wrapping_add(bytes);
    let reason = BlockReason::from_index(entry.reason).unwrap_or(BlockReason::Manual);
    count(Counter::dropped_packets(reason));
    add(
        scanwatch_common::stats::counter_slot(Counter::dropped_bytes(reason)),
        bytes,
    );
    count(Counter::VerdictDrop);
    true
}
