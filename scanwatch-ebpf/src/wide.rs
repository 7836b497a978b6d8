//! The wide IPv6 level (`scanwatch_common::wide`): a scanner that rotates its /64s inside one
//! /48 stays below every threshold at the first level, so `track::record` counts each probe of
//! a tracked, not yet reported IPv6 prefix at its wide prefix too, with the same per-probe
//! update, and the first-level prefix is remembered here for the finding.

use scanwatch_common::{addr::SourceKey, contributors, stats::Counter, wide::WideState};

use crate::{
    level,
    maps::{self, EMPTY_WIDE, WIDE},
    stats::count,
};

/// The entry of wide prefix `key` (created on its first probe), with first-level prefix
/// `first` remembered in it: before the update, so the prefix is in the entry when the daemon
/// reads it for the update's event.
#[inline(always)]
pub fn entry(key: &SourceKey, first: &SourceKey, now: u64) -> Option<&'static mut WideState> {
    let (w, inserted) = maps::entry(&WIDE, &EMPTY_WIDE, key)?;
    if inserted {
        count(Counter::WideInserts);
    }
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    let w = unsafe { &mut *w };
    contributors::remember(&mut w.prefixes, &mut w.next, first);
    level::start(&mut w.state, now);
    Some(w)
}
