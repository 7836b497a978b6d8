//! `cargo xtask demo`: a newcomer's first look at scanwatch. Builds a throwaway lab of network
//! namespaces, runs the daemon on the target, scans the target from the attacker (nmap -sS when
//! installed, else the built-in SYN scanner) and sweeps a /24 with pings, then prints the
//! alerts and an excerpt of the metrics, and tears everything down again (also on Ctrl-C or a
//! panic: every piece is an RAII guard). Needs root; touches none of the host's interfaces.

use std::{
    net::{Ipv4Addr, TcpListener},
    process::{ExitCode, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use scanwatch_tests::{
    daemon::Daemon,
    lab::Lab,
    metrics::metric_sum,
    netns::in_netns,
    process::{describe, on_path},
    scanner,
};

/// Set by SIGINT/SIGTERM; checked between steps so the guards tear the lab down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Errors out (so the guards clean up) once Ctrl-C was pressed.
fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; tearing the lab down");
    }
    Ok(())
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn main() -> ExitCode {
    install_signal_handlers();
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the demo creates network namespaces and loads an XDP program, so it needs root: \
             run `sudo -E cargo xtask demo`"
        );
    }
    println!("scanwatch demo: a throwaway network, a scanner, and the alerts it raises.");
    println!(
        "Nothing here touches this machine's own interfaces; everything is removed at the end."
    );

    step(
        1,
        "Building the lab: namespaces `target`, `attacker` and `benign`, joined by a bridge.",
    );
    let lab = Lab::new().context("building the lab")?;
    println!(
        "    target   {} ({}) on {}, also owns {} (256 hosts that answer)",
        lab.target_v4(),
        lab.target_v6(),
        lab.target_if,
        lab.sweep_net()
    );
    println!(
        "    attacker {} ({}) on {}",
        lab.attacker_v4(),
        lab.attacker_v6(),
        lab.attacker_if
    );
    println!(
        "    benign   {} ({}) on {}",
        lab.benign_v4(),
        lab.benign_v6(),
        lab.benign_if
    );
    println!(
        "    namespaces: {}, {}, {}, {}",
        lab.target.name(),
        lab.attacker.name(),
        lab.benign.name(),
        lab.switch.name()
    );
    // Something to find: a listening web port on the target (the kernel completes handshakes
    // into the backlog; nobody needs to accept).
    let target = lab.target_v4();
    let _web = in_netns(lab.target.name(), move || TcpListener::bind((target, 80)))??;
    println!("    the target listens on {target}:80");
    check_interrupted()?;

    step(
        2,
        &format!(
            "Starting `scanwatch run -i {}` inside the target namespace (XDP on the veth).",
            lab.target_if
        ),
    );
    let started = Instant::now();
    let mut daemon = Daemon::start(&lab).context("starting scanwatch")?;
    println!(
        "    running (pid {}), healthy after {:.1?}; alerts go to {}; metrics at http://{}/metrics \
         inside the target namespace",
        daemon.pid(),
        started.elapsed(),
        daemon.alert_log().display(),
        daemon.metrics_addr()
    );
    println!("    XDP attached: {}", lab.target_has_xdp()?);
    check_interrupted()?;

    if on_path("nmap") {
        step(
            3,
            "Port scan from the attacker: `nmap -sS -p 1-200 -n -Pn -T4` (a TCP SYN scan).",
        );
        let out = lab
            .attacker
            .command("timeout")
            .args([
                "-k", "2", "30", "nmap", "-sS", "-p", "1-200", "-n", "-Pn", "-T4",
            ])
            .args(["--max-retries", "0"])
            .arg(target.to_string())
            .stdin(Stdio::null())
            .output()
            .context("running nmap")?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            println!("    nmap| {line}");
        }
        if !out.status.success() {
            println!("    nmap ended with {}", describe(out.status));
        }
    } else {
        step(
            3,
            "Port scan from the attacker: nmap is not installed, so the built-in SYN scanner \
             probes ports 1-200.",
        );
        let sent = in_netns(lab.attacker.name(), move || {
            scanner::syn_scan(target, 1..=200, Duration::from_secs(5))
        })??;
        println!("    sent {sent} SYN probes");
    }
    check_interrupted()?;

    step(
        4,
        &format!(
            "Ping sweep from the attacker across {} (built-in ICMP echo sweep, 64 hosts).",
            lab.sweep_net()
        ),
    );
    let hosts: Vec<Ipv4Addr> = (1..=64).map(|n| lab.sweep_host(n)).collect();
    let report = in_netns(lab.attacker.name(), move || {
        scanner::ping_sweep(hosts, Duration::from_secs(1), Duration::from_secs(5))
    })??;
    println!(
        "    sent {} echo requests, {} hosts answered",
        report.sent,
        report.answered.len()
    );
    check_interrupted()?;

    step(
        5,
        "Alerts scanwatch wrote (JSON Lines, one per finding), pretty-printed:",
    );
    let attacker = lab.attacker_v4().to_string();
    let wanted = ["port_scan", "icmp_sweep"];
    daemon.wait_for_alert(Duration::from_secs(2), |_| {
        let alerts = daemon.alerts();
        wanted.iter().all(|k| {
            alerts
                .iter()
                .any(|a| a["kind"] == *k && a["source"] == attacker.as_str())
        })
    });
    let alerts = daemon.alerts();
    if alerts.is_empty() {
        println!("    (none; see the daemon log below)");
        println!("{}", daemon.log());
    }
    for alert in &alerts {
        for line in serde_json::to_string_pretty(alert)?.lines() {
            println!("    {line}");
        }
    }
    check_interrupted()?;

    step(
        6,
        "Metrics excerpt from /metrics (the tracker gauge refreshes every 10 s; waiting for it):",
    );
    let deadline = Instant::now() + Duration::from_secs(11);
    let metrics = loop {
        let text = daemon.metrics()?;
        if metric_sum(&text, "scanwatch_tracked_sources").unwrap_or(0.0) > 0.0
            || Instant::now() >= deadline
        {
            break text;
        }
        check_interrupted()?;
        std::thread::sleep(Duration::from_millis(250));
    };
    for line in metrics.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("scanwatch_packets_total")
                || l.starts_with("scanwatch_detections_total")
                || l.starts_with("scanwatch_tracked_sources"))
            && !l.ends_with(" 0")
    }) {
        println!("    {line}");
    }
    check_interrupted()?;

    step(7, "Stopping scanwatch with SIGTERM and removing the lab.");
    let status = daemon.stop()?;
    println!(
        "    scanwatch exited ({}); XDP still attached: {}",
        describe(status),
        lab.target_has_xdp()?
    );
    drop(daemon);
    drop(lab);
    println!("    lab removed. Done.");
    Ok(())
}
