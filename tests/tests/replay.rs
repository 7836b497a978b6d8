//! `scanwatch replay` against the live agent: captures recorded on the lab target's interface
//! (both directions, raw `AF_PACKET`) while the real daemon watches it and real nmap scans run
//! from the attacker; each capture replayed through the same programs must give the alerts the
//! live daemon wrote in that run (kind, source, direction, tool), and a benign capture none.
//! masscan, zmap and hping3 runs are replayed the same way (tool attribution).
//!
//! Like `e2e.rs`, a scan test prints a NOTICE and passes when nmap is missing, except under
//! `CI=true`.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
    thread,
    time::Duration,
};

use pcap_file::DataLink;
use scanwatch::runtime::replay::ip_source;
use scanwatch_tests::{
    capture::Recorder,
    daemon::{Daemon, daemon_binary},
    e2e::{NMAP_FAST, NMAP_TIMEOUT, connects, expect_alert, lab, replay},
    lab::Lab,
    netns::in_netns,
    process::{TempDir, tool_or_skip},
    scanner,
    scanners::Scanner,
    services::Service,
};
use serde_json::Value;

/// Late alerts (doublings) the live daemon gets after the expected one, before the capture stops.
const SETTLE: Duration = Duration::from_millis(1500);

/// (kind, source, direction, tool name) of each alert, sorted: what replay must reproduce,
/// re-reports (each doubling of a count) included.
fn alert_keys(alerts: &[Value]) -> Vec<(String, String, String, String)> {
    let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut keys: Vec<_> = alerts
        .iter()
        .map(|a| {
            (
                field(&a["kind"]),
                field(&a["source"]),
                field(&a["direction"]),
                field(&a["tool"]["name"]),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Captures the target's interface while `traffic` runs against the live daemon, waits for
/// `expected` (source, kinds) if any, then replays the capture; returns (live, replayed).
fn live_and_replayed(
    lab: &Lab,
    name: &str,
    expected: Option<(&str, &[&str])>,
    traffic: impl FnOnce(),
) -> (Vec<Value>, Value) {
    let daemon = Daemon::start(lab).expect("starting scanwatch");
    let recorder = Recorder::start(lab.target.name(), &lab.target_if).expect("capturing");
    traffic();
    if let Some((source, kinds)) = expected {
        expect_alert(&daemon, source, kinds, name);
    }
    thread::sleep(SETTLE);
    let dir = TempDir::new(name).expect("a temp dir");
    let captured = recorder.finish().expect("stopping the capture");
    assert!(!captured.is_empty(), "{name}: the capture is empty");
    let live = daemon.alerts();
    let pcap = dir.path().join(format!("{name}.pcap"));
    captured.write_pcap(&pcap).expect("writing the pcap");
    let report = replay(&pcap, lab);
    assert_eq!(
        report["summary"]["packets"].as_u64(),
        Some(captured.len() as u64),
        "{name}: every captured frame replayed"
    );
    // The same frames as pcapng (nanosecond timestamps) replay to the same alerts.
    let pcapng = dir.path().join(format!("{name}.pcapng"));
    captured.write_pcapng(&pcapng).expect("writing the pcapng");
    let ng = replay(&pcapng, lab);
    assert_eq!(
        alert_keys(ng["alerts"].as_array().unwrap_or(&Vec::new())),
        alert_keys(report["alerts"].as_array().unwrap_or(&Vec::new())),
        "{name}: pcap and pcapng of one capture replay differently"
    );
    // Frames the test run cannot take, inserted among the captured ones, are skipped and
    // counted; the alerts stay the same.
    let unrunnable = dir.path().join(format!("{name}-unrunnable.pcap"));
    let inserted = captured
        .write_pcap_with_unrunnable(&unrunnable, lab.target_v4().into())
        .expect("writing the pcap with unrunnable frames");
    let skipping = replay(&unrunnable, lab);
    assert_same_alerts(name, "with unrunnable frames", &skipping, &report);
    assert_eq!(
        skipping["summary"]["skipped"],
        serde_json::json!({"too_short": 2, "too_long": 1, "refused": 0}),
        "{name}: {skipping:#}"
    );
    assert_eq!(
        skipping["summary"]["packets"].as_u64(),
        Some((captured.len() + inserted) as u64),
        "{name}: {skipping:#}"
    );
    // The same packets as Linux cooked (SLL, SLL2: `tcpdump -i any`) and raw IP captures.
    for link in [DataLink::LINUX_SLL, DataLink::LINUX_SLL2, DataLink::RAW] {
        let path = dir.path().join(format!("{name}-{link:?}.pcap"));
        let target = [IpAddr::from(lab.target_v4()), lab.target_v6().into()];
        captured
            .write_pcap_as(&path, link, |f| {
                ip_source(f).is_some_and(|ip| target.contains(&ip))
            })
            .expect("writing the pcap of another link type");
        let relinked = replay(&path, lab);
        assert_same_alerts(name, &format!("as {link:?}"), &relinked, &report);
    }
    (live, report)
}

/// `variant`'s replay raised the alerts `report` raised.
fn assert_same_alerts(name: &str, variant: &str, replayed: &Value, report: &Value) {
    let none = Vec::new();
    assert_eq!(
        alert_keys(replayed["alerts"].as_array().unwrap_or(&none)),
        alert_keys(report["alerts"].as_array().unwrap_or(&none)),
        "{name}: the capture {variant} replays differently: {replayed:#}"
    );
}

/// nmap from the attacker (`scan` flags, then `-n -T4 --max-retries 0 TARGET`) with the live
/// daemon watching; the replayed alerts must match the live ones.
fn nmap_replay_matches_live(
    test: &str,
    scan: &[&str],
    target: impl Fn(&Lab) -> String,
    kinds: &[&str],
) {
    if !tool_or_skip("nmap", test) {
        return;
    }
    let lab = lab();
    let attacker = lab.attacker_v4().to_string();
    let target = target(&lab);
    let mut args = scan.to_vec();
    args.extend(NMAP_FAST);
    args.push(&target);
    let (live, report) = live_and_replayed(&lab, test, Some((&attacker, kinds)), || {
        lab.attacker.nmap(&args, NMAP_TIMEOUT);
    });
    // nmap, or `unknown` with nmap among the candidates: a ping sweep's echoes could be
    // hping3's (docs/detections.md, "Which tool"). Never another tool.
    assert!(
        live.iter().any(|a| a["source"] == attacker.as_str()
            && a["tool"]["candidates"]
                .as_array()
                .is_some_and(|c| c.contains(&"nmap".into()))
            && (a["tool"]["name"] == "nmap" || a["tool"]["name"] == "unknown")),
        "{test}: the live alerts name nmap or list it: {live:#?}"
    );
    assert_replay_matches(test, &live, &report);
}

/// The replayed alerts are not empty and match the live ones; the capture parsed cleanly.
fn assert_replay_matches(test: &str, live: &[Value], report: &Value) {
    let replayed = report["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        !replayed.is_empty(),
        "{test}: replay raised nothing: {report:#}"
    );
    assert_eq!(
        alert_keys(&replayed),
        alert_keys(live),
        "{test}: replayed alerts differ from the live ones\nlive: {live:#?}\nreplayed: {report:#}"
    );
    assert_eq!(
        report["summary"]["parse_errors"],
        serde_json::json!({}),
        "{report:#}"
    );
}

/// `scanner` from the attacker with the live daemon watching; the replayed alerts, tool
/// included, must match the live ones, which name the scanner.
fn scanner_replay_matches_live(test: &str, scanner: Scanner) {
    if !tool_or_skip(scanner.program(), test) {
        return;
    }
    let lab = lab();
    let attacker = lab.attacker_v4().to_string();
    let (live, report) =
        live_and_replayed(&lab, test, Some((&attacker, &[scanner.kind()])), || {
            scanner.run(&lab);
        });
    assert!(
        live.iter()
            .any(|a| a["source"] == attacker.as_str() && a["tool"]["name"] == scanner.program()),
        "{test}: the live alerts name {}: {live:#?}",
        scanner.program()
    );
    assert_replay_matches(test, &live, &report);
}

#[test]
fn replayed_masscan_matches_live_alerts() {
    scanner_replay_matches_live("replayed_masscan_matches_live_alerts", Scanner::Masscan);
}

#[test]
fn replayed_zmap_matches_live_alerts() {
    scanner_replay_matches_live("replayed_zmap_matches_live_alerts", Scanner::Zmap);
}

#[test]
fn replayed_hping3_matches_live_alerts() {
    scanner_replay_matches_live("replayed_hping3_matches_live_alerts", Scanner::Hping3);
}

#[test]
fn replayed_nmap_syn_scan_matches_live_alerts() {
    nmap_replay_matches_live(
        "replayed_nmap_syn_scan_matches_live_alerts",
        &["-sS", "-Pn", "-p", "1-200"],
        |lab| lab.target_v4().to_string(),
        &["port_scan"],
    );
}

#[test]
fn replayed_nmap_udp_scan_matches_live_alerts() {
    nmap_replay_matches_live(
        "replayed_nmap_udp_scan_matches_live_alerts",
        &["-sU", "-Pn", "-p", "1-40"],
        |lab| lab.target_v4().to_string(),
        &["udp_scan"],
    );
}

#[test]
fn replayed_nmap_ping_sweep_matches_live_alerts() {
    nmap_replay_matches_live(
        "replayed_nmap_ping_sweep_matches_live_alerts",
        &["-sn"],
        Lab::sweep_net,
        &["icmp_sweep", "host_sweep"],
    );
}

/// HTTP requests, DNS-style UDP queries and pings from the benign host to the target's
/// services: the live daemon stays quiet, and so does the replay.
#[test]
fn replayed_benign_capture_raises_no_alert() {
    let lab = lab();
    let target = lab.target_v4();
    let web = Service::tcp(&lab.target, target.into(), &[80, 8080]).expect("the web service");
    let dns_addr = SocketAddr::from((target, 53));
    let dns = Service::udp(&lab.target, dns_addr).expect("the DNS-style service");
    let client = lab.benign_v4();
    let (live, report) = live_and_replayed(&lab, "benign", None, || {
        for i in 0..20u16 {
            for port in [80, 8080] {
                let url = format!("http://{target}:{port}/page{i}");
                let ok = in_netns(lab.benign.name(), move || ureq::get(&url).call().is_ok())
                    .expect("entering the benign ns");
                assert!(ok, "HTTP request {i} to port {port}");
            }
        }
        in_netns(lab.benign.name(), move || {
            for i in 0..30u16 {
                let socket = UdpSocket::bind((client, 0)).expect("a client socket");
                socket
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("a timeout");
                let query = scanner::dns_query_message(i, "www.example.test");
                socket.send_to(&query, dns_addr).expect("a query");
                let mut buf = [0u8; 512];
                socket.recv(&mut buf).expect("an answer");
            }
            for _ in 0..5 {
                assert!(
                    scanner::ping(target, Duration::from_secs(1)).expect("ping"),
                    "the target answers pings"
                );
            }
        })
        .expect("entering the benign ns");
        assert!(connects(lab.benign.name(), SocketAddr::from((target, 80))));
    });
    drop((web, dns));
    assert_eq!(
        live,
        Vec::<Value>::new(),
        "benign traffic raised live alerts"
    );
    assert_eq!(
        report["alerts"],
        serde_json::json!([]),
        "benign capture raised alerts on replay: {report:#}"
    );
    assert!(
        report["summary"]["egress_packets"].as_u64() > Some(0),
        "{report:#}"
    );
    assert!(
        report["summary"]["packets_per_second"].as_f64() > Some(0.0),
        "{report:#}"
    );
}

/// Without root or CAP_BPF, replay refuses with the same advice as `run` (no panic, no load).
#[test]
fn replay_without_privileges_says_which_capabilities_are_missing() {
    if !tool_or_skip(
        "setpriv",
        "replay_without_privileges_says_which_capabilities_are_missing",
    ) {
        return;
    }
    let dir = TempDir::new("unprivileged").expect("a temp dir");
    let path = dir.path().join("one.pcap");
    let mut writer = pcap_file::pcap::PcapWriter::new(Vec::new()).expect("a pcap writer");
    let frame = [0u8; 60];
    writer
        .write_packet(&pcap_file::pcap::PcapPacket::new(
            Duration::from_secs(1_700_000_000),
            60,
            &frame,
        ))
        .expect("a record");
    std::fs::write(&path, writer.into_writer()).expect("writing the capture");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(daemon_binary().expect("the scanwatch binary"))
        .arg("replay")
        .arg(&path)
        .output()
        .expect("running setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "replay succeeded unprivileged");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A capture holding the first request of two HTTP connections, one from sqlmap and one from
/// curl: replay samples them through the XDP program as the live agent does and reports one
/// `web_scan`, for sqlmap's client, naming the tool; curl's request raises nothing.
#[test]
fn replayed_web_requests_give_the_agents_web_scan() {
    use scanwatch_tests::packet::{PacketBuilder, tcp_flags};
    let dir = TempDir::new("replay_web").expect("a temp dir");
    let path = dir.path().join("web.pcap");
    let server = std::net::Ipv4Addr::new(198, 51, 100, 1);
    let request = |client: std::net::Ipv4Addr, agent: &str| {
        let text = format!(
            "GET /index.php?id=1 HTTP/1.1\r\nHost: {server}\r\nUser-Agent: {agent}\r\nAccept: */*\r\n\r\n"
        );
        PacketBuilder::new(client, server)
            .src_port(40_000)
            .tcp(80, tcp_flags::PSH | tcp_flags::ACK)
            .payload(text.as_bytes())
            .build()
    };
    let frames = [
        request(
            std::net::Ipv4Addr::new(192, 0, 2, 7),
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
        ),
        request(std::net::Ipv4Addr::new(192, 0, 2, 8), "curl/7.88.1"),
    ];
    let mut writer = pcap_file::pcap::PcapWriter::new(Vec::new()).expect("a pcap writer");
    for (i, frame) in frames.iter().enumerate() {
        writer
            .write_packet(&pcap_file::pcap::PcapPacket::new(
                Duration::from_secs(1_700_000_000 + i as u64),
                frame.len() as u32,
                frame,
            ))
            .expect("a record");
    }
    std::fs::write(&path, writer.into_writer()).expect("writing the capture");
    let out = Command::new(daemon_binary().expect("the scanwatch binary"))
        .arg("replay")
        .arg(&path)
        .arg("--json")
        .output()
        .expect("running scanwatch replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("replay --json prints JSON");
    let alerts = report["alerts"].as_array().expect("an alert list");
    assert_eq!(alerts.len(), 1, "one web_scan expected: {report:#}");
    assert_eq!(alerts[0]["kind"], "web_scan", "{report:#}");
    assert_eq!(alerts[0]["source"], "192.0.2.7", "{report:#}");
    assert_eq!(alerts[0]["web"]["tool"], "sqlmap", "{report:#}");
    assert_eq!(alerts[0]["target"], "198.51.100.1:80", "{report:#}");
    // Times are the capture's, as for every replayed alert.
    assert_eq!(
        alerts[0]["first_seen"], "2023-11-14T22:13:20.000Z",
        "{report:#}"
    );
}
