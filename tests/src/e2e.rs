//! Helpers the end-to-end test files (`e2e.rs`, `drop.rs`, `egress_e2e.rs`,
//! `false_alarms.rs`, the distributed and wide ones, …) share: time bounds, a fresh lab, a
//! configuration file, TCP reachability, waiting for an alert with a diagnosis when none comes,
//! and checking that nothing else was reported.

use std::{
    io,
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    daemon::{Daemon, alert_is, daemon_binary},
    lab::Lab,
    metrics,
    netns::in_netns,
    process::{TempDir, tool_or_skip},
    require_root, scanner,
};

/// How soon after a scan ends its alert must be in the log; also how long late alerts get.
pub const ALERT_WITHIN: Duration = Duration::from_secs(2);
/// Upper bound on every scan of our own scanner.
pub const SCAN_BUDGET: Duration = Duration::from_secs(5);
/// Upper bound on one nmap run (it is killed after this).
pub const NMAP_TIMEOUT: Duration = Duration::from_secs(30);
/// nmap flags every lab scan uses: no DNS, fast timing, no retries, bounded per host, so a scan
/// of a closed or filtered range ends in seconds.
pub const NMAP_FAST: [&str; 6] = ["-n", "-T4", "--max-retries", "0", "--host-timeout", "20s"];
/// The daemon folds kernel counters into `/metrics` once a second; this covers two folds.
pub const METRICS_WITHIN: Duration = Duration::from_millis(2500);
/// How long [`connects`] waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes `body` as the daemon's configuration file in `dir`; its path, for `--config`.
pub fn config_file(dir: &TempDir, body: &str) -> String {
    let path = dir.path().join("scanwatch.toml");
    std::fs::write(&path, body).expect("writing the configuration file");
    path.to_string_lossy().into_owned()
}

/// The daemon in `lab`, started with configuration `body` (a file in `dir`).
pub fn daemon_with_config<'lab>(lab: &'lab Lab, dir: &TempDir, body: &str) -> Daemon<'lab> {
    let config = config_file(dir, body);
    Daemon::start_with(lab, &["--config", &config]).expect("starting scanwatch")
}

/// A fresh lab (root required).
pub fn lab() -> Lab {
    require_root();
    Lab::new().expect("building the lab")
}

/// A fresh lab for `test`, which runs nmap; `None` when nmap is missing outside CI
/// ([`tool_or_skip`]), and the test returns.
pub fn nmap_lab(test: &str) -> Option<Lab> {
    tool_or_skip("nmap", test).then(lab)
}

/// A TCP connect from namespace `ns` to `addr`, bounded by `timeout`.
pub fn connect(ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, timeout).map(drop)
    })
    .expect("entering a namespace")
}

/// Whether `ns` opens a TCP connection to `addr` within [`CONNECT_TIMEOUT`].
pub fn connects(ns: &str, addr: SocketAddr) -> bool {
    connect(ns, addr, CONNECT_TIMEOUT).is_ok()
}

/// The attacker SYN-scans ports 1..=60 of the target (a port_scan at the default threshold of
/// 20, well below the next report at 80 distinct ports); fails unless every probe was sent.
pub fn attacker_syn_scan(lab: &Lab) {
    let target = lab.target_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        scanner::syn_scan(target, 1..=60, SCAN_BUDGET)
    })
    .expect("entering the attacker ns")
    .expect("SYN scan");
    assert_eq!(sent, 60, "the scan sent every probe");
}

/// [`attacker_syn_scan`], then the port_scan alert naming the attacker ([`expect_alert`]).
pub fn attacker_port_scan_alert(lab: &Lab, daemon: &Daemon<'_>, what: &str) -> Value {
    attacker_syn_scan(lab);
    expect_alert(daemon, &lab.attacker_v4().to_string(), &["port_scan"], what)
}

/// Waits up to [`ALERT_WITHIN`] for an alert of one of `kinds` naming `source`, or fails
/// showing what was seen.
pub fn expect_alert(daemon: &Daemon<'_>, source: &str, kinds: &[&str], what: &str) -> Value {
    alert_or_explain(
        daemon,
        alert_is(source, kinds),
        &format!("{what}: no {kinds:?} alert naming {source}"),
    )
}

/// Waits up to [`ALERT_WITHIN`] for an alert matching `pred`, or fails showing what was seen;
/// `what` names the expectation.
pub fn expect_alert_matching(
    daemon: &Daemon<'_>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    alert_or_explain(daemon, pred, &format!("{what}: no such alert"))
}

/// The first alert matching `pred` within [`ALERT_WITHIN`]; else panics with `missing`, the
/// alerts, the data-path metrics and the daemon's log.
fn alert_or_explain(daemon: &Daemon<'_>, pred: impl Fn(&Value) -> bool, missing: &str) -> Value {
    let started = Instant::now();
    daemon
        .wait_for_alert(ALERT_WITHIN, pred)
        .unwrap_or_else(|| {
            panic!(
                "{missing} within {:?} of the scan.\nalerts: {:#?}\nmetrics excerpt:\n{}\ndaemon \
             log:\n{}",
                started.elapsed(),
                daemon.alerts(),
                excerpt(&daemon.metrics().unwrap_or_default()),
                daemon.log()
            )
        })
}

/// The sample of sources a distributed finding's alert carries (its `sources`).
pub fn sampled_sources(alert: &Value) -> Vec<&str> {
    alert["sources"]
        .as_array()
        .expect("a sample of sources")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

/// Gives late alerts half a second, then fails unless every alert is `expected`: the check
/// that a test's traffic raised nothing besides what the test is about.
pub fn assert_no_other_alerts(daemon: &Daemon<'_>, expected: impl Fn(&Value) -> bool) {
    thread::sleep(Duration::from_millis(500));
    let others: Vec<_> = daemon
        .alerts()
        .into_iter()
        .filter(|a| !expected(a))
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:#?}");
}

/// The data-path, reply and egress lines of the metrics text, for failure messages.
pub fn excerpt(text: &str) -> String {
    metrics::lines(
        text,
        &[
            "scanwatch_packets_total",
            "scanwatch_detections_total",
            "scanwatch_admission",
            "scanwatch_events",
            "scanwatch_replies",
            "scanwatch_egress",
            "scanwatch_flows",
        ],
    )
}

/// The target's own networks, for `--local`.
fn locals(lab: &Lab) -> Vec<String> {
    vec![
        format!("{}/32", lab.target_v4()),
        lab.sweep_net(),
        format!("{}/128", lab.target_v6()),
    ]
}

/// Runs `scanwatch replay --json` on `capture` (the lab target's networks local); its parsed
/// report.
pub fn replay(capture: &Path, lab: &Lab) -> Value {
    let mut cmd = Command::new(daemon_binary().expect("the scanwatch binary"));
    cmd.arg("replay").arg(capture).arg("--json");
    for net in locals(lab) {
        cmd.args(["--local", &net]);
    }
    let out = cmd.output().expect("running scanwatch replay");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scanwatch replay failed: {stderr}");
    eprintln!("{}", stderr.trim_end());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "replay --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
