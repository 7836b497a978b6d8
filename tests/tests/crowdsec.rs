//! The fleet through a real CrowdSec Local API (Debian's crowdsec 1.4.6, started by the tests
//! inside the lab): findings published as alerts, ban decisions enforced at XDP on other
//! agents, deletions unblocking, a dry run's findings asking for no ban, protected peers and
//! this host's verified clients never blocked, and every LAPI fault survived.

use std::{
    io::ErrorKind,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use scanwatch_tests::{
    crowdsec::Lapi,
    daemon::Daemon,
    e2e::{self, attacker_syn_scan, config_file, expect_alert},
    lab::Lab,
    metrics::sample,
    netns::{in_netns, spawn_in_netns},
    process::{TempDir, poll_until},
    services::Service,
};
use serde_json::Value;

/// The agents poll the decisions stream this often.
const POLL: Duration = Duration::from_secs(1);
/// A decision must be enforced (or lifted) within one poll interval, plus the agent's own
/// turn and a margin for a loaded machine.
const DECISION_WITHIN: Duration = Duration::from_secs(4);
/// The LAPI port inside the lab.
const LAPI_PORT: u16 = 18480;

/// A real LAPI in the lab's target namespace, on [`LAPI_PORT`].
fn start_lapi(lab: &Lab) -> Lapi {
    let addr = SocketAddr::from((lab.target_v4(), LAPI_PORT));
    Lapi::start(lab.target.name(), addr).expect("starting the LAPI")
}

/// A `[crowdsec]` section; `extra` lines go inside it.
fn section(url: &str, extra: &str) -> String {
    format!(
        "[crowdsec]\nlapi_url = \"{url}\"\npoll_interval = \"{}s\"\nmax_backoff = \"1s\"\n\
         timeout = \"2s\"\n{extra}",
        POLL.as_secs()
    )
}

/// A fresh lab with a real LAPI in it ([`start_lapi`]), and a directory for the agents'
/// credentials and configuration.
fn lab_with_lapi() -> (Lab, Lapi, TempDir) {
    let lab = e2e::lab();
    let lapi = start_lapi(&lab);
    (lab, lapi, TempDir::new("fleet").unwrap())
}

/// A drop-mode agent's configuration file in `dir`: a `[crowdsec]` section for `url` with
/// `lines` in it ([`bouncer`], [`machine_and_bouncer`]).
fn drop_agent_config(dir: &TempDir, url: &str, lines: &str) -> String {
    config_file(dir, &format!("mode = \"drop\"\n{}", section(url, lines)))
}

/// The `[crowdsec]` lines of an agent that only enforces: its bouncer's API key.
fn bouncer(key: &Path) -> String {
    format!("api_key_file = \"{}\"\n", key.display())
}

/// The `[crowdsec]` lines of an agent with both roles: machine `machine_id` publishes with
/// `password`, the bouncer enforces with `key`.
fn machine_and_bouncer(machine_id: &str, password: &Path, key: &Path) -> String {
    format!(
        "machine_id = \"{machine_id}\"\npassword_file = \"{}\"\napi_key_file = \"{}\"\n",
        password.display(),
        key.display()
    )
}

/// Whether `from` reaches `to`'s closed port 9 (refused = reachable; timed out = dropped).
fn reaches(from: &str, to: SocketAddr) -> bool {
    match e2e::connect(from, to, Duration::from_millis(700)) {
        Ok(()) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
    }
}

/// The decisions (value, scenario) of `cscli decisions list`.
fn decisions(lapi: &Lapi) -> Vec<(String, String)> {
    lapi.decisions()
        .expect("cscli decisions list")
        .iter()
        .flat_map(|a| a["decisions"].as_array().cloned().unwrap_or_default())
        .map(|d| {
            (
                d["value"].as_str().unwrap_or_default().to_owned(),
                d["scenario"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The `scanwatch list --json` rows of reason `crowdsec`.
fn crowdsec_rows(daemon: &Daemon<'_>) -> Vec<String> {
    let out = daemon.ctl_ok(&["list", "--json"]).expect("scanwatch list");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("list --json is JSON");
    rows.iter()
        .filter(|r| r["reason"] == "crowdsec")
        .map(|r| r["source"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The status file's decisions refused since start, by reason (`scanwatch status --json`).
fn refused_in_status(daemon: &Daemon<'_>) -> Value {
    let out = daemon
        .ctl_ok(&["status", "--json"])
        .expect("scanwatch status");
    let status: Value = serde_json::from_str(&out).expect("status --json is JSON");
    status["crowdsec"]["decisions_refused"].clone()
}

#[test]
fn a_scanner_found_by_one_agent_is_dropped_by_another_until_its_decision_is_deleted() {
    let (lab, lapi, dir) = lab_with_lapi();
    let password = lapi
        .add_machine("agent1", "agent1-password", dir.path())
        .unwrap();
    let key1 = lapi.add_bouncer("agent1", dir.path()).unwrap();
    let key2 = lapi.add_bouncer("agent2", dir.path()).unwrap();
    let dir1 = TempDir::new("agent1").unwrap();
    let dir2 = TempDir::new("agent2").unwrap();
    // Agent 1's own detection block is short, so what holds the scanner afterwards is the
    // fleet's decision.
    let cfg1 = config_file(
        &dir1,
        &format!(
            "mode = \"drop\"\nblock_ttl = \"1s\"\nmax_block_ttl = \"1s\"\n{}",
            section(
                &lapi.url(),
                &machine_and_bouncer("agent1", &password, &key1)
            )
        ),
    );
    let cfg2 = drop_agent_config(&dir2, &lapi.url(), &bouncer(&key2));
    let agent1 = Daemon::start_shared(&lab, &["--config", &cfg1]).expect("agent 1");
    let agent2 = Daemon::start_shared_in(
        &lab,
        lab.benign.name(),
        &lab.benign_if,
        "b",
        &["--config", &cfg2],
    )
    .expect("agent 2");
    let benign_port = SocketAddr::from((lab.benign_v4(), 9));
    assert!(
        reaches(lab.attacker.name(), benign_port),
        "before: agent 2 lets the attacker in"
    );

    let attacker = lab.attacker_v4().to_string();
    attacker_syn_scan(&lab);
    let alert = expect_alert(&agent1, &attacker, &["port_scan"], "agent 1");
    assert_eq!(alert["action"], "block", "{alert}");

    let published = poll_until(Duration::from_secs(10), Duration::from_millis(300), || {
        decisions(&lapi).contains(&(attacker.clone(), "scanwatch/port_scan".into()))
    });
    assert!(
        published,
        "no decision for {attacker} in the LAPI: {:?}\nagent 1 log:\n{}",
        lapi.decisions(),
        agent1.log()
    );
    let alerts = lapi.alerts().unwrap();
    let ours = alerts
        .iter()
        .find(|a| a["scenario"] == "scanwatch/port_scan")
        .expect("the alert is in the LAPI");
    assert_eq!(ours["source"]["scope"], "Ip", "{ours}");
    assert_eq!(ours["source"]["value"], attacker.as_str(), "{ours}");

    let dropped = poll_until(DECISION_WITHIN, Duration::from_millis(200), || {
        !reaches(lab.attacker.name(), benign_port)
    });
    assert!(
        dropped,
        "agent 2 did not drop the scanner; its log:\n{}",
        agent2.log()
    );
    let m2 = agent2.wait_for_metrics(e2e::METRICS_WITHIN, |m| {
        sample(m, "scanwatch_dropped_packets_total{reason=\"crowdsec\"}") > 0
    });
    assert!(
        sample(&m2, "scanwatch_dropped_packets_total{reason=\"crowdsec\"}") > 0,
        "{m2}"
    );
    assert_eq!(
        sample(&m2, "scanwatch_crowdsec_lapi_up{role=\"enforce\"}"),
        1
    );
    assert_eq!(
        sample(&m2, "scanwatch_blocks_added_total{reason=\"crowdsec\"}"),
        1,
        "{m2}"
    );
    let want = format!("{attacker}/32");
    assert_eq!(crowdsec_rows(&agent2), std::slice::from_ref(&want));
    assert!(
        poll_until(
            DECISION_WITHIN,
            Duration::from_millis(200),
            || crowdsec_rows(&agent1) == [want.clone()]
        ),
        "agent 1 enforces the decision too: {:?}",
        agent1.ctl_ok(&["list", "--json"])
    );

    lapi.cscli(&["decisions", "delete", "--ip", &attacker])
        .expect("cscli decisions delete");
    let lifted = poll_until(DECISION_WITHIN, Duration::from_millis(200), || {
        reaches(lab.attacker.name(), benign_port)
    });
    assert!(
        lifted,
        "agent 2 still drops after the deletion; its log:\n{}",
        agent2.log()
    );
    assert!(
        poll_until(DECISION_WITHIN, Duration::from_millis(200), || {
            crowdsec_rows(&agent1).is_empty() && crowdsec_rows(&agent2).is_empty()
        }),
        "a deleted decision stays enforced"
    );
    let m2 = agent2.metrics().unwrap();
    assert!(
        sample(&m2, "scanwatch_crowdsec_decisions_unblocked_total") >= 1,
        "{m2}"
    );
}

#[test]
fn a_decision_for_a_protected_peer_is_not_enforced_and_says_so() {
    let (lab, lapi, dir) = lab_with_lapi();
    let key = lapi.add_bouncer("agent", dir.path()).unwrap();
    let cfg = drop_agent_config(&dir, &lapi.url(), &bouncer(&key));
    let agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    // The target's own address, and the attacker as a control.
    let own = lab.target_v4().to_string();
    let attacker = lab.attacker_v4().to_string();
    for ip in [&own, &attacker] {
        lapi.cscli(&["decisions", "add", "--ip", ip, "--duration", "1h"])
            .expect("cscli decisions add");
    }
    // Ranges: one covering the target's own network (refused: it holds the own address,
    // checked first), one elsewhere (enforced).
    let lan = format!("10.{}.0.0/16", lab.k());
    let far = "2001:db8:5ca7::/48";
    for range in [lan.as_str(), far] {
        lapi.cscli(&["decisions", "add", "--range", range, "--duration", "1h"])
            .expect("cscli decisions add --range");
    }
    let m = agent.wait_for_metrics(DECISION_WITHIN, |m| {
        sample(
            m,
            "scanwatch_crowdsec_decisions_refused_total{reason=\"own_address\"}",
        ) >= 2
    });
    assert_eq!(
        sample(
            &m,
            "scanwatch_crowdsec_decisions_refused_total{reason=\"own_address\"}"
        ),
        2,
        "{m}"
    );
    assert!(
        agent
            .log()
            .contains(&format!("decision to ban {lan} not enforced: own_address")),
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains(&format!(
            "decision to ban {own}/32 not enforced: own_address"
        )),
        "{}",
        agent.log()
    );
    assert!(
        poll_until(
            DECISION_WITHIN,
            Duration::from_millis(200),
            || crowdsec_rows(&agent) == [format!("{attacker}/32"), far.to_owned()]
        ),
        "only the attacker and the far range are blocked: {:?}",
        crowdsec_rows(&agent)
    );
    assert!(
        poll_until(Duration::from_secs(6), Duration::from_millis(200), || {
            refused_in_status(&agent)["own_address"] == 2
        }),
        "the status counts the refusals: {}",
        refused_in_status(&agent)
    );
    let text = agent.ctl_ok(&["status"]).expect("scanwatch status");
    assert!(text.contains("decisions refused: own_address 2"), "{text}");
}

#[test]
fn a_dry_run_agents_finding_reaches_the_lapi_as_a_simulation_without_a_decision() {
    let (lab, lapi, dir) = lab_with_lapi();
    let password = lapi
        .add_machine("agent", "agent-password", dir.path())
        .unwrap();
    let cfg = config_file(
        &dir,
        &format!(
            "mode = \"drop\"\ndry_run = true\n{}",
            section(
                &lapi.url(),
                &format!(
                    "machine_id = \"agent\"\npassword_file = \"{}\"\n",
                    password.display()
                )
            )
        ),
    );
    let agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    let attacker = lab.attacker_v4().to_string();
    attacker_syn_scan(&lab);
    let alert = expect_alert(&agent, &attacker, &["port_scan"], "dry run");
    assert_eq!(alert["action"], "would_block", "{alert}");

    let ours = || {
        lapi.alerts().unwrap_or_default().into_iter().find(|a| {
            a["scenario"] == "scanwatch/port_scan" && a["source"]["value"] == attacker.as_str()
        })
    };
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(300), || {
            ours().is_some()
        }),
        "the dry run's finding never reached the LAPI; agent log:\n{}",
        agent.log()
    );
    let published = ours().unwrap();
    assert_eq!(published["simulated"], true, "{published}");
    // The LAPI decides when the alert arrives: no decision now means none to come.
    assert!(
        !decisions(&lapi).iter().any(|(value, _)| *value == attacker),
        "a dry run banned {attacker} for the fleet: {:?}",
        lapi.decisions()
    );
}

#[test]
fn a_decision_for_a_client_verified_here_is_not_enforced_and_says_so() {
    let (lab, lapi, dir) = lab_with_lapi();
    let key = lapi.add_bouncer("agent", dir.path()).unwrap();
    let cfg = drop_agent_config(&dir, &lapi.url(), &bouncer(&key));
    let agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    // The client completes a handshake with the target's service: drop mode verifies it.
    let service = Service::tcp(&lab.target, lab.target_v4().into(), &[8080]).unwrap();
    let addr = SocketAddr::from((lab.target_v4(), 8080));
    assert!(
        e2e::connects(lab.benign.name(), addr),
        "the client is served"
    );
    agent.wait_for_metrics(e2e::METRICS_WITHIN, |m| {
        sample(m, "scanwatch_handshakes_verified_total") >= 1
    });

    // A ban of the client (forged in its name elsewhere, say), and of the attacker as a control.
    let client = lab.benign_v4().to_string();
    let attacker = lab.attacker_v4().to_string();
    for ip in [&client, &attacker] {
        lapi.cscli(&["decisions", "add", "--ip", ip, "--duration", "1h"])
            .expect("cscli decisions add");
    }
    let series = "scanwatch_crowdsec_decisions_refused_total{reason=\"verified_client\"}";
    let m = agent.wait_for_metrics(DECISION_WITHIN, |m| sample(m, series) >= 1);
    assert_eq!(sample(&m, series), 1, "{m}");
    assert!(
        agent.log().contains(&format!(
            "decision to ban {client}/32 not enforced: verified_client"
        )),
        "{}",
        agent.log()
    );
    assert!(
        poll_until(DECISION_WITHIN, Duration::from_millis(200), || {
            crowdsec_rows(&agent) == [format!("{attacker}/32")]
        }),
        "only the attacker is blocked: {:?}",
        crowdsec_rows(&agent)
    );
    assert!(
        e2e::connects(lab.benign.name(), addr),
        "the client is still served"
    );

    // The status says how many decisions were refused, and why.
    assert!(
        poll_until(Duration::from_secs(6), Duration::from_millis(200), || {
            refused_in_status(&agent)["verified_client"] == 1
        }),
        "the status counts the refusal: {}",
        refused_in_status(&agent)
    );
    let text = agent.ctl_ok(&["status"]).expect("scanwatch status");
    assert!(
        text.contains("decisions refused: verified_client 1"),
        "{text}"
    );
    drop(service);
}

#[test]
fn findings_made_while_the_lapi_is_down_arrive_after_it_returns() {
    let (lab, mut lapi, dir) = lab_with_lapi();
    let password = lapi
        .add_machine("agent", "agent-password", dir.path())
        .unwrap();
    let key = lapi.add_bouncer("agent", dir.path()).unwrap();
    let lines = machine_and_bouncer("agent", &password, &key) + "queue_size = 10\n";
    let cfg = drop_agent_config(&dir, &lapi.url(), &lines);
    let mut agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    agent.wait_for_metrics(DECISION_WITHIN, |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"publish\"}") == 1
    });
    lapi.stop().unwrap();
    let down = agent.wait_for_metrics(Duration::from_secs(6), |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"enforce\"}") == 0
            && sample(
                m,
                "scanwatch_crowdsec_lapi_errors_total{error=\"unreachable\",role=\"enforce\"}",
            ) > 0
    });
    assert_eq!(
        sample(&down, "scanwatch_crowdsec_lapi_up{role=\"enforce\"}"),
        0,
        "{down}"
    );

    // Detection and local enforcement go on meanwhile.
    let attacker = lab.attacker_v4().to_string();
    attacker_syn_scan(&lab);
    let alert = expect_alert(&agent, &attacker, &["port_scan"], "during the outage");
    assert_eq!(alert["action"], "block", "{alert}");
    let queued = agent.wait_for_metrics(Duration::from_secs(6), |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"publish\"}") == 0
    });
    assert_eq!(
        sample(&queued, "scanwatch_crowdsec_lapi_up{role=\"publish\"}"),
        0,
        "{queued}"
    );
    let status = agent.ctl_ok(&["status"]).unwrap();
    assert!(
        status.contains("DOWN"),
        "scanwatch status shows the outage:\n{status}"
    );

    lapi.start_again().expect("restarting the LAPI");
    let arrived = poll_until(Duration::from_secs(15), Duration::from_millis(500), || {
        lapi.alerts().unwrap_or_default().iter().any(|a| {
            a["scenario"] == "scanwatch/port_scan" && a["source"]["value"] == attacker.as_str()
        })
    });
    assert!(
        arrived,
        "the queued finding never reached the LAPI; agent log:\n{}",
        agent.log()
    );
    let m = agent.metrics().unwrap();
    assert_eq!(
        sample(&m, "scanwatch_crowdsec_lapi_up{role=\"publish\"}"),
        1,
        "{m}"
    );
    assert_eq!(sample(&m, "scanwatch_crowdsec_alerts_queued"), 0, "{m}");
    assert!(agent.exit_status().is_none(), "the agent is still running");
}

/// A tiny LAPI impostor inside `ns` on 127.0.0.1: every request gets `status` and `body`.
fn fake_lapi(ns: &str, status: u16, body: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    slow_fake_lapi(ns, status, body, Duration::ZERO)
}

/// [`fake_lapi`] answering after `delay`, one request at a time.
fn slow_fake_lapi(
    ns: &str,
    status: u16,
    body: &'static str,
    delay: Duration,
) -> (SocketAddr, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let flag = stop.clone();
    spawn_in_netns(ns, move || {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("fake LAPI");
        let addr = server.server_addr().to_ip().expect("an IP address");
        tx.send(addr).unwrap();
        while !flag.load(Ordering::SeqCst) {
            if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(100)) {
                std::thread::sleep(delay);
                let _ =
                    req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        }
    });
    (
        rx.recv_timeout(Duration::from_secs(5))
            .expect("fake LAPI address"),
        stop,
    )
}

/// Runs an agent with both roles against `url` until both count `error`; checks the log line
/// and that the agent keeps running and detecting.
fn survives(lab: &Lab, dir: &TempDir, url: &str, error: &str, log_says: &str, secrets: &Path) {
    let password = secrets.join("password");
    let key = secrets.join("key");
    let cfg = drop_agent_config(dir, url, &machine_and_bouncer("agent", &password, &key));
    let mut agent = Daemon::start_shared(lab, &["--config", &cfg]).expect("agent");
    let series = |role: &str| {
        format!("scanwatch_crowdsec_lapi_errors_total{{error=\"{error}\",role=\"{role}\"}}")
    };
    let m = agent.wait_for_metrics(Duration::from_secs(8), |m| {
        sample(m, &series("publish")) > 0 && sample(m, &series("enforce")) > 0
    });
    for role in ["publish", "enforce"] {
        assert!(
            sample(&m, &series(role)) > 0,
            "{url}: no {error} counted for {role}:\n{m}"
        );
        assert_eq!(
            sample(
                &m,
                &format!("scanwatch_crowdsec_lapi_up{{role=\"{role}\"}}")
            ),
            0
        );
    }
    let log = agent.log();
    assert!(
        log.contains(log_says),
        "{url}: the log does not say {log_says:?}:\n{log}"
    );
    for secret in [
        std::fs::read_to_string(&password).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    ] {
        assert!(!log.contains(secret.trim()), "a credential is in the log");
        assert!(!m.contains(secret.trim()), "a credential is in /metrics");
    }
    attacker_syn_scan(lab);
    expect_alert(&agent, &lab.attacker_v4().to_string(), &["port_scan"], url);
    assert!(
        agent.exit_status().is_none(),
        "{url}: the agent died:\n{}",
        agent.log()
    );
    agent.stop().expect("a clean stop");
}

#[test]
fn wrong_credentials_unreachable_slow_errors_and_garbage_are_logged_and_counted() {
    let lab = e2e::lab();
    let lapi = start_lapi(&lab);
    let secrets = TempDir::new("secrets").unwrap();
    std::fs::write(secrets.path().join("password"), "not-the-password-x7").unwrap();
    std::fs::write(secrets.path().join("key"), "not-the-api-key-q9").unwrap();
    let dir = TempDir::new("faults").unwrap();
    survives(
        &lab,
        &dir,
        &lapi.url(),
        "unauthorized",
        "refused the credentials",
        secrets.path(),
    );
    survives(
        &lab,
        &dir,
        "http://127.0.0.1:9",
        "unreachable",
        "cannot be reached",
        secrets.path(),
    );
    let (addr, stop500) = fake_lapi(lab.target.name(), 500, "{\"message\":\"boom\"}");
    survives(
        &lab,
        &dir,
        &format!("http://{addr}"),
        "http_error",
        "answered HTTP 500",
        secrets.path(),
    );
    stop500.store(true, Ordering::SeqCst);
    let (addr, stop_garbage) = fake_lapi(lab.target.name(), 200, "<html>not json</html>");
    survives(
        &lab,
        &dir,
        &format!("http://{addr}"),
        "bad_response",
        "not JSON",
        secrets.path(),
    );
    stop_garbage.store(true, Ordering::SeqCst);
    // Slower than the 2 s request timeout: a timeout, counted as unreachable.
    let (addr, stop_slow) = slow_fake_lapi(lab.target.name(), 200, "{}", Duration::from_secs(3));
    survives(
        &lab,
        &dir,
        &format!("http://{addr}"),
        "unreachable",
        "timed out",
        secrets.path(),
    );
    stop_slow.store(true, Ordering::SeqCst);
}

#[test]
fn applied_decisions_survive_an_agent_restart_while_the_lapi_is_down() {
    let (lab, mut lapi, dir) = lab_with_lapi();
    let key = lapi.add_bouncer("agent", dir.path()).unwrap();
    let cfg = drop_agent_config(&dir, &lapi.url(), &bouncer(&key));
    let mut agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    let attacker = lab.attacker_v4().to_string();
    lapi.cscli(&["decisions", "add", "--ip", &attacker, "--duration", "1h"])
        .expect("cscli decisions add");
    let want = [format!("{attacker}/32")];
    assert!(
        poll_until(
            DECISION_WITHIN,
            Duration::from_millis(200),
            || crowdsec_rows(&agent) == want
        ),
        "the decision is enforced"
    );
    lapi.stop().unwrap();
    agent
        .restart(&["--config", &cfg])
        .expect("restarting the agent");
    let target = SocketAddr::from((lab.target_v4(), 9));
    assert!(
        !reaches(lab.attacker.name(), target),
        "the restarted agent still drops the banned source"
    );
    assert_eq!(crowdsec_rows(&agent), want, "the pinned decision is kept");
    let m = agent.wait_for_metrics(Duration::from_secs(6), |m| {
        sample(
            m,
            "scanwatch_crowdsec_lapi_errors_total{error=\"unreachable\",role=\"enforce\"}",
        ) > 0
    });
    assert_eq!(
        sample(&m, "scanwatch_crowdsec_lapi_up{role=\"enforce\"}"),
        0,
        "{m}"
    );
    // Back online, the startup pull confirms it (the decision still stands).
    lapi.start_again().unwrap();
    agent.wait_for_metrics(Duration::from_secs(6), |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"enforce\"}") == 1
    });
    std::thread::sleep(POLL * 2);
    assert_eq!(crowdsec_rows(&agent), want);
}

#[test]
fn the_alert_queue_keeps_the_newest_findings_up_to_its_bound() {
    let (lab, mut lapi, dir) = lab_with_lapi();
    let password = lapi
        .add_machine("agent", "agent-password", dir.path())
        .unwrap();
    // Monitor mode: the UDP scan's findings do not block the scanner before its SYN scan.
    let cfg = config_file(
        &dir,
        &section(
            &lapi.url(),
            &format!(
                "machine_id = \"agent\"\npassword_file = \"{}\"\nqueue_size = 1\n",
                password.display()
            ),
        ),
    );
    let agent = Daemon::start_shared(&lab, &["--config", &cfg]).expect("agent");
    agent.wait_for_metrics(DECISION_WITHIN, |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"publish\"}") == 1
    });
    lapi.stop().unwrap();
    let attacker = lab.attacker_v4().to_string();
    let target = lab.target_v4();
    in_netns(lab.attacker.name(), move || {
        scanwatch_tests::scanner::udp_scan(target.into(), 1..=60, e2e::SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();
    expect_alert(&agent, &attacker, &["udp_scan"], "UDP scan");
    attacker_syn_scan(&lab);
    expect_alert(&agent, &attacker, &["port_scan"], "SYN scan");
    std::thread::sleep(Duration::from_millis(300));
    let findings = agent.alerts().len() as u64;
    assert!(findings >= 2, "{findings}");
    let m = agent.wait_for_metrics(Duration::from_secs(6), |m| {
        sample(m, "scanwatch_crowdsec_lapi_up{role=\"publish\"}") == 0
    });
    assert_eq!(sample(&m, "scanwatch_crowdsec_alerts_queued"), 1, "{m}");
    assert_eq!(
        sample(&m, "scanwatch_crowdsec_alerts_dropped_total"),
        findings - 1,
        "{m}"
    );
    lapi.start_again().unwrap();
    let ours = |lapi: &Lapi| -> Vec<String> {
        lapi.alerts()
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a["scenario"].as_str().map(str::to_owned))
            .filter(|s| s.starts_with("scanwatch/"))
            .collect()
    };
    assert!(
        poll_until(Duration::from_secs(15), Duration::from_millis(500), || {
            !ours(&lapi).is_empty()
        }),
        "the queued finding never arrived; agent log:\n{}",
        agent.log()
    );
    assert_eq!(
        ours(&lapi),
        ["scanwatch/port_scan"],
        "only the newest finding was kept"
    );
}
