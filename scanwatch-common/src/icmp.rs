//! What an ICMP or ICMPv6 message means for a flow this host opened, by (type, code): a
//! failed attempt (the destination cannot or will not be reached), an error that quotes our
//! datagram without saying anything about the destination (path MTU, TTL, redirects), or no
//! error at all. Pure tables, shared by the kernel and the tests.
//!
//! The kernel program matches every error against the flow it quotes, so any error of ours is
//! a reply (never a probe); only [`IcmpMeaning::Failure`] feeds egress scan detection.

use crate::proto::{
    ICMP_DEST_UNREACH, ICMP_PARAMETERPROB, ICMP_REDIRECT, ICMP_SOURCE_QUENCH, ICMP_TIME_EXCEEDED,
    ICMPV6_DEST_UNREACH, ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, icmp_unreach,
    icmpv6_unreach,
};

/// What an ICMP message means for the flow whose datagram it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IcmpMeaning {
    /// Not an error message (echo, replies, router and neighbour discovery, ...): quotes
    /// nothing, answers no flow of ours.
    NotAnError = 0,
    /// An error quoting our datagram that says nothing about whether the destination serves
    /// us; a reply, never a failed attempt:
    /// - IPv4 fragmentation needed (3/4): path MTU discovery (RFC 1191, RFC 1122 §3.2.2.1 and
    ///   §4.2.3.9 call it a "hard" error only for the datagram, not the destination); it comes
    ///   from any router on a path with a smaller MTU.
    /// - IPv4 source route failed (3/5): about the source-route option we put in the
    ///   datagram, not about the destination (RFC 1122 §4.2.3.9 makes it a soft error).
    /// - IPv4 precedence violation / cutoff (3/14, 3/15, RFC 1812 §5.2.7.1): about the
    ///   precedence we chose; a cutoff hits every destination beyond that router alike.
    /// - IPv4 unassigned destination-unreachable codes (16..): meaning unknown, so not
    ///   counted (RFC 1122 §3.2.2: unknown codes must not be treated as more than they say).
    /// - IPv4 source quench (4, RFC 792; deprecated by RFC 6633), redirect (5, RFC 792,
    ///   RFC 1812 §5.2.7.2), time exceeded (11, RFC 792: traceroute, routing loops) and
    ///   parameter problem (12, RFC 792, RFC 1122 §3.2.2.5): about the path or the header.
    /// - ICMPv6 destination unreachable "beyond scope of source address" (1/2), "error in
    ///   source routing header" (1/7, RFC 6550) and "headers too long" (1/8, RFC 8883), and
    ///   unassigned codes: about our source or headers, not the destination.
    /// - ICMPv6 packet too big (2, RFC 4443 §3.2: path MTU discovery, RFC 8201), time
    ///   exceeded (3, RFC 4443 §3.3), parameter problem (4, RFC 4443 §3.4), and every other
    ///   error type below 128 (RFC 4443 §2.1, §2.4(b): unknown error types still quote the
    ///   invoking packet and go to the upper layer that sent it).
    NotAFailure = 1,
    /// The destination cannot or will not be reached: a failed attempt, as a RST to an
    /// unanswered SYN is.
    /// - IPv4 destination unreachable (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1): net (0),
    ///   host (1), protocol (2), port (3) unreachable; destination network (6) or host (7)
    ///   unknown; source host isolated (8, obsolete, RFC 1812 says send 1 or 13 instead);
    ///   network (9) or host (10) administratively prohibited; network (11) or host (12)
    ///   unreachable for TOS; communication administratively prohibited (13, filtered).
    /// - ICMPv6 destination unreachable (RFC 4443 §3.1): no route (0), administratively
    ///   prohibited (1), address unreachable (3), port unreachable (4), source address failed
    ///   ingress/egress policy (5), reject route to destination (6).
    Failure = 2,
}

impl IcmpMeaning {
    /// True for error messages: they quote the datagram that caused them.
    #[inline(always)]
    pub const fn quotes_datagram(self) -> bool {
        !matches!(self, Self::NotAnError)
    }

    /// True when the error is a failed attempt for egress detection.
    #[inline(always)]
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Failure)
    }
}

/// One bit per code.
const fn codes(list: &[u8]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= 1 << list[i];
        i += 1;
    }
    mask
}

/// IPv4 destination-unreachable codes that are failures.
const ICMP_UNREACH_FAILURES: u32 = codes(&[
    icmp_unreach::ICMP_NET_UNREACH,
    icmp_unreach::ICMP_HOST_UNREACH,
    icmp_unreach::ICMP_PROT_UNREACH,
    icmp_unreach::ICMP_PORT_UNREACH,
    icmp_unreach::ICMP_NET_UNKNOWN,
    icmp_unreach::ICMP_HOST_UNKNOWN,
    icmp_unreach::ICMP_HOST_ISOLATED,
    icmp_unreach::ICMP_NET_ANO,
    icmp_unreach::ICMP_HOST_ANO,
    icmp_unreach::ICMP_NET_UNR_TOS,
    icmp_unreach::ICMP_HOST_UNR_TOS,
    icmp_unreach::ICMP_PKT_FILTERED,
]);

/// ICMPv6 destination-unreachable codes that are failures.
const ICMPV6_UNREACH_FAILURES: u32 = codes(&[
    icmpv6_unreach::ICMPV6_NOROUTE,
    icmpv6_unreach::ICMPV6_ADM_PROHIBITED,
    icmpv6_unreach::ICMPV6_ADDR_UNREACH,
    icmpv6_unreach::ICMPV6_PORT_UNREACH,
    icmpv6_unreach::ICMPV6_POLICY_FAIL,
    icmpv6_unreach::ICMPV6_REJECT_ROUTE,
]);

/// A destination unreachable with `code`: a failure if `code` is in `failures`.
#[inline(always)]
const fn unreachable(code: u8, failures: u32) -> IcmpMeaning {
    if code < 32 && (failures >> code) & 1 != 0 {
        IcmpMeaning::Failure
    } else {
        IcmpMeaning::NotAFailure
    }
}

/// What an ICMPv4 message of (`icmp_type`, `code`) means for the flow it quotes.
#[inline(always)]
pub const fn icmpv4_meaning(icmp_type: u8, code: u8) -> IcmpMeaning {
    match icmp_type {
        ICMP_DEST_UNREACH => unreachable(code, ICMP_UNREACH_FAILURES),
        ICMP_SOURCE_QUENCH | ICMP_REDIRECT | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB => {
            IcmpMeaning::NotAFailure
        }
        _ => IcmpMeaning::NotAnError,
    }
}

/// What an ICMPv6 message of (`icmp_type`, `code`) means for the flow it quotes.
#[inline(always)]
pub const fn icmpv6_meaning(icmp_type: u8, code: u8) -> IcmpMeaning {
    match icmp_type {
        ICMPV6_DEST_UNREACH => unreachable(code, ICMPV6_UNREACH_FAILURES),
        // Error messages are types 0..=127 (RFC 4443 §2.1).
        ICMPV6_PKT_TOOBIG | ICMPV6_TIME_EXCEED | ICMPV6_PARAMPROB | 0..=127 => {
            IcmpMeaning::NotAFailure
        }
        _ => IcmpMeaning::NotAnError,
    }
}

#[cfg(test)]
mod tests {
    //! Every (type, code) pair of both families against reference lists written out here from
    //! the IANA registries and the RFCs, not derived from the tables above.

    use super::*;

    fn v4_reference(t: u8, c: u8) -> IcmpMeaning {
        match t {
            3 if [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13].contains(&c) => IcmpMeaning::Failure,
            3 | 4 | 5 | 11 | 12 => IcmpMeaning::NotAFailure,
            _ => IcmpMeaning::NotAnError,
        }
    }

    fn v6_reference(t: u8, c: u8) -> IcmpMeaning {
        match t {
            1 if [0, 1, 3, 4, 5, 6].contains(&c) => IcmpMeaning::Failure,
            t if t < 128 => IcmpMeaning::NotAFailure,
            _ => IcmpMeaning::NotAnError,
        }
    }

    #[test]
    fn every_icmpv4_type_and_code() {
        for t in 0..=255u8 {
            for c in 0..=255u8 {
                assert_eq!(icmpv4_meaning(t, c), v4_reference(t, c), "ICMP {t}/{c}");
            }
        }
    }

    #[test]
    fn every_icmpv6_type_and_code() {
        for t in 0..=255u8 {
            for c in 0..=255u8 {
                assert_eq!(icmpv6_meaning(t, c), v6_reference(t, c), "ICMPv6 {t}/{c}");
            }
        }
    }

    #[test]
    fn path_mtu_and_traceroute_errors_are_not_failures() {
        assert_eq!(icmpv4_meaning(3, 4), IcmpMeaning::NotAFailure);
        assert_eq!(icmpv4_meaning(11, 0), IcmpMeaning::NotAFailure);
        assert_eq!(icmpv6_meaning(2, 0), IcmpMeaning::NotAFailure);
        assert_eq!(icmpv6_meaning(3, 0), IcmpMeaning::NotAFailure);
        assert!(icmpv4_meaning(3, 4).quotes_datagram());
        assert!(!icmpv4_meaning(3, 4).is_failure());
    }

    #[test]
    fn requests_and_replies_are_not_errors() {
        for (t, c) in [(0, 0), (8, 0), (13, 0), (17, 0)] {
            assert!(!icmpv4_meaning(t, c).quotes_datagram());
        }
        for (t, c) in [(128, 0), (129, 0), (133, 0), (135, 0), (136, 0)] {
            assert!(!icmpv6_meaning(t, c).quotes_datagram());
        }
    }
}
