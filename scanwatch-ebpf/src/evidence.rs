//! Drop mode's evidence that a remote's address is real (`scanwatch_common::evidence`): remotes
//! that answered our flows, and remotes that completed a TCP handshake, with their hop count.
//! Called only when `FLAG_DROP` is set: monitor mode pays nothing.

use aya_ebpf::programs::XdpContext;
use scanwatch_common::{
    addr::SourceKey,
    config::KernelConfig,
    evidence::{ANSWER_REFRESH_NS, Verified, hint_slot, hops_from_ttl},
    proto::IPPROTO_TCP,
    stats::Counter,
};

use crate::{
    clock::now,
    flows,
    maps::{ANSWERED, HANDSHAKE_HINTS, HANDSHAKES, VERIFIED},
    parse::Packet,
    stats::count,
    track::source_key,
};

/// Notes that the remote `key` (a tracker key) answered one of our flows at `now`. A lookup per
/// answer; a write only when the stored time is older than `ANSWER_REFRESH_NS`.
#[inline(always)]
pub fn note_answer(key: &SourceKey, now: u64) {
    if let Some(seen) = ANSWERED.get_ptr_mut(key) {
        // SAFETY: pointer into the map value, valid for this run.
        let seen = unsafe { &mut *seen };
        if now.wrapping_sub(*seen) >= ANSWER_REFRESH_NS {
            *seen = now;
        }
        return;
    }
    let _ = ANSWERED.insert(key, now, 0);
}

/// Notes a SYN-ACK this host sends from `src` (local) to `dst` with sequence number `seq`: the
/// ACK completing it carries `seq + 1`.
#[inline(always)]
pub fn note_syn_ack(packet: &Packet, src: &SourceKey, dst: &SourceKey, seq: u32) {
    let expected = seq.wrapping_add(1);
    if expected == 0 {
        // 0 marks an empty hint slot; one ISN in 2^32 goes unverified.
        return;
    }
    let k = flows::key(IPPROTO_TCP, *src, *dst, packet.src_port, packet.dst_port);
    if HANDSHAKES.insert(k, expected, 0).is_ok() {
        if let Some(hint) = HANDSHAKE_HINTS.get_ptr_mut(hint_slot(expected)) {
            // SAFETY: pointer into the array's value, valid for this run.
            unsafe { *hint = expected };
        }
        count(Counter::HandshakesNoted);
    }
}

/// Checks an ACK segment against the SYN-ACKs we sent: when it acknowledges one exactly, its
/// source has proven its address; `VERIFIED` remembers it with its hop count. An ACK whose
/// number is not in its hint slot (every established segment, nearly always) costs the two
/// packet loads and one array lookup, which the verifier inlines.
#[inline(always)]
pub fn verify_handshake(ctx: &XdpContext, packet: &Packet, config: &KernelConfig) {
    let Some((_, ack)) = packet.tcp_seq_ack(ctx) else {
        return;
    };
    if ack == 0 {
        return;
    }
    let Some(hint) = HANDSHAKE_HINTS.get_ptr_mut(hint_slot(ack)) else {
        return;
    };
    // SAFETY: pointer into the array's value, valid for this run.
    if unsafe { *hint } != ack {
        return;
    }
    let (Some((src, dst)), Some(ttl)) = (packet.addrs(ctx), packet.ttl(ctx)) else {
        return;
    };
    let k = flows::key(IPPROTO_TCP, dst, src, packet.dst_port, packet.src_port);
    let Some(expected) = HANDSHAKES.get_ptr(k) else {
        return;
    };
    // SAFETY: pointer into the map value, valid for this run.
    if unsafe { *expected } != ack {
        return;
    }
    let _ = HANDSHAKES.remove(k);
    // SAFETY: as above.
    unsafe { *hint = 0 };
    let verified = Verified {
        verified_ns: now(config),
        hops: u32::from(hops_from_ttl(ttl)),
        reserved: 0,
    };
    let _ = VERIFIED.insert(source_key(&src, packet.ipv6, config), verified, 0);
    count(Counter::HandshakesVerified);
}
