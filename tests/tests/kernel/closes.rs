//! Connections close quietly, however old: a FIN|ACK with no live flow is a close when the
//! kernel holds a socket for its exact 4-tuple, and a probe otherwise.
//!
//! Under `BPF_PROG_TEST_RUN` the XDP program's socket lookups run in the test process's network
//! namespace, so a real connection on 127.0.0.1 is what the program finds.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use scanwatch_common::{classify::PacketClass, stats::Counter};
use scanwatch_tests::{
    loopback::Connection,
    packet::{
        PacketBuilder,
        tcp_flags::{ACK, FIN, RST},
    },
};

use crate::{key_of, load_with, no_admission, send};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn connect() -> Connection {
    connect_on(LO.into())
}

fn connect_on(addr: IpAddr) -> Connection {
    Connection::open(addr)
}

/// A segment from 127.0.0.1:`from` to 127.0.0.1:`to`.
fn segment(from: u16, to: u16, flags: u8) -> PacketBuilder {
    PacketBuilder::new(LO, LO).src_port(from).tcp(to, flags)
}

#[test]
fn fin_ack_of_a_real_connection_without_flow_is_a_close_not_a_probe() {
    let c = connect();
    let mut h = load_with(&no_admission());
    // The peer of either end closes: the kernel holds a socket for both 4-tuples.
    send(&mut h, segment(c.client_port, c.server_port, FIN | ACK));
    send(&mut h, segment(c.server_port, c.client_port, FIN | ACK));
    assert_eq!(h.class_count(PacketClass::TcpMaimon).unwrap(), 2);
    assert_eq!(h.counter(Counter::ConnectionCloses).unwrap(), 2);
    assert!(
        h.tracked(&key_of(LO)).unwrap().is_none(),
        "a close is not a probe"
    );
}

#[test]
fn forged_fin_ack_with_a_wrong_port_is_still_a_probe() {
    let c = connect();
    let mut h = load_with(&no_admission());
    // Right listener port, wrong peer port: the lookup finds only the listener, which is no
    // connection. Then a port with no socket at all.
    let wrong_peer = c.client_port.wrapping_add(1).max(1024);
    send(&mut h, segment(wrong_peer, c.server_port, FIN | ACK));
    send(&mut h, segment(c.server_port, wrong_peer, FIN | ACK));
    assert_eq!(h.counter(Counter::ConnectionCloses).unwrap(), 0);
    let state = h.tracked(&key_of(LO)).unwrap().expect("probes tracked");
    assert_eq!(state.probes[PacketClass::TcpMaimon as usize], 2);
}

#[test]
fn resets_of_a_real_connection_without_flow_are_neither_probes_nor_failures() {
    let c = connect();
    let mut h = load_with(&no_admission());
    send(&mut h, segment(c.client_port, c.server_port, RST));
    send(&mut h, segment(c.client_port, c.server_port, RST | ACK));
    assert_eq!(h.class_count(PacketClass::TcpOther).unwrap(), 2);
    assert!(h.tracked(&key_of(LO)).unwrap().is_none());
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(h.egress_state(&key_of(LO)).unwrap().is_none());
}

#[test]
fn fin_ack_of_a_real_ipv6_connection_without_flow_is_a_close() {
    let lo6 = Ipv6Addr::LOCALHOST;
    let c = connect_on(lo6.into());
    let mut h = load_with(&no_admission());
    send(
        &mut h,
        PacketBuilder::new(lo6, lo6)
            .src_port(c.client_port)
            .tcp(c.server_port, FIN | ACK),
    );
    assert_eq!(h.counter(Counter::ConnectionCloses).unwrap(), 1);
    send(
        &mut h,
        PacketBuilder::new(lo6, lo6)
            .src_port(c.client_port.wrapping_add(1).max(1024))
            .tcp(c.server_port, FIN | ACK),
    );
    assert_eq!(h.counter(Counter::ConnectionCloses).unwrap(), 1);
    let state = h
        .tracked(&key_of(lo6))
        .unwrap()
        .expect("forged close tracked");
    assert_eq!(state.probes[PacketClass::TcpMaimon as usize], 1);
}
