//! Distributed scans: many sources, each below every threshold, probing many ports of one
//! destination, or one port across many destination hosts (`scanwatch_common::distributed` explains
//! what counts and why).
//!
//! Called from `track::record` for SYN, UDP and stealth probes of tracked, not yet reported
//! sources; per form switched on, one lookup (an LRU insert for a destination's first probe;
//! a port's state is a slot of an array) and one bit per probe. The TC egress program marks the ports a host answers on
//! and the hosts that answer on a port ([`note_served`]); a source reported on its own takes
//! back its ports ([`withdraw`]).

use scanwatch_common::{
    addr::SourceKey,
    classify::PROBE_CLASSES,
    config::{FLAG_NO_EVENTS, KernelConfig},
    contributors,
    distributed::{port_key, port_slot},
    event::{
        DETECTION_KINDS, DIRECTION_INGRESS, DetectionKind, SCOPE_ADDRESS, SCOPE_PORT, WINDOW_SHORT,
    },
    evidence::HOPS_UNKNOWN,
    hash::{hash_addr, hash_port},
    owner::Sender,
    stats::Counter,
};

use crate::{
    event,
    level::Update,
    maps::{self, EMPTY_TARGET, PORTS, TARGETS},
    stats::count,
};

/// Reports per target and window at most, as for sources.
const MAX_REPORTS: u32 = 8;

/// Counts a probe toward both forms: its port at its destination, its destination host at its
/// port. Inlined into `track::record`, and each form has its own
/// frame, side by side, so the call chain stays under the 512-byte combined BPF stack limit.
#[inline(always)]
pub fn contribute(u: &Update, config: &KernelConfig) {
    per_target(u, config);
    if config.distributed_hosts != 0 {
        per_port(u, config);
    }
}

/// Counts a probe's port at its destination; sends an event when the destination's distinct
/// ports reach the threshold and at each doubling.
#[inline(never)] // own BPF stack frame, beside `per_port`'s
fn per_target(u: &Update, config: &KernelConfig) {
    let Some(&threshold) = config
        .thresholds
        .get(DetectionKind::DistributedScan as usize)
    else {
        return;
    };
    if threshold == 0 {
        return;
    }
    let Some((t, inserted)) = maps::entry(&TARGETS, &EMPTY_TARGET, &u.origin.target) else {
        return;
    };
    if inserted {
        count(Counter::TargetInserts);
    }
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    let t = unsafe { &mut *t };
    let now = u.now;
    if t.first_seen_ns == 0 {
        t.first_seen_ns = now;
        t.window_start_ns = now;
    }
    if now.wrapping_sub(t.window_start_ns) >= config.window() {
        t.start_window(now);
    }
    t.last_seen_ns = now;
    if let Some(p) = t.probes.get_mut(u.class as usize) {
        *p = p.wrapping_add(1);
    }
    if !t.add_port(
        hash_port(config.hash_seed, u.proto, u.origin.target_port),
        &u.key,
    ) {
        return;
    }
    let measure = t.measure();
    if t.reported >= MAX_REPORTS || u64::from(measure) < u64::from(threshold) << t.reported {
        return;
    }
    if config.flags & FLAG_NO_EVENTS != 0 {
        return;
    }
    let found = Found {
        window_start_ns: t.window_start_ns,
        probes: &t.probes,
        measure,
        source: u.origin.target,
        scope: SCOPE_ADDRESS,
        crossing: u.key.addr,
    };
    if !emit(u, &found) {
        return;
    }
    t.reported += 1;
}

/// Counts a probe's destination host at its (protocol, port); sends an event when the port's
/// hosts that did not answer on it reach `distributed_hosts`, and at each doubling.
///
/// The port's state is its slot of the `PORTS` array: no insert, nothing to churn. A probe of
/// a port whose slot another port holds takes the slot only if the holder yields to a seeded
/// coin (`PortState::hold_mask`), and is otherwise not counted (`PortSlotsHeld`).
#[inline(never)] // own BPF stack frame
fn per_port(u: &Update, config: &KernelConfig) {
    let threshold = config.distributed_hosts;
    let key = port_key(u.proto, u.origin.target_port);
    let Some(p) = PORTS.get_ptr_mut(port_slot(config.hash_seed, key)) else {
        return;
    };
    // SAFETY: pointer into the array's value returned by the kernel; valid for this run.
    let p = unsafe { &mut *p };
    let now = u.now;
    if p.key != key {
        if let Some(mask) = p.hold_mask(now, config.window()) {
            // The coin: a seeded hash of the probe (its source, port and host), as unpredictable
            // to a sender as a random number, and repeatable in a test.
            let coin = (hash_addr(config.hash_seed ^ u64::from(key), &u.key) as u32) ^ u.host;
            if coin & mask != 0 {
                count(Counter::PortSlotsHeld);
                return;
            }
            count(Counter::PortSlotsTaken);
        }
        p.take(key, now);
    } else if now.wrapping_sub(p.window_start_ns) >= config.window() {
        p.start_window(now);
    }
    p.last_seen_ns = now;
    if let Some(n) = p.probes.get_mut(u.class as usize) {
        *n = n.wrapping_add(1);
    }
    if !p.hosts.insert(u.host) {
        return;
    }
    p.hosts_set += 1;
    contributors::remember(&mut p.sources, &mut p.next, &u.key);
    if p.reported >= MAX_REPORTS {
        return;
    }
    let due = u64::from(threshold) << p.reported;
    // `hosts_set` bounds the measure from above: the popcount only once it could be due.
    if u64::from(p.hosts_set) < due {
        return;
    }
    let unserved = p.unserved();
    if u64::from(unserved) < due || config.flags & FLAG_NO_EVENTS != 0 {
        return;
    }
    let found = Found {
        window_start_ns: p.window_start_ns,
        probes: &p.probes,
        measure: unserved,
        source: SourceKey::default(),
        scope: SCOPE_PORT,
        crossing: u.origin.target.addr,
    };
    if !emit(u, &found) {
        return;
    }
    p.reported += 1;
}

/// Whether the per-target form is on (its threshold is not 0).
#[inline(always)]
pub fn per_target_on(config: &KernelConfig) -> bool {
    config
        .thresholds
        .get(DetectionKind::DistributedScan as usize)
        .is_some_and(|&t| t != 0)
}

/// A source reported on its own takes back the ports it added at the target of the probe that
/// crossed (`TargetState::withdraw`): its scan is reported once, by its own finding. Called
/// from `track::record`, once, on the probe that crossed.
#[inline(never)] // own BPF stack frame
pub fn withdraw(u: &Update, config: &KernelConfig) {
    if !per_target_on(config) {
        return;
    }
    let Some(t) = TARGETS.get_ptr_mut(u.origin.target) else {
        return;
    };
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    unsafe { &mut *t }.withdraw(&u.key);
}

/// An answer this host sends from a local port to a remote: a SYN-ACK, or a UDP datagram.
#[derive(Clone, Copy)]
pub struct Served {
    pub local: SourceKey,
    /// The remote's tracker key (`track::source_key`).
    pub remote: SourceKey,
    pub proto: u8,
    pub local_port: u16,
}

/// TC egress: marks the local host as serving the port, in the state of each form switched on
/// that has one (only probed ports and destinations do; nothing is inserted). Its probes then
/// stop counting toward a distributed sweep of the port, and the port toward a distributed
/// scan of the host, in this window; the remote, if sampled, was answered.
#[inline(never)] // own BPF stack frame
pub fn note_served(served: &Served, config: &KernelConfig) {
    let key = port_key(served.proto, served.local_port);
    if config.distributed_hosts != 0
        && let Some(p) = PORTS.get_ptr_mut(port_slot(config.hash_seed, key))
    {
        // SAFETY: pointer into the array's value returned by the kernel; valid for this run.
        let p = unsafe { &mut *p };
        if p.key == key {
            p.served
                .insert(hash_addr(config.hash_seed, &served.local) as u32);
        }
    }
    if per_target_on(config)
        && let Some(t) = TARGETS.get_ptr_mut(served.local)
    {
        // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
        unsafe { &mut *t }.answer(
            hash_port(config.hash_seed, served.proto, served.local_port),
            &served.remote,
        );
    }
}

/// What a distributed finding's event says beyond the probe that crossed (`Update`): the
/// two forms differ only here.
struct Found<'a> {
    window_start_ns: u64,
    probes: &'a [u32; PROBE_CLASSES],
    /// The estimate that crossed: distinct ports of a target, unanswered hosts of a port.
    measure: u32,
    /// The probed target (per-target form), or all-zero (a sweep of one port).
    source: SourceKey,
    scope: u8,
    /// The address the event's `target` field carries for the finding's example.
    crossing: [u8; 16],
}

/// Sends a distributed finding's event; false when the ring was full.
#[inline(always)]
fn emit(u: &Update, found: &Found) -> bool {
    event::emit(|e| {
        // SAFETY: `e` points to a reserved ring-buffer slot of ScanEvent size; every field is
        // written before submit.
        unsafe {
            (*e).timestamp_ns = u.now;
            (*e).first_seen_ns = found.window_start_ns;
            (*e).window_start_ns = found.window_start_ns;
            (*e).source = found.source;
            (*e).probes = *found.probes;
            (*e).measures = [0; DETECTION_KINDS];
            (*e).measures[DetectionKind::DistributedScan as usize] = found.measure;
            (*e).kind = DetectionKind::DistributedScan as u32;
            (*e).ifindex = u.origin.ifindex;
            (*e).direction = DIRECTION_INGRESS;
            (*e).target_port = u.origin.target_port;
            (*e).min_hops = HOPS_UNKNOWN;
            (*e).max_hops = HOPS_UNKNOWN;
            (*e).window = WINDOW_SHORT;
            (*e).scope = found.scope;
            (*e).proto = u.proto;
            (*e).target = found.crossing;
            (*e).sender = Sender::NONE;
        }
    })
}
