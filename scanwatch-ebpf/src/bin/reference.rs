//! Bench-only reference: the least a per-source tracker can do. It parses Ethernet, IPv4 or
//! IPv6 (sources aggregated to their /64, as the product keys them) and the TCP or UDP header
//! when present, then does one LRU lookup keyed by the source and one increment (or one insert
//! for a new source). The benchmark reports each case's cost over the empty program as a ratio
//! to this program's cost over the empty program on the same frame.
//!
//! `scanwatch_reference_spoof` first rewrites the IPv4 source with a random one, as
//! `spoof_bench` does for the product: the reference under the same spoofed storm.
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "per-packet code: inlined like the product's, so the reference pays no BPF-to-BPF calls"
)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::LruHashMap,
    programs::XdpContext,
};
use scanwatch_common::{addr::SourceKey, maps::TRACKER_CAPACITY};
// Links the crate's panic handler.
use scanwatch_ebpf as _;

/// Packets per source; as large as the product's tracker so both evict alike.
#[map]
static REFERENCE_COUNTS: LruHashMap<SourceKey, u64> =
    LruHashMap::with_max_entries(TRACKER_CAPACITY, 0);

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Offset of the IPv4 source address in an untagged Ethernet frame.
const IPV4_SRC: usize = ETH_LEN + 12;

/// A pointer to a `T` at `offset`, if the packet holds it (the aya book's `ptr_at`).
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const T)
}

/// The source key of an Ethernet/IPv4 or /IPv6 frame whose TCP or UDP header (if any) is whole.
#[inline(always)]
fn source(ctx: &XdpContext) -> Option<SourceKey> {
    // SAFETY (all reads): `ptr_at` checked each range against data_end.
    let ethertype = u16::from_be(unsafe { *ptr_at::<u16>(ctx, 12)? });
    let (key, proto, l4) = match ethertype {
        ETH_P_IP => {
            let vihl: u8 = unsafe { *ptr_at(ctx, ETH_LEN)? };
            let proto: u8 = unsafe { *ptr_at(ctx, ETH_LEN + 9)? };
            let src: [u8; 4] = unsafe { *ptr_at(ctx, IPV4_SRC)? };
            let ihl = usize::from(vihl & 0x0f) * 4;
            (SourceKey::from_ipv4(src), proto, ETH_LEN + ihl)
        }
        ETH_P_IPV6 => {
            let proto: u8 = unsafe { *ptr_at(ctx, ETH_LEN + 6)? };
            let prefix: [u8; 8] = unsafe { *ptr_at(ctx, ETH_LEN + 8)? };
            let mut addr = [0u8; 16];
            addr[..8].copy_from_slice(&prefix);
            (SourceKey { addr }, proto, ETH_LEN + 40)
        }
        _ => return None,
    };
    match proto {
        IPPROTO_TCP => {
            ptr_at::<[u8; 20]>(ctx, l4)?;
        }
        IPPROTO_UDP => {
            ptr_at::<[u8; 8]>(ctx, l4)?;
        }
        _ => {}
    }
    Some(key)
}

/// One lookup and one increment, or one insert.
#[inline(always)]
fn count(ctx: &XdpContext) -> u32 {
    if let Some(key) = source(ctx) {
        if let Some(n) = REFERENCE_COUNTS.get_ptr_mut(key) {
            // SAFETY: the map returned a valid pointer to this entry's value.
            unsafe { *n += 1 };
        } else {
            let _ = REFERENCE_COUNTS.insert(key, 1, 0);
        }
    }
    xdp_action::XDP_PASS
}

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
pub fn scanwatch_reference(ctx: XdpContext) -> u32 {
    count(&ctx)
}

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
pub fn scanwatch_reference_spoof(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + IPV4_SRC + 4 <= ctx.data_end() {
        let src = (start + IPV4_SRC) as *mut [u8; 4];
        // SAFETY: bounds checked against data_end above.
        unsafe { *src = bpf_get_prandom_u32().to_ne_bytes() };
    }
    count(&ctx)
}

scanwatch_ebpf::program_name!(scanwatch_reference, scanwatch_common::programs::REFERENCE);
scanwatch_ebpf::program_name!(
    scanwatch_reference_spoof,
    scanwatch_common::programs::REFERENCE_SPOOF
);

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
