//! Prometheus metrics: one registry, names `scanwatch_*`, label values from small fixed sets
//! (no per-source label except the opt-in, hard-capped top-N gauge), served over HTTP
//! ([`server`]: `/`, `/metrics`, `/healthz`).

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use log::warn;
use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use scanwatch_common::{
    block::BlockReason,
    classify::PacketClass,
    kinds::KINDS,
    stats::{Counter, ParseError, STATS_LEN, class_slot, counter_slot, parse_error_slot},
};

use crate::kernel::pressure::Guarantee;

mod server;

pub use server::{Limits, serve, serve_on};

/// Process names [`EgressByProcess`] keeps as label values: a local user naming processes at
/// will cannot grow the agent's series without bound.
pub const PROCESS_LABELS: usize = 64;

/// `scanwatch_egress_findings_total{process}`.
pub struct EgressByProcess {
    counter: IntCounterVec,
    names: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl EgressByProcess {
    /// Counts an egress finding sent by a process named `name` (`None`: not known); the
    /// [`PROCESS_LABELS`] first names are their own series, later ones count as `other`.
    pub fn inc(&self, name: Option<&str>) {
        let label = match name {
            None => "unknown",
            Some(name) => {
                let mut names = self
                    .names
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if names.contains(name)
                    || names.len() < PROCESS_LABELS && names.insert(name.to_owned())
                {
                    name
                } else {
                    "other"
                }
            }
        };
        self.counter.with_label_values(&[label]).inc();
    }
}

/// Every metric the agent exports.
pub struct Metrics {
    pub registry: Registry,
    packets: IntCounterVec,
    verdicts: IntCounterVec,
    parse_errors: IntCounterVec,
    datapath: Vec<(Counter, IntCounter)>,
    pub detections: IntCounterVec,
    /// Egress findings by the name of the process that sent their probes.
    pub egress_by_process: EgressByProcess,
    pub alerts_suppressed: IntCounter,
    /// Sampled requests matching a web-scanner signature from a source already reported in
    /// the window (no second `web_scan`).
    pub web_repeats: IntCounter,
    pub alert_write_errors: IntCounter,
    pub tracked_sources: IntGauge,
    pub tracker_capacity: IntGauge,
    pub tracker_fill_ratio: Gauge,
    pub latency: Histogram,
    pub attach_info: IntGaugeVec,
    pub top_sources: GaugeVec,
    dropped_packets: IntCounterVec,
    dropped_bytes: IntCounterVec,
    /// Blocks added, by reason (`detection`, `manual`, `block_list`).
    pub blocks_added: IntCounterVec,
    /// Blocks removed by the expiry sweep.
    pub blocks_expired: IntCounter,
    /// Findings not blocked, by why (`enforce::Refusal` names: `never_block`, `own_address`,
    /// `gateway`, `resolver`, `rate_limited`, `protected_set_unavailable`, `full`, ...).
    pub blocks_refused: IntCounterVec,
    /// 1 while the protected peers are known, 0 while they cannot be read (fail closed).
    pub protected_set_available: IntGauge,
    /// Entries in the block maps, by map (`detection`, `cidr`).
    pub blocked_sources: IntGaugeVec,
    /// Each fixed-size state's churn over the last minute (`kernel::pressure`): 1 or more ends
    /// its guarantee.
    pub state_churn: GaugeVec,
    /// 1 while a flood has ended the state's guarantee.
    pub guarantee_lost: IntGaugeVec,
    replies: IntCounterVec,
    /// Outbound flows in the flow map (the last walk's count plus inserts since, see
    /// `occupancy`).
    pub flows: IntGauge,
    flow_capacity: IntGauge,
    pub flow_fill_ratio: Gauge,
    /// Flows evicted from the full LRU map before their lifetime (recorded − present).
    pub flow_evictions: IntCounter,
    flows_recorded_total: AtomicU64,
    /// CPU time of the last full walk of the tracker and the flow map (it sets how long the
    /// next waits: see `agent`).
    pub map_walk_cpu_seconds: Gauge,
    /// Kernel statistics as last read, to turn absolute values into counter increments.
    /// The last kernel statistics read, to turn totals into counter increments.
    last_kernel: Mutex<Vec<u64>>,
}

/// Help text of a data-path counter exported as a metric of its own, `scanwatch_<name>_total`;
/// `None` for those exported under a label of a shared metric (replies by protocol, drops by
/// reason, verdicts).
fn counter_help(c: Counter) -> Option<&'static str> {
    let help = match c {
        Counter::Ignored => "Probes from sources on the ignore list (never tracked).",
        Counter::AdmissionDeferred => {
            "First probes of untracked sources held back by the admission filter (spoofed-flood defence)."
        }
        Counter::Admitted => "Sources admitted to the tracker on their second probe.",
        Counter::TrackerInserts => "Sources inserted into the tracker.",
        Counter::TrackerUpdateFailures => "Tracker inserts or lookups that failed.",
        Counter::WindowResets => "Per-source detection windows restarted.",
        Counter::EventsEmitted => "Threshold events sent by the kernel.",
        Counter::EventsDropped => "Threshold events lost because the ring buffer was full.",
        Counter::ConfigMissing => "Packets seen before the configuration was written.",
        Counter::BlockExpiredPass => {
            "Packets from a blocked source that passed because the block's TTL had run out."
        }
        Counter::FlowsRecorded => {
            "Outbound flows this host opened, recorded by the egress program."
        }
        Counter::EgressPackets => "Packets seen by the egress program.",
        Counter::EgressParseErrors => "Egress packets that could not be parsed (passed untouched).",
        Counter::EgressFailures => {
            "Failed outbound attempts (RST or ICMP unreachable answering this host)."
        }
        Counter::InboundNoted => {
            "Inbound UDP conversations noted (datagrams answering none of this host's flows)."
        }
        Counter::EgressAnswers => {
            "Outbound UDP datagrams answering an inbound conversation (not recorded as flows)."
        }
        Counter::ConnectionCloses => {
            "TCP FIN|ACK of connections the kernel holds but the flow map has forgotten (not probes)."
        }
        Counter::HandshakesNoted => {
            "SYN-ACKs this host sent, noted to verify the ACK completing them (drop mode)."
        }
        Counter::HandshakesVerified => {
            "Remotes whose ACK completed this host's SYN-ACK: address and hop count proven (drop mode)."
        }
        Counter::WebSamples => {
            "First requests of connections to a web port sampled for signature matching."
        }
        Counter::WebSamplesDropped => {
            "Web request samples lost because their ring buffer was full."
        }
        Counter::OwnConnectionResets => {
            "Bare RSTs this host sent on a connection it opened or accepted within flow_timeout (not ack_scan evidence)."
        }
        Counter::WebUnconnected => {
            "First requests to a web port with no established connection for their 4-tuple (forged or stray): not sampled."
        }
        Counter::LongInserts => {
            "Tracked sources given long-window (slow scan) state: they probed again in a later window."
        }
        Counter::PortSlotsHeld => {
            "Probes not counted toward a distributed sweep: their port's slot was held by another port this window."
        }
        Counter::PortSlotsTaken => {
            "Distributed-sweep port slots taken from another port within its window."
        }
        Counter::TargetInserts => "Destinations given distributed-scan state (per-target form).",
        Counter::WideInserts => "Wide IPv6 prefixes given state (the wide level).",
        Counter::OwnersRecorded => {
            "Sockets whose sending process the egress program recorded (for egress findings' process)."
        }
        Counter::OwnersUnsure => {
            "Packets of unrecorded sockets sent outside their sender's context: their process is left unrecorded rather than guessed."
        }
        Counter::RepliesTcp
        | Counter::RepliesUdp
        | Counter::RepliesIcmp
        | Counter::VerdictDrop
        | Counter::DroppedDetection
        | Counter::DroppedManual
        | Counter::DroppedList
        | Counter::DroppedBytesDetection
        | Counter::DroppedBytesManual
        | Counter::DroppedBytesList
        | Counter::DroppedCrowdsec
        | Counter::DroppedBytesCrowdsec => return None,
    };
    Some(help)
}

/// Creates metrics already registered in one registry, so none can be forgotten.
struct Registered<'r>(&'r Registry);

impl Registered<'_> {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, m: M) -> anyhow::Result<M> {
        self.0.register(Box::new(m.clone()))?;
        Ok(m)
    }

    fn counter(&self, name: &str, help: &str) -> anyhow::Result<IntCounter> {
        self.add(IntCounter::new(name, help)?)
    }

    /// A counter vector with every label value in `values` present from the start, so rates
    /// work from the first scrape.
    fn counters(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> anyhow::Result<IntCounterVec> {
        let v = self.add(IntCounterVec::new(Opts::new(name, help), &[label])?)?;
        for value in values {
            v.with_label_values(&[value]);
        }
        Ok(v)
    }

    fn gauge(&self, name: &str, help: &str) -> anyhow::Result<IntGauge> {
        self.add(IntGauge::new(name, help)?)
    }

    fn ratio(&self, name: &str, help: &str) -> anyhow::Result<Gauge> {
        self.add(Gauge::new(name, help)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new(tracker_capacity: u32) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let r = Registered(&registry);
        let classes: Vec<&str> = PacketClass::ALL.iter().map(|c| c.name()).collect();
        let parse_reasons: Vec<&str> = ParseError::ALL.iter().map(|e| e.name()).collect();
        let block_reasons: Vec<&str> = BlockReason::ALL.iter().map(|b| b.name()).collect();

        let packets = r.counters(
            "scanwatch_packets_total",
            "Packets seen by the XDP program, by class.",
            "class",
            &classes,
        )?;
        let verdicts = r.counters(
            "scanwatch_verdicts_total",
            "XDP verdicts, by verdict.",
            "verdict",
            &["pass", "drop"],
        )?;
        let parse_errors = r.counters(
            "scanwatch_parse_errors_total",
            "Malformed packets (passed untouched), by reason.",
            "reason",
            &parse_reasons,
        )?;
        let replies = r.counters(
            "scanwatch_replies_total",
            "Ingress packets recognised as replies to this host's own flows (never counted as probes), by protocol.",
            "protocol",
            &["tcp", "udp", "icmp"],
        )?;
        let datapath = Counter::ALL
            .iter()
            .filter_map(|c| counter_help(*c).map(|help| (*c, help)))
            .map(|(c, help)| {
                r.counter(&format!("scanwatch_{}_total", c.name()), help)
                    .map(|m| (c, m))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let detections = r.add(IntCounterVec::new(
            Opts::new(
                "scanwatch_detections_total",
                "Findings, by kind and direction (ingress: probes arriving; egress: probes this host sends).",
            ),
            &["kind", "direction"],
        )?)?;
        for spec in &KINDS {
            for d in ["ingress", "egress"] {
                detections.with_label_values(&[spec.name, d]);
            }
        }
        let egress_by_process = EgressByProcess {
            counter: r.add(IntCounterVec::new(
                Opts::new(
                    "scanwatch_egress_findings_total",
                    "Egress findings, by the name of the process that sent their probes (unknown: no process known; other: past the first 64 names).",
                ),
                &["process"],
            )?)?,
            names: std::sync::Mutex::default(),
        };
        // The series of findings with no known process exists from the start, at 0, as every
        // kind's detections do.
        egress_by_process.counter.with_label_values(&["unknown"]);
        let flows = r.gauge(
            "scanwatch_flows",
            "Outbound flows in the flow map: the last full walk's count (every 5 to 60 s, by map size) plus flows recorded since, at most the capacity.",
        )?;
        let flow_capacity = r.gauge(
            "scanwatch_flow_capacity",
            "Maximum outbound flows the flow map holds.",
        )?;
        flow_capacity.set(i64::from(scanwatch_common::maps::FLOWS_CAPACITY));
        let flow_fill_ratio = r.ratio(
            "scanwatch_flow_fill_ratio",
            "Outbound flows divided by flow-map capacity.",
        )?;
        let flow_evictions = r.counter(
            "scanwatch_flow_evictions_total",
            "Flows evicted from the full flow map (their late replies count as probes).",
        )?;
        let alerts_suppressed = r.counter(
            "scanwatch_alerts_suppressed_total",
            "Findings not written because the alert rate budget was spent.",
        )?;
        let web_repeats = r.counter(
            "scanwatch_web_scan_repeats_total",
            "Requests matching a web-scanner signature from a source already reported in its window.",
        )?;
        let alert_write_errors = r.counter(
            "scanwatch_alert_write_errors_total",
            "Findings that could not be written to the alert log.",
        )?;
        let map_walk_cpu_seconds = r.ratio(
            "scanwatch_map_walk_cpu_seconds",
            "CPU time of the last full read of the tracker and the flow map (exact counts, top sources); the next waits 200 times as long, 5 to 60 s.",
        )?;
        let tracked_sources = r.gauge(
            "scanwatch_tracked_sources",
            "Sources in the kernel tracker: the last full walk's count (every 5 to 60 s, by map size) plus sources inserted since, at most the capacity.",
        )?;
        let capacity = r.gauge(
            "scanwatch_tracker_capacity",
            "Maximum sources the kernel tracker holds.",
        )?;
        capacity.set(i64::from(tracker_capacity));
        let tracker_fill_ratio = r.ratio(
            "scanwatch_tracker_fill_ratio",
            "Tracked sources divided by tracker capacity.",
        )?;
        let latency = r.add(Histogram::with_opts(
            HistogramOpts::new(
                "scanwatch_event_to_alert_latency_seconds",
                "Time from the probe that crossed a threshold to the alert being written.",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?)?;
        let attach_info = r.gauges(
            "scanwatch_attach_info",
            "Interfaces the XDP program is attached to (value 1), with the attach mode.",
            &["interface", "mode"],
        )?;
        r.gauges(
            "scanwatch_build_info",
            "Build of the running agent (value 1).",
            &["version"],
        )?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let top_sources = r.add(GaugeVec::new(
            Opts::new(
                "scanwatch_top_source_probes",
                "Probes in the current window of the most active tracked sources at the last full walk, every 5 to 60 s by map size (opt-in, at most 20 series).",
            ),
            &["source"],
        )?)?;
        let dropped_packets = r.counters(
            "scanwatch_dropped_packets_total",
            "Packets dropped in drop mode, by block reason (XDP drops are invisible to tcpdump).",
            "reason",
            &block_reasons,
        )?;
        let dropped_bytes = r.counters(
            "scanwatch_dropped_bytes_total",
            "Bytes dropped in drop mode, by block reason.",
            "reason",
            &block_reasons,
        )?;
        let blocks_added = r.counters(
            "scanwatch_blocks_added_total",
            "Blocks added, by reason.",
            "reason",
            &block_reasons,
        )?;
        let blocks_expired = r.counter(
            "scanwatch_blocks_expired_total",
            "Blocks removed after their TTL ran out.",
        )?;
        let blocks_refused = r.counters(
            "scanwatch_blocks_refused_total",
            "Findings in drop mode that were not blocked, by why.",
            "reason",
            &[],
        )?;
        let protected_set_available = r.gauge(
            "scanwatch_protected_set_available",
            "1 while the protected peers (addresses, connected networks, gateways, resolvers) are \
             known; 0 while they cannot be read and drop mode blocks nothing automatically.",
        )?;
        let blocked_sources = r.gauges(
            "scanwatch_blocked_sources",
            "Entries in the block maps: detection (per source) and cidr (manual and block lists).",
            &["map"],
        )?;
        for map in ["detection", "cidr"] {
            blocked_sources.with_label_values(&[map]);
        }
        let state_churn = r.add(GaugeVec::new(
            Opts::new(
                "scanwatch_state_churn_ratio",
                "How often the last minute's traffic would turn a fixed-size state over in the time it must keep an entry (see the operations guide); at 1 or more its guarantee is lost.",
            ),
            &["state"],
        )?)?;
        let guarantee_lost = r.gauges(
            "scanwatch_flood_guarantee_lost",
            "1 while a flood has ended the guarantee of a fixed-size state (churn ratio at 1 or more).",
            &["state"],
        )?;
        for g in Guarantee::ALL {
            state_churn.with_label_values(&[g.name()]);
            guarantee_lost.with_label_values(&[g.name()]);
        }
        Ok(Self {
            registry,
            packets,
            verdicts,
            parse_errors,
            datapath,
            detections,
            egress_by_process,
            alerts_suppressed,
            web_repeats,
            alert_write_errors,
            tracked_sources,
            tracker_capacity: capacity,
            tracker_fill_ratio,
            latency,
            attach_info,
            top_sources,
            dropped_packets,
            dropped_bytes,
            blocks_added,
            blocks_expired,
            blocks_refused,
            protected_set_available,
            blocked_sources,
            state_churn,
            guarantee_lost,
            replies,
            flows,
            flow_capacity,
            flow_fill_ratio,
            flow_evictions,
            flows_recorded_total: AtomicU64::new(0),
            map_walk_cpu_seconds,
            last_kernel: Mutex::new(vec![0; STATS_LEN as usize]),
        })
    }

    /// Folds a fresh read of the kernel statistics (summed over CPUs, indexed by slot) into the
    /// counters.
    pub fn update_kernel(&self, stats: &[u64]) {
        let mut last = self
            .last_kernel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = &mut *last;
        let delta = |slot: u32, last: &mut Vec<u64>| {
            let i = slot as usize;
            let now = stats.get(i).copied().unwrap_or(0);
            let d = now.saturating_sub(last[i]);
            last[i] = now;
            d
        };
        let mut all = 0;
        for class in PacketClass::ALL {
            let d = delta(class_slot(class), last);
            all += d;
            self.packets.with_label_values(&[class.name()]).inc_by(d);
        }
        for reason in ParseError::ALL {
            let d = delta(parse_error_slot(reason), last);
            self.parse_errors
                .with_label_values(&[reason.name()])
                .inc_by(d);
        }
        for (counter, metric) in &self.datapath {
            metric.inc_by(delta(counter_slot(*counter), last));
        }
        for reason in BlockReason::ALL {
            let p = delta(counter_slot(Counter::dropped_packets(reason)), last);
            self.dropped_packets
                .with_label_values(&[reason.name()])
                .inc_by(p);
            let b = delta(counter_slot(Counter::dropped_bytes(reason)), last);
            self.dropped_bytes
                .with_label_values(&[reason.name()])
                .inc_by(b);
        }
        for (counter, protocol) in [
            (Counter::RepliesTcp, "tcp"),
            (Counter::RepliesUdp, "udp"),
            (Counter::RepliesIcmp, "icmp"),
        ] {
            let d = delta(counter_slot(counter), last);
            self.replies.with_label_values(&[protocol]).inc_by(d);
        }
        self.flows_recorded_total.store(
            stats
                .get(counter_slot(Counter::FlowsRecorded) as usize)
                .copied()
                .unwrap_or(0),
            Ordering::Relaxed,
        );
        let drops = delta(counter_slot(Counter::VerdictDrop), last);
        self.verdicts.with_label_values(&["drop"]).inc_by(drops);
        self.verdicts
            .with_label_values(&["pass"])
            .inc_by(all.saturating_sub(drops));
    }

    /// Counts the blocks a sweep of `map` (`detection` or `cidr`) removed and sets what is left.
    pub fn record_sweep(&self, map: &str, removed: usize, left: usize) {
        self.blocks_expired.inc_by(removed as u64);
        self.blocked_sources
            .with_label_values(&[map])
            .set(left as i64);
    }

    /// Sets the tracker gauges (after a walk, or from the insert counter between walks).
    pub fn set_tracked(&self, tracked: usize) {
        self.tracked_sources.set(tracked as i64);
        let capacity = self.tracker_capacity.get().max(1);
        self.tracker_fill_ratio
            .set(tracked as f64 / capacity as f64);
    }

    /// Sets the flow-map gauges (after a walk, or from the insert counter between walks); evictions are the recorded flows no longer there
    /// (entries are never deleted, only evicted).
    pub fn set_flows(&self, present: usize) {
        self.flows.set(present as i64);
        let capacity = self.flow_capacity.get().max(1);
        self.flow_fill_ratio.set(present as f64 / capacity as f64);
        let evicted = self
            .flows_recorded_total
            .load(Ordering::Relaxed)
            .saturating_sub(present as u64);
        let known = self.flow_evictions.get();
        if evicted > known {
            self.flow_evictions.inc_by(evicted - known);
        }
    }

    /// Replaces the top-N gauge series.
    pub fn set_top_sources(&self, top: &[(String, u64)]) {
        self.top_sources.reset();
        for (source, probes) in top {
            self.top_sources
                .with_label_values(&[source.as_str()])
                .set(*probes as f64);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!("encoding metrics failed: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_deltas_become_counter_increments() {
        let m = Metrics::new(1024).unwrap();
        let mut stats = vec![0u64; STATS_LEN as usize];
        stats[class_slot(PacketClass::TcpSyn) as usize] = 10;
        stats[class_slot(PacketClass::TcpEstablished) as usize] = 5;
        stats[parse_error_slot(ParseError::TcpTruncated) as usize] = 2;
        stats[counter_slot(Counter::AdmissionDeferred) as usize] = 7;
        m.update_kernel(&stats);
        stats[class_slot(PacketClass::TcpSyn) as usize] = 12;
        m.update_kernel(&stats);
        let text = m.render();
        assert!(
            text.contains("scanwatch_packets_total{class=\"tcp_syn\"} 12"),
            "{text}"
        );
        assert!(text.contains("scanwatch_verdicts_total{verdict=\"pass\"} 17"));
        assert!(text.contains("scanwatch_parse_errors_total{reason=\"tcp_truncated\"} 2"));
        assert!(text.contains("scanwatch_admission_deferred_total 7"));
        stats[counter_slot(Counter::DroppedList) as usize] = 4;
        stats[counter_slot(Counter::DroppedBytesList) as usize] = 240;
        stats[counter_slot(Counter::VerdictDrop) as usize] = 4;
        stats[class_slot(PacketClass::TcpEstablished) as usize] = 9;
        m.update_kernel(&stats);
        let text = m.render();
        assert!(
            text.contains("scanwatch_dropped_packets_total{reason=\"block_list\"} 4"),
            "{text}"
        );
        assert!(text.contains("scanwatch_dropped_bytes_total{reason=\"block_list\"} 240"));
        assert!(text.contains("scanwatch_verdicts_total{verdict=\"drop\"} 4"));
        assert!(text.contains("scanwatch_verdicts_total{verdict=\"pass\"} 17"));
        assert!(text.contains("scanwatch_build_info{version="));
        m.set_tracked(256);
        assert!(m.render().contains("scanwatch_tracker_fill_ratio 0.25"));
    }

    #[test]
    fn process_names_past_the_bound_count_as_other() {
        let m = Metrics::new(1024).unwrap();
        m.egress_by_process.inc(Some("nmap"));
        m.egress_by_process.inc(Some("nmap"));
        m.egress_by_process.inc(None);
        for i in 0..PROCESS_LABELS + 10 {
            m.egress_by_process.inc(Some(&format!("p{i}")));
        }
        let text = m.render();
        assert!(
            text.contains("scanwatch_egress_findings_total{process=\"nmap\"} 2"),
            "{text}"
        );
        assert!(text.contains("scanwatch_egress_findings_total{process=\"unknown\"} 1"));
        // nmap took one of the names: 63 more, then 11 are `other`.
        assert!(
            text.contains("scanwatch_egress_findings_total{process=\"other\"} 11"),
            "{text}"
        );
        assert!(!text.contains("process=\"p63\""));
    }
}
