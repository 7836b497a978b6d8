//! Which findings drop mode may block on, whom, and on what proof of the source's address (the
//! table of kinds' `BlockEvidence`): the source of an ingress finding, on its probes' hop counts
//! checked against a verified handshake (or, for an ACK scan, whose evidence is this host's own
//! RSTs, on nothing but never having completed one); the sampled sources of an aggregate finding
//! (distributed, wide prefix), without hop counts, and the client of a web_scan, on its
//! connection, only where the operator opted in; never the source of an egress finding (this
//! host's own probes).

use scanwatch_common::{
    addr::SourceKey,
    event::{DetectionKind, ScanEvent},
    kinds::BlockEvidence,
};

use crate::{
    finding::{record::Direction, report::Counted, verdict::Verdict},
    kernel::blocks::Blocks,
    policy::{
        enforce::Enforcer,
        evidence::{ProbeHops, Proof},
    },
};

/// The findings an operator allows drop mode to block on beyond a single source's own probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockRules {
    /// Block the sampled sources of a `distributed_scan` (`block_distributed`).
    pub distributed: bool,
    /// Block the first-level prefixes a wide-level finding names (`block_wide_prefix`).
    pub wide_prefix: bool,
    /// Block the client of a `web_scan` (`block_web_scan`).
    pub web_scan: bool,
}

impl BlockRules {
    /// Whether the operator set `key`, a kind's opt-in (`BlockEvidence::opt_in` in the table of
    /// kinds); false for a key this type does not know, so an unknown opt-in never blocks.
    pub fn opted_in(self, key: &str) -> bool {
        match key {
            "block_distributed" => self.distributed,
            "block_wide_prefix" => self.wide_prefix,
            "block_web_scan" => self.web_scan,
            _ => false,
        }
    }
}

/// Who a finding would block.
pub enum Subject<'a> {
    /// The finding of one kernel event: its source, and what the report counted beside it.
    Event(&'a ScanEvent, &'a Counted),
    /// The client of a `web_scan`.
    WebClient(&'a SourceKey),
}

impl Enforcer {
    /// The verdict on a finding of `kind` about `subject`; `on_block` sees each block decision
    /// made (an aggregate finding makes one per sampled source), so the caller can count them.
    /// An aggregate finding carries the first verdict that blocked (or the last refusal).
    #[expect(
        clippy::too_many_arguments,
        reason = "the finding, where blocks go, and the caller's counter"
    )]
    pub fn decide(
        &mut self,
        blocks: &mut Blocks,
        rules: BlockRules,
        ipv6_prefix: u32,
        subject: &Subject<'_>,
        kind: DetectionKind,
        now_ns: u64,
        mut on_block: impl FnMut(&Verdict),
    ) -> Verdict {
        let mut block = |source: &SourceKey, proof: Proof| {
            let verdict =
                self.block_finding(blocks, source, ipv6_prefix, proof, kind.name(), now_ns);
            on_block(&verdict);
            verdict
        };
        // The wide level aggregates first-level prefixes that each stayed below every
        // threshold, whatever the kind: blocked only on the operator's opt-in, never the wide
        // prefix itself.
        if let Subject::Event(_, Counted::Prefixes { prefixes, .. }) = subject {
            return if rules.wide_prefix {
                block_each(prefixes, block)
            } else {
                Verdict::Alert
            };
        }
        // Otherwise the table of kinds says what the kind's block needs.
        let evidence = kind.spec().block;
        if let Some(key) = evidence.opt_in()
            && !rules.opted_in(key)
        {
            return Verdict::Alert;
        }
        match (subject, evidence) {
            (
                Subject::Event(event, Counted::Source),
                BlockEvidence::ReturnPath | BlockEvidence::HostReplies,
            ) => {
                if Direction::of(event) == Direction::Egress {
                    return Verdict::Alert;
                }
                block(&event.source, proof(event, kind))
            }
            (Subject::Event(_, Counted::Sources(sample)), BlockEvidence::OptIn(_)) => {
                block_each(sample, block)
            }
            (Subject::WebClient(source), BlockEvidence::EstablishedConnection(_)) => {
                block(source, Proof::Connection)
            }
            _ => Verdict::Alert,
        }
    }
}

/// What a single source's finding of `kind` proves about the source's address (the table of
/// kinds' `BlockEvidence`): its probes' hop counts when the kind is counted from the source's
/// own probes and they were measured; nothing when the kind is counted from this host's
/// replies, whatever hop counts the source's other probes left in the window.
pub fn proof(event: &ScanEvent, kind: DetectionKind) -> Proof {
    match kind.spec().block {
        BlockEvidence::ReturnPath => Proof::hops(ProbeHops::of(event)),
        BlockEvidence::HostReplies | BlockEvidence::OptIn(_) => Proof::Unmeasured,
        BlockEvidence::EstablishedConnection(_) => Proof::Connection,
    }
}

/// Blocks each sampled source of an aggregate finding (their own hop counts are not in the
/// aggregate's event, so a source that completed a handshake is refused); returns the first
/// verdict that blocked (or the last refusal).
fn block_each(
    sample: &[SourceKey],
    mut block: impl FnMut(&SourceKey, Proof) -> Verdict,
) -> Verdict {
    let mut outcome = Verdict::Alert;
    for source in sample {
        let verdict = block(source, Proof::Unmeasured);
        if !matches!(
            outcome,
            Verdict::Block { .. } | Verdict::AlreadyBlocked { .. } | Verdict::WouldBlock { .. }
        ) {
            outcome = verdict;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use scanwatch_common::{
        classify::PROBE_CLASSES, event::DETECTION_KINDS, evidence::HOPS_UNKNOWN, kinds::KINDS,
    };

    use super::*;

    /// An ingress event of `kind` whose source's probes in the window arrived `hops` away.
    fn event(kind: DetectionKind, hops: u8) -> ScanEvent {
        ScanEvent {
            timestamp_ns: 0,
            first_seen_ns: 0,
            window_start_ns: 0,
            source: SourceKey::from_ipv4([203, 0, 113, 7]),
            probes: [0; PROBE_CLASSES],
            measures: [0; DETECTION_KINDS],
            kind: kind as u32,
            ifindex: 1,
            direction: 0,
            target_port: 0,
            min_hops: hops,
            max_hops: hops,
            window: 0,
            scope: 0,
            proto: 6,
            target: [0; 16],
            sender: scanwatch_common::owner::Sender::NONE,
        }
    }

    #[test]
    fn a_kind_counted_from_the_sources_probes_offers_their_hop_counts() {
        let hops = Proof::Hops(ProbeHops { min: 3, max: 3 });
        assert_eq!(
            proof(&event(DetectionKind::PortScan, 3), DetectionKind::PortScan),
            hops
        );
        assert_eq!(
            proof(
                &event(DetectionKind::StealthScan, HOPS_UNKNOWN),
                DetectionKind::StealthScan
            ),
            Proof::Unmeasured
        );
    }

    #[test]
    fn an_ack_scan_offers_no_hop_counts_whatever_the_sources_other_probes_left() {
        // The verified client's own SYNs set the window's hop counts; the forged ACKs that drew
        // the RSTs have none.
        assert_eq!(
            proof(&event(DetectionKind::AckScan, 3), DetectionKind::AckScan),
            Proof::Unmeasured
        );
    }

    #[test]
    fn every_opt_in_of_the_table_of_kinds_is_a_rule() {
        let all = BlockRules {
            distributed: true,
            wide_prefix: true,
            web_scan: true,
        };
        for spec in &KINDS {
            if let Some(key) = spec.block.opt_in() {
                assert!(all.opted_in(key), "{}: {key}", spec.name);
                assert!(!BlockRules::default().opted_in(key), "{}: {key}", spec.name);
            }
        }
        assert!(all.opted_in("block_wide_prefix"));
        assert!(!all.opted_in("block_everything"));
    }
}
