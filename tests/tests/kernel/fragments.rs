//! fragment_scan counts distinct datagrams (destination and IP identification), so forged
//! tiny fragments cost as many packets as a port scan before any finding.

use scanwatch::config::Sensitivity;
use scanwatch_common::{
    config::{FLAG_NO_ADMISSION, KernelConfig},
    distinct::bits_for_count,
    event::DetectionKind,
    state::SourceState,
};
use scanwatch_tests::packet::{Ext, PacketBuilder};

use crate::{SCANNER_V4, SCANNER_V6, T0, TARGET_V4, TARGET_V6, key_of, load_with, send};

const KIND: DetectionKind = DetectionKind::FragmentScan;

/// The default (medium) thresholds in kernel units, as the daemon writes them.
fn default_config(flags: u32) -> KernelConfig {
    let mut config = KernelConfig {
        clock_override_ns: T0,
        flags,
        ..KernelConfig::default()
    };
    for kind in DetectionKind::ALL {
        let count = Sensitivity::Medium.thresholds()[kind as usize];
        config.thresholds[kind as usize] =
            SourceState::estimator_bits(kind).map_or(count, |bits| bits_for_count(count, bits));
    }
    config
}

fn tiny_v4(id: u32) -> PacketBuilder {
    PacketBuilder::new(SCANNER_V4, TARGET_V4)
        .ipv4_fragment(0, true)
        .syn(80)
        .l4_len(8)
        .ident(id)
}

fn tiny_v6(id: u32) -> PacketBuilder {
    PacketBuilder::new(SCANNER_V6, TARGET_V6)
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
        .syn(80)
        .l4_len(8)
        .ident(id)
}

#[test]
fn six_forged_fragments_cross_nothing() {
    // Same datagram six times, then six different datagrams; admission filter on, as deployed.
    for distinct in [false, true] {
        let mut h = load_with(&default_config(0));
        for i in 0..6 {
            send(&mut h, tiny_v4(if distinct { i } else { 7 }));
            send(&mut h, tiny_v6(if distinct { i } else { 7 }));
        }
        assert!(h.events().is_empty(), "distinct datagrams: {distinct}");
        for key in [key_of(SCANNER_V4), key_of(SCANNER_V6)] {
            let state = h.tracked(&key).unwrap().expect("tracked after six");
            let expected = if distinct { 5 } else { 1 };
            assert!(state.measures[KIND as usize] <= expected, "{distinct}");
        }
    }
}

#[test]
fn repeating_one_datagram_counts_once() {
    let mut h = load_with(&default_config(FLAG_NO_ADMISSION));
    for _ in 0..100 {
        send(&mut h, tiny_v4(42));
    }
    let state = h.tracked(&key_of(SCANNER_V4)).unwrap().unwrap();
    assert_eq!(state.measures[KIND as usize], 1);
    assert!(h.events().is_empty());
}

#[test]
fn distinct_datagrams_cross_at_the_threshold() {
    let config = default_config(FLAG_NO_ADMISSION);
    let threshold = config.thresholds[KIND as usize];
    assert!(
        threshold >= 19,
        "default comparable to port_scan, got {threshold}"
    );
    for v6 in [false, true] {
        let mut h = load_with(&config);
        let key = if v6 {
            key_of(SCANNER_V6)
        } else {
            key_of(SCANNER_V4)
        };
        let mut sent = 0;
        loop {
            let before = h
                .tracked(&key)
                .unwrap()
                .map_or(0, |s| s.measures[KIND as usize]);
            send(&mut h, if v6 { tiny_v6(sent) } else { tiny_v4(sent) });
            sent += 1;
            let events = h.events();
            let after = h.tracked(&key).unwrap().unwrap().measures[KIND as usize];
            if after < threshold {
                assert!(events.is_empty(), "no event below the threshold ({after})");
                continue;
            }
            assert_eq!(before + 1, threshold);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].kind, KIND as u32);
            assert_eq!(events[0].measures[KIND as usize], threshold);
            break;
        }
        // A few hash collisions at most among 20 datagrams in 512 bits.
        assert!((threshold..=threshold + 3).contains(&sent), "sent {sent}");
    }
}
