//! Per-source tracking of probes: ignore list, admission filter, the LRU tracker, tumbling
//! windows, the distinct-count estimators and threshold events.
//!
//! Spoof-flood resistance: a source enters the tracker only on its second probe. The first probe
//! writes a fingerprint of the source into a fixed-size array (the admission filter); a later
//! probe that finds its own fingerprint there is admitted. A flood of single packets from random
//! spoofed sources therefore costs one array write per packet and never an LRU insert, so it
//! can neither churn the tracker nor evict the state of sources that really scan. The price: a
//! source's first probe is not counted (distinct counts are low by at most one), and under a
//! flood a scanner's fingerprint can be overwritten before its second probe, which delays its
//! admission by a probe or more (see `ADMISSION_SLOTS`).

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, maps::lpm_trie::Key, programs::XdpContext,
};
use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_EVENTS, FLAG_NO_IPV6, KernelConfig},
    event::{DetectionKind, ScanEvent},
    hash::{hash_addr, hash_port},
    maps::ADMISSION_SLOTS,
    state::SourceState,
    stats::Counter,
};

use crate::{
    maps::{ADMISSION, EMPTY_STATE, EVENTS, IGNORE, TRACKER},
    parse::Packet,
    stats::count,
};

/// Salt that separates the admission filter's hash from the estimators'.
const ADMISSION_SALT: u64 = 0x5ca7_5ca7_5ca7_5ca7;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The tracker (and block) key of a packet's source.
#[inline(always)]
pub fn source_key(packet: &Packet, config: &KernelConfig) -> SourceKey {
    if packet.ipv6 {
        SourceKey::from_ipv6(packet.src, config.ipv6_prefix())
    } else {
        SourceKey { addr: packet.src }
    }
}

/// The program's clock: `bpf_ktime_get_ns`, unless a test injected one.
#[inline(always)]
pub fn now(config: &KernelConfig) -> u64 {
    if config.clock_override_ns != 0 {
        config.clock_override_ns
    } else {
        // SAFETY: helper with no arguments.
        unsafe { bpf_ktime_get_ns() }
    }
}

/// Records one probe (a packet whose class `is_probe`).
#[inline(always)]
pub fn record(ctx: &XdpContext, packet: &Packet, config: &KernelConfig) {
    if packet.ipv6 && config.flags & FLAG_NO_IPV6 != 0 {
        return;
    }
    if config.ignore_entries != 0 && IGNORE.get(Key::new(128, packet.src)).is_some() {
        count(Counter::Ignored);
        return;
    }
    let key = source_key(packet, config);
    let now = now(config);
    let Some(state) = lookup_or_admit(&key, config, now) else {
        return;
    };
    // SAFETY: pointer into the tracker's value returned by the kernel; valid for this run.
    let state = unsafe { &mut *state };
    update(ctx, state, &key, packet, config, now);
}

/// The tracker entry for `key`, creating it if the admission filter lets the source in.
#[inline(always)]
fn lookup_or_admit(key: &SourceKey, config: &KernelConfig, now: u64) -> Option<*mut SourceState> {
    if let Some(state) = TRACKER.get_ptr_mut(key) {
        return Some(state);
    }
    if config.flags & FLAG_NO_ADMISSION == 0 {
        if !admit(key, config.hash_seed) {
            count(Counter::AdmissionDeferred);
            return None;
        }
        count(Counter::Admitted);
    }
    let template = EMPTY_STATE.get(0)?;
    // NOEXIST: another CPU may have inserted the same source meanwhile; then use its entry.
    if TRACKER
        .insert(key, template, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        count(Counter::TrackerInserts);
    }
    let Some(state) = TRACKER.get_ptr_mut(key) else {
        count(Counter::TrackerUpdateFailures);
        return None;
    };
    // SAFETY: as in `record`.
    let s = unsafe { &mut *state };
    if s.first_seen_ns == 0 {
        s.first_seen_ns = now;
        s.window_start_ns = now;
    }
    Some(state)
}

/// Admission filter: true on a source's second probe, see the module docs.
#[inline(always)]
fn admit(key: &SourceKey, seed: u64) -> bool {
    let h = hash_addr(seed ^ ADMISSION_SALT, &key.addr);
    let Some(slot) = ADMISSION.get_ptr_mut((h as u32) & (ADMISSION_SLOTS - 1)) else {
        return false;
    };
    let fingerprint = ((h >> 32) as u32) | 1;
    // SAFETY: pointer into the array map's value, valid for this run.
    let slot = unsafe { &mut *slot };
    if *slot == fingerprint {
        *slot = 0;
        true
    } else {
        *slot = fingerprint;
        false
    }
}

/// Starts a new tumbling window.
#[inline(always)]
fn reset_window(s: &mut SourceState, now: u64) {
    s.window_start_ns = now;
    s.reported = 0;
    s.probes = [0; scanwatch_common::classify::PROBE_CLASSES];
    s.measures = [0; scanwatch_common::event::DETECTION_KINDS];
    s.tcp_ports.clear();
    s.hosts.clear();
    s.udp_ports.clear();
    s.stealth_ports.clear();
    s.icmp_hosts.clear();
}

#[inline(always)]
fn update(
    ctx: &XdpContext,
    s: &mut SourceState,
    key: &SourceKey,
    packet: &Packet,
    config: &KernelConfig,
    now: u64,
) {
    if now.wrapping_sub(s.window_start_ns) >= config.window() {
        reset_window(s, now);
        count(Counter::WindowResets);
    }
    s.last_seen_ns = now;
    s.lifetime_probes = s.lifetime_probes.wrapping_add(1);
    let class = packet.class;
    if let Some(p) = s.probes.get_mut(class as usize) {
        *p = p.wrapping_add(1);
    }

    let seed = config.hash_seed;
    let host = hash_addr(seed, &packet.dst) as u32;
    if s.hosts.insert(host) {
        bump_measure(ctx, s, key, DetectionKind::HostSweep, config, now);
    }
    let kind = match class {
        PacketClass::TcpSyn => s
            .tcp_ports
            .insert(hash_port(seed, IPPROTO_TCP, packet.dst_port))
            .then_some(DetectionKind::PortScan),
        PacketClass::TcpFin
        | PacketClass::TcpNull
        | PacketClass::TcpXmas
        | PacketClass::TcpMaimon => s
            .stealth_ports
            .insert(hash_port(seed, IPPROTO_TCP, packet.dst_port))
            .then_some(DetectionKind::StealthScan),
        PacketClass::Udp => s
            .udp_ports
            .insert(hash_port(seed, IPPROTO_UDP, packet.dst_port))
            .then_some(DetectionKind::UdpScan),
        PacketClass::IcmpEcho | PacketClass::IcmpTimestamp | PacketClass::IcmpAddrMask => s
            .icmp_hosts
            .insert(host.rotate_left(16))
            .then_some(DetectionKind::IcmpSweep),
        PacketClass::Fragment => Some(DetectionKind::FragmentScan),
        _ => None,
    };
    if let Some(kind) = kind {
        bump_measure(ctx, s, key, kind, config, now);
    }
}

/// Adds one to a kind's measure and sends an event the first time in this window that it
/// reaches its threshold.
#[inline(always)]
fn bump_measure(
    ctx: &XdpContext,
    s: &mut SourceState,
    key: &SourceKey,
    kind: DetectionKind,
    config: &KernelConfig,
    now: u64,
) {
    let index = kind as usize;
    let (Some(measure), Some(threshold)) =
        (s.measures.get_mut(index), config.thresholds.get(index))
    else {
        return;
    };
    *measure = measure.wrapping_add(1);
    let bit = 1u32 << index;
    if *threshold == 0 || *measure < *threshold || s.reported & bit != 0 {
        return;
    }
    if config.flags & FLAG_NO_EVENTS != 0 {
        return;
    }
    s.reported |= bit;
    let event = ScanEvent {
        timestamp_ns: now,
        first_seen_ns: s.first_seen_ns,
        window_start_ns: s.window_start_ns,
        source: *key,
        probes: s.probes,
        measures: s.measures,
        kind: kind as u32,
        // SAFETY: reading a field of the context the kernel passed in.
        ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
    };
    match EVENTS.output::<ScanEvent>(&event, 0) {
        Ok(()) => count(Counter::EventsEmitted),
        Err(_) => count(Counter::EventsDropped),
    }
}
