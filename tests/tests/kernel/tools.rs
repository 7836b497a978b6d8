//! Tool attribution: the program samples the headers of a source's first probes into its
//! tracker state, and the trait table names the tool. Real packets of each tool, captured in a
//! lab namespace (`tests/fixtures/tools/*.pcap`: nmap 7.93, masscan 1.3.2, zmap 2.1.1, hping3
//! 3.0.0-alpha-2 and Linux 6.18 client SYNs, from 10.99.0.2 to 10.99.0.1), go through the
//! program with the admission filter on; built Windows and macOS client SYNs must match nothing.

use std::{fs::File, net::Ipv4Addr, path::PathBuf};

use pcap_file::pcap::PcapReader;
use scanwatch::finding::tool::ToolMatch;
use scanwatch_common::{
    config::KernelConfig,
    fingerprints::{Header, L4},
    sample::ProbeSample,
};
use scanwatch_tests::{
    harness::Harness,
    packet::{PacketBuilder, ethernet_frame},
};

use crate::{SCANNER_V6, SECOND, T0, TARGET_V6, key_of, load_with, pass, state_of};

/// The scanner's address in every capture.
const SCANNER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

/// A 60 s window, the admission filter on (as in production).
fn config() -> KernelConfig {
    KernelConfig {
        window_ns: 60 * SECOND,
        clock_override_ns: T0,
        hash_seed: 0x1234_5678,
        ..KernelConfig::default()
    }
}

/// The frames of fixture `name`.
fn frames(name: &str) -> Vec<Vec<u8>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/tools/{name}.pcap"));
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file).expect("a pcap file");
    let mut frames = Vec::new();
    while let Some(packet) = reader.next_packet() {
        frames.push(packet.expect("a complete packet").data.into_owned());
    }
    frames
}

/// Runs `frames` through a fresh program; the samples the scanner's state holds.
fn samples_after(frames: &[Vec<u8>]) -> [ProbeSample; 2] {
    let mut h: Harness = load_with(&config());
    for frame in frames {
        pass(&mut h, frame);
    }
    state_of(&h, &key_of(SCANNER)).samples
}

/// Checks that capture `name` fills both samples and names `tool` with every trait in `traits`.
fn names_tool(name: &str, tool: &str, traits: &[&str]) {
    let samples = samples_after(&frames(name));
    for s in &samples {
        assert!(s.len > 0, "{name}: both sample slots fill");
        assert!(
            Header::decode(s.data()).is_some(),
            "{name}: a sample decodes"
        );
    }
    let found = ToolMatch::of(&samples);
    assert_eq!(found.name, tool, "{name}: {found:?}");
    for t in traits {
        assert!(
            found.traits.contains(t),
            "{name}: {t} missing from {found:?}"
        );
    }
    assert!(found.confidence > 0.0, "{name}: {found:?}");
}

#[test]
fn nmap_syn_scan_is_named() {
    names_tool("nmap_sS", "nmap", &["nmap_raw_syn_ipv4"]);
}

#[test]
fn nmap_udp_scan_is_named() {
    // Two probes from one source port: not hping3's, whose port moves on with each datagram.
    names_tool(
        "nmap_sU",
        "nmap",
        &["nmap_raw_udp_ipv4", "not_hping3_one_udp_source_port"],
    );
}

#[test]
fn nmap_ping_scan_is_named() {
    // -sn sends echo, SYN to 443, ACK to 80, timestamp: the echo (first) is what the admission
    // filter keeps back; the SYN and the timestamp are sampled.
    names_tool("nmap_sn", "nmap", &["nmap_raw_syn_ipv4"]);
}

#[test]
fn nmap_echo_without_payload_matches_its_trait() {
    // The echo request is the capture's first frame; sampled on its own here.
    let echo = &frames("nmap_sn")[0];
    let header = Header::decode(&echo[14..]).expect("an IPv4 echo request");
    let bits = header.matched();
    let names: Vec<_> = scanwatch_common::fingerprints::TRAITS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, t)| t.name)
        .collect();
    assert_eq!(names, ["nmap_raw_echo_ipv4", "hping3_echo"]);
}

#[test]
fn masscan_is_named() {
    names_tool("masscan", "masscan", &["masscan_syn_ipv4"]);
}

#[test]
fn zmap_is_named() {
    names_tool("zmap", "zmap", &["zmap_ip_id_54321"]);
}

#[test]
fn hping3_is_named() {
    names_tool("hping3", "hping3", &["hping3_tcp"]);
}

#[test]
fn linux_client_syns_match_no_tool() {
    let samples = samples_after(&frames("linux"));
    assert!(samples.iter().all(|s| s.len > 0), "the SYNs are sampled");
    assert_eq!(ToolMatch::of(&samples), ToolMatch::unknown());
}

/// An IPv4 client SYN from `SCANNER` with these TTL, window and options, DF set.
fn client_syn(ttl: u8, window: u16, options: &[u8], port: u16) -> Vec<u8> {
    let tcp_len = 20 + options.len();
    let total = 20 + tcp_len;
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, ttl, 6, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&SCANNER.octets());
    ip.extend_from_slice(&[10, 99, 0, 1]);
    let mut tcp = Vec::with_capacity(tcp_len);
    tcp.extend_from_slice(&(50_000 + port).to_be_bytes());
    tcp.extend_from_slice(&port.to_be_bytes());
    tcp.extend_from_slice(&0x1a2b_3c4du32.to_be_bytes()); // seq
    tcp.extend_from_slice(&0u32.to_be_bytes()); // ack
    tcp.push(((tcp_len / 4) as u8) << 4);
    tcp.push(0x02); // SYN
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum (unchecked), urgent
    tcp.extend_from_slice(options);
    ip.extend_from_slice(&tcp);
    ethernet_frame(0x0800, &ip)
}

/// Windows 10/11: MSS 1460, NOP, WS 8, NOP, NOP, SACK permitted; window 64240, TTL 128.
const WINDOWS_OPTIONS: &[u8] = &[2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];
/// macOS: MSS 1460, NOP, WS 6, NOP, NOP, timestamps, SACK permitted, EOL; window 65535, TTL 64.
const MACOS_OPTIONS: &[u8] = &[
    2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 4, 2, 0, 0,
];

#[test]
fn windows_client_syns_match_no_tool() {
    let frames: Vec<_> = (0..3)
        .map(|i| client_syn(128, 64240, WINDOWS_OPTIONS, 443 + i))
        .collect();
    let samples = samples_after(&frames);
    assert!(samples.iter().all(|s| s.len > 0), "the SYNs are sampled");
    assert_eq!(ToolMatch::of(&samples), ToolMatch::unknown());
}

#[test]
fn macos_client_syns_match_no_tool() {
    let frames: Vec<_> = (0..3)
        .map(|i| client_syn(64, 65535, MACOS_OPTIONS, 443 + i))
        .collect();
    let samples = samples_after(&frames);
    assert!(samples.iter().all(|s| s.len > 0), "the SYNs are sampled");
    // All 24 option bytes fit the 64-byte sample.
    let header = Header::decode(samples[0].data()).unwrap();
    assert!(matches!(header.l4, L4::Tcp { options, .. } if options == MACOS_OPTIONS));
    assert_eq!(ToolMatch::of(&samples), ToolMatch::unknown());
}

#[test]
fn a_new_window_samples_again() {
    let mut h = load_with(&config());
    let linux = frames("linux");
    for frame in &linux {
        pass(&mut h, frame);
    }
    let before = state_of(&h, &key_of(SCANNER)).samples;
    let mut later = config();
    later.clock_override_ns = T0 + 61 * SECOND;
    h.set_config(&later).unwrap();
    let nmap = frames("nmap_sS");
    pass(&mut h, &nmap[0]);
    let after = state_of(&h, &key_of(SCANNER)).samples;
    assert_ne!(
        after[0], before[0],
        "the first probe of the new window is sampled"
    );
    assert_eq!(after[1].len, 0, "the second slot waits for the next probe");
}

#[test]
fn ipv6_probes_are_sampled_from_the_ipv6_header() {
    let mut h = load_with(&config());
    for port in 1..=3 {
        pass(
            &mut h,
            &PacketBuilder::new(SCANNER_V6, TARGET_V6).syn(port).build(),
        );
    }
    let samples = state_of(&h, &key_of(SCANNER_V6)).samples;
    for s in &samples {
        let header = Header::decode(s.data()).expect("an IPv6 sample decodes");
        assert!(header.ipv6, "{header:?}");
        assert!(matches!(header.l4, L4::Tcp { .. }), "{header:?}");
    }
}
