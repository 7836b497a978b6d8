//! The host's own flows: recorded on egress, matched on ingress so replies never count as
//! probes. See `scanwatch_common::flow` for the design and the full-map trade-off.
//!
//! Only flows the host opens are flows: an inbound UDP datagram that answers none of our flows
//! is noted in `INBOUND` (the XDP side; one array slot per conversation, see
//! `scanwatch_common::flow::InboundSlot`), and the host's datagrams answering such a
//! conversation record no flow (the TC side). A FIN|ACK with no live flow is asked of the
//! kernel's socket table ([`kernel_holds_connection`]): a connection older than `flow_timeout`,
//! or older than the agent, closes quietly.
//!
//! A bare RST the host sends on a connection it opened (`FLOWS`) or accepted (`ACCEPTED`, one
//! array slot per SYN-ACK it sent) within `flow_timeout` ends its own connection
//! ([`resets_own_connection`]): no ack_scan evidence.

use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_TCP_ESTABLISHED, BPF_TCP_LISTEN, bpf_sock_tuple,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 as Ipv4Tuple,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 as Ipv6Tuple, xdp_md,
    },
    cty::c_void,
    helpers::{
        bpf_xdp_load_bytes,
        generated::{bpf_sk_release, bpf_skc_lookup_tcp},
    },
    programs::{TcContext, XdpContext},
};
use scanwatch_common::{
    addr::SourceKey,
    classify::PacketClass,
    config::KernelConfig,
    flow::{FlowKey, FlowState, InboundSlot},
    owner::Sender,
    proto::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP},
    stats::Counter,
};

use crate::{
    maps::{ACCEPTED, CONFIG, FLOWS, INBOUND},
    owner,
    parse::{Packet, Quoted},
    stats::count,
};

#[inline(always)]
pub(crate) fn key(
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

/// Records an outbound flow opener (egress) from `src` (local) to `dst` with its socket
/// (`owner::noted`), which it returns, unless it is a UDP datagram answering a live inbound
/// conversation (then counted, not recorded, not refreshed; no socket is read).
#[inline(always)]
pub fn record_outbound(
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
    ctx: &TcContext,
    config: &KernelConfig,
    now: u64,
) -> Sender {
    if packet.proto == IPPROTO_UDP {
        let slot = InboundSlot::new(config.hash_seed, src, dst, packet.src_port, packet.dst_port);
        if let Some(value) = INBOUND.get_ptr(slot.index)
            // SAFETY: pointer into the array's value, valid for this run; one 8-byte load, so
            // fingerprint and time come from the same store.
            && slot.is_live(unsafe { value.read_volatile() }, now, config.flow_timeout())
        {
            count(Counter::EgressAnswers);
            return Sender::NONE;
        }
    }
    let sender = owner::noted(ctx, packet.l3);
    let k = key(packet.proto, *src, *dst, packet.src_port, packet.dst_port);
    if let Some(state) = FLOWS.get_ptr_mut(k) {
        // SAFETY: pointer into the map value, valid for this run.
        let state = unsafe { &mut *state };
        state.last_seen_ns = now;
        state.packets = state.packets.wrapping_add(1);
        state.answered = 0;
        state.sender = sender;
        return sender;
    }
    let state = FlowState {
        last_seen_ns: now,
        packets: 1,
        answered: 0,
        sender,
    };
    if FLOWS.insert(k, state, 0).is_ok() {
        count(Counter::FlowsRecorded);
    }
    sender
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

/// The sender of our recorded flow an ICMP error quotes, if it quotes one.
#[inline(always)]
pub fn quoted_flow(q: &Quoted, config: &KernelConfig, now: u64) -> Option<Sender> {
    let k = key(q.proto, q.src, q.dst, q.src_port, q.dst_port);
    live(&k, config, now).map(|flow| flow.sender)
}

/// Notes an inbound UDP datagram from `src` to `dst` (local) that answers none of our flows:
/// the host's answers to this conversation are not flows it opened. One store into the
/// conversation's `INBOUND` slot (its fingerprint and the time), whatever the slot held: a flood
/// costs no insert and no eviction, only overwrites of random slots (a spoofer without the
/// seed cannot aim at a conversation). Keyed by both addresses and both ports, so a spoofer must
/// guess a real peer's address and port and our port to make an answer of ours go unrecorded.
///
/// The seed is read from `CONFIG` here rather than passed in, so the call site stays as it was.
#[inline(always)]
pub fn note_inbound(packet: &Packet, src: &SourceKey, dst: &SourceKey, now: u64) {
    let Some(config) = CONFIG.get(0) else {
        return;
    };
    let slot = InboundSlot::new(config.hash_seed, dst, src, packet.dst_port, packet.src_port);
    let Some(value) = INBOUND.get_ptr_mut(slot.index) else {
        return;
    };
    // SAFETY: pointer into the array's value, valid for this run; 8-byte load and store, so a
    // concurrent reader sees the old note or the new one, never half of each.
    let old = unsafe { value.read_volatile() };
    // SAFETY: as above.
    unsafe { value.write_volatile(slot.value(now)) };
    if !slot.holds(old) {
        count(Counter::InboundNoted);
    }
}

/// Notes a TCP connection this host accepts: its SYN-ACK from `src` (local) to `dst` (TC
/// egress). One store into the connection's `ACCEPTED` slot, whatever the slot held, as
/// [`note_inbound`] does; read only by [`resets_own_connection`].
#[inline(always)]
pub fn note_accepted(
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
    config: &KernelConfig,
    now: u64,
) {
    let slot = InboundSlot::accepted(config.hash_seed, src, dst, packet.src_port, packet.dst_port);
    if let Some(value) = ACCEPTED.get_ptr_mut(slot.index) {
        // SAFETY: pointer into the array's value, valid for this run; one 8-byte store, so a
        // concurrent reader sees the old note or the new one, never half of each.
        unsafe { value.write_volatile(slot.value(now)) };
    }
}

/// True when a bare RST this host sends from `src` (local) to `dst` ends a TCP connection of
/// its own: one it opened (a live flow of `FLOWS`, same key order as [`record_outbound`]) or
/// accepted (a live `ACCEPTED` slot) within `flow_timeout`. After an application closed such
/// a connection, the peer's late segments are answered with bare RSTs, as an ACK scan's are.
/// Called only for the bare RSTs the host sends, never on the fast path.
#[inline(always)]
pub fn resets_own_connection(
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
    config: &KernelConfig,
    now: u64,
) -> bool {
    let k = key(packet.proto, *src, *dst, packet.src_port, packet.dst_port);
    if live(&k, config, now).is_some() {
        return true;
    }
    let slot = InboundSlot::accepted(config.hash_seed, src, dst, packet.src_port, packet.dst_port);
    ACCEPTED.get_ptr(slot.index).is_some_and(|value| {
        // SAFETY: pointer into the array's value, valid for this run; one 8-byte load, so
        // fingerprint and time come from the same store.
        slot.is_live(unsafe { value.read_volatile() }, now, config.flow_timeout())
    })
}

/// True when the kernel holds a TCP socket (established, request or time-wait; not a listener)
/// for exactly this ingress packet's 4-tuple: the packet belongs to a real connection even if
/// its flow aged out or predates the agent. Only the peer (or an on-path attacker) knows the
/// 4-tuple of a live connection, so this cannot launder probes. One hash lookup in the
/// kernel's socket table; call it only off the fast path.
///
/// `bpf_skc_lookup_tcp` is available to XDP since Linux 5.2 ("bpf: add skc_lookup_tcp helper"); the
/// lookup's tuple is the packet's own (source = the peer), as for the kernel's receive path.
#[inline(always)]
pub fn kernel_holds_connection(
    ctx: &XdpContext,
    packet: &Packet,
    src: &SourceKey,
    dst: &SourceKey,
) -> bool {
    // SAFETY: a plain-integer union; all zero is valid.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let sport = packet.src_port.to_be();
    let dport = packet.dst_port.to_be();
    let netns = BPF_F_CURRENT_NETNS as u64;
    let sk = if packet.ipv6 {
        tuple.__bindgen_anon_1.ipv6 = Ipv6Tuple {
            saddr: words(src),
            daddr: words(dst),
            sport,
            dport,
        };
        // SAFETY: the helper reads `size_of::<Ipv6Tuple>()` initialised bytes of `tuple`.
        unsafe {
            bpf_skc_lookup_tcp(
                ctx.ctx.cast(),
                &raw mut tuple,
                core::mem::size_of::<Ipv6Tuple>() as u32,
                netns,
                0,
            )
        }
    } else {
        tuple.__bindgen_anon_1.ipv4 = Ipv4Tuple {
            saddr: words(src)[3],
            daddr: words(dst)[3],
            sport,
            dport,
        };
        // SAFETY: as above, with the IPv4 half of the union.
        unsafe {
            bpf_skc_lookup_tcp(
                ctx.ctx.cast(),
                &raw mut tuple,
                core::mem::size_of::<Ipv4Tuple>() as u32,
                netns,
                0,
            )
        }
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket the helper returned; `state` is readable on every socket kind, and the
    // reference is released before returning, as the verifier requires.
    let state = unsafe { (*sk).state };
    // SAFETY: as above.
    unsafe { bpf_sk_release(sk.cast()) };
    // A listener matches any 4-tuple to its port: not a connection.
    state != BPF_TCP_LISTEN
}

/// A socket tuple on an 8-byte boundary of the stack, so the helpers and LLVM's 8-byte
/// stores into it are aligned as the verifier requires.
#[repr(C, align(8))]
struct AlignedTuple(bpf_sock_tuple);

/// True when the kernel holds an *established* TCP socket for this ingress segment's 4-tuple
/// (its lookup is written out beside `kernel_holds_connection`'s rather than shared: one shared
/// function raised the XDP program's verifier work by about 50,000 instructions):
/// the handshake completed, so the peer's address is not forged. A request socket (a SYN
/// answered, no ACK yet) does not count: two forged segments, a SYN and a request, would
/// otherwise pass. One socket-table lookup; call it once per connection, off the fast path.
///
/// The addresses are copied from the packet straight into the tuple with `bpf_xdp_load_bytes`
/// (both the IPv4 and the IPv6 header hold source then destination, as the tuple does), so a
/// caller with its own BPF frame (which cannot derive packet pointers) can call it, and no
/// address is read off the stack.
#[inline(always)]
pub fn kernel_holds_established(ctx: &XdpContext, packet: &Packet) -> bool {
    // SAFETY: a plain-integer union; all zero is valid.
    let mut tuple: AlignedTuple = unsafe { core::mem::zeroed() };
    let raw: *mut xdp_md = ctx.ctx;
    let l3 = u32::from(packet.l3);
    let at = (&raw mut tuple).cast::<c_void>();
    let netns = BPF_F_CURRENT_NETNS as u64;
    let sk = if packet.ipv6 {
        // Source and destination: 32 bytes at offset 8 of the IPv6 header.
        // SAFETY: the helper writes at most 32 bytes at the start of the 36-byte IPv6 tuple.
        if unsafe { bpf_xdp_load_bytes(raw, l3 + 8, at, 32) } != 0 {
            return false;
        }
        tuple.0.__bindgen_anon_1.ipv6.sport = packet.src_port.to_be();
        tuple.0.__bindgen_anon_1.ipv6.dport = packet.dst_port.to_be();
        // SAFETY: the helper reads `size_of::<Ipv6Tuple>()` initialised bytes of `tuple`.
        unsafe {
            bpf_skc_lookup_tcp(
                raw.cast(),
                &raw mut tuple.0,
                core::mem::size_of::<Ipv6Tuple>() as u32,
                netns,
                0,
            )
        }
    } else {
        // Source and destination: 8 bytes at offset 12 of the IPv4 header.
        // SAFETY: the helper writes at most 8 bytes at the start of the 12-byte IPv4 tuple.
        if unsafe { bpf_xdp_load_bytes(raw, l3 + 12, at, 8) } != 0 {
            return false;
        }
        tuple.0.__bindgen_anon_1.ipv4.sport = packet.src_port.to_be();
        tuple.0.__bindgen_anon_1.ipv4.dport = packet.dst_port.to_be();
        // SAFETY: as above, with the IPv4 half of the union.
        unsafe {
            bpf_skc_lookup_tcp(
                raw.cast(),
                &raw mut tuple.0,
                core::mem::size_of::<Ipv4Tuple>() as u32,
                netns,
                0,
            )
        }
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket the helper returned; `state` is readable on every socket kind, and the
    // reference is released before returning, as the verifier requires.
    let state = unsafe { (*sk).state };
    // SAFETY: as above.
    unsafe { bpf_sk_release(sk.cast()) };
    state == BPF_TCP_ESTABLISHED
}

/// An address's four 32-bit words in memory (network) order.
#[inline(always)]
fn words(a: &SourceKey) -> [u32; 4] {
    let b = a.addr;
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}
