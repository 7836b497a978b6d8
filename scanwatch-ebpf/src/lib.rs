//! The scanwatch XDP data path: parse a packet once into a [`parse::Packet`], count it, and, if
//! it is a probe, update its source's state in the tracker. Every packet passes.
#![no_std]

pub mod maps;
pub mod parse;
pub mod stats;
pub mod track;

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use scanwatch_common::{classify::PacketClass, stats::parse_error_slot};

/// Handles one packet and returns its verdict.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> u32 {
    match parse::parse(ctx) {
        Ok(packet) => {
            stats::bump_class(packet.class);
            if packet.class.is_probe() {
                track::record(ctx, &packet);
            }
        }
        Err(reason) => {
            stats::bump_class(PacketClass::Malformed);
            stats::bump(parse_error_slot(reason));
        }
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
