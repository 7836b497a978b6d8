//! From a kernel event, or a sampled web request, to the finding its alert reports: the one
//! path the agent and `scanwatch replay` share, so a replayed capture gives the alerts a live
//! agent writes (what each adds afterwards: the agent its block lists and verdicts, replay the
//! capture's clock).

use std::time::Instant;

use scanwatch_common::{
    addr::SourceKey,
    distributed::port_key,
    event::{DetectionKind, SCOPE_PORT, ScanEvent, WINDOW_LONG},
    sample::ProbeSample,
    web::WebSample,
};

use crate::{
    finding::{
        from_event::{Examples, finding, name_prefixes, wide_source},
        record::{Direction, Finding},
        tool::{Attribution, ToolMatch},
        web,
    },
    kernel::maps::Maps,
    net,
};

/// What the report of a finding needs of the configuration: the windows (for its
/// `window_seconds`), the IPv6 aggregation, the sources never reported and the web signatures.
#[derive(Clone, Copy, Debug)]
pub struct ReportSettings<'a> {
    pub window: std::time::Duration,
    pub long_window: std::time::Duration,
    pub ipv6_prefix: u32,
    pub ignore: &'a [ipnet::IpNet],
    pub signatures: &'a web::signature::Signatures,
}

/// What a finding counted beside its source, read from the kernel maps when it is reported.
pub enum Counted {
    /// A single source (or egress) finding.
    Source,
    /// A distributed scan's sampled sources (tracker keys).
    Sources(Vec<SourceKey>),
    /// A wide IPv6 finding's first-level prefixes, and its wide prefix (key, length).
    Prefixes {
        prefixes: Vec<SourceKey>,
        wide: (SourceKey, u32),
    },
}

/// The memory findings are described with: each source's recent targets and tool traits, and
/// which web clients were reported in their window.
#[derive(Debug, Default)]
pub struct Reporter {
    examples: Examples,
    tools: Attribution,
    web_throttle: web::Throttle,
}

impl Reporter {
    /// The finding of a kernel event, with what it counted (`None`: not a reportable event).
    pub fn event(
        &mut self,
        event: &ScanEvent,
        maps: &Maps,
        config: &ReportSettings<'_>,
        interface: String,
    ) -> Option<(Finding, Counted)> {
        let window = if event.window == WINDOW_LONG {
            config.long_window
        } else {
            config.window
        };
        let mut f = finding(event, interface, window, config.ipv6_prefix)?;
        let counted = if f.kind == DetectionKind::DistributedScan {
            let sample = if event.scope == SCOPE_PORT {
                maps.port_sample(port_key(event.proto, event.target_port))
            } else {
                maps.targets.sample(&event.source)
            };
            f.sources = Some(
                sample
                    .iter()
                    .map(|k| net::format_source(k, config.ipv6_prefix))
                    .collect(),
            );
            // The sampled sources' probes together: a botnet runs one tool.
            f.tool = Some(ToolMatch::of(&tracker_samples(maps, &sample)));
            Counted::Sources(sample)
        } else if let Some(wide) = wide_source(event) {
            let prefixes = maps.wide.sample(&event.source);
            f.prefixes = Some(name_prefixes(&prefixes, config.ipv6_prefix));
            f.examples = self.examples.add(event);
            // The wide prefix's probes are its /64s' (each sampled in the tracker).
            f.tool = Some(self.tools.add(event, &tracker_samples(maps, &prefixes)));
            Counted::Prefixes { prefixes, wide }
        } else {
            f.examples = self.examples.add(event);
            if f.direction == Direction::Ingress {
                let samples = tracker_samples(maps, &[event.source]);
                f.tool = Some(self.tools.add(event, &samples));
            }
            Counted::Source
        };
        Some((f, counted))
    }

    /// What a sampled web request reports: `None` when its client is ignored or it matches
    /// no signature.
    pub fn web(
        &mut self,
        sample: &WebSample,
        config: &ReportSettings<'_>,
        interface: String,
        at: Instant,
    ) -> Option<WebReport> {
        let source = web::source_key(sample, config.ipv6_prefix);
        let addr = net::key_addr(&source);
        if config.ignore.iter().any(|net| net.contains(&addr)) {
            return None;
        }
        let detail = web::inspect(sample.payload(), config.signatures)?;
        // `at` is the time the client's window is measured in (the capture's, on replay).
        if !self.web_throttle.first(source, config.window, at) {
            return Some(WebReport::Repeat);
        }
        let finding = web::finding(sample, detail, interface, config.window, config.ipv6_prefix);
        Some(WebReport::Finding {
            finding: Box::new(finding),
            source,
        })
    }
}

/// The probe samples the tracker holds for `keys` (none for a key that left it).
fn tracker_samples(maps: &Maps, keys: &[SourceKey]) -> Vec<ProbeSample> {
    keys.iter()
        .filter_map(|k| maps.tracker.get(k).ok().flatten())
        .flat_map(|state| state.samples)
        .collect()
}

/// A sampled request that matched a signature.
pub enum WebReport {
    /// The client's first match in its window: a `web_scan` finding.
    Finding {
        finding: Box<Finding>,
        source: SourceKey,
    },
    /// A later match of a client already reported in its window (counted, not written).
    Repeat,
}
