//! Each stage's settings as the configuration gives them: the stages take their own settings,
//! never the whole `Config`, so the configuration sits above them and none reads it.

use std::sync::Arc;

use crate::{
    config::{Config, Mode},
    finding::report::ReportSettings,
    outputs::alerts::AlertSink,
    policy::{
        enforce::Policy,
        evidence::{HOP_TOLERANCE, NoAnswerEvidence, NoHandshakeEvidence},
        findings::BlockRules,
        protect::Snapshot,
    },
};

impl Config {
    /// What reporting a finding needs: windows, IPv6 aggregation, ignored sources, signatures.
    pub fn report(&self) -> ReportSettings<'_> {
        ReportSettings {
            window: self.window,
            long_window: self.long_window,
            ipv6_prefix: self.ipv6_prefix,
            ignore: &self.ignore,
            signatures: &self.web.signatures,
        }
    }

    /// The alert sink this configuration asks for: its alert log, format and syslog target.
    pub fn alert_sink(&self) -> anyhow::Result<AlertSink> {
        let mut sink = AlertSink::open(self.alert_log.as_deref())?.with_format(self.alert_format);
        if let Some(target) = &self.alert_syslog {
            sink = sink.with_syslog(target)?;
        }
        Ok(sink)
    }

    /// The findings beyond a single source's own probes that drop mode may block on.
    pub fn block_rules(&self) -> BlockRules {
        BlockRules {
            distributed: self.block_distributed,
            wide_prefix: self.block_wide_prefix,
            web_scan: self.block_web_scan,
        }
    }

    /// Whether two configurations write alerts to the same places in the same format.
    pub fn same_alert_output(&self, other: &Self) -> bool {
        (&self.alert_log, self.alert_format, &self.alert_syslog)
            == (&other.alert_log, other.alert_format, &other.alert_syslog)
    }

    /// The drop policy of this configuration with the protected peers of `peers`.
    pub fn policy(&self, peers: Snapshot) -> Policy {
        let config = self;
        Policy {
            drop: config.mode == Mode::Drop,
            dry_run: config.dry_run,
            ttl: config.block_ttl,
            max_ttl: config.max_block_ttl,
            never_block: config.never_block.clone(),
            peers,
            answered: Arc::new(NoAnswerEvidence),
            answered_within: config.answered_peer_window,
            verified: Arc::new(NoHandshakeEvidence),
            hop_tolerance: HOP_TOLERANCE,
        }
    }
}
