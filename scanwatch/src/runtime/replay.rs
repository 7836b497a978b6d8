//! `scanwatch replay FILE`: feeds a capture (pcap or pcapng; Ethernet, Linux cooked or raw IP,
//! see [`link`]) through the very XDP
//! object the agent runs, with `BPF_PROG_TEST_RUN`, and turns its events into alerts on the
//! daemon's own path (`detect::finding`, the alert budget, the alert format).
//!
//! - **Clock.** Before each frame the kernel configuration's `clock_override_ns` is set to the
//!   frame's capture timestamp (nanoseconds since the epoch, never going backwards), which the
//!   programs use instead of `bpf_ktime`; windows, flow timeouts and alert times follow the
//!   capture, not the wall clock. `first_seen` / `last_seen` / `timestamp` are capture times.
//! - **Direction.** A capture taken on the agent's interface holds both directions. Frames
//!   whose IP source is in a `--local` CIDR are what the host sent: they go to the TC egress
//!   program (flows, egress detection), so replies to them are recognised as a live agent
//!   would; every other frame goes to the XDP program. Without `--local`, a Linux cooked frame
//!   (SLL, SLL2) whose packet type says the host sent it (`PACKET_OUTGOING`) goes to the TC
//!   egress program and every other frame is ingress; with `--local`, the CIDRs alone decide.
//! - **Frames the test run cannot take** (shorter than an Ethernet header, longer than the
//!   direction's test-run limit, or refused by the kernel with `EINVAL`) are skipped and counted
//!   by reason in the summary; the replay carries on (see [`FrameLimits`]).
//! - **Enforcement.** As in monitor mode: nothing is blocked, every alert has `action: alert`
//!   (the configuration's `mode` and `dry_run` are ignored), so drop-mode effects on later
//!   packets are not replayed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    programs::{ProgramError, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use ipnet::IpNet;
use nix::errno::Errno;
use pcap_file::{
    DataLink, PcapError,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};
use scanwatch_common::{
    addr::SourceKey,
    config::FLAG_REPLAY,
    programs::{EGRESS, XDP},
    stats::{ParseError, parse_error_slot},
};
use serde::Serialize;

use crate::{
    config::{Config, Mode, source::ConfigSource},
    finding::{
        budget::AlertBudget,
        record::Finding,
        report::{Reporter, WebReport},
    },
    kernel::{
        clock::rfc3339,
        loader,
        maps::Maps,
        rings::{Events, WebSamples},
    },
    outputs::alerts::AlertSink,
};

mod link;

pub use link::Link;

/// Arguments of `scanwatch replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture file: pcap or pcapng; Ethernet, Linux cooked (SLL, SLL2, as `tcpdump -i any`
    /// writes) or raw IP link type.
    pub file: PathBuf,
    /// TOML configuration file (thresholds, window, ignore list, alert format).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The capturing host's own network (repeatable): frames whose IP source is in it were sent
    /// by the host and go to the TC egress program, so replies to them are recognised.
    #[arg(long, value_name = "CIDR")]
    pub local: Vec<IpNet>,
    /// Print one JSON document (summary and alerts) on stdout instead of JSON Lines alerts and
    /// a text summary on stderr.
    #[arg(long)]
    pub json: bool,
}

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0} bytes: too short for a pcap or pcapng header")]
    TooShort(usize),
    #[error("not a pcap or pcapng file ({0})")]
    NotACapture(String),
    #[error(
        "link type {name} ({number}) is not supported: scanwatch replays Ethernet (1), Linux \
         cooked (113, 276) and raw IP (101, 228, 229) captures; capture with `tcpdump -i IFACE \
         -w FILE` on an Ethernet interface or with `tcpdump -i any`"
    )]
    UnsupportedLinkType { name: String, number: u32 },
    #[error(
        "truncated record at packet {packet}: the file ends inside it (cut off while written?)"
    )]
    Truncated { packet: u64 },
    #[error("malformed record at packet {packet}: {reason}")]
    Malformed { packet: u64, reason: String },
}

/// One captured frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// As captured, of link type `link`.
    pub data: Vec<u8>,
    pub link: Link,
}

/// A capture in memory, read frame by frame.
pub enum Capture<'a> {
    Pcap(PcapReader<&'a [u8]>, Link),
    /// With the last packet's time and the timestamp resolution and link type of each
    /// interface seen in the current section.
    PcapNg(PcapNgReader<&'a [u8]>, u64, Vec<(u8, Link)>),
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

fn check_link(link: DataLink) -> Result<Link, CaptureError> {
    Link::of(link).ok_or_else(|| CaptureError::UnsupportedLinkType {
        name: format!("{link:?}"),
        number: u32::from(link),
    })
}

fn record_error(e: PcapError, packet: u64) -> CaptureError {
    match e {
        PcapError::IncompleteBuffer => CaptureError::Truncated { packet },
        PcapError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            CaptureError::Truncated { packet }
        }
        other => CaptureError::Malformed {
            packet,
            reason: other.to_string(),
        },
    }
}

impl<'a> Capture<'a> {
    /// Opens a capture held in `bytes`, checking its link type.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CaptureError> {
        if bytes.len() < 24 && !bytes.starts_with(&PCAPNG_MAGIC) {
            return Err(CaptureError::TooShort(bytes.len()));
        }
        if bytes.starts_with(&PCAPNG_MAGIC) {
            let reader = PcapNgReader::new(bytes).map_err(|e| match e {
                PcapError::IncompleteBuffer => CaptureError::TooShort(bytes.len()),
                e => CaptureError::NotACapture(e.to_string()),
            })?;
            Ok(Self::PcapNg(reader, 0, Vec::new()))
        } else {
            let reader =
                PcapReader::new(bytes).map_err(|e| CaptureError::NotACapture(e.to_string()))?;
            let link = check_link(reader.header().datalink)?;
            Ok(Self::Pcap(reader, link))
        }
    }

    /// The next frame; `packet` is its 1-based number, for error messages.
    pub fn next_frame(&mut self, packet: u64) -> Option<Result<Frame, CaptureError>> {
        match self {
            Self::Pcap(reader, link) => Some(match reader.next_packet()? {
                Ok(p) => Ok(Frame {
                    ts_ns: p.timestamp.as_nanos() as u64,
                    data: p.data.into_owned(),
                    link: *link,
                }),
                Err(e) => Err(record_error(e, packet)),
            }),
            Self::PcapNg(reader, last_ts, resolutions) => loop {
                let block = match reader.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(record_error(e, packet))),
                };
                match block {
                    Block::SectionHeader(_) => resolutions.clear(),
                    Block::InterfaceDescription(idb) => match check_link(idb.linktype) {
                        Ok(link) => resolutions.push((ts_resolution(&idb.options), link)),
                        Err(e) => return Some(Err(e)),
                    },
                    Block::EnhancedPacket(p) => {
                        let (resolution, link) = resolutions
                            .get(p.interface_id as usize)
                            .copied()
                            .unwrap_or((6, Link::Ethernet));
                        *last_ts = to_ns(p.timestamp.as_nanos(), resolution);
                        return Some(Ok(Frame {
                            ts_ns: *last_ts,
                            data: p.data.into_owned(),
                            link,
                        }));
                    }
                    // No timestamp of its own: the previous packet's time; the section's first
                    // interface (the specification allows simple packets with one interface).
                    Block::SimplePacket(p) => {
                        let link = resolutions.first().map_or(Link::Ethernet, |r| r.1);
                        return Some(Ok(Frame {
                            ts_ns: *last_ts,
                            data: p.data.into_owned(),
                            link,
                        }));
                    }
                    _ => {}
                }
            },
        }
    }
}

/// An interface's timestamp resolution (`if_tsresol`; default 6: microseconds).
fn ts_resolution(options: &[InterfaceDescriptionOption<'_>]) -> u8 {
    options
        .iter()
        .find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        })
        .unwrap_or(6)
}

/// An enhanced packet's raw timestamp in nanoseconds. pcap-file 2.0 hands the raw 64-bit count
/// over as if it were nanoseconds, whatever the interface's `if_tsresol`: scale it here (high
/// bit set: a power of 2, else a power of 10, per the pcapng specification).
fn to_ns(raw: u128, resolution: u8) -> u64 {
    let ns = if resolution & 0x80 != 0 {
        let shift = u32::from(resolution & 0x7f).min(127);
        raw.saturating_mul(1_000_000_000) >> shift
    } else {
        let exp = u32::from(resolution).min(38);
        if exp <= 9 {
            raw.saturating_mul(10u128.pow(9 - exp))
        } else {
            raw / 10u128.pow(exp - 9)
        }
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The IP source of an Ethernet frame (after up to two VLAN tags), if IPv4 or IPv6.
pub fn ip_source(frame: &[u8]) -> Option<std::net::IpAddr> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            off += 4;
            ethertype = u16::from_be_bytes(frame.get(off..off + 2)?.try_into().ok()?);
        }
    }
    let ip = off + 2;
    match ethertype {
        0x0800 => {
            let a: [u8; 4] = frame.get(ip + 12..ip + 16)?.try_into().ok()?;
            Some(a.into())
        }
        0x86dd => {
            let a: [u8; 16] = frame.get(ip + 8..ip + 24)?.try_into().ok()?;
            Some(a.into())
        }
        _ => None,
    }
}

/// Why a frame was not run through the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Shorter than an Ethernet header, or at egress than its IP header (a record cut by the
    /// capture's snap length, a runt).
    TooShort,
    /// Longer than the test run takes in its direction (GRO/TSO frames, jumbo frames).
    TooLong,
    /// The kernel refused it (`EINVAL`) although it is within the limits.
    Refused,
}

/// Frames skipped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub too_short: u64,
    pub too_long: u64,
    pub refused: u64,
}

impl Skipped {
    fn add(&mut self, reason: SkipReason) {
        match reason {
            SkipReason::TooShort => self.too_short += 1,
            SkipReason::TooLong => self.too_long += 1,
            SkipReason::Refused => self.refused += 1,
        }
    }

    /// All skipped frames.
    pub fn total(&self) -> u64 {
        self.too_short + self.too_long + self.refused
    }
}

/// The frame lengths `BPF_PROG_TEST_RUN` accepts, checked before calling the kernel.
///
/// Both test runs refuse (`EINVAL`) a frame shorter than an Ethernet header
/// (`bpf_test_init` in `net/bpf/test_run.c`). Beyond that:
///
/// - **XDP** copies up to a page less `XDP_PACKET_HEADROOM` (256) and the `skb_shared_info`
///   tailroom (320 on x86_64) into the linear buffer, and the rest into up to `MAX_SKB_FRAGS`
///   (17) page fragments (multi-buffer XDP test runs, Linux 5.18); the program parses
///   the headers in the linear part. A longer frame gets `ENOMEM`.
/// - **TC** (`__sk_buff`) copies the frame into one linear buffer of a page less
///   `NET_SKB_PAD + NET_IP_ALIGN` (64 on x86_64) and the same tailroom, and refuses an IPv4
///   frame without a whole IPv4 header (34 bytes with the Ethernet header) and an IPv6 frame
///   without a whole IPv6 header (54 bytes).
///
/// Measured on Linux 6.18, x86_64, 4 KiB pages, with the agent's programs, lengths probed by
/// bisection: XDP runs 14 to 73,152 bytes (3,520 linear + 17 × 4,096); TC runs 14 to 3,712
/// bytes, IPv4 from 34 and IPv6 from 54. The limits scale with the page size; a kernel whose
/// rooms differ still refuses with `EINVAL`, which replay counts as [`SkipReason::Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest frame the XDP test run takes, fragments included.
    pub max_xdp: usize,
    /// The bytes of a frame the XDP program reads: the test run's linear part. The rest of a
    /// longer frame goes to page fragments, which the parser never reads.
    pub xdp_linear: usize,
    /// Longest frame the TC test run takes.
    pub max_tc: usize,
}

impl FrameLimits {
    /// `ETH_HLEN`.
    const ETH_HLEN: usize = 14;
    /// `XDP_PACKET_HEADROOM`.
    const XDP_HEADROOM: usize = 256;
    /// `NET_SKB_PAD + NET_IP_ALIGN` on x86_64.
    const TC_HEADROOM: usize = 64;
    /// `SKB_DATA_ALIGN(sizeof(struct skb_shared_info))` on x86_64.
    const TAILROOM: usize = 320;
    /// `MAX_SKB_FRAGS`: the page fragments an XDP test run adds after the linear part.
    const XDP_FRAGS: usize = 17;

    /// The limits for pages of `page_size` bytes.
    pub fn for_page(page_size: usize) -> Self {
        let linear = |headroom: usize| page_size.saturating_sub(headroom + Self::TAILROOM);
        Self {
            max_xdp: linear(Self::XDP_HEADROOM) + Self::XDP_FRAGS * page_size,
            xdp_linear: linear(Self::XDP_HEADROOM),
            max_tc: linear(Self::TC_HEADROOM),
        }
    }

    /// The limits of this machine.
    pub fn host() -> Self {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096);
        Self::for_page(page)
    }

    /// Why `frame` (Ethernet) cannot be run in its direction, if it cannot.
    pub fn check(&self, frame: &[u8], egress: bool) -> Option<SkipReason> {
        let max = if egress { self.max_tc } else { self.max_xdp };
        let min = match frame.get(12..14) {
            Some([0x08, 0x00]) if egress => Self::ETH_HLEN + 20,
            Some([0x86, 0xdd]) if egress => Self::ETH_HLEN + 40,
            _ => Self::ETH_HLEN,
        };
        if frame.len() < min {
            Some(SkipReason::TooShort)
        } else if frame.len() > max {
            Some(SkipReason::TooLong)
        } else {
            None
        }
    }
}

/// What a replay did, printed to stderr (text) or with `--json`.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub file: String,
    /// Frames read from the capture, skipped ones included.
    pub packets: u64,
    /// Frames fed to the XDP program.
    pub ingress_packets: u64,
    /// Frames fed to the TC egress program (source in `--local`).
    pub egress_packets: u64,
    /// Frames not run, by reason (neither ingress nor egress).
    pub skipped: Skipped,
    pub alerts: u64,
    pub alerts_by_kind: BTreeMap<&'static str, u64>,
    /// Findings over the alert budget (`max_alerts_per_second`, in capture time).
    pub alerts_suppressed: u64,
    /// The kernel's parse errors by reason (non-zero reasons only).
    pub parse_errors: BTreeMap<&'static str, u64>,
    /// Seconds between the first and the last frame.
    pub capture_seconds: f64,
    pub elapsed_seconds: f64,
    pub packets_per_second: f64,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    summary: &'a Summary,
    alerts: &'a [Finding],
}

/// The loaded programs and the daemon-side state of a replay.
struct Replayer {
    ebpf: Ebpf,
    maps: Maps,
    events: Events,
    config: Config,
    kernel: scanwatch_common::config::KernelConfig,
    budget: AlertBudget,
    /// Sampled first requests of web connections (for `web_scan`).
    web_samples: WebSamples,
    /// Event to finding, as the agent: recent targets, tool traits and web clients per source.
    reporter: Reporter,
    start: Instant,
    first_ts: Option<u64>,
    interface: String,
    limits: FrameLimits,
}

impl Replayer {
    fn new(config: Config, interface: String) -> anyhow::Result<Self> {
        let mut ebpf = loader::load(config.tracker_capacity, None)?;
        let mut maps = Maps::take(&mut ebpf)?;
        let events = Events::take(&mut ebpf)?;
        let web_samples = WebSamples::take(&mut ebpf)?;
        maps.ignore.replace(&config.ignore)?;
        let mut kernel = config.kernel_config(rand::random::<u64>());
        // A capture's connections are not this host's sockets: sample its web requests
        // without the connection check.
        kernel.flags |= FLAG_REPLAY;
        Ok(Self {
            ebpf,
            maps,
            events,
            budget: AlertBudget::new(config.max_alerts_per_second),
            config,
            kernel,
            web_samples,
            reporter: Reporter::default(),
            start: Instant::now(),
            first_ts: None,
            interface,
            limits: FrameLimits::host(),
        })
    }

    /// Runs one frame through the program of its direction at capture time `ts_ns`; `Ok(Some)`
    /// when the frame cannot be run and was skipped.
    fn feed(&mut self, frame: &Frame, egress: bool) -> anyhow::Result<Option<SkipReason>> {
        if let Some(reason) = self.limits.check(&frame.data, egress) {
            return Ok(Some(reason));
        }
        // The programs read "now" from here; never 0 (0 means bpf_ktime) and never backwards.
        let now = frame.ts_ns.max(self.kernel.clock_override_ns).max(1);
        self.kernel.clock_override_ns = now;
        self.first_ts.get_or_insert(now);
        self.maps.config.write(&self.kernel)?;
        let mut out = vec![0u8; frame.data.len() + 256];
        let options = TestRunOptions {
            data_in: Some(&frame.data),
            data_out: Some(&mut out),
            repeat: 1,
            ..TestRunOptions::default()
        };
        let name = if egress { EGRESS } else { XDP };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
        let run = if egress {
            let tc: &mut SchedClassifier = program.try_into()?;
            tc.test_run(options)
        } else {
            let xdp: &mut Xdp = program.try_into()?;
            xdp.test_run(options)
        };
        match run {
            Ok(_) => Ok(None),
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(Errno::EINVAL as i32) =>
            {
                Ok(Some(SkipReason::Refused))
            }
            Err(e) => Err(e).with_context(|| format!("BPF_PROG_TEST_RUN of {name}")),
        }
    }

    /// Findings of the events and web samples waiting in their rings, as the agent writes them
    /// (monitor mode).
    fn findings(&mut self, summary: &mut Summary) -> Vec<Finding> {
        let events = self.events.drain().events;
        let mut findings: Vec<Finding> = events
            .iter()
            .filter_map(|event| {
                let (f, _) = self.reporter.event(
                    event,
                    &self.maps,
                    &self.config.report(),
                    self.interface.clone(),
                )?;
                self.admit(
                    f,
                    &event.source,
                    event.first_seen_ns,
                    event.timestamp_ns,
                    summary,
                )
            })
            .collect();
        for sample in self.web_samples.drain() {
            let at = self.capture_instant(sample.timestamp_ns);
            let report =
                self.reporter
                    .web(&sample, &self.config.report(), self.interface.clone(), at);
            if let Some(WebReport::Finding { finding, source }) = report
                && let Some(f) = self.admit(
                    *finding,
                    &source,
                    sample.timestamp_ns,
                    sample.timestamp_ns,
                    summary,
                )
            {
                findings.push(f);
            }
        }
        findings
    }

    /// The instant of capture time `ns`, on the clock the alert budget and web throttle run on.
    fn capture_instant(&self, ns: u64) -> Instant {
        let offset = ns.saturating_sub(self.first_ts.unwrap_or(ns));
        self.start + Duration::from_nanos(offset)
    }

    /// A finding with the capture's times (kernel times are capture times, epoch nanoseconds,
    /// here), if the alert budget lets it through at that time.
    fn admit(
        &mut self,
        mut f: Finding,
        source: &SourceKey,
        first_ns: u64,
        last_ns: u64,
        summary: &mut Summary,
    ) -> Option<Finding> {
        let at = |ns: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns));
        f.first_seen = at(first_ns);
        f.last_seen = at(last_ns);
        f.timestamp = f.last_seen.clone();
        if !self
            .budget
            .take(f.kind, f.direction, source, self.capture_instant(last_ns))
        {
            summary.alerts_suppressed += 1;
            return None;
        }
        summary.alerts += 1;
        *summary.alerts_by_kind.entry(f.kind.name()).or_default() += 1;
        Some(f)
    }
}

/// Reads the configuration for a replay: the file's, in monitor mode.
fn replay_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut source = ConfigSource {
        path,
        overrides: crate::config::Overrides::default(),
    };
    source.overrides.mode = Some(Mode::Monitor);
    source.load()
}

/// `scanwatch replay`: replays the capture and writes alerts (stdout) and the summary.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = replay_config(args.config.clone())?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading the capture {}", args.file.display()))?;
    let mut sink = AlertSink::stdout().with_format(config.alert_format);
    let mut alerts = Vec::new();
    let mut summary = replay_capture(&bytes, config, &args.local, |f| {
        if args.json {
            alerts.push(f);
            Ok(())
        } else {
            sink.write(&f).context("writing an alert")
        }
    })
    .with_context(|| format!("replaying {}", args.file.display()))?;
    summary.file = args.file.display().to_string();
    if args.json {
        let report = JsonReport {
            summary: &summary,
            alerts: &alerts,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else {
        sink.flush().context("writing alerts")?;
    }
    eprintln!("{}", summary_text(&summary));
    Ok(())
}

/// Replays a capture held in `bytes` through freshly loaded programs with `config`; frames from
/// `local` networks go to the egress program. Each alert goes to `on_alert` as it is raised.
pub fn replay_capture(
    bytes: &[u8],
    config: Config,
    local: &[IpNet],
    mut on_alert: impl FnMut(Finding) -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let mut capture = Capture::new(bytes)?;
    loader::check_privileges()?;
    let mut replayer = Replayer::new(config, "replay".to_owned())?;
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut last_ts = 0;
    while let Some(frame) = capture.next_frame(summary.packets + 1) {
        let Frame { ts_ns, data, link } = frame?;
        summary.packets += 1;
        let Some(converted) = link.to_ethernet(data) else {
            summary.skipped.add(SkipReason::TooShort);
            continue;
        };
        let frame = Frame {
            ts_ns,
            data: converted.data,
            link: Link::Ethernet,
        };
        let egress = if local.is_empty() {
            converted.outgoing
        } else {
            ip_source(&frame.data).is_some_and(|ip| local.iter().any(|n| n.contains(&ip)))
        };
        if let Some(reason) = replayer.feed(&frame, egress)? {
            summary.skipped.add(reason);
        } else if egress {
            summary.egress_packets += 1;
        } else {
            summary.ingress_packets += 1;
        }
        last_ts = frame.ts_ns.max(last_ts);
        for f in replayer.findings(&mut summary) {
            on_alert(f)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    summary.elapsed_seconds = elapsed;
    summary.packets_per_second = if elapsed > 0.0 {
        summary.packets as f64 / elapsed
    } else {
        0.0
    };
    summary.capture_seconds =
        last_ts.saturating_sub(replayer.first_ts.unwrap_or(last_ts)) as f64 / 1e9;
    let stats = replayer.maps.stats.read()?;
    for reason in ParseError::ALL {
        let n = stats
            .get(parse_error_slot(reason) as usize)
            .copied()
            .unwrap_or(0);
        if n > 0 {
            summary.parse_errors.insert(reason.name(), n);
        }
    }
    Ok(summary)
}

/// The default configuration in monitor mode, as `scanwatch replay` without `--config` uses.
pub fn default_config() -> anyhow::Result<Config> {
    replay_config(None)
}

/// The skipped frames' reasons, for the human summary (empty when none was skipped).
fn skipped_text(s: &Skipped) -> String {
    let reasons: Vec<String> = [
        ("too short", s.too_short),
        ("too long for the test run", s.too_long),
        ("refused by the kernel", s.refused),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(why, n)| format!("{n} {why}"))
    .collect();
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    }
}

/// The human summary.
pub fn summary_text(s: &Summary) -> String {
    let kinds = if s.alerts_by_kind.is_empty() {
        "none".to_owned()
    } else {
        s.alerts_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let errors: u64 = s.parse_errors.values().sum();
    format!(
        "{}: {} packets ({} ingress, {} egress) over {:.1}s of capture, replayed in {:.2}s \
         ({:.0} packets/s); {} skipped{}; {} alerts ({kinds}), {} suppressed; {errors} parse \
         errors{}",
        Path::new(&s.file).display(),
        s.packets,
        s.ingress_packets,
        s.egress_packets,
        s.capture_seconds,
        s.elapsed_seconds,
        s.packets_per_second,
        s.skipped.total(),
        skipped_text(&s.skipped),
        s.alerts,
        s.alerts_suppressed,
        if errors == 0 {
            String::new()
        } else {
            format!(" {:?}", s.parse_errors)
        },
    )
}

#[cfg(test)]
mod tests {
    use pcap_file::{
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        pcapng::{PcapNgWriter, blocks::interface_description::InterfaceDescriptionBlock},
    };
    use scanwatch_common::event::DetectionKind;

    use super::*;
    use crate::finding::record::Direction;

    fn frame(src: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 34];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[26..30].copy_from_slice(&src);
        f
    }

    fn pcap(link: DataLink, frames: &[Vec<u8>]) -> Vec<u8> {
        let header = PcapHeader {
            datalink: link,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_secs(1_700_000_000 + i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
        w.into_writer()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
        let mut c = Capture::new(bytes)?;
        let mut out = Vec::new();
        while let Some(f) = c.next_frame(out.len() as u64 + 1) {
            out.push(f?);
        }
        Ok(out)
    }

    #[test]
    fn reads_pcap_frames_with_their_timestamps() {
        let bytes = pcap(
            DataLink::ETHERNET,
            &[frame([10, 0, 0, 1]), frame([10, 0, 0, 2])],
        );
        let frames = read_all(&bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].ts_ns, 1_700_000_001_000_000_000);
        assert_eq!(frames[1].data, frame([10, 0, 0, 2]));
    }

    #[test]
    fn reads_pcapng_enhanced_packets() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0xffff))
            .unwrap();
        let data = frame([192, 0, 2, 1]);
        let epb = pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(5),
            original_len: data.len() as u32,
            data: data.clone().into(),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
        // No if_tsresol: the raw count (5000) is in microseconds.
        let frames = read_all(&w.into_inner()).unwrap();
        assert_eq!(
            frames,
            vec![Frame {
                ts_ns: 5_000_000,
                data,
                link: Link::Ethernet,
            }]
        );
    }

    #[test]
    fn scales_pcapng_timestamps_by_their_resolution() {
        assert_eq!(to_ns(7, 9), 7);
        assert_eq!(to_ns(7, 3), 7_000_000);
        assert_eq!(to_ns(7_000, 12), 7);
        assert_eq!(to_ns(1 << 10, 0x8a), 1_000_000_000);
        let nano = [InterfaceDescriptionOption::IfTsResol(9)];
        assert_eq!(ts_resolution(&nano), 9);
        assert_eq!(ts_resolution(&[]), 6);
    }

    #[test]
    fn names_an_unsupported_link_type() {
        let bytes = pcap(DataLink::IEEE802_11_RADIOTAP, &[frame([10, 0, 0, 1])]);
        let e = read_all(&bytes).unwrap_err();
        assert!(
            matches!(&e, CaptureError::UnsupportedLinkType { number: 127, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("IEEE802_11_RADIOTAP"), "{e}");
    }

    #[test]
    fn names_an_unsupported_pcapng_interface() {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::IEEE802_11, 0xffff))
            .unwrap();
        let e = read_all(&w.into_inner()).unwrap_err();
        assert!(matches!(e, CaptureError::UnsupportedLinkType { .. }), "{e}");
    }

    #[test]
    fn says_which_packet_is_truncated() {
        let bytes = pcap(
            DataLink::ETHERNET,
            &[frame([10, 0, 0, 1]), frame([10, 0, 0, 2])],
        );
        let cut = &bytes[..bytes.len() - 5];
        let e = read_all(cut).unwrap_err();
        assert!(matches!(e, CaptureError::Truncated { packet: 2 }), "{e}");
        assert!(e.to_string().contains("packet 2"), "{e}");
    }

    #[test]
    fn rejects_files_that_are_not_captures() {
        assert!(matches!(
            Capture::new(b"hello"),
            Err(CaptureError::TooShort(5))
        ));
        assert!(matches!(
            Capture::new(&[b'x'; 64]),
            Err(CaptureError::NotACapture(_))
        ));
    }

    #[test]
    fn checks_frame_lengths_against_the_test_run_limits() {
        let limits = FrameLimits::for_page(4096);
        assert_eq!(
            limits,
            FrameLimits {
                max_xdp: 73_152,
                xdp_linear: 3_520,
                max_tc: 3_712
            }
        );
        let mut large = frame([10, 0, 0, 1]);
        large.resize(20_000, 0);
        assert_eq!(limits.check(&large, true), Some(SkipReason::TooLong));
        assert_eq!(limits.check(&large, false), None);
        assert_eq!(limits.check(&[0u8; 13], false), Some(SkipReason::TooShort));
        assert_eq!(limits.check(&[0u8; 14], true), None);
        let ipv4 = frame([10, 0, 0, 1]);
        assert_eq!(limits.check(&ipv4[..33], true), Some(SkipReason::TooShort));
        assert_eq!(limits.check(&ipv4[..33], false), None);
        assert_eq!(limits.check(&ipv4, true), None);
    }

    /// Needs root (loads the programs): frames the test run cannot take are counted, not fatal.
    #[test]
    fn skips_and_counts_frames_the_test_run_cannot_take() {
        if loader::check_privileges().is_err() {
            eprintln!("NOTICE: skipped, loading programs needs root or CAP_BPF");
            return;
        }
        let local = [10, 0, 0, 1];
        let mut large = frame(local);
        large.resize(20_000, 0);
        let full = frame([192, 0, 2, 1]);
        let bytes = pcap(
            DataLink::ETHERNET,
            &[
                full.clone(),
                full[..4].to_vec(),
                full[..13].to_vec(),
                large,
                frame(local),
            ],
        );
        let net: IpNet = "10.0.0.0/24".parse().unwrap();
        let summary =
            replay_capture(&bytes, default_config().unwrap(), &[net], |_| Ok(())).unwrap();
        assert_eq!(summary.packets, 5);
        assert_eq!(
            summary.skipped,
            Skipped {
                too_short: 2,
                too_long: 1,
                refused: 0
            }
        );
        assert_eq!((summary.ingress_packets, summary.egress_packets), (1, 1));
        let text = summary_text(&summary);
        assert!(
            text.contains("3 skipped (2 too short, 1 too long for the test run)"),
            "{text}"
        );
    }

    /// Needs root (loads the programs): without `--local`, a cooked frame the host sent goes to
    /// egress; with it, the CIDRs decide.
    #[test]
    fn sends_outgoing_cooked_frames_to_egress() {
        if loader::check_privileges().is_err() {
            eprintln!("NOTICE: skipped, loading programs needs root or CAP_BPF");
            return;
        }
        let cooked = |packet_type: u8, src: [u8; 4]| {
            let mut f = vec![
                0,
                packet_type,
                0,
                1,
                0,
                6,
                2,
                0,
                0,
                0,
                0,
                1,
                0,
                0,
                0x08,
                0x00,
            ];
            f.extend_from_slice(&frame(src)[14..]);
            f
        };
        let bytes = pcap(
            DataLink::LINUX_SLL,
            &[cooked(4, [10, 0, 0, 1]), cooked(0, [192, 0, 2, 1])],
        );
        let summary = replay_capture(&bytes, default_config().unwrap(), &[], |_| Ok(())).unwrap();
        assert_eq!((summary.ingress_packets, summary.egress_packets), (1, 1));
        let other: IpNet = "198.51.100.0/24".parse().unwrap();
        let summary =
            replay_capture(&bytes, default_config().unwrap(), &[other], |_| Ok(())).unwrap();
        assert_eq!((summary.ingress_packets, summary.egress_packets), (2, 0));
        let raw = pcap(
            DataLink::RAW,
            &[frame([10, 0, 0, 1])[14..].to_vec(), vec![]],
        );
        let summary = replay_capture(&raw, default_config().unwrap(), &[], |_| Ok(())).unwrap();
        assert_eq!(summary.ingress_packets, 1);
        assert_eq!(summary.skipped.too_short, 1);
    }

    /// An Ethernet, IPv4 and TCP frame from `src:sport` to `dst:dport` with `flags`.
    fn tcp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), flags: u8) -> Vec<u8> {
        let mut f = frame(src);
        f.resize(54, 0);
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&ports.0.to_be_bytes());
        f[36..38].copy_from_slice(&ports.1.to_be_bytes());
        f[46] = 0x50;
        f[47] = flags;
        f[48..50].copy_from_slice(&1024u16.to_be_bytes());
        f
    }

    /// Needs root (loads the programs): a capture of the host's refused connects replays to an
    /// egress port_scan with neither a process nor a tool, which a capture cannot show (the
    /// test run's sockets are the replaying process's own).
    #[test]
    fn replayed_egress_findings_name_no_process_and_no_tool() {
        if loader::check_privileges().is_err() {
            eprintln!("NOTICE: skipped, loading programs needs root or CAP_BPF");
            return;
        }
        let (local, remote) = ([10, 0, 0, 1], [192, 0, 2, 2]);
        let mut frames = Vec::new();
        for port in 1..=60 {
            frames.push(tcp(local, remote, (40_000, port), 0x02));
            frames.push(tcp(remote, local, (port, 40_000), 0x14));
        }
        let bytes = pcap(DataLink::ETHERNET, &frames);
        let net: IpNet = "10.0.0.0/24".parse().unwrap();
        let mut findings = Vec::new();
        replay_capture(&bytes, default_config().unwrap(), &[net], |f| {
            findings.push(f);
            Ok(())
        })
        .unwrap();
        let egress: Vec<_> = findings
            .iter()
            .filter(|f| f.direction == Direction::Egress)
            .collect();
        assert!(
            egress.iter().any(|f| f.kind == DetectionKind::PortScan),
            "{findings:#?}"
        );
        for f in egress {
            assert_eq!((&f.process, &f.tool), (&None, &None), "{f:#?}");
        }
    }

    #[test]
    fn finds_the_ip_source_behind_vlan_tags() {
        assert_eq!(ip_source(&frame([10, 0, 0, 9])), Some([10, 0, 0, 9].into()));
        let mut tagged = frame([10, 0, 0, 9]);
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(ip_source(&tagged), Some([10, 0, 0, 9].into()));
        assert_eq!(ip_source(&[0u8; 10]), None);
    }
}
