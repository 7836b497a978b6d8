//! The walks behind the daemon's gauges (`scanwatch_tracked_sources`, `scanwatch_flows`,
//! `scanwatch_top_source_probes` and the status file): batch lookups must report exactly what a
//! key-by-key walk of the same maps reports, across several batches.

use std::net::Ipv4Addr;

use scanwatch_common::stats::Counter;
use scanwatch_tests::packet::PacketBuilder;

use crate::{TARGET_V4, key_of, load_with, no_admission, send};

/// More than two batches of `scanwatch::kernel::batch::CHUNK` (1024) entries.
const SOURCES: u32 = 2500;
/// Sources given extra probes, so the top list has a known order.
const BUSY: u32 = 5;

/// TC_ACT_UNSPEC: the egress program never decides a packet's fate.
const TC_ACT_UNSPEC: i32 = -1;

/// The `i`th source of 10.0.0.0/8.
fn source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

#[test]
fn tracked_sources_gauge_counts_every_source_exactly() {
    let mut h = load_with(&no_admission());
    for i in 0..SOURCES {
        // Source i < BUSY probes 10 + i ports, every other source one.
        let ports = if i < BUSY { 10 + i } else { 1 };
        for port in 0..ports {
            send(
                &mut h,
                PacketBuilder::new(source(i), TARGET_V4).syn(1000 + port as u16),
            );
        }
    }
    let (tracked, top) = h.tracked_top(3).unwrap();
    assert_eq!(tracked, SOURCES as usize, "batch walk count");
    assert_eq!(h.tracked_count().unwrap(), SOURCES as usize);
    assert_eq!(
        h.tracked_keys().unwrap().len(),
        SOURCES as usize,
        "the key-by-key walk agrees"
    );
    // The top list: the busiest sources, most first, with the probes a per-key read gives.
    let expected: Vec<_> = (BUSY - 3..BUSY)
        .rev()
        .map(|i| {
            let key = key_of(source(i));
            let state = h.tracked(&key).unwrap().expect("busy source tracked");
            (key, state.probes.iter().map(|n| u64::from(*n)).sum::<u64>())
        })
        .collect();
    assert_eq!(top, expected);
    assert!(
        top.windows(2).all(|w| w[0].1 > w[1].1),
        "distinct probe counts, most first: {top:?}"
    );
}

#[test]
fn flows_gauge_counts_every_flow_exactly() {
    let mut h = load_with(&no_admission());
    let flows: u16 = 2100;
    for port in 0..flows {
        let syn = PacketBuilder::new(TARGET_V4, Ipv4Addr::new(192, 0, 2, 77))
            .syn(10_000 + port)
            .build();
        assert_eq!(h.run_egress(&syn).unwrap(), TC_ACT_UNSPEC);
    }
    assert_eq!(
        h.counter(Counter::FlowsRecorded).unwrap(),
        u64::from(flows),
        "every SYN opened a flow"
    );
    assert_eq!(h.flow_count().unwrap(), usize::from(flows));
}

#[test]
fn empty_maps_read_as_zero() {
    let h = load_with(&no_admission());
    assert_eq!(h.tracked_top(10).unwrap(), (0, Vec::new()));
    assert_eq!(h.flow_count().unwrap(), 0);
}
