//! The host's own outbound flows, recorded by the TC egress program so the XDP program can tell
//! a reply (DNS answer, SYN-ACK, RST, ICMP error about our own datagram) from a probe.
//!
//! Only flow *openers* are recorded: TCP SYN, UDP datagrams, ICMP echo/timestamp/address-mask
//! requests. Established TCP takes no map write on egress. A UDP datagram answering an inbound
//! conversation (noted by the XDP program in the `INBOUND` array, [`InboundSlot`]) is the host
//! serving, not opening: it records and refreshes nothing.
//!
//! When the map is full the LRU evicts the least recently used flow; when an entry is older than
//! `KernelConfig::flow_timeout_ns` it no longer matches. Either way a late reply is then counted
//! as a probe: the error goes toward detection, not toward blindness, because a spoofer must
//! never be able to launder probes as "replies". It is also harmless in practice: detection
//! counts *distinct* ports and hosts, and the late packets of one flow add one port and one host
//! at most, far below any threshold.

use crate::{
    addr::SourceKey,
    hash::hash_conversation,
    maps::{ACCEPTED_SLOTS, INBOUND_SLOTS},
    owner::Sender,
};

/// A flow from this host's point of view. For ICMP, `local_port` is the echo identifier and
/// `remote_port` is 0.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Local address (v4-mapped for IPv4).
    pub local: SourceKey,
    /// Remote address (v4-mapped for IPv4).
    pub remote: SourceKey,
    pub local_port: u16,
    pub remote_port: u16,
    /// IP protocol (6, 17, 1 or 58); a u32 so the key has no padding bytes to clear.
    pub proto: u32,
}

/// What is kept per flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowState {
    /// Last outbound opener (CLOCK_MONOTONIC ns).
    pub last_seen_ns: u64,
    /// Outbound openers seen.
    pub packets: u32,
    /// 1 once a SYN-ACK answered the flow: a later RST closes a connection that was made, it
    /// is not a failed attempt. Reset by each new opener.
    pub answered: u32,
    /// The socket of the latest opener: who an egress finding built on this flow's failure
    /// names (`owner`).
    pub sender: Sender,
}

/// Default flow lifetime: 120 s. A DNS answer comes within seconds; a refused or answered TCP
/// SYN within a round trip; nmap and traceroute replies within their timeouts.
pub const DEFAULT_FLOW_TIMEOUT_NS: u64 = 120 * 1_000_000_000;

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Salt that separates the inbound conversations' hash from the other users of the seed.
const INBOUND_SALT: u64 = 0x1b0d_1b0d_1b0d_1b0d;
/// Salt of the accepted TCP connections' hash (the `ACCEPTED` array).
const ACCEPTED_SALT: u64 = 0xacce_97ed_acce_97ed;

/// The `INBOUND` and `ACCEPTED` arrays' clock: `CLOCK_MONOTONIC` ns >> 20, ticks of 1.05 ms. A 32-bit tick count
/// wraps after 52 days, far beyond the longest `flow_timeout` (1 h).
pub const INBOUND_TICK_SHIFT: u32 = 20;

/// Where an inbound UDP conversation (both addresses, both ports, from the host's point of view)
/// lives in the `INBOUND` array, and the 32-bit fingerprint that tells it from the other
/// conversations hashed to the same slot. A slot's value is the fingerprint (high half) and the
/// tick of the conversation's last inbound datagram (low half): one 8-byte word, stored and
/// loaded whole, so no reader sees one conversation's fingerprint with another's time.
///
/// The slot index and the fingerprint come from disjoint halves of a seeded hash, so a remote
/// sender who does not know the seed can neither pick the slot it overwrites nor forge the
/// fingerprint of another conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundSlot {
    /// Index into the `INBOUND` array, below `INBOUND_SLOTS`.
    pub index: u32,
    /// Never 0, so an empty (all-zero) slot matches no conversation.
    pub fingerprint: u32,
}

impl InboundSlot {
    /// The slot of the conversation between `local`:`local_port` and `remote`:`remote_port`.
    #[inline(always)]
    pub const fn new(
        seed: u64,
        local: &SourceKey,
        remote: &SourceKey,
        local_port: u16,
        remote_port: u16,
    ) -> Self {
        Self::of(
            hash_conversation(seed ^ INBOUND_SALT, local, remote, local_port, remote_port),
            INBOUND_SLOTS,
        )
    }

    /// The `ACCEPTED` slot of the TCP connection this host accepted on `local`:`local_port`
    /// from `remote`:`remote_port` (noted when the host sends its SYN-ACK). The same layout as an
    /// inbound UDP conversation's, under another salt and in its own array.
    #[inline(always)]
    pub const fn accepted(
        seed: u64,
        local: &SourceKey,
        remote: &SourceKey,
        local_port: u16,
        remote_port: u16,
    ) -> Self {
        Self::of(
            hash_conversation(seed ^ ACCEPTED_SALT, local, remote, local_port, remote_port),
            ACCEPTED_SLOTS,
        )
    }

    /// The slot of hash `h` in an array of `slots` (a power of two): index and fingerprint from
    /// its two halves.
    #[inline(always)]
    const fn of(h: u64, slots: u32) -> Self {
        Self {
            index: (h as u32) & (slots - 1),
            fingerprint: ((h >> 32) as u32) | 1,
        }
    }

    /// The value noting this conversation's datagram at `now_ns`.
    #[inline(always)]
    pub const fn value(&self, now_ns: u64) -> u64 {
        ((self.fingerprint as u64) << 32) | tick(now_ns) as u64
    }

    /// True when `value` is this conversation's, whatever its age.
    #[inline(always)]
    pub const fn holds(&self, value: u64) -> bool {
        (value >> 32) as u32 == self.fingerprint
    }

    /// True when `value` is this conversation's and younger than `timeout_ns` at `now_ns`.
    #[inline(always)]
    pub const fn is_live(&self, value: u64, now_ns: u64, timeout_ns: u64) -> bool {
        self.holds(value) && tick(now_ns).wrapping_sub(value as u32) < ticks(timeout_ns)
    }
}

/// `ns` on the `INBOUND` clock.
#[inline(always)]
const fn tick(ns: u64) -> u32 {
    (ns >> INBOUND_TICK_SHIFT) as u32
}

/// A duration in `INBOUND` ticks (rounded down; at most `u32::MAX`).
#[inline(always)]
const fn ticks(ns: u64) -> u32 {
    let t = ns >> INBOUND_TICK_SHIFT;
    if t > u32::MAX as u64 {
        u32::MAX
    } else {
        t as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const TIMEOUT: u64 = 120 * SECOND;
    const T0: u64 = 1_000 * SECOND;

    fn v4(octets: [u8; 4]) -> SourceKey {
        SourceKey::from_ipv4(octets)
    }

    fn query_slot(seed: u64, client_port: u16) -> InboundSlot {
        InboundSlot::new(
            seed,
            &v4([192, 0, 2, 1]),
            &v4([203, 0, 113, 7]),
            53,
            client_port,
        )
    }

    #[test]
    fn noted_conversation_is_live_until_the_timeout() {
        let slot = query_slot(7, 5_353);
        let value = slot.value(T0);
        assert!(slot.is_live(value, T0, TIMEOUT));
        assert!(slot.is_live(value, T0 + TIMEOUT - SECOND / 100, TIMEOUT));
        assert!(!slot.is_live(value, T0 + TIMEOUT + SECOND / 100, TIMEOUT));
        assert!(
            slot.holds(value),
            "an aged-out note is still the conversation's"
        );
    }

    #[test]
    fn other_conversations_and_empty_slots_do_not_match() {
        let slot = query_slot(7, 5_353);
        let other = query_slot(7, 5_354);
        assert_ne!(slot.fingerprint, other.fingerprint);
        assert!(!slot.is_live(other.value(T0), T0, TIMEOUT));
        // Another seed (another agent start) puts the conversation elsewhere.
        assert_ne!(slot, query_slot(8, 5_353));
        // An empty slot is no conversation, even at a time whose tick is 0.
        assert_ne!(slot.fingerprint, 0);
        assert!(!slot.holds(0));
        assert!(!slot.is_live(0, 0, TIMEOUT));
    }

    #[test]
    fn age_survives_the_tick_counter_wrapping() {
        let slot = query_slot(7, 5_353);
        let wrap = (1u64 << (32 + INBOUND_TICK_SHIFT)) - SECOND;
        let value = slot.value(wrap);
        assert!(slot.is_live(value, wrap + 2 * SECOND, TIMEOUT));
        assert!(!slot.is_live(value, wrap + TIMEOUT + SECOND, TIMEOUT));
    }

    #[test]
    fn accepted_connections_are_not_inbound_conversations() {
        let local = v4([192, 0, 2, 1]);
        let remote = v4([203, 0, 113, 7]);
        let accepted = InboundSlot::accepted(7, &local, &remote, 443, 40_000);
        let inbound = InboundSlot::new(7, &local, &remote, 443, 40_000);
        assert!(accepted.index < ACCEPTED_SLOTS);
        assert_ne!(accepted.fingerprint, inbound.fingerprint);
        assert!(accepted.is_live(accepted.value(T0), T0 + SECOND, TIMEOUT));
        assert!(!accepted.is_live(inbound.value(T0), T0 + SECOND, TIMEOUT));
        assert_ne!(
            accepted,
            InboundSlot::accepted(7, &local, &remote, 443, 40_001)
        );
    }

    #[test]
    fn timeouts_beyond_the_tick_range_saturate() {
        let slot = query_slot(7, 5_353);
        assert!(slot.is_live(slot.value(T0), T0 + 3_600 * SECOND, u64::MAX));
    }

    #[test]
    fn conversations_spread_over_the_slots_as_random_ones_would() {
        // 4096 clients of one service (sequential addresses and ports, the worst case for a weak
        // hash) into 262,144 slots: a random placement shares a slot about n²/2S = 32 times.
        const N: u32 = 4_096;
        let mut slots = [0u32; N as usize];
        for i in 0..N {
            let client = v4([10, 0, (i >> 8) as u8, i as u8]);
            let s = InboundSlot::new(99, &v4([192, 0, 2, 1]), &client, 53, 40_000 + i as u16);
            assert!(s.index < INBOUND_SLOTS);
            slots[i as usize] = s.index;
        }
        slots.sort_unstable();
        let shared = slots.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(shared <= 70, "{shared} conversations share a slot");
    }
}
