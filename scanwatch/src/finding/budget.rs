//! The alert budget: how many findings of each kind and direction are written per second.

use std::time::Instant;

use scanwatch_common::event::DetectionKind;
use strum::VariantArray as _;

use crate::{finding::record::Direction, rate::TokenBucket};

/// Token buckets over alert output, one per (kind, direction): under attack, unthrottled
/// alert logs become their own denial of service, and one shared budget would let a forged
/// flood of one kind mute every other. Findings over their kind's budget are counted, not
/// written.
#[derive(Debug)]
pub struct AlertBudget {
    buckets: Vec<TokenBucket>,
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
        }
    }

    /// Takes a token of `kind` in `direction` at `now`; false when that budget is spent.
    pub fn take(&mut self, kind: DetectionKind, direction: Direction, now: Instant) -> bool {
        let index = kind as usize * Direction::VARIANTS.len() + direction as usize;
        self.buckets[index].take(now)
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
        let take = |b: &mut AlertBudget, at| b.take(port, ingress, at);
        assert!(take(&mut b, start) && take(&mut b, start) && take(&mut b, start));
        assert!(!take(&mut b, start));
        assert!(take(&mut b, start + Duration::from_millis(400)));
        assert!(!take(&mut b, start + Duration::from_millis(400)));
    }

    #[test]
    fn a_flood_of_one_kind_cannot_spend_another_kinds_budget() {
        let start = Instant::now();
        let mut b = AlertBudget::starting_at(50, start);
        let flooded = (0..10_000)
            .filter(|_| b.take(DetectionKind::PortScan, Direction::Ingress, start))
            .count();
        assert_eq!(flooded, 50);
        for kind in DetectionKind::ALL {
            assert!(
                b.take(kind, Direction::Egress, start),
                "egress {}",
                kind.name()
            );
            if kind != DetectionKind::PortScan {
                assert!(
                    b.take(kind, Direction::Ingress, start),
                    "ingress {}",
                    kind.name()
                );
            }
        }
    }
}
