//! The Debian package under a real systemd: the .deb installed (`dpkg --root`) into a minimal
//! Debian system (debootstrap, cached under `target/systemd-root/`) that boots under its own
//! systemd in a systemd-nspawn container, inside a lab namespace whose veth is the container's
//! only interface. There the packaged unit, as shipped, with only the packaged configuration's
//! `interfaces` line changed:
//!
//! - is installed disabled and stopped;
//! - starts (`Type=notify`: active only once the agent has sent READY=1) and attaches XDP and TC
//!   egress to the container's interface;
//! - reports a SYN scan from the lab's attacker in the alert log the packaged configuration
//!   names, and a connect scan the container sends as a transient unit with the process, user,
//!   cgroup and unit behind it;
//! - reloads (check, then SIGHUP) without restarting;
//! - detaches both programs on stop and exits successfully;
//! - and, switched to drop mode, keeps a manual block across a restart (pinned in bpffs) and
//!   drops the blocked source's packets.
//!
//! The first run makes the tree (a few minutes); later runs boot a copy of the cached one in
//! seconds. Needs root; installs debootstrap and systemd-container when they are missing.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    deb, debootstrap,
    e2e::{NMAP_FAST, NMAP_TIMEOUT, attacker_syn_scan, lab},
    lab::Lab,
    netns::in_netns,
    nspawn::{self, Container, Rootfs},
    process::{on_path, poll_until},
    require_root, scanner,
};
use serde_json::Value;

/// The package's unit.
const UNIT: &str = "scanwatch";
/// The configuration the package installs and the unit reads.
const CONFIG: &str = "/etc/scanwatch/scanwatch.toml";
/// How soon after a scan its alert must be in the log.
const ALERT_WITHIN: Duration = Duration::from_secs(5);
/// How soon the agent's log shows a reload, and the unit is active again, after `systemctl
/// reload` returns.
const LOGGED_WITHIN: Duration = Duration::from_secs(5);
/// What the agent logs when SIGHUP arrives.
const RELOAD_LOG: &str = "SIGHUP: reloading configuration";
/// The `--reason` of the manual block, shown as its note by `scanwatch list`.
const BLOCK_NOTE: &str = "systemd-test";
/// How far apart two `scanwatch list` readings of one block's times may be: the kernel keeps
/// them on the monotonic clock, and each reading converts them to wall time afresh (a few
/// milliseconds apart on a busy machine).
const SAME_TIME: Duration = Duration::from_secs(1);

#[test]
fn packaged_unit_starts_detects_reloads_stops_and_keeps_blocks_under_systemd() {
    require_root();
    nspawn::require_tools();
    let began = Instant::now();
    let deb = deb::path().unwrap();
    let depends = deb::depends(&deb).unwrap();
    let tree = debootstrap::tree(&depends).unwrap();
    let lab = lab();
    let rootfs = Rootfs::new(&tree).unwrap();
    rootfs.install(&deb).unwrap();
    let sys = Container::boot(rootfs, &lab.target).unwrap();
    eprintln!(
        "container booted {:.1?} after the test began",
        began.elapsed()
    );

    assert_eq!(
        systemctl_state(&sys, "is-enabled"),
        "disabled",
        "installed, not enabled"
    );
    assert_eq!(
        systemctl_state(&sys, "is-active"),
        "inactive",
        "installed, not started"
    );

    let packaged = sys.read(CONFIG).unwrap();
    let config = set_setting(&packaged, "interfaces", &format!("[\"{}\"]", lab.target_if));
    sys.write(CONFIG, &config).unwrap();
    let alert_log = alert_log(&config);

    start(&sys, &lab);

    // Detects: a SYN scan from the attacker, in the packaged alert log.
    let tool = scan(&lab);
    let alert = wait_for_alert(&sys, &alert_log, &lab.attacker_v4().to_string());
    assert_eq!(alert["kind"], "port_scan", "{alert}");
    assert_eq!(alert["interface"], lab.target_if.as_str(), "{alert}");
    if let Some(tool) = tool {
        assert_eq!(alert["tool"]["name"], tool, "{alert}");
    }

    // Names who scans from the host: a connect scan run as a transient unit names the process,
    // its user, the cgroup and the unit. The packaged unit's `ProtectProc=invisible` hides other
    // users' processes from the agent, so there is no executable, command line or parent (the
    // detections guide says so, and what a drop-in adds).
    egress_scan(&sys, &lab);
    let alert = wait_for_alert(&sys, &alert_log, &lab.target_v4().to_string());
    assert_eq!(alert["direction"], "egress", "{alert}");
    let process = &alert["process"];
    assert_eq!(process["name"], "bash", "{alert}");
    assert!(process["pid"].as_u64().is_some_and(|p| p > 1), "{alert}");
    assert_eq!(process["user"]["name"], "root", "{alert}");
    assert_eq!(process["unit"], EGRESS_UNIT, "{alert}");
    assert!(
        process["cgroup"]
            .as_str()
            .is_some_and(|c| c.ends_with(&format!("/{EGRESS_UNIT}"))),
        "{alert}"
    );
    for hidden in ["executable", "command_line", "parent"] {
        assert!(
            process[hidden].is_null(),
            "{hidden} under ProtectProc=invisible: {alert}"
        );
    }

    // Reloads: the same process gets SIGHUP and stays active.
    let pid = main_pid(&sys);
    let reloads = sys.journal(UNIT).matches(RELOAD_LOG).count();
    if let Err(e) = sys.run(&["systemctl", "reload", UNIT]) {
        panic!("systemctl reload failed: {e:#}\n{}", sys.journal(UNIT));
    }
    assert!(
        poll_until(LOGGED_WITHIN, Duration::from_millis(100), || {
            sys.journal(UNIT).matches(RELOAD_LOG).count() > reloads
        }),
        "the agent did not log `{RELOAD_LOG}` after systemctl reload:\n{}",
        sys.journal(UNIT)
    );
    // The agent sends RELOADING=1, then READY=1 once reloaded: `reloading` until then.
    assert!(
        poll_until(LOGGED_WITHIN, Duration::from_millis(100), || {
            systemctl_state(&sys, "is-active") == "active"
        }),
        "not active again after reload: {}\n{}",
        systemctl_state(&sys, "is-active"),
        sys.journal(UNIT)
    );
    assert_eq!(main_pid(&sys), pid, "reload restarted the agent");
    assert!(lab.target_has_xdp().unwrap(), "XDP attached after reload");

    // Stops cleanly: nothing left on the interface, a successful exit.
    stop(&sys, &lab);

    // Keeps blocks: a manual block, enforced in drop mode, survives a restart.
    let config = set_setting(&config, "mode", "\"drop\"");
    sys.write(CONFIG, &config).unwrap();
    start(&sys, &lab);
    let attacker = lab.attacker_v4();
    assert!(
        attacker_pings(&lab),
        "the attacker reaches the container in drop mode before any block"
    );
    sys.run(&[
        "scanwatch",
        "block",
        &attacker.to_string(),
        "--ttl",
        "1h",
        "--reason",
        BLOCK_NOTE,
    ])
    .unwrap();
    let source = format!("{attacker}/32");
    let before = block(&sys, &source).expect("`scanwatch list` shows the new block");
    assert_eq!(before["note"], BLOCK_NOTE, "{before}");
    let pid = main_pid(&sys);
    if let Err(e) = sys.run(&["systemctl", "restart", UNIT]) {
        panic!("systemctl restart failed: {e:#}\n{}", sys.journal(UNIT));
    }
    assert_eq!(
        systemctl_state(&sys, "is-active"),
        "active",
        "after restart"
    );
    assert_ne!(main_pid(&sys), pid, "restart started a new agent");
    let after = block(&sys, &source).unwrap_or_else(|| {
        panic!(
            "the block of {source} did not survive the restart: {}",
            sys.run(&["scanwatch", "list", "--json"])
                .unwrap_or_default()
        )
    });
    for field in ["reason", "note"] {
        assert_eq!(after[field], before[field], "{field}: {before} -> {after}");
    }
    for field in ["since", "expires"] {
        let shift = time_shift(&before[field], &after[field]);
        assert!(
            shift < SAME_TIME,
            "{field} moved by {shift:?} across the restart: {before} -> {after}"
        );
    }
    assert!(
        !attacker_pings(&lab),
        "the restarted agent drops the blocked attacker"
    );
    let dropped = block(&sys, &source).map_or(0, |b| b["packets_dropped"].as_u64().unwrap_or(0));
    assert!(dropped > 0, "the block counts the packets it dropped");

    // Powers off by itself, stopping the agent on the way.
    sys.poweroff().unwrap();
    assert!(
        !lab.target_has_xdp().unwrap(),
        "XDP detached at shutdown: {}",
        lab.target_link().unwrap()
    );
    eprintln!("systemd unit test took {:.1?}", began.elapsed());
}

/// `systemctl VERB scanwatch`'s answer (`active`, `inactive`, `disabled`, ...), whatever its
/// exit status.
fn systemctl_state(sys: &Container, verb: &str) -> String {
    let out = sys.output(&["systemctl", verb, UNIT]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The agent's process id, as systemd knows it (0 when it is not running).
fn main_pid(sys: &Container) -> u32 {
    let out = sys
        .run(&["systemctl", "show", "--property=MainPID", "--value", UNIT])
        .unwrap();
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("MainPID: {out:?}"))
}

/// `systemctl start`, which returns once the agent has sent READY=1 (`Type=notify`); then the
/// unit must be active with XDP and TC egress attached.
fn start(sys: &Container, lab: &Lab) {
    if let Err(e) = sys.run(&["systemctl", "start", UNIT]) {
        panic!("systemctl start failed: {e:#}\n{}", sys.journal(UNIT));
    }
    assert_eq!(
        systemctl_state(sys, "is-active"),
        "active",
        "{}",
        sys.journal(UNIT)
    );
    assert!(
        lab.target_has_xdp().unwrap() && lab.target_egress_programs().unwrap() > 0,
        "active only once XDP and TC egress are attached: {}",
        lab.target_link().unwrap()
    );
}

/// `systemctl stop`: the agent exits successfully and leaves nothing attached.
fn stop(sys: &Container, lab: &Lab) {
    if let Err(e) = sys.run(&["systemctl", "stop", UNIT]) {
        panic!("systemctl stop failed: {e:#}\n{}", sys.journal(UNIT));
    }
    assert_eq!(systemctl_state(sys, "is-active"), "inactive", "after stop");
    let result = sys
        .run(&["systemctl", "show", "--property=Result", "--value", UNIT])
        .unwrap();
    assert_eq!(result.trim(), "success", "{}", sys.journal(UNIT));
    assert!(
        !lab.target_has_xdp().unwrap() && lab.target_egress_programs().unwrap() == 0,
        "both programs detached on stop: {}",
        lab.target_link().unwrap()
    );
}

/// A SYN scan of 60 ports from the attacker: nmap when it is installed (its name, which the
/// alert's tool attribution should give), else the tests' own scanner (`None`).
fn scan(lab: &Lab) -> Option<&'static str> {
    if !on_path("nmap") {
        attacker_syn_scan(lab);
        return None;
    }
    let target = lab.target_v4().to_string();
    let mut args = vec!["-sS", "-p", "1-60", "-Pn"];
    args.extend(NMAP_FAST);
    args.push(&target);
    lab.attacker.nmap(&args, NMAP_TIMEOUT);
    Some("nmap")
}

/// The transient unit the egress scan runs in.
const EGRESS_UNIT: &str = "scan-egress.service";

/// A connect scan of 100 closed ports of the attacker from inside the container, through
/// bash's `/dev/tcp` (the tree has no scanner), as the transient unit [`EGRESS_UNIT`], paced to
/// last a second or so.
fn egress_scan(sys: &Container, lab: &Lab) {
    let script = format!(
        "for p in $(seq 1 100); do (exec 3<>/dev/tcp/{}/$p) 2>/dev/null; sleep 0.01; done",
        lab.attacker_v4()
    );
    if let Err(e) = sys.run(&[
        "systemd-run",
        "--unit",
        EGRESS_UNIT,
        "--wait",
        "--collect",
        "--quiet",
        "bash",
        "-c",
        &script,
    ]) {
        panic!(
            "the egress scan failed: {e:#}\n{}",
            sys.journal(EGRESS_UNIT)
        );
    }
}

/// The first port_scan alert naming `source` in the container's `alert_log`, within
/// [`ALERT_WITHIN`]; fails showing the log and the agent's journal otherwise.
fn wait_for_alert(sys: &Container, alert_log: &str, source: &str) -> Value {
    let find = || {
        sys.read(alert_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|a| a["source"] == source && a["kind"] == "port_scan")
    };
    let deadline = Instant::now() + ALERT_WITHIN;
    loop {
        if let Some(alert) = find() {
            return alert;
        }
        assert!(
            Instant::now() < deadline,
            "no port_scan alert naming {source} in {alert_log} within {ALERT_WITHIN:?}:\n{}\n{}",
            sys.read(alert_log).unwrap_or_else(|e| format!("{e:#}")),
            sys.journal(UNIT)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `scanwatch list --json`'s row for `source`, if any.
fn block(sys: &Container, source: &str) -> Option<Value> {
    let list = sys.run(&["scanwatch", "list", "--json"]).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&list)
        .unwrap_or_else(|e| panic!("scanwatch list --json: {e}: {list}"));
    rows.into_iter().find(|row| row["source"] == source)
}

/// How far apart two RFC 3339 times of `scanwatch list --json` are.
fn time_shift(a: &Value, b: &Value) -> Duration {
    let parse = |v: &Value| {
        let text = v.as_str().unwrap_or_else(|| panic!("a time: {v}"));
        humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let (a, b) = (parse(a), parse(b));
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

/// Whether the attacker's ping to the container is answered (five tries, 500 ms each).
fn attacker_pings(lab: &Lab) -> bool {
    let target: Ipv4Addr = lab.target_v4();
    in_netns(lab.attacker.name(), move || {
        (0..5).any(|_| scanner::ping(target, Duration::from_millis(500)).unwrap_or(false))
    })
    .unwrap()
}

/// `text` with its one top-level `key = ...` line (before the first `[table]`) set to
/// `key = value`; fails unless there is exactly one such line, so nothing else of the packaged
/// file changes.
fn set_setting(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let mut in_table = false;
    let mut found = 0;
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.lines() {
        in_table |= line.starts_with('[');
        if !in_table && line.starts_with(&prefix) {
            found += 1;
            out.push_str(&prefix);
            out.push_str(value);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(
        found, 1,
        "the configuration should have one top-level `{key} = ` line"
    );
    out
}

/// The configuration's `alert_log`: where the agent writes its alerts.
fn alert_log(config: &str) -> String {
    let parsed: toml::Table = toml::from_str(config).expect("the configuration is TOML");
    parsed
        .get("alert_log")
        .and_then(toml::Value::as_str)
        .expect("the packaged configuration writes alerts to a file (alert_log)")
        .to_owned()
}
