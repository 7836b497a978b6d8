extern crate std;
use std::{vec, vec::Vec};

use super::*;

/// An IPv4 probe's bytes (IP header on): TTL, ID, DF, then `l4` (protocol, header, payload
/// length) to 10.99.0.1.
fn ipv4(ttl: u8, id: u16, df: bool, proto: u8, l4: &[u8], payload: usize) -> Vec<u8> {
    let total = (20 + l4.len() + payload) as u16;
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0]);
    b.extend_from_slice(&[10, 99, 0, 2, 10, 99, 0, 1]);
    b.extend_from_slice(l4);
    b
}

/// An IPv6 probe's bytes: hop limit, flow label, then `l4` (next header, bytes).
fn ipv6(hops: u8, flow: u32, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut b = (0x6000_0000 | flow).to_be_bytes().to_vec();
    b.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    b.extend_from_slice(&[next, hops]);
    b.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    b.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    b.extend_from_slice(l4);
    b
}

/// A TCP header with these fields.
fn tcp(flags: u8, port: u16, seq: u32, ack: u32, window: u16, options: &[u8]) -> Vec<u8> {
    let mut t = vec![0xc3, 0x50];
    t.extend_from_slice(&port.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(options);
    t
}

fn syn(port: u16, seq: u32, ack: u32, window: u16, options: &[u8]) -> Vec<u8> {
    tcp(0x02, port, seq, ack, window, options)
}

/// A UDP header from `sport` to `dport` (the length field is not read).
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

fn header(bytes: &[u8]) -> Header<'_> {
    Header::decode(bytes).expect("decodes")
}

fn names(bytes: &[u8]) -> Vec<&'static str> {
    let bits = header(bytes).matched();
    TRAITS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, t)| t.name)
        .collect()
}

/// The candidate tools of one probe, by name.
fn candidates(bytes: &[u8]) -> Vec<&'static str> {
    let bits = header(bytes).candidates();
    Tool::ALL
        .into_iter()
        .filter(|t| bits & (1 << *t as u32) != 0)
        .map(Tool::name)
        .collect()
}

#[test]
fn the_table_is_well_formed() {
    for (i, t) in TRAITS.iter().enumerate() {
        assert!(t.source.contains(':'), "{} cites file:line", t.name);
        assert!(!t.all.is_empty(), "{}", t.name);
        assert!(TRAITS[..i].iter().all(|o| o.name != t.name), "{}", t.name);
        assert!(t.name.starts_with(t.tool.name()), "{}", t.name);
    }
    for e in EXCLUSIONS {
        assert!(e.name.starts_with("not_") && e.name.contains(e.tool.name()));
        assert!(e.source.contains(':'), "{}", e.name);
    }
    // Every tool has a trait for each probe kind it is known to send.
    for tool in Tool::ALL {
        assert!(TRAITS.iter().any(|t| t.tool == tool), "{}", tool.name());
    }
}

#[test]
fn each_tools_default_probe_names_it_alone() {
    let nmap = ipv4(45, 777, false, 6, &syn(22, 1, 0, 1024, MSS_1460), 0);
    assert_eq!(names(&nmap), ["nmap_raw_syn_ipv4"]);
    assert_eq!(candidates(&nmap), ["nmap"]);
    // masscan: ID = dst (0x0001) ^ port ^ seq.
    let seq = 0x4acc_6dbe;
    let id = 0x0001 ^ 7 ^ (seq as u16);
    let masscan = ipv4(255, id, false, 6, &syn(7, seq, 0, 1024, &[]), 0);
    assert_eq!(candidates(&masscan), ["masscan"]);
    let zmap = ipv4(255, 54321, false, 6, &syn(80, 9, 0, 65535, &[]), 0);
    assert_eq!(candidates(&zmap), ["zmap"]);
    let hping = ipv4(64, 5, false, 6, &syn(1, 9, 0x4929_0bbb, 512, &[]), 0);
    assert_eq!(candidates(&hping), ["hping3"]);
}

#[test]
fn nmaps_stealth_probes_share_its_syn_choices() {
    // FIN, NULL, Xmas: window 1024, no options, ack 0.
    for flags in [0x01, 0x00, 0x29] {
        let probe = ipv4(
            50,
            3,
            false,
            6,
            &tcp(flags, 22, 0x1cc3_1c31, 0, 1024, &[]),
            0,
        );
        assert_eq!(candidates(&probe), ["nmap"], "{flags:#x}");
    }
    // Maimon (FIN|ACK): the try number in ack, seq 0.
    let maimon = ipv4(
        46,
        3,
        false,
        6,
        &tcp(0x11, 25, 0, 0x4445_7a8a, 1024, &[]),
        0,
    );
    assert_eq!(names(&maimon), ["nmap_raw_tcp_flags_ipv4"]);
    // hping3 -F: window 512, a random ack without the flag.
    let hping = ipv4(64, 3, false, 6, &tcp(0x01, 1, 9, 0x14da_52f2, 512, &[]), 0);
    assert_eq!(candidates(&hping), ["hping3"]);
}

#[test]
fn a_masscan_udp_probe_is_never_nmaps() {
    // masscan 1.0.4 and 1.3.2: the UDP template's TTL 255, DF clear, no payload to a port
    // without one, an ID from the hidden SYN cookie.
    let probe = ipv4(255, 0x9d3a, false, 17, &udp(0xfedc, 35), 0);
    assert_eq!(candidates(&probe), ["masscan"]);
    // Thirty hops away it is still not nmap's (sent 37..59).
    let far = ipv4(226, 0x9d3a, false, 17, &udp(0xfedc, 35), 0);
    assert_eq!(candidates(&far), ["masscan"]);
}

#[test]
fn a_far_hping3_udp_probe_is_ambiguous_with_nmap() {
    // hping3's TTL 64 after 14 hops: in nmap's range, so both stay candidates.
    let probe = ipv4(50, 0x1234, false, 17, &udp(1404, 1), 0);
    assert_eq!(candidates(&probe), ["nmap", "hping3"]);
    // Next door, TTL 64 is none of nmap's.
    let near = ipv4(64, 0x1234, false, 17, &udp(1404, 1), 0);
    assert_eq!(candidates(&near), ["hping3"]);
}

#[test]
fn pair_rules_need_the_pair() {
    let rule = |name| EXCLUSIONS.iter().find(|e| e.name == name).unwrap();
    let hping = rule("not_hping3_one_udp_source_port");
    let a = ipv4(50, 1, false, 17, &udp(38296, 8), 0);
    let b = ipv4(42, 2, false, 17, &udp(38296, 20), 0);
    let c = ipv4(42, 3, false, 17, &udp(38297, 20), 0);
    assert!(hping.rules_out(&header(&a), &header(&b)));
    assert!(
        !hping.rules_out(&header(&a), &header(&c)),
        "hping3's next port"
    );
    let masscan = rule("not_masscan_one_ip_id");
    let z1 = ipv4(255, 54321, false, 17, &udp(41558, 53), 29);
    let z2 = ipv4(255, 54321, false, 17, &udp(60557, 54), 29);
    assert!(masscan.rules_out(&header(&z1), &header(&z2)));
    // A retransmission to the same target keeps masscan's ID.
    let again = ipv4(255, 54321, false, 17, &udp(41558, 53), 29);
    assert!(!masscan.rules_out(&header(&z1), &header(&again)));
}

#[test]
fn client_syns_match_nothing() {
    let linux = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let windows = [2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2];
    let macos = [
        2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 4, 2, 0, 0,
    ];
    for (ttl, window, options) in [
        (64, 64240, &linux[..]),
        (128, 64240, &windows[..]),
        (128, 65535, &windows[..]),
        (64, 65535, &macos[..]),
        // Far away: TTLs in nmap's range, but DF set and a client's options.
        (50, 64240, &linux[..]),
    ] {
        let probe = ipv4(ttl, 4242, true, 6, &syn(443, 77, 0, window, options), 0);
        assert!(names(&probe).is_empty(), "{ttl} {window} {options:?}");
    }
    // A Linux ping: 56 bytes of payload, DF set.
    let ping = ipv4(64, 1, true, 1, &[8, 0, 0, 0, 0, 1, 0, 1], 56);
    assert!(names(&ping).is_empty());
}

#[test]
fn ipv6_probes_decode_and_name_their_tool() {
    // An IPv6 client SYN (hop limit 50, a flow label): no tool's.
    let client = ipv6(50, 0x9_abcd, 6, &syn(443, 77, 0, 64800, &[2, 4, 5, 0xa0]));
    let h = header(&client);
    assert!(h.ipv6 && h.ip_id.is_none() && h.ttl == 50 && h.flow_label == Some(0x9_abcd));
    assert_eq!(h.kind(), Some(ProbeKind::TcpSyn));
    assert!(names(&client).is_empty(), "{:?}", names(&client));
    // nmap's IPv6 SYN: hop limit 255, flow label 0, window 1024, MSS 1460 alone.
    let nmap = ipv6(255, 0, 6, &syn(22, 1, 0, 1024, MSS_1460));
    assert_eq!(candidates(&nmap), ["nmap"]);
    // masscan's IPv6 SYNs: 1.3.2's bare template, and the current one (window 1025, MSS).
    let old = ipv6(255, 0, 6, &syn(22, 1, 0, 1024, &[]));
    let new = ipv6(255, 0, 6, &syn(22, 1, 0, 1025, MSS_1460));
    assert_eq!(candidates(&old), ["masscan"]);
    assert_eq!(candidates(&new), ["masscan"]);
    // An empty UDP datagram with hop limit 255: nmap's or masscan's.
    let udp6 = ipv6(255, 0, 17, &udp(54750, 70));
    assert_eq!(candidates(&udp6), ["nmap", "masscan"]);
    // nmap -sO over IPv6: the random IP ID as flow label, a random hop limit.
    let raw = ipv6(40, 0xa7b1, 98, &[]);
    assert_eq!(candidates(&raw), ["nmap"]);
}

#[test]
fn sctp_and_icmp_probes_name_their_tool() {
    // nmap -sY: INIT, tag 0, window 32768, 10 and 2048 streams, random TSN.
    let mut init = vec![0x9b, 0x6b, 0, 26, 0, 0, 0, 0, 0, 0, 0, 0];
    init.extend_from_slice(&[
        1, 0, 0, 20, 0x14, 0x79, 0x9c, 0x6f, 0, 0, 0x80, 0, 0, 10, 8, 0,
    ]);
    init.extend_from_slice(&[0x5f, 0x74, 0xca, 0xcc]);
    let nmap = ipv4(45, 1, false, 132, &init, 0);
    assert_eq!(candidates(&nmap), ["nmap"]);
    // masscan's INIT: TTL 255 and its template's TSN.
    let mut masscan_init = init.clone();
    masscan_init[28..32].copy_from_slice(&0x461a_df3du32.to_be_bytes());
    assert_eq!(
        candidates(&ipv4(255, 1, false, 132, &masscan_init, 0)),
        ["masscan"]
    );
    // hping3's echo: its sequence number counts in host byte order.
    let hping = ipv4(64, 1, false, 1, &[8, 0, 0, 0, 3, 0x21, 1, 0], 0);
    assert_eq!(candidates(&hping), ["hping3"]);
    // masscan's echo: 48 bytes from 08 09 0a 0b.
    let mut echo = vec![8, 0, 0, 0, 0xe6, 0x26, 0xf5, 0x47];
    echo.extend(8..56u8);
    assert_eq!(candidates(&ipv4(255, 7, false, 1, &echo, 0)), ["masscan"]);
    // nmap's echo, sequence 0 and no payload: hping3's first echo is the same.
    let nmap_echo = ipv4(40, 1, false, 1, &[8, 0, 0, 0, 0x26, 0xce, 0, 0], 0);
    assert_eq!(candidates(&nmap_echo), ["nmap", "hping3"]);
}

#[test]
fn truncated_or_foreign_samples_do_not_decode() {
    assert!(Header::decode(&[]).is_none());
    assert!(Header::decode(&[0x45, 0, 0]).is_none());
    assert!(Header::decode(&[0x55; 40]).is_none());
    let nmap = ipv4(45, 777, false, 6, &syn(22, 1, 0, 1024, MSS_1460), 0);
    assert!(Header::decode(&nmap[..30]).is_none(), "TCP header cut");
}
