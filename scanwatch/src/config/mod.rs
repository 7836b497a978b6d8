//! The agent's configuration: one `Config`, read from a TOML file, overridden by flags,
//! validated once at load. Defaults are documented next to each field and grounded in the
//! peers' published defaults (see `README.md`, "Detection defaults").

mod lists;
pub mod source;
mod stages;
pub mod thresholds;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;
use scanwatch_common::{
    addr::{DEFAULT_IPV6_PREFIX_LEN, DEFAULT_IPV6_WIDE_PREFIX_LEN, MAX_IPV6_WIDE_PREFIX_LEN},
    config::{FLAG_DROP, FLAG_NO_EGRESS, KernelConfig},
    distinct::bits_for_count,
    event::{DETECTION_KINDS, DetectionKind},
    maps::{IGNORE_CAPACITY, TRACKER_CAPACITY},
    state::{NarrowBitmap, SourceState},
};
use serde::Deserialize;

use self::lists::list_specs;
pub use self::{
    lists::{ListFile, ListTable},
    thresholds::{KindThresholds, Sensitivity, Thresholds, counting_limit},
};
use crate::{
    config::thresholds::{distributed_hosts, merge_thresholds},
    kernel::blocks::check_ttl,
    net::parse_cidr,
    outputs::alerts::{AlertFormat, SyslogTarget},
    policy::block_lists::ListSpec,
    settings::{invalid, parse_duration},
};
pub use crate::{kernel::loader::XdpMode, policy::enforce::Mode, settings::ConfigError};

/// Default Prometheus endpoint: loopback only, port 9977.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9977";

/// The configuration file (every key optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub interfaces: Option<Vec<String>>,
    pub xdp_mode: Option<XdpMode>,
    pub metrics_addr: Option<String>,
    pub alert_log: Option<PathBuf>,
    pub alert_format: Option<AlertFormat>,
    pub alert_syslog: Option<String>,
    pub log_level: Option<String>,
    pub sensitivity: Option<Sensitivity>,
    pub window: Option<String>,
    pub ipv6_prefix: Option<u32>,
    pub tracker_capacity: Option<u32>,
    pub ignore: Option<Vec<String>>,
    pub top_sources: Option<usize>,
    pub max_alerts_per_second: Option<u32>,
    pub thresholds: Option<Thresholds>,
    pub egress: Option<bool>,
    pub egress_thresholds: Option<Thresholds>,
    pub long_window: Option<String>,
    pub long_thresholds: Option<Thresholds>,
    pub flow_timeout: Option<String>,
    pub mode: Option<Mode>,
    pub dry_run: Option<bool>,
    pub block_ttl: Option<String>,
    pub max_block_ttl: Option<String>,
    pub never_block: Option<Vec<String>>,
    pub block_lists: Option<Vec<ListFile>>,
    pub resolv_conf: Option<Vec<PathBuf>>,
    pub max_blocks_per_second: Option<u32>,
    pub block_burst: Option<u32>,
    pub answered_peer_window: Option<String>,
    /// `[crowdsec]`: the fleet (see `crowdsec::settings`).
    pub crowdsec: Option<crate::fleet::settings::Section>,
    pub block_distributed: Option<bool>,
    pub ipv6_wide_prefix: Option<u32>,
    pub block_wide_prefix: Option<bool>,
    /// `[web]`: web-scanner signatures (see `web::Section`).
    pub web: Option<crate::finding::web::Section>,
    pub block_web_scan: Option<bool>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// The validated configuration the agent runs with.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent on/off settings of the configuration file, not a state machine"
)]
pub struct Config {
    /// Interfaces to watch; empty means the default route's interface.
    pub interfaces: Vec<String>,
    /// XDP attach mode. Default `auto`.
    pub xdp_mode: XdpMode,
    /// Prometheus endpoint. Default [`DEFAULT_METRICS_ADDR`].
    pub metrics_addr: SocketAddr,
    /// JSON Lines alert file; `None` writes alerts to stdout. Default stdout.
    pub alert_log: Option<PathBuf>,
    /// `jsonl` (scanwatch's own fields, default) or `ecs` (Elastic Common Schema).
    pub alert_format: AlertFormat,
    /// Also send each alert as an RFC 5424 syslog message here. Default none.
    pub alert_syslog: Option<SyslogTarget>,
    /// `error|warn|info|debug|trace`. Default `info`.
    pub log_level: log::LevelFilter,
    /// Detection window, tumbling: counts restart when a source's window ends. Default 5 min
    /// (Zeek's scan policy interval).
    pub window: Duration,
    /// IPv6 sources are aggregated to this prefix. Default /64.
    pub ipv6_prefix: u32,
    /// Tracker capacity (sources). Default 32768 (≈ 27 MiB of kernel memory).
    pub tracker_capacity: u32,
    /// Sources never tracked.
    pub ignore: Vec<IpNet>,
    /// Export the N most active sources as a labelled gauge (0 = off, at most 20).
    pub top_sources: usize,
    /// Alerts written per second at most; the rest are counted and dropped. Default 50.
    pub max_alerts_per_second: u32,
    /// Threshold per kind (distinct ports/hosts, or probes); 0 disables.
    pub thresholds: KindThresholds,
    /// Distributed sweeps (the per-port form of distributed_scan): distinct destination hosts
    /// probed on one (protocol, port) by sources below every threshold, not counting hosts
    /// that answered on it; 0 disables. See `Sensitivity::distributed_hosts`.
    pub distributed_hosts: u32,
    /// Egress detection (scans this host sends). Default on. Reply recognition (the TC egress
    /// program recording the host's own flows) is always on.
    pub egress: bool,
    /// Egress threshold per kind; 0 disables. See `Sensitivity::egress_thresholds`.
    pub egress_thresholds: KindThresholds,
    /// Long window (slow scans), tumbling, beside `window`. Default 1 h (psad's timeout);
    /// longer than `window`, at most 7 days.
    pub long_window: Duration,
    /// Threshold per kind over `long_window`; 0 disables. See `Sensitivity::long_thresholds`.
    pub long_thresholds: KindThresholds,
    /// How long a recorded outbound flow matches replies. Default 120 s.
    pub flow_timeout: Duration,
    /// `monitor` (default) or `drop`.
    pub mode: Mode,
    /// In drop mode, log `would_block` instead of blocking. Default false.
    pub dry_run: bool,
    /// First block of a source lasts this long. Default 1 h (psad's auto-block timeout).
    pub block_ttl: Duration,
    /// Repeat offenders' TTLs double up to this. Default 24 h.
    pub max_block_ttl: Duration,
    /// Sources never blocked (still tracked and alerted).
    pub never_block: Vec<IpNet>,
    /// Block-list files (FireHOL/Spamhaus DROP format), loaded at start and on SIGHUP: each
    /// names the sources it covers in alerts (`listed_in`, monitor mode too) and, unless
    /// `block = false`, is enforced in drop mode. Default none.
    pub block_lists: Vec<ListSpec>,
    /// Files naming the host's DNS resolvers (`nameserver` lines), which are never blocked;
    /// watched for changes. Default `/etc/resolv.conf` and systemd-resolved's upstream list
    /// `/run/systemd/resolve/resolv.conf` (a missing file names none).
    pub resolv_conf: Vec<PathBuf>,
    /// New automatic blocks per second, at most (a token bucket). Default 10: at a 1 h
    /// `block_ttl` a flood of forged findings holds at most 10 · 3600 + burst ≈ 36,100
    /// detection blocks, so the 65,536-entry map never fills and blocks expire as fast as they
    /// are added.
    pub max_blocks_per_second: u32,
    /// Tokens of that bucket: new blocks allowed at once. Default 100 (a real attack wave of
    /// many scanners, e.g. a botnet sweep, is blocked at once, up to 100 sources).
    pub block_burst: u32,
    /// A remote that answered a flow this host opened this recently is never auto-blocked.
    /// Default 10 min.
    pub answered_peer_window: Duration,
    /// CrowdSec Local API roles; `None` without a `[crowdsec]` section.
    pub crowdsec: Option<crate::fleet::settings::Settings>,
    /// In drop mode, block the sampled sources of a `distributed_scan` finding (each through
    /// the same protections as any block). Default false: the finding names a target, and its
    /// sources are each below every threshold, so a spoofer who sends two probes from each of
    /// many forged addresses could otherwise choose whom to block.
    pub block_distributed: bool,
    /// IPv6 sources are counted at this wider prefix as well (default /48; 0 = off), so a
    /// scanner rotating `ipv6_prefix`es inside it is reported as the wide prefix, with the
    /// prefixes it used.
    pub ipv6_wide_prefix: u32,
    /// In drop mode, block the first-level prefixes a wide-level finding names (never the wide
    /// prefix itself: a /48 may hold a whole site). Default false: the finding aggregates
    /// prefixes that each stayed below every threshold.
    pub block_wide_prefix: bool,
    /// Web-scanner signature matching: sampled ports and signatures. Default ports 80, 8000,
    /// 8008, 8080, 8888; the built-in signatures.
    pub web: crate::finding::web::Settings,
    /// In drop mode, block the source of a `web_scan` finding (through the same protections as
    /// any block). Default false: alert only. The source completed a TCP handshake, so it is
    /// not forged, but a signature is one request's text.
    pub block_web_scan: bool,
}

/// Flag values that override the file (`None` = not given).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub metrics_addr: Option<String>,
    pub alert_log: Option<PathBuf>,
    pub alert_format: Option<AlertFormat>,
    pub alert_syslog: Option<String>,
    pub log_level: Option<String>,
    pub sensitivity: Option<Sensitivity>,
    pub mode: Option<Mode>,
    /// `--dry-run` given.
    pub dry_run: bool,
}

/// Most sources the top-N gauge may export: a hard cap on label cardinality.
pub const MAX_TOP_SOURCES: usize = 20;

impl Config {
    /// Builds and validates the configuration from an optional file and flag overrides.
    pub fn build(file: Option<&FileConfig>, flags: &Overrides) -> Result<Self, ConfigError> {
        let empty = FileConfig::default();
        let file = file.unwrap_or(&empty);
        let interfaces = if flags.interfaces.is_empty() {
            file.interfaces.clone().unwrap_or_default()
        } else {
            flags.interfaces.clone()
        };
        if let Some(bad) = interfaces
            .iter()
            .find(|i| i.is_empty() || i.len() >= 16 || i.contains(['/', ' ']))
        {
            return Err(invalid(
                "interfaces",
                format!("`{bad}` is not a valid interface name"),
            ));
        }
        let metrics = flags
            .metrics_addr
            .clone()
            .or_else(|| file.metrics_addr.clone())
            .unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_owned());
        let metrics_addr = metrics.parse().map_err(|_| {
            invalid(
                "metrics_addr",
                format!("`{metrics}` is not an address:port such as 127.0.0.1:9977"),
            )
        })?;
        let alert_syslog = flags
            .alert_syslog
            .as_ref()
            .or(file.alert_syslog.as_ref())
            .map(|s| s.parse::<SyslogTarget>())
            .transpose()
            .map_err(|reason| invalid("alert_syslog", reason))?;
        let level = flags
            .log_level
            .clone()
            .or_else(|| file.log_level.clone())
            .unwrap_or_else(|| "info".to_owned());
        let log_level = level.parse().map_err(|_| {
            invalid(
                "log_level",
                format!("`{level}` is not one of off, error, warn, info, debug, trace"),
            )
        })?;
        let window = parse_duration("window", file.window.as_deref(), Duration::from_secs(300))?;
        if window < Duration::from_secs(1) || window > Duration::from_secs(24 * 3600) {
            return Err(invalid("window", format!("{window:?} is outside 1s..=24h")));
        }
        let ipv6_prefix = file.ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX_LEN);
        if !(16..=128).contains(&ipv6_prefix) {
            return Err(invalid(
                "ipv6_prefix",
                format!("{ipv6_prefix} is outside 16..=128 (/64 is one subnet, /56 a site)"),
            ));
        }
        let ipv6_wide_prefix = file
            .ipv6_wide_prefix
            .unwrap_or(DEFAULT_IPV6_WIDE_PREFIX_LEN);
        if ipv6_wide_prefix != 0
            && (!(16..=MAX_IPV6_WIDE_PREFIX_LEN).contains(&ipv6_wide_prefix)
                || ipv6_wide_prefix >= ipv6_prefix)
        {
            return Err(invalid(
                "ipv6_wide_prefix",
                format!(
                    "{ipv6_wide_prefix} must be 0 (off) or within 16..={MAX_IPV6_WIDE_PREFIX_LEN} \
                     and shorter than ipv6_prefix ({ipv6_prefix})"
                ),
            ));
        }
        let tracker_capacity = file.tracker_capacity.unwrap_or(TRACKER_CAPACITY);
        if !(1024..=4_194_304).contains(&tracker_capacity) {
            return Err(invalid(
                "tracker_capacity",
                format!("{tracker_capacity} is outside 1024..=4194304"),
            ));
        }
        let mut ignore = Vec::new();
        for entry in file.ignore.iter().flatten() {
            ignore.push(parse_cidr(entry).map_err(|reason| invalid("ignore", reason))?);
        }
        if ignore.len() > IGNORE_CAPACITY as usize {
            return Err(invalid(
                "ignore",
                format!("{} entries, at most {IGNORE_CAPACITY}", ignore.len()),
            ));
        }
        let top_sources = file.top_sources.unwrap_or(0);
        if top_sources > MAX_TOP_SOURCES {
            return Err(invalid(
                "top_sources",
                format!("{top_sources} is more than the cap of {MAX_TOP_SOURCES}"),
            ));
        }
        let max_alerts_per_second = file.max_alerts_per_second.unwrap_or(50);
        if max_alerts_per_second == 0 {
            return Err(invalid(
                "max_alerts_per_second",
                "must be at least 1".into(),
            ));
        }
        let sensitivity = flags.sensitivity.or(file.sensitivity).unwrap_or_default();
        let thresholds = merge_thresholds(
            "thresholds",
            sensitivity.thresholds(),
            file.thresholds.as_ref(),
        )?;
        let distributed_hosts = distributed_hosts(
            sensitivity,
            [
                file.thresholds.as_ref(),
                file.long_thresholds.as_ref(),
                file.egress_thresholds.as_ref(),
            ],
        )?;
        let long_window = parse_duration(
            "long_window",
            file.long_window.as_deref(),
            Duration::from_secs(3600),
        )?;
        if long_window <= window || long_window > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid(
                "long_window",
                format!("{long_window:?} must be longer than window ({window:?}) and at most 7d"),
            ));
        }
        let long_thresholds = merge_thresholds(
            "long_thresholds",
            sensitivity.long_thresholds(),
            file.long_thresholds.as_ref(),
        )?;
        let egress_thresholds = merge_thresholds(
            "egress_thresholds",
            sensitivity.egress_thresholds(),
            file.egress_thresholds.as_ref(),
        )?;
        let flow_timeout = parse_duration(
            "flow_timeout",
            file.flow_timeout.as_deref(),
            Duration::from_secs(120),
        )?;
        if flow_timeout < Duration::from_secs(1) || flow_timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "flow_timeout",
                format!("{flow_timeout:?} is outside 1s..=1h"),
            ));
        }
        let block_ttl = parse_duration(
            "block_ttl",
            file.block_ttl.as_deref(),
            Duration::from_secs(3600),
        )?;
        let max_block_ttl = parse_duration(
            "max_block_ttl",
            file.max_block_ttl.as_deref(),
            Duration::from_secs(24 * 3600).max(block_ttl),
        )?;
        for (key, ttl) in [("block_ttl", block_ttl), ("max_block_ttl", max_block_ttl)] {
            check_ttl(ttl).map_err(|reason| invalid(key, reason))?;
        }
        if block_ttl.is_zero() || max_block_ttl < block_ttl {
            return Err(invalid(
                "max_block_ttl",
                format!(
                    "{max_block_ttl:?} must be at least block_ttl ({block_ttl:?}), which must be > 0"
                ),
            ));
        }
        let mut never_block = Vec::new();
        for entry in file.never_block.iter().flatten() {
            never_block.push(parse_cidr(entry).map_err(|reason| invalid("never_block", reason))?);
        }
        let max_blocks_per_second = file.max_blocks_per_second.unwrap_or(10);
        let block_burst = file.block_burst.unwrap_or(100);
        for (key, value) in [
            ("max_blocks_per_second", max_blocks_per_second),
            ("block_burst", block_burst),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        let answered_peer_window = parse_duration(
            "answered_peer_window",
            file.answered_peer_window.as_deref(),
            Duration::from_secs(600),
        )?;
        // The kernel keeps an answer's time, not its age: a window past the longest block's
        // would only ever protect more peers than any block could outlast.
        if answered_peer_window > crate::kernel::blocks::MAX_BLOCK_TTL {
            return Err(invalid(
                "answered_peer_window",
                format!(
                    "{} is longer than {}",
                    humantime::format_duration(answered_peer_window),
                    crate::kernel::blocks::MAX_BLOCK_TTL_TEXT
                ),
            ));
        }
        let resolv_conf = file.resolv_conf.clone().unwrap_or_else(|| {
            crate::policy::protect::DEFAULT_RESOLV_CONF
                .iter()
                .map(PathBuf::from)
                .collect()
        });
        let crowdsec = file
            .crowdsec
            .as_ref()
            .map(crate::fleet::settings::Settings::build)
            .transpose()?;
        Ok(Self {
            crowdsec,
            resolv_conf,
            max_blocks_per_second,
            block_burst,
            answered_peer_window,
            block_distributed: file.block_distributed.unwrap_or(false),
            ipv6_wide_prefix,
            block_wide_prefix: file.block_wide_prefix.unwrap_or(false),
            web: crate::finding::web::Settings::build(file.web.as_ref()).map_err(|e| match e {
                crate::finding::web::SettingsError::Signatures(e) => {
                    invalid("web.signatures", e.to_string())
                }
                e => invalid("web.ports", e.to_string()),
            })?,
            block_web_scan: file.block_web_scan.unwrap_or(false),
            mode: flags.mode.or(file.mode).unwrap_or_default(),
            dry_run: flags.dry_run || file.dry_run.unwrap_or(false),
            block_ttl,
            max_block_ttl,
            never_block,
            block_lists: list_specs(file.block_lists.as_deref().unwrap_or_default())?,
            interfaces,
            xdp_mode: flags.xdp_mode.or(file.xdp_mode).unwrap_or_default(),
            metrics_addr,
            alert_log: flags.alert_log.clone().or_else(|| file.alert_log.clone()),
            alert_format: flags.alert_format.or(file.alert_format).unwrap_or_default(),
            alert_syslog,
            log_level,
            window,
            ipv6_prefix,
            tracker_capacity,
            ignore,
            top_sources,
            max_alerts_per_second,
            thresholds,
            distributed_hosts,
            egress: file.egress.unwrap_or(true),
            egress_thresholds,
            long_window,
            long_thresholds,
            flow_timeout,
        })
    }

    /// The threshold of `kind` in distinct items (or probes).
    pub fn threshold(&self, kind: DetectionKind) -> u32 {
        self.thresholds.get(kind)
    }

    /// The egress threshold of `kind`.
    pub fn egress_threshold(&self, kind: DetectionKind) -> u32 {
        self.egress_thresholds.get(kind)
    }

    /// The kernel's view of this configuration: thresholds converted into estimator bits.
    pub fn kernel_config(&self, hash_seed: u64) -> KernelConfig {
        let kernel_units = |count: u32, kind: DetectionKind| match SourceState::estimator_bits(kind)
        {
            Some(bits) => bits_for_count(count, bits),
            None => count,
        };
        let mut thresholds = [0u32; DETECTION_KINDS];
        let mut egress_thresholds = [0u32; DETECTION_KINDS];
        let mut long_thresholds = [0u32; DETECTION_KINDS];
        for kind in DetectionKind::ALL {
            thresholds[kind as usize] = kernel_units(self.threshold(kind), kind);
            egress_thresholds[kind as usize] = kernel_units(self.egress_threshold(kind), kind);
            long_thresholds[kind as usize] = kernel_units(self.long_thresholds.get(kind), kind);
        }
        let mut flags = 0;
        if self.mode == Mode::Drop && !self.dry_run {
            flags |= FLAG_DROP;
        }
        if !self.egress {
            flags |= FLAG_NO_EGRESS;
        }
        KernelConfig {
            window_ns: self.window.as_nanos() as u64,
            clock_override_ns: 0,
            hash_seed,
            thresholds,
            ipv6_prefix_len: self.ipv6_prefix,
            flags,
            ignore_entries: self.ignore.len() as u32,
            ipv6_wide_prefix_len: self.ipv6_wide_prefix,
            egress_thresholds,
            flow_timeout_ns: self.flow_timeout.as_nanos() as u64,
            long_thresholds,
            long_reserved: 0,
            long_window_ns: self.long_window.as_nanos() as u64,
            distributed_hosts: bits_for_count(self.distributed_hosts, NarrowBitmap::BITS),
            reserved2: 0,
            web_ports: self.web.kernel_ports(),
            // The agent adds its clock calibration (`ticks`); 0 reads the coarse clock.
            tick_ns: 0,
            tick_offset_ns: 0,
        }
    }
}

#[cfg(test)]
mod tests;
