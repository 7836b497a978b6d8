//! End-to-end: a real nmap scan paced below the short window's threshold is reported over the
//! long window (a short `long_window` in the configuration), while a web client's visits next
//! to it raise nothing.

use std::{net::SocketAddr, thread, time::Duration};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{NMAP_TIMEOUT, config_file, connects, expect_alert, lab},
    process::{TempDir, tool_or_skip},
};

#[test]
fn nmap_scan_slower_than_the_short_window_raises_port_scan_over_the_long_window() {
    let test = "nmap_scan_slower_than_the_short_window_raises_port_scan_over_the_long_window";
    if !tool_or_skip("nmap", test) {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("slow-scan").unwrap();
    // 2 s windows see at most five of the probes sent every 400 ms: never 20 ports; the 60 s
    // long window sees them all.
    let config = config_file(&dir, "window = \"2s\"\nlong_window = \"60s\"\n");
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let target = lab.target_v4();
    let benign = lab.benign.name().to_owned();
    let visitor = thread::spawn(move || {
        // Keep-alive-style repeat visits to one port while the scan runs (refused: no server).
        for _ in 0..40 {
            let _ = connects(&benign, SocketAddr::from((target, 80)));
            thread::sleep(Duration::from_millis(200));
        }
    });
    lab.attacker.nmap(
        &[
            "-sS",
            "-p",
            "1000-1029",
            "-n",
            "-Pn",
            "--scan-delay",
            "400ms",
            "--max-retries",
            "0",
            &target.to_string(),
        ],
        NMAP_TIMEOUT,
    );
    visitor.join().expect("the visitor");
    let alert = expect_alert(
        &daemon,
        &lab.attacker_v4().to_string(),
        &["port_scan"],
        "slow nmap scan",
    );
    assert_eq!(alert["window_seconds"], 60, "over the long window: {alert}");
    let alerts = daemon.alerts();
    assert!(
        alerts
            .iter()
            .all(|a| a["source"] == lab.attacker_v4().to_string().as_str()),
        "only the scanner is reported: {alerts:#?}"
    );
    assert!(
        alerts.iter().all(|a| a["window_seconds"] == 60),
        "nothing over the short window: {alerts:#?}"
    );
}
