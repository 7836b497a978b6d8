//! Replies never count.

use scanwatch_common::{classify::PacketClass, event::DETECTION_KINDS, stats::COUNTER_BASE};
use scanwatch_tests::packet::{
    PacketBuilder,
    tcp_flags::{ACK, RST, SYN},
};

use crate::{
    TARGET_V4, TARGET_V6, doc_v4, doc_v6_target, load_with, no_admission, send, tracking_counters,
};

#[test]
fn replies_to_many_ports_and_hosts_leave_no_state() {
    // A busy server answers many clients: SYN-ACKs, RSTs and ICMP errors to many ports and
    // hosts must never make it look like a scanner, whatever the thresholds.
    let mut config = no_admission();
    config.thresholds = [1; DETECTION_KINDS];
    let mut h = load_with(&config);
    let server_v4 = TARGET_V4;
    let server_v6 = TARGET_V6;
    for i in 0..300u32 {
        let client_v4 = doc_v4(i % 256 + 512);
        let client_v6 = doc_v6_target(0x1_0000 + i);
        let port = 1024 + i as u16;
        for f in [
            PacketBuilder::new(server_v4, client_v4).tcp(port, SYN | ACK),
            PacketBuilder::new(server_v4, client_v4).tcp(port, RST),
            PacketBuilder::new(server_v4, client_v4).tcp(port, RST | ACK),
            PacketBuilder::new(server_v4, client_v4).icmp(3, 3),
            PacketBuilder::new(server_v4, client_v4).icmp(11, 0),
            PacketBuilder::new(server_v4, client_v4).icmp(0, 0),
            PacketBuilder::new(server_v6, client_v6).tcp(port, SYN | ACK),
            PacketBuilder::new(server_v6, client_v6).tcp(port, RST),
            PacketBuilder::new(server_v6, client_v6).icmp(1, 4),
            PacketBuilder::new(server_v6, client_v6).icmp(129, 0),
        ] {
            send(&mut h, f);
        }
    }
    assert_eq!(h.tracked_count().unwrap(), 0);
    assert_eq!(tracking_counters(&h), [0; 3]);
    assert!(h.events().is_empty());
    assert_eq!(h.class_count(PacketClass::TcpOther).unwrap(), 300 * 5);
    assert_eq!(h.class_count(PacketClass::IcmpOther).unwrap(), 300 * 5);
    let counters: u64 = h.stats().unwrap()[COUNTER_BASE as usize..].iter().sum();
    assert_eq!(counters, 0, "no data-path counter moved");
    let probes: u64 = PacketClass::ALL
        .iter()
        .filter(|c| c.is_probe())
        .map(|c| h.class_count(*c).unwrap())
        .sum();
    assert_eq!(probes, 0);
}
