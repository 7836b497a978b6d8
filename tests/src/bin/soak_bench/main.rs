//! The daemon under a steady mix for a long time (`cargo xtask bench --soak MINUTES`): does
//! anything grow, fill, get lost or slow down?
//!
//! A throwaway lab; the release daemon (`scanwatch run`, default settings) watches the
//! target's veth while [`load::Load`] keeps a bounded mix going: echo round trips on
//! long-lived TCP connections and short connections the target opens, a one-packet and a
//! two-packet spoofed UDP flood, and malformed frames. Every minute, half-way through, the
//! attacker runs `nmap -sS` of 30 ports from a new address of its own (so each scan is a new
//! source, reported on its own). At the end of every minute the bench samples the daemon:
//! `VmRSS`, CPU (`utime + stime` from `/proc/PID/stat`), the packets its XDP program saw, the
//! tracker's and flow map's fill, ring-buffer events lost, each fixed-size state's churn ratio
//! and lost guarantee, the alert latency (p99 bucket and mean of the minute's alerts), and the
//! scans reported so far (an alert naming the scan's source); then it prints the minute's row.
//! At the end: least-squares slopes over the minutes after the warm-up, events lost, scans
//! sent against scans reported, and what the load sent.
//!
//! Nothing is asserted: it is a bench. It exits non-zero with the daemon's last log lines if
//! the daemon dies, and stops early (cleaning up, printing what it has) on Ctrl-C. Namespaces
//! only; every rate is bounded.

mod frames;
mod load;
mod sample;

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::Ipv4Addr,
    process::{ExitCode, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use scanwatch_tests::{
    daemon::{Daemon, daemon_binary},
    e2e::{NMAP_FAST, NMAP_TIMEOUT},
    lab::Lab,
    process::{describe, on_path},
    procstat::clock_ticks,
    require_root,
};

use crate::{
    load::{Load, Mix},
    sample::{Row, Snapshot, quantile_bound, slope},
};

/// Ports each scan probes: one port_scan alert at the default threshold (20 ports), below the
/// next at twice as many.
const SCAN_PORTS: &str = "1-30";
/// Into each minute, when its scan starts.
const SCAN_AT: Duration = Duration::from_secs(30);
/// The scans' sources: `10.K.0.100` on, one a scan, reused after 150 scans (well past the
/// detection window).
const SCAN_HOSTS: std::ops::RangeInclusive<u8> = 100..=249;
/// The mix, except what the arguments set.
const CONNECTIONS: u32 = 2;
const ROUND_TRIPS: u32 = 500;
const NEW_CONNECTIONS: u32 = 5;
/// Lines of the daemon's log shown when it dies.
const LOG_TAIL: usize = 30;

/// Set by SIGINT or SIGTERM: stop, clean up, print what was measured.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

struct Args {
    minutes: u64,
    warmup: u64,
    single_pps: u32,
    pair_pps: u32,
    malformed_per_minute: u32,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        minutes: 0,
        warmup: 2,
        single_pps: 4000,
        pair_pps: 2000,
        malformed_per_minute: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |max: u64| -> Result<u64> {
            let n: u64 = it
                .next()
                .with_context(|| format!("{arg} needs a value"))?
                .parse()
                .with_context(|| format!("{arg} needs a number"))?;
            ensure!(n <= max, "{arg} must be at most {max}");
            Ok(n)
        };
        match arg.as_str() {
            "--minutes" => args.minutes = value(24 * 60)?,
            "--warmup" => args.warmup = value(60)?,
            "--single-pps" => args.single_pps = u32::try_from(value(20_000)?)?,
            "--pair-pps" => args.pair_pps = u32::try_from(value(20_000)?)?,
            "--malformed-per-minute" => {
                args.malformed_per_minute = u32::try_from(value(6_000)?)?;
            }
            other => bail!(
                "unknown argument {other}; expected --minutes N, --warmup N, --single-pps N, \
                 --pair-pps N, --malformed-per-minute N"
            ),
        }
    }
    ensure!(
        args.minutes >= 1,
        "--minutes N is required (cargo xtask bench --soak MINUTES passes it)"
    );
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak bench interrupted: the figures above cover the minutes it ran");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("soak bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One nmap run and its source.
struct Scan {
    source: Ipv4Addr,
    /// Why nmap failed, if it did (such a scan is not counted as sent).
    failed: Option<String>,
}

/// The soak; false when interrupted.
fn run() -> Result<bool> {
    require_root();
    let args = parse_args()?;
    ensure!(
        on_path("nmap"),
        "nmap is missing: `apt-get install nmap` (cargo xtask bench --soak does)"
    );
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, interrupted as *const () as libc::sighandler_t) };
    }
    let mix = Mix {
        connections: CONNECTIONS,
        round_trips: ROUND_TRIPS,
        new_connections: NEW_CONNECTIONS,
        single_pps: args.single_pps,
        pair_pps: args.pair_pps,
        malformed_per_minute: args.malformed_per_minute,
    };
    let lab = Lab::new().context("building the lab")?;
    let mut daemon = Daemon::start(&lab).context("starting the agent")?;
    let pid = daemon.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    ensure!(
        comm.trim() == "scanwatch",
        "pid {pid} is {comm:?}, not the daemon"
    );
    let ticks = clock_ticks()?;
    println!(
        "daemon pid {pid} ({}), default settings, watching {} in {}",
        daemon_binary()?.display(),
        lab.target_if,
        lab.target.name()
    );
    println!(
        "mix for {} min: {CONNECTIONS} connections × {ROUND_TRIPS} echo round trips/s, \
         {NEW_CONNECTIONS} new connections/s from the target, one-packet spoofed flood {} pps, \
         two-packet spoofed flood {} pps, {} malformed frames/min, nmap -sS -p {SCAN_PORTS} \
         from a new source {}s into every minute",
        args.minutes,
        args.single_pps,
        args.pair_pps,
        args.malformed_per_minute,
        SCAN_AT.as_secs()
    );
    let mut load = Load::start(&lab, mix).context("starting the load")?;
    let start = Instant::now();
    let first = Snapshot::take(pid, &metrics(&mut daemon, start)?)?;
    println!("\n{}", Row::header(&first.states));
    println!(
        "{}",
        Row::new(0, &first, first.clone(), ticks, (0, 0)).line()
    );
    let mut scans: Vec<Scan> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut completed = true;
    for minute in 1..=args.minutes {
        let minute_start = start + Duration::from_secs((minute - 1) * 60);
        if !watch(&mut daemon, &mut load, start, minute_start + SCAN_AT)? {
            completed = false;
            break;
        }
        scans.push(scan(&lab, minute));
        if !watch(
            &mut daemon,
            &mut load,
            start,
            minute_start + Duration::from_secs(60),
        )? {
            completed = false;
            break;
        }
        let end = Snapshot::take(pid, &metrics(&mut daemon, start)?)?;
        let previous = rows.last().map_or(&first, |r| &r.end);
        let row = Row::new(minute, previous, end, ticks, tally(&daemon, &scans));
        println!("{}", row.line());
        std::io::stdout().flush()?;
        rows.push(row);
    }
    let stopped = load.stop();
    summary(&args, &daemon, &load, &first, &rows, &scans);
    if let Err(e) = stopped {
        eprintln!("warning: {e:#}");
    }
    Ok(completed)
}

/// Waits until `until`, checking every second that the daemon and the load are still running;
/// false when interrupted.
fn watch(daemon: &mut Daemon<'_>, load: &mut Load, start: Instant, until: Instant) -> Result<bool> {
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Ok(false);
        }
        alive(daemon, start)?;
        load.check()?;
        let now = Instant::now();
        if now >= until {
            return Ok(true);
        }
        thread::sleep((until - now).min(Duration::from_secs(1)));
    }
}

/// Fails with the daemon's exit status and the end of its log if it has exited.
fn alive(daemon: &mut Daemon<'_>, start: Instant) -> Result<()> {
    let Some(status) = daemon.exit_status() else {
        return Ok(());
    };
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
    let at = start.elapsed().as_secs();
    bail!(
        "the daemon died {}:{:02} into the soak ({}); the last lines of its log:\n{tail}",
        at / 60,
        at % 60,
        describe(status)
    )
}

/// The metrics text; when it cannot be read, whether the daemon died.
fn metrics(daemon: &mut Daemon<'_>, start: Instant) -> Result<String> {
    daemon.metrics().or_else(|e| {
        alive(daemon, start)?;
        // Once more: a scrape can time out on a loaded machine.
        thread::sleep(Duration::from_secs(1));
        daemon
            .metrics()
            .map_err(|again| again.context(format!("reading /metrics (first try: {e:#})")))
    })
}

/// The scan of minute `minute`: `nmap -sS` of [`SCAN_PORTS`] from a new address of the
/// attacker.
fn scan(lab: &Lab, minute: u64) -> Scan {
    let hosts = u64::from(SCAN_HOSTS.end() - SCAN_HOSTS.start()) + 1;
    let source = lab.host_v4(SCAN_HOSTS.start() + ((minute - 1) % hosts) as u8);
    let run = || -> Result<()> {
        lab.attacker.ip(&[
            "addr",
            "replace",
            &format!("{source}/24"),
            "dev",
            &lab.attacker_if,
        ])?;
        let out = lab
            .attacker
            .command("timeout")
            .args([
                "-k",
                "2",
                &NMAP_TIMEOUT.as_secs().to_string(),
                "nmap",
                "-sS",
                "-Pn",
            ])
            .args(NMAP_FAST)
            .args(["-S", &source.to_string(), "-e", &lab.attacker_if])
            .args(["-p", SCAN_PORTS, &lab.target_v4().to_string()])
            .stdin(Stdio::null())
            .output()
            .context("running nmap")?;
        ensure!(
            out.status.success(),
            "nmap failed ({}): {}",
            describe(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    };
    let failed = run().err().map(|e| format!("{e:#}"));
    if let Some(e) = &failed {
        eprintln!("warning: the scan from {source} failed: {e}");
    }
    Scan { source, failed }
}

/// Scans sent (nmap succeeded) and reported (an alert names the scan's source).
fn tally(daemon: &Daemon<'_>, scans: &[Scan]) -> (usize, usize) {
    let alerts = daemon.alerts();
    let sent: Vec<&Scan> = scans.iter().filter(|s| s.failed.is_none()).collect();
    let reported = sent
        .iter()
        .filter(|s| {
            let source = s.source.to_string();
            alerts.iter().any(|a| a["source"] == source.as_str())
        })
        .count();
    (sent.len(), reported)
}

/// Slopes after the warm-up, losses, scans, latency and what the load sent.
fn summary(
    args: &Args,
    daemon: &Daemon<'_>,
    load: &Load,
    first: &Snapshot,
    rows: &[Row],
    scans: &[Scan],
) {
    let states: Vec<&str> = first.states.iter().map(|(s, ..)| s.as_str()).collect();
    println!(
        "\nchurn: scanwatch_state_churn_ratio{{state}} of {} (1 or more ends the state's \
         guarantee); guarantee lost: the states whose scanwatch_flood_guarantee_lost is 1; alert \
         p99: upper bound of the histogram bucket holding the minute's 99th percentile; scans: \
         reported / sent so far",
        states.join("/")
    );
    let Some(last) = rows.last() else {
        println!("no minute completed");
        return;
    };
    let warm: Vec<&Row> = rows.iter().filter(|r| r.minute >= args.warmup).collect();
    let points = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
        warm.iter().map(|r| (r.minute as f64, f(r))).collect()
    };
    let per_min = |points: Vec<(f64, f64)>, unit: &str, precision: usize| {
        slope(&points).map_or_else(
            || "n/a".to_owned(),
            |s| format!("{s:+.precision$}{unit}/min"),
        )
    };
    if warm.len() < 2 {
        println!(
            "slopes: none, fewer than two minutes sampled after the {}-minute warm-up",
            args.warmup
        );
    } else {
        println!(
            "slopes over minutes {}..={} ({} samples, least squares): RSS {}, tracker fill {}, \
             flow fill {}",
            warm[0].minute,
            last.minute,
            warm.len(),
            per_min(points(|r| r.end.rss_kib), " KiB", 1),
            per_min(points(|r| r.end.tracker_fill), "", 5),
            per_min(points(|r| r.end.flow_fill), "", 5),
        );
    }
    println!(
        "RSS {:.1} MiB at the start, {:.1} MiB at the end",
        first.rss_kib / 1024.0,
        last.end.rss_kib / 1024.0
    );
    println!(
        "ring-buffer events lost: {:.0} of {:.0} emitted (scanwatch_events_dropped_total)",
        last.end.events_dropped - first.events_dropped,
        last.end.events_emitted - first.events_emitted
    );
    let (sent, reported) = tally(daemon, scans);
    println!(
        "scans sent / reported: {sent} / {reported} (nmap -sS -p {SCAN_PORTS}, one source each; \
         reported: an alert names the source){}",
        match scans.iter().filter(|s| s.failed.is_some()).count() {
            0 => String::new(),
            n => format!("; {n} nmap runs failed"),
        }
    );
    let alerts = last.end.latency_count - first.latency_count;
    let p99 = quantile_bound(&first.latency_buckets, &last.end.latency_buckets, 0.99);
    if alerts > 0.0 {
        println!(
            "alert latency over the run: p99 {}, mean {:.2} ms, over {alerts:.0} alerts",
            sample::bound(p99),
            (last.end.latency_sum - first.latency_sum) / alerts * 1e3
        );
    }
    let sent = &load.sent;
    let n = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "the load sent: {} echo round trips on {CONNECTIONS} connections ({} reconnects), {} \
         short connections, {} one-packet datagrams, {} two-packet datagrams ({} sources), {} \
         malformed frames",
        n(&sent.round_trips),
        n(&sent.reconnects),
        n(&sent.new_connections),
        n(&sent.single),
        n(&sent.pairs),
        n(&sent.pairs) / 2,
        n(&sent.malformed),
    );
    let parse_errors: Vec<String> = last
        .end
        .parse_errors
        .iter()
        .filter_map(|(reason, now)| {
            let before = first
                .parse_errors
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0.0, |(_, v)| *v);
            (*now > before).then(|| format!("{reason} {:.0}", now - before))
        })
        .collect();
    println!(
        "parse errors counted (scanwatch_parse_errors_total): {}",
        if parse_errors.is_empty() {
            "none".to_owned()
        } else {
            parse_errors.join(", ")
        }
    );
    let scan_sources: Vec<String> = scans.iter().map(|s| s.source.to_string()).collect();
    let mut kinds: BTreeMap<(bool, String), usize> = BTreeMap::new();
    for alert in daemon.alerts() {
        let of_scan = scan_sources.iter().any(|s| alert["source"] == s.as_str());
        let kind = alert["kind"].as_str().unwrap_or("?").to_owned();
        *kinds.entry((of_scan, kind)).or_default() += 1;
    }
    let by_kind = |of_scan: bool| -> String {
        let items: Vec<String> = kinds
            .iter()
            .filter(|((s, _), _)| *s == of_scan)
            .map(|((_, k), n)| format!("{k} {n}"))
            .collect();
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!(
        "alerts naming the scans' sources: {}; naming other sources: {}",
        by_kind(true),
        by_kind(false)
    );
}
