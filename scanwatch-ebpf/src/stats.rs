//! Per-CPU statistics: plain increments, summed by the daemon.

use scanwatch_common::{
    classify::PacketClass,
    stats::{Counter, class_slot, counter_slot},
};

use crate::maps::STATS;

/// Adds one to a statistics slot.
#[inline(always)]
pub fn bump(slot: u32) {
    if let Some(v) = STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *v += 1 };
    }
}

/// Adds `n` to a statistics slot.
#[inline(always)]
pub fn add(slot: u32, n: u64) {
    if let Some(v) = STATS.get_ptr_mut(slot) {
        // SAFETY: as in `bump`.
        unsafe { *v += n };
    }
}

/// Counts a packet of `class`.
#[inline(always)]
pub fn bump_class(class: PacketClass) {
    bump(class_slot(class));
}

/// Adds one to a data-path counter.
#[inline(always)]
pub fn count(counter: Counter) {
    bump(counter_slot(counter));
}
