//! Per-destination state for distributed-scan detection (`DetectionKind::DistributedScan`).
//!
//! Many sources, each below every threshold, probing many ports of one destination: the state is
//! keyed by the *destination* address and counts its distinct probed ports, never its sources,
//! so a busy server's many visitors (a few ports each) and NAT'd clients (one address, many
//! connections to one port) stay far below the threshold. Only probes count (SYN, UDP, stealth
//! flag mixes) from sources that are tracked (past the admission filter) and not yet reported in
//! their window: a lone scanner's own port scan stops feeding the target's count once it is
//! reported. A small ring keeps the last distinct contributing sources as the finding's sample.
//!
//! The other shape, one (protocol, port) probed across many destination hosts (a botnet
//! sweeping port 22 of a /24, each bot touching a few hosts), is [`PortState`]: keyed by
//! [`port_key`], it counts distinct destination *hosts*, minus those that answered on that port
//! in the window ([`PortState::served`]): a load-balanced farm's visitors reach port 443 of
//! every server behind the sensor, but every server answers them; a sweep's probes mostly meet
//! closed ports and unused addresses.

use crate::{
    addr::SourceKey,
    classify::PROBE_CLASSES,
    state::{NarrowBitmap, WideBitmap},
};

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
        crate::contributors::oldest_first(&self.sources, self.next)
    }
}

const _: () = assert!(core::mem::size_of::<TargetState>() == 352);

/// The `PORTS` key of a (protocol, port) pair: `protocol << 16 | port`.
#[inline(always)]
pub const fn port_key(proto: u8, port: u16) -> u32 {
    ((proto as u32) << 16) | port as u32
}

/// The (protocol, port) pair of a [`port_key`].
pub const fn port_of_key(key: u32) -> (u8, u16) {
    ((key >> 16) as u8, key as u16)
}

/// One (protocol, port)'s distributed-sweep state (352 bytes), tumbling windows as the
/// tracker's: the destination hosts probed on it and those that answered on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortState {
    /// When the entry was created.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub window_start_ns: u64,
    /// Contributing probes in this window, by probe class.
    pub probes: [u32; PROBE_CLASSES],
    /// Events sent in this window (at the threshold, then at each doubling).
    pub reported: u32,
    /// Bits set in `hosts`: a cheap upper bound of the measure, checked first.
    pub hosts_set: u32,
    /// Slot of `sources` the next new contributor is written to.
    pub next: u32,
    pub reserved: u32,
    /// Distinct destination hosts probed on this port in this window.
    pub hosts: NarrowBitmap,
    /// Hosts that answered on this port in this window (a SYN-ACK, or a UDP datagram from it),
    /// seen by the TC egress program: they serve it. The measure is the bits of `hosts` not
    /// set here ([`PortState::unserved`]).
    pub served: NarrowBitmap,
    /// The last distinct contributing sources (tracker keys), a ring; all-zero slots are empty.
    pub sources: [SourceKey; SAMPLE_SOURCES],
}

impl PortState {
    /// Bits of `hosts` whose host has not answered on this port: the kernel-unit measure
    /// compared with `KernelConfig::distributed_hosts`.
    #[inline(always)]
    pub fn unserved(&self) -> u32 {
        self.hosts
            .words
            .iter()
            .zip(self.served.words.iter())
            .map(|(h, s)| (h & !s).count_ones())
            .sum()
    }

    /// The sample, oldest first, without empty slots.
    pub fn sample(&self) -> impl Iterator<Item = SourceKey> + '_ {
        crate::contributors::oldest_first(&self.sources, self.next)
    }
}

const _: () = assert!(core::mem::size_of::<PortState>() == 352);

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

    #[test]
    fn port_keys_round_trip() {
        assert_eq!(port_key(6, 22), 0x0006_0016);
        assert_eq!(port_of_key(port_key(17, 65535)), (17, 65535));
    }

    #[test]
    fn served_hosts_do_not_count() {
        let mut s = PortState {
            first_seen_ns: 0,
            last_seen_ns: 0,
            window_start_ns: 0,
            probes: [0; PROBE_CLASSES],
            reported: 0,
            hosts_set: 0,
            next: 0,
            reserved: 0,
            hosts: NarrowBitmap::default(),
            served: NarrowBitmap::default(),
            sources: [SourceKey::default(); SAMPLE_SOURCES],
        };
        for h in 0..10 {
            s.hosts.insert(h);
        }
        // Two probed hosts answered, and one host answered that no counted probe reached.
        for h in [3, 7, 100] {
            s.served.insert(h);
        }
        assert_eq!(s.unserved(), 8);
        assert_eq!(s.sample().count(), 0);
    }
}
