//! What scanwatch ships for operators, checked: the Grafana dashboard
//! (`packaging/grafana/scanwatch-dashboard.json`) and the Prometheus alert rules
//! (`packaging/prometheus/scanwatch-rules.yml`). `promtool` checks and unit-tests the rules; a
//! real Prometheus scrapes the real daemon in a lab during a scan and a drop-mode block, every
//! panel's query must return data, and the scan must fire `ScanwatchScanDetected`.
//!
//! The dashboard is read from its JSON, so a new panel is checked without touching this file.
//! Tests that need prometheus or promtool print a NOTICE and pass when it is missing, except
//! under `CI=true` (CI installs Debian's `prometheus`, which ships promtool).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    attached,
    daemon::Daemon,
    e2e::{
        METRICS_WITHIN, SCAN_BUDGET, attacker_port_scan_alert, config_file, connect, expect_alert,
        lab,
    },
    metrics::{sample, total},
    netns::in_netns,
    process::{TempDir, describe, tool_or_skip},
    prometheus::{Prometheus, values},
    scanner,
};
use serde_json::Value;

/// How long Prometheus gets to scrape the daemon for the first time.
const FIRST_SCRAPE_WITHIN: Duration = Duration::from_secs(30);
/// How long every panel's query gets to return data, or a rule to fire, after the scan (a
/// scrape and a rule evaluation each second).
const DATA_WITHIN: Duration = Duration::from_secs(20);

/// A file under `packaging/`.
fn packaging(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(path)
}

/// The dashboard JSON.
fn dashboard() -> Value {
    let path = packaging("grafana/scanwatch-dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel of the dashboard, rows' nested panels included, rows themselves excluded.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'v>(list: &'v Value, out: &mut Vec<&'v Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                out.push(panel);
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, query) for every query of every panel.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect()
}

/// A panel query as Grafana sends it, with the dashboard's variables filled in: every agent,
/// a 5-minute rate window (the whole test fits in it), a one-hour range.
fn instant(expr: &str) -> String {
    let q = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "5m")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*");
    assert!(
        !q.contains('$'),
        "a variable this test does not know: {expr}"
    );
    q
}

#[test]
fn dashboard_is_importable_and_every_panel_has_a_query() {
    let dash = dashboard();
    for key in ["uid", "title"] {
        assert!(dash[key].is_string(), "the dashboard needs a {key}");
    }
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    // The data source is a variable, so the same file imports through the UI and provisions
    // from /usr/share/scanwatch with no `${DS_...}` input left unresolved.
    let variables = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a datasource variable"
    );
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    let all = panels(&dash);
    assert!(all.len() >= 10, "{} panels", all.len());
    for panel in all {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "{title}: duplicate id"
        );
        let grid = |key: &str| panel["gridPos"][key].as_u64().expect("gridPos");
        let (x, y, w, h) = (grid("x"), grid("y"), grid("w"), grid("h"));
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(
                cells.insert(cell),
                "{title}: overlaps another panel at {cell:?}"
            );
        }
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "{title}: no query");
        for t in std::iter::once(panel).chain(targets) {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{title}: every query uses the datasource variable"
            );
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                expr.contains("scanwatch_"),
                "{title}: query reads no scanwatch metric: {expr}"
            );
            instant(expr);
        }
    }
    // The panels, by the metric they read.
    let all_queries: String = queries(&dash).into_iter().map(|(_, q)| q + "\n").collect();
    for metric in [
        "scanwatch_detections_total",
        "scanwatch_top_source_probes",
        "scanwatch_packets_total",
        "scanwatch_dropped_packets_total",
        "scanwatch_tracker_fill_ratio",
        "scanwatch_flow_fill_ratio",
        "scanwatch_events_dropped_total",
        "scanwatch_event_to_alert_latency_seconds_bucket",
        "scanwatch_blocks_refused_total",
        "scanwatch_protected_set_available",
        "scanwatch_attach_info",
    ] {
        assert!(all_queries.contains(metric), "no panel shows {metric}");
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    if !tool_or_skip("promtool", "alert_rules_pass_promtool_check_and_unit_tests") {
        return;
    }
    let dir = packaging("prometheus");
    for args in [
        &["check", "rules", "scanwatch-rules.yml"][..],
        &["test", "rules", "scanwatch-rules.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("running promtool");
        assert!(
            out.status.success(),
            "promtool {}: {}\n{}{}",
            args.join(" "),
            describe(out.status),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Polls `query` until it returns at least one number (not NaN), up to `deadline`; the last
/// result either way.
fn query_until_data(prometheus: &Prometheus<'_>, query: &str, deadline: Instant) -> String {
    loop {
        let answer = prometheus.query(query);
        if let Ok(result) = &answer
            && values(result).iter().any(|v| !v.is_nan())
        {
            return String::new();
        }
        if Instant::now() >= deadline {
            return format!("{answer:?}");
        }
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_dashboard_panel_shows_data_from_a_live_agent() {
    if !tool_or_skip(
        "prometheus",
        "every_dashboard_panel_shows_data_from_a_live_agent",
    ) {
        return;
    }
    let lab = lab();
    let dir = TempDir::new("observability").unwrap();
    // Drop mode, so the drop and block panels have data; the benign host scans too but is on
    // never_block, so the refusal panel has data; top_sources feeds the top-sources panel.
    let config = config_file(
        &dir,
        &format!(
            "mode = \"drop\"\ntop_sources = 5\nnever_block = [\"{}/32\"]\n",
            lab.benign_v4()
        ),
    );
    let daemon = Daemon::start_with(&lab, &["--config", &config]).expect("starting scanwatch");
    let mut prometheus = Prometheus::start(&lab, daemon.metrics_addr(), &[]).unwrap();
    prometheus.wait_scraping(FIRST_SCRAPE_WITHIN).unwrap();

    let alert = attacker_port_scan_alert(&lab, &daemon, "observability");
    assert_eq!(alert["action"], "block", "{alert}");
    let target = lab.target_v4();
    let dropped = in_netns(lab.attacker.name(), move || {
        scanner::syn_scan(target, 1000..=1019, SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();
    assert_eq!(dropped, 20);
    in_netns(lab.benign.name(), move || {
        scanner::syn_scan(target, 1..=60, SCAN_BUDGET)
    })
    .unwrap()
    .unwrap();
    let refused = expect_alert(
        &daemon,
        &lab.benign_v4().to_string(),
        &["port_scan"],
        "never_block scanner",
    );
    assert_eq!(refused["not_blocked"], "never_block", "{refused}");
    let text = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        total(m, "scanwatch_dropped_packets_total") > 0
            && sample(m, "scanwatch_blocks_refused_total{reason=\"never_block\"}") > 0
    });
    assert!(
        total(&text, "scanwatch_dropped_packets_total") > 0,
        "the blocked scanner's later probes are dropped"
    );

    let deadline = Instant::now() + DATA_WITHIN;
    let dash = dashboard();
    let empty: Vec<String> = queries(&dash)
        .into_iter()
        .filter_map(|(title, expr)| {
            let answer = query_until_data(&prometheus, &instant(&expr), deadline);
            (!answer.is_empty()).then(|| format!("{title}: {expr}\n  -> {answer}"))
        })
        .collect();
    assert!(
        empty.is_empty(),
        "panels with no data after a scan and a block:\n{}\n\nmetrics:\n{text}",
        empty.join("\n")
    );
    let status = prometheus.stop().unwrap();
    assert!(status.success(), "prometheus: {}", describe(status));
}

#[test]
fn scan_detected_rule_fires_in_a_live_prometheus() {
    if !tool_or_skip(
        "prometheus",
        "scan_detected_rule_fires_in_a_live_prometheus",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let rules = packaging("prometheus/scanwatch-rules.yml");
    let mut prometheus = Prometheus::start(&lab, daemon.metrics_addr(), &[&rules]).unwrap();
    prometheus.wait_scraping(FIRST_SCRAPE_WITHIN).unwrap();

    // The shipped file loads whole into a real Prometheus, every rule healthy.
    let groups = prometheus.rule_groups().unwrap();
    let rules_loaded: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(rules_loaded.len() >= 10, "{groups:?}");
    for rule in &rules_loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    attacker_port_scan_alert(&lab, &daemon, "rule");
    let deadline = Instant::now() + DATA_WITHIN;
    let firing = loop {
        let alerts = prometheus.alerts().unwrap();
        let firing: Vec<Value> = alerts
            .into_iter()
            .filter(|a| a["state"] == "firing")
            .collect();
        if firing.iter().any(|a| {
            a["labels"]["alertname"] == "ScanwatchScanDetected"
                && a["labels"]["kind"] == "port_scan"
        }) || Instant::now() >= deadline
        {
            break firing;
        }
        thread::sleep(Duration::from_millis(500));
    };
    let names: BTreeSet<&str> = firing
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(
        names.contains("ScanwatchScanDetected"),
        "ScanwatchScanDetected did not fire within {DATA_WITHIN:?} of the alert: {firing:#?}\n{}",
        prometheus.log()
    );
    // A healthy agent in a lab raises nothing else (no lost events, attached, protected set
    // readable, up).
    assert_eq!(
        names,
        BTreeSet::from(["ScanwatchScanDetected"]),
        "{firing:#?}"
    );
    let alert = firing
        .iter()
        .find(|a| a["labels"]["alertname"] == "ScanwatchScanDetected")
        .unwrap();
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("port_scan")),
        "{alert}"
    );
    let status = prometheus.stop().unwrap();
    assert!(status.success(), "prometheus: {}", describe(status));
}

/// How long the tracked-sources and flow gauges get to show a change: the insert counters are
/// folded in every second; a full walk comes at least every 60 s.
const GAUGES_WITHIN: Duration = Duration::from_secs(70);

/// The tracked-sources and flow gauges count exactly the entries of the kernel's maps (read by
/// this test through the attached program), whether they come from a full walk or, between
/// walks, from the insert counters.
#[test]
fn tracked_sources_and_flow_gauges_equal_the_kernel_maps_entries() {
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let (ns, iface) = (lab.target.name(), lab.target_if.as_str());
    // Sources: two scanners (their second probe passes the admission filter).
    let target = lab.target_v4();
    for scanner_ns in [lab.attacker.name(), lab.benign.name()] {
        let sent = in_netns(scanner_ns, move || {
            scanner::syn_scan(target, 1..=20, SCAN_BUDGET)
        })
        .unwrap()
        .expect("SYN scan");
        assert_eq!(sent, 20);
    }
    // Flows: the target opens connections (refused) to the attacker.
    for port in [7001, 7002, 7003] {
        let _refused = connect(
            ns,
            SocketAddr::from((lab.attacker_v4(), port)),
            Duration::from_secs(2),
        );
    }
    let tracker = attached::tracker(ns, iface).unwrap().map;
    let flows = attached::flows(ns, iface).unwrap().map;
    let exact = || {
        (
            tracker.keys().filter_map(Result::ok).count() as u64,
            flows.keys().filter_map(Result::ok).count() as u64,
        )
    };
    let (sources, opened) = exact();
    assert!(sources >= 2, "both scanners are tracked: {sources}");
    assert!(opened >= 3, "the target's connections are flows: {opened}");
    let text = daemon.wait_for_metrics(GAUGES_WITHIN, |m| {
        (
            sample(m, "scanwatch_tracked_sources"),
            sample(m, "scanwatch_flows"),
        ) == exact()
    });
    assert_eq!(
        (
            sample(&text, "scanwatch_tracked_sources"),
            sample(&text, "scanwatch_flows"),
        ),
        exact(),
        "gauges (tracked sources, flows) against the kernel maps' entries"
    );
}
