//! Kernel tests of the host's own traffic: the TC egress program records outbound flows, the XDP
//! program recognises replies to them (never probes), and failed outbound attempts feed egress
//! scan detection. Both programs run under `BPF_PROG_TEST_RUN` on one set of maps.

use std::net::{Ipv4Addr, Ipv6Addr};

use scanwatch_common::{
    addr::{DEFAULT_IPV6_PREFIX_LEN, SourceKey},
    classify::PacketClass,
    config::{FLAG_NO_ADMISSION, FLAG_NO_EGRESS, KernelConfig},
    distinct::bits_for_count,
    event::{DIRECTION_EGRESS, DIRECTION_INGRESS, DetectionKind},
    maps,
    owner::comm_name,
    stats::Counter,
};
use scanwatch_tests::{
    harness::{Harness, Object, XDP_PASS},
    packet::{
        Ext, PacketBuilder,
        tcp_flags::{ACK, FIN, RST, SYN},
    },
    require_root,
};

/// This host.
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A resolver / server it talks to.
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// This host and a server, over IPv6.
const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x53, 0, 0, 0, 0x53);
/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;
const T0: u64 = 1_000 * 1_000_000_000;
const SECOND: u64 = 1_000_000_000;

/// Admission off (every probe counts from the first), a fixed clock, low thresholds both ways.
fn config() -> KernelConfig {
    let mut c = KernelConfig {
        flags: FLAG_NO_ADMISSION,
        clock_override_ns: T0,
        hash_seed: 7,
        ..KernelConfig::default()
    };
    for kind in DetectionKind::ALL {
        let n = 10;
        let bits = scanwatch_common::state::SourceState::estimator_bits(kind);
        let units = bits.map_or(n, |b| bits_for_count(n, b));
        c.thresholds[kind as usize] = units;
        c.egress_thresholds[kind as usize] = units;
    }
    c
}

fn load(config: &KernelConfig) -> Harness {
    require_root();
    let mut h = Harness::load().expect("load");
    h.set_config(config).expect("config");
    h
}

fn egress(h: &mut Harness, p: &PacketBuilder) {
    assert_eq!(h.run_egress(&p.build()).expect("egress run"), TC_ACT_UNSPEC);
}

fn ingress(h: &mut Harness, p: &PacketBuilder) {
    assert_eq!(h.run(&p.build()).expect("ingress run"), XDP_PASS);
}

/// This host's SYN from port 41000 to `port` of the remote, answered with a segment with
/// `flags` (a RST: the port is closed).
fn refused_connect(h: &mut Harness, port: u16, flags: u8) {
    egress(
        h,
        &PacketBuilder::new(LOCAL, REMOTE).syn(port).src_port(41_000),
    );
    ingress(
        h,
        &PacketBuilder::new(REMOTE, LOCAL)
            .src_port(port)
            .tcp(41_000, flags),
    );
}

/// A DNS-style query from this host's `port` to the resolver's port 53.
fn dns_query(port: u16) -> PacketBuilder {
    PacketBuilder::new(LOCAL, REMOTE).udp(53).src_port(port)
}

/// The resolver's answer from port 53 to this host's `port`.
fn dns_answer(port: u16) -> PacketBuilder {
    PacketBuilder::new(REMOTE, LOCAL).src_port(53).udp(port)
}

fn key(ip: Ipv4Addr) -> SourceKey {
    SourceKey::from_ipv4(ip.octets())
}

#[test]
fn answer_to_recorded_dns_query_is_a_reply() {
    let mut h = load(&config());
    // 50 queries from 50 local ports, each answered from port 53.
    for i in 0..50u16 {
        egress(&mut h, &dns_query(30_000 + i));
        ingress(&mut h, &dns_answer(30_000 + i));
    }
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 50);
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 50);
    assert!(
        h.tracked(&key(REMOTE)).unwrap().is_none(),
        "answers leave no state"
    );
    assert!(h.events().is_empty());
}

#[test]
fn same_answers_without_queries_are_probes() {
    let mut h = load(&config());
    for i in 0..50u16 {
        ingress(&mut h, &dns_answer(30_000 + i));
    }
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 0);
    let state = h
        .tracked(&key(REMOTE))
        .unwrap()
        .expect("tracked as a prober");
    assert_eq!(state.probes[PacketClass::Udp as usize], 50);
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == DetectionKind::UdpScan as u32 && e.direction == DIRECTION_INGRESS),
        "source port 53 is no excuse: a UDP scan from port 53 is reported"
    );
}

#[test]
fn reply_must_match_ports_and_addresses() {
    let mut h = load(&config());
    egress(&mut h, &dns_query(30_000));
    // Wrong local port, wrong remote port, wrong remote address: probes.
    ingress(&mut h, &dns_answer(30_001));
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE, LOCAL).src_port(54).udp(30_000),
    );
    let other = Ipv4Addr::new(198, 51, 100, 54);
    ingress(
        &mut h,
        &PacketBuilder::new(other, LOCAL).src_port(53).udp(30_000),
    );
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 0);
    assert_eq!(
        h.tracked(&key(REMOTE)).unwrap().unwrap().probes[PacketClass::Udp as usize],
        2
    );
    assert!(h.tracked(&key(other)).unwrap().is_some());
}

#[test]
fn fin_ack_closing_our_connection_is_a_reply() {
    let mut h = load(&config());
    for i in 0..30u16 {
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, REMOTE)
                .syn(443)
                .src_port(40_000 + i),
        );
        ingress(
            &mut h,
            &PacketBuilder::new(REMOTE, LOCAL)
                .src_port(443)
                .tcp(40_000 + i, FIN | ACK),
        );
    }
    assert_eq!(h.counter(Counter::RepliesTcp).unwrap(), 30);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_none());
}

#[test]
fn icmp_port_unreachable_quoting_our_datagram_is_a_reply_and_a_failure() {
    let mut h = load(&config());
    let probe = PacketBuilder::new(LOCAL, REMOTE)
        .udp(33_434)
        .src_port(50_000);
    egress(&mut h, &probe);
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE, LOCAL).icmp_error_quoting(3, 3, &probe),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 1);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_none());
    let state = h.egress_state(&key(LOCAL)).unwrap().expect("egress state");
    assert_eq!(state.measures[DetectionKind::UdpScan as usize], 1);
    // An error quoting a datagram we never sent matches nothing.
    let forged = PacketBuilder::new(LOCAL, REMOTE)
        .udp(33_435)
        .src_port(50_001);
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE, LOCAL).icmp_error_quoting(3, 3, &forged),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 1);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
}

#[test]
fn full_flow_map_forgets_oldest_flows_whose_replies_then_count() {
    require_root();
    let mut h = Harness::load_sized(Object::Product, &[(maps::FLOWS, 64)]).expect("load");
    h.set_config(&config()).unwrap();
    for i in 0..1000u16 {
        egress(&mut h, &dns_query(20_000 + i));
    }
    // The newest query's answer is a reply; the oldest one's flow was evicted, so its answer
    // counts as a probe (one port: far below any threshold).
    ingress(&mut h, &dns_answer(20_999));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    ingress(&mut h, &dns_answer(20_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    let state = h
        .tracked(&key(REMOTE))
        .unwrap()
        .expect("late answer counted");
    assert_eq!(state.probes[PacketClass::Udp as usize], 1);
    assert!(h.events().is_empty());
}

#[test]
fn expired_flow_no_longer_matches() {
    let mut c = config();
    c.flow_timeout_ns = 10 * SECOND;
    let mut h = load(&c);
    egress(&mut h, &dns_query(30_000));
    c.clock_override_ns = T0 + 9 * SECOND;
    h.set_config(&c).unwrap();
    ingress(&mut h, &dns_answer(30_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    c.clock_override_ns = T0 + 11 * SECOND;
    h.set_config(&c).unwrap();
    ingress(&mut h, &dns_answer(30_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_some());
}

#[test]
fn refused_outbound_connections_to_many_ports_are_an_egress_port_scan() {
    let mut h = load(&config());
    for port in 1..=30u16 {
        refused_connect(&mut h, port, RST | ACK);
    }
    let events = h.events();
    let scan = events
        .iter()
        .find(|e| e.kind == DetectionKind::PortScan as u32)
        .expect("egress port scan");
    assert_eq!(scan.direction, DIRECTION_EGRESS);
    assert_eq!(scan.source, key(LOCAL), "the source is this host");
    assert_eq!(scan.target, key(REMOTE).addr, "an example target");
    assert!(events.iter().all(|e| e.direction == DIRECTION_EGRESS));
    assert!(
        h.tracked(&key(REMOTE)).unwrap().is_none(),
        "RSTs are not probes"
    );
}

#[test]
fn successful_connections_to_many_services_are_not_a_scan() {
    let mut h = load(&config());
    // A poller: 50 services on 50 hosts, every SYN answered with SYN-ACK.
    for i in 0..50u16 {
        let server = Ipv4Addr::new(203, 0, 113, i as u8 + 1);
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, server)
                .syn(8000 + i)
                .src_port(42_000 + i),
        );
        ingress(
            &mut h,
            &PacketBuilder::new(server, LOCAL)
                .src_port(8000 + i)
                .tcp(42_000 + i, SYN | ACK),
        );
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, server)
                .tcp(8000 + i, ACK)
                .src_port(42_000 + i),
        );
    }
    assert_eq!(h.counter(Counter::RepliesTcp).unwrap(), 50);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(
        h.events().is_empty(),
        "no finding for successful connections"
    );
}

#[test]
fn pinging_many_hosts_is_an_egress_icmp_sweep() {
    let mut h = load(&config());
    for i in 1..=30u8 {
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, Ipv4Addr::new(203, 0, 113, i))
                .echo_request()
                .src_port(7),
        );
    }
    let events = h.events();
    let sweep = events
        .iter()
        .find(|e| e.kind == DetectionKind::IcmpSweep as u32)
        .expect("egress icmp sweep");
    assert_eq!(sweep.direction, DIRECTION_EGRESS);
    assert_eq!(sweep.source, key(LOCAL));
    // Echo replies from those hosts are not probes.
    ingress(
        &mut h,
        &PacketBuilder::new(Ipv4Addr::new(203, 0, 113, 1), LOCAL)
            .icmp(0, 0)
            .src_port(7),
    );
    assert!(
        h.tracked(&key(Ipv4Addr::new(203, 0, 113, 1)))
            .unwrap()
            .is_none()
    );
}

#[test]
fn pinging_one_host_often_is_not_a_sweep() {
    let mut h = load(&config());
    for seq in 0..100u16 {
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, REMOTE)
                .echo_request()
                .src_port(seq),
        );
    }
    assert!(h.events().is_empty());
}

#[test]
fn egress_switch_off_keeps_reply_recognition() {
    let mut c = config();
    c.flags |= FLAG_NO_EGRESS;
    let mut h = load(&c);
    for port in 1..=30u16 {
        refused_connect(&mut h, port, RST);
        egress(&mut h, &dns_query(port));
        ingress(&mut h, &dns_answer(port));
    }
    assert_eq!(h.counter(Counter::RepliesTcp).unwrap(), 30);
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 30);
    assert!(h.events().is_empty());
    assert!(h.egress_state(&key(LOCAL)).unwrap().is_none());
}

#[test]
fn established_egress_traffic_records_nothing() {
    let mut h = load(&config());
    for _ in 0..100 {
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, REMOTE)
                .tcp(443, ACK)
                .src_port(40_000),
        );
    }
    assert_eq!(h.counter(Counter::EgressPackets).unwrap(), 100);
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 0);
}

#[test]
fn reset_of_an_answered_connection_is_not_a_failure() {
    let mut h = load(&config());
    // A crawler: 30 servers each accept (SYN-ACK), then reset the connection at its end.
    for i in 1..=30u8 {
        let server = Ipv4Addr::new(203, 0, 113, i);
        let port = 43_000 + u16::from(i);
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, server).syn(443).src_port(port),
        );
        ingress(
            &mut h,
            &PacketBuilder::new(server, LOCAL)
                .src_port(443)
                .tcp(port, SYN | ACK),
        );
        ingress(
            &mut h,
            &PacketBuilder::new(server, LOCAL)
                .src_port(443)
                .tcp(port, RST | ACK),
        );
    }
    assert_eq!(h.counter(Counter::RepliesTcp).unwrap(), 60);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(h.events().is_empty());
    // A new SYN on the same tuple is a new attempt: refused, it is a failure again.
    let server = Ipv4Addr::new(203, 0, 113, 1);
    egress(
        &mut h,
        &PacketBuilder::new(LOCAL, server).syn(443).src_port(43_001),
    );
    ingress(
        &mut h,
        &PacketBuilder::new(server, LOCAL)
            .src_port(443)
            .tcp(43_001, RST | ACK),
    );
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
}

#[test]
fn path_mtu_time_exceeded_and_redirect_errors_are_replies_not_failures() {
    let mut h = load(&config());
    let udp = PacketBuilder::new(LOCAL, REMOTE)
        .udp(33_434)
        .src_port(50_000);
    let tcp = PacketBuilder::new(LOCAL, REMOTE).syn(443).src_port(41_000);
    egress(&mut h, &udp);
    egress(&mut h, &tcp);
    // Fragmentation needed, time exceeded (TTL and reassembly), redirect, parameter problem,
    // source quench: from any router on the path, answering both flows.
    let not_failures = [(3, 4), (11, 0), (11, 1), (5, 1), (12, 0), (4, 0)];
    for (t, c) in not_failures {
        for flow in [&udp, &tcp] {
            ingress(
                &mut h,
                &PacketBuilder::new(REMOTE, LOCAL).icmp_error_quoting(t, c, flow),
            );
        }
    }
    let replies = 2 * not_failures.len() as u64;
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), replies);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_none());
    // Port unreachable still is a failed attempt.
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE, LOCAL).icmp_error_quoting(3, 3, &udp),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), replies + 1);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
}

#[test]
fn icmpv6_packet_too_big_is_a_reply_and_port_unreachable_a_failure() {
    let mut h = load(&config());
    let udp = PacketBuilder::new(LOCAL6, REMOTE6)
        .udp(33_434)
        .src_port(50_000);
    let tcp = PacketBuilder::new(LOCAL6, REMOTE6)
        .syn(443)
        .src_port(41_000);
    egress(&mut h, &udp);
    egress(&mut h, &tcp);
    // Packet too big, time exceeded, parameter problem.
    for (t, c) in [(2, 0), (3, 0), (4, 0)] {
        for flow in [&udp, &tcp] {
            ingress(
                &mut h,
                &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(t, c, flow),
            );
        }
    }
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 6);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(
        h.tracked(&SourceKey::from_ipv6(
            REMOTE6.octets(),
            DEFAULT_IPV6_PREFIX_LEN
        ))
        .unwrap()
        .is_none()
    );
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(1, 4, &udp),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 7);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
}

#[test]
fn icmpv6_error_quoting_datagram_with_extension_headers_is_a_reply() {
    let mut h = load(&config());
    let flows = [
        vec![Ext::HopByHop],
        vec![Ext::DestOpts],
        vec![Ext::HopByHop, Ext::DestOpts],
        vec![Ext::HopByHop, Ext::Routing, Ext::DestOpts],
    ];
    for (i, exts) in flows.iter().enumerate() {
        let port = 50_000 + i as u16;
        let mut probe = PacketBuilder::new(LOCAL6, REMOTE6)
            .udp(33_434)
            .src_port(port);
        for ext in exts {
            probe = probe.ext(*ext);
        }
        egress(&mut h, &probe);
        ingress(
            &mut h,
            &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(1, 4, &probe),
        );
        assert_eq!(
            h.counter(Counter::RepliesIcmp).unwrap(),
            i as u64 + 1,
            "{exts:?}"
        );
        assert_eq!(h.counter(Counter::EgressFailures).unwrap(), i as u64 + 1);
    }
    // The same error quoting a datagram we never sent still matches nothing.
    let forged = PacketBuilder::new(LOCAL6, REMOTE6)
        .udp(33_435)
        .src_port(60_000)
        .ext(Ext::HopByHop);
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(1, 4, &forged),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), flows.len() as u64);
    assert_eq!(
        h.counter(Counter::EgressFailures).unwrap(),
        flows.len() as u64
    );
}

#[test]
fn icmpv6_error_quoting_a_non_first_fragment_matches_nothing() {
    let mut h = load(&config());
    let probe = PacketBuilder::new(LOCAL6, REMOTE6)
        .udp(33_434)
        .src_port(50_000);
    egress(&mut h, &probe);
    // A later fragment carries payload where the ports would be: not a quote of our flow,
    // even when those bytes look like its ports.
    let fragment = probe.clone().ext(Ext::Fragment {
        offset: 185,
        more: false,
    });
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(1, 4, &fragment),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 0);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    // The first fragment has the ports: it is our flow.
    let first = probe.ext(Ext::Fragment {
        offset: 0,
        more: true,
    });
    ingress(
        &mut h,
        &PacketBuilder::new(REMOTE6, LOCAL6).icmp_error_quoting(1, 4, &first),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 1);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Only flows the host opens are flows
// ---------------------------------------------------------------------------------------------

/// A client of this host's own UDP service (port 53).
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// A query from `client`:`port` to this host's service on port 53.
fn inbound_query(client: Ipv4Addr, port: u16) -> PacketBuilder {
    PacketBuilder::new(client, LOCAL).src_port(port).udp(53)
}

/// This host's answer from port 53 to `client`:`port`.
fn our_answer(client: Ipv4Addr, port: u16) -> PacketBuilder {
    PacketBuilder::new(LOCAL, client).src_port(53).udp(port)
}

#[test]
fn udp_answer_to_an_inbound_query_records_no_flow() {
    let mut h = load(&config());
    ingress(&mut h, &inbound_query(CLIENT, 5_353));
    assert_eq!(h.counter(Counter::InboundNoted).unwrap(), 1);
    let answer = our_answer(CLIENT, 5_353);
    egress(&mut h, &answer);
    egress(&mut h, &answer);
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 0);
    assert_eq!(h.counter(Counter::EgressAnswers).unwrap(), 2);
    // The client has gone: its port unreachable about our answer is no failure of ours.
    ingress(
        &mut h,
        &PacketBuilder::new(CLIENT, LOCAL).icmp_error_quoting(3, 3, &answer),
    );
    assert_eq!(h.counter(Counter::RepliesIcmp).unwrap(), 0);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(h.egress_state(&key(LOCAL)).unwrap().is_none());
}

#[test]
fn answers_to_many_departed_clients_are_no_egress_udp_scan() {
    let mut h = load(&config());
    for i in 0..200u16 {
        let client = Ipv4Addr::new(203, 0, 113, (i % 250) as u8);
        ingress(&mut h, &inbound_query(client, 40_000 + i));
        let answer = our_answer(client, 40_000 + i);
        egress(&mut h, &answer);
        ingress(
            &mut h,
            &PacketBuilder::new(client, LOCAL).icmp_error_quoting(3, 3, &answer),
        );
    }
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 0);
    assert_eq!(h.counter(Counter::EgressFailures).unwrap(), 0);
    assert!(h.events().iter().all(|e| e.direction != DIRECTION_EGRESS));
}

#[test]
fn client_query_still_records_a_flow_next_to_served_conversations() {
    let mut h = load(&config());
    // The host serves a client, and resolves a name itself through REMOTE.
    ingress(&mut h, &inbound_query(CLIENT, 5_353));
    egress(&mut h, &our_answer(CLIENT, 5_353));
    egress(&mut h, &dns_query(33_000));
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 1);
    ingress(&mut h, &dns_answer(33_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    // A reply is not an inbound conversation.
    assert_eq!(h.counter(Counter::InboundNoted).unwrap(), 1);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_none());
}

#[test]
fn forged_late_reply_still_counts_as_a_probe() {
    let mut c = config();
    c.flow_timeout_ns = 10 * SECOND;
    let mut h = load(&c);
    // Never queried: a probe.
    ingress(&mut h, &dns_answer(30_001));
    // Queried, but the flow aged out: a probe too.
    egress(&mut h, &dns_query(30_000));
    c.clock_override_ns = T0 + 11 * SECOND;
    h.set_config(&c).unwrap();
    ingress(&mut h, &dns_answer(30_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 0);
    let state = h
        .tracked(&key(REMOTE))
        .unwrap()
        .expect("late replies counted");
    assert_eq!(state.probes[PacketClass::Udp as usize], 2);
}

#[test]
fn inbound_conversation_older_than_flow_timeout_no_longer_hides_our_datagrams() {
    let mut c = config();
    c.flow_timeout_ns = 10 * SECOND;
    let mut h = load(&c);
    ingress(&mut h, &inbound_query(CLIENT, 5_353));
    c.clock_override_ns = T0 + 11 * SECOND;
    h.set_config(&c).unwrap();
    egress(&mut h, &our_answer(CLIENT, 5_353));
    assert_eq!(h.counter(Counter::EgressAnswers).unwrap(), 0);
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 1);
}

#[test]
fn inbound_conversation_that_keeps_talking_stays_live() {
    let mut c = config();
    c.flow_timeout_ns = 10 * SECOND;
    let mut h = load(&c);
    ingress(&mut h, &inbound_query(CLIENT, 5_353));
    c.clock_override_ns = T0 + 9 * SECOND;
    h.set_config(&c).unwrap();
    ingress(&mut h, &inbound_query(CLIENT, 5_353));
    // One conversation, its time refreshed: 15 s after it began, 6 s after its last datagram.
    assert_eq!(h.counter(Counter::InboundNoted).unwrap(), 1);
    c.clock_override_ns = T0 + 15 * SECOND;
    h.set_config(&c).unwrap();
    egress(&mut h, &our_answer(CLIENT, 5_353));
    assert_eq!(h.counter(Counter::EgressAnswers).unwrap(), 1);
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 0);
}

#[test]
fn syn_ack_and_reset_the_host_sends_record_no_flow() {
    let mut h = load(&config());
    for flags in [SYN | ACK, RST, RST | ACK] {
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, CLIENT)
                .src_port(22)
                .tcp(50_000, flags),
        );
    }
    egress(&mut h, &PacketBuilder::new(LOCAL, CLIENT).icmp(3, 3));
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Flows survive floods
// ---------------------------------------------------------------------------------------------

/// A flow map of 1024 entries; floods of 20 times that. (`INBOUND` is a fixed array whose slot
/// mask is compiled into the program, so it keeps its size; a flood only overwrites slots.)
const SMALL_MAP: u32 = 1_024;
const FLOOD: u32 = 20 * SMALL_MAP;

fn load_small(config: &KernelConfig) -> Harness {
    require_root();
    let mut h = Harness::load_sized(Object::Product, &[(maps::FLOWS, SMALL_MAP)]).expect("load");
    h.set_config(config).unwrap();
    h
}

/// The `i`th spoofed source of a flood: 10.x.y.z, every one distinct.
fn spoofed(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 | i)
}

#[test]
fn spoofed_query_flood_at_a_udp_service_leaves_resolver_flows_recognised() {
    let mut h = load_small(&config());
    egress(&mut h, &dns_query(33_000));
    for i in 0..FLOOD {
        let port = 1_024 + (i % 60_000) as u16;
        ingress(&mut h, &inbound_query(spoofed(i), port));
        // The host answers each one; the resolver query goes on in the meantime, less often
        // than the flood fills the maps (had the answers been flows, the query's would go).
        egress(&mut h, &our_answer(spoofed(i), port));
        if i % (4 * SMALL_MAP) == 0 {
            egress(&mut h, &dns_query(33_000));
        }
    }
    assert_eq!(h.counter(Counter::EgressAnswers).unwrap(), u64::from(FLOOD));
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 1);
    ingress(&mut h, &dns_answer(33_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
    assert!(h.tracked(&key(REMOTE)).unwrap().is_none());
}

#[test]
fn lagging_answers_to_a_query_flood_leak_only_their_share_into_flows() {
    // Each answer leaves after LAG more spoofed queries arrived: its conversation's slot faced
    // LAG overwrites of random slots, so it survives with probability (1 - 1/slots)^LAG.
    const LAG: u32 = 4_096;
    let mut h = load_small(&config());
    egress(&mut h, &dns_query(33_000));
    let port = |i: u32| 1_024 + (i % 60_000) as u16;
    for i in 0..FLOOD + LAG {
        if i < FLOOD {
            ingress(&mut h, &inbound_query(spoofed(i), port(i)));
        }
        if let Some(j) = i.checked_sub(LAG) {
            egress(&mut h, &our_answer(spoofed(j), port(j)));
        }
        if i % (4 * SMALL_MAP) == 0 {
            egress(&mut h, &dns_query(33_000));
        }
    }
    // The answers whose note was overwritten are exactly the `EgressAnswers` missing, and each
    // was recorded as a flow (what every answer was before INBOUND).
    let leaked = u64::from(FLOOD) - h.counter(Counter::EgressAnswers).unwrap();
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 1 + leaked);
    let slots = f64::from(maps::INBOUND_SLOTS);
    let expected = f64::from(FLOOD) * (1.0 - (-f64::from(LAG) / slots).exp());
    assert!(
        (expected * 0.7..=expected * 1.3).contains(&(leaked as f64)),
        "{leaked} answers leaked, {expected:.0} expected"
    );
    // The leaked answers went into FLOWS; the resolver's flow is still there.
    ingress(&mut h, &dns_answer(33_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
}

#[test]
fn inbound_syn_flood_leaves_resolver_flows_recognised() {
    let mut h = load_small(&config());
    egress(&mut h, &dns_query(33_000));
    for i in 0..FLOOD {
        let port = 1_024 + (i % 60_000) as u16;
        ingress(
            &mut h,
            &PacketBuilder::new(spoofed(i), LOCAL)
                .src_port(port)
                .syn(443),
        );
        // SYN-ACK, or RST from a closed port.
        let flags = if i % 2 == 0 { SYN | ACK } else { RST | ACK };
        egress(
            &mut h,
            &PacketBuilder::new(LOCAL, spoofed(i))
                .src_port(443)
                .tcp(port, flags),
        );
    }
    assert_eq!(h.counter(Counter::FlowsRecorded).unwrap(), 1);
    ingress(&mut h, &dns_answer(33_000));
    assert_eq!(h.counter(Counter::RepliesUdp).unwrap(), 1);
}

/// Both builds of the egress program the loader chooses between — recording senders (Linux
/// 6.10 and later) or not (older kernels refuse the current-task helpers in TC programs) — load
/// and detect alike. A test run gives each packet a socket of its own, made by this thread: the
/// egress event names the crossing probe's socket, and the build that records senders holds
/// this process as its sender, with the probe's headers; the other holds nothing.
#[test]
fn both_builds_report_egress_scans_and_one_names_the_sending_process() {
    require_root();
    let thread_comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    for owners in [true, false] {
        let mut h = Harness::load_owners(owners).expect("load");
        h.set_config(&config()).expect("config");
        for port in 1..=12 {
            refused_connect(&mut h, port, RST | ACK);
        }
        let events = h.events();
        let scan = events
            .iter()
            .find(|e| e.direction == DIRECTION_EGRESS && e.kind == DetectionKind::PortScan as u32)
            .unwrap_or_else(|| panic!("owners {owners}: no egress port_scan in {events:?}"));
        assert_ne!(scan.sender.cookie, 0, "owners {owners}: the probe's socket");
        assert_ne!(scan.sender.cgroup, 0, "owners {owners}: its cgroup");
        let owner = h.owner(scan.sender.cookie).unwrap();
        let recorded = h.counter(Counter::OwnersRecorded).unwrap();
        if !owners {
            assert_eq!(
                (owner, recorded),
                (None, 0),
                "nothing recorded without the helpers"
            );
            continue;
        }
        // One socket per test run: the 12 SYNs, each recorded once (the RSTs are not sent).
        assert_eq!(recorded, 12);
        let owner = owner.expect("the crossing probe's socket recorded");
        assert_eq!(owner.tgid, std::process::id());
        assert_eq!(owner.uid, 0);
        assert_eq!(
            owner.cgroup, scan.sender.cgroup,
            "the sender is in the socket's cgroup"
        );
        assert_eq!(comm_name(&owner.comm), Some(thread_comm.trim_end()));
        // The sample is the probe from its IP header: IPv4, TCP, to the port that crossed.
        let bytes = owner.sample.data();
        assert_eq!(bytes.len(), 40, "IPv4 and TCP headers, no options");
        assert_eq!((bytes[0] >> 4, bytes[9]), (4, 6));
        assert_eq!(u16::from_be_bytes([bytes[22], bytes[23]]), scan.target_port);
    }
}
