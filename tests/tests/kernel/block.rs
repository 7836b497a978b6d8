//! Drop mode: blocked sources are dropped whatever follows their network header; expired
//! blocks pass; CIDR and /64 blocks match; each reason (crowdsec too) counts its own drops; the
//! presence bitmap never hides a block.

use std::net::{Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    addr::SourceKey,
    block::{BLOCK_NOTE_LEN, BlockEntry, BlockReason},
    classify::PacketClass,
    config::{FLAG_DROP, FLAG_NO_ADMISSION, KernelConfig},
    stats::{Counter, ParseError},
};
use scanwatch_tests::{
    harness::{Harness, XDP_DROP, XDP_PASS},
    packet::{Ext, PacketBuilder},
};

use crate::{SCANNER_V4, SCANNER_V6, T0, TARGET_V4, TARGET_V6, key_of, load_with, state_of};

fn drop_mode() -> KernelConfig {
    KernelConfig {
        flags: FLAG_DROP | FLAG_NO_ADMISSION,
        clock_override_ns: T0,
        ..KernelConfig::default()
    }
}

fn entry(reason: BlockReason, expires_ns: u64) -> BlockEntry {
    BlockEntry {
        added_ns: 1,
        expires_ns,
        packets: 0,
        bytes: 0,
        reason: reason as u32,
        offenses: 1,
        note: [0; BLOCK_NOTE_LEN],
    }
}

fn v4_prefix(a: [u8; 4], len: u32) -> ([u8; 16], u32) {
    (SourceKey::from_ipv4(a).addr, 96 + len)
}

/// Frames whose headers after the network header are broken: truncated TCP and UDP, a bad
/// TCP data offset, an IPv6 chain longer than the walk.
fn broken_frames(src_v4: Ipv4Addr, src_v6: Ipv6Addr) -> Vec<(&'static str, Vec<u8>)> {
    let mut long_chain = PacketBuilder::new(src_v6, TARGET_V6);
    for _ in 0..12 {
        long_chain = long_chain.ext(Ext::DestOpts);
    }
    let mut bad_offset = PacketBuilder::new(src_v4, TARGET_V4).syn(80).build();
    let tcp = PacketBuilder::new(src_v4, TARGET_V4).l4_offset();
    bad_offset[tcp + 12] = 0x20;
    vec![
        (
            "truncated TCP",
            PacketBuilder::new(src_v4, TARGET_V4)
                .syn(80)
                .l4_len(10)
                .build(),
        ),
        (
            "truncated UDP (IPv6)",
            PacketBuilder::new(src_v6, TARGET_V6)
                .udp(53)
                .l4_len(4)
                .build(),
        ),
        ("bad TCP data offset", bad_offset),
        ("over-long IPv6 chain", long_chain.syn(80).build()),
    ]
}

fn block_scanners(h: &mut Harness) {
    let e = entry(BlockReason::Detection, 0);
    h.block_source(&key_of(SCANNER_V4), &e).unwrap();
    h.block_source(&key_of(SCANNER_V6), &e).unwrap();
}

#[test]
fn drops_blocked_source_whatever_follows_its_network_header() {
    let mut h = load_with(&drop_mode());
    block_scanners(&mut h);
    // Another address of the blocked /64 too.
    let sibling = Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0, 0xdead, 0, 0, 1);
    for src_v6 in [SCANNER_V6, sibling] {
        for (what, frame) in broken_frames(SCANNER_V4, src_v6) {
            let drops = h.counter(Counter::VerdictDrop).unwrap();
            assert_eq!(h.run(&frame).unwrap(), XDP_DROP, "{what} from {src_v6}");
            assert_eq!(
                h.counter(Counter::VerdictDrop).unwrap(),
                drops + 1,
                "{what}"
            );
        }
    }
    assert_eq!(
        h.tracked_count().unwrap(),
        0,
        "dropped packets are not tracked"
    );
}

#[test]
fn broken_packets_from_unblocked_sources_pass_and_are_counted() {
    let mut h = load_with(&drop_mode());
    block_scanners(&mut h);
    let other_v4 = Ipv4Addr::new(203, 0, 113, 9);
    let other_v6 = Ipv6Addr::new(0x2001, 0xdb8, 0xbeef, 0, 0, 0, 0, 9);
    for (what, frame) in broken_frames(other_v4, other_v6) {
        let malformed = h.class_count(PacketClass::Malformed).unwrap();
        assert_eq!(h.run(&frame).unwrap(), XDP_PASS, "{what}");
        assert_eq!(
            h.class_count(PacketClass::Malformed).unwrap(),
            malformed + 1,
            "{what}"
        );
    }
    assert_eq!(h.parse_errors(ParseError::Ipv6ExtChainTooLong).unwrap(), 1);
    // The over-long chain is tracked as a probe of its source.
    let state = state_of(&h, &key_of(other_v6));
    assert_eq!(state.probes[PacketClass::Fragment as usize], 1);
    assert_eq!(h.counter(Counter::VerdictDrop).unwrap(), 0);
}

#[test]
fn expired_blocks_pass() {
    let mut h = load_with(&drop_mode());
    let expired = entry(BlockReason::Detection, T0 - 1);
    h.block_source(&key_of(SCANNER_V4), &expired).unwrap();
    let (addr, len) = v4_prefix([198, 51, 100, 0], 24);
    h.block_prefix(addr, len, &entry(BlockReason::Manual, T0))
        .unwrap();
    for src in [SCANNER_V4, Ipv4Addr::new(198, 51, 100, 7)] {
        let frame = PacketBuilder::new(src, TARGET_V4).syn(80).build();
        assert_eq!(h.run(&frame).unwrap(), XDP_PASS, "{src}");
    }
    assert_eq!(h.counter(Counter::BlockExpiredPass).unwrap(), 2);
    assert_eq!(h.counter(Counter::VerdictDrop).unwrap(), 0);
}

#[test]
fn cidr_and_slash64_blocks_drop_their_sources_only() {
    let mut h = load_with(&drop_mode());
    // A /8 list entry: 65536 /24 bits in the bitmap.
    let (addr, len) = v4_prefix([10, 0, 0, 0], 8);
    h.block_prefix(addr, len, &entry(BlockReason::List, 0))
        .unwrap();
    // A /64 detection block (the tracker key of an IPv6 source).
    h.block_source(&key_of(SCANNER_V6), &entry(BlockReason::Detection, 0))
        .unwrap();
    let cases: [(std::net::IpAddr, std::net::IpAddr, u32); 6] = [
        (
            Ipv4Addr::new(10, 0, 0, 1).into(),
            TARGET_V4.into(),
            XDP_DROP,
        ),
        (
            Ipv4Addr::new(10, 255, 3, 9).into(),
            TARGET_V4.into(),
            XDP_DROP,
        ),
        (
            Ipv4Addr::new(11, 0, 0, 1).into(),
            TARGET_V4.into(),
            XDP_PASS,
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 0, 1, 2, 3, 4).into(),
            TARGET_V6.into(),
            XDP_DROP,
        ),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0x5ca7, 1, 0, 0, 0, 0x10).into(),
            TARGET_V6.into(),
            XDP_PASS,
        ),
        (SCANNER_V4.into(), TARGET_V4.into(), XDP_PASS),
    ];
    for (src, dst, verdict) in cases {
        let frame = PacketBuilder::new(src, dst).syn(80).build();
        assert_eq!(h.run(&frame).unwrap(), verdict, "{src}");
    }
    assert_eq!(h.counter(Counter::DroppedList).unwrap(), 2);
    assert_eq!(h.counter(Counter::DroppedDetection).unwrap(), 1);
}

#[test]
fn each_block_reason_counts_its_own_drops() {
    let mut h = load_with(&drop_mode());
    for (i, reason) in BlockReason::ALL.into_iter().enumerate() {
        let (addr, len) = v4_prefix([192, 0, 2, i as u8], 32);
        h.block_prefix(addr, len, &entry(reason, 0)).unwrap();
        let src = Ipv4Addr::new(192, 0, 2, i as u8);
        let frame = PacketBuilder::new(src, TARGET_V4).syn(80).build();
        for _ in 0..=i {
            assert_eq!(h.run(&frame).unwrap(), XDP_DROP, "{reason:?}");
        }
    }
    for (i, reason) in BlockReason::ALL.into_iter().enumerate() {
        assert_eq!(
            h.counter(Counter::dropped_packets(reason)).unwrap(),
            i as u64 + 1,
            "{reason:?}"
        );
        assert!(
            h.counter(Counter::dropped_bytes(reason)).unwrap() > 0,
            "{reason:?}"
        );
    }
}

#[test]
fn presence_bitmap_never_hides_a_block() {
    // v4-mapped list keys: ::ffff:0:0/96 covers every IPv4 source; ::/0 every source.
    let v4_frame = PacketBuilder::new(Ipv4Addr::new(1, 2, 3, 4), TARGET_V4)
        .syn(80)
        .build();
    let v6_frame = PacketBuilder::new(Ipv6Addr::new(0x2001, 0xdb8, 9, 9, 0, 0, 0, 1), TARGET_V6)
        .syn(80)
        .build();
    let mut h = load_with(&drop_mode());
    h.block_prefix(
        SourceKey::from_ipv4([0; 4]).addr,
        96,
        &entry(BlockReason::List, 0),
    )
    .unwrap();
    assert_eq!(h.run(&v4_frame).unwrap(), XDP_DROP, "::ffff:0:0/96");
    assert_eq!(h.run(&v6_frame).unwrap(), XDP_PASS, "::ffff:0:0/96, IPv6");
    let mut h = load_with(&drop_mode());
    h.block_prefix([0; 16], 0, &entry(BlockReason::List, 0))
        .unwrap();
    assert_eq!(h.run(&v4_frame).unwrap(), XDP_DROP, "::/0");
    assert_eq!(h.run(&v6_frame).unwrap(), XDP_DROP, "::/0, IPv6");
    // An IPv6 prefix shorter than the bitmap's /48.
    let mut h = load_with(&drop_mode());
    let doc = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0).octets();
    h.block_prefix(doc, 32, &entry(BlockReason::List, 0))
        .unwrap();
    assert_eq!(h.run(&v6_frame).unwrap(), XDP_DROP, "2001:db8::/32");
    assert_eq!(h.run(&v4_frame).unwrap(), XDP_PASS, "2001:db8::/32, IPv4");
    // Sources aggregated to a prefix shorter than /48 take the full lookup.
    let mut h = load_with(&KernelConfig {
        ipv6_prefix_len: 32,
        ..drop_mode()
    });
    let key = SourceKey::from_ipv6(doc, 32);
    h.block_source(&key, &entry(BlockReason::Detection, 0))
        .unwrap();
    assert_eq!(h.run(&v6_frame).unwrap(), XDP_DROP, "/32 detection block");
}

#[test]
fn monitor_mode_never_drops() {
    let mut h = load_with(&KernelConfig {
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    });
    block_scanners(&mut h);
    for (what, frame) in broken_frames(SCANNER_V4, SCANNER_V6) {
        assert_eq!(h.run(&frame).unwrap(), XDP_PASS, "{what}");
    }
    let syn = PacketBuilder::new(SCANNER_V4, TARGET_V4).syn(80).build();
    assert_eq!(h.run(&syn).unwrap(), XDP_PASS);
}

#[test]
fn cached_list_verdicts_follow_list_changes() {
    let mut h = load_with(&drop_mode());
    let (addr, len) = v4_prefix([198, 51, 100, 0], 24);
    let frame = PacketBuilder::new(Ipv4Addr::new(198, 51, 100, 7), TARGET_V4)
        .syn(80)
        .build();
    h.block_prefix(addr, len, &entry(BlockReason::List, 0))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(h.run(&frame).unwrap(), XDP_DROP, "listed, then cached");
    }
    assert_eq!(h.counter(Counter::DroppedList).unwrap(), 3);
    let listed = h.prefix_block(addr, len).unwrap().unwrap();
    assert_eq!(
        listed.packets, 3,
        "cached drops count toward the list entry"
    );
    // A shorter expiry written over the entry reaches cached sources at once.
    h.block_prefix(addr, len, &entry(BlockReason::Manual, T0))
        .unwrap();
    assert_eq!(h.run(&frame).unwrap(), XDP_PASS, "expired entry");
    h.block_prefix(addr, len, &entry(BlockReason::Manual, 0))
        .unwrap();
    assert_eq!(h.run(&frame).unwrap(), XDP_DROP);
    assert_eq!(h.run(&frame).unwrap(), XDP_DROP);
    let manual = h.prefix_block(addr, len).unwrap().unwrap();
    assert_eq!(
        manual.packets, 2,
        "the rewritten entry counts its own drops"
    );
    assert!(h.unblock_prefix(addr, len).unwrap());
    assert_eq!(h.run(&frame).unwrap(), XDP_PASS, "unlisted");
}
