//! End-to-end tests of drop mode: the real daemon in a throwaway lab (see
//! `scanwatch_tests::lab`) blocks a detected scanner for its TTL while a benign client's
//! requests keep succeeding, spares `never_block` sources, enforces block-list files from the
//! first packet, obeys the control CLI (`block`, `unblock`, `list`, `status`), keeps its blocks
//! across a restart (and drops them with `--reset-state`), and blocks nothing in a dry run.
//!
//! Every test builds its own lab and daemon and tears both down on exit, also on failure. Tests
//! of the control CLI and of restarts start the daemon with `nsenter --net`
//! ([`Daemon::start_shared`]), so its pinned maps live in this host's bpffs where the CLI and
//! the next daemon find them; the guard removes them.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::{Daemon, alert_is},
    e2e::{
        ALERT_WITHIN, CONNECT_TIMEOUT, METRICS_WITHIN, SCAN_BUDGET, attacker_port_scan_alert,
        attacker_syn_scan, config_file, connect, connects, expect_alert, lab,
    },
    http,
    lab::Lab,
    metrics::{self, sample, total},
    netns::{in_netns, spawn_in_netns},
    process::{TempDir, describe, poll_until},
    scanner,
    services::{Service, service_body},
};
use serde_json::Value;

/// The service the clients use on the target.
const SERVICE_PORT: u16 = 8080;
/// The detection block TTL of the TTL test.
const BLOCK_TTL: Duration = Duration::from_secs(3);
/// How soon a control-CLI change must be enforced.
const CLI_WITHIN: Duration = Duration::from_secs(1);

/// The HTTP-style service on the target's port [`SERVICE_PORT`].
fn service(lab: &Lab) -> (Service, SocketAddr) {
    let addr = SocketAddr::from((lab.target_v4(), SERVICE_PORT));
    let service = Service::tcp(&lab.target, addr.ip(), &[SERVICE_PORT]).expect("the service");
    (service, addr)
}

/// Asserts that a connect from `ns` to `addr` times out: its SYNs vanish (a refused or
/// unreachable connect would mean something else answered).
fn assert_connect_times_out(ns: &str, addr: SocketAddr, what: &str) {
    match connect(ns, addr, CONNECT_TIMEOUT) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("{what}: a connect to {addr} should time out (dropped), got {other:?}"),
    }
}

/// Waits until the daemon counts a finding not blocked for `reason`, and checks that nothing was
/// dropped; returns the metrics text.
fn refused_and_nothing_dropped(daemon: &Daemon, reason: &str) -> String {
    let series = format!("scanwatch_blocks_refused_total{{reason=\"{reason}\"}}");
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, &series) >= 1 && sample(m, "scanwatch_verdicts_total{verdict=\"pass\"}") > 0
    });
    assert!(
        sample(&metrics, &series) >= 1,
        "the {reason} refusal is counted:\n{}",
        enforcement(&metrics)
    );
    assert_eq!(
        total(&metrics, "scanwatch_dropped_packets_total"),
        0,
        "nothing was dropped ({reason}):\n{}",
        enforcement(&metrics)
    );
    metrics
}

/// The enforcement lines of the metrics text, for failure messages.
fn enforcement(text: &str) -> String {
    metrics::lines(
        text,
        &["scanwatch_dropped", "scanwatch_block", "scanwatch_verdicts"],
    )
}

/// `scanwatch list --json` (with `--all` when `all`), parsed.
fn list(daemon: &Daemon<'_>, all: bool) -> Vec<Value> {
    let mut args = vec!["list", "--json"];
    if all {
        args.push("--all");
    }
    let out = daemon.ctl_ok(&args).expect("scanwatch list");
    serde_json::from_str::<Vec<Value>>(&out)
        .unwrap_or_else(|e| panic!("`scanwatch list --json` printed no JSON array ({e}): {out}"))
}

/// The `list --json` row of `source`, if any.
fn row<'a>(rows: &'a [Value], source: &str) -> Option<&'a Value> {
    rows.iter().find(|r| r["source"] == source)
}

/// What a benign client saw.
#[derive(Debug, Default)]
struct ClientReport {
    ok: usize,
    failed: Vec<String>,
}

/// A benign HTTP client in its own namespace: one request after another (10 ms apart) until
/// stopped, each bounded to 2 s, the whole run to 30 s.
struct Client {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<anyhow::Result<ClientReport>>>,
}

impl Client {
    fn start(ns: &str, addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            spawn_in_netns(ns, move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let want = service_body(addr.port());
                let mut report = ClientReport::default();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match http::get(addr, "/", Duration::from_secs(2)) {
                        Ok((200, body)) if body == want => report.ok += 1,
                        Ok((status, body)) => report.failed.push(format!("{status}: {body:?}")),
                        Err(e) => report.failed.push(format!("{e:#}")),
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                report
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> ClientReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("the client runs until finished")
            .join()
            .expect("the client thread")
            .expect("entering the client's namespace")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn detected_scanner_is_dropped_for_its_ttl_while_a_benign_client_is_served() {
    let lab = lab();
    let dir = TempDir::new("drop-ttl").unwrap();
    let config = config_file(&dir, "mode = \"drop\"\nblock_ttl = \"3s\"\n");
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let (service, addr) = service(&lab);
    let attacker = lab.attacker.name();
    // Twice: the first SYN of a source only primes the admission filter, the second is
    // tracked. With the service port already counted, the scanner's connects after its block
    // add no distinct port, so they cannot raise a new finding (and a new block) whatever
    // count the scan reached before its block landed.
    for _ in 0..2 {
        assert!(connects(attacker, addr), "reachable before the scan");
    }
    let client = Client::start(lab.benign.name(), addr);

    let scan_started = Instant::now();
    let alert = attacker_port_scan_alert(&lab, &daemon, "drop");
    let alert_seen = Instant::now();
    assert_eq!(alert["action"], "block", "{alert}");
    assert_eq!(
        alert["block_ttl_seconds"],
        BLOCK_TTL.as_secs(),
        "the first block lasts block_ttl: {alert}"
    );

    // Later probes and a connect from the scanner vanish.
    let target = lab.target_v4();
    let later = in_netns(attacker, move || {
        scanner::syn_scan(target, 1000..=1019, SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();
    assert_eq!(later, 20);
    assert_connect_times_out(attacker, addr, "the blocked scanner");

    // Once the TTL has run out the scanner reaches the service again: the kernel checks
    // expiry itself, so within the TTL of the block, plus one second (a sweep interval, were
    // expiry left to the daemon) and slack.
    let limit = BLOCK_TTL + Duration::from_millis(1500);
    let mut reconnected = None;
    while alert_seen.elapsed() < limit + Duration::from_secs(1) {
        let attempt = Instant::now();
        if connect(attacker, addr, Duration::from_millis(200)).is_ok() {
            reconnected = Some(attempt);
            break;
        }
        thread::sleep(Duration::from_millis(200).saturating_sub(attempt.elapsed()));
    }
    let reconnected = reconnected.unwrap_or_else(|| {
        panic!(
            "the scanner cannot reach the service {:?} after its block (TTL {BLOCK_TTL:?}); \
             metrics:\n{}",
            alert_seen.elapsed(),
            enforcement(&daemon.metrics().unwrap_or_default())
        )
    });
    assert!(
        reconnected.duration_since(alert_seen) <= limit,
        "the block outlived its TTL: the scanner got through {:?} after the alert (TTL \
         {BLOCK_TTL:?}, allowed {limit:?})",
        reconnected.duration_since(alert_seen)
    );
    // The block began after the scan did, so no connect gets through before TTL has passed.
    assert!(
        reconnected.duration_since(scan_started) >= BLOCK_TTL,
        "the block ended early: the scanner got through {:?} after the scan began (TTL \
         {BLOCK_TTL:?})",
        reconnected.duration_since(scan_started)
    );

    let report = client.finish();
    assert!(
        report.failed.is_empty(),
        "the benign client's requests failed while the scanner was blocked: {:?} (and {} \
         succeeded)",
        report.failed,
        report.ok
    );
    assert!(
        report.ok >= 50,
        "the benign client kept making requests: {report:?}"
    );
    assert!(service.stop().unwrap() >= report.ok);
    assert!(
        daemon
            .alerts()
            .iter()
            .all(|a| a["source"] != lab.benign_v4().to_string().as_str()),
        "the benign client was reported: {:#?}",
        daemon.alerts()
    );

    // 20 later probes plus the connect's SYNs were dropped; the sweep removed the block.
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_dropped_packets_total{reason=\"detection\"}") >= 21
            && sample(m, "scanwatch_blocks_expired_total") >= 1
            && sample(m, "scanwatch_blocked_sources{map=\"detection\"}") == 0
    });
    assert!(
        sample(
            &metrics,
            "scanwatch_dropped_packets_total{reason=\"detection\"}"
        ) >= 21,
        "the scanner's later probes are counted as dropped:\n{}",
        enforcement(&metrics)
    );
    assert!(
        sample(&metrics, "scanwatch_blocks_expired_total") >= 1
            && sample(&metrics, "scanwatch_blocked_sources{map=\"detection\"}") == 0,
        "the expired block is swept:\n{}",
        enforcement(&metrics)
    );
}

#[test]
fn second_finding_from_a_blocked_source_adds_no_block() {
    let lab = lab();
    let mut daemon = Daemon::start_with(&lab, &["--mode", "drop"]).expect("starting scanwatch");
    let source = lab.attacker_v4().to_string();
    // 60 ports: reported at the threshold (20) and again at twice it (40). A fast scanner
    // outruns the daemon, so both findings can be queued before the first block lands; a
    // paused daemon makes that certain.
    daemon.signal(libc::SIGSTOP).unwrap();
    let scanned = std::panic::catch_unwind(|| attacker_syn_scan(&lab));
    daemon.signal(libc::SIGCONT).unwrap();
    if let Err(panic) = scanned {
        std::panic::resume_unwind(panic);
    }
    expect_alert(&daemon, &source, &["port_scan"], "first finding");
    let both = daemon.wait_for_alert(ALERT_WITHIN, |a| {
        alert_is(&source, &["port_scan"])(a) && a["distinct_ports"].as_u64().unwrap_or(0) >= 40
    });
    let alerts = daemon.alerts();
    assert!(
        both.is_some(),
        "the scan is reported again at 40 ports: {alerts:#?}"
    );
    assert!(
        alerts.iter().all(|a| a["action"] == "block"),
        "every finding of a blocked source says it is blocked: {alerts:#?}"
    );
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_blocked_sources{map=\"detection\"}") >= 1
    });
    assert_eq!(
        sample(&metrics, "scanwatch_blocked_sources{map=\"detection\"}"),
        1,
        "{}",
        enforcement(&metrics)
    );
    assert_eq!(
        sample(
            &metrics,
            "scanwatch_blocks_added_total{reason=\"detection\"}"
        ),
        1,
        "one source blocked once is one block added, however many findings it raised ({} \
         alerts):\n{}",
        alerts.len(),
        enforcement(&metrics)
    );
}

#[test]
fn never_block_scanner_is_alerted_but_not_dropped() {
    let lab = lab();
    let dir = TempDir::new("drop-never").unwrap();
    let config = config_file(
        &dir,
        &format!(
            "mode = \"drop\"\nnever_block = [\"192.0.2.0/24\", \"{}/32\"]\n",
            lab.attacker_v4()
        ),
    );
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);

    let alert = attacker_port_scan_alert(&lab, &daemon, "never_block");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["not_blocked"], "never_block", "{alert}");
    assert!(alert.get("block_ttl_seconds").is_none(), "{alert}");
    assert!(
        connects(lab.attacker.name(), addr),
        "a never_block source is never dropped"
    );

    let metrics = refused_and_nothing_dropped(&daemon, "never_block");
    assert_eq!(
        sample(&metrics, "scanwatch_blocked_sources{map=\"detection\"}"),
        0
    );
}

#[test]
fn block_list_drops_listed_sources_from_the_first_packet_despite_a_bad_line() {
    let lab = lab();
    let dir = TempDir::new("drop-list").unwrap();
    let list_path = dir.path().join("firehol.netset");
    // FireHOL / Spamhaus DROP style: comments, a bad line before the lab's entries, and an
    // IPv6 entry. Five good entries.
    let list_text = format!(
        "# scanwatch e2e block list\n\
         ; Spamhaus-style comment\n\
         192.0.2.0/24 ; SBL000001\n\
         this-is-not-a-cidr\n\
         300.1.2.3/24\n\
         {attacker}/32\n\
         {attacker_v6}/128\n\
         198.51.100.7\n\
         2001:db8:bad::/48  # documentation prefix\n",
        attacker = lab.attacker_v4(),
        attacker_v6 = lab.attacker_v6(),
    );
    std::fs::write(&list_path, list_text).unwrap();
    let config = config_file(
        &dir,
        &format!(
            "mode = \"drop\"\nblock_lists = [\"{}\"]\n",
            list_path.display()
        ),
    );
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);
    let addr_v6 = SocketAddr::new(IpAddr::V6(lab.target_v6()), SERVICE_PORT);
    let _service_v6 = Service::tcp(&lab.target, addr_v6.ip(), &[SERVICE_PORT]).unwrap();

    // The attacker's very first connects since the daemon started: never a scan, still dropped.
    assert_connect_times_out(lab.attacker.name(), addr, "a listed IPv4 source");
    assert_connect_times_out(lab.attacker.name(), addr_v6, "a listed IPv6 source");
    assert!(
        connects(lab.benign.name(), addr),
        "a source outside the list is served"
    );
    assert!(
        connects(lab.benign.name(), addr_v6),
        "an IPv6 source outside the list is served"
    );

    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_dropped_packets_total{reason=\"block_list\"}") >= 2
    });
    assert!(
        sample(
            &metrics,
            "scanwatch_dropped_packets_total{reason=\"block_list\"}"
        ) >= 2,
        "both connects were dropped by the list:\n{}",
        enforcement(&metrics)
    );
    assert_eq!(
        sample(
            &metrics,
            "scanwatch_blocks_added_total{reason=\"block_list\"}"
        ),
        5,
        "every good line was loaded, the bad ones skipped:\n{}\ndaemon log:\n{}",
        enforcement(&metrics),
        daemon.log()
    );
    assert_eq!(
        sample(&metrics, "scanwatch_blocked_sources{map=\"cidr\"}"),
        5,
        "{}",
        enforcement(&metrics)
    );
    let log = daemon.log();
    for bad in ["this-is-not-a-cidr", "300.1.2.3/24"] {
        assert!(
            log.lines()
                .any(|l| l.contains(bad) && l.contains("skipped")),
            "the bad line `{bad}` is reported with the file, not fatal:\n{log}"
        );
    }
    assert!(
        daemon.alerts().is_empty(),
        "a dropped source raises no finding: {:#?}",
        daemon.alerts()
    );
}

#[test]
fn manual_block_and_unblock_take_effect_within_a_second() {
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &["--mode", "drop"]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);
    let attacker = lab.attacker.name();
    let source = format!("{}/32", lab.attacker_v4());
    assert!(connects(attacker, addr), "reachable before the block");

    let out = daemon
        .ctl_ok(&[
            "block",
            &lab.attacker_v4().to_string(),
            "--ttl",
            "30s",
            "--reason",
            "e2e manual",
        ])
        .expect("scanwatch block");
    assert!(
        out.contains(&source),
        "`block` names what it blocked: {out}"
    );
    let blocked = Instant::now();
    let short = Duration::from_millis(200);
    assert!(
        poll_until(CLI_WITHIN, Duration::ZERO, || connect(
            attacker, addr, short
        )
        .is_err()),
        "the manual block is not enforced {:?} after `scanwatch block` returned",
        blocked.elapsed()
    );
    assert!(
        connects(lab.benign.name(), addr),
        "the benign host is not blocked"
    );

    let rows = list(&daemon, false);
    let entry = row(&rows, &source)
        .unwrap_or_else(|| panic!("`list --json` shows no block of {source}: {rows:#?}"));
    assert_eq!(entry["reason"], "manual", "{entry}");
    assert_eq!(entry["note"], "e2e manual", "{entry}");
    assert_ne!(entry["expires"], "never", "a --ttl block expires: {entry}");
    let first = entry["packets_dropped"].as_u64().unwrap_or(0);
    assert!(first >= 1, "the refused connect was counted: {entry}");
    assert_connect_times_out(attacker, addr, "the manually blocked source");
    let rows = list(&daemon, false);
    let then = row(&rows, &source).map_or(0, |r| r["packets_dropped"].as_u64().unwrap_or(0));
    assert!(
        then > first,
        "packets_dropped rises with each dropped SYN: {first} then {then}"
    );

    let status: Value = serde_json::from_str(&daemon.ctl_ok(&["status", "--json"]).unwrap())
        .expect("`status --json` prints JSON");
    assert_eq!(status["mode"], "drop", "{status}");
    assert_eq!(status["dry_run"], false, "{status}");
    assert!(status["blocks"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(status["pid"], daemon.pid(), "{status}");
    let text = daemon.ctl_ok(&["status"]).unwrap();
    assert!(text.contains("drop"), "`status` shows the mode: {text}");

    let out = daemon
        .ctl_ok(&["unblock", &lab.attacker_v4().to_string()])
        .expect("scanwatch unblock");
    assert!(
        out.contains(&source),
        "`unblock` names what it removed: {out}"
    );
    let unblocked = Instant::now();
    assert!(
        poll_until(CLI_WITHIN, Duration::ZERO, || connect(
            attacker, addr, short
        )
        .is_ok()),
        "the source is still dropped {:?} after `scanwatch unblock` returned",
        unblocked.elapsed()
    );
    let rows = list(&daemon, true);
    assert!(
        row(&rows, &source).is_none(),
        "`list` still shows the block: {rows:#?}"
    );
}

#[test]
fn cli_refuses_to_block_the_monitored_hosts_own_address() {
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &["--mode", "drop"]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);
    let out = daemon
        .ctl(&["block", &lab.target_v4().to_string()])
        .expect("running scanwatch block");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "blocking the host's own address must fail ({}): {stderr}",
        describe(out.status)
    );
    assert!(
        stderr.contains("refusing") && stderr.contains(&lab.target_v4().to_string()),
        "the error names the address and why: {stderr}"
    );
    assert!(
        list(&daemon, true).is_empty(),
        "nothing was stored in the block map"
    );
    assert!(connects(lab.attacker.name(), addr));
}

#[test]
fn blocks_survive_a_daemon_restart_and_reset_state_clears_them() {
    let lab = lab();
    let dir = TempDir::new("drop-restart").unwrap();
    let config = config_file(&dir, "mode = \"drop\"\nblock_ttl = \"60s\"\n");
    let mut daemon =
        Daemon::start_shared(&lab, &["--config", &config]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);
    let attacker = lab.attacker.name();
    let source = format!("{}/32", lab.attacker_v4());

    let alert = attacker_port_scan_alert(&lab, &daemon, "restart");
    assert_eq!(alert["action"], "block", "{alert}");
    assert_connect_times_out(attacker, addr, "the blocked scanner");
    assert!(
        daemon.pin_dir().is_dir(),
        "the block maps are pinned in {}",
        daemon.pin_dir().display()
    );

    daemon
        .restart(&["--config", &config])
        .expect("restarting scanwatch");
    assert_connect_times_out(attacker, addr, "the scanner after a restart");
    assert!(
        connects(lab.benign.name(), addr),
        "the benign host is served after the restart"
    );
    let rows = list(&daemon, false);
    let entry = row(&rows, &source)
        .unwrap_or_else(|| panic!("the restarted agent lists no block of {source}: {rows:#?}"));
    assert_eq!(entry["reason"], "detection", "{entry}");
    assert_eq!(entry["note"], "port_scan", "{entry}");
    assert!(
        entry["packets_dropped"].as_u64().unwrap_or(0) >= 1,
        "{entry}"
    );

    daemon
        .restart(&["--config", &config, "--reset-state"])
        .expect("restarting scanwatch with --reset-state");
    assert!(
        connects(attacker, addr),
        "--reset-state starts without blocks"
    );
    let rows = list(&daemon, true);
    assert!(rows.is_empty(), "--reset-state left blocks: {rows:#?}");
}

#[test]
fn dry_run_reports_would_block_and_drops_nothing() {
    let lab = lab();
    let daemon =
        Daemon::start_with(&lab, &["--mode", "drop", "--dry-run"]).expect("starting scanwatch");
    let (_service, addr) = service(&lab);

    let alert = attacker_port_scan_alert(&lab, &daemon, "dry run");
    assert_eq!(alert["action"], "would_block", "{alert}");
    assert!(
        alert["block_ttl_seconds"].as_u64().unwrap_or(0) > 0,
        "the alert says how long the block would last: {alert}"
    );
    assert!(
        connects(lab.attacker.name(), addr),
        "a dry run never drops the scanner"
    );
    let metrics = refused_and_nothing_dropped(&daemon, "dry_run");
    assert_eq!(
        total(&metrics, "scanwatch_blocks_added_total"),
        0,
        "a dry run adds no block:\n{}",
        enforcement(&metrics)
    );
}
