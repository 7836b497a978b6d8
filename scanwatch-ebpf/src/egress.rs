//! Egress scan detection: probes this host sends. Evidence comes from both hooks:
//! - the TC egress program sees what we send: ICMP echo/timestamp/mask requests (icmp_sweep),
//!   FIN/NULL/Xmas and odd-flag probes (stealth_scan; FIN|ACK is a normal close and not
//!   counted), tiny
//!   fragments (fragment_scan);
//! - the XDP program sees how the network answers: a RST to our SYN, or an ICMP unreachable
//!   quoting our datagram, is a *failed* attempt (port_scan, udp_scan, host_sweep).
//!
//! Counting failures rather than attempts is what keeps pollers, proxies and crawlers (many
//! successful connections to many services) quiet, as Zeek's scan policy did by counting failed
//! connections only. Sources are local addresses, keyed at full length.

use aya_ebpf::bindings::BPF_NOEXIST;
use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::KernelConfig,
    event::DetectionKind,
    evidence::HOPS_UNKNOWN,
    hash::{hash_addr, hash_datagram, hash_port},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    state::SourceState,
    stats::Counter,
};

use crate::{
    level::Origin,
    maps::{EGRESS, EMPTY_STATE},
    stats::count,
    track::{Probe, observe},
};

/// The egress state of a local source, created on first use (no admission filter: these are
/// our own addresses).
#[inline(always)]
fn state(local: &SourceKey, now: u64) -> Option<&'static mut SourceState> {
    if EGRESS.get_ptr_mut(local).is_none() {
        let template = EMPTY_STATE.get(0)?;
        let _ = EGRESS.insert(local, template, u64::from(BPF_NOEXIST));
    }
    let state = EGRESS.get_ptr_mut(local)?;
    // SAFETY: pointer into the map value, valid for this run.
    let s = unsafe { &mut *state };
    if s.first_seen_ns == 0 {
        s.first_seen_ns = now;
        s.window_start_ns = now;
        s.min_hops = HOPS_UNKNOWN;
        s.max_hops = HOPS_UNKNOWN;
    }
    Some(s)
}

/// A packet this host sent.
#[derive(Clone, Copy)]
pub struct Sent {
    pub class: PacketClass,
    pub local: SourceKey,
    pub remote: SourceKey,
    pub remote_port: u16,
    pub ifindex: u32,
}

// The kinds counted here are the ones the table of kinds measures at egress (user space takes
// their `[egress_thresholds]` and refuses the others'): checked at compile time, free at run
// time.
const _: () = {
    let counted = [
        DetectionKind::IcmpSweep,
        DetectionKind::StealthScan,
        DetectionKind::FragmentScan,
        DetectionKind::PortScan,
        DetectionKind::UdpScan,
        DetectionKind::HostSweep,
    ];
    let mut i = 0;
    while i < counted.len() {
        assert!(counted[i].spec().directions.egress());
        i += 1;
    }
};

/// The kind a packet this host sends counts toward by itself, if any.
#[inline(always)]
pub const fn kind_of(class: PacketClass) -> Option<DetectionKind> {
    match class {
        PacketClass::IcmpEcho | PacketClass::IcmpTimestamp | PacketClass::IcmpAddrMask => {
            Some(DetectionKind::IcmpSweep)
        }
        PacketClass::TcpFin
        | PacketClass::TcpNull
        | PacketClass::TcpXmas
        | PacketClass::TcpOddFlags => Some(DetectionKind::StealthScan),
        PacketClass::Fragment => Some(DetectionKind::FragmentScan),
        _ => None,
    }
}

/// TC egress: counts the probes this host sends that are suspicious by themselves. The caller
/// holds the packet's sender (`owner::hold`) for the event.
#[inline(never)] // own BPF stack frame: keeps the caller under the 512-byte limit
pub fn on_outbound(sent: &Sent, config: &KernelConfig, now: u64) {
    let Sent {
        class,
        local,
        remote,
        remote_port,
        ifindex,
    } = *sent;
    let Some(kind) = kind_of(class) else {
        return;
    };
    let Some(s) = state(&local, now) else {
        return;
    };
    let seed = config.hash_seed;
    let measure = |s: &mut SourceState| {
        let new = match kind {
            DetectionKind::IcmpSweep => s.icmp_hosts.insert(hash_addr(seed, &remote) as u32),
            DetectionKind::StealthScan => s
                .stealth_ports
                .insert(hash_addr(seed ^ u64::from(remote_port), &remote) as u32),
            // Our own fragments cannot be forged, and the TC program does not see their
            // identification: each one sets a bit chosen by the probe count, so the measure
            // stays in estimator units (`estimate` of it ≈ fragments sent).
            _ => s.fragments.insert(hash_datagram(
                hash_addr(seed, &remote) as u32,
                s.lifetime_probes,
            )),
        };
        new.then_some(kind)
    };
    let probe = Probe {
        class: Some(class),
        host: None,
        hops: HOPS_UNKNOWN,
    };
    observe(
        s,
        &local,
        &probe,
        measure,
        config,
        now,
        &Origin::egress(ifindex, remote, remote_port),
    );
}

/// A failed outbound attempt, from our side of the flow.
#[derive(Clone, Copy)]
pub struct Failure {
    pub local: SourceKey,
    pub remote: SourceKey,
    pub remote_port: u16,
    pub proto: u8,
    pub ifindex: u32,
}

/// XDP ingress: one of our attempts failed. The caller holds the failed flow's sender
/// (`owner::hold`) for the event.
#[inline(always)]
pub fn on_failure(failure: &Failure, config: &KernelConfig, now: u64) {
    let Failure {
        local,
        remote,
        remote_port,
        proto,
        ifindex,
    } = *failure;
    count(Counter::EgressFailures);
    let seed = config.hash_seed;
    let host = hash_addr(seed, &remote) as u32;
    // A (host, port) pair: the same port on many hosts is a sweep of that service.
    let pair = hash_addr(
        seed ^ u64::from(hash_port(seed, proto, remote_port)),
        &remote,
    ) as u32;
    let Some(s) = state(&local, now) else {
        return;
    };
    // A failure counts toward host_sweep, and toward port_scan or udp_scan by protocol; it is
    // not a packet the local source sent here, so no probe class is counted.
    let probe = Probe {
        class: None,
        host: Some(host),
        hops: HOPS_UNKNOWN,
    };
    let measure = |s: &mut SourceState| match proto {
        IPPROTO_TCP => s.tcp_ports.insert(pair).then_some(DetectionKind::PortScan),
        IPPROTO_UDP => s.udp_ports.insert(pair).then_some(DetectionKind::UdpScan),
        _ => None,
    };
    observe(
        s,
        &local,
        &probe,
        measure,
        config,
        now,
        &Origin::egress(ifindex, remote, remote_port),
    );
}
