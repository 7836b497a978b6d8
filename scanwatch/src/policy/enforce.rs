//! Drop mode: deciding whether a finding's source may be blocked, writing blocks with TTLs into
//! the kernel, expiring them, and loading static block lists.
//!
//! Never blocked, whatever a finding says: loopback, `never_block` CIDRs (still tracked and
//! alerted), and the protected peers (`protect.rs`: the host's own addresses, its default
//! gateways, its resolvers; no block may cover one of its connected networks), plus remotes
//! that answered a flow this host opened ([`AnsweredPeers`]). While the protected peers cannot
//! be read, nothing is auto-blocked (fail closed). New automatic blocks pass a token bucket, so
//! a flood of forged findings adds blocks at a bounded rate. Repeat offenders get doubling TTLs
//! up to a cap. When the block map is full, new blocks are refused and counted (an attacker
//! must not be able to lift a block by flooding the map).

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use scanwatch_common::{addr::SourceKey, block::BlockReason, evidence::hops_disagree};

use crate::{
    finding::verdict::{Refusal, Verdict},
    kernel::blocks::{BlockWriteError, Blocks, new_block},
    net::{covers, key_network, overlaps, share_prefix},
    policy::{
        evidence::{AnsweredPeers, HandshakePeers, Proof},
        protect::{ProtectedPeers, Snapshot},
    },
    rate::{Shares, TokenBucket, share_of},
};

/// What the agent does with findings.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// Alert only (the default): no packet is ever dropped.
    #[default]
    Monitor,
    /// Also block scanners (and block-list CIDRs) at XDP, for a TTL.
    Drop,
}

impl Mode {
    /// As written in the configuration and the status file.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Who may never be blocked, and how long blocks last.
#[derive(Clone, Debug)]
pub struct Policy {
    pub drop: bool,
    pub dry_run: bool,
    pub ttl: Duration,
    pub max_ttl: Duration,
    pub never_block: Vec<IpNet>,
    /// The protected peers; `None` while they cannot be read (then nothing is blocked).
    pub peers: Snapshot,
    /// Remotes that answered this host's flows (see [`AnsweredPeers`]).
    pub answered: Arc<dyn AnsweredPeers>,
    /// How recent an answer protects its remote.
    pub answered_within: Duration,
    /// Remotes that completed a handshake, and at which hop count (see [`HandshakePeers`]).
    pub verified: Arc<dyn HandshakePeers>,
    /// See [`HOP_TOLERANCE`].
    pub hop_tolerance: u8,
}

impl Policy {
    /// The same policy, consulting this evidence of real addresses (the kernel's maps).
    #[must_use]
    pub fn with_evidence(
        mut self,
        answered: Arc<dyn AnsweredPeers>,
        verified: Arc<dyn HandshakePeers>,
    ) -> Self {
        self.answered = answered;
        self.verified = verified;
        self
    }

    /// Why a finding's source may not be blocked, if it may not: [`Policy::protected`], then
    /// the kernel's evidence that its address is real, weighed against the finding's `proof` —
    /// a completed handshake at another hop count than the probes' (`suspected_spoof`), a
    /// completed handshake against a finding whose packets' hop counts are unknown
    /// (`unverified_evidence`: unknown evidence never blocks a source with verified evidence
    /// against it), or an answer to one of our flows.
    pub fn refused(&self, key: &SourceKey, ipv6_prefix: u32, proof: Proof) -> Option<Refusal> {
        let net = key_network(key, ipv6_prefix);
        if let Some(why) = self.protected(&net) {
            return Some(why);
        }
        let verified = match proof {
            Proof::Connection => None,
            Proof::Hops(_) | Proof::Unmeasured => self.verified.verified_hops(key),
        };
        match (proof, verified) {
            (Proof::Hops(hops), Some(verified))
                if hops_disagree(verified, hops.min, hops.max, self.hop_tolerance) =>
            {
                return Some(Refusal::SuspectedSpoof);
            }
            (Proof::Unmeasured, Some(_)) => return Some(Refusal::UnverifiedEvidence),
            _ => {}
        }
        self.answered
            .answered(&net, self.answered_within)
            .then_some(Refusal::AnsweredPeer)
    }

    /// Why a network may not be blocked, if it may not: it overlaps loopback, a `never_block`
    /// network, an own address, a gateway or a resolver; it covers a connected network; or the
    /// protected peers are unknown. Compared in the kernel's
    /// address space, so `::ffff:0:0/96` or `::/0` are seen to cover IPv4 peers.
    pub fn protected(&self, net: &IpNet) -> Option<Refusal> {
        let loopback: [IpNet; 2] = [
            IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid"),
            IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid"),
        ];
        let overlap = |list: &[IpNet]| list.iter().any(|p| overlaps(p, net));
        if overlap(&loopback) {
            return Some(Refusal::Loopback);
        }
        if overlap(&self.never_block) {
            return Some(Refusal::NeverBlock);
        }
        let Some(peers) = self.peers.as_deref() else {
            return Some(Refusal::ProtectedSetUnavailable);
        };
        let ProtectedPeers {
            own,
            connected,
            gateways,
            resolvers,
        } = peers;
        if overlap(own) {
            Some(Refusal::OwnAddress)
        } else if overlap(gateways) {
            Some(Refusal::Gateway)
        } else if overlap(resolvers) {
            Some(Refusal::Resolver)
        } else if connected.iter().any(|c| covers(net, c)) {
            Some(Refusal::ConnectedNetwork)
        } else {
            None
        }
    }

    /// TTL of the `offenses`-th block: `ttl · 2^(offenses-1)`, at most `max_ttl`.
    pub fn ttl_for(&self, offenses: u32) -> Duration {
        let doublings = offenses.saturating_sub(1).min(20);
        self.ttl.saturating_mul(1u32 << doublings).min(self.max_ttl)
    }
}

/// The budget of new automatic blocks: the overall bucket (`max_blocks_per_second`,
/// `block_burst`) and a tenth of it per source prefix (an IPv4 /16, an IPv6 /32), taken first.
/// A flood of forged findings that claims one prefix spends that prefix's share and never the
/// overall bucket a real scanner elsewhere needs; a flood spread over many prefixes is still
/// bounded by the overall bucket.
#[derive(Debug)]
pub struct BlockBudget {
    overall: TokenBucket,
    shares: Shares<u64>,
}

impl BlockBudget {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            overall: TokenBucket::new(per_second, burst),
            shares: Shares::new(share_of(per_second), share_of(burst)),
        }
    }

    /// Takes a token for a block of `key` at `now`, or says which budget is spent. A finding
    /// whose `proof` is a connection from the source cannot be forged, so it takes from the
    /// bucket only, not from its prefix's share (the shares confine forged floods).
    pub fn take(&mut self, key: &SourceKey, proof: Proof, now: Instant) -> Result<(), Refusal> {
        if proof != Proof::Connection && !self.shares.take(share_prefix(key), now) {
            return Err(Refusal::PrefixRateLimited);
        }
        if !self.overall.take(now) {
            return Err(Refusal::RateLimited);
        }
        Ok(())
    }
}

/// Blocks the daemon adds for findings, in the pinned `BLOCKS` hash.
pub struct Enforcer {
    pub policy: Policy,
    /// New automatic blocks.
    pub budget: BlockBudget,
    /// Offences per source, remembered across expiries (bounded: cleared past the cap).
    offenses: StdHashMap<SourceKey, u32>,
}

/// Sources whose offence count is remembered.
const OFFENSE_MEMORY: usize = 65_536;

impl Enforcer {
    pub fn new(policy: Policy, budget: BlockBudget) -> Self {
        Self {
            policy,
            budget,
            offenses: StdHashMap::new(),
        }
    }

    /// Decides on and, in drop mode, writes a block for a finding's source into `blocks`;
    /// `proof` is what the finding proves about the source's address ([`Policy::refused`]).
    pub fn block_finding(
        &mut self,
        blocks: &mut Blocks,
        key: &SourceKey,
        ipv6_prefix: u32,
        proof: Proof,
        kind: &str,
        now_ns: u64,
    ) -> Verdict {
        if !self.policy.drop {
            return Verdict::Alert;
        }
        if let Some(why) = self.policy.refused(key, ipv6_prefix, proof) {
            return Verdict::NotBlocked(why);
        }
        let existing = blocks.get(key).ok().flatten();
        if let Some(e) = existing
            && !e.expired(now_ns)
        {
            // Already blocked (a second kind from the same source): keep the block.
            return Verdict::AlreadyBlocked {
                ttl: Duration::from_nanos(e.expires_ns.saturating_sub(now_ns)),
            };
        }
        if self.offenses.len() >= OFFENSE_MEMORY {
            self.offenses.clear();
        }
        let remembered = self.offenses.entry(*key).or_insert(0);
        let offenses = (*remembered).max(existing.map_or(0, |e| e.offenses)) + 1;
        let ttl = self.policy.ttl_for(offenses);
        // After the checks that cost no block, before any write: a flood of forged findings
        // spends this budget, not the block map.
        if let Err(why) = self.budget.take(key, proof, Instant::now()) {
            return Verdict::NotBlocked(why);
        }
        if self.policy.dry_run {
            return Verdict::WouldBlock { ttl };
        }
        *remembered = offenses;
        let entry = new_block(BlockReason::Detection, now_ns, Some(ttl), offenses, kind);
        match blocks.insert(key, &entry) {
            Ok(()) => Verdict::Block { ttl, offenses },
            Err(BlockWriteError::Full) => Verdict::NotBlocked(Refusal::Full),
            Err(e) => {
                log::error!("adding a block failed: {e}");
                Verdict::NotBlocked(Refusal::Error)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        net::parse_cidr,
        policy::evidence::{HOP_TOLERANCE, NoAnswerEvidence, NoHandshakeEvidence, ProbeHops},
    };

    fn net(s: &str) -> IpNet {
        parse_cidr(s).unwrap()
    }

    fn peers() -> ProtectedPeers {
        ProtectedPeers {
            own: vec![net("192.0.2.10")],
            connected: vec![net("192.0.2.0/24"), net("2001:db8:1:2::/64")],
            gateways: vec![net("192.0.2.1")],
            resolvers: vec![net("203.0.113.53"), net("2001:db8:53::53")],
        }
    }

    pub(crate) fn policy() -> Policy {
        Policy {
            drop: true,
            dry_run: false,
            ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86400),
            never_block: vec![net("198.51.100.0/24")],
            peers: Some(Arc::new(peers())),
            answered: Arc::new(NoAnswerEvidence),
            answered_within: Duration::from_secs(600),
            verified: Arc::new(NoHandshakeEvidence),
            hop_tolerance: HOP_TOLERANCE,
        }
    }

    fn key(s: &str) -> SourceKey {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => SourceKey::from_ipv4(a.octets()),
            IpAddr::V6(a) => SourceKey::from_ipv6(a.octets(), 64),
        }
    }

    /// Sources that completed a handshake, as a fixed list: what the kernel map provides.
    #[derive(Debug)]
    struct FakeVerified(Vec<(SourceKey, u8)>);

    impl HandshakePeers for FakeVerified {
        fn verified_hops(&self, source: &SourceKey) -> Option<u8> {
            self.0.iter().find(|(k, _)| k == source).map(|(_, h)| *h)
        }
    }

    /// Remotes that answered, as a fixed list: what the kernel map will provide.
    #[derive(Debug)]
    struct FakeAnswered(Vec<IpNet>, Duration);

    impl AnsweredPeers for FakeAnswered {
        fn answered(&self, source: &IpNet, within: Duration) -> bool {
            within >= self.1 && self.0.iter().any(|a| overlaps(a, source))
        }
    }

    #[test]
    fn protected_networks_are_never_blocked() {
        let p = policy();
        assert_eq!(p.protected(&net("127.0.0.5/32")), Some(Refusal::Loopback));
        assert_eq!(p.protected(&net("::1/128")), Some(Refusal::Loopback));
        assert_eq!(
            p.protected(&net("198.51.100.7/32")),
            Some(Refusal::NeverBlock)
        );
        assert_eq!(
            p.protected(&net("192.0.2.10/32")),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(p.protected(&net("192.0.2.1/32")), Some(Refusal::Gateway));
        // A list entry covering our own address is refused too.
        assert_eq!(p.protected(&net("192.0.2.0/24")), Some(Refusal::OwnAddress));
        assert_eq!(p.protected(&net("203.0.113.9/32")), None);
    }

    #[test]
    fn resolvers_and_connected_networks_are_protected() {
        let p = policy();
        assert_eq!(p.protected(&net("203.0.113.53")), Some(Refusal::Resolver));
        assert_eq!(
            p.protected(&net("2001:db8:53::/64")),
            Some(Refusal::Resolver)
        );
        // A scanner on the LAN may be blocked, its address alone ...
        assert_eq!(p.protected(&net("192.0.2.77")), None);
        // ... but no block may cover the LAN: not a list's /8 (which also covers our own
        // address here), not an IPv6 source's /64.
        assert_eq!(p.protected(&net("192.0.0.0/8")), Some(Refusal::OwnAddress));
        assert_eq!(
            p.protected(&net("2001:db8:1::/48")),
            Some(Refusal::ConnectedNetwork)
        );
        assert_eq!(
            p.protected(&net("2001:db8:1:2::/64")),
            Some(Refusal::ConnectedNetwork)
        );
        assert_eq!(p.protected(&net("2001:db8:1:3::/64")), None);
    }

    #[test]
    fn mapped_and_all_covering_networks_are_refused() {
        let p = policy();
        // `::ffff:0:0/96` is all of IPv4 (loopback and gateway included), `::/0` everything.
        assert_eq!(p.protected(&net("::ffff:0:0/96")), Some(Refusal::Loopback));
        assert_eq!(p.protected(&net("::/0")), Some(Refusal::Loopback));
        assert_eq!(
            p.protected(&net("::ffff:192.0.2.0/120")),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(
            p.protected(&net("::ffff:192.0.2.1")),
            Some(Refusal::Gateway)
        );
    }

    #[test]
    fn unknown_protected_set_fails_closed() {
        let p = Policy {
            peers: None,
            ..policy()
        };
        assert_eq!(
            p.protected(&net("203.0.113.9")),
            Some(Refusal::ProtectedSetUnavailable)
        );
        // What is known without the set still says why.
        assert_eq!(p.protected(&net("127.0.0.1")), Some(Refusal::Loopback));
    }

    #[test]
    fn remotes_that_answered_our_flows_are_protected() {
        let p = Policy {
            answered: Arc::new(FakeAnswered(
                vec![net("203.0.113.80")],
                Duration::from_secs(600),
            )),
            ..policy()
        };
        // Findings consult the evidence (block lists and manual blocks do not: `protected`).
        assert_eq!(
            p.refused(&key("203.0.113.80"), 64, Proof::Unmeasured),
            Some(Refusal::AnsweredPeer)
        );
        assert_eq!(p.refused(&key("203.0.113.81"), 64, Proof::Unmeasured), None);
        assert_eq!(p.protected(&net("203.0.113.80")), None);
        let short = Policy {
            answered_within: Duration::from_secs(1),
            ..p
        };
        assert_eq!(
            short.refused(&key("203.0.113.80"), 64, Proof::Unmeasured),
            None
        );
    }

    #[test]
    fn probes_at_another_hop_count_than_the_handshake_are_a_suspected_spoof() {
        let p = policy().with_evidence(
            Arc::new(NoAnswerEvidence),
            Arc::new(FakeVerified(vec![
                (key("203.0.113.7"), 3),
                (key("2001:db8:7::1"), 5),
            ])),
        );
        let at = |min, max| Proof::Hops(ProbeHops { min, max });
        // Forged from 7 hops away: alert only.
        assert_eq!(
            p.refused(&key("203.0.113.7"), 64, at(7, 7)),
            Some(Refusal::SuspectedSpoof)
        );
        // The verified client's own SYNs in the window do not hide the forged ones.
        assert_eq!(
            p.refused(&key("203.0.113.7"), 64, at(3, 7)),
            Some(Refusal::SuspectedSpoof)
        );
        assert_eq!(
            p.refused(&key("2001:db8:7::99"), 64, at(9, 9)),
            Some(Refusal::SuspectedSpoof)
        );
        // Verified at its own hop count, or never verified: blocked as before. (Not measured:
        // see the next test.)
        assert_eq!(p.refused(&key("203.0.113.7"), 64, at(3, 3)), None);
        assert_eq!(p.refused(&key("203.0.113.8"), 64, at(7, 7)), None);
        // The static protections come first.
        assert_eq!(
            p.refused(&key("192.0.2.1"), 64, at(7, 7)),
            Some(Refusal::Gateway)
        );
        let tolerant = Policy {
            hop_tolerance: 1,
            ..p
        };
        assert_eq!(tolerant.refused(&key("203.0.113.7"), 64, at(2, 4)), None);
    }

    /// A policy with two verified sources (an IPv4 client 3 hops away, an IPv6 /64 5 hops away).
    fn verified_policy() -> Policy {
        policy().with_evidence(
            Arc::new(NoAnswerEvidence),
            Arc::new(FakeVerified(vec![
                (key("203.0.113.7"), 3),
                (key("2001:db8:7::1"), 5),
            ])),
        )
    }

    #[test]
    fn a_verified_source_named_by_evidence_without_hop_counts_is_not_blocked() {
        let p = verified_policy();
        // An ACK scan's RSTs, an aggregate's sampled sources: no hop count of the packets.
        assert_eq!(
            p.refused(&key("203.0.113.7"), 64, Proof::Unmeasured),
            Some(Refusal::UnverifiedEvidence)
        );
        assert_eq!(
            p.refused(&key("2001:db8:7::99"), 64, Proof::Unmeasured),
            Some(Refusal::UnverifiedEvidence)
        );
        // The static protections still come first.
        assert_eq!(
            p.refused(&key("192.0.2.1"), 64, Proof::Unmeasured),
            Some(Refusal::Gateway)
        );
    }

    #[test]
    fn an_unverified_source_named_by_evidence_without_hop_counts_is_still_blocked() {
        let p = verified_policy();
        assert_eq!(p.refused(&key("203.0.113.8"), 64, Proof::Unmeasured), None);
        assert_eq!(
            p.refused(&key("2001:db8:8::1"), 64, Proof::Unmeasured),
            None
        );
        assert_eq!(
            policy().refused(&key("203.0.113.7"), 64, Proof::Unmeasured),
            None
        );
    }

    #[test]
    fn a_request_over_a_connection_blocks_a_verified_client() {
        // A web_scan's request came over the connection its handshake opened: the handshake
        // is its evidence, not a reason to refuse (the opt-in is `policy::findings`' to check).
        let p = verified_policy();
        assert_eq!(p.refused(&key("203.0.113.7"), 64, Proof::Connection), None);
        assert_eq!(p.refused(&key("203.0.113.8"), 64, Proof::Connection), None);
        // The protections and the answered peers still hold.
        assert_eq!(
            p.refused(&key("192.0.2.1"), 64, Proof::Connection),
            Some(Refusal::Gateway)
        );
        let answered = Policy {
            answered: Arc::new(FakeAnswered(
                vec![net("203.0.113.7")],
                Duration::from_secs(600),
            )),
            ..p
        };
        assert_eq!(
            answered.refused(&key("203.0.113.7"), 64, Proof::Connection),
            Some(Refusal::AnsweredPeer)
        );
    }

    #[test]
    fn refusal_names_are_the_alert_values() {
        assert_eq!(
            Refusal::ProtectedSetUnavailable.name(),
            "protected_set_unavailable"
        );
        assert_eq!(Refusal::RateLimited.name(), "rate_limited");
        assert_eq!(Refusal::Resolver.name(), "resolver");
        assert_eq!(Refusal::SuspectedSpoof.name(), "suspected_spoof");
        assert_eq!(Refusal::UnverifiedEvidence.name(), "unverified_evidence");
    }

    #[test]
    fn a_flood_claiming_one_prefix_spends_its_share_not_the_block_budget() {
        let mut budget = BlockBudget::new(10, 100);
        let now = Instant::now();
        // 10,000 forged findings from one /16: its share, a tenth of the burst.
        let forged = (0..10_000u32)
            .filter(|i| {
                let [_, _, a, b] = i.to_be_bytes();
                budget
                    .take(
                        &SourceKey::from_ipv4([198, 18, a, b]),
                        Proof::Unmeasured,
                        now,
                    )
                    .is_ok()
            })
            .count();
        assert_eq!(forged, 10);
        let unmeasured = Proof::Unmeasured;
        assert_eq!(
            budget.take(&SourceKey::from_ipv4([198, 18, 0, 1]), unmeasured, now),
            Err(Refusal::PrefixRateLimited)
        );
        // A connection from the source is no forgery: the bucket alone decides.
        assert_eq!(
            budget.take(
                &SourceKey::from_ipv4([198, 18, 0, 1]),
                Proof::Connection,
                now
            ),
            Ok(())
        );
        // A real scanner elsewhere still finds a token, and so does an IPv6 source.
        assert_eq!(budget.take(&key("203.0.113.9"), unmeasured, now), Ok(()));
        assert_eq!(budget.take(&key("2001:db8::1"), unmeasured, now), Ok(()));
        // Spread over many prefixes, a flood is bounded by the overall bucket.
        let spread = (0..10_000u32)
            .filter(|i| {
                let [_, _, a, _] = i.to_be_bytes();
                budget
                    .take(&SourceKey::from_ipv4([100, a, 0, 1]), unmeasured, now)
                    .is_ok()
            })
            .count();
        assert!(spread <= 100, "{spread}");
        assert_eq!(
            budget.take(&key("192.0.2.200"), unmeasured, now),
            Err(Refusal::RateLimited)
        );
    }

    #[test]
    fn repeat_offenders_get_doubling_ttls_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.ttl_for(1), Duration::from_secs(3600));
        assert_eq!(p.ttl_for(2), Duration::from_secs(7200));
        assert_eq!(p.ttl_for(3), Duration::from_secs(14400));
        assert_eq!(p.ttl_for(10), Duration::from_secs(86400));
        assert_eq!(p.ttl_for(u32::MAX), Duration::from_secs(86400));
    }
}
