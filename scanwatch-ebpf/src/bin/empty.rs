//! Bench-only baseline: an XDP program that returns XDP_PASS and does nothing else. Benchmarks
//! report every case as a ratio to this program measured in the same run.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
// Links the crate's panic handler.
use scanwatch_ebpf as _;

#[xdp]
pub fn scanwatch_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
