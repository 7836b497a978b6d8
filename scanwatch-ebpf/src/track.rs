//! Per-source tracking of probes: ignore list, admission filter, the LRU tracker, tumbling
//! windows, the distinct-count estimators and threshold events.
//!
//! Spoof-flood resistance: a source enters the tracker only on its second probe. The first probe
//! writes a fingerprint of the source into a fixed-size array (the admission filter); a later
//! probe that finds its own fingerprint there is admitted. A flood of single packets from random
//! spoofed sources therefore costs one array write per packet and never an LRU insert, so it
//! can neither churn the tracker nor evict the state of sources that really scan. The price: a
//! source's first probe is not counted (distinct counts are low by at most one). Each slot keeps
//! a first probe in two places, one overwritten by the next and one held for a short window,
//! so neither a fast nor a slow scanner loses its admission to a flood that starts after its
//! first probe (`scanwatch_common::admission` gives the rates).

use aya_ebpf::{bindings::BPF_NOEXIST, programs::XdpContext};
use scanwatch_common::{
    addr::SourceKey,
    admission::clock_units,
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_EVENTS, FLAG_NO_IPV6, KernelConfig},
    event::{
        DETECTION_KINDS, DIRECTION_EGRESS, DIRECTION_INGRESS, DetectionKind, SCOPE_ADDRESS,
        WINDOW_LONG, WINDOW_SHORT, WINDOW_WIDE,
    },
    evidence::HOPS_UNKNOWN,
    hash::{hash_addr, hash_datagram, hash_port},
    maps::ADMISSION_SLOTS,
    proto::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP},
    state::{SourceState, probe_id},
    stats::Counter,
    zeroed::zero,
};

use crate::{
    atomic::atomic_add,
    clock, distributed, event,
    level::{Origin, Update, start},
    maps::{ADMISSION, EMPTY_STATE, IGNORE, LONG, TRACKER, lpm_key},
    owner,
    parse::Packet,
    sample,
    stats::count,
    wide,
};

/// Salt that separates the admission filter's hash from the estimators'.
const ADMISSION_SALT: u64 = 0x5ca7_5ca7_5ca7_5ca7;

/// The tracker (and block) key of a source address: IPv6 aggregated to the prefix.
#[inline(always)]
pub fn source_key(src: &SourceKey, ipv6: bool, config: &KernelConfig) -> SourceKey {
    if ipv6 {
        SourceKey::from_ipv6_words(src.words(), config.ipv6_prefix())
    } else {
        *src
    }
}

/// A packet's addresses, read from the packet by the caller: a non-inlined function cannot
/// derive packet pointers from the context (the verifier rejects the zero-extension LLVM emits).
#[derive(Clone, Copy)]
pub struct Addrs {
    pub src: SourceKey,
    pub dst: SourceKey,
    /// Hops the probe travelled (drop mode), else `HOPS_UNKNOWN`.
    pub hops: u8,
    /// The clock, when the caller already read it for this packet (a UDP or stealth probe,
    /// checked against our flows first); 0 when not read yet. One clock read per packet.
    pub now: u64,
}

/// Records one probe (a packet whose class `is_probe`) at every level: the short window, then,
/// while the source is below every threshold there, the long window, the wide IPv6 prefix and
/// the distributed-scan count of its target.
///
/// A repeat of the source's last probe in its window (same host, port and class: a
/// retransmission, a flood of one port) is only counted in the short window: it would set no
/// bit at any level, so it skips the estimators and the other levels' lookups.
///
/// The levels' entries are looked up here, inline, and each is updated by the one
/// [`update_level`]: the 512-byte stack limit covers a whole call chain, and the deepest one
/// (program, `record`, `update_level`) has no room for another frame in between.
#[inline(never)] // own BPF stack frame: keeps the caller under the 512-byte limit
pub fn record(ctx: &XdpContext, packet: &Packet, addrs: &Addrs, config: &KernelConfig) {
    let Some((key, state, now)) = tracked(&addrs.src, packet.ipv6, config, addrs.now) else {
        return;
    };
    let mut update = Update {
        key,
        origin: Origin {
            // SAFETY: reading a field of the context the kernel passed in.
            ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
            direction: DIRECTION_INGRESS,
            target: addrs.dst,
            target_port: packet.dst_port,
            window: WINDOW_SHORT,
        },
        now,
        host: hash_addr(config.hash_seed, &addrs.dst) as u32,
        class: packet.class,
        proto: packet.proto,
        hops: addrs.hops,
        src_port: packet.src_port,
    };
    if count_if_repeat(state, &update, config) {
        return;
    }
    let crossed = update_level(state, &update, config);
    if sample::wanted(&state.samples) {
        sample::take(ctx, packet.l3, &mut state.samples);
    }
    // Only sources below every threshold of their short window feed the other levels: a scan
    // already reported is not reported again, and takes back what it added to its target's
    // distributed count when it crosses.
    if state.reported != 0 {
        if crossed {
            distributed::withdraw(&update, config);
        }
        return;
    }
    if counts_for_target(packet.class) {
        distributed::contribute(&update, config);
    }
    if config.long_window_ns != 0
        && let Some(long) = long_state(&update.key, now)
    {
        update.origin.window = WINDOW_LONG;
        update_level(long, &update, config);
    }
    if packet.ipv6 && config.ipv6_wide_prefix_len != 0 {
        let wide_key =
            SourceKey::wide_from_ipv6_words(addrs.src.words(), config.ipv6_wide_prefix_len);
        if let Some(w) = wide::entry(&wide_key, &update.key, now) {
            update.key = wide_key;
            update.origin.window = WINDOW_WIDE;
            update_level(&mut w.state, &update, config);
        }
    }
}

/// Counts a repeat of the source's last probe in its window (see [`record`]) and returns true.
/// Any other probe becomes the last probe and gets false, with nothing counted; the probe that
/// ends the window first carries the window to the long one ([`carry_to_long`]): here, in this
/// frame, its branches cost the verifier nothing on the rest of `record` (called from `record`,
/// they added 150,000 instructions).
///
/// The last probe is kept tagged with its window's start (`SourceState::last_probe`), so any
/// window roll forgets it without a store: clearing it in `reset_window` let LLVM merge that
/// function's stores into a byte loop that cost the verifier 160,000 instructions.
///
/// In a frame of its own: inlined, its conditions more than doubled the verifier's work on
/// `record`, and the id kept across `update_level` grew `record`'s frame past the combined
/// 512-byte stack limit.
#[inline(never)]
fn count_if_repeat(state: &mut SourceState, u: &Update, config: &KernelConfig) -> bool {
    let id = probe_id(u.host, u.class, u.origin.target_port);
    let tagged = id ^ state.window_start_ns as u32;
    if u.now.wrapping_sub(state.window_start_ns) >= config.window() {
        // The probe that ends the window: the one place the finished window can be carried.
        if config.long_window_ns != 0 {
            carry_to_long(state, &u.key);
        }
        state.last_probe = tagged;
        return false;
    }
    if id == 0 || state.last_probe != tagged || sample::wanted(&state.samples) {
        state.last_probe = tagged;
        return false;
    }
    count_probe(state, Some(u.class), u.hops, u.now);
    true
}

/// The per-probe update of one level's state (`observe` with the ingress `measure`), in a
/// frame of its own: every level calls this one copy, so the verifier walks `observe` and its
/// dispatch once per call site instead of through a copy inlined into each level. True when
/// this probe made the state reported (its first crossing in the window).
#[inline(never)]
fn update_level(state: &mut SourceState, u: &Update, config: &KernelConfig) -> bool {
    let before = state.reported;
    let probe = Probe {
        class: Some(u.class),
        host: Some(u.host),
        hops: u.hops,
    };
    let seed = config.hash_seed;
    observe(
        state,
        &u.key,
        &probe,
        |s| measure(s, u, seed),
        config,
        u.now,
        &u.origin,
    );
    before == 0 && state.reported != 0
}

/// The long-window (slow scans) state of a tracked source, if it has one (see
/// [`carry_to_long`]).
#[inline(always)]
fn long_state(key: &SourceKey, now: u64) -> Option<&'static mut SourceState> {
    let state = LONG.get_ptr_mut(key)?;
    // SAFETY: pointer into the LRU's value returned by the kernel; valid for this run.
    let state = unsafe { &mut *state };
    start(state, now);
    Some(state)
}

/// Gives a tracked source its long-window state when it probes again in a later short window:
/// the first probe that rolls its short window, before the roll, inserts the finished window
/// into `LONG` as the long window's start (or an empty state when that window was reported,
/// whose probes the long window must not count again).
///
/// A source enters `LONG` only by returning: two forged SYNs from one address, the cheapest way
/// past the admission filter, never roll a window, so a flood of forged pairs cannot churn the
/// slow scanners' state out of `LONG`; to take a slot there a spoofer must keep a forged source
/// probing across a whole short window. Nothing is lost by waiting: until its first window ends
/// the long window would have counted exactly what the short one did.
#[inline(always)]
fn carry_to_long(state: &SourceState, key: &SourceKey) {
    if LONG.get_ptr(key).is_some() {
        return;
    }
    let start = if state.reported == 0 {
        state
    } else {
        let Some(empty) = EMPTY_STATE.get(0) else {
            return;
        };
        empty
    };
    if LONG.insert(key, start, u64::from(BPF_NOEXIST)).is_ok() {
        count(Counter::LongInserts);
    }
}

/// Probes that name a port: SYN, UDP and stealth flag mixes (not ICMP, not fragments).
#[inline(always)]
const fn counts_for_target(class: PacketClass) -> bool {
    matches!(
        class,
        PacketClass::TcpSyn
            | PacketClass::Udp
            | PacketClass::TcpFin
            | PacketClass::TcpNull
            | PacketClass::TcpXmas
            | PacketClass::TcpMaimon
    )
}

/// The tracker state of remote source `src`, with its key and the time: `None` when IPv6 is
/// off, the source is ignored, or the admission filter defers it.
#[inline(always)]
fn tracked(
    src: &SourceKey,
    ipv6: bool,
    config: &KernelConfig,
    known_now: u64,
) -> Option<(SourceKey, &'static mut SourceState, u64)> {
    if ipv6 && config.flags & FLAG_NO_IPV6 != 0 {
        return None;
    }
    if config.ignore_entries != 0 && lpm_key(src).and_then(|k| IGNORE.get(k)).is_some() {
        count(Counter::Ignored);
        return None;
    }
    let key = source_key(src, ipv6, config);
    // Read before admission: the filter times how long it holds a first probe.
    let now = if known_now != 0 {
        known_now
    } else {
        clock::now(config)
    };
    let state = lookup_or_admit(&key, config, now)?;
    // SAFETY: pointer into the tracker's value returned by the kernel; valid for this run.
    let state = unsafe { &mut *state };
    start(state, now);
    Some((key, state, now))
}

/// A bare RST the host sends: its answer to a segment with ACK that belongs to no connection.
#[derive(Clone, Copy)]
pub struct Reset {
    /// The RST's destination: the remote that sent the ACK.
    pub remote: SourceKey,
    /// The RST's source: the local address and port the ACK probed.
    pub local: SourceKey,
    pub local_port: u16,
    pub ipv6: bool,
    pub ifindex: u32,
    /// The clock, as the egress program read it for this packet.
    pub now: u64,
}

/// TC egress: counts a probed port of an ACK or window scan in the *ingress* state of the
/// remote, through the same filters as a probe seen at XDP (IPv6 switch, ignore list,
/// admission filter: a spoofer's ACKs make the host reset toward the forged address).
#[inline(never)] // own BPF stack frame
pub fn record_ack_reset(reset: &Reset, config: &KernelConfig) {
    let Some((key, state, now)) = tracked(&reset.remote, reset.ipv6, config, reset.now) else {
        return;
    };
    let origin = Origin {
        ifindex: reset.ifindex,
        direction: DIRECTION_INGRESS,
        target: reset.local,
        target_port: reset.local_port,
        window: WINDOW_SHORT,
    };
    let seed = config.hash_seed;
    // The ACK itself was no probe class (it took the established fast path).
    // Its hop count is unknown here: the RST is ours, not the remote's packet.
    let probe = Probe {
        class: None,
        host: Some(hash_addr(seed, &reset.local) as u32),
        hops: HOPS_UNKNOWN,
    };
    let port = hash_port(seed, IPPROTO_TCP, reset.local_port);
    observe(
        state,
        &key,
        &probe,
        |s| s.ack_ports.insert(port).then_some(DetectionKind::AckScan),
        config,
        now,
        &origin,
    );
}

/// The tracker entry for `key`, creating it if the admission filter lets the source in.
#[inline(always)]
fn lookup_or_admit(key: &SourceKey, config: &KernelConfig, now: u64) -> Option<*mut SourceState> {
    if let Some(state) = TRACKER.get_ptr_mut(key) {
        return Some(state);
    }
    if config.flags & FLAG_NO_ADMISSION == 0 {
        if !admit(key, config, now) {
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
    let state = TRACKER.get_ptr_mut(key);
    if state.is_none() {
        count(Counter::TrackerUpdateFailures);
    }
    state
}

/// Admission filter: true on a source's second probe (`scanwatch_common::admission`), with
/// first probes held for a short window.
#[inline(always)]
fn admit(key: &SourceKey, config: &KernelConfig, now: u64) -> bool {
    let h = hash_addr(config.hash_seed ^ ADMISSION_SALT, key);
    let Some(slot) = ADMISSION.get_ptr_mut((h as u32) & (ADMISSION_SLOTS - 1)) else {
        return false;
    };
    let fingerprint = ((h >> 32) as u32) | 1;
    // SAFETY: pointer into the array map's value, valid for this run.
    let slot = unsafe { &mut *slot };
    slot.admit(fingerprint, clock_units(now), clock_units(config.window()))
}

/// Starts a new tumbling window if the current one is over.
#[inline(always)]
fn roll_window(s: &mut SourceState, now: u64, window: u64) {
    if now.wrapping_sub(s.window_start_ns) >= window {
        reset_window(s, now);
        count(Counter::WindowResets);
    }
}

/// Starts a new tumbling window.
#[inline(always)]
fn reset_window(s: &mut SourceState, now: u64) {
    s.window_start_ns = now;
    s.reported = 0;
    zero(&mut s.probes);
    zero(&mut s.measures);
    s.tcp_ports.clear();
    s.hosts.clear();
    s.udp_ports.clear();
    s.stealth_ports.clear();
    s.icmp_hosts.clear();
    s.fragments.clear();
    s.ack_ports.clear();
    s.sctp_ports.clear();
    s.protocols.clear();
    s.min_hops = HOPS_UNKNOWN;
    s.max_hops = HOPS_UNKNOWN;

    for sample in &mut s.samples {
        sample.len = 0;
    }
}

// `measure` sets the estimator the table of kinds names for each kind (user space turns the
// measures into counts, and refuses thresholds above their limits, by the table's estimator):
// checked at compile time, free at run time.
const _: () = {
    use scanwatch_common::kinds::Estimator;
    let wide = [DetectionKind::PortScan, DetectionKind::HostSweep];
    let narrow = [
        DetectionKind::StealthScan,
        DetectionKind::UdpScan,
        DetectionKind::IcmpSweep,
        DetectionKind::FragmentScan,
        DetectionKind::AckScan,
        DetectionKind::SctpScan,
    ];
    let mut i = 0;
    while i < wide.len() {
        assert!(matches!(wide[i].spec().estimator, Estimator::Wide));
        i += 1;
    }
    let mut i = 0;
    while i < narrow.len() {
        assert!(matches!(narrow[i].spec().estimator, Estimator::Narrow));
        i += 1;
    }
    assert!(matches!(
        DetectionKind::ProtocolScan.spec().estimator,
        Estimator::ProtocolSet
    ));
};

/// Sets an ingress probe's bit in the estimator of the kind its class measures; returns that
/// kind when the bit was new.
#[inline(always)]
fn measure(s: &mut SourceState, u: &Update, seed: u64) -> Option<DetectionKind> {
    let host = u.host;
    match u.class {
        PacketClass::TcpSyn => s
            .tcp_ports
            .insert(hash_port(seed, IPPROTO_TCP, u.origin.target_port))
            .then_some(DetectionKind::PortScan),
        PacketClass::TcpFin
        | PacketClass::TcpNull
        | PacketClass::TcpXmas
        | PacketClass::TcpMaimon
        | PacketClass::TcpOddFlags => s
            .stealth_ports
            .insert(hash_port(seed, IPPROTO_TCP, u.origin.target_port))
            .then_some(DetectionKind::StealthScan),
        PacketClass::Udp => s
            .udp_ports
            .insert(hash_port(seed, IPPROTO_UDP, u.origin.target_port))
            .then_some(DetectionKind::UdpScan),
        PacketClass::IcmpEcho | PacketClass::IcmpTimestamp | PacketClass::IcmpAddrMask => s
            .icmp_hosts
            .insert(host.rotate_left(16))
            .then_some(DetectionKind::IcmpSweep),
        PacketClass::Fragment => s
            .fragments
            .insert(hash_datagram(host, u32::from(u.src_port)))
            .then_some(DetectionKind::FragmentScan),
        // One bit per protocol number: an exact set.
        PacketClass::IpProtocol => s
            .protocols
            .insert(u32::from(u.proto))
            .then_some(DetectionKind::ProtocolScan),
        PacketClass::SctpInit | PacketClass::SctpCookieEcho => s
            .sctp_ports
            .insert(hash_port(seed, IPPROTO_SCTP, u.origin.target_port))
            .then_some(DetectionKind::SctpScan),
        _ => None,
    }
}

/// What one probe adds to a source's state besides its kind's estimator bit.
#[derive(Clone, Copy)]
pub struct Probe {
    /// The probe's class, counted in the window's `probes`; `None` for evidence that is not a
    /// packet the source sent (a failed attempt of ours, seen through its answer).
    pub class: Option<PacketClass>,
    /// Hash of the destination host, for `host_sweep`; `None` when the probe does not count
    /// toward it.
    pub host: Option<u32>,
    /// Hops the probe travelled, or `HOPS_UNKNOWN` (monitor mode, egress).
    pub hops: u8,
}

/// The per-probe update of a source's state, ingress and egress alike: rolls the window,
/// counts the probe, sets its host bit, lets `measure` set the bit of the kind it measures
/// (returning the kind when that bit was new), and bumps each measure whose bit was new, which
/// sends an event at the threshold and at each doubling. Thresholds follow the direction.
///
/// `measure` is a closure so each caller keeps its own one-level dispatch from class to
/// estimator: no second match on the kind per probe.
#[inline(always)]
pub fn observe(
    s: &mut SourceState,
    key: &SourceKey,
    probe: &Probe,
    measure: impl FnOnce(&mut SourceState) -> Option<DetectionKind>,
    config: &KernelConfig,
    now: u64,
    origin: &Origin,
) {
    // `direction` is a constant at every (inlined) call site, so that test folds away.
    let (thresholds, window) = if origin.window == WINDOW_LONG {
        (&config.long_thresholds, config.long_window_ns)
    } else if origin.direction == DIRECTION_EGRESS {
        (&config.egress_thresholds, config.window())
    } else {
        (&config.thresholds, config.window())
    };
    roll_window(s, now, window);
    count_probe(s, probe.class, probe.hops, now);
    if let Some(host) = probe.host
        && s.hosts.insert(host)
    {
        bump_measure(
            s,
            key,
            DetectionKind::HostSweep,
            thresholds,
            config,
            now,
            origin,
        );
    }
    if let Some(kind) = measure(s) {
        bump_measure(s, key, kind, thresholds, config, now, origin);
    }
}

/// What every probe adds to its window, new or a repeat: the time, its hop count and, for a
/// packet the source sent (`class`), the probe counts.
#[inline(always)]
fn count_probe(s: &mut SourceState, class: Option<PacketClass>, hops: u8, now: u64) {
    s.last_seen_ns = now;
    if hops != HOPS_UNKNOWN {
        if s.min_hops == HOPS_UNKNOWN || hops < s.min_hops {
            s.min_hops = hops;
        }
        if s.max_hops == HOPS_UNKNOWN || hops > s.max_hops {
            s.max_hops = hops;
        }
    }
    if let Some(class) = class {
        s.lifetime_probes = s.lifetime_probes.wrapping_add(1);
        if let Some(p) = s.probes.get_mut(class as usize) {
            *p = p.wrapping_add(1);
        }
    }
}

/// Adds one to the measure of kind `index` atomically and returns the measure as this CPU
/// counted it (its value before, plus one), or `None` for an index past the measures.
///
/// A source's probes reach every CPU RSS spreads its flows over, and a plain add there loses
/// increments when two CPUs update a measure at once (44 in 120,000 probes split over two
/// CPUs, in the kernel tests): a scan counted low can stay below its threshold. The add is
/// `BPF_XADD` on the 8-byte word holding the measure (the programs' instruction set has 64-bit
/// atomics only, and no fetch). A measure never nears 2^32 in a window, so the add to a word's
/// low half cannot carry into the other measure. An add by another CPU at the same moment is
/// kept but not seen in the value returned, so a crossing that falls exactly on such a race is
/// reported at the source's next new item.
///
/// Reading the measure back after the add instead cost the verifier 175,000 more instructions
/// on the XDP program, and a frame of its own 60,000 more; as it is, none.
#[inline(always)]
#[expect(
    clippy::cast_ptr_alignment,
    reason = "offsets into the 8-aligned state: the word at `offset & !7`, the measure at `offset` (a multiple of 4)"
)]
fn add_one(s: &mut SourceState, index: usize) -> Option<u32> {
    if index >= DETECTION_KINDS {
        return None;
    }
    let offset = MEASURES_OFFSET + index * 4;
    let base: *mut SourceState = s;
    // SAFETY: `offset` is inside the state (a measure of it) and `offset & !7` the 8-aligned
    // word that holds it (the state is 8-aligned); other CPUs touch the measures only with
    // this same atomic add or plain loads.
    unsafe {
        let before = *base.cast::<u8>().add(offset).cast::<u32>();
        let word = base.cast::<u8>().add(offset & !7).cast::<u64>();
        // The measure's half of the word (little-endian): shifted by 0 or 32, without a branch.
        atomic_add(word, 1 << ((offset & 4) * 8));
        Some(before.wrapping_add(1))
    }
}

/// Where the measures start in a source's state.
const MEASURES_OFFSET: usize = core::mem::offset_of!(SourceState, measures);
const _: () =
    assert!(MEASURES_OFFSET.is_multiple_of(4) && core::mem::align_of::<SourceState>() == 8);

/// Reports per kind and window at most: at the threshold, then each time the measure doubles
/// (a continuing scan is reported again with growing counts, at a bounded rate).
const MAX_REPORTS: u32 = 8;

/// Adds one to a kind's measure and sends an event when it reaches its threshold, and again
/// each time it doubles, within the window. `reported` keeps a 4-bit report count per kind.
#[inline(always)]
fn bump_measure(
    s: &mut SourceState,
    key: &SourceKey,
    kind: DetectionKind,
    thresholds: &[u32; DETECTION_KINDS],
    config: &KernelConfig,
    now: u64,
    origin: &Origin,
) {
    let index = kind as usize;
    let (Some(measure), Some(threshold)) = (add_one(s, index), thresholds.get(index)) else {
        return;
    };
    let shift = (index as u64) * 4;
    let reports = ((s.reported >> shift) & 0xf) as u32;
    if *threshold == 0 || reports >= MAX_REPORTS {
        return;
    }
    // Threshold · 2^reports, in 64 bits so it cannot overflow.
    if u64::from(measure) < u64::from(*threshold) << reports {
        return;
    }
    if config.flags & FLAG_NO_EVENTS != 0 {
        return;
    }
    let sent = event::emit(|e| {
        // SAFETY: `e` points to a reserved ring-buffer slot of ScanEvent size; every field
        // is written before submit.
        unsafe {
            (*e).timestamp_ns = now;
            (*e).first_seen_ns = s.first_seen_ns;
            (*e).window_start_ns = s.window_start_ns;
            (*e).source = *key;
            (*e).probes = s.probes;
            (*e).measures = s.measures;
            (*e).kind = kind as u32;
            (*e).ifindex = origin.ifindex;
            (*e).direction = origin.direction;
            (*e).target_port = origin.target_port;
            (*e).min_hops = s.min_hops;
            (*e).max_hops = s.max_hops;
            (*e).window = origin.window;
            (*e).scope = SCOPE_ADDRESS;
            (*e).proto = 0;
            (*e).target = origin.target.addr;
            owner::write_held(&mut (*e).sender, origin.direction == DIRECTION_EGRESS);
        }
    });
    if !sent {
        return;
    }
    // Counted as reported only once sent: a full ring must not silence a source for the
    // rest of its window.
    s.reported += 1u64 << shift;
}
