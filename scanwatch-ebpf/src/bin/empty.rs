//! Bench-only baselines: an XDP program that returns XDP_PASS and a TC program that returns
//! TC_ACT_UNSPEC, doing nothing else. Benchmarks
//! report every case as a ratio to this program measured in the same run.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
// Links the crate's panic handler.
use scanwatch_ebpf as _;

#[xdp]
pub fn scanwatch_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The TC baseline: lets the packet go on.
#[classifier]
pub fn scanwatch_empty_tc(_ctx: TcContext) -> i32 {
    scanwatch_ebpf::TC_ACT_UNSPEC
}

scanwatch_ebpf::program_name!(scanwatch_empty, scanwatch_common::programs::EMPTY);
scanwatch_ebpf::program_name!(scanwatch_empty_tc, scanwatch_common::programs::EMPTY_TC);

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
