//! What proves a finding's source is who it claims to be, as drop mode consults it: remotes
//! that answered this host's flows, remotes that completed a handshake (with their hop count),
//! and the hop counts of a finding's probes. The kernel's `ANSWERED` and `VERIFIED` maps
//! provide the first two.

use std::time::Duration;

use ipnet::IpNet;
use scanwatch_common::addr::SourceKey;

use crate::kernel::maps::{Answered, VerifiedPeers};

/// Remotes that answered a flow this host opened: their address is proven by the answer, so
/// findings naming them are forged or collateral, and they are never auto-blocked.
///
/// Consulted for every candidate automatic block (not for block lists or manual blocks, which
/// are the operator's decision: the evidence is transient, a skipped list entry would not be).
/// The kernel's `ANSWERED` map implements it (`kernel::Answered`), looking `source` up among
/// remotes whose answer arrived within `within`, the `answered_peer_window` setting.
pub trait AnsweredPeers: Send + Sync + std::fmt::Debug {
    /// True when an address in `source` answered a flow of this host within `within`.
    fn answered(&self, source: &IpNet, within: Duration) -> bool;
}

/// Remotes that completed a TCP handshake with this host (their ACK acknowledged our SYN-ACK),
/// with the hop count their handshake arrived at (the kernel's `VERIFIED` map,
/// `kernel::VerifiedPeers`).
pub trait HandshakePeers: Send + Sync + std::fmt::Debug {
    /// The hop count of the tracker key `source`'s completed handshake, if it completed one.
    fn verified_hops(&self, source: &SourceKey) -> Option<u8>;
}

/// No evidence of completed handshakes: protects no one.
#[derive(Debug, Default)]
pub struct NoHandshakeEvidence;

impl HandshakePeers for NoHandshakeEvidence {
    fn verified_hops(&self, _source: &SourceKey) -> Option<u8> {
        None
    }
}

/// Hops by which a verified source's probes may differ from its handshake before they count
/// as forged. 0: a real path's hop count is stable between a handshake and probes minutes
/// later (Jin, Wang & Shin found most sources' hop counts constant), and the two errors are not
/// equal — a tolerance of 1 lets a forger one hop nearer or farther than the victim get it
/// blocked, while 0 only turns a real scanner whose route changed length by a hop into an alert
/// without a block.
pub const HOP_TOLERANCE: u8 = 0;

/// The hop counts of a finding's probes (fewest, most), when the kernel measured them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeHops {
    pub min: u8,
    pub max: u8,
}

impl ProbeHops {
    /// The probes' hop counts of a kernel event (drop mode, ingress), if measured.
    pub fn of(event: &scanwatch_common::event::ScanEvent) -> Option<Self> {
        use scanwatch_common::evidence::HOPS_UNKNOWN;
        (event.min_hops != HOPS_UNKNOWN && event.max_hops != HOPS_UNKNOWN).then_some(Self {
            min: event.min_hops,
            max: event.max_hops,
        })
    }
}

/// What a finding offers as proof that its packets came from the source it names, as
/// `enforce::Policy::refused` weighs it against the source's verified handshake. The table of
/// kinds (`BlockEvidence`) decides which a finding offers (`policy::findings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The probes' own hop counts: a verified source is refused when they differ from its
    /// handshake's (`suspected_spoof`).
    Hops(ProbeHops),
    /// Nothing that says where the packets came from (no hop counts of them): a source that
    /// completed a handshake is refused (`unverified_evidence`), one that never did is not.
    Unmeasured,
    /// The packets arrived over a TCP connection from the source (a `web_scan`'s request): a
    /// verified handshake does not refuse it.
    Connection,
}

impl Proof {
    /// The probes' hop counts when measured, else [`Proof::Unmeasured`].
    pub fn hops(hops: Option<ProbeHops>) -> Self {
        hops.map_or(Self::Unmeasured, Self::Hops)
    }
}

/// No evidence of answered flows yet: protects no one.
#[derive(Debug, Default)]
pub struct NoAnswerEvidence;

impl AnsweredPeers for NoAnswerEvidence {
    fn answered(&self, _source: &IpNet, _within: Duration) -> bool {
        false
    }
}

/// The tracker key a network names when it is one source (an IPv4 address, an IPv6 network of
/// the tracker's prefix or longer); `None` for wider networks.
fn source_key_of(net: &IpNet) -> Option<SourceKey> {
    match net {
        IpNet::V4(n) => (n.prefix_len() == 32).then(|| SourceKey::from_ipv4(n.addr().octets())),
        IpNet::V6(n) => Some(SourceKey::from_ipv6(
            n.addr().octets(),
            u32::from(n.prefix_len()),
        )),
    }
}

impl crate::policy::evidence::AnsweredPeers for Answered {
    /// One lookup of the source's key; a network wider than one source answers false (the map
    /// is keyed by source, and only findings, which name one source, consult it).
    fn answered(&self, source: &IpNet, within: Duration) -> bool {
        let Some(key) = source_key_of(source) else {
            return false;
        };
        match self.get(&key) {
            Ok(Some(at)) => {
                crate::kernel::clock::Clock::monotonic_ns().saturating_sub(at)
                    < crate::kernel::blocks::nanos(within)
            }
            Ok(None) => false,
            Err(e) => {
                log::warn!("reading ANSWERED for {source}: {e:#}");
                false
            }
        }
    }
}

impl crate::policy::evidence::HandshakePeers for VerifiedPeers {
    fn verified_hops(&self, source: &SourceKey) -> Option<u8> {
        match self.get(source) {
            Ok(v) => v.map(|v| v.hops.min(u32::from(u8::MAX)) as u8),
            Err(e) => {
                log::warn!("reading VERIFIED: {e:#}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_looked_up_by_the_findings_tracker_key() {
        let key = |s: &str| source_key_of(&s.parse::<IpNet>().unwrap());
        assert_eq!(
            key("203.0.113.7/32"),
            Some(SourceKey::from_ipv4([203, 0, 113, 7]))
        );
        // A finding's IPv6 source is its /64, as the kernel keys it.
        let v6: std::net::Ipv6Addr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(
            key("2001:db8:1:2::/64"),
            Some(SourceKey::from_ipv6(v6.octets(), 64))
        );
        // Wider networks name no single source.
        assert_eq!(key("203.0.113.0/24"), None);
    }
}
