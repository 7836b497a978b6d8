//! Loading: the product and bench objects pass the verifier and a SYN.

use scanwatch_common::classify::PacketClass;
use scanwatch_tests::{
    harness::{Harness, Object, XDP_PASS},
    require_root,
};

use crate::{load, scan_v4};

#[test]
fn product_program_loads_and_passes_a_syn() {
    let mut h = load();
    let f = scan_v4().syn(80).build();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
}

#[test]
fn bench_programs_load_and_pass_a_syn() {
    require_root();
    let f = scan_v4().syn(80).build();
    let mut h = Harness::load_with(Object::Empty, None).unwrap();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
    let mut h = Harness::load_with(Object::SpoofBench, None).unwrap();
    assert_eq!(h.run(&f).unwrap(), XDP_PASS);
    assert_eq!(h.class_count(PacketClass::TcpSyn).unwrap(), 1);
}
