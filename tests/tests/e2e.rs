//! End-to-end tests: the real daemon, attached with XDP to a veth in a throwaway lab of network
//! namespaces (see `scanwatch_tests::lab`), scanned by the test crate's own scanner and by real
//! nmap, next to benign clients, in monitor and drop mode, scraped by a real Prometheus,
//! stopped by signals, fed bad input.
//!
//! Every test builds its own lab and daemon and tears both down on exit, also on failure.
//! Tests that need nmap, prometheus or promtool print a NOTICE and pass when the tool is missing,
//! except under `CI=true`, where they fail (CI installs the tools).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::{Daemon, alert_is, daemon_binary},
    e2e::{
        ALERT_WITHIN, NMAP_FAST, NMAP_TIMEOUT, SCAN_BUDGET, attacker_port_scan_alert, connects,
        expect_alert, lab,
    },
    http,
    lab::Lab,
    metrics::{self, metric_sum},
    netns::{Netns, in_netns, spawn_in_netns},
    process::{TempDir, describe, tool_or_skip},
    prometheus::{Prometheus, values},
    require_root,
    scanner::{self, XMAS, tcp_flags},
    services::Service,
};
use serde_json::Value;

/// The daemon, with default settings, watching the lab's target.
fn daemon(lab: &Lab) -> Daemon<'_> {
    Daemon::start(lab).expect("starting scanwatch")
}

/// Checks the fields every alert of this lab carries.
fn assert_alert_shape(lab: &Lab, alert: &Value, probe_class: &str) {
    assert_eq!(alert["interface"], lab.target_if.as_str(), "{alert}");
    assert_eq!(alert["direction"], "ingress", "{alert}");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(
        alert["probes"][probe_class].as_u64().unwrap_or(0) > 0,
        "the alert should count {probe_class} probes: {alert}"
    );
    for key in ["timestamp", "first_seen", "last_seen", "technique"] {
        assert!(alert[key].is_string(), "{key} missing: {alert}");
    }
    // The kernel's times (jiffies through the agent's calibration) read as wall time now.
    let time = |key: &str| {
        humantime::parse_rfc3339(alert[key].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{key}: {e}: {alert}"))
    };
    let (first, last, stamp) = (time("first_seen"), time("last_seen"), time("timestamp"));
    let age = std::time::SystemTime::now()
        .duration_since(first)
        .unwrap_or_else(|e| panic!("first_seen {:?} in the future: {alert}", e.duration()));
    assert!(
        age < std::time::Duration::from_secs(120),
        "first_seen {age:?} ago: {alert}"
    );
    assert!(
        first <= last && last <= stamp,
        "times out of order: {alert}"
    );
}

// ---------------------------------------------------------------------------------------------
// Our own scanner
// ---------------------------------------------------------------------------------------------

/// Runs `scan` inside the attacker namespace, then expects an alert of `kind` naming the
/// attacker, counting `probe_class` probes, within [`ALERT_WITHIN`].
fn scan_raises(kind: &str, probe_class: &str, scan: impl FnOnce(&Lab) -> usize + Send) {
    let lab = lab();
    let daemon = daemon(&lab);
    let sent = in_netns(lab.attacker.name(), || scan(&lab)).expect("entering the attacker ns");
    assert!(sent >= 40, "the scan sent only {sent} probes");
    let alert = expect_alert(&daemon, &lab.attacker_v4().to_string(), &[kind], kind);
    assert_alert_shape(&lab, &alert, probe_class);
}

#[test]
fn syn_scan_raises_port_scan() {
    scan_raises("port_scan", "tcp_syn", |lab| {
        scanner::syn_scan(lab.target_v4(), 1..=60, SCAN_BUDGET).expect("SYN scan")
    });
}

#[test]
fn connect_scan_raises_port_scan() {
    scan_raises("port_scan", "tcp_syn", |lab| {
        let report = scanner::connect_scan(
            lab.target_v4().into(),
            1..=60,
            Duration::from_millis(300),
            SCAN_BUDGET,
        );
        assert_eq!(
            report.refused, 60,
            "closed ports refuse at once: {report:?}"
        );
        report.tried
    });
}

#[test]
fn udp_scan_raises_udp_scan() {
    scan_raises("udp_scan", "udp", |lab| {
        scanner::udp_scan(lab.target_v4().into(), 2000..=2059, SCAN_BUDGET).expect("UDP scan")
    });
}

#[test]
fn fin_scan_raises_stealth_scan() {
    scan_raises("stealth_scan", "tcp_fin", |lab| {
        scanner::tcp_flag_scan(lab.target_v4(), 1..=60, tcp_flags::FIN, SCAN_BUDGET)
            .expect("FIN scan")
    });
}

#[test]
fn null_scan_raises_stealth_scan() {
    scan_raises("stealth_scan", "tcp_null", |lab| {
        scanner::tcp_flag_scan(lab.target_v4(), 1..=60, 0, SCAN_BUDGET).expect("NULL scan")
    });
}

#[test]
fn xmas_scan_raises_stealth_scan() {
    scan_raises("stealth_scan", "tcp_xmas", |lab| {
        scanner::tcp_flag_scan(lab.target_v4(), 1..=60, XMAS, SCAN_BUDGET).expect("Xmas scan")
    });
}

#[test]
fn ping_sweep_of_answering_hosts_raises_icmp_sweep() {
    scan_raises("icmp_sweep", "icmp_echo", |lab| {
        let hosts: Vec<Ipv4Addr> = (1..=60).map(|n| lab.sweep_host(n)).collect();
        let report =
            scanner::ping_sweep(hosts, Duration::from_secs(1), SCAN_BUDGET).expect("ping sweep");
        assert_eq!(
            report.answered.len(),
            report.sent,
            "every host of the target's /24 answers: {report:?}"
        );
        report.sent
    });
}

#[test]
fn ipv6_connect_scan_raises_port_scan_naming_the_source_prefix() {
    let lab = lab();
    let daemon = daemon(&lab);
    let target = IpAddr::V6(lab.target_v6());
    let report = in_netns(lab.attacker.name(), || {
        scanner::connect_scan(target, 1..=60, Duration::from_millis(300), SCAN_BUDGET)
    })
    .unwrap();
    assert_eq!(report.refused, 60, "{report:?}");
    let alert = expect_alert(
        &daemon,
        &lab.v6_source(),
        &["port_scan"],
        "IPv6 connect scan",
    );
    assert_alert_shape(&lab, &alert, "tcp_syn");
}

// ---------------------------------------------------------------------------------------------
// Real nmap
// ---------------------------------------------------------------------------------------------

/// Runs nmap with `args` in the attacker namespace, killed after [`NMAP_TIMEOUT`]; fails the
/// test unless nmap succeeds.
fn nmap(lab: &Lab, args: &[&str]) -> Output {
    lab.attacker.nmap(args, NMAP_TIMEOUT)
}

/// nmap `technique` against ports `ports` of the target raises `kind` counting `probe_class`.
fn nmap_raises(test: &str, technique: &str, ports: &str, kind: &str, probe_class: &str) {
    if !tool_or_skip("nmap", test) {
        return;
    }
    let lab = lab();
    let daemon = daemon(&lab);
    let target = lab.target_v4().to_string();
    let mut args = vec![technique, "-p", ports, "-Pn"];
    args.extend(NMAP_FAST);
    args.push(&target);
    nmap(&lab, &args);
    let alert = expect_alert(&daemon, &lab.attacker_v4().to_string(), &[kind], test);
    assert_alert_shape(&lab, &alert, probe_class);
}

#[test]
fn nmap_syn_scan_raises_port_scan() {
    nmap_raises(
        "nmap_syn_scan_raises_port_scan",
        "-sS",
        "1-100",
        "port_scan",
        "tcp_syn",
    );
}

#[test]
fn nmap_connect_scan_raises_port_scan() {
    nmap_raises(
        "nmap_connect_scan_raises_port_scan",
        "-sT",
        "1-100",
        "port_scan",
        "tcp_syn",
    );
}

#[test]
fn nmap_udp_scan_raises_udp_scan() {
    nmap_raises(
        "nmap_udp_scan_raises_udp_scan",
        "-sU",
        "1-40",
        "udp_scan",
        "udp",
    );
}

#[test]
fn nmap_fin_scan_raises_stealth_scan() {
    nmap_raises(
        "nmap_fin_scan_raises_stealth_scan",
        "-sF",
        "1-100",
        "stealth_scan",
        "tcp_fin",
    );
}

#[test]
fn nmap_null_scan_raises_stealth_scan() {
    nmap_raises(
        "nmap_null_scan_raises_stealth_scan",
        "-sN",
        "1-100",
        "stealth_scan",
        "tcp_null",
    );
}

#[test]
fn nmap_xmas_scan_raises_stealth_scan() {
    nmap_raises(
        "nmap_xmas_scan_raises_stealth_scan",
        "-sX",
        "1-100",
        "stealth_scan",
        "tcp_xmas",
    );
}

#[test]
fn nmap_ping_sweep_raises_icmp_or_host_sweep() {
    if !tool_or_skip("nmap", "nmap_ping_sweep_raises_icmp_or_host_sweep") {
        return;
    }
    let lab = lab();
    let daemon = daemon(&lab);
    let out = nmap(
        &lab,
        &["-sn", "-n", "-T4", "--max-retries", "0", &lab.sweep_net()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("256 hosts up"),
        "every host of the target's /24 answers:\n{stdout}"
    );
    expect_alert(
        &daemon,
        &lab.attacker_v4().to_string(),
        &["icmp_sweep", "host_sweep"],
        "nmap -sn",
    );
}

// ---------------------------------------------------------------------------------------------
// Monitor mode and drop mode
// ---------------------------------------------------------------------------------------------

/// An open port on the target: a listener bound inside the target namespace (the kernel
/// completes handshakes into its backlog; nobody needs to accept).
fn open_port(lab: &Lab, port: u16) -> TcpListener {
    let addr = lab.target_v4();
    in_netns(lab.target.name(), move || TcpListener::bind((addr, port)))
        .unwrap()
        .expect("binding a listener on the target")
}

#[test]
fn monitor_mode_never_drops_a_detected_scanner() {
    let lab = lab();
    let daemon = daemon(&lab);
    let _listener = open_port(&lab, 8080);
    let target = lab.target_v4();
    let alert = attacker_port_scan_alert(&lab, &daemon, "monitor");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(
        connects(lab.attacker.name(), SocketAddr::from((target, 8080))),
        "monitor mode must not block the scanner"
    );
    // Let the daemon fold the kernel counters (every second) before reading them.
    thread::sleep(Duration::from_millis(1100));
    let metrics = daemon.metrics().unwrap();
    let dropped = metric_sum(&metrics, "scanwatch_dropped_packets_total").unwrap_or(0.0);
    assert!(dropped < 0.5, "monitor mode dropped {dropped} packets");
}

#[test]
fn drop_mode_blocks_the_scanner_but_not_the_benign_host() {
    let lab = lab();
    let daemon = Daemon::start_with(&lab, &["--mode", "drop"]).expect("starting scanwatch");
    let _listener = open_port(&lab, 8080);
    let target = lab.target_v4();
    let service = SocketAddr::from((target, 8080));
    assert!(
        connects(lab.attacker.name(), service),
        "reachable before the scan"
    );
    let alert = attacker_port_scan_alert(&lab, &daemon, "drop");
    assert_eq!(alert["action"], "block", "{alert}");
    assert!(
        !connects(lab.attacker.name(), service),
        "drop mode blocks the scanner after its finding"
    );
    assert!(
        connects(lab.benign.name(), service),
        "drop mode leaves the benign host alone"
    );
    // Kernel counters reach /metrics within a second (the daemon folds them every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    let metrics = loop {
        let metrics = daemon.metrics().unwrap();
        if metric_sum(&metrics, "scanwatch_dropped_packets_total").unwrap_or(0.0) > 0.0
            || Instant::now() >= deadline
        {
            break metrics;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metric_sum(&metrics, "scanwatch_dropped_packets_total").unwrap_or(0.0) > 0.0,
        "drops are counted:\n{}",
        metrics::lines(&metrics, &["scanwatch_dropped", "scanwatch_block"])
    );
}

// ---------------------------------------------------------------------------------------------
// Benign traffic next to scans
// ---------------------------------------------------------------------------------------------

/// TCP services of the target: the web port and the others a client uses.
const WEB_PORT: u16 = 80;
const OTHER_TCP_SERVICES: [u16; 3] = [443, 22, 5432];
/// The UDP service (a DNS-like echo).
const UDP_SERVICE: u16 = 53;
/// Requests the benign web client makes.
const WEB_REQUESTS: usize = 300;
/// Rounds over the other services.
const SERVICE_ROUNDS: usize = 10;
/// Pings, one a second.
const PINGS: usize = 6;

/// One HTTP request to `addr`; true when it got a 200 and the body.
fn request(addr: SocketAddr) -> bool {
    http::get(addr, "/", Duration::from_secs(2))
        .is_ok_and(|(status, body)| status == 200 && body.starts_with("hello from port"))
}

/// One UDP request/response with the echo service.
fn udp_request(socket: &UdpSocket, addr: SocketAddr, n: usize) -> bool {
    let query = format!("query {n}");
    let mut buf = [0u8; 512];
    socket.send_to(query.as_bytes(), addr).is_ok()
        && socket
            .recv_from(&mut buf)
            .is_ok_and(|(len, _)| buf[..len] == *query.as_bytes())
}

#[test]
fn benign_clients_next_to_scans_raise_no_alert() {
    let lab = lab();
    let daemon = daemon(&lab);
    let target = lab.target_v4();
    let tcp_ports: Vec<u16> = std::iter::once(WEB_PORT)
        .chain(OTHER_TCP_SERVICES)
        .collect();
    let tcp_servers =
        Service::tcp(&lab.target, target.into(), &tcp_ports).expect("the TCP servers");
    let udp_server = Service::udp_echo(&lab.target, SocketAddr::from((target, UDP_SERVICE)))
        .expect("the UDP server");

    // The benign host: a busy web client, a client of a handful of services, a pinger.
    let web = spawn_in_netns(lab.benign.name(), move || {
        let addr = SocketAddr::from((target, WEB_PORT));
        let deadline = Instant::now() + Duration::from_secs(30);
        (0..WEB_REQUESTS)
            .take_while(|_| Instant::now() < deadline)
            .filter(|_| request(addr))
            .count()
    });
    let services = spawn_in_netns(lab.benign.name(), move || -> anyhow::Result<usize> {
        let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        udp.set_read_timeout(Some(Duration::from_secs(1)))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut ok = 0;
        for round in 0..SERVICE_ROUNDS {
            if Instant::now() >= deadline {
                break;
            }
            for port in OTHER_TCP_SERVICES {
                ok += usize::from(request(SocketAddr::from((target, port))));
            }
            ok += usize::from(udp_request(
                &udp,
                SocketAddr::from((target, UDP_SERVICE)),
                round,
            ));
            thread::sleep(Duration::from_millis(100));
        }
        Ok(ok)
    });
    let pinger = spawn_in_netns(lab.benign.name(), move || {
        (0..PINGS)
            .filter(|_| {
                let started = Instant::now();
                let answered = scanner::ping(target, Duration::from_millis(900)).unwrap_or(false);
                thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
                answered
            })
            .count()
    });

    // Meanwhile the attacker scans: TCP SYN, UDP, a ping sweep, spread over the benign load.
    let hosts: Vec<Ipv4Addr> = (1..=60).map(|n| lab.sweep_host(n)).collect();
    let attacker = spawn_in_netns(lab.attacker.name(), move || -> std::io::Result<()> {
        thread::sleep(Duration::from_millis(500));
        scanner::syn_scan(target, 1000..=1100, SCAN_BUDGET)?;
        thread::sleep(Duration::from_millis(700));
        scanner::udp_scan(target.into(), 3000..=3060, SCAN_BUDGET)?;
        thread::sleep(Duration::from_millis(700));
        scanner::ping_sweep(hosts, Duration::from_millis(500), SCAN_BUDGET)?;
        Ok(())
    });

    attacker
        .join()
        .expect("attacker thread")
        .expect("entering the attacker ns")
        .expect("attacker scans");
    let web_ok = web
        .join()
        .expect("web client")
        .expect("entering the benign ns");
    let services_ok = services
        .join()
        .expect("service client")
        .expect("entering the benign ns")
        .expect("service client");
    let pings_ok = pinger
        .join()
        .expect("pinger")
        .expect("entering the benign ns");
    let served = tcp_servers.stop().expect("TCP servers") + udp_server.stop().expect("UDP server");

    // Late alerts would arrive within this.
    thread::sleep(ALERT_WITHIN);
    let alerts = daemon.alerts();
    let attacker_src = lab.attacker_v4().to_string();
    let benign_src = lab.benign_v4().to_string();
    for kind in ["port_scan", "udp_scan", "icmp_sweep"] {
        assert!(
            alerts.iter().any(alert_is(&attacker_src, &[kind])),
            "the attacker's {kind} should be detected next to the benign load: {alerts:#?}"
        );
    }
    let benign: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["source"] == benign_src.as_str() || a["source"] == lab.v6_source().as_str())
        .collect();
    assert!(
        benign.is_empty(),
        "benign traffic raised alerts: {benign:#?}"
    );
    assert_eq!(web_ok, WEB_REQUESTS, "every web request succeeds");
    let service_requests = SERVICE_ROUNDS * (OTHER_TCP_SERVICES.len() + 1);
    assert_eq!(
        services_ok, service_requests,
        "every service request succeeds"
    );
    assert_eq!(
        served,
        WEB_REQUESTS + service_requests,
        "the servers saw every request"
    );
    assert_eq!(pings_ok, PINGS, "every ping is answered");
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_scrapes_the_daemon() {
    if !tool_or_skip("prometheus", "prometheus_scrapes_the_daemon") {
        return;
    }
    let lab = lab();
    let daemon = daemon(&lab);
    let target = lab.target_v4();
    in_netns(lab.attacker.name(), || {
        scanner::syn_scan(target, 1..=30, SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();

    let mut prometheus = Prometheus::start(&lab, daemon.metrics_addr(), &[]).unwrap();
    // up == 1 for the scanwatch job, and the data-path counters stored.
    prometheus.wait_scraping(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let packets = loop {
        let packets = prometheus.query("sum(scanwatch_packets_total)");
        if let Ok(packets) = &packets
            && !packets.is_empty()
        {
            break packets.clone();
        }
        assert!(
            Instant::now() < deadline,
            "prometheus stored no packets within 30 s: {packets:?}\n{}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(250));
    };
    let up = prometheus.query("up{job=\"scanwatch\"}").unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    let total = values(&packets)[0];
    assert!(total >= 30.0, "the scan's packets are counted: {packets:?}");
    let status = prometheus.stop().unwrap();
    assert!(
        status.success(),
        "prometheus: {}\n{}",
        describe(status),
        prometheus.log()
    );
}

#[test]
fn promtool_accepts_the_metrics_text() {
    if !tool_or_skip("promtool", "promtool_accepts_the_metrics_text") {
        return;
    }
    let lab = lab();
    let daemon = daemon(&lab);
    let text = daemon.metrics().unwrap();
    assert!(
        metric_sum(&text, "scanwatch_packets_total").is_some(),
        "{text}"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        describe(out.status),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HTTP runs over a byte stream: a request whose request line arrives in two TCP segments is
/// still a request for `/metrics` (small-MSS links and hand-typed requests do this).
#[test]
fn metrics_endpoint_answers_a_request_split_across_segments() {
    let lab = lab();
    let daemon = daemon(&lab);
    let addr = daemon.metrics_addr();
    let response = in_netns(lab.target.name(), move || -> std::io::Result<String> {
        let mut conn = TcpStream::connect(addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(2)))?;
        conn.set_nodelay(true)?;
        conn.write_all(b"GET /met")?;
        thread::sleep(Duration::from_millis(100));
        // The server may already have answered and closed; what it answered is what counts.
        let _ = conn.write_all(b"rics HTTP/1.1\r\nHost: scanwatch\r\nConnection: close\r\n\r\n");
        let mut response = String::new();
        conn.read_to_string(&mut response)?;
        Ok(response)
    })
    .unwrap()
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("scanwatch_packets_total"),
        "a split request should get the metrics, got: {}",
        response.lines().next().unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and bad input
// ---------------------------------------------------------------------------------------------

/// Checks that the daemon is attached (XDP in native mode, TC egress) and keeps a status file,
/// sends it `signal`, and expects exit 0, no program left on the veth and no status file.
fn signal_detaches_and_exits_zero(signal: libc::c_int) {
    let lab = lab();
    let mut daemon = daemon(&lab);
    assert!(
        lab.target_has_xdp().unwrap(),
        "attached while running: {}",
        lab.target_link().unwrap()
    );
    let metrics = daemon.metrics().unwrap();
    let attach = format!(
        "scanwatch_attach_info{{interface=\"{}\",mode=\"native\"}} 1",
        lab.target_if
    );
    assert!(metrics.contains(&attach), "{attach} missing:\n{metrics}");
    assert!(
        lab.target_egress_programs().unwrap() > 0,
        "the TC egress program is attached while running"
    );
    let status_file = daemon.status_file();
    assert!(
        status_file.is_file(),
        "{} missing while running",
        status_file.display()
    );
    daemon.signal(signal).unwrap();
    let status = daemon.wait(Duration::from_secs(5)).unwrap();
    assert!(
        status.success(),
        "scanwatch should exit 0, got {}; log:\n{}",
        describe(status),
        daemon.log()
    );
    assert!(
        !lab.target_has_xdp().unwrap(),
        "XDP program left on the veth after exit: {}",
        lab.target_link().unwrap()
    );
    assert_eq!(
        lab.target_egress_programs().unwrap(),
        0,
        "TC egress program left on the veth after exit"
    );
    assert!(
        !status_file.exists(),
        "{} left behind after a clean exit",
        status_file.display()
    );
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    signal_detaches_and_exits_zero(libc::SIGTERM);
}

#[test]
fn sigint_detaches_and_exits_zero() {
    signal_detaches_and_exits_zero(libc::SIGINT);
}

#[test]
fn stop_reports_clean_exit() {
    let lab = lab();
    let mut daemon = daemon(&lab);
    let status = daemon.stop().unwrap();
    assert!(status.success(), "{}", describe(status));
    assert_eq!(daemon.exit_status(), Some(status));
    assert!(!lab.target_has_xdp().unwrap());
}

#[test]
fn unknown_interface_fails_fast_naming_it() {
    require_root();
    // Never run the daemon in the host's namespace, even to fail.
    let ns = Netns::unique("badif").unwrap();
    let bin = daemon_binary().unwrap();
    let started = Instant::now();
    let out = ns
        .command("timeout")
        .args(["10"])
        .arg(&bin)
        .args(["--instance", &format!("e2e-badif-{}", std::process::id())])
        .args(["run", "-i", "nosuchif0", "--metrics-addr", "127.0.0.1:9977"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "should fail by itself, got {}: {stderr}",
        describe(out.status)
    );
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?} to fail");
    assert!(
        stderr.contains("nosuchif0"),
        "the error names the interface: {stderr}"
    );
}

#[test]
fn check_config_names_the_bad_key() {
    let bin = daemon_binary().unwrap();
    let dir = TempDir::new("check-config").unwrap();
    let check = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Command::new(&bin)
            .arg("check-config")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let good = check(
        "good.toml",
        "window = \"90s\"\n[thresholds]\nport_scan = 30\n",
    );
    assert!(
        good.status.success(),
        "a valid file passes: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    for (name, text, key) in [
        ("typo.toml", "windw = \"5m\"\n", "windw"),
        ("nested.toml", "[thresholds]\nport_scna = 3\n", "port_scna"),
        ("value.toml", "window = \"soon\"\n", "window"),
    ] {
        let out = check(name, text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} should be refused: {stderr}");
        assert!(
            stderr.contains(key),
            "{name}: the error names `{key}`: {stderr}"
        );
    }
}
