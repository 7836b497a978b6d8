//! Web-request sampling: the first HTTP request of each connection to a web port is copied to
//! `WEB_SAMPLES`, once per connection and window, only when the kernel holds that connection
//! established; nothing else is, and a forged segment never is.
//!
//! The requests travel on real loopback connections ([`Connection`]): under
//! `BPF_PROG_TEST_RUN` the program's socket lookup runs in this process's network namespace,
//! so the connection the test holds open is the one it finds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    config::{FLAG_DROP, FLAG_REPLAY, KernelConfig},
    proto::tcp_flags,
    stats::Counter,
    web::{WEB_PORTS, WEB_SAMPLE_BYTES, WebSample},
};
use scanwatch_tests::{harness::Harness, loopback::Connection, packet::PacketBuilder};

use crate::{SECOND, T0, key_of, load_with, pass, scan_v4};

const REQUEST: &[u8] =
    b"GET /admin HTTP/1.1\r\nHost: target\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\nAccept: */*\r\n\r\n";

/// PSH|ACK: a data segment of an established connection.
const PSH_ACK: u8 = tcp_flags::PSH | tcp_flags::ACK;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Sampling on `port` (and no other), the test clock, `flags`.
fn web_config(port: u16, flags: u32) -> KernelConfig {
    let mut web_ports = [0; WEB_PORTS];
    web_ports[0] = port;
    KernelConfig {
        clock_override_ns: T0,
        web_ports,
        flags,
        ..KernelConfig::default()
    }
}

/// A segment with `flags` from the client of `c` to its server (the web port).
fn to_server(c: &Connection, flags: u8) -> PacketBuilder {
    PacketBuilder::new(c.addr, c.addr)
        .src_port(c.client_port)
        .tcp(c.server_port, flags)
}

fn samples(h: &mut Harness) -> Vec<WebSample> {
    h.web_samples()
}

#[test]
fn first_request_of_a_connection_is_sampled_with_its_bytes() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    let s = &got[0];
    assert_eq!(s.payload(), REQUEST);
    assert_eq!(s.source, key_of(LO));
    assert_eq!(s.target, key_of(LO));
    assert_eq!(
        (s.source_port, s.target_port),
        (c.client_port, c.server_port)
    );
    assert_eq!(s.ipv6, 0);
    assert_eq!(s.timestamp_ns, T0);
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 1);
    assert_eq!(h.counter(Counter::WebUnconnected).unwrap(), 0);
}

#[test]
fn a_lone_forged_request_without_a_connection_is_not_sampled() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    // A scanner's user agent on a segment whose 4-tuple the kernel holds no connection for:
    // another client port to the real server, and a source that never connected at all.
    let forged = PacketBuilder::new(LO, LO)
        .src_port(c.client_port.wrapping_add(1).max(1024))
        .tcp(c.server_port, PSH_ACK)
        .payload(REQUEST)
        .build();
    pass(&mut h, &forged);
    pass(
        &mut h,
        &scan_v4()
            .tcp(c.server_port, PSH_ACK)
            .payload(REQUEST)
            .build(),
    );
    assert!(samples(&mut h).is_empty());
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 0);
    assert_eq!(h.counter(Counter::WebUnconnected).unwrap(), 2);
    // The real connection's request, after the forged ones, still is.
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    assert_eq!(samples(&mut h).len(), 1);
}

#[test]
fn replay_samples_requests_without_asking_for_their_connection() {
    // A capture's connections were never this host's sockets: `scanwatch replay` sets
    // FLAG_REPLAY, and its requests are sampled as a live agent samples its own.
    let mut h = load_with(&web_config(80, FLAG_REPLAY));
    pass(&mut h, &scan_v4().tcp(80, PSH_ACK).payload(REQUEST).build());
    assert_eq!(samples(&mut h).len(), 1);
    assert_eq!(h.counter(Counter::WebUnconnected).unwrap(), 0);
}

#[test]
fn a_flood_of_forged_requests_leaves_the_ring_to_real_ones() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    // More forged first requests (random 4-tuples: other client ports) than the ring holds.
    for port in 1024..(1024 + 5000u16) {
        if port == c.client_port {
            continue;
        }
        let forged = PacketBuilder::new(LO, LO)
            .src_port(port)
            .tcp(c.server_port, PSH_ACK)
            .payload(REQUEST)
            .build();
        pass(&mut h, &forged);
    }
    assert_eq!(h.counter(Counter::WebSamplesDropped).unwrap(), 0);
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1, "only the real request is in the ring");
    assert_eq!(got[0].source_port, c.client_port);
}

#[test]
fn later_requests_of_a_connection_are_not_sampled_again_within_the_window() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    let request = to_server(&c, PSH_ACK).payload(REQUEST).build();
    pass(&mut h, &request);
    assert_eq!(samples(&mut h).len(), 1);
    // A keep-alive session: many more requests on the same connection.
    for _ in 0..200 {
        pass(&mut h, &request);
    }
    assert!(samples(&mut h).is_empty());
    // Another connection (source port) of the same client is sampled.
    let other = c.another();
    pass(&mut h, &to_server(&other, PSH_ACK).payload(REQUEST).build());
    assert_eq!(samples(&mut h).len(), 1);
    // After a window, the first connection's next request is sampled again.
    let mut later = web_config(c.server_port, 0);
    later.clock_override_ns = T0 + 301 * SECOND;
    h.set_config(&later).unwrap();
    pass(&mut h, &request);
    assert_eq!(samples(&mut h).len(), 1);
    assert_eq!(h.counter(Counter::WebSamples).unwrap(), 3);
}

#[test]
fn ipv6_requests_are_sampled() {
    let lo6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let c = Connection::open(lo6);
    let mut h = load_with(&web_config(c.server_port, 0));
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ipv6, 1);
    assert_eq!(got[0].source.addr, Ipv6Addr::LOCALHOST.octets());
    assert_eq!(got[0].target.addr, Ipv6Addr::LOCALHOST.octets());
    assert_eq!(got[0].payload(), REQUEST);
}

#[test]
fn long_requests_are_cut_to_the_sample_size() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1200));
    pass(&mut h, &to_server(&c, PSH_ACK).payload(&long).build());
    let got = samples(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(usize::from(got[0].len), WEB_SAMPLE_BYTES);
    assert_eq!(got[0].payload(), &long[..WEB_SAMPLE_BYTES]);
}

#[test]
fn other_segments_are_not_sampled() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    // A request to a port that is not a web port, on a real connection too.
    let other_port = Connection::open(LO);
    for (what, frame) in [
        (
            "a request to a port that is not a web port",
            to_server(&other_port, PSH_ACK).payload(REQUEST).build(),
        ),
        (
            "TLS to a web port",
            to_server(&c, PSH_ACK)
                .payload(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                .build(),
        ),
        ("a bare ACK", to_server(&c, tcp_flags::ACK).build()),
        (
            "a request segment without PSH (not the end of a write)",
            to_server(&c, tcp_flags::ACK).payload(REQUEST).build(),
        ),
        (
            "a lowercase method",
            to_server(&c, PSH_ACK)
                .payload(b"get / HTTP/1.1\r\n\r\n")
                .build(),
        ),
        (
            "a SYN carrying a request",
            to_server(&c, tcp_flags::SYN).payload(REQUEST).build(),
        ),
        (
            "a FIN carrying a request",
            to_server(&c, tcp_flags::FIN | tcp_flags::ACK)
                .payload(REQUEST)
                .build(),
        ),
        (
            "a request from this host (source port the web port)",
            PacketBuilder::new(c.addr, c.addr)
                .src_port(c.server_port)
                .tcp(c.client_port, PSH_ACK)
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
    let c = Connection::open(LO);
    let mut config = web_config(c.server_port, 0);
    config.web_ports = [0; WEB_PORTS];
    let mut h = load_with(&config);
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    assert!(samples(&mut h).is_empty());
}

#[test]
fn short_and_malformed_payloads_are_safe() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, 0));
    // Fewer than four payload bytes.
    for short in [&b"G"[..], b"GE", b"GET"] {
        pass(&mut h, &to_server(&c, PSH_ACK).payload(short).build());
    }
    // An IPv4 total length that claims more than the frame holds.
    let mut lying = to_server(&c, PSH_ACK).payload(REQUEST).build();
    let l3 = 14;
    lying[l3 + 2..l3 + 4].copy_from_slice(&1500u16.to_be_bytes());
    pass(&mut h, &lying);
    // A TCP data offset that points past the frame (15 words = 60 bytes of header).
    let mut offset = to_server(&c, PSH_ACK).payload(b"GET ").build();
    offset[l3 + 20 + 12] = 15 << 4;
    pass(&mut h, &offset);
    // An IPv4 header length that points past the TCP header.
    let mut ihl = to_server(&c, PSH_ACK).payload(b"GET /").build();
    ihl[l3] = 0x4f;
    pass(&mut h, &ihl);
    assert!(samples(&mut h).is_empty());
}

#[test]
fn drop_mode_samples_too() {
    let c = Connection::open(LO);
    let mut h = load_with(&web_config(c.server_port, FLAG_DROP));
    pass(&mut h, &to_server(&c, PSH_ACK).payload(REQUEST).build());
    assert_eq!(samples(&mut h).len(), 1);
    // The bare-ACK handshake check still runs (and passes) on a web port.
    pass(&mut h, &to_server(&c, tcp_flags::ACK).build());
}
