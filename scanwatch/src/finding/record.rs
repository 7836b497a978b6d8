//! A finding as the alert log, ECS, syslog, metrics and the fleet see it: what was found, how
//! much, and what drop mode did about it.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use scanwatch_common::{
    event::{DIRECTION_EGRESS, DetectionKind, ScanEvent},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use serde::Serialize;

use crate::{
    finding::{
        process::Process,
        tool::ToolMatch,
        verdict::{Refusal, Verdict},
    },
    kernel::clock::rfc3339,
};

/// Which way a finding's probes went.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Direction {
    /// Probes arriving at this host.
    Ingress,
    /// Probes this host sends (the finding's source is a local address).
    Egress,
}

impl Direction {
    /// The direction of a kernel event.
    pub fn of(event: &ScanEvent) -> Self {
        if event.direction == DIRECTION_EGRESS {
            Self::Egress
        } else {
            Self::Ingress
        }
    }

    /// The metric label and alert value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// The transport protocol of a swept port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// From an IP protocol number (`None` for the others).
    pub fn of(proto: u8) -> Option<Self> {
        match proto {
            IPPROTO_TCP => Some(Self::Tcp),
            IPPROTO_UDP => Some(Self::Udp),
            _ => None,
        }
    }
}

/// What was done about a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Monitor mode, or not blocked (see `not_blocked`).
    Alert,
    /// Blocked in drop mode.
    Block,
    /// Dry run: would have been blocked.
    WouldBlock,
}

/// One finding, as written to the alert log (one JSON object per line).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finding {
    /// When the daemon wrote the finding (RFC 3339, UTC).
    pub timestamp: String,
    /// The scanning source: an address, or `prefix/len` for aggregated IPv6; `*` for a
    /// `distributed_scan` (many sources: see `target` and `sources`).
    pub source: String,
    /// The probed destination of a `distributed_scan` (`*` for a distributed sweep of one port
    /// across many hosts, see `port`); the server (`host:port`) of a `web_scan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The probed port of a distributed sweep (a `distributed_scan` whose `target` is `*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The transport protocol of that port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Transport>,
    /// A sample of a `distributed_scan`'s sources (the last distinct ones to add a port, oldest
    /// first; at most `scanwatch_common::distributed::SAMPLE_SOURCES`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// The first-level prefixes (`ipv6_prefix`, /64 by default) a wide-level finding's source
    /// (`ipv6_wide_prefix`, /48 by default) used: the last distinct ones to probe, oldest first;
    /// at most `scanwatch_common::wide::SAMPLE_PREFIXES`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<Vec<String>>,
    pub kind: DetectionKind,
    /// MITRE ATT&CK technique.
    pub technique: &'static str,
    /// `ingress`: probes arriving at this host; `egress`: probes this host sends (`source` is
    /// then the local address).
    pub direction: Direction,
    /// Distinct destination ports of the kind's probes (TCP SYN for port_scan, UDP for
    /// udp_scan, stealth probes for stealth_scan, ports answered with a RST to a bare ACK for
    /// ack_scan, SCTP INIT / COOKIE ECHO for sctp_scan; TCP SYN otherwise), estimated.
    pub distinct_ports: u64,
    /// Distinct destination hosts (ICMP probes only for icmp_sweep), estimated.
    pub distinct_hosts: u64,
    /// IP protocol numbers probed (protocol_scan only), exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_protocols: Option<u64>,
    /// Present and true when an estimator behind this finding's counts is saturated: the
    /// counts are lower bounds (the source probed at least that many).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_least: bool,
    /// Probes from the source in this window (ack_scan's ACKs are not among them: they take
    /// the established fast path; their RSTs are the evidence).
    pub packets: u64,
    /// Probes by class in this window (non-zero classes only).
    pub probes: BTreeMap<&'static str, u32>,
    /// A few targets of this source's probes (`host:port`, or `host`), newest last; at most
    /// [`MAX_EXAMPLES`].
    pub examples: Vec<String>,
    pub window_seconds: u64,
    /// When the tracker first saw the source (RFC 3339).
    pub first_seen: String,
    /// The probe that crossed the threshold (RFC 3339).
    pub last_seen: String,
    pub interface: String,
    pub action: Action,
    /// How long the block lasts, when `action` is `block` or `would_block`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_ttl_seconds: Option<u64>,
    /// Why a finding in drop mode was not blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_blocked: Option<Refusal>,
    /// Names of the block lists covering the source (enforced or enrichment-only), in
    /// configuration order; absent when none does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listed_in: Vec<String>,
    /// Hop counts, when known (drop mode): the source's completed handshake's, and the fewest
    /// and most of its probes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<Hops>,
    /// The scanner the source's sampled probes come from (`name` `unknown`, with the
    /// `candidates` the probes allow, unless exactly one tool sends such probes): of its /64s
    /// for a wide finding, of its sampled sources for a `distributed_scan`, of the first
    /// packet of the crossing probe's socket for an egress finding of the agent. Absent for a
    /// `web_scan` (whose `web` names its tool) and for an egress finding whose socket has no
    /// record (`process`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolMatch>,
    /// The matched request of a `web_scan` (signatures, tool, request line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<WebDetail>,
    /// Egress findings of the agent: who sent the probes (`null` when nothing is known of the
    /// sending socket: a packet the kernel sent itself, or a kernel that cannot tell). Absent
    /// from ingress findings and from replayed ones (a capture holds no processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Option<Process>>,
}

/// The hop counts behind a `suspected_spoof` decision, as written in the alert:
/// `"hops": {"verified": 3, "probes": [7, 7]}`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Hops {
    /// Hops of the source's completed TCP handshake, if it completed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<u8>,
    /// Fewest and most hops of the probes in the window.
    pub probes: [u8; 2],
}

impl Finding {
    /// A finding with what every finding says (kind, technique, direction, source, times,
    /// window, interface) and nothing else yet: no counts, no probes, monitor-mode action.
    /// Every finding is built from it, so a new field has one default.
    pub fn new(
        kind: DetectionKind,
        direction: Direction,
        source: String,
        seen: [String; 2],
        window: Duration,
        interface: String,
    ) -> Self {
        let [first_seen, last_seen] = seen;
        Self {
            timestamp: rfc3339(SystemTime::now()),
            source,
            target: None,
            port: None,
            protocol: None,
            sources: None,
            prefixes: None,
            kind,
            technique: kind.technique(),
            direction,
            distinct_ports: 0,
            distinct_hosts: 0,
            distinct_protocols: None,
            at_least: false,
            packets: 0,
            probes: BTreeMap::new(),
            examples: Vec::new(),
            window_seconds: window.as_secs(),
            first_seen,
            last_seen,
            interface,
            action: Action::Alert,
            block_ttl_seconds: None,
            not_blocked: None,
            listed_in: Vec::new(),
            hops: None,
            tool: None,
            web: None,
            process: None,
        }
    }

    /// A port-scan finding from `source` with fixed times and counts, for unit tests of the
    /// modules that write findings out.
    #[cfg(test)]
    pub(crate) fn sample(source: &str) -> Self {
        let at = "2026-01-01T00:00:00.000Z".to_owned();
        Self {
            timestamp: at.clone(),
            distinct_ports: 20,
            distinct_hosts: 1,
            packets: 21,
            ..Self::new(
                DetectionKind::PortScan,
                Direction::Ingress,
                source.into(),
                [at.clone(), at],
                Duration::from_secs(300),
                "eth0".into(),
            )
        }
    }

    /// Records what enforcement did.
    pub fn set_verdict(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Alert => {}
            Verdict::Block { ttl, .. } | Verdict::AlreadyBlocked { ttl } => {
                self.action = Action::Block;
                self.block_ttl_seconds = Some(ttl.as_secs());
            }
            Verdict::WouldBlock { ttl } => {
                self.action = Action::WouldBlock;
                self.block_ttl_seconds = Some(ttl.as_secs());
            }
            Verdict::NotBlocked(why) => self.not_blocked = Some(*why),
        }
    }
}

/// What a `web_scan` alert says about the request, under `web`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebDetail {
    /// The tool of the first matching signature.
    pub tool: String,
    /// Every matching signature's name.
    pub signatures: Vec<String>,
    /// The request line, escaped and truncated to `web::SHOWN_CHARS`.
    pub request_line: String,
    /// The first `User-Agent`, escaped and truncated, if the sample held one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}
