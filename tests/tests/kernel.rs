//! Kernel tests: the real XDP object under BPF_PROG_TEST_RUN.
use scanwatch_tests::{harness::*, packet::PacketBuilder, require_root};
use std::net::Ipv4Addr;

#[test]
fn loads_and_passes() {
    require_root();
    let mut h = Harness::load().unwrap();
    let f = PacketBuilder::new(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1))
        .syn(80)
        .build();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
}
