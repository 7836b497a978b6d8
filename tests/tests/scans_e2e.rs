//! End-to-end, real nmap: the scans a SYN/UDP/ICMP counter misses — ACK and window scans, custom
//! TCP flag mixes, IP-protocol scans, SCTP INIT and COOKIE ECHO scans — each raise their
//! documented kind within [`ALERT_WITHIN`] of the scan's end, from the real daemon attached to
//! the lab's target (namespaces and veth only; nmap runs inside the attacker namespace).
//!
//! Like `e2e.rs`, a test prints a NOTICE and passes when nmap is missing, except under
//! `CI=true`.
//!
//! [`ALERT_WITHIN`]: scanwatch_tests::e2e::ALERT_WITHIN

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{NMAP_FAST, NMAP_TIMEOUT, expect_alert, lab},
    process::tool_or_skip,
};
use serde_json::Value;

/// Runs nmap with `scan` (its technique flags) against `ports` of the lab's target (port
/// numbers, or protocol numbers for -sO), then expects a `kind` alert naming the attacker.
fn nmap_raises(test: &str, scan: &[&str], ports: &str, kind: &str) -> Option<Value> {
    if !tool_or_skip("nmap", test) {
        return None;
    }
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let target = lab.target_v4().to_string();
    let mut args: Vec<&str> = scan.to_vec();
    args.extend(["-p", ports, "-Pn"]);
    args.extend(NMAP_FAST);
    args.push(&target);
    lab.attacker.nmap(&args, NMAP_TIMEOUT);
    let alert = expect_alert(&daemon, &lab.attacker_v4().to_string(), &[kind], test);
    assert_eq!(alert["technique"], "T1046", "{alert}");
    assert_eq!(alert["direction"], "ingress", "{alert}");
    assert_eq!(alert["interface"], lab.target_if.as_str(), "{alert}");
    Some(alert)
}

/// The alert's probe count of `class`.
fn probes(alert: &Value, class: &str) -> u64 {
    alert["probes"][class].as_u64().unwrap_or(0)
}

#[test]
fn nmap_ack_scan_raises_ack_scan() {
    if let Some(alert) = nmap_raises(
        "nmap_ack_scan_raises_ack_scan",
        &["-sA"],
        "1-100",
        "ack_scan",
    ) {
        assert!(alert["distinct_ports"].as_u64().unwrap() >= 10, "{alert}");
    }
}

#[test]
fn nmap_window_scan_raises_ack_scan() {
    nmap_raises(
        "nmap_window_scan_raises_ack_scan",
        &["-sW"],
        "1-100",
        "ack_scan",
    );
}

#[test]
fn nmap_custom_flag_mixes_raise_stealth_scan() {
    for flags in ["FINPSH", "URG", "SYNFIN"] {
        let test = format!("nmap --scanflags {flags}");
        if let Some(alert) = nmap_raises(
            &test,
            &["-sS", "--scanflags", flags],
            "1-100",
            "stealth_scan",
        ) {
            assert!(probes(&alert, "tcp_odd_flags") > 0, "{test}: {alert}");
        }
    }
}

#[test]
fn nmap_protocol_scan_raises_protocol_scan() {
    if let Some(alert) = nmap_raises(
        "nmap_protocol_scan_raises_protocol_scan",
        &["-sO"],
        "0-255",
        "protocol_scan",
    ) {
        assert!(
            alert["distinct_protocols"].as_u64().unwrap() >= 10,
            "{alert}"
        );
        assert!(probes(&alert, "ip_protocol") >= 10, "{alert}");
    }
}

#[test]
fn nmap_sctp_init_scan_raises_sctp_scan() {
    if let Some(alert) = nmap_raises(
        "nmap_sctp_init_scan_raises_sctp_scan",
        &["-sY"],
        "1-100",
        "sctp_scan",
    ) {
        assert!(probes(&alert, "sctp_init") >= 10, "{alert}");
    }
}

#[test]
fn nmap_sctp_cookie_echo_scan_raises_sctp_scan() {
    if let Some(alert) = nmap_raises(
        "nmap_sctp_cookie_echo_scan_raises_sctp_scan",
        &["-sZ"],
        "1-100",
        "sctp_scan",
    ) {
        assert!(probes(&alert, "sctp_cookie_echo") >= 10, "{alert}");
    }
}
