//! `cargo xtask`: build, run, test and bench orchestration for scanwatch, plus the toolchain
//! checks they need. No product logic lives here.

mod cmd;
mod fuzz;
mod package;
mod setup;
mod test;

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    process::{Command, ExitCode},
};

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run, test and bench scanwatch."
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check for (and install if missing) the nightly `rust-src` component and bpf-linker
    /// 0.10.4, which build the eBPF object. Every other task runs this first.
    Setup,
    /// Build the release daemon with its embedded eBPF object.
    Build,
    /// Build and run the daemon as root: `scanwatch run ARGS...`
    /// (e.g. `cargo xtask run -- -i eth1`). Needs root.
    Run {
        /// Arguments for `scanwatch run`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run clippy and every test: host unit tests, kernel tests, end-to-end tests. Needs root.
    Test {
        /// Arguments for `cargo test` (a test-name filter, or `-- --nocapture`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Benchmark the XDP program under `BPF_PROG_TEST_RUN`; writes target/bench/xdp.json.
    /// Needs root.
    Bench {
        /// Instead: the release daemon at rest with 100,000 tracked sources and a full flow
        /// map, in a lab (CPU, RSS, gauge freshness; `tests/src/bin/idle_bench.rs`).
        #[arg(long, conflicts_with = "traffic")]
        idle: bool,
        /// Instead: packets per second through a veth pair driven by trafgen, with nothing,
        /// the empty XDP program and the release agent attached
        /// (`tests/src/bin/traffic_bench.rs`). Installs netsniff-ng (trafgen) with apt-get
        /// when it is missing.
        #[arg(long)]
        traffic: bool,
        /// Instead: the release daemon in a lab for MINUTES minutes under a steady, bounded mix
        /// (established connections, an nmap SYN scan a minute, one- and two-packet spoofed
        /// floods, malformed frames), sampled every minute: RSS, CPU, map fill, lost events,
        /// churn, alert latency, scans reported (`tests/src/bin/soak_bench/`). Installs nmap
        /// with apt-get when it is missing.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["idle", "traffic"])]
        soak: Option<u64>,
        /// Instead: what naming the process behind egress scans costs the TC egress program,
        /// timed by the kernel's BPF statistics over real sockets in a lab, with the recording
        /// of senders on and off (`tests/src/bin/socket_bench.rs`).
        #[arg(long, conflicts_with_all = ["idle", "traffic", "soak"])]
        sockets: bool,
        /// Arguments for the bench binary (case-name filters; `--seconds N` for --idle and
        /// --traffic, `--runs N` for --traffic; `--warmup N`, `--single-pps N`, `--pair-pps N`,
        /// `--malformed-per-minute N` for --soak).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Render the man pages of `scanwatch` and each subcommand from the CLI definitions into
    /// target/man/.
    Man,
    /// Run every fuzz target of fuzz/ (cargo-fuzz on nightly, installing cargo-fuzz first when
    /// it is missing) for SECONDS each, and print each target's executions and time.
    Fuzz {
        /// Seconds per target.
        #[arg(default_value_t = 60)]
        seconds: u64,
    },
    /// Build the Debian package (release binary, unit, default configuration, man pages,
    /// logrotate snippet, dashboards and alert rules) into target/debian/ with cargo-deb,
    /// installing cargo-deb first when it is missing.
    Package,
    /// A first look: builds a throwaway network-namespace lab, runs the agent on it, scans it,
    /// prints the alerts and a metrics excerpt, and tears the lab down. Needs root.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::setup().map(|()| ExitCode::SUCCESS),
        Task::Build => build().map(|()| ExitCode::SUCCESS),
        Task::Run { args } => run(&args),
        Task::Test { args } => test::test(&args),
        Task::Bench {
            idle: true, args, ..
        } => daemon_bench("idle_bench", &args),
        Task::Bench {
            traffic: true,
            args,
            ..
        } => tool("trafgen", "netsniff-ng").and_then(|()| daemon_bench("traffic_bench", &args)),
        Task::Bench {
            soak: Some(minutes),
            args,
            ..
        } => tool("nmap", "nmap")
            .and_then(|()| daemon_bench("soak_bench", &soak_args(minutes, args))),
        Task::Bench {
            sockets: true,
            args,
            ..
        } => bench_bin("socket_bench", &args),
        Task::Bench { args, .. } => bench(&args),
        Task::Man => package::man(package::Profile::Dev).map(|_| ExitCode::SUCCESS),
        Task::Package => {
            package::package(package::Profile::Release, &cmd::target_dir().join("debian"))
                .map(|_| ExitCode::SUCCESS)
        }
        Task::Demo => demo(),
        Task::Fuzz { seconds } => fuzz::fuzz(seconds).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        eprintln!("scanwatch: error: {e:#}");
        ExitCode::FAILURE
    })
}

/// Setup, then the release build of the daemon (its build script builds the eBPF object).
fn build() -> Result<()> {
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "scanwatch"]))
}

/// Builds, then replaces this process with the daemon, so signals (Ctrl-C) reach it directly
/// and its exit code is ours.
fn run(args: &[OsString]) -> Result<ExitCode> {
    let mut typed = String::from("run");
    if !args.is_empty() {
        typed.push_str(" --");
        for arg in args {
            typed.push(' ');
            typed.push_str(&arg.to_string_lossy());
        }
    }
    cmd::require_root(
        &typed,
        "the daemon loads and attaches its programs (CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)",
    )?;
    build()?;
    let mut daemon = Command::new(cmd::target_dir().join("release/scanwatch"));
    daemon.arg("run").args(args);
    cmd::announce(&daemon);
    let error = daemon.exec();
    Err(anyhow::Error::new(error).context(format!("could not start `{}`", cmd::display(&daemon))))
}

/// Runs the data-path benchmark (`tests/src/bin/xdp_bench.rs`) in release mode.
fn bench(args: &[OsString]) -> Result<ExitCode> {
    bench_bin("xdp_bench", args)
}

/// Runs a bench binary that loads the programs itself, in release mode.
fn bench_bin(bin: &str, args: &[OsString]) -> Result<ExitCode> {
    cmd::require_root("bench", "the benchmark loads BPF programs (CAP_BPF)")?;
    setup::setup()?;
    run_tests_bin(bin, &["--release"], args, None)
}

/// Runs a bench binary that starts the daemon: both built in release mode, the daemon passed
/// as `SCANWATCH_BIN`.
fn daemon_bench(bin: &str, args: &[OsString]) -> Result<ExitCode> {
    cmd::require_root(
        "bench",
        "the benchmark creates network namespaces and loads BPF programs (CAP_BPF + CAP_NET_ADMIN)",
    )?;
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "--release", "-p", "scanwatch"]))?;
    let daemon = cmd::target_dir().join("release/scanwatch");
    run_tests_bin(bin, &["--release"], args, Some(daemon.as_os_str()))
}

/// Installs Debian's `package` when `program` is missing: the traffic bench needs trafgen
/// (netsniff-ng) and the soak nmap; nothing else does.
fn tool(program: &str, package: &str) -> Result<()> {
    // Found when it starts at all: `trafgen --version` exits 1.
    if Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
    {
        return Ok(());
    }
    eprintln!("{program} is missing: installing {package} with apt-get");
    cmd::run(Command::new("apt-get").args(["install", "-y", package]))
}

/// The soak bench's arguments: the minutes, then what followed `--`.
fn soak_args(minutes: u64, args: Vec<OsString>) -> Vec<OsString> {
    let mut all = vec![
        OsString::from("--minutes"),
        OsString::from(minutes.to_string()),
    ];
    all.extend(args);
    all
}

/// Runs the demo (`tests/src/bin/demo.rs`).
fn demo() -> Result<ExitCode> {
    cmd::require_root(
        "demo",
        "the demo creates network namespaces and loads BPF programs (CAP_BPF + CAP_NET_ADMIN)",
    )?;
    // The demo runs the daemon binary, which `cargo run` of the tests package does not build.
    setup::setup()?;
    cmd::run(cmd::cargo().args(["build", "-p", "scanwatch"]))?;
    run_tests_bin("demo", &[], &[], None)
}

/// `cargo run` of a binary of the tests package (after setup), with `daemon` as the
/// `SCANWATCH_BIN` it starts; its exit code is ours.
fn run_tests_bin(
    bin: &str,
    cargo_args: &[&str],
    args: &[OsString],
    daemon: Option<&std::ffi::OsStr>,
) -> Result<ExitCode> {
    let mut command = cmd::cargo();
    if let Some(daemon) = daemon {
        command.env("SCANWATCH_BIN", daemon);
    }
    command
        .args(["run"])
        .args(cargo_args)
        .args(["-p", "scanwatch-tests", "--bin", bin]);
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    let status = cmd::status(&mut command)?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(code as u8),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(argv: &[&str]) -> Vec<OsString> {
        match Cli::try_parse_from(argv).unwrap().task {
            Task::Run { args } | Task::Test { args } | Task::Bench { args, .. } => args,
            Task::Setup
            | Task::Build
            | Task::Man
            | Task::Package
            | Task::Demo
            | Task::Fuzz { .. } => panic!("no args"),
        }
    }

    #[test]
    fn idle_and_traffic_benches_are_exclusive() {
        assert!(Cli::try_parse_from(["xtask", "bench", "--idle", "--traffic"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["xtask", "bench", "--idle"])
                .unwrap()
                .task,
            Task::Bench {
                idle: true,
                traffic: false,
                ..
            }
        ));
    }

    #[test]
    fn soak_bench_is_exclusive_with_the_idle_and_traffic_benches() {
        for other in ["--idle", "--traffic"] {
            assert!(Cli::try_parse_from(["xtask", "bench", "--soak", "3", other]).is_err());
        }
        assert!(Cli::try_parse_from(["xtask", "bench", "--soak"]).is_err());
        let Task::Bench {
            soak: Some(minutes),
            idle: false,
            traffic: false,
            sockets: false,
            args,
        } = Cli::try_parse_from(["xtask", "bench", "--soak", "30", "--", "--warmup", "5"])
            .unwrap()
            .task
        else {
            panic!("--soak 30 is the soak bench");
        };
        assert_eq!(
            soak_args(minutes, args),
            ["--minutes", "30", "--warmup", "5"]
        );
    }

    #[test]
    fn socket_bench_is_exclusive_with_the_other_benches() {
        for other in [&["--idle"][..], &["--traffic"], &["--soak", "3"]] {
            let mut args = vec!["xtask", "bench", "--sockets"];
            args.extend(other);
            assert!(
                Cli::try_parse_from(args).is_err(),
                "--sockets with {other:?}"
            );
        }
        assert!(matches!(
            Cli::try_parse_from(["xtask", "bench", "--sockets"])
                .unwrap()
                .task,
            Task::Bench { sockets: true, .. }
        ));
    }

    #[test]
    fn passes_arguments_after_double_dash_through() {
        assert_eq!(
            args_of(&["xtask", "run", "--", "-i", "eth1"]),
            ["-i", "eth1"]
        );
        assert_eq!(args_of(&["xtask", "test", "--", "tracker"]), ["tracker"]);
        assert_eq!(
            args_of(&["xtask", "test", "--", "tracker", "--", "--nocapture"]),
            ["tracker", "--", "--nocapture"]
        );
        assert!(args_of(&["xtask", "bench"]).is_empty());
        assert_eq!(
            args_of(&["xtask", "bench", "--traffic", "--", "--runs", "3"]),
            ["--runs", "3"]
        );
    }

    #[test]
    fn rejects_daemon_flags_before_double_dash() {
        assert!(Cli::try_parse_from(["xtask", "run", "-i", "eth1"]).is_err());
    }
}
