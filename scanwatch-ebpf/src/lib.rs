//! The scanwatch XDP data path: parse a packet once into a [`parse::Packet`], count it, drop it
//! if drop mode is on and its source is blocked, and, if it is a probe, update its source's
//! state in the tracker. Every other packet passes.
#![no_std]

pub mod block;
pub mod maps;
pub mod parse;
pub mod stats;
pub mod track;

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use scanwatch_common::{
    classify::PacketClass,
    config::FLAG_DROP,
    stats::{Counter, parse_error_slot},
};

/// Handles one packet and returns its verdict.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> u32 {
    match parse::parse(ctx) {
        Ok(packet) => {
            stats::bump_class(packet.class);
            if packet.class == PacketClass::NonIp {
                return xdp_action::XDP_PASS;
            }
            let Some(config) = maps::CONFIG.get(0) else {
                stats::count(Counter::ConfigMissing);
                return xdp_action::XDP_PASS;
            };
            if config.flags & FLAG_DROP != 0 && block::is_blocked(ctx, &packet, config) {
                return xdp_action::XDP_DROP;
            }
            if packet.class.is_probe() {
                track::record(ctx, &packet, config);
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
