//! Malformed frames: each parse error is counted, and every frame passes.

use std::net::IpAddr;

use rand::Rng as _;
use scanwatch_common::{classify::PacketClass, stats::ParseError};
use scanwatch_tests::packet::{Ext, PacketBuilder, ethernet_frame};

use crate::{
    SCANNER_V4, SCANNER_V6, TARGET_V4, TARGET_V6, assert_malformed, errno, key_of, load, load_with,
    no_admission, pass, scan_v4, scan_v6, state_of,
};

#[test]
fn kernel_rejects_frames_shorter_than_ethernet_header() {
    // BPF_PROG_TEST_RUN refuses data_in shorter than ETH_HLEN with EINVAL (bpf_test_init in
    // net/bpf/test_run.c), so the program never sees such a frame and `EthTruncated` cannot be
    // reached from a test run. The program still checks for it, as defence in depth.
    let mut h = load();
    let full = scan_v4().syn(80).build();
    for len in 0..14 {
        let err = h
            .run(&full[..len])
            .expect_err("a frame shorter than 14 bytes");
        assert_eq!(errno(&err), Some(libc::EINVAL), "{len} bytes: {err:#}");
    }
    assert_eq!(h.stats().unwrap().iter().sum::<u64>(), 0, "nothing counted");
    // 14 bytes is the shortest frame the kernel runs.
    assert_malformed(&mut h, &full[..14], ParseError::Ipv4Truncated, "14 bytes");
}

#[test]
fn truncated_vlan_tag_is_malformed() {
    let mut h = load();
    let single = scan_v4().vlan(7).build();
    for len in [14, 15, 17] {
        assert_malformed(&mut h, &single[..len], ParseError::VlanTruncated, "1 tag");
    }
    let qinq = scan_v6().vlan(7).vlan(8).build();
    for len in [18, 20, 21] {
        assert_malformed(&mut h, &qinq[..len], ParseError::VlanTruncated, "QinQ");
    }
}

#[test]
fn truncated_ipv4_header_is_malformed() {
    let mut h = load();
    let f = scan_v4().syn(80).build();
    for len in [14, 15, 24, 33] {
        assert_malformed(&mut h, &f[..len], ParseError::Ipv4Truncated, "cut IPv4");
    }
    let tagged = scan_v4().vlan(5).build();
    assert_malformed(&mut h, &tagged[..30], ParseError::Ipv4Truncated, "tagged");
}

#[test]
fn ipv4_header_length_below_five_words_is_malformed() {
    let mut h = load();
    for ihl in 0..5 {
        let mut f = scan_v4().syn(80).build();
        f[14] = 0x40 | ihl;
        assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "IHL < 5");
    }
}

#[test]
fn ipv4_header_length_beyond_packet_is_malformed() {
    let mut h = load();
    // IHL 15 (60 bytes) and a total length that agrees, in a 54-byte frame.
    let mut f = scan_v4().syn(80).build();
    f[14] = 0x4f;
    f[16..18].copy_from_slice(&60u16.to_be_bytes());
    assert_eq!(f.len(), 54);
    assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "IHL past end");
    // Options announced but the frame is cut inside them.
    let opts = scan_v4().ipv4_options(4).syn(80).build();
    assert_malformed(
        &mut h,
        &opts[..40],
        ParseError::Ipv4BadHeaderLength,
        "cut options",
    );
    // A total length shorter than the header.
    let mut f = scan_v4().syn(80).build();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_malformed(&mut h, &f, ParseError::Ipv4BadHeaderLength, "total < IHL");
}

#[test]
fn ip_version_disagreeing_with_ethertype_is_malformed() {
    let mut h = load();
    for version in [0, 5, 6, 15] {
        let mut f = scan_v4().syn(80).build();
        f[14] = (version << 4) | 5;
        assert_malformed(&mut h, &f, ParseError::BadIpVersion, "IPv4 ethertype");
    }
    for version in [0, 4, 7] {
        let mut f = scan_v6().syn(80).build();
        f[14] = version << 4;
        assert_malformed(&mut h, &f, ParseError::BadIpVersion, "IPv6 ethertype");
    }
}

#[test]
fn truncated_ipv6_header_is_malformed() {
    let mut h = load();
    let f = scan_v6().syn(80).build();
    for len in [14, 20, 44, 53] {
        assert_malformed(&mut h, &f[..len], ParseError::Ipv6Truncated, "cut IPv6");
    }
    let tagged = scan_v6().vlan(9).build();
    assert_malformed(&mut h, &tagged[..57], ParseError::Ipv6Truncated, "tagged");
}

#[test]
fn ipv6_extension_chain_too_long_is_counted_and_tracked_as_a_probe() {
    let mut h = load_with(&no_admission());
    for headers in [9, 12] {
        let mut p = scan_v6();
        for _ in 0..headers {
            p = p.ext(Ext::DestOpts);
        }
        let f = p.syn(80).build();
        assert_malformed(&mut h, &f, ParseError::Ipv6ExtChainTooLong, "9+ headers");
    }
    // It hides its L4 header from a walk as long as ours: an evasion probe, not a free pass.
    let state = state_of(&h, &key_of(SCANNER_V6));
    assert_eq!(state.probes[PacketClass::Fragment as usize], 2);
}

#[test]
fn ipv6_extension_chain_past_the_parsers_offsets_is_tracked_as_a_probe() {
    let mut h = load_with(&no_admission());
    // One destination-options header of 2048 bytes (length byte 255), inside the packet: the
    // TCP header starts past the 2048 bytes the parser reads.
    let p = scan_v6().ext(Ext::DestOpts).syn(80);
    let mut f = p.build();
    let ip = p.l3_offset();
    let ext = ip + 40;
    f[ext + 1] = 255;
    f.splice(ext + 8..ext + 8, std::iter::repeat_n(0u8, 2040));
    let payload = u16::from_be_bytes([f[ip + 4], f[ip + 5]]) + 2040;
    f[ip + 4..ip + 6].copy_from_slice(&payload.to_be_bytes());
    assert_malformed(
        &mut h,
        &f,
        ParseError::Ipv6ExtChainTooLong,
        "a chain past 2048 bytes",
    );
    let state = state_of(&h, &key_of(SCANNER_V6));
    assert_eq!(state.probes[PacketClass::Fragment as usize], 1);
}

#[test]
fn truncated_ipv6_extension_header_is_malformed() {
    let mut h = load();
    let p = scan_v6()
        .ext(Ext::HopByHop)
        .ext(Ext::Fragment {
            offset: 0,
            more: false,
        })
        .syn(80);
    let f = p.build();
    let ip = p.l3_offset();
    // Cut inside the hop-by-hop header's first two bytes.
    assert_malformed(&mut h, &f[..ip + 41], ParseError::Ipv6ExtTruncated, "HBH");
    // Cut inside the hop-by-hop header's body (its length runs past the frame).
    assert_malformed(
        &mut h,
        &f[..ip + 44],
        ParseError::Ipv6ExtTruncated,
        "HBH body",
    );
    // Cut inside the fragment header.
    assert_malformed(
        &mut h,
        &f[..ip + 52],
        ParseError::Ipv6ExtTruncated,
        "fragment",
    );
    // A hop-by-hop length (255 → 2048 bytes) far past the frame.
    let mut long = f.clone();
    long[ip + 41] = 255;
    assert_malformed(&mut h, &long, ParseError::Ipv6ExtTruncated, "HBH length");
    // An AH whose length runs past the frame.
    let ah = scan_v6().raw(51, vec![6, 200, 0, 0, 0, 0, 0, 0]).build();
    assert_malformed(&mut h, &ah, ParseError::Ipv6ExtTruncated, "AH length");
}

#[test]
fn truncated_tcp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    let v4 = scan_v4().syn(80).l4_len(10);
    assert_malformed(&mut h, &v4.build(), ParseError::TcpTruncated, "IPv4");
    let v6 = scan_v6().syn(80).l4_len(10);
    assert_malformed(&mut h, &v6.build(), ParseError::TcpTruncated, "IPv6");
    // The IP header declares a full segment but the frame is cut short of it.
    let full = scan_v4().syn(80);
    let f = full.build();
    let cut = &f[..full.l4_offset() + 10];
    assert_malformed(&mut h, cut, ParseError::TcpTruncated, "IPv4 frame cut");
    let full = scan_v6().syn(80);
    let f = full.build();
    let cut = &f[..full.l4_offset() + 19];
    assert_malformed(&mut h, cut, ParseError::TcpTruncated, "IPv6 frame cut");
    // A last fragment (offset 0, no more fragments) is a whole datagram: no excuse.
    let atomic = scan_v4().ipv4_fragment(0, false).syn(80).l4_len(8);
    assert_malformed(
        &mut h,
        &atomic.build(),
        ParseError::TcpTruncated,
        "offset 0, no MF",
    );
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn tcp_data_offset_below_five_is_malformed() {
    let mut h = load_with(&no_admission());
    for (src, dst) in [
        (IpAddr::from(SCANNER_V4), IpAddr::from(TARGET_V4)),
        (SCANNER_V6.into(), TARGET_V6.into()),
    ] {
        for offset in [0u8, 4] {
            let p = PacketBuilder::new(src, dst).syn(80);
            let mut f = p.build();
            f[p.l4_offset() + 12] = offset << 4;
            assert_malformed(&mut h, &f, ParseError::TcpBadDataOffset, "data offset");
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn truncated_udp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    for len in [0, 4, 7] {
        let v4 = scan_v4().udp(53).l4_len(len);
        assert_malformed(&mut h, &v4.build(), ParseError::UdpTruncated, "IPv4");
        let v6 = scan_v6().udp(53).l4_len(len);
        assert_malformed(&mut h, &v6.build(), ParseError::UdpTruncated, "IPv6");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn truncated_icmp_header_is_malformed() {
    let mut h = load_with(&no_admission());
    for len in [0, 2, 3] {
        let v4 = scan_v4().echo_request().l4_len(len);
        assert_malformed(&mut h, &v4.build(), ParseError::IcmpTruncated, "ICMP");
        let v6 = scan_v6().echo_request().l4_len(len);
        assert_malformed(&mut h, &v6.build(), ParseError::IcmpTruncated, "ICMPv6");
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
}

#[test]
fn random_garbage_always_passes() {
    // Not a fuzzer, but a cheap net: random bytes behind each ethertype the parser knows never
    // fail the run, and every frame lands in exactly one class.
    let mut h = load_with(&no_admission());
    let mut rng = rand::rng();
    let mut frames = 0u64;
    for ethertype in [0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x0806] {
        for _ in 0..500 {
            let len = rng.random_range(0..200);
            let mut payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Make most frames get past the version check.
            if let Some(b) = payload.first_mut() {
                match ethertype {
                    0x0800 => *b = 0x40 | (*b & 0x0f),
                    0x86dd => *b = 0x60 | (*b & 0x0f),
                    _ => {}
                }
            }
            pass(&mut h, &ethernet_frame(ethertype, &payload));
            frames += 1;
        }
    }
    let classes: u64 = PacketClass::ALL
        .iter()
        .map(|c| h.class_count(*c).unwrap())
        .sum();
    assert_eq!(classes, frames);
    let errors: u64 = ParseError::ALL
        .iter()
        .map(|r| h.parse_errors(*r).unwrap())
        .sum();
    assert_eq!(errors, h.class_count(PacketClass::Malformed).unwrap());
}
