//! Egress scan detection: probes this host sends. Evidence comes from both hooks:
//! - the TC egress program sees what we send: ICMP echo/timestamp/mask requests (icmp_sweep),
//!   FIN/NULL/Xmas probes (stealth_scan; FIN|ACK is a normal close and not counted), tiny
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
    event::{DIRECTION_EGRESS, DetectionKind},
    hash::{hash_addr, hash_port},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
    state::SourceState,
    stats::Counter,
};

use crate::{
    maps::{EGRESS, EMPTY_STATE},
    stats::count,
    track::{Origin, bump_measure, roll_window},
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

/// TC egress: counts the probes this host sends that are suspicious by themselves.
#[inline(never)] // own BPF stack frame: keeps the caller under the 512-byte limit
pub fn on_outbound(sent: &Sent, config: &KernelConfig, now: u64) {
    let Sent {
        class,
        local,
        remote,
        remote_port,
        ifindex,
    } = *sent;
    let kind = match class {
        PacketClass::IcmpEcho | PacketClass::IcmpTimestamp | PacketClass::IcmpAddrMask => {
            DetectionKind::IcmpSweep
        }
        PacketClass::TcpFin | PacketClass::TcpNull | PacketClass::TcpXmas => {
            DetectionKind::StealthScan
        }
        PacketClass::Fragment => DetectionKind::FragmentScan,
        _ => return,
    };
    let Some(s) = state(&local, now) else {
        return;
    };
    roll_window(s, now, config);
    s.last_seen_ns = now;
    s.lifetime_probes = s.lifetime_probes.wrapping_add(1);
    if let Some(p) = s.probes.get_mut(class as usize) {
        *p = p.wrapping_add(1);
    }
    let seed = config.hash_seed;
    let new = match kind {
        DetectionKind::IcmpSweep => s.icmp_hosts.insert(hash_addr(seed, &remote) as u32),
        DetectionKind::StealthScan => s
            .stealth_ports
            .insert(hash_addr(seed ^ u64::from(remote_port), &remote) as u32),
        _ => true,
    };
    if new {
        let origin = Origin {
            ifindex,
            direction: DIRECTION_EGRESS,
            target: remote,
            target_port: remote_port,
        };
        bump_measure(
            s,
            &local,
            kind,
            &config.egress_thresholds,
            config,
            now,
            &origin,
        );
    }
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

/// XDP ingress: one of our attempts failed.
#[inline(always)]
pub fn on_failure(failure: &Failure, config: &KernelConfig, now: u64) {
    let Failure {
        local,
        remote,
        remote_port,
        proto,
        ifindex,
    } = *failure;
    let kind = match proto {
        IPPROTO_TCP => DetectionKind::PortScan,
        IPPROTO_UDP => DetectionKind::UdpScan,
        _ => DetectionKind::HostSweep,
    };
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
    roll_window(s, now, config);
    s.last_seen_ns = now;
    let origin = Origin {
        ifindex,
        direction: DIRECTION_EGRESS,
        target: remote,
        target_port: remote_port,
    };
    let thresholds = &config.egress_thresholds;
    if s.hosts.insert(host) {
        bump_measure(
            s,
            &local,
            DetectionKind::HostSweep,
            thresholds,
            config,
            now,
            &origin,
        );
    }
    let new = match kind {
        DetectionKind::PortScan => s.tcp_ports.insert(pair),
        DetectionKind::UdpScan => s.udp_ports.insert(pair),
        _ => false,
    };
    if new {
        bump_measure(s, &local, kind, thresholds, config, now, &origin);
    }
}
