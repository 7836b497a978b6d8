//! End-to-end, real nmap: a port scan rotated over six /64s of one IPv6 /48, ten ports from
//! each (every /64 far below port_scan's threshold of 20), raises a port_scan naming the /48
//! with the /64s it used, within `ALERT_WITHIN` of the probe that crossed; a web server's IPv6
//! visitors next to it raise nothing. In drop mode the finding blocks nothing unless
//! `block_wide_prefix` is set; then the /64s it names are blocked. `scanwatch replay` of the
//! rotation's capture names the /48 and its /64s too.
//!
//! The attacker holds one address in each of six /64s of `fd5c:a8:K::/48`, a /48 of its own
//! (the lab's bridge is `fd5c:a7:0:K::/64`), and the target routes that /48 back through it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use scanwatch_tests::{
    capture::Recorder,
    daemon::Daemon,
    e2e::{
        METRICS_WITHIN, NMAP_FAST, NMAP_TIMEOUT, assert_no_other_alerts, config_file, connects,
        expect_alert_matching, lab, replay,
    },
    lab::Lab,
    metrics::sample,
    process::{TempDir, tool_or_skip},
    services::Service,
};
use serde_json::Value;

/// The attacker's address in the `i`th /64 of its /48, `fd5c:a8:K:i::2`.
fn rotated(lab: &Lab, i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd5c, 0xa8, u16::from(lab.k()), i, 0, 0, 0, 2)
}

/// `fd5c:a8:K:i::/64`, as the daemon names a first-level prefix.
fn prefix64(lab: &Lab, i: u16) -> String {
    format!(
        "{}/64",
        Ipv6Addr::new(0xfd5c, 0xa8, u16::from(lab.k()), i, 0, 0, 0, 0)
    )
}

/// nmap SYN-scans ten ports of the target's IPv6 address from the attacker's `i`th /64.
fn scan_from(lab: &Lab, i: u16) {
    let source = rotated(lab, i).to_string();
    let target = lab.target_v6().to_string();
    let ports: Vec<String> = (0..10).map(|p| (3000 + 10 * i + p).to_string()).collect();
    let ports = ports.join(",");
    let mut args = vec![
        "-6",
        "-sS",
        "-Pn",
        "-S",
        &source,
        "-e",
        &lab.attacker_if,
        "-p",
        &ports,
    ];
    args.extend(NMAP_FAST);
    args.push(&target);
    lab.attacker.nmap(&args, NMAP_TIMEOUT);
}

/// The alert's `prefixes`, as strings.
fn prefixes(alert: &Value) -> Vec<String> {
    alert["prefixes"]
        .as_array()
        .unwrap_or_else(|| panic!("a wide finding lists its /64s: {alert}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// A lab whose attacker holds an address in each of six /64s of its own /48, routed back by
/// the target.
fn rotation_lab() -> Lab {
    let lab = lab();
    for i in 1..=6 {
        lab.attacker
            .ip(&[
                "addr",
                "add",
                &format!("{}/64", rotated(&lab, i)),
                "dev",
                &lab.attacker_if,
                "nodad",
            ])
            .expect("adding a rotated address");
    }
    lab.target
        .ip(&[
            "-6",
            "route",
            "add",
            &format!("fd5c:a8:{:x}::/48", lab.k()),
            "via",
            &lab.attacker_v6().to_string(),
        ])
        .expect("routing the attacker's /48");
    lab
}

/// In drop mode with `extra` configuration: the /48's finding after three /64s, and the
/// number of sources blocked for detections once the daemon has reported it.
fn drop_mode_wide_finding(test: &str, extra: &str) -> Option<(Value, u64)> {
    if !tool_or_skip("nmap", test) {
        return None;
    }
    let lab = rotation_lab();
    let dir = TempDir::new("wide-drop").unwrap();
    let config = config_file(&dir, &format!("mode = \"drop\"\n{extra}"));
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    for i in 1..=3 {
        scan_from(&lab, i);
    }
    let wide = format!("fd5c:a8:{:x}::/48", lab.k());
    let alert = expect_alert_matching(&daemon, "port_scan of the /48", |a| {
        a["kind"] == "port_scan" && a["source"] == wide.as_str()
    });
    // The blocks are written before the alert; the gauge follows within two folds.
    let blocked = "scanwatch_blocked_sources{map=\"detection\"}";
    let expected = if alert["action"] == "block" { 3 } else { 0 };
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| sample(m, blocked) == expected);
    Some((alert, sample(&metrics, blocked)))
}

#[test]
fn drop_mode_alerts_on_the_48_without_blocking_by_default() {
    let test = "drop_mode_alerts_on_the_48_without_blocking_by_default";
    if let Some((alert, blocked)) = drop_mode_wide_finding(test, "") {
        assert_eq!(alert["action"], "alert", "{alert}");
        assert!(alert.get("block_ttl_seconds").is_none(), "{alert}");
        assert_eq!(blocked, 0, "nothing blocked");
    }
}

#[test]
fn drop_mode_blocks_the_64s_of_a_48_finding_when_asked() {
    let test = "drop_mode_blocks_the_64s_of_a_48_finding_when_asked";
    if let Some((alert, blocked)) = drop_mode_wide_finding(test, "block_wide_prefix = true\n") {
        assert_eq!(alert["action"], "block", "{alert}");
        assert!(alert["block_ttl_seconds"].as_u64().is_some(), "{alert}");
        assert_eq!(blocked, 3, "the three /64s the finding names, not the /48");
    }
}

#[test]
fn nmap_rotating_six_64s_of_a_48_raises_port_scan_for_the_48() {
    let test = "nmap_rotating_six_64s_of_a_48_raises_port_scan_for_the_48";
    if !tool_or_skip("nmap", test) {
        return;
    }
    let lab = rotation_lab();
    let k = lab.k();
    let target = lab.target_v6();
    let web = Service::tcp(&lab.target, IpAddr::V6(target), &[80, 443]).expect("the web server");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    // A web server's IPv6 visitors: many connections, two ports.
    let visits = (0..50)
        .filter(|_| {
            connects(lab.benign.name(), SocketAddr::from((target, 80)))
                & connects(lab.benign.name(), SocketAddr::from((target, 443)))
        })
        .count();
    assert_eq!(visits, 50, "the web server answers over IPv6");

    let wide = format!("fd5c:a8:{k:x}::/48");
    let is_wide_port_scan = |a: &Value| a["kind"] == "port_scan" && a["source"] == wide.as_str();
    // Nine counted ports per /64 (admission defers each one's first probe): two /64s stay
    // below 20, the third crosses.
    for i in 1..=3 {
        scan_from(&lab, i);
    }
    let alert = expect_alert_matching(&daemon, "port_scan of the /48", is_wide_port_scan);
    assert_eq!(alert["direction"], "ingress", "{alert}");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(alert["distinct_ports"].as_u64().unwrap() >= 20, "{alert}");
    let first: Vec<String> = (1..=3).map(|i| prefix64(&lab, i)).collect();
    assert_eq!(
        prefixes(&alert),
        first,
        "the /64s that crossed, oldest first: {alert}"
    );
    // The tool, from the probes its /64s sent.
    assert_eq!(alert["tool"]["name"], "nmap", "{alert}");

    // Three more /64s: the /48 is reported again when its ports double (40), naming the /64s
    // used by then.
    for i in 4..=6 {
        scan_from(&lab, i);
    }
    let again = expect_alert_matching(&daemon, "second port_scan of the /48", |a| {
        is_wide_port_scan(a) && a["prefixes"].as_array().is_some_and(|p| p.len() > 3)
    });
    let used = prefixes(&again);
    let all: Vec<String> = (1..=6).map(|i| prefix64(&lab, i)).collect();
    assert!(
        used.len() >= 5 && all.starts_with(&used),
        "the /64s in order of use: {again}"
    );

    // Nothing else names a source: no /64 crossed on its own, the visitors nothing. (Six
    // sources probing ten ports each of one host is a distributed scan of the target.)
    assert_no_other_alerts(&daemon, |a| {
        is_wide_port_scan(a) || a["kind"] == "distributed_scan"
    });
    drop(daemon);
    web.stop().expect("stopping the web server");
}

#[test]
fn replayed_rotation_names_the_48_and_its_64s() {
    let test = "replayed_rotation_names_the_48_and_its_64s";
    if !tool_or_skip("nmap", test) {
        return;
    }
    let lab = rotation_lab();
    let recorder = Recorder::start(lab.target.name(), &lab.target_if).expect("capturing");
    for i in 1..=3 {
        scan_from(&lab, i);
    }
    let captured = recorder.finish().expect("stopping the capture");
    let dir = TempDir::new(test).expect("a temp dir");
    let pcap = dir.path().join("rotation.pcap");
    captured.write_pcap(&pcap).expect("writing the pcap");
    let report = replay(&pcap, &lab);
    let wide = format!("fd5c:a8:{:x}::/48", lab.k());
    let alert = report["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["kind"] == "port_scan" && a["source"] == wide.as_str())
        .unwrap_or_else(|| panic!("no port_scan of {wide} replayed: {report}"));
    let first: Vec<String> = (1..=3).map(|i| prefix64(&lab, i)).collect();
    assert_eq!(prefixes(alert), first, "{alert}");
}
