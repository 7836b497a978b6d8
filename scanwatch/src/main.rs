//! `scanwatch`: detects network scans in the kernel with XDP, writes alerts as JSON Lines and
//! exports Prometheus metrics.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use scanwatch::{
    agent::{self, ConfigSource},
    config::{Config, FileConfig, Overrides, Sensitivity, XdpMode},
};

/// Detects network scanning (MITRE ATT&CK T1595, T1046) at line rate with XDP.
///
/// scanwatch counts, per source and per time window, the distinct destination ports and hosts
/// its probes reach (TCP SYN, FIN/NULL/Xmas/Maimon, UDP, ICMP echo/timestamp/mask, tiny
/// fragments) and reports sources that cross a threshold. It never drops or changes a packet.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and watch for scans until SIGINT/SIGTERM.
    ///
    /// Alerts go to stdout (or --alert-log) as JSON Lines; metrics are served at
    /// http://127.0.0.1:9977/metrics. SIGHUP reloads the configuration file and reopens the
    /// alert log. Flags override the configuration file.
    Run(RunArgs),
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Interface to watch (repeatable). Default: the interface of the default route.
    #[arg(short, long = "iface", value_name = "IFACE")]
    iface: Vec<String>,
    /// XDP attach mode: auto tries native and falls back to skb with a warning.
    #[arg(long, value_enum, value_name = "MODE")]
    xdp_mode: Option<XdpMode>,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the Prometheus endpoint [default: 127.0.0.1:9977].
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_addr: Option<String>,
    /// Append alerts (JSON Lines) to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    alert_log: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Threshold preset (each threshold can still be set in the file).
    #[arg(long, value_enum)]
    sensitivity: Option<Sensitivity>,
    /// Replace an XDP program someone else attached to the interface (never done silently).
    #[arg(long)]
    force: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scanwatch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let parsed = FileConfig::read(file)?;
    let config = Config::build(Some(&parsed), &Overrides::default())?;
    println!("{}: OK\n{config:#?}", file.display());
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let source = ConfigSource {
        path: args.config,
        overrides: Overrides {
            interfaces: args.iface,
            xdp_mode: args.xdp_mode,
            metrics_addr: args.metrics_addr,
            alert_log: args.alert_log,
            log_level: args.log_level,
            sensitivity: args.sensitivity,
        },
    };
    let config = source.load()?;
    env_logger::Builder::new()
        .filter_level(config.log_level)
        .parse_default_env()
        .target(env_logger::Target::Stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(agent::run(source, args.force))
}
