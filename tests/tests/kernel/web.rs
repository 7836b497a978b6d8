//! Web-request sampling: the first HTTP request of each connection to a web port is copied to
//! `WEB_SAMPLES`, once per connection and window; nothing else is.

use scanwatch_common::{
    config::{FLAG_DROP, KernelConfig},
    proto::tcp_flags,
    stats::Counter,
    web::{DEFAULT_WEB_PORTS, WEB_PORTS, WEB_SAMPLE_BYTES, WebSample},
};
use scanwatch_tests::harness::Harness;

use crate::{
    SCANNER_V4, SCANNER_V6, SECOND, T0, TARGET_V4, TARGET_V6, key_of, load_with, pass, scan_v4,
    scan_v6,
};

const REQUEST: &[u8] =
    b"GET /admin HTTP/1.1\r\nHost: target\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\nAccept: */*\r\n\r\n";

/// PSH|ACK: a data segment of an established connection.
const PSH_ACK: u8 = tcp_flags::PSH | tcp_flags::ACK;

fn web_config(flags: u32) -> KernelConfig {
    let mut web_ports = [0; WEB_PORTS];
    web_ports[..DEFAULT_WEB_PORTS.len()].copy_from_slice(&DEFAULT_WEB_PORTS);
    KernelConfig {
        clock_override_ns: T0,
        web_ports,
        flags,
        ..KernelConfig::default()
    }
}

fn samples(h: &mut Harness) -> Vec<WebSample> {
    h.web_samples()
}

#[test]
fn first_request_of_a_connection_is_sampled_with_its_bytes() {
    let mut h = load_with(&web_config(0));
    pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(REQUEST).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    let s = &got[0];
    assert_eq!(s.payload(), REQUEST);
    assert_eq!(s.source, key_of(SCANNER_V4));
    assert_eq!(s.target, key_of(TARGET_V4));
    assert_eq!((s.source_port, s.target_port), (40000, 80));
    assert_eq!(s.ipv6, 0);
    assert_eq!(s.timestamp_ns, T0);
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 1);
}

#[test]
fn later_requests_of_a_connection_are_not_sampled_again_within_the_window() {
    let mut h = load_with(&web_config(0));
    let request = scan_v4().tcp(8080, PSH_ACK).payload(REQUEST).build();
    pass(&mut h, &request);
    assert_eq!(samples(&mut h).len(), 1);
    // A keep-alive session: many more requests on the same connection.
    for _ in 0..200 {
        pass(&mut h, &request);
    }
    assert!(samples(&mut h).is_empty());
    // Another connection (source port) of the same client is sampled.
    let other = scan_v4()
        .src_port(40001)
        .tcp(8080, PSH_ACK)
        .payload(REQUEST)
        .build();
    pass(&mut h, &other);
    assert_eq!(samples(&mut h).len(), 1);
    // After a window, the first connection's next request is sampled again.
    let mut later = web_config(0);
    later.clock_override_ns = T0 + 301 * SECOND;
    h.set_config(&later).unwrap();
    pass(&mut h, &request);
    assert_eq!(samples(&mut h).len(), 1);
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 3);
}

#[test]
fn ipv6_requests_are_sampled() {
    let mut h = load_with(&web_config(0));
    pass(&mut h, &scan_v6().tcp(80, PSH_ACK).payload(REQUEST).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ipv6, 1);
    assert_eq!(got[0].source.addr, SCANNER_V6.octets());
    assert_eq!(got[0].target.addr, TARGET_V6.octets());
    assert_eq!(got[0].payload(), REQUEST);
}

#[test]
fn long_requests_are_cut_to_the_sample_size() {
    let mut h = load_with(&web_config(0));
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1200));
    pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(&long).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(usize::from(got[0].len), WEB_SAMPLE_BYTES);
    assert_eq!(got[0].payload(), &long[..WEB_SAMPLE_BYTES]);
}

#[test]
fn other_segments_are_not_sampled() {
    let mut h = load_with(&web_config(0));
    for (what, frame) in [
        (
            "a request to a port that is not a web port",
            scan_v4().tcp(443, PSH_ACK).payload(REQUEST).build(),
        ),
        (
            "TLS to a web port",
            scan_v4()
                .tcp(80, PSH_ACK)
                .payload(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                .build(),
        ),
        ("a bare ACK", scan_v4().tcp(80, tcp_flags::ACK).build()),
        (
            "a request segment without PSH (not the end of a write)",
            scan_v4().tcp(80, tcp_flags::ACK).payload(REQUEST).build(),
        ),
        (
            "a lowercase method",
            scan_v4()
                .tcp(80, PSH_ACK)
                .payload(b"get / HTTP/1.1\r\n\r\n")
                .build(),
        ),
        (
            "a SYN carrying a request",
            scan_v4().tcp(80, tcp_flags::SYN).payload(REQUEST).build(),
        ),
        (
            "a FIN carrying a request",
            scan_v4()
                .tcp(80, tcp_flags::FIN | tcp_flags::ACK)
                .payload(REQUEST)
                .build(),
        ),
        (
            "a request from this host (source port 80)",
            scan_v4()
                .src_port(80)
                .tcp(40000, PSH_ACK)
                .payload(REQUEST)
                .build(),
        ),
    ] {
        pass(&mut h, &frame);
        assert!(samples(&mut h).is_empty(), "{what}");
    }
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 0);
}

#[test]
fn no_web_ports_no_samples() {
    let mut config = web_config(0);
    config.web_ports = [0; WEB_PORTS];
    let mut h = load_with(&config);
    pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(REQUEST).build());
    assert!(samples(&mut h).is_empty());
}

#[test]
fn short_and_malformed_payloads_are_safe() {
    let mut h = load_with(&web_config(0));
    // Fewer than four payload bytes.
    for short in [&b"G"[..], b"GE", b"GET"] {
        pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(short).build());
    }
    // An IPv4 total length that claims more than the frame holds.
    let mut lying = scan_v4().tcp(80, PSH_ACK).payload(REQUEST).build();
    let l3 = 14;
    lying[l3 + 2..l3 + 4].copy_from_slice(&1500u16.to_be_bytes());
    pass(&mut h, &lying);
    // A TCP data offset that points past the frame (15 words = 60 bytes of header).
    let mut offset = scan_v4().tcp(80, PSH_ACK).payload(b"GET ").build();
    offset[l3 + 20 + 12] = 15 << 4;
    pass(&mut h, &offset);
    // An IPv4 header length that points past the TCP header.
    let mut ihl = scan_v4().tcp(80, PSH_ACK).payload(b"GET /").build();
    ihl[l3] = 0x4f;
    pass(&mut h, &ihl);
    assert!(samples(&mut h).is_empty());
}

#[test]
fn drop_mode_samples_too() {
    let mut h = load_with(&web_config(FLAG_DROP));
    pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(REQUEST).build());
    assert_eq!(samples(&mut h).len(), 1);
    // The bare-ACK handshake check still runs (and passes) on a web port.
    pass(&mut h, &scan_v4().tcp(80, tcp_flags::ACK).build());
}
