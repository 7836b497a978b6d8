//! Entry points of the scanwatch programs: XDP on ingress, TC (clsact/tcx) on egress.
#![no_std]
#![no_main]

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
pub fn scanwatch(ctx: XdpContext) -> u32 {
    scanwatch_ebpf::handle(&ctx)
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
pub fn scanwatch_egress(ctx: TcContext) -> i32 {
    scanwatch_ebpf::handle_egress(&ctx)
}

scanwatch_ebpf::program_name!(scanwatch, programs::XDP);
scanwatch_ebpf::program_name!(scanwatch_egress, programs::EGRESS);

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
