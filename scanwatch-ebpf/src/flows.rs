//! The host's own flows: recorded on egress, matched on ingress so replies never count as
//! probes. See `scanwatch_common::flow` for the design and the full-map trade-off.

use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::KernelConfig,
    flow::{FlowKey, FlowState},
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6},
    stats::Counter,
};

use crate::{
    maps::FLOWS,
    parse::{Packet, Quoted},
    stats::count,
};

#[inline(always)]
fn key(
    proto: u8,
    local: SourceKey,
    remote: SourceKey,
    local_port: u16,
    remote_port: u16,
) -> FlowKey {
    let icmp = proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
    FlowKey {
        local,
        remote,
        local_port,
        // ICMP flows are keyed by identifier alone.
        remote_port: if icmp { 0 } else { remote_port },
        proto: u32::from(proto),
    }
}

/// True for the outbound packets that open a flow worth remembering.
#[inline(always)]
pub const fn opens_flow(class: PacketClass) -> bool {
    matches!(
        class,
        PacketClass::TcpSyn
            | PacketClass::Udp
            | PacketClass::IcmpEcho
            | PacketClass::IcmpTimestamp
            | PacketClass::IcmpAddrMask
    )
}

/// Records an outbound flow opener (egress) from `src` (local) to `dst`.
#[inline(always)]
pub fn record_outbound(packet: &Packet, src: &SourceKey, dst: &SourceKey, now: u64) {
    let k = key(packet.proto, *src, *dst, packet.src_port, packet.dst_port);
    if let Some(state) = FLOWS.get_ptr_mut(k) {
        // SAFETY: pointer into the map value, valid for this run.
        let state = unsafe { &mut *state };
        state.last_seen_ns = now;
        state.packets = state.packets.wrapping_add(1);
        state.answered = 0;
        return;
    }
    let state = FlowState {
        last_seen_ns: now,
        packets: 1,
        answered: 0,
    };
    if FLOWS.insert(k, state, 0).is_ok() {
        count(Counter::FlowsRecorded);
    }
}

/// The recorded flow `k`, if it is still within its lifetime.
#[inline(always)]
fn live(k: &FlowKey, config: &KernelConfig, now: u64) -> Option<&'static mut FlowState> {
    let state = FLOWS.get_ptr_mut(k)?;
    // SAFETY: pointer into the map value, valid for this run.
    let state = unsafe { &mut *state };
    (now.wrapping_sub(state.last_seen_ns) < config.flow_timeout()).then_some(state)
}

/// True when an ingress packet from `src` to `dst` (local) answers one of our recorded flows.
#[inline(always)]
pub fn is_reply(
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
    config: &KernelConfig,
    now: u64,
) -> bool {
    reply_flow(packet, src, dst, config, now).is_some()
}

/// The recorded flow an ingress packet from `src` to `dst` (local) answers, if any.
#[inline(always)]
pub fn reply_flow(
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
    config: &KernelConfig,
    now: u64,
) -> Option<&'static mut FlowState> {
    // ICMP echo replies carry the identifier where TCP/UDP carry the source port.
    let k = key(
        packet.proto,
        *dst,
        *src,
        if packet.proto == IPPROTO_ICMP || packet.proto == IPPROTO_ICMPV6 {
            packet.src_port
        } else {
            packet.dst_port
        },
        packet.src_port,
    );
    live(&k, config, now)
}

/// True when an ICMP error quotes one of our recorded flows.
#[inline(always)]
pub fn quotes_our_flow(q: &Quoted, config: &KernelConfig, now: u64) -> bool {
    let k = key(q.proto, q.src, q.dst, q.src_port, q.dst_port);
    live(&k, config, now).is_some()
}
