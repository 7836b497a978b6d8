//! End-to-end tests of web-scanner signatures (T1595.002): real HTTP requests from the
//! lab's attacker to a small server on the target. A request carrying a scanner's user agent,
//! referer, probing path or header is a `web_scan` finding for its source; browsers, curl,
//! wget and a long keep-alive session are not. A signature added to the user's file is in force
//! after SIGHUP.
//!
//! Every default signature is exercised from its own source address (the attacker gets extra
//! addresses), since a source gets one `web_scan` per window.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
    time::Duration,
};

use scanwatch::finding::web::{Signatures, signature::Field};
use scanwatch_tests::{
    daemon::Daemon,
    e2e::{ALERT_WITHIN, config_file, lab},
    lab::Lab,
    metrics::total,
    process::{TempDir, poll_until},
    services::Service,
};
use serde_json::Value;

/// The web port the target serves (a default web port).
const PORT: u16 = 8080;

/// First host number of the attacker's extra addresses (10.K.0.N).
const FIRST_EXTRA: u8 = 100;

/// Runs curl in `ns` from `source` with `args` to `path` on the target; fails the test unless
/// the server answered.
fn curl(lab: &Lab, ns: &str, source: Ipv4Addr, args: &[&str], paths: &[&str]) {
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://{}:{PORT}{p}", lab.target_v4()))
        .collect();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--path-as-is",
        ])
        .args(["-m", "10", "--interface", &source.to_string()])
        .args(args)
        .args(&urls)
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?} {paths:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Gives the attacker `n` extra addresses, 10.K.0.100 onwards.
fn extra_addresses(lab: &Lab, n: u8) -> Vec<Ipv4Addr> {
    (0..n)
        .map(|i| {
            let a = lab.host_v4(FIRST_EXTRA + i);
            lab.attacker
                .ip(&["addr", "add", &format!("{a}/24"), "dev", &lab.attacker_if])
                .expect("adding an attacker address");
            a
        })
        .collect()
}

/// The curl arguments and path that send `value` in `field`.
fn request_with(field: Field, value: &str) -> (Vec<String>, String) {
    match field {
        Field::UserAgent => (vec!["-A".into(), value.into()], "/".into()),
        Field::Referer => (vec!["-e".into(), value.into()], "/".into()),
        Field::Path => (Vec::new(), value.into()),
        Field::Header => (vec!["-H".into(), value.into()], "/".into()),
        Field::RequestLine => (Vec::new(), "/".into()),
    }
}

fn web_scans(daemon: &Daemon<'_>) -> Vec<Value> {
    daemon
        .alerts()
        .into_iter()
        .filter(|a| a["kind"] == "web_scan")
        .collect()
}

fn wait_web_scan(daemon: &Daemon<'_>, source: Ipv4Addr, what: &str) -> Value {
    let source = source.to_string();
    daemon
        .wait_for_alert(ALERT_WITHIN, |a| {
            a["kind"] == "web_scan" && a["source"] == source.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: no web_scan from {source}; alerts {:?}\nlog:\n{}",
                daemon.alerts(),
                daemon.log()
            )
        })
}

#[test]
fn every_default_signature_gives_a_web_scan_and_ordinary_clients_none() {
    let lab = lab();
    let _server = Service::tcp(&lab.target, lab.target_v4().into(), &[PORT]).expect("server");
    let signatures = Signatures::default();
    let list: Vec<_> = signatures
        .iter()
        .filter(|s| s.field != Field::RequestLine)
        .collect();
    let sources = extra_addresses(&lab, u8::try_from(list.len()).unwrap());
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    // Ordinary clients first: browsers, curl, wget, python-requests, and a keep-alive session
    // of 200 requests on one connection.
    let benign = lab.benign_v4();
    let before = total(&daemon.metrics().unwrap(), "scanwatch_web_samples_total");
    for agent in [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "python-requests/2.32.3",
        "Wget/1.21.4",
    ] {
        curl(
            &lab,
            lab.benign.name(),
            benign,
            &["-A", agent],
            &["/", "/index.html"],
        );
    }
    curl(&lab, lab.benign.name(), benign, &[], &["/"]);
    lab.benign
        .exec(&[
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "-T",
            "10",
            "-t",
            "1",
            &format!("http://{}:{PORT}/", lab.target_v4()),
        ])
        .expect("wget");
    let keep_alive: Vec<&str> = std::iter::repeat_n("/", 200).collect();
    curl(&lab, lab.benign.name(), benign, &[], &keep_alive);

    // Each signature from its own source.
    for (sig, source) in list.iter().zip(&sources) {
        let example = sig.example.as_deref().unwrap();
        let (args, path) = request_with(sig.field, example);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&lab, lab.attacker.name(), *source, &args, &[&path]);
    }
    for (sig, source) in list.iter().zip(&sources) {
        let alert = wait_web_scan(&daemon, *source, &sig.name);
        let names = alert["web"]["signatures"].as_array().unwrap();
        assert!(
            names.iter().any(|n| n == sig.name.as_str()),
            "{}: {alert}",
            sig.name
        );
        assert_eq!(alert["technique"], "T1595.002", "{alert}");
        assert_eq!(
            alert["target"],
            format!("{}:{PORT}", lab.target_v4()),
            "{alert}"
        );
        assert!(
            alert["web"]["request_line"]
                .as_str()
                .unwrap()
                .starts_with("GET "),
            "{alert}"
        );
    }

    // The samples of the benign clients were drained before the scanners' (one ring, in
    // order): none of them was a finding, and the keep-alive session was sampled once.
    let alerts = daemon.alerts();
    assert!(
        !alerts
            .iter()
            .any(|a| a["source"] == benign.to_string().as_str()),
        "ordinary clients raised alerts: {alerts:?}"
    );
    // curl keeps one connection for the URLs of one invocation: one sample each.
    let benign_samples = 4 + 1 + 1 + 1;
    let expected = (benign_samples + list.len()) as u64;
    // The kernel counters reach the metrics once a second.
    let sampled = || total(&daemon.metrics().unwrap(), "scanwatch_web_samples_total") - before;
    poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        sampled() >= expected
    });
    assert_eq!(
        sampled(),
        expected,
        "one sample per connection (the keep-alive session's 200 requests: one)"
    );
    let m = daemon.metrics().unwrap();
    assert_eq!(total(&m, "scanwatch_web_samples_dropped_total"), 0);
    assert_eq!(
        web_scans(&daemon).len(),
        list.len(),
        "one web_scan per source"
    );
}

#[test]
fn a_source_gets_one_web_scan_per_window_and_later_matches_are_counted() {
    let lab = lab();
    let _server = Service::tcp(&lab.target, lab.target_v4().into(), &[PORT]).expect("server");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let attacker = lab.attacker_v4();
    for path in ["/", "/a", "/b"] {
        curl(
            &lab,
            lab.attacker.name(),
            attacker,
            &["-A", "sqlmap/1.8.2#stable (https://sqlmap.org)"],
            &[path],
        );
    }
    let alert = wait_web_scan(&daemon, attacker, "sqlmap");
    assert_eq!(alert["web"]["tool"], "sqlmap", "{alert}");
    assert!(
        poll_until(ALERT_WITHIN, Duration::from_millis(25), || {
            total(
                &daemon.metrics().unwrap(),
                "scanwatch_web_scan_repeats_total",
            ) == 2
        }),
        "two later matches counted:\n{}",
        daemon.metrics().unwrap()
    );
    assert_eq!(web_scans(&daemon).len(), 1);
}

#[test]
fn nmap_scripting_engine_gives_a_web_scan() {
    let lab = lab();
    let _server = Service::tcp(&lab.target, lab.target_v4().into(), &[80]).expect("server");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    lab.attacker.nmap(
        &[
            "-Pn",
            "-n",
            "-sT",
            "-p80",
            "--script",
            "http-title",
            &lab.target_v4().to_string(),
        ],
        Duration::from_secs(60),
    );
    let alert = wait_web_scan(&daemon, lab.attacker_v4(), "nmap --script http-title");
    assert_eq!(alert["web"]["tool"], "Nmap Scripting Engine", "{alert}");
}

#[test]
fn a_signature_added_to_the_user_file_matches_after_sighup() {
    let lab = lab();
    let _server = Service::tcp(&lab.target, lab.target_v4().into(), &[PORT]).expect("server");
    let dir = TempDir::new("web-sigs").unwrap();
    let sigs = dir.path().join("web-signatures.toml");
    std::fs::write(&sigs, "# nothing of our own yet\n").unwrap();
    let config = config_file(
        &dir,
        &format!("[web]\nsignatures = \"{}\"\n", sigs.display()),
    );
    let mut daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let sources = extra_addresses(&lab, 3);
    let probe = ["-A", "InHouseProbe/1.0"];

    // Before: not a signature (a known scanner from another source marks the drain).
    curl(&lab, lab.attacker.name(), sources[0], &probe, &["/"]);
    curl(
        &lab,
        lab.attacker.name(),
        sources[1],
        &["-A", "gobuster/3.6"],
        &["/"],
    );
    wait_web_scan(&daemon, sources[1], "marker");
    assert_eq!(web_scans(&daemon).len(), 1, "{:?}", daemon.alerts());

    std::fs::write(
        &sigs,
        "[[signature]]\nname = \"inhouse\"\ntool = \"InHouseProbe\"\nfield = \"user_agent\"\nprefix = \"InHouseProbe/\"\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP).unwrap();
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            daemon.log().contains("configuration reloaded")
        }),
        "reloaded; log:\n{}",
        daemon.log()
    );
    curl(&lab, lab.attacker.name(), sources[2], &probe, &["/"]);
    let alert = wait_web_scan(&daemon, sources[2], "custom signature after SIGHUP");
    assert_eq!(alert["web"]["tool"], "InHouseProbe", "{alert}");
    assert_eq!(alert["web"]["signatures"][0], "inhouse", "{alert}");
}
