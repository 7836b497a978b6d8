//! Per-destination state for distributed-scan detection (`DetectionKind::DistributedScan`).
//!
//! Many sources, each below every threshold, probing many ports of one destination: the state is
//! keyed by the *destination* address and counts its distinct probed ports, never its sources,
//! so a busy server's many visitors (a few ports each) and NAT'd clients (one address, many
//! connections to one port) stay far below the threshold. Only probes count (SYN, UDP, stealth
//! flag mixes) from sources that are tracked (past the admission filter) and not yet reported in
//! their window: a lone scanner's own port scan stops feeding the target's count once it is
//! reported. A small ring keeps the last distinct contributing sources as the finding's sample.

use crate::{addr::SourceKey, classify::PROBE_CLASSES, state::WideBitmap};

/// Sources kept as a target's sample (the last distinct contributors, a ring).
pub const SAMPLE_SOURCES: usize = 8;

/// One destination's distributed-scan state (352 bytes), tumbling windows as the tracker's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetState {
    /// When the entry was created.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub window_start_ns: u64,
    /// Contributing probes in this window, by probe class.
    pub probes: [u32; PROBE_CLASSES],
    /// Events sent in this window (at the threshold, then at each doubling).
    pub reported: u32,
    /// Bits set in `ports`: the kernel-unit measure compared with the threshold.
    pub ports_set: u32,
    /// Slot of `sources` the next new contributor is written to.
    pub next: u32,
    pub reserved: u32,
    /// Distinct (protocol, port) pairs probed at this destination in this window.
    pub ports: WideBitmap,
    /// The last distinct contributing sources (tracker keys), a ring; all-zero slots are empty.
    pub sources: [SourceKey; SAMPLE_SOURCES],
}

impl TargetState {
    /// The sample, oldest first, without empty slots.
    pub fn sample(&self) -> impl Iterator<Item = SourceKey> + '_ {
        let start = self.next as usize % SAMPLE_SOURCES;
        (0..SAMPLE_SOURCES)
            .map(move |i| self.sources[(start + i) % SAMPLE_SOURCES])
            .filter(|k| *k != SourceKey::default())
    }
}

const _: () = assert!(core::mem::size_of::<TargetState>() == 352);

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn sample_is_oldest_first_without_empty_slots() {
        let mut s = TargetState {
            first_seen_ns: 0,
            last_seen_ns: 0,
            window_start_ns: 0,
            probes: [0; PROBE_CLASSES],
            reported: 0,
            ports_set: 0,
            next: 0,
            reserved: 0,
            ports: WideBitmap::default(),
            sources: [SourceKey::default(); SAMPLE_SOURCES],
        };
        assert_eq!(s.sample().count(), 0);
        for i in 1..=10u8 {
            s.sources[s.next as usize] = SourceKey::from_ipv4([10, 0, 0, i]);
            s.next = (s.next + 1) % SAMPLE_SOURCES as u32;
        }
        let sample: std::vec::Vec<_> = s.sample().collect();
        assert_eq!(sample.len(), SAMPLE_SOURCES);
        assert_eq!(sample[0], SourceKey::from_ipv4([10, 0, 0, 3]));
        assert_eq!(sample[7], SourceKey::from_ipv4([10, 0, 0, 10]));
    }
}
