//! The scanwatch data path.
//!
//! Ingress (XDP, [`handle`]): parse a packet once into a [`parse::Packet`], count it, drop it if
//! drop mode is on and its source is blocked, recognise replies to the host's own flows (never
//! probes), note failed outbound attempts for egress detection, and track probes per source.
//! Established TCP to a web port may carry a connection's first HTTP request: sampled for the
//! daemon's scanner signatures (`web`). Every other packet passes.
//!
//! Egress (TC, [`handle_egress`]): record the host's outbound flows and count the probes it
//! sends. Never changes a packet.
#![no_std]
// LLVM's atomic add (`atomic`), which the BPF target offers only as an intrinsic.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
#![expect(
    clippy::inline_always,
    reason = "per-packet code: inlining keeps BPF-to-BPF calls and verifier work down; functions that need their own stack frame say #[inline(never)]"
)]

pub mod atomic;
pub mod block;
pub mod clock;
pub mod distributed;
pub mod egress;
pub mod event;
pub mod evidence;
pub mod flows;
pub mod level;
pub mod maps;
pub mod owner;
pub mod parse;
pub mod sample;
pub mod stats;
pub mod track;
pub mod web;
pub mod wide;

use aya_ebpf::{
    bindings::xdp_action,
    programs::{TcContext, XdpContext},
};
use scanwatch_common::{
    classify::PacketClass,
    config::{FLAG_DROP, FLAG_NO_EGRESS, KernelConfig},
    evidence::{HOPS_UNKNOWN, hops_from_ttl},
    owner::Sender,
    proto::{IPPROTO_UDP, tcp_flags},
    stats::{Counter, ParseError, parse_error_slot},
};

use crate::parse::Packet;

/// Checks at compile time that program function `$program` exists and that its name, which
/// aya-ebpf's program macros give the program, is `$name` (a `scanwatch_common::programs`
/// constant the loader and tests use).
#[macro_export]
macro_rules! program_name {
    ($program:ident, $name:expr) => {
        const _: () = {
            let _ = $program;
            assert!(
                ::scanwatch_common::programs::same_name(stringify!($program), $name),
                concat!(
                    "program `",
                    stringify!($program),
                    "` is not named as in scanwatch_common::programs"
                )
            );
        };
    };
}

/// `TC_ACT_UNSPEC` (and tcx's `TCX_NEXT`): let the next filter or program decide, so a foreign
/// clsact filter behind ours still runs.
pub const TC_ACT_UNSPEC: i32 = -1;

/// Handles one ingress packet and returns its XDP verdict.
///
/// The block check needs only the source address: it runs whenever the network header was
/// read, even when a later header is malformed, so nothing after the network header can carry
/// a blocked source past it. Unblocked sources always pass.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> u32 {
    let mut packet = Packet::new();
    let packet = &mut packet;
    let parsed = parse::parse(ctx, packet);
    match parsed {
        Ok(()) => stats::bump_class(packet.class),
        Err(reason) => {
            stats::bump_class(PacketClass::Malformed);
            stats::bump(parse_error_slot(reason));
        }
    }
    // `NonIp` here: no network header (not IP, or cut before the source address).
    if packet.class == PacketClass::NonIp {
        return xdp_action::XDP_PASS;
    }
    let Some(config) = maps::CONFIG.get(0) else {
        stats::count(Counter::ConfigMissing);
        return xdp_action::XDP_PASS;
    };
    let drop_mode = config.flags & FLAG_DROP != 0;
    if drop_mode && block::is_blocked(ctx, packet, config) {
        return xdp_action::XDP_DROP;
    }
    if packet.class == PacketClass::TcpEstablished {
        // A segment to a web port may carry a connection's first request (`web`). Only with
        // PSH: a sender sets it on the segment that ends a write, so a request that fits one
        // segment carries it, while a client's bare ACKs (most segments to a server) never do.
        // The port test first: with the PSH test first, LLVM's branch layout more than doubled
        // the verifier's work on the spoof-bench program (over the 1M-instruction limit).
        if config.is_web_port(packet.dst_port)
            && packet.tcp_flags & tcp_flags::PSH != 0
            && let Some((client, server)) = packet.addrs(ctx)
        {
            web::on_segment(ctx, packet, &web::Segment { client, server }, config);
        }
        // A bare ACK (ECN bits aside) may complete a handshake of ours: proof of its source.
        if drop_mode && packet.tcp_flags & TCP_FLAGS_NO_ECN == tcp_flags::ACK {
            evidence::verify_handshake(ctx, packet, config);
        }
        return xdp_action::XDP_PASS;
    }
    match parsed {
        Ok(()) => inspect(ctx, packet, config),
        // More extension headers than the walk follows hide the L4 header from every filter
        // that walks as far as we do: an evasion probe, counted like a tiny first fragment.
        Err(ParseError::Ipv6ExtChainTooLong) => {
            packet.class = PacketClass::Fragment;
            inspect(ctx, packet, config);
        }
        Err(_) => {}
    }
    xdp_action::XDP_PASS
}

/// The TCP flags but ECE and CWR.
const TCP_FLAGS_NO_ECN: u8 = !(tcp_flags::ECE | tcp_flags::CWR);

/// Ingress after the drop check: replies, failures, probes.
#[inline(always)]
fn inspect(ctx: &XdpContext, packet: &Packet, config: &KernelConfig) {
    if !(packet.class.is_probe()
        || packet.class == PacketClass::TcpOther
        || packet.class == PacketClass::IcmpOther)
    {
        return;
    }
    let Some((src, dst)) = packet.addrs(ctx) else {
        return;
    };
    let drop_mode = config.flags & FLAG_DROP != 0;
    // The hop count of probes, in drop mode only (compared with a verified source's).
    let hops = if drop_mode && packet.class.is_probe() {
        packet.ttl(ctx).map_or(HOPS_UNKNOWN, hops_from_ttl)
    } else {
        HOPS_UNKNOWN
    };
    let addrs = track::Addrs {
        src,
        dst,
        hops,
        now: 0,
    };
    match packet.class {
        // A SYN or an ICMP request opens a flow; it never answers one of ours.
        PacketClass::TcpSyn
        | PacketClass::IcmpEcho
        | PacketClass::IcmpTimestamp
        | PacketClass::IcmpAddrMask
        | PacketClass::Fragment
        | PacketClass::IpProtocol
        | PacketClass::SctpInit
        | PacketClass::SctpCookieEcho => track::record(ctx, packet, &addrs, config),
        PacketClass::Udp
        | PacketClass::TcpFin
        | PacketClass::TcpNull
        | PacketClass::TcpXmas
        | PacketClass::TcpMaimon
        | PacketClass::TcpOddFlags => {
            let now = clock::now(config);
            if flows::is_reply(packet, &src, &dst, config, now) {
                if packet.proto == IPPROTO_UDP {
                    stats::count(Counter::RepliesUdp);
                    if drop_mode {
                        evidence::note_answer(&track::source_key(&src, packet.ipv6, config), now);
                    }
                } else {
                    stats::count(Counter::RepliesTcp);
                }
                return;
            }
            if packet.class == PacketClass::TcpMaimon
                && flows::kernel_holds_connection(ctx, packet, &src, &dst)
            {
                // FIN|ACK of a connection older than its flow (or the agent): a close.
                stats::count(Counter::ConnectionCloses);
                return;
            }
            if packet.proto == IPPROTO_UDP {
                flows::note_inbound(packet, &src, &dst, now);
            }
            track::record(ctx, packet, &track::Addrs { now, ..addrs }, config);
        }
        PacketClass::TcpOther => {
            let f = packet.tcp_flags;
            let rst = f & tcp_flags::RST != 0;
            let syn_ack = f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK;
            if !(rst || syn_ack) {
                return;
            }
            let now = clock::now(config);
            if let Some(flow) = flows::reply_flow(packet, &src, &dst, config, now) {
                stats::count(Counter::RepliesTcp);
                if syn_ack {
                    flow.answered = 1;
                    if drop_mode {
                        evidence::note_answer(&track::source_key(&src, packet.ipv6, config), now);
                    }
                    return;
                }
                // A RST to a SYN that was never answered is a failed attempt (Zeek's notion);
                // after a SYN-ACK it only closes a connection that was made.
                if flow.answered == 0 && config.flags & FLAG_NO_EGRESS == 0 {
                    let failure = egress::Failure {
                        local: dst,
                        remote: src,
                        remote_port: packet.src_port,
                        proto: packet.proto,
                        ifindex: ingress_ifindex(ctx),
                    };
                    owner::hold(flow.sender);
                    egress::on_failure(&failure, config, now);
                }
            }
        }
        PacketClass::IcmpOther => {
            let Some(q) = packet.quoted(ctx) else {
                return;
            };
            let now = clock::now(config);
            if let Some(sender) = flows::quoted_flow(&q, config, now) {
                // Every error quoting our flow is a reply; only those meaning the destination
                // cannot be reached are failed attempts (scanwatch_common::icmp): path MTU,
                // time exceeded and redirects come from any router on the way.
                stats::count(Counter::RepliesIcmp);
                if q.failure && config.flags & FLAG_NO_EGRESS == 0 {
                    let failure = egress::Failure {
                        local: q.src,
                        remote: q.dst,
                        remote_port: q.dst_port,
                        proto: q.proto,
                        ifindex: ingress_ifindex(ctx),
                    };
                    owner::hold(sender);
                    egress::on_failure(&failure, config, now);
                }
            }
        }
        _ => {}
    }
}

#[inline(always)]
fn ingress_ifindex(ctx: &XdpContext) -> u32 {
    // SAFETY: reading a field of the context the kernel passed in.
    unsafe { (*ctx.ctx).ingress_ifindex }
}

/// Handles one egress packet (TC); never changes or drops it.
#[inline(always)]
pub fn handle_egress(ctx: &TcContext) -> i32 {
    stats::count(Counter::EgressPackets);
    let mut packet = Packet::new();
    let packet = &mut packet;
    if parse::parse(ctx, packet).is_err() {
        stats::count(Counter::EgressParseErrors);
        return TC_ACT_UNSPEC;
    }
    if packet.class == PacketClass::NonIp || packet.class == PacketClass::TcpEstablished {
        return TC_ACT_UNSPEC;
    }
    let Some(config) = maps::CONFIG.get(0) else {
        return TC_ACT_UNSPEC;
    };
    let Some((src, dst)) = packet.addrs(ctx) else {
        return TC_ACT_UNSPEC;
    };
    let now = clock::now(config);
    // A bare RST (no ACK) is how the host answers a segment with ACK that belongs to no
    // connection (RFC 9293 §3.10.7.1): the answer to an ACK or window scan (nmap -sA, -sW),
    // whose ACKs took the fast path at XDP. The remote is the scanner, unless the RST ends a
    // connection the host opened or accepted (the peer still sent after the close).
    let flags =
        packet.tcp_flags & (tcp_flags::RST | tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN);
    if packet.class == PacketClass::TcpOther
        && flags == tcp_flags::RST
        && flows::resets_own_connection(packet, &src, &dst, config, now)
    {
        stats::count(Counter::OwnConnectionResets);
    } else if packet.class == PacketClass::TcpOther && flags == tcp_flags::RST {
        let reset = track::Reset {
            remote: dst,
            local: src,
            local_port: packet.src_port,
            ipv6: packet.ipv6,
            // SAFETY: reading a field of the skb the kernel passed in.
            ifindex: unsafe { (*ctx.skb.skb).ifindex },
            now,
        };
        track::record_ack_reset(&reset, config);
    }
    // A SYN-ACK we send: a connection we accept, whose later bare RSTs are our own.
    if packet.class == PacketClass::TcpOther && flags == tcp_flags::SYN | tcp_flags::ACK {
        flows::note_accepted(packet, &src, &dst, config, now);
    }
    // Drop mode: a SYN-ACK we send, so the ACK completing it can prove its remote's address.
    if config.flags & FLAG_DROP != 0
        && packet.class == PacketClass::TcpOther
        && packet.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN)
            == tcp_flags::SYN | tcp_flags::ACK
        && let Some((seq, _)) = packet.tcp_seq_ack(ctx)
    {
        evidence::note_syn_ack(packet, &src, &dst, seq);
    }
    // A SYN-ACK or a UDP datagram we send: the local host serves that port, so its probes do
    // not make a distributed sweep of the port, nor the port a distributed scan of the host.
    if (config.distributed_hosts != 0 || distributed::per_target_on(config))
        && (packet.class == PacketClass::Udp
            || packet.class == PacketClass::TcpOther
                && packet.tcp_flags
                    & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST | tcp_flags::FIN)
                    == tcp_flags::SYN | tcp_flags::ACK)
    {
        let served = distributed::Served {
            local: src,
            remote: track::source_key(&dst, packet.ipv6, config),
            proto: packet.proto,
            local_port: packet.src_port,
        };
        distributed::note_served(&served, config);
    }
    // The socket is read only for what keeps it: a flow's opener (not an answer), or a probe
    // egress counts by itself.
    let counted = egress::kind_of(packet.class).is_some();
    let sender = if flows::opens_flow(packet.class) {
        flows::record_outbound(packet, &src, &dst, ctx, config, now)
    } else if counted {
        owner::noted(ctx, packet.l3)
    } else {
        Sender::NONE
    };
    if counted && config.flags & FLAG_NO_EGRESS == 0 {
        // SAFETY: reading a field of the skb the kernel passed in.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        let sent = egress::Sent {
            class: packet.class,
            local: src,
            remote: dst,
            remote_port: packet.dst_port,
            ifindex,
        };
        owner::hold(sender);
        egress::on_outbound(&sent, config, now);
    }
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
