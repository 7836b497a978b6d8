//! The command line: `scanwatch` and its subcommands, with their help texts. The binary parses
//! it; `cargo xtask man` renders the man pages from the same definitions (`clap_mangen`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    config::{Mode, Overrides, Sensitivity, XdpMode, source::ConfigSource},
    outputs::alerts::AlertFormat,
};

/// Detects network scanning (MITRE ATT&CK T1595, T1046) at line rate with XDP.
///
/// scanwatch counts, per source and per time window, the distinct destination ports and hosts
/// its probes reach (TCP SYN, FIN/NULL/Xmas/Maimon, UDP, ICMP echo/timestamp/mask, tiny
/// fragments) and reports sources that cross a threshold. In the default monitor mode it never
/// drops or changes a packet; in drop mode it blocks scanners at XDP for a TTL.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    /// Agent instance: its pinned maps live in /sys/fs/bpf/scanwatch-NAME and its status in
    /// /run/scanwatch-NAME (default: /sys/fs/bpf/scanwatch, /run/scanwatch). Use one per network
    /// namespace when running several agents on one host.
    #[arg(long, global = true, value_name = "NAME")]
    pub instance: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to interfaces and watch for scans until SIGINT/SIGTERM.
    ///
    /// Alerts go to stdout (or --alert-log) as JSON Lines; metrics are served at
    /// http://127.0.0.1:9977/metrics. SIGHUP reloads the configuration file and reopens the
    /// alert log. Flags override the configuration file.
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Block an address or CIDR now (in the running agent's pinned block map).
    ///
    /// Enforced while the agent runs in drop mode. Loopback, the host's own addresses, its
    /// default gateways and `never_block` networks are refused.
    Block {
        /// Address or CIDR, e.g. 203.0.113.7 or 2001:db8:bad::/48.
        target: String,
        /// How long the block lasts (e.g. 30m, 4h); default: until unblocked.
        #[arg(long, value_parser = crate::kernel::blocks::parse_ttl)]
        ttl: Option<std::time::Duration>,
        /// Why, kept with the block and shown by `scanwatch list`.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove blocks of an address or CIDR (manual, block-list or detection blocks).
    Unblock {
        /// Address or CIDR.
        target: String,
    },
    /// List live blocks: source, reason, since, expires, packets dropped.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Include block-list entries (there may be many).
        #[arg(long)]
        all: bool,
    },
    /// Replay a capture (pcap or pcapng) through the XDP and TC programs and print its alerts.
    ///
    /// Every frame runs through the agent's own programs (BPF_PROG_TEST_RUN) at its capture
    /// time; events become alerts as in monitor mode. Frames from --local networks go to the
    /// egress program. Needs the same privileges as `run`; attaches to no interface.
    Replay(crate::runtime::replay::ReplayArgs),
    /// Show the running agent: interfaces, mode, tracked sources, blocks, top sources.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

const RUN_EXAMPLES: &str = "\
Examples:
  scanwatch run -i eth0                         watch eth0, alert only
  scanwatch run -c /etc/scanwatch/scanwatch.toml   with the packaged configuration file
  scanwatch run -i eth0 --alert-log /var/log/scanwatch/alerts.jsonl   alerts to a file
  scanwatch run -i eth0 --mode drop --dry-run   show what drop mode would block
  scanwatch run -i eth0 --mode drop             block scanners for block_ttl (1h, doubling)

Signals:
  SIGINT, SIGTERM   detach from every interface, flush alerts, exit 0
  SIGHUP            reload the configuration file and block lists, reopen the alert log

Files:
  /etc/scanwatch/scanwatch.toml   the configuration the Debian package installs
  /sys/fs/bpf/scanwatch/   pinned block maps (kept across restarts; --reset-state clears them)
  /run/scanwatch/status.json   the running agent's status, read by `scanwatch status`

Exit status: 0 after a clean stop, 1 on an error (the message says what to do next).";

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to watch (repeatable). Default: the interface of the default route.
    #[arg(short, long = "iface", value_name = "IFACE")]
    pub iface: Vec<String>,
    /// XDP attach mode: auto tries native and falls back to skb with a warning.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<XdpMode>,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the Prometheus endpoint [default: 127.0.0.1:9977].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<String>,
    /// Append alerts (JSON Lines) to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub alert_log: Option<PathBuf>,
    /// Alert format: jsonl (scanwatch's fields) or ecs (Elastic Common Schema) [default: jsonl].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub alert_format: Option<AlertFormat>,
    /// Also send each alert as an RFC 5424 syslog message: HOST:PORT (UDP) or a socket path
    /// such as /dev/log.
    #[arg(long, value_name = "ADDR")]
    pub alert_syslog: Option<String>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Threshold preset (each threshold can still be set in the file).
    #[arg(long, value_enum)]
    pub sensitivity: Option<Sensitivity>,
    /// Replace an XDP program someone else attached to the interface (never done silently).
    #[arg(long)]
    pub force: bool,
    /// monitor: alert only (default). drop: also block scanners and block-list CIDRs at XDP.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// In drop mode, log `would_block` instead of blocking anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Start with no blocks: remove the pinned block maps a previous run left.
    #[arg(long)]
    pub reset_state: bool,
}

impl RunArgs {
    /// The configuration file and the flags that override it.
    pub fn config_source(self) -> ConfigSource {
        ConfigSource {
            path: self.config,
            overrides: Overrides {
                interfaces: self.iface,
                xdp_mode: self.xdp_mode,
                metrics_addr: self.metrics_addr,
                alert_log: self.alert_log,
                alert_format: self.alert_format,
                alert_syslog: self.alert_syslog,
                log_level: self.log_level,
                sensitivity: self.sensitivity,
                mode: self.mode,
                dry_run: self.dry_run,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn block_refuses_a_ttl_beyond_the_longest_block() {
        let block =
            |ttl: &str| Cli::try_parse_from(["scanwatch", "block", "192.0.2.7", "--ttl", ttl]);
        assert!(block("4h").is_ok());
        let e = block("600y").unwrap_err().to_string();
        assert!(e.contains("--ttl") && e.contains("365days"), "{e}");
    }
}
