//! Entry points of the scanwatch programs: XDP on ingress, TC (clsact/tcx) on egress.
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "the program functions are inlined into their entries: with two XDP programs in the object LLVM left the product's a BPF-to-BPF call (7 ns per packet)"
)]

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use scanwatch_common::programs;

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
#[inline(always)]
pub fn scanwatch(ctx: XdpContext) -> u32 {
    scanwatch_ebpf::handle(&ctx)
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
#[inline(always)]
pub fn scanwatch_egress(ctx: TcContext) -> i32 {
    scanwatch_ebpf::handle_egress(&ctx)
}

/// Never attached: the daemon test-runs it to calibrate the data path's clock
/// (`scanwatch_common::ticks`).
#[xdp]
pub fn scanwatch_clock(_ctx: XdpContext) -> u32 {
    scanwatch_ebpf::clock::write_sample();
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

scanwatch_ebpf::program_name!(scanwatch, programs::XDP);
scanwatch_ebpf::program_name!(scanwatch_clock, programs::CLOCK);
scanwatch_ebpf::program_name!(scanwatch_egress, programs::EGRESS);

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
