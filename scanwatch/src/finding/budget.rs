//! The alert budget: how many findings of each kind and direction are written per second.

use std::time::Instant;

use scanwatch_common::{addr::SourceKey, event::DetectionKind, kinds::BlockEvidence};
use strum::VariantArray as _;

use crate::{
    finding::record::Direction,
    net::share_prefix,
    rate::{Shares, TokenBucket, share_of},
};

/// Token buckets over alert output, one per (kind, direction), and within each a tenth per
/// source prefix (an IPv4 /16, an IPv6 /32), taken first: under attack, unthrottled alert logs
/// become their own denial of service, one shared budget would let a forged flood of one kind
/// mute every other, and a flood claiming one prefix would otherwise spend the alerts of real
/// scanners elsewhere. Findings over a budget are counted, not written.
#[derive(Debug)]
pub struct AlertBudget {
    buckets: Vec<TokenBucket>,
    shares: Shares<(usize, u64)>,
}

impl AlertBudget {
    /// `per_second` alerts per (kind, direction), in bursts of as many, starting full.
    pub fn new(per_second: u32) -> Self {
        Self::starting_at(per_second, Instant::now())
    }

    fn starting_at(per_second: u32, now: Instant) -> Self {
        let bucket = TokenBucket::starting_at(per_second, per_second, now);
        Self {
            buckets: vec![bucket; DetectionKind::ALL.len() * Direction::VARIANTS.len()],
            shares: Shares::new(share_of(per_second), share_of(per_second)),
        }
    }

    /// Takes a token of `kind` in `direction` for a finding about `source` (its key: the
    /// source, a wide prefix, or a distributed scan's target) at `now`; false when that budget
    /// or the source prefix's share of it is spent (a kind proven by an established connection
    /// takes no share).
    pub fn take(
        &mut self,
        kind: DetectionKind,
        direction: Direction,
        source: &SourceKey,
        now: Instant,
    ) -> bool {
        let index = kind as usize * Direction::VARIANTS.len() + direction as usize;
        // A finding proven by a connection from its source (web_scan) cannot be forged: the
        // shares, which confine forged floods, do not apply to it.
        let proven = matches!(kind.spec().block, BlockEvidence::EstablishedConnection(_));
        (proven || self.shares.take((index, share_prefix(source)), now))
            && self.buckets[index].take(now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn budget_limits_burst_and_refills() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(3, start);
        let (port, ingress) = (DetectionKind::PortScan, Direction::Ingress);
        // A source in a new /16 each time: the kind's bucket alone decides.
        let mut n = 0u8;
        let mut take = |b: &mut AlertBudget, at| {
            n += 1;
            b.take(port, ingress, &SourceKey::from_ipv4([10, n, 0, 1]), at)
        };
        assert!(take(&mut b, start) && take(&mut b, start) && take(&mut b, start));
        assert!(!take(&mut b, start));
        assert!(take(&mut b, start + Duration::from_millis(400)));
        assert!(!take(&mut b, start + Duration::from_millis(400)));
    }

    #[test]
    fn a_flood_of_one_kind_cannot_spend_another_kinds_budget() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(50, start);
        // Forged sources spread over many /16s: only the kind's budget bounds them.
        let flooded = (0..10_000u32)
            .filter(|i| {
                let [_, _, a, b2] = i.to_be_bytes();
                let source = SourceKey::from_ipv4([10, a, b2, 1]);
                b.take(DetectionKind::PortScan, Direction::Ingress, &source, start)
            })
            .count();
        assert_eq!(flooded, 50);
        let other = SourceKey::from_ipv4([203, 0, 113, 9]);
        for kind in DetectionKind::ALL {
            assert!(
                b.take(kind, Direction::Egress, &other, start),
                "egress {}",
                kind.name()
            );
            if kind != DetectionKind::PortScan {
                assert!(
                    b.take(kind, Direction::Ingress, &other, start),
                    "ingress {}",
                    kind.name()
                );
            }
        }
    }

    #[test]
    fn a_flood_claiming_one_prefix_leaves_its_kinds_budget_to_other_sources() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(50, start);
        // 10,000 forged port scans from one /16: its share of 5.
        let flooded = (0..10_000u32)
            .filter(|i| {
                let [_, _, _, last] = i.to_be_bytes();
                let source = SourceKey::from_ipv4([198, 18, 7, last]);
                b.take(DetectionKind::PortScan, Direction::Ingress, &source, start)
            })
            .count();
        assert_eq!(flooded, 5);
        // A real scanner elsewhere still finds the kind's budget.
        let real = SourceKey::from_ipv4([203, 0, 113, 9]);
        assert!(b.take(DetectionKind::PortScan, Direction::Ingress, &real, start));
        // web_scans (over established connections, not forgeable) from one prefix take no share.
        let web = (0..20u8)
            .filter(|last| {
                let client = SourceKey::from_ipv4([198, 18, 9, *last]);
                b.take(DetectionKind::WebScan, Direction::Ingress, &client, start)
            })
            .count();
        assert_eq!(web, 20);
    }
}
