//! SIEM-ready alerts from the real daemon in a lab: `--alert-format ecs` writes Elastic Common
//! Schema documents to the alert log, and `--alert-syslog` sends each alert as an RFC 5424
//! message to a UDP collector (a socket this test binds in the target namespace); SIGHUP
//! switches the format.

use std::{net::UdpSocket, time::Duration};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{SCAN_BUDGET, attacker_syn_scan, config_file, expect_alert_matching, lab},
    netns::in_netns,
    process::{TempDir, poll_until},
    scanner,
};
use serde_json::Value;

#[test]
fn ecs_alerts_reach_the_log_and_a_syslog_collector() {
    let lab = lab();
    let collector = in_netns(lab.target.name(), || UdpSocket::bind("127.0.0.1:0"))
        .expect("entering the target ns")
        .expect("binding the collector");
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let syslog = collector.local_addr().unwrap().to_string();
    let daemon = Daemon::start_with(&lab, &["--alert-format", "ecs", "--alert-syslog", &syslog])
        .expect("starting scanwatch");

    attacker_syn_scan(&lab);
    let attacker = lab.attacker_v4().to_string();
    let is_scan = |doc: &Value| {
        doc["source"]["ip"] == attacker.as_str() && doc["event"]["action"] == "port_scan"
    };
    let doc = expect_alert_matching(&daemon, "an ECS port_scan document", is_scan);
    assert_eq!(doc["event"]["kind"], "alert", "{doc}");
    assert_eq!(
        doc["event"]["category"],
        serde_json::json!(["network", "intrusion_detection"]),
        "{doc}"
    );
    assert_eq!(doc["network"]["direction"], "ingress", "{doc}");
    assert_eq!(
        doc["observer"]["ingress"]["interface"]["name"],
        lab.target_if.as_str(),
        "{doc}"
    );
    assert_eq!(
        doc["destination"]["ip"],
        lab.target_v4().to_string(),
        "{doc}"
    );
    assert!(doc["destination"]["port"].as_u64().is_some(), "{doc}");
    assert_eq!(doc["threat"]["technique"]["id"][0], "T1046", "{doc}");
    assert_eq!(doc["threat"]["tactic"]["id"][0], "TA0007", "{doc}");
    assert!(
        doc["scanwatch"]["distinct_ports"].as_u64().unwrap_or(0) >= 20,
        "{doc}"
    );

    // The same alert, over syslog.
    let mut buf = vec![0u8; 65_536];
    let message = loop {
        let n = collector
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no syslog message within 5 s ({e}):\n{}", daemon.log()));
        let message = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 syslog message");
        if message.contains("port_scan") && message.contains(&attacker) {
            break message;
        }
    };
    let header: Vec<&str> = message.splitn(8, ' ').collect();
    assert_eq!(header.len(), 8, "{message}");
    assert_eq!(header[0], "<36>1", "PRI auth.warning, version 1: {message}");
    assert_eq!(header[1], doc["@timestamp"], "{message}");
    assert_eq!(header[3], "scanwatch", "{message}");
    assert!(header[4].parse::<u32>().is_ok(), "PROCID: {message}");
    assert_eq!(header[5], "port_scan", "MSGID: {message}");
    assert_eq!(header[6], "-", "no structured data: {message}");
    let payload: Value = serde_json::from_str(header[7]).expect("a JSON payload");
    assert_eq!(payload, doc, "the syslog payload is the logged document");
}

#[test]
fn sighup_switches_the_alert_format() {
    let lab = lab();
    let dir = TempDir::new("siem-reload").unwrap();
    let config = config_file(&dir, "alert_format = \"jsonl\"\n");
    let mut daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    attacker_syn_scan(&lab);
    let attacker = lab.attacker_v4().to_string();
    expect_alert_matching(&daemon, "a JSON Lines alert", |a| {
        a["source"] == attacker.as_str()
    });

    config_file(&dir, "alert_format = \"ecs\"\n");
    daemon.signal(libc::SIGHUP).unwrap();
    // The reload runs on the event loop: once it is logged, every later finding is written
    // by the new sink. The benign host scans then (the attacker's next finding would need
    // twice its ports).
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            daemon.log().contains("SIGHUP: reloading")
        }),
        "the reload is logged:\n{}",
        daemon.log()
    );
    let target = lab.target_v4();
    in_netns(lab.benign.name(), move || {
        scanner::syn_scan(target, 1..=60, SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();
    let benign = lab.benign_v4().to_string();
    let doc = expect_alert_matching(&daemon, "an ECS alert after SIGHUP", |a| {
        a["source"] == benign.as_str() || a["source"]["ip"] == benign.as_str()
    });
    assert_eq!(doc["event"]["kind"], "alert", "ECS after SIGHUP: {doc}");
    assert_eq!(doc["source"]["ip"], benign.as_str(), "{doc}");
}
