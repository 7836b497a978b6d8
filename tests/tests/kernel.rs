//! Kernel tests: the real XDP object under BPF_PROG_TEST_RUN.
use std::net::Ipv4Addr;

use scanwatch_tests::{harness::*, packet::PacketBuilder, require_root};

#[test]
fn loads_and_passes() {
    require_root();
    let mut h = Harness::load().unwrap();
    let f = PacketBuilder::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1))
        .syn(80)
        .build();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
}

#[test]
fn empty_loads() {
    require_root();
    let mut h = Harness::load_with(Object::Empty, None).unwrap();
    let f = PacketBuilder::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1))
        .syn(80)
        .build();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
    let mut h = Harness::load_with(Object::SpoofBench, None).unwrap();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
}
