//! Distributed scans: many sources, each below every threshold, probing many ports of one
//! destination (`scanwatch_common::target` explains what counts and why).
//!
//! Called from `track::record` for SYN, UDP and stealth probes of tracked, not yet reported
//! sources; one LRU lookup (an insert for a destination's first probe) and one bit per probe.

use aya_ebpf::bindings::BPF_NOEXIST;
use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::{FLAG_NO_EVENTS, KernelConfig},
    event::{DETECTION_KINDS, DIRECTION_INGRESS, DetectionKind, ScanEvent},
    hash::hash_port,
    stats::Counter,
    target::{SAMPLE_SOURCES, TargetState},
};

use crate::{
    maps::{EMPTY_TARGET, EVENTS, TARGETS},
    stats::count,
};

/// One probe of a source that is below every threshold.
pub struct Contribution {
    /// The source's tracker key.
    pub source: SourceKey,
    /// The probe's destination address.
    pub target: SourceKey,
    pub class: PacketClass,
    pub proto: u8,
    pub port: u16,
    pub ifindex: u32,
    pub now: u64,
}

/// Reports per target and window at most, as for sources.
const MAX_REPORTS: u32 = 8;

/// Counts a probe's port at its destination; sends an event when the destination's distinct
/// ports reach the threshold and at each doubling.
#[inline(never)] // own BPF stack frame: keeps `track::record` under the 512-byte limit
pub fn contribute(c: &Contribution, config: &KernelConfig) {
    let Some(&threshold) = config
        .thresholds
        .get(DetectionKind::DistributedScan as usize)
    else {
        return;
    };
    if threshold == 0 {
        return;
    }
    let Some(t) = lookup_or_insert(&c.target) else {
        return;
    };
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    let t = unsafe { &mut *t };
    let now = c.now;
    if t.first_seen_ns == 0 {
        t.first_seen_ns = now;
        t.window_start_ns = now;
    }
    if now.wrapping_sub(t.window_start_ns) >= config.window() {
        t.window_start_ns = now;
        t.reported = 0;
        t.ports_set = 0;
        t.probes = [0; scanwatch_common::classify::PROBE_CLASSES];
        t.ports.clear();
    }
    t.last_seen_ns = now;
    if let Some(p) = t.probes.get_mut(c.class as usize) {
        *p = p.wrapping_add(1);
    }
    if !t.ports.insert(hash_port(config.hash_seed, c.proto, c.port)) {
        return;
    }
    t.ports_set += 1;
    remember(t, &c.source);
    if t.reported >= MAX_REPORTS || u64::from(t.ports_set) < u64::from(threshold) << t.reported {
        return;
    }
    if config.flags & FLAG_NO_EVENTS != 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<ScanEvent>(0) else {
        count(Counter::EventsDropped);
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points to a reserved ring-buffer slot of ScanEvent size; every field is
    // written before submit.
    unsafe {
        (*e).timestamp_ns = now;
        (*e).first_seen_ns = t.window_start_ns;
        (*e).window_start_ns = t.window_start_ns;
        (*e).source = c.target;
        (*e).probes = t.probes;
        (*e).measures = [0; DETECTION_KINDS];
        (*e).measures[DetectionKind::DistributedScan as usize] = t.ports_set;
        (*e).kind = DetectionKind::DistributedScan as u32;
        (*e).ifindex = c.ifindex;
        (*e).direction = DIRECTION_INGRESS;
        (*e).target_port = c.port;
        (*e).window = scanwatch_common::event::WINDOW_SHORT;
        (*e).target = c.source.addr;
    }
    entry.submit(0);
    t.reported += 1;
    count(Counter::EventsEmitted);
}

/// Adds `source` to the target's sample unless it is already there.
#[inline(always)]
fn remember(target: &mut TargetState, source: &SourceKey) {
    let new = source.words();
    let mut i = 0;
    while i < SAMPLE_SOURCES {
        if let Some(known) = target.sources.get(i)
            && known.words() == new
        {
            return;
        }
        i += 1;
    }
    let slot = (target.next as usize) % SAMPLE_SOURCES;
    if let Some(entry) = target.sources.get_mut(slot) {
        *entry = *source;
    }
    target.next = ((slot + 1) % SAMPLE_SOURCES) as u32;
}

#[inline(always)]
fn lookup_or_insert(target: &SourceKey) -> Option<*mut TargetState> {
    if let Some(t) = TARGETS.get_ptr_mut(target) {
        return Some(t);
    }
    let template = EMPTY_TARGET.get(0)?;
    // NOEXIST: another CPU may have inserted the same target meanwhile; then use its entry.
    let _ = TARGETS.insert(target, template, u64::from(BPF_NOEXIST));
    TARGETS.get_ptr_mut(target)
}
