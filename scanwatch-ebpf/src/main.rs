//! Entry point of the scanwatch XDP program.
#![no_std]
#![no_main]

use aya_ebpf::{macros::xdp, programs::XdpContext};

#[xdp]
pub fn scanwatch(ctx: XdpContext) -> u32 {
    scanwatch_ebpf::handle(&ctx)
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
