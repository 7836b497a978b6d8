//! What every level of per-source state shares (the short window, the long window, the wide
//! IPv6 prefix, egress): the probe update each counts, where its event comes from, and how a
//! level's entry starts. Below `track`, `distributed`, `wide` and `egress`, which all use it.

use scanwatch_common::{
    addr::SourceKey, classify::PacketClass, event::WINDOW_SHORT, evidence::HOPS_UNKNOWN,
    state::SourceState,
};

/// One ingress probe, as every level (short window, long window, wide IPv6 prefix) counts it:
/// the arguments of `track::update_level`, small enough to pass by reference between BPF frames.
#[derive(Clone, Copy)]
pub struct Update {
    /// The key of the level's entry (the event's source).
    pub key: SourceKey,
    /// The probe's target and interface, and which window and thresholds apply.
    pub origin: Origin,
    pub now: u64,
    /// Hash of the destination host.
    pub host: u32,
    pub class: PacketClass,
    pub proto: u8,
    /// Hops the probe travelled (drop mode), else `HOPS_UNKNOWN`.
    pub hops: u8,
    pub src_port: u16,
}

/// Where a measure's event comes from: the interface, direction and the probe's target.
#[derive(Clone, Copy)]
pub struct Origin {
    pub ifindex: u32,
    pub direction: u32,
    pub target: SourceKey,
    pub target_port: u16,
    /// Which counts: `WINDOW_SHORT` (the tracker, or `EGRESS`), `WINDOW_LONG` (`LONG`, slow
    /// scans: the long window and thresholds) or `WINDOW_WIDE` (`WIDE`: the short window at the
    /// wide IPv6 prefix); sent as the event's `window`.
    pub window: u16,
}

impl Origin {
    /// An egress event: the local source probed `target:target_port`.
    #[inline(always)]
    pub const fn egress(ifindex: u32, target: SourceKey, target_port: u16) -> Self {
        Self {
            ifindex,
            direction: scanwatch_common::event::DIRECTION_EGRESS,
            target,
            target_port,
            window: WINDOW_SHORT,
        }
    }
}

/// Initialises the times of a level's entry on its first probe.
#[inline(always)]
pub fn start(state: &mut SourceState, now: u64) {
    if state.first_seen_ns == 0 {
        state.first_seen_ns = now;
        state.window_start_ns = now;
        state.min_hops = HOPS_UNKNOWN;
        state.max_hops = HOPS_UNKNOWN;
    }
}
