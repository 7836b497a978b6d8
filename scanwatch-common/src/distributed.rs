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
    contributors,
    state::{NarrowBitmap, WideBitmap},
};

/// Sources kept as a target's sample (the last distinct contributors, a ring).
pub const SAMPLE_SOURCES: usize = 8;

/// One destination's distributed-scan state (496 bytes), tumbling windows as the tracker's.
///
/// What counts is the ports probed there that the host does not serve, from sources not
/// reported on their own ([`TargetState::measure`]):
/// - a port the host answers on (a SYN-ACK, a UDP datagram from it, seen by the TC egress
///   program) is *served* ([`TargetState::answer`]): it stops counting, and a probe of it no
///   longer adds a port or a contributor;
/// - each sampled source remembers how many ports it added and how many of those were
///   answered to it: a source all of whose ports were answered is a visitor of open services,
///   never in the sample ([`TargetState::sample`]);
/// - a source reported on its own takes back the ports it added ([`TargetState::withdraw`]).
///
/// Bounded: only the ring's 8 sources keep their counts; a source overwritten in the ring
/// before it is reported leaves its ports counted.
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
    /// Bits set in `ports`.
    pub ports_set: u32,
    /// Slot of `sources` the next new contributor is written to.
    pub next: u32,
    /// Ports of `ports_set` that no longer count: served, or taken back by a source reported
    /// on its own.
    pub discounted: u32,
    /// Distinct (protocol, port) pairs probed at this destination in this window.
    pub ports: WideBitmap,
    /// (Protocol, port) pairs the destination answered on in this window (same hashes).
    pub served: WideBitmap,
    /// The last distinct contributing sources (tracker keys), a ring; all-zero slots are empty.
    pub sources: [SourceKey; SAMPLE_SOURCES],
    /// Ports each slot's source added in this window (saturating).
    pub added: [u8; SAMPLE_SOURCES],
    /// Of those, how many the destination answered to that source (at most `added`).
    pub answered: [u8; SAMPLE_SOURCES],
}

impl TargetState {
    /// The kernel-unit measure compared with the threshold: distinct ports probed, less those
    /// served and those of sources reported on their own.
    #[inline(always)]
    pub fn measure(&self) -> u32 {
        self.ports_set.saturating_sub(self.discounted)
    }

    /// Starts a window at `now`: no port, no answer, no contribution (the ring's keys stay,
    /// with nothing added, so none is sampled until it adds a port again).
    #[inline(always)]
    pub fn start_window(&mut self, now: u64) {
        self.window_start_ns = now;
        self.reported = 0;
        self.ports_set = 0;
        self.discounted = 0;
        crate::zeroed::zero(&mut self.probes);
        self.ports.clear();
        self.served.clear();
        crate::zeroed::zero(&mut self.added);
        crate::zeroed::zero(&mut self.answered);
    }

    /// A probe of the port hashed `port` by `key`: true when it adds a port (new in the
    /// window and not served), which `key` is then remembered for.
    #[inline(always)]
    pub fn add_port(&mut self, port: u32, key: &SourceKey) -> bool {
        if self.served.contains(port) || !self.ports.insert(port) {
            return false;
        }
        self.ports_set += 1;
        let (slot, new) = contributors::remember(&mut self.sources, &mut self.next, key);
        if let (Some(added), Some(answered)) =
            (self.added.get_mut(slot), self.answered.get_mut(slot))
        {
            if new {
                *added = 1;
                *answered = 0;
            } else {
                *added = added.saturating_add(1);
            }
        }
        true
    }

    /// The destination answered `remote` (a tracker key) on the port hashed `port`: the port
    /// is served. The first answer on a port a probe added takes it out of the measure and
    /// counts for `remote`, if sampled, as one of its ports answered.
    #[inline(always)]
    pub fn answer(&mut self, port: u32, remote: &SourceKey) {
        if !self.served.insert(port) || !self.ports.contains(port) {
            return;
        }
        self.discounted += 1;
        if let Some(slot) = contributors::slot_of(&self.sources, remote)
            && let (Some(added), Some(answered)) =
                (self.added.get(slot), self.answered.get_mut(slot))
            && *answered < *added
        {
            *answered += 1;
        }
    }

    /// `key` was reported on its own: the ports it added and that still count stop counting,
    /// and it leaves the sample.
    #[inline(always)]
    pub fn withdraw(&mut self, key: &SourceKey) {
        let Some(slot) = contributors::slot_of(&self.sources, key) else {
            return;
        };
        if let (Some(entry), Some(added), Some(answered)) = (
            self.sources.get_mut(slot),
            self.added.get_mut(slot),
            self.answered.get_mut(slot),
        ) {
            self.discounted += u32::from(added.saturating_sub(*answered));
            *entry = SourceKey::default();
            *added = 0;
            *answered = 0;
        }
    }

    /// The sample, oldest first: the sources that added a port in the window, not all of whose
    /// ports were answered, and not reported on their own.
    pub fn sample(&self) -> impl Iterator<Item = SourceKey> + '_ {
        let start = self.next as usize % SAMPLE_SOURCES;
        (0..SAMPLE_SOURCES)
            .map(move |i| (start + i) % SAMPLE_SOURCES)
            .filter(|&i| {
                self.sources[i] != SourceKey::default() && self.answered[i] < self.added[i]
            })
            .map(|i| self.sources[i])
    }
}

const _: () = assert!(core::mem::size_of::<TargetState>() == 496);

/// The `PORTS` key of a (protocol, port) pair: `protocol << 16 | port`.
#[inline(always)]
pub const fn port_key(proto: u8, port: u16) -> u32 {
    ((proto as u32) << 16) | port as u32
}

/// Separates the slot hash of a port from the port's estimator bit.
const PORT_SLOT_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The `PORTS` slot of a (protocol, port) key: seeded, so that no sender can tell which ports
/// share a slot with a given port (and aim a spray at it).
#[inline(always)]
pub const fn port_slot(seed: u64, key: u32) -> u32 {
    let (proto, port) = port_of_key(key);
    crate::hash::hash_port(seed ^ PORT_SLOT_SALT, proto, port) & (crate::maps::PORT_SLOTS - 1)
}

/// The (protocol, port) pair of a [`port_key`].
pub const fn port_of_key(key: u32) -> (u8, u16) {
    ((key >> 16) as u8, key as u16)
}

/// One (protocol, port)'s distributed-sweep state (352 bytes), tumbling windows as the
/// tracker's: the destination hosts probed on it and those that answered on it. A slot of
/// `PORTS`, held by the port in `key` ([`port_slot`]).
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
    /// The [`port_key`] this slot holds; 0 when empty.
    pub key: u32,
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

    /// Starts a new window at `now`: nothing counted yet, the sample of sources kept.
    #[inline(always)]
    pub fn start_window(&mut self, now: u64) {
        self.window_start_ns = now;
        self.reported = 0;
        self.hosts_set = 0;
        crate::zeroed::zero(&mut self.probes);
        self.hosts.clear();
        self.served.clear();
    }

    /// Gives the slot to the port `key` at `now`, forgetting the port it held.
    #[inline(always)]
    pub fn take(&mut self, key: u32, now: u64) {
        self.start_window(now);
        self.key = key;
        self.first_seen_ns = now;
        self.next = 0;
        crate::zeroed::zero(&mut self.sources);
    }

    /// How hard the port holding this slot holds it against a probe of another port at `now`:
    /// `None` when it does not (the slot is empty or its window is over), else the mask a
    /// uniformly random coin must clear to take it (`2^h - 1` for `h` hosts probed on the port
    /// held, at most 31 bits): the slot is taken with probability `2^-h`. A port seen on one
    /// host yields to the next other port half of the time; a sweep that has reached ten hosts
    /// holds its slot against about a thousand probes of other ports, twenty against a million.
    /// The caller draws its coin only for a held slot.
    #[inline(always)]
    pub const fn hold_mask(&self, now: u64, window: u64) -> Option<u32> {
        if self.key == 0 || now.wrapping_sub(self.window_start_ns) >= window {
            return None;
        }
        let weight = if self.hosts_set > 31 {
            31
        } else {
            self.hosts_set
        };
        Some((1u32 << weight) - 1)
    }
}

const _: () = assert!(core::mem::size_of::<PortState>() == 352);

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn target() -> TargetState {
        TargetState {
            first_seen_ns: 0,
            last_seen_ns: 0,
            window_start_ns: 0,
            probes: [0; PROBE_CLASSES],
            reported: 0,
            ports_set: 0,
            next: 0,
            discounted: 0,
            ports: WideBitmap::default(),
            served: WideBitmap::default(),
            sources: [SourceKey::default(); SAMPLE_SOURCES],
            added: [0; SAMPLE_SOURCES],
            answered: [0; SAMPLE_SOURCES],
        }
    }

    fn source(i: u8) -> SourceKey {
        SourceKey::from_ipv4([10, 0, 0, i])
    }

    #[test]
    fn sample_is_oldest_first_without_empty_slots() {
        let mut s = target();
        assert_eq!(s.sample().count(), 0);
        for i in 1..=10u8 {
            assert!(s.add_port(u32::from(i), &source(i)));
        }
        let sample: std::vec::Vec<_> = s.sample().collect();
        assert_eq!(sample.len(), SAMPLE_SOURCES);
        assert_eq!(sample[0], source(3));
        assert_eq!(sample[7], source(10));
        assert_eq!(s.measure(), 10);
    }

    #[test]
    fn a_visitor_whose_ports_were_answered_is_not_sampled_and_its_ports_do_not_count() {
        let mut s = target();
        let (visitor, scanner) = (source(1), source(2));
        assert!(s.add_port(80, &visitor));
        assert!(s.add_port(443, &visitor));
        for port in 1000..1010 {
            assert!(s.add_port(port, &scanner));
        }
        s.answer(80, &visitor);
        s.answer(443, &visitor);
        // An open port the scanner met answers it too: it stays a scanner.
        assert!(s.add_port(22, &scanner));
        s.answer(22, &scanner);
        // Answers repeated, or on a port no counted probe reached, change nothing.
        s.answer(80, &visitor);
        s.answer(8080, &scanner);
        assert_eq!(s.sample().collect::<std::vec::Vec<_>>(), [scanner]);
        assert_eq!(s.measure(), 10);
        // A served port no longer adds a port or a contributor.
        assert!(!s.add_port(8080, &source(3)));
        assert_eq!(s.sample().count(), 1);
    }

    #[test]
    fn a_source_reported_on_its_own_takes_back_its_ports() {
        let mut s = target();
        for port in 0..19 {
            assert!(s.add_port(port, &source(1)));
        }
        for port in 100..119 {
            assert!(s.add_port(port, &source(2)));
        }
        assert!(s.add_port(80, &source(3)));
        s.withdraw(&source(1));
        s.withdraw(&source(2));
        s.withdraw(&source(4));
        assert_eq!(s.measure(), 1);
        assert_eq!(s.sample().collect::<std::vec::Vec<_>>(), [source(3)]);
        // Its later ports, had they been counted, would start a new contribution.
        s.start_window(5);
        assert_eq!((s.measure(), s.sample().count()), (0, 0));
        assert!(s.add_port(7, &source(3)));
        assert_eq!(s.sample().collect::<std::vec::Vec<_>>(), [source(3)]);
    }

    #[test]
    fn port_keys_round_trip() {
        assert_eq!(port_key(6, 22), 0x0006_0016);
        assert_eq!(port_of_key(port_key(17, 65535)), (17, 65535));
    }

    #[test]
    fn a_slot_is_held_harder_the_more_hosts_its_port_has() {
        let mut s = port();
        s.take(port_key(6, 22), 100);
        s.hosts_set = 1;
        let yielded = |s: &PortState| {
            let mask = s.hold_mask(100, 300).unwrap();
            (0..1024u32).filter(|&c| c & mask == 0).count()
        };
        assert_eq!(yielded(&s), 512);
        s.hosts_set = 10;
        assert_eq!(yielded(&s), 1);
        s.hosts_set = 40;
        assert_eq!(yielded(&s), 1, "only coin 0 of 2^31");
        assert_ne!((1u32 << 30) & s.hold_mask(100, 300).unwrap(), 0);
        assert_eq!(s.hold_mask(400, 300), None, "its window is over");
        assert_eq!(port().hold_mask(100, 300), None, "empty");
    }

    #[test]
    fn taking_a_slot_forgets_the_port_it_held() {
        let mut s = port();
        s.take(port_key(6, 22), 100);
        s.hosts.insert(1);
        s.hosts_set = 1;
        s.served.insert(1);
        s.reported = 2;
        crate::contributors::remember(&mut s.sources, &mut s.next, &source(1));
        s.take(port_key(17, 53), 200);
        assert_eq!(
            (s.key, s.first_seen_ns, s.window_start_ns),
            (port_key(17, 53), 200, 200)
        );
        assert_eq!((s.hosts_set, s.reported, s.unserved()), (0, 0, 0));
        assert_eq!(s.served, NarrowBitmap::default());
        assert_eq!(s.sample().count(), 0);
    }

    #[test]
    fn port_slots_are_seeded() {
        let slots = |seed| {
            (0..64u16)
                .map(|p| port_slot(seed, port_key(6, p)))
                .collect::<std::vec::Vec<_>>()
        };
        assert_ne!(slots(1), slots(2));
        assert!(slots(1).iter().all(|&s| s < crate::maps::PORT_SLOTS));
    }

    fn port() -> PortState {
        PortState {
            first_seen_ns: 0,
            last_seen_ns: 0,
            window_start_ns: 0,
            probes: [0; PROBE_CLASSES],
            reported: 0,
            hosts_set: 0,
            next: 0,
            key: 0,
            hosts: NarrowBitmap::default(),
            served: NarrowBitmap::default(),
            sources: [SourceKey::default(); SAMPLE_SOURCES],
        }
    }

    #[test]
    fn served_hosts_do_not_count() {
        let mut s = port();
        s.take(port_key(6, 22), 0);
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
