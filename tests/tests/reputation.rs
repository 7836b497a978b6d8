//! End-to-end tests of reputation in alerts: the real daemon in a throwaway lab (see
//! `scanwatch_tests::lab`) names the block lists covering a finding's source (`listed_in`) in
//! monitor mode, and in drop mode for lists loaded for enrichment only (`block = false`), which
//! never drop anything themselves. A source no list covers has no `listed_in` key; SIGHUP
//! rebuilds the index from the changed files.
//!
//! Every test builds its own lab and daemon and tears both down on exit, also on failure.

use std::{net::SocketAddr, time::Duration};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        METRICS_WITHIN, SCAN_BUDGET, attacker_port_scan_alert, config_file, connects, expect_alert,
        lab,
    },
    lab::Lab,
    metrics::sample,
    netns::in_netns,
    process::{TempDir, poll_until},
    scanner,
    services::Service,
};
use serde_json::{Value, json};

/// The service the clients use on the target.
const SERVICE_PORT: u16 = 8080;

/// Writes a list file named `file` in `dir` holding `entries` (FireHOL style, with comments);
/// its path as TOML-ready text.
fn list_file(dir: &TempDir, file: &str, entries: &[String]) -> String {
    let path = dir.path().join(file);
    let text = format!("# {file}\n{}\n", entries.join("\n"));
    std::fs::write(&path, text).expect("writing a list");
    path.to_string_lossy().into_owned()
}

/// The benign host SYN-scans ports 1..=60 of the target: a port_scan of its own.
fn benign_port_scan(lab: &Lab) {
    let target = lab.target_v4();
    let sent = in_netns(lab.benign.name(), move || {
        scanner::syn_scan(target, 1..=60, SCAN_BUDGET)
    })
    .expect("entering the benign ns")
    .expect("SYN scan");
    assert_eq!(sent, 60, "the scan sent every probe");
}

fn listed_in(alert: &Value) -> &Value {
    &alert["listed_in"]
}

#[test]
fn monitor_mode_alerts_name_the_lists_covering_the_source_and_only_those() {
    let lab = lab();
    let dir = TempDir::new("reputation-monitor").unwrap();
    let attacker = lab.attacker_v4();
    let level1 = list_file(
        &dir,
        "firehol_level1.netset",
        &[format!("{attacker}/32"), "192.0.2.0/24".into()],
    );
    let custom = list_file(
        &dir,
        "custom.txt",
        // The v4-mapped form names the same IPv4 address.
        &[format!("::ffff:{attacker} ; ours")],
    );
    let unrelated = list_file(&dir, "unrelated.netset", &["198.51.100.0/24".into()]);
    let config = config_file(
        &dir,
        &format!(
            "block_lists = [\"{level1}\", {{ path = \"{custom}\", name = \"our-watchlist\" }},\n\
             \"{unrelated}\"]\n"
        ),
    );
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");

    let alert = attacker_port_scan_alert(&lab, &daemon, "monitor mode, listed attacker");
    assert_eq!(
        alert["action"], "alert",
        "monitor mode blocks nothing: {alert}"
    );
    assert_eq!(
        listed_in(&alert),
        &json!(["firehol_level1", "our-watchlist"]),
        "the alert names both covering lists, by file stem and by configured name: {alert}"
    );

    benign_port_scan(&lab);
    let clean = expect_alert(
        &daemon,
        &lab.benign_v4().to_string(),
        &["port_scan"],
        "monitor mode, unlisted source",
    );
    assert!(
        clean.get("listed_in").is_none(),
        "a source no list covers has no listed_in key: {clean}"
    );
}

#[test]
fn enrichment_only_lists_in_drop_mode_name_the_source_but_never_drop_it() {
    let lab = lab();
    let dir = TempDir::new("reputation-drop").unwrap();
    let watch = list_file(
        &dir,
        "spamhaus_drop.txt",
        &[format!("{}/32", lab.attacker_v4())],
    );
    let config = config_file(
        &dir,
        &format!(
            "mode = \"drop\"\nblock_lists = [{{ path = \"{watch}\", name = \"watch\", block = \
             false }}]\n"
        ),
    );
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let addr = SocketAddr::from((lab.target_v4(), SERVICE_PORT));
    let _service = Service::tcp(&lab.target, addr.ip(), &[SERVICE_PORT]).expect("the service");

    assert!(
        connects(lab.attacker.name(), addr),
        "a source on an enrichment-only list is served until it scans\ndaemon log:\n{}",
        daemon.log()
    );
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_dropped_packets_total{reason=\"block_list\"}") == 0
    });
    assert_eq!(
        sample(
            &metrics,
            "scanwatch_blocks_added_total{reason=\"block_list\"}"
        ),
        0,
        "an enrichment-only list adds nothing to the block trie"
    );
    assert_eq!(
        sample(
            &metrics,
            "scanwatch_dropped_packets_total{reason=\"block_list\"}"
        ),
        0,
        "nothing was dropped for the list"
    );

    let alert = attacker_port_scan_alert(&lab, &daemon, "drop mode, enrichment-only list");
    assert_eq!(
        alert["action"], "block",
        "its finding blocks it, as before: {alert}"
    );
    assert_eq!(listed_in(&alert), &json!(["watch"]), "{alert}");
    assert!(
        !connects(lab.attacker.name(), addr),
        "blocked by its finding after the scan"
    );
}

#[test]
fn sighup_rebuilds_the_index_from_changed_lists() {
    let lab = lab();
    let dir = TempDir::new("reputation-reload").unwrap();
    let list = list_file(&dir, "watch.netset", &["192.0.2.0/24".into()]);
    let config = config_file(&dir, &format!("block_lists = [\"{list}\"]\n"));
    let mut daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");

    let before = attacker_port_scan_alert(&lab, &daemon, "before the list names the attacker");
    assert!(before.get("listed_in").is_none(), "{before}");

    list_file(
        &dir,
        "watch.netset",
        &["192.0.2.0/24".into(), format!("{}/32", lab.benign_v4())],
    );
    daemon.signal(libc::SIGHUP).unwrap();
    let indexed = |d: &Daemon<'_>| d.log().matches("reputation: 1 lists indexed").count();
    assert!(
        poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
            indexed(&daemon) >= 2
        }),
        "the index is rebuilt after SIGHUP:\n{}",
        daemon.log()
    );
    benign_port_scan(&lab);
    let after = expect_alert(
        &daemon,
        &lab.benign_v4().to_string(),
        &["port_scan"],
        "after the reload",
    );
    assert_eq!(listed_in(&after), &json!(["watch"]), "{after}");
}
