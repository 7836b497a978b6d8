//! End-to-end tests of the host's own traffic: the daemon watches the lab's target, which
//! here plays an ordinary host with neighbours — a resolver, a neighbour with one open and one
//! closed TCP port (and a /24 routed to it whose every address answers), and a host behind
//! the neighbour, which routes. The host's everyday traffic (lookups, connections that succeed
//! and connections that are refused, pings, a traceroute, a monitoring loop) must raise no
//! alert in either direction, its replies must be recognised as replies, a scan it sends
//! (nmap) must raise an egress alert naming it, and a scan of it must still raise an ingress
//! alert while its own traffic runs.
//!
//! ```text
//!   attacker (.2) ──┐                           ┌── resolver  (.4, UDP 53)
//!   benign   (.3) ──┼── switch (bridge) ────────┼── neighbour (.5, TCP; 10.K.2.0/24 local)
//!   target   (.1) ──┘   the monitored host      │        └── far (10.K.3.2, behind .5)
//! ```
//!
//! Every test builds its own namespaces and daemon and tears both down on exit, also on
//! failure. The nmap tests print a NOTICE and pass when nmap is missing, except under
//! `CI=true`, where they fail.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Output,
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::{Daemon, alert_is},
    e2e::{
        ALERT_WITHIN, METRICS_WITHIN, NMAP_FAST, NMAP_TIMEOUT, SCAN_BUDGET, excerpt,
        expect_alert_matching,
    },
    http,
    lab::Lab,
    metrics::sample,
    netns::{Netns, Veth, in_netns, spawn_in_netns},
    process::tool_or_skip,
    require_root,
    scanner::{self, TraceReport},
    services::{Service, service_body},
};
use serde_json::Value;

/// The neighbour's open and closed ports.
const OPEN_PORT: u16 = 8080;
const CLOSED_PORT: u16 = 8081;
/// The resolver's port.
const DNS_PORT: u16 = 53;
/// Lookups, connects to the open port and connects to the closed port of the everyday load.
const EVERYDAY_COUNT: usize = 500;
/// Pings of the everyday load, one every [`PING_EVERY`].
const PINGS: usize = 30;
const PING_EVERY: Duration = Duration::from_millis(100);
/// Bound on one connect of the everyday load: time for a SYN retransmission (after 1 s), as a
/// real client would wait, should the neighbour's accept queue overflow on a busy machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on each part of the everyday load.
const LOAD_BUDGET: Duration = Duration::from_secs(20);

/// The monitored host and its neighbours: the lab (the target is the monitored host) plus a
/// resolver and a neighbour on the bridge, a /24 the neighbour answers for, and a host behind
/// the neighbour (which forwards), so a traceroute has two hops.
struct Hood {
    _far_link: Veth,
    _far: Netns,
    neighbour: Netns,
    resolver: Netns,
    lab: Lab,
}

impl Hood {
    fn new() -> Self {
        require_root();
        Self::build().expect("building the lab and the host's neighbours")
    }

    fn build() -> anyhow::Result<Self> {
        let mut lab = Lab::new()?;
        let resolver = lab.add_host("resolver", 4)?;
        let neighbour = lab.add_host("neighbour", 5)?;
        let k = lab.k();
        // The neighbour owns a whole /24 (a sweep across it meets 256 hosts that answer) and
        // routes to a link behind it.
        neighbour.ip(&[
            "route",
            "add",
            "local",
            &format!("10.{k}.2.0/24"),
            "dev",
            "lo",
        ])?;
        neighbour.sysctl("net.ipv4.ip_forward", "1")?;
        let far = Netns::new(&format!("{}-far", neighbour.name()))?;
        let (near_if, far_if) = (lab.if_name("fa"), lab.if_name("fb"));
        let far_link = Veth::new(&neighbour, &near_if, &far, &far_if)?;
        neighbour.ip(&["addr", "add", &format!("10.{k}.3.1/24"), "dev", &near_if])?;
        neighbour.ip(&["link", "set", &near_if, "up"])?;
        far.ip(&["addr", "add", &format!("10.{k}.3.2/24"), "dev", &far_if])?;
        far.ip(&["link", "set", &far_if, "up"])?;
        far.ip(&["route", "add", "default", "via", &format!("10.{k}.3.1")])?;
        let via = lab.host_v4(5).to_string();
        for net in [format!("10.{k}.2.0/24"), format!("10.{k}.3.0/24")] {
            lab.target.ip(&["route", "add", &net, "via", &via])?;
        }
        let hood = Self {
            _far_link: far_link,
            _far: far,
            neighbour,
            resolver,
            lab,
        };
        let far_v4 = hood.far_v4();
        let reached = in_netns(hood.lab.target.name(), move || {
            (0..40).any(|_| scanner::ping(far_v4, Duration::from_millis(250)).unwrap_or(false))
        })?;
        anyhow::ensure!(
            reached,
            "the target cannot reach {far_v4} through the neighbour"
        );
        Ok(hood)
    }

    fn target(&self) -> &str {
        self.lab.target.name()
    }

    fn resolver_v4(&self) -> Ipv4Addr {
        self.lab.host_v4(4)
    }

    fn neighbour_v4(&self) -> Ipv4Addr {
        self.lab.host_v4(5)
    }

    /// The host behind the neighbour.
    fn far_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.lab.k(), 3, 2)
    }

    /// The /24 the neighbour answers for, in CIDR notation (for nmap).
    fn neighbour_net(&self) -> String {
        format!("10.{}.2.0/24", self.lab.k())
    }

    /// Every address of the neighbourhood, as alerts name sources.
    fn neighbours(&self) -> [String; 3] {
        [self.resolver_v4(), self.neighbour_v4(), self.far_v4()].map(|a| a.to_string())
    }

    /// The resolver's DNS-style responder and the neighbour's open port.
    fn services(&self) -> (Service, Service) {
        let dns = Service::udp(
            &self.resolver,
            SocketAddr::from((self.resolver_v4(), DNS_PORT)),
        )
        .expect("the resolver");
        let web = Service::tcp(&self.neighbour, self.neighbour_v4().into(), &[OPEN_PORT])
            .expect("the neighbour's open port");
        (dns, web)
    }
}

/// What the host's everyday load did.
#[derive(Debug, Default)]
struct Everyday {
    lookups_answered: usize,
    opened: usize,
    refused: usize,
    /// Connects that neither opened nor were refused within [`CONNECT_TIMEOUT`].
    timed_out: usize,
    pings_answered: usize,
    trace: Option<TraceReport>,
}

/// The host's everyday load, from the target: [`EVERYDAY_COUNT`] DNS-style lookups (each from
/// a fresh socket, so a fresh ephemeral port), as many connects to the neighbour's open port
/// and to its closed port, and meanwhile a ping of the neighbour every 100 ms for 3 s; then,
/// with `trace`, a traceroute to the host behind the neighbour.
fn everyday_traffic(hood: &Hood, trace: bool) -> Everyday {
    let neighbour = hood.neighbour_v4();
    let pinger = spawn_in_netns(hood.target(), move || {
        (0..PINGS)
            .filter(|_| {
                let started = Instant::now();
                let answered = scanner::ping(
                    neighbour,
                    PING_EVERY.saturating_sub(Duration::from_millis(10)),
                )
                .unwrap_or(false);
                thread::sleep(PING_EVERY.saturating_sub(started.elapsed()));
                answered
            })
            .count()
    });
    let resolver = SocketAddr::from((hood.resolver_v4(), DNS_PORT));
    let far = hood.far_v4();
    let mut load = in_netns(hood.target(), move || {
        let deadline = Instant::now() + LOAD_BUDGET;
        let lookups_answered = (0..EVERYDAY_COUNT)
            .take_while(|_| Instant::now() < deadline)
            .filter(|&i| {
                let name = format!("host{i}.example.test");
                scanner::dns_query(resolver, i as u16, &name, Duration::from_secs(1))
                    .unwrap_or(false)
            })
            .count();
        let connects = |port| {
            scanner::connect_scan(
                IpAddr::V4(neighbour),
                std::iter::repeat_n(port, EVERYDAY_COUNT),
                CONNECT_TIMEOUT,
                LOAD_BUDGET,
            )
        };
        let open = connects(OPEN_PORT);
        let closed = connects(CLOSED_PORT);
        let trace = trace.then(|| {
            scanner::traceroute(far, 5, 3, Duration::from_millis(500), SCAN_BUDGET)
                .expect("traceroute")
        });
        Everyday {
            lookups_answered,
            opened: open.open.len(),
            refused: closed.refused,
            timed_out: open.timed_out + closed.timed_out,
            pings_answered: 0,
            trace,
        }
    })
    .expect("entering the target ns");
    load.pings_answered = pinger
        .join()
        .expect("the pinger")
        .expect("entering the target ns");
    load
}

/// Asserts the everyday load ran as meant: every lookup answered, every connect opened or
/// refused, the pings answered, the traceroute through the neighbour complete.
fn assert_load_ran(hood: &Hood, load: &Everyday) {
    assert_eq!(
        load.lookups_answered, EVERYDAY_COUNT,
        "every lookup is answered: {load:?}"
    );
    assert_eq!(load.timed_out, 0, "no connect timed out: {load:?}");
    assert_eq!(load.opened, EVERYDAY_COUNT, "every connect opens: {load:?}");
    assert_eq!(
        load.refused, EVERYDAY_COUNT,
        "every connect to the closed port is refused: {load:?}"
    );
    assert!(
        load.pings_answered >= PINGS - 2,
        "the pings are answered: {load:?}"
    );
    if let Some(trace) = &load.trace {
        assert!(
            trace.reached && trace.hops == [Some(hood.neighbour_v4()), Some(hood.far_v4())],
            "the traceroute finds the neighbour, then the host behind it: {trace:?}"
        );
    }
}

/// Alerts of `direction`.
fn in_direction<'a>(alerts: &'a [Value], direction: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["direction"] == direction)
        .collect()
}

/// Ingress alerts naming one of the host's neighbours.
fn naming_neighbours<'a>(hood: &Hood, alerts: &'a [Value]) -> Vec<&'a Value> {
    let neighbours = hood.neighbours();
    alerts
        .iter()
        .filter(|a| neighbours.iter().any(|n| a["source"] == n.as_str()))
        .collect()
}

/// Waits [`ALERT_WITHIN`] for late alerts, then checks that the host's everyday traffic (`load`)
/// raised no egress alert and that no answer of a neighbour was taken for a probe; every alert.
fn alerts_after_everyday_traffic(hood: &Hood, daemon: &Daemon<'_>, load: &Everyday) -> Vec<Value> {
    thread::sleep(ALERT_WITHIN);
    let alerts = daemon.alerts();
    let egress = in_direction(&alerts, "egress");
    assert!(
        egress.is_empty(),
        "the host's everyday traffic raised egress alerts: {egress:#?}\nload: {load:?}"
    );
    let ingress = naming_neighbours(hood, &alerts);
    assert!(
        ingress.is_empty(),
        "the answers of the host's neighbours were taken for probes: {ingress:#?}"
    );
    alerts
}

/// An egress alert of one of `kinds` naming the monitored host.
fn egress_alert_of(hood: &Hood, kinds: &[&str]) -> impl Fn(&Value) -> bool + use<> {
    let host = hood.lab.target_v4().to_string();
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    move |a: &Value| {
        a["direction"] == "egress"
            && a["source"] == host.as_str()
            && a["kind"]
                .as_str()
                .is_some_and(|k| kinds.iter().any(|want| want == k))
    }
}

#[test]
fn hosts_everyday_traffic_raises_no_alert_and_its_replies_are_recognised() {
    let hood = Hood::new();
    let daemon = Daemon::start(&hood.lab).expect("starting scanwatch");
    let (dns, web) = hood.services();

    let load = everyday_traffic(&hood, true);
    assert_load_ran(&hood, &load);
    assert!(dns.stop().unwrap() >= EVERYDAY_COUNT);
    drop(web);

    let alerts = alerts_after_everyday_traffic(&hood, &daemon, &load);
    assert!(alerts.is_empty(), "unexpected alerts: {alerts:#?}");

    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_replies_total{protocol=\"udp\"}") >= 450
            && sample(m, "scanwatch_egress_failures_total") >= 500
    });
    let shown = excerpt(&metrics);
    assert!(
        sample(&metrics, "scanwatch_replies_total{protocol=\"udp\"}") >= 450,
        "the resolver's answers are recognised as replies:\n{shown}"
    );
    assert!(
        sample(&metrics, "scanwatch_replies_total{protocol=\"tcp\"}") >= 1000,
        "SYN-ACKs and RSTs answering the host's connects are replies:\n{shown}"
    );
    assert!(
        sample(&metrics, "scanwatch_replies_total{protocol=\"icmp\"}") >= 2,
        "the traceroute's ICMP errors quote the host's datagrams:\n{shown}"
    );
    // 500 refused connects are 500 failures, seen as such, yet one (host, port) pair: quiet.
    assert!(
        sample(&metrics, "scanwatch_egress_failures_total") >= 500,
        "the refused connects were seen as failed attempts:\n{shown}"
    );
    assert_eq!(
        sample(
            &metrics,
            "scanwatch_detections_total{kind=\"port_scan\",direction=\"egress\"}"
        ),
        0,
        "{shown}"
    );
}

#[test]
fn monitoring_loop_over_fifty_services_raises_no_alert() {
    const ROUNDS: usize = 3;
    let hood = Hood::new();
    let daemon = Daemon::start(&hood.lab).expect("starting scanwatch");
    let ports: Vec<u16> = (9000..9050).collect();
    let services = Service::tcp(&hood.neighbour, hood.neighbour_v4().into(), &ports)
        .expect("the neighbour's services");

    let neighbour = hood.neighbour_v4();
    let checks = ports.clone();
    let (ok, failed) = in_netns(hood.target(), move || {
        let deadline = Instant::now() + LOAD_BUDGET;
        let mut failed = Vec::new();
        let mut ok = 0;
        for _ in 0..ROUNDS {
            for &port in &checks {
                if Instant::now() >= deadline {
                    break;
                }
                let addr = SocketAddr::from((neighbour, port));
                match http::get(addr, "/health", Duration::from_secs(2)) {
                    Ok((200, body)) if body == service_body(port) => ok += 1,
                    other => failed.push(format!("{addr}: {other:?}")),
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        (ok, failed)
    })
    .expect("entering the target ns");
    assert!(failed.is_empty(), "health checks failed: {failed:?}");
    assert_eq!(ok, ROUNDS * ports.len(), "every health check succeeds");
    assert!(services.stop().unwrap() >= ok);

    thread::sleep(ALERT_WITHIN);
    let alerts = daemon.alerts();
    let egress = in_direction(&alerts, "egress");
    assert!(
        egress.is_empty(),
        "successful connections to 50 services raised egress alerts: {egress:#?}"
    );
    assert!(alerts.is_empty(), "unexpected alerts: {alerts:#?}");
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_replies_total{protocol=\"tcp\"}") >= 150
    });
    assert!(
        sample(&metrics, "scanwatch_replies_total{protocol=\"tcp\"}") >= 150,
        "the services' SYN-ACKs are replies:\n{}",
        excerpt(&metrics)
    );
}

/// Runs nmap with `args` in the target namespace, killed after [`NMAP_TIMEOUT`]; fails the
/// test unless nmap succeeds.
fn nmap_from_host(hood: &Hood, args: &[&str]) -> Output {
    hood.lab.target.nmap(args, NMAP_TIMEOUT)
}

#[test]
fn nmap_syn_scan_from_the_host_raises_egress_port_scan_and_is_never_blocked() {
    if !tool_or_skip(
        "nmap",
        "nmap_syn_scan_from_the_host_raises_egress_port_scan_and_is_never_blocked",
    ) {
        return;
    }
    let hood = Hood::new();
    // Drop mode: an egress finding names this host, which must never be blocked.
    let daemon = Daemon::start_with(&hood.lab, &["--mode", "drop"]).expect("starting scanwatch");
    let _web = Service::tcp(&hood.neighbour, hood.neighbour_v4().into(), &[80])
        .expect("the neighbour's web port");
    let neighbour = hood.neighbour_v4().to_string();

    let mut args = vec!["-sS", "-p", "1-200"];
    args.extend(NMAP_FAST);
    args.push(&neighbour);
    let out = nmap_from_host(&hood, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("80/tcp open"),
        "nmap finds the neighbour's open port:\n{stdout}"
    );
    let alert = expect_alert_matching(
        &daemon,
        "nmap -sS from the host",
        egress_alert_of(&hood, &["port_scan"]),
    );
    assert_eq!(alert["interface"], hood.lab.target_if.as_str(), "{alert}");
    assert_eq!(
        alert["action"], "alert",
        "egress findings are never blocked: {alert}"
    );
    // Who sent it: nmap's process, and its raw SYNs' tool.
    assert_eq!(alert["process"]["name"], "nmap", "{alert}");
    assert_eq!(alert["tool"]["name"], "nmap", "{alert}");
    let examples = alert["examples"].as_array().cloned().unwrap_or_default();
    assert!(
        !examples.is_empty()
            && examples.iter().all(|e| e
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{neighbour}:")))),
        "the examples name the scanned neighbour's ports: {alert}"
    );
    let alerts = daemon.alerts();
    let ingress = naming_neighbours(&hood, &alerts);
    assert!(
        ingress.is_empty(),
        "the scanned neighbour's answers were taken for probes: {ingress:#?}"
    );

    // Nothing is dropped: the host still reaches the neighbour, and the neighbour the host.
    let target = hood.lab.target_v4();
    let web = SocketAddr::from((hood.neighbour_v4(), 80));
    let reaches = in_netns(hood.target(), move || {
        http::get(web, "/", Duration::from_secs(2)).is_ok_and(|(status, _)| status == 200)
    })
    .unwrap();
    assert!(
        reaches,
        "the host still reaches the neighbour after its scan"
    );
    let answers = in_netns(hood.neighbour.name(), move || {
        scanner::ping(target, Duration::from_secs(1)).unwrap_or(false)
    })
    .unwrap();
    assert!(answers, "the neighbour still reaches the host");
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_egress_failures_total") >= 100
    });
    assert_eq!(
        sample(&metrics, "scanwatch_verdicts_total{verdict=\"drop\"}"),
        0,
        "an egress finding dropped packets:\n{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("scanwatch_dropped") || l.starts_with("scanwatch_block"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn nmap_ping_sweep_from_the_host_raises_egress_sweep() {
    if !tool_or_skip("nmap", "nmap_ping_sweep_from_the_host_raises_egress_sweep") {
        return;
    }
    let hood = Hood::new();
    let daemon = Daemon::start(&hood.lab).expect("starting scanwatch");
    let out = nmap_from_host(
        &hood,
        &[
            "-sn",
            "-n",
            "-T4",
            "--max-retries",
            "0",
            &hood.neighbour_net(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("256 hosts up"),
        "every host of the neighbour's /24 answers:\n{stdout}"
    );
    let alert = expect_alert_matching(
        &daemon,
        "nmap -sn from the host",
        egress_alert_of(&hood, &["icmp_sweep", "host_sweep"]),
    );
    assert_eq!(alert["action"], "alert", "{alert}");
    assert!(
        alert["distinct_hosts"].as_u64().unwrap_or(0) >= 25,
        "the sweep counts hosts: {alert}"
    );
    // An icmp_sweep is counted at TC egress from the probes themselves, a host_sweep from
    // their failures: either way nmap's process sent them. Its echo requests alone also fit
    // hping3's, so the tool may stay unknown, never another tool.
    assert_eq!(alert["process"]["name"], "nmap", "{alert}");
    assert!(
        ["nmap", "unknown"].contains(&alert["tool"]["name"].as_str().unwrap_or_default()),
        "{alert}"
    );
    let alerts = daemon.alerts();
    let ingress = in_direction(&alerts, "ingress");
    assert!(
        ingress.is_empty(),
        "256 answering hosts were taken for probes: {ingress:#?}"
    );
}

#[test]
fn ingress_scan_is_detected_next_to_the_hosts_own_traffic() {
    let hood = Hood::new();
    let daemon = Daemon::start(&hood.lab).expect("starting scanwatch");
    let (_dns, _web) = hood.services();
    let target = hood.lab.target_v4();

    let load = thread::scope(|scope| {
        let load = scope.spawn(|| everyday_traffic(&hood, false));
        // The attacker scans while the host's own traffic runs.
        thread::sleep(Duration::from_millis(300));
        let sent = in_netns(hood.lab.attacker.name(), move || {
            scanner::syn_scan(target, 1..=60, SCAN_BUDGET)
        })
        .expect("entering the attacker ns")
        .expect("SYN scan");
        assert_eq!(sent, 60);
        let alert = expect_alert_matching(&daemon, "SYN scan of the host", |a| {
            a["direction"] == "ingress"
                && alert_is(&hood.lab.attacker_v4().to_string(), &["port_scan"])(a)
        });
        assert!(
            alert["probes"]["tcp_syn"].as_u64().unwrap_or(0) > 0,
            "{alert}"
        );
        load.join().expect("the host's load")
    });
    assert_load_ran(&hood, &load);

    alerts_after_everyday_traffic(&hood, &daemon, &load);
}
