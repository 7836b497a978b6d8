//! Bench-only program: before handling the packet it overwrites the IPv4 source address (of an
//! untagged Ethernet/IPv4 frame) with a random one. BPF_PROG_TEST_RUN reuses the same buffer
//! for every repetition, so one call replays a storm of spoofed sources.
#![no_std]
#![no_main]

use aya_ebpf::{helpers::bpf_get_prandom_u32, macros::xdp, programs::XdpContext};

/// Offset of the IPv4 source address in an untagged Ethernet frame.
const IPV4_SRC: usize = 14 + 12;

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the program macro hands the context over by value"
)]
pub fn scanwatch_spoof_bench(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + IPV4_SRC + 4 <= ctx.data_end() {
        let src = (start + IPV4_SRC) as *mut [u8; 4];
        // SAFETY: bounds checked against data_end above.
        unsafe { *src = bpf_get_prandom_u32().to_ne_bytes() };
    }
    scanwatch_ebpf::handle(&ctx)
}

scanwatch_ebpf::program_name!(
    scanwatch_spoof_bench,
    scanwatch_common::programs::SPOOF_BENCH
);

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
