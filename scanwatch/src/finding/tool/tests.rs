use scanwatch_common::{fingerprints::MSS_1460, sample::SAMPLE_BYTES};

use super::*;

/// An IPv4 probe's sample (IP header on) from 10.99.0.2 to 10.99.0.1: TTL, ID, DF, protocol,
/// then `l4`.
fn sample(ttl: u8, id: u16, df: bool, proto: u8, l4: &[u8]) -> ProbeSample {
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&(20 + l4.len() as u16).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0]);
    b.extend_from_slice(&[10, 99, 0, 2, 10, 99, 0, 1]);
    b.extend_from_slice(l4);
    let mut s = ProbeSample::EMPTY;
    let n = b.len().min(SAMPLE_BYTES);
    s.bytes[..n].copy_from_slice(&b[..n]);
    s.len = n as u16;
    s
}

fn syn(port: u16, window: u16, options: &[u8], ack: u32) -> Vec<u8> {
    let mut t = vec![0xb2, 0x87];
    t.extend_from_slice(&port.to_be_bytes());
    t.extend_from_slice(&0xaba1_a333u32.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) as u8) << 4);
    t.push(0x02);
    t.extend_from_slice(&window.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(options);
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

fn nmap_syn(port: u16) -> ProbeSample {
    sample(45, port, false, 6, &syn(port, 1024, MSS_1460, 0))
}

fn linux_syn(port: u16) -> ProbeSample {
    let options = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    sample(64, port, true, 6, &syn(port, 64240, &options, 0))
}

#[test]
fn no_match_is_unknown_without_candidates() {
    assert_eq!(
        ToolMatch::of(&[linux_syn(443), linux_syn(444)]),
        ToolMatch::unknown()
    );
    assert_eq!(ToolMatch::of(&[]), ToolMatch::unknown());
}

#[test]
fn a_probe_two_tools_send_is_unknown_with_both() {
    // An empty UDP datagram with TTL 50: nmap's, or hping3's from 14 hops away.
    let far = ToolMatch::of(&[sample(50, 1, false, 17, &udp(1404, 1))]);
    assert_eq!(far.name, "unknown");
    assert_eq!(far.candidates, ["nmap", "hping3"]);
    assert!(far.confidence.abs() < f64::EPSILON);
    assert_eq!(far.traits, ["nmap_raw_udp_ipv4", "hping3_udp"]);
}

#[test]
fn a_pair_of_samples_can_rule_a_tool_out() {
    // Two of nmap's UDP probes leave one source port; hping3's would not.
    let nmap = ToolMatch::of(&[
        sample(57, 2336, false, 17, &udp(38296, 8)),
        sample(42, 3438, false, 17, &udp(38296, 20)),
    ]);
    assert_eq!(nmap.name, "nmap");
    assert_eq!(nmap.candidates, ["nmap"]);
    assert_eq!(
        nmap.traits,
        ["nmap_raw_udp_ipv4", "not_hping3_one_udp_source_port"]
    );
    // hping3's consecutive ports, far away: still either.
    let hping = ToolMatch::of(&[
        sample(50, 1, false, 17, &udp(1404, 1)),
        sample(50, 2, false, 17, &udp(1405, 2)),
    ]);
    assert_eq!(hping.name, "unknown");
    assert_eq!(hping.candidates, ["nmap", "hping3"]);
}

#[test]
fn a_masscan_udp_sweep_is_masscan_not_nmap() {
    // masscan 1.0.4's UDP template (TTL 255, no payload for these ports) to three hosts.
    let samples: Vec<_> = [(0x6a3e, 35), (0x1c07, 58), (0xe2c1, 95)]
        .into_iter()
        .map(|(id, port)| sample(255, id, false, 17, &udp(0xfedc, port)))
        .collect();
    let found = ToolMatch::of(&samples);
    assert_eq!(found.name, "masscan", "{found:?}");
    assert_eq!(found.candidates, ["masscan"]);
}

#[test]
fn samples_of_two_tools_are_unknown_with_both() {
    let zmap = sample(255, 54321, false, 6, &syn(80, 65535, &[], 0));
    let found = ToolMatch::of(&[nmap_syn(22), zmap]);
    assert_eq!(found.name, "unknown");
    assert_eq!(found.candidates, ["nmap", "zmap"]);
}

#[test]
fn confidence_is_the_matrix_precision_times_agreement() {
    let all = ToolMatch::of(&[nmap_syn(22), nmap_syn(23)]);
    assert_eq!(all.name, "nmap");
    let precision = MATRIX[Tool::Nmap as usize].precision();
    assert!((all.confidence - precision).abs() < 0.005, "{all:?}");
    // A client's SYN among nmap's: half the samples agree.
    let half = ToolMatch::of(&[nmap_syn(22), linux_syn(443)]);
    assert_eq!(half.name, "nmap");
    assert!(
        (half.confidence - precision / 2.0).abs() < 0.005,
        "{half:?}"
    );
}

#[test]
fn a_probe_that_one_tool_sends_settles_an_ambiguous_one() {
    // nmap -sn: an echo (nmap's or hping3's) and a SYN to 443 (nmap's alone).
    let echo = sample(40, 1, false, 1, &[8, 0, 0, 0, 0x26, 0xce, 0, 0]);
    let found = ToolMatch::of(&[echo, nmap_syn(443)]);
    assert_eq!(found.name, "nmap");
    assert_eq!(found.traits, ["nmap_raw_syn_ipv4", "nmap_raw_echo_ipv4"]);
}

#[test]
fn every_named_tool_has_a_record() {
    for tool in Tool::ALL {
        let record = MATRIX[tool as usize];
        assert!(
            record.right > 0,
            "{}: the matrix never named it",
            tool.name()
        );
    }
}
