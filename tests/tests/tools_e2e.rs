//! End-to-end tool attribution: the real nmap, masscan, zmap and hping3 scan the lab's target
//! from the attacker namespace (bounded in rate and count, namespace addresses only) and the
//! live daemon's alert names the tool (`"tool": {"name": ...}`). Client SYNs that must match no
//! tool are checked in the kernel tests (`kernel/tools.rs`).
//!
//! Like `e2e.rs`, a test prints a NOTICE and passes when its scanner is missing, except under
//! `CI=true` (.ci/run installs them).

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{NMAP_FAST, NMAP_TIMEOUT, expect_alert, lab},
    process::tool_or_skip,
    scanners::Scanner,
};
use serde_json::Value;

/// Checks that `alert` names `tool` with at least one trait.
fn names_tool(alert: &Value, tool: &str) {
    assert_eq!(alert["tool"]["name"], tool, "{alert}");
    assert!(
        alert["tool"]["confidence"].as_f64().unwrap_or(0.0) > 0.0,
        "{alert}"
    );
    let traits = alert["tool"]["traits"].as_array().expect("a trait list");
    assert!(!traits.is_empty(), "{alert}");
    assert_eq!(
        alert["tool"]["candidates"],
        serde_json::json!([tool]),
        "{alert}"
    );
}

#[test]
fn nmap_syn_scan_is_attributed_to_nmap() {
    if !tool_or_skip("nmap", "nmap_syn_scan_is_attributed_to_nmap") {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let target = lab.target_v4().to_string();
    let mut args = vec!["-sS", "-p", "1-100", "-Pn"];
    args.extend(NMAP_FAST);
    args.push(&target);
    lab.attacker.nmap(&args, NMAP_TIMEOUT);
    let alert = expect_alert(
        &daemon,
        &lab.attacker_v4().to_string(),
        &["port_scan"],
        "nmap -sS",
    );
    names_tool(&alert, "nmap");
    let traits = alert["tool"]["traits"].as_array().unwrap();
    assert!(traits.contains(&"nmap_raw_syn_ipv4".into()), "{alert}");
}

/// Runs `scanner` against the lab with the live daemon watching; its alert must name it.
fn scanner_is_attributed(test: &str, scanner: Scanner) {
    if !tool_or_skip(scanner.program(), test) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    scanner.run(&lab);
    let alert = expect_alert(
        &daemon,
        &lab.attacker_v4().to_string(),
        &[scanner.kind()],
        test,
    );
    names_tool(&alert, scanner.program());
}

#[test]
fn masscan_is_attributed_to_masscan() {
    scanner_is_attributed("masscan_is_attributed_to_masscan", Scanner::Masscan);
}

#[test]
fn zmap_is_attributed_to_zmap() {
    scanner_is_attributed("zmap_is_attributed_to_zmap", Scanner::Zmap);
}

#[test]
fn hping3_syn_scan_is_attributed_to_hping3() {
    scanner_is_attributed("hping3_syn_scan_is_attributed_to_hping3", Scanner::Hping3);
}
