//! Web-scanner sampling (`scanwatch_common::web`): the first HTTP request of each connection to
//! a configured web port is copied, bounded, into `WEB_SAMPLES` for the daemon to match against
//! its signature list. Matching runs in user space; the kernel only decides *which* segment to
//! copy, so the per-packet cost stays a port compare for every other established segment.
//!
//! Only a request on a connection the kernel holds established is sampled (one socket lookup,
//! once per connection): its client completed a handshake, so its address is not forged. A
//! lone forged segment, whatever its user agent, gives no sample, no finding and no block, and
//! a flood of them cannot fill the ring that real requests need.
//!
//! Reads go through `bpf_xdp_load_bytes` (Linux >= 5.18, the multi-buffer XDP helpers): this function
//! has its own BPF stack frame, and a non-inlined function cannot derive packet pointers from
//! the context (see `track::Addrs`); the helper needs only the context.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, xdp_md},
    cty::c_void,
    helpers::bpf_xdp_load_bytes,
    programs::XdpContext,
};
use scanwatch_common::{
    addr::SourceKey,
    config::{FLAG_REPLAY, KernelConfig},
    maps::WEB_SAMPLES_BYTES,
    proto::IPPROTO_TCP,
    stats::Counter,
    web::{WEB_SAMPLE_BYTES, WebConnection, WebSample, is_http_method},
};

use crate::{
    clock, flows,
    maps::{WEB_SAMPLES, WEB_SEEN},
    parse::Packet,
    stats::count,
};

/// Unread bytes in `WEB_SAMPLES` past which a sample wakes the daemon (a quarter of the ring).
const WAKEUP_BYTES: u64 = WEB_SAMPLES_BYTES as u64 / 4;

/// The segment's addresses, read from the packet by the inlined caller.
#[derive(Clone, Copy)]
pub struct Segment {
    pub client: SourceKey,
    pub server: SourceKey,
}

/// A read buffer on an 8-byte boundary of the stack: LLVM may access a byte array with 8-byte
/// loads, which the verifier refuses at a 4-aligned stack slot.
#[repr(C, align(8))]
struct Aligned<const N: usize>([u8; N]);

/// Reads `N` bytes at `offset` of the packet; `None` past its end.
#[inline(always)]
fn read<const N: usize>(ctx: *mut xdp_md, offset: u32) -> Option<[u8; N]> {
    let mut buf = Aligned([0u8; N]);
    // SAFETY: the helper writes at most N bytes into `buf`, which holds N.
    let r =
        unsafe { bpf_xdp_load_bytes(ctx, offset, buf.0.as_mut_ptr().cast::<c_void>(), N as u32) };
    (r == 0).then_some(buf.0)
}

/// Where a TCP segment's payload starts and how long it is (by the IP header's lengths, so
/// Ethernet padding never counts); `None` for IPv6 behind extension headers (not sampled).
#[inline(always)]
fn payload(ctx: *mut xdp_md, packet: &Packet) -> Option<(u32, u32)> {
    let l3 = u32::from(packet.l3);
    let (l4, ip_end) = if packet.ipv6 {
        // Payload length at 4..6, next header at 6.
        let [_, _, _, _, len_hi, len_lo, next, _] = read::<8>(ctx, l3)?;
        if next != IPPROTO_TCP {
            return None;
        }
        (
            l3 + 40,
            l3 + 40 + u32::from(u16::from_be_bytes([len_hi, len_lo])),
        )
    } else {
        let [ver_ihl, _, len_hi, len_lo] = read::<4>(ctx, l3)?;
        (
            l3 + u32::from(ver_ihl & 0x0f) * 4,
            l3 + u32::from(u16::from_be_bytes([len_hi, len_lo])),
        )
    };
    let [doff, _] = read::<2>(ctx, l4 + 12)?;
    let start = l4 + u32::from(doff >> 4) * 4;
    Some((start, ip_end.checked_sub(start)?))
}

/// An inbound TCP segment without SYN, FIN or RST to a web port: if it carries the first
/// request of a connection not sampled in this window, copy its first bytes to `WEB_SAMPLES`.
#[inline(never)] // own BPF stack frame, and the verifier walks it once for every caller state
pub fn on_segment(ctx: &XdpContext, packet: &Packet, segment: &Segment, config: &KernelConfig) {
    let raw = ctx.ctx;
    let Some((start, len)) = payload(raw, packet) else {
        return;
    };
    if len < 4 {
        return;
    }
    let Some(first) = read::<4>(raw, start) else {
        return;
    };
    if !is_http_method(first) {
        return;
    }
    let key = WebConnection {
        local: segment.server,
        remote: segment.client,
        local_port: packet.dst_port,
        remote_port: packet.src_port,
        proto: u32::from(IPPROTO_TCP),
    };
    let now = clock::now(config);
    // SAFETY: a plain read of the value the kernel returned; no reference outlives the call.
    if let Some(sampled) = unsafe { WEB_SEEN.get(key) }
        && now.wrapping_sub(*sampled) < config.window()
    {
        return;
    }
    if config.flags & FLAG_REPLAY == 0 && !flows::kernel_holds_established(ctx, packet) {
        count(Counter::WebUnconnected);
        return;
    }
    let Some(mut entry) = WEB_SAMPLES.reserve::<WebSample>(0) else {
        // Not marked as sampled: the connection's next request tries again.
        count(Counter::WebSamplesDropped);
        return;
    };
    let e = entry.as_mut_ptr();
    // Bounded for the verifier: 1..=WEB_SAMPLE_BYTES (len >= 4 above).
    let copy = if len > WEB_SAMPLE_BYTES as u32 {
        WEB_SAMPLE_BYTES as u32
    } else {
        len
    };
    // SAFETY: `e` points to a reserved ring slot of WebSample size; the helper writes at most
    // `copy` <= WEB_SAMPLE_BYTES bytes into `data`, and every other field is written before
    // submit.
    let loaded = unsafe {
        bpf_xdp_load_bytes(
            raw,
            start,
            core::ptr::addr_of_mut!((*e).data).cast::<c_void>(),
            copy,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        return;
    }
    // SAFETY: as above.
    unsafe {
        (*e).timestamp_ns = now;
        (*e).source = segment.client;
        (*e).target = segment.server;
        (*e).source_port = packet.src_port;
        (*e).target_port = packet.dst_port;
        (*e).ifindex = (*raw).ingress_ifindex;
        (*e).len = copy as u16;
        (*e).ipv6 = u8::from(packet.ipv6);
        (*e).reserved = [0; 5];
    }
    // No wakeup per sample: in a VM the wakeup (an irq_work self-IPI) costs ~5.6 µs, eight
    // times the rest of the sample (bench `web_request_new_connection`). The daemon drains
    // the ring on a short tick, and is woken when a burst fills a quarter of it.
    let wakeup = if WEB_SAMPLES.query(u64::from(BPF_RB_AVAIL_DATA)) >= WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(u64::from(wakeup));
    count(Counter::WebSamples);
    let _ = WEB_SEEN.insert(key, now, 0);
}
