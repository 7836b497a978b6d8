//! Which findings drop mode may block on, and whom: the source of an ingress finding (its
//! probes' hop counts checked against a verified handshake), the sampled sources of an
//! aggregate finding (distributed, wide prefix) and the client of a web_scan only where the
//! operator opted in, never the source of an egress finding (this host's own probes).

use scanwatch_common::{
    addr::SourceKey,
    event::{DetectionKind, ScanEvent},
    kinds::BlockEvidence,
};

use crate::{
    finding::{record::Direction, report::Counted, verdict::Verdict},
    kernel::blocks::Blocks,
    policy::{enforce::Enforcer, evidence::ProbeHops},
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
    /// Whether the operator set `key`, a kind's opt-in (`BlockEvidence::OptIn` in the table of
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
        let mut block = |source: &SourceKey, hops: Option<ProbeHops>| {
            let verdict =
                self.block_finding(blocks, source, ipv6_prefix, hops, kind.name(), now_ns);
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
        match (subject, kind.spec().block) {
            (Subject::Event(event, Counted::Source), BlockEvidence::ReturnPath) => {
                if Direction::of(event) == Direction::Egress {
                    return Verdict::Alert;
                }
                block(&event.source, ProbeHops::of(event))
            }
            (Subject::Event(_, Counted::Sources(sample)), BlockEvidence::OptIn(key))
                if rules.opted_in(key) =>
            {
                block_each(sample, block)
            }
            (Subject::WebClient(source), BlockEvidence::OptIn(key)) if rules.opted_in(key) => {
                block(source, None)
            }
            _ => Verdict::Alert,
        }
    }
}

/// Blocks each sampled source of an aggregate finding (their own hop counts are not in the
/// aggregate's event); returns the first verdict that blocked (or the last refusal).
fn block_each(
    sample: &[SourceKey],
    mut block: impl FnMut(&SourceKey, Option<ProbeHops>) -> Verdict,
) -> Verdict {
    let mut outcome = Verdict::Alert;
    for source in sample {
        let verdict = block(source, None);
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
    use scanwatch_common::kinds::KINDS;

    use super::*;

    #[test]
    fn every_opt_in_of_the_table_of_kinds_is_a_rule() {
        let all = BlockRules {
            distributed: true,
            wide_prefix: true,
            web_scan: true,
        };
        for spec in &KINDS {
            if let BlockEvidence::OptIn(key) = spec.block {
                assert!(all.opted_in(key), "{}: {key}", spec.name);
                assert!(!BlockRules::default().opted_in(key), "{}: {key}", spec.name);
            }
        }
        assert!(all.opted_in("block_wide_prefix"));
        assert!(!all.opted_in("block_everything"));
    }
}
