//! The wide IPv6 level (`scanwatch_common::wide`): a scanner that rotates its /64s inside one
//! /48 stays below every threshold at the first level, so `track::record` counts each probe of
//! a tracked, not yet reported IPv6 prefix at its wide prefix too, with the same per-probe
//! update, and the first-level prefix is remembered here for the finding.

use aya_ebpf::bindings::BPF_NOEXIST;
use scanwatch_common::{
    addr::SourceKey,
    wide::{SAMPLE_PREFIXES, WideState},
};

use crate::{
    maps::{EMPTY_WIDE, WIDE},
    track,
};

/// The entry of wide prefix `key` (created on its first probe), with first-level prefix
/// `first` remembered in it: before the update, so the prefix is in the entry when the daemon
/// reads it for the update's event.
#[inline(always)]
pub fn entry(key: &SourceKey, first: &SourceKey, now: u64) -> Option<&'static mut WideState> {
    let w = if let Some(w) = WIDE.get_ptr_mut(key) {
        w
    } else {
        let template = EMPTY_WIDE.get(0)?;
        // NOEXIST: another CPU may have inserted the same prefix meanwhile; then use its entry.
        let _ = WIDE.insert(key, template, u64::from(BPF_NOEXIST));
        WIDE.get_ptr_mut(key)?
    };
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    let w = unsafe { &mut *w };
    remember(w, first);
    track::start(&mut w.state, now);
    Some(w)
}

/// Adds first-level prefix `prefix` to the ring unless it is already there.
#[inline(always)]
fn remember(w: &mut WideState, prefix: &SourceKey) {
    let new = prefix.words();
    let mut i = 0;
    while i < SAMPLE_PREFIXES {
        if let Some(known) = w.prefixes.get(i)
            && known.words() == new
        {
            return;
        }
        i += 1;
    }
    let slot = (w.next as usize) % SAMPLE_PREFIXES;
    if let Some(entry) = w.prefixes.get_mut(slot) {
        *entry = *prefix;
    }
    w.next = ((slot + 1) % SAMPLE_PREFIXES) as u32;
}
