//! Which findings drop mode may block on, and whom: the source of an ingress finding (its
//! probes' hop counts checked against a verified handshake), the sampled sources of an
//! aggregate finding (distributed, wide prefix) and the client of a web_scan only where the
//! operator opted in, never the source of an egress finding (this host's own probes).

use scanwatch_common::{
    addr::SourceKey,
    event::{DetectionKind, ScanEvent},
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
        match subject {
            Subject::WebClient(source) if rules.web_scan => block(source, None),
            Subject::Event(_, Counted::Sources(sample)) if rules.distributed => {
                block_each(sample, block)
            }
            Subject::Event(_, Counted::Prefixes { prefixes, .. }) if rules.wide_prefix => {
                block_each(prefixes, block)
            }
            Subject::WebClient(_)
            | Subject::Event(_, Counted::Sources(_) | Counted::Prefixes { .. }) => Verdict::Alert,
            Subject::Event(event, Counted::Source) => {
                if Direction::of(event) == Direction::Egress {
                    return Verdict::Alert;
                }
                block(&event.source, ProbeHops::of(event))
            }
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
