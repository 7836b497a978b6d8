//! End-to-end tests of the process behind an egress scan: each scanner runs on the monitored
//! host (the lab's target) inside a cgroup the test makes — named like a systemd service, or
//! like a container runtime's scope — and scans the lab's attacker host, whose closed ports
//! answer with resets. The egress alert must name the scanner's process, its user and its
//! cgroup with the unit or container, and the tool its probes look like (the tool matcher on
//! the headers of the socket's first packet: nmap's raw probes, masscan and zmap are named; a
//! connect() scan sends the kernel's own SYNs and stays `unknown`); a scanner that renames itself
//! like a daemon is still shown by its executable and command line; a benign client in another
//! cgroup that opens many successful connections must raise nothing.
//!
//! Raw IPv4 sockets (nmap -sS), packet sockets (masscan, zmap) and connect() (nmap -sT, a
//! Python script) each have a test. Each scanner is paced to run for a second or more, as real
//! scans do: the executable, command line and parent are read from `/proc` while the process
//! lives, and a lab scan of closed ports would otherwise end before the agent writes its
//! finding. Every test builds its own lab, cgroup and daemon and
//! removes them on exit, also on failure. A missing tool skips its test with a NOTICE, except
//! under `CI=true`, where it fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use scanwatch::finding::process::procfs::cgroup2_mount;
use scanwatch_tests::{
    daemon::Daemon,
    e2e::{NMAP_FAST, expect_alert_matching},
    lab::Lab,
    metrics::sample,
    process::tool_or_skip,
    require_root,
    services::Service,
};
use serde_json::Value;

/// A container id for the scope named like Docker's.
const CONTAINER_ID: &str = "5ca77e4b0c1d2e3f40516273849a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6";
/// Debian's python3, which user nobody can run (a pyenv shim under `/root` it cannot).
const PYTHON: &str = "/usr/bin/python3";
/// The user the unprivileged scanners run as (nobody).
const NOBODY: u32 = 65534;
/// The command prefix that runs a program as [`NOBODY`], with no supplementary groups.
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];
/// Bound on one scanner's run.
const SCAN_LIMIT: Duration = Duration::from_secs(60);
/// The Python connect scanner: ports 1–150 of the address in argv[1], one each 10 ms.
const PY_SCANNER: &str = "import socket,sys,time\n\
    for p in range(1,151):\n\
    \x20s=socket.socket(); s.settimeout(0.5)\n\
    \x20try: s.connect((sys.argv[1],p))\n\
    \x20except OSError: pass\n\
    \x20s.close(); time.sleep(0.01)\n";
/// [`PY_SCANNER`] that first renames itself `sshd` (`prctl(PR_SET_NAME)`), as a scanner hiding
/// among daemons would.
const PY_RENAMED_SCANNER: &str = "import ctypes\n\
    ctypes.CDLL(None).prctl(15, b'sshd', 0, 0, 0)\n";
/// The benign client: 300 successful connections to the address and port in argv[1..].
const PY_CLIENT: &str = "import socket,sys\n\
    for _ in range(300):\n\
    \x20s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); s.close()\n";

/// A cgroup v2 directory the test made, with its processes killed and the directory removed
/// on drop.
struct Cgroup {
    dir: PathBuf,
    /// Its path from the cgroup v2 root, as the alert names it.
    path: String,
}

impl Cgroup {
    /// `<root>/scanwatch-test-<pid>-<tag>.slice/<leaf>`.
    fn new(tag: &str, leaf: &str) -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = cgroup2_mount(&mountinfo).expect("a cgroup v2 hierarchy");
        let slice = format!("scanwatch-test-{}-{tag}.slice", std::process::id());
        let dir = root.join(&slice).join(leaf);
        fs::create_dir_all(&dir).expect("making the test's cgroup");
        Self {
            dir,
            path: format!("/{slice}/{leaf}"),
        }
    }

    /// Runs `program args` in network namespace `ns`, inside this cgroup, to completion
    /// (killed after [`SCAN_LIMIT`]); its combined output.
    fn run(&self, ns: &str, program: &[&str]) -> String {
        let procs = self.dir.join("cgroup.procs");
        let started = Instant::now();
        let out = Command::new("bash")
            .args([
                "-c",
                "echo $$ > \"$0\" && exec timeout -k 2 \"$1\" ip netns exec \"$2\" \"${@:3}\"",
            ])
            .arg(&procs)
            .arg(SCAN_LIMIT.as_secs().to_string())
            .arg(ns)
            .args(program)
            .stdin(Stdio::null())
            .output()
            .expect("running the scanner");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{program:?} failed after {:?}: {text}",
            started.elapsed()
        );
        text
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        for dir in [
            self.dir.as_path(),
            self.dir.parent().unwrap_or(Path::new("/")),
        ] {
            for _ in 0..50 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The egress alert of `kinds` whose process has the name `name`.
fn egress_alert(daemon: &Daemon<'_>, what: &str, kinds: &[&str], name: &str) -> Value {
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    let name = name.to_owned();
    expect_alert_matching(daemon, what, move |a| {
        a["direction"] == "egress"
            && kinds.iter().any(|k| a["kind"] == k.as_str())
            && a["process"]["name"] == name.as_str()
    })
}

/// Checks what every scanner's alert names: the process (id, executable, command line,
/// parent), the user, and the test's cgroup.
fn assert_names(alert: &Value, executable: &str, user: (u32, &str), cgroup: &Cgroup) {
    let p = &alert["process"];
    assert!(p["pid"].as_u64().is_some_and(|pid| pid > 1), "pid: {alert}");
    assert!(
        p["executable"]
            .as_str()
            .is_some_and(|e| e.ends_with(executable)),
        "executable {executable}: {alert}"
    );
    assert!(
        p["command_line"].as_str().is_some_and(|c| !c.is_empty()),
        "command line: {alert}"
    );
    assert!(p["parent"]["pid"].as_u64().is_some(), "parent: {alert}");
    assert_eq!(p["user"]["id"], user.0, "{alert}");
    assert_eq!(p["user"]["name"], user.1, "{alert}");
    assert_eq!(p["cgroup"], cgroup.path.as_str(), "{alert}");
}

/// A lab of its own, as root.
fn lab() -> Lab {
    require_root();
    Lab::new().expect("building the lab")
}

/// The attacker's MAC address: the next hop masscan and zmap must be given.
fn attacker_mac(lab: &Lab) -> String {
    lab.attacker
        .exec(&[
            "cat",
            &format!("/sys/class/net/{}/address", lab.attacker_if),
        ])
        .expect("reading the attacker's MAC address")
        .trim()
        .to_owned()
}

#[test]
fn nmap_syn_scan_in_a_service_names_nmap_root_and_the_unit() {
    if !tool_or_skip(
        "nmap",
        "nmap_syn_scan_in_a_service_names_nmap_root_and_the_unit",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("nmap-syn", "nmap-syn.service");
    let attacker = lab.attacker_v4().to_string();
    let mut args = vec!["nmap", "-sS", "--scan-delay", "5ms", "-p", "1-200"];
    args.extend(NMAP_FAST);
    args.push(&attacker);
    cgroup.run(lab.target.name(), &args);
    let alert = egress_alert(&daemon, "nmap -sS", &["port_scan"], "nmap");
    assert_names(&alert, "/nmap", (0, "root"), &cgroup);
    assert_eq!(
        alert["tool"]["name"], "nmap",
        "nmap's raw SYN probes: {alert}"
    );
    assert_eq!(alert["process"]["unit"], "nmap-syn.service", "{alert}");
    assert!(
        alert["process"]["command_line"]
            .as_str()
            .is_some_and(|c| c.contains("-sS")),
        "{alert}"
    );
}

#[test]
fn nmap_connect_scan_in_a_container_names_nobody_and_the_container() {
    if !tool_or_skip(
        "nmap",
        "nmap_connect_scan_in_a_container_names_nobody_and_the_container",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("nmap-connect", &format!("docker-{CONTAINER_ID}.scope"));
    let attacker = lab.attacker_v4().to_string();
    let mut args = AS_NOBODY.to_vec();
    args.extend([
        "nmap",
        "-sT",
        "--unprivileged",
        "--scan-delay",
        "5ms",
        "-p",
        "1-200",
    ]);
    args.extend(NMAP_FAST);
    args.push(&attacker);
    cgroup.run(lab.target.name(), &args);
    let alert = egress_alert(&daemon, "nmap -sT", &["port_scan"], "nmap");
    assert_names(&alert, "/nmap", (NOBODY, "nobody"), &cgroup);
    // connect() sends the kernel's own SYNs: no tool's traits, on the wire as at ingress.
    assert_eq!(alert["tool"]["name"], "unknown", "{alert}");
    assert_eq!(alert["process"]["container"]["id"], CONTAINER_ID, "{alert}");
    assert_eq!(
        alert["process"]["container"]["runtime"], "docker",
        "{alert}"
    );
    assert!(alert["process"]["unit"].is_null(), "{alert}");
}

#[test]
fn python_connect_scanner_names_python_nobody_and_the_unit() {
    if !tool_or_skip(
        PYTHON,
        "python_connect_scanner_names_python_nobody_and_the_unit",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("python", "py-scan.service");
    let attacker = lab.attacker_v4().to_string();
    cgroup.run(
        lab.target.name(),
        &[&AS_NOBODY[..], &[PYTHON, "-c", PY_SCANNER, &attacker]].concat(),
    );
    let alert = egress_alert(
        &daemon,
        "a Python connect scanner",
        &["port_scan"],
        "python3",
    );
    assert_names(&alert, "/python3.11", (NOBODY, "nobody"), &cgroup);
    assert_eq!(alert["process"]["unit"], "py-scan.service", "{alert}");
    assert_eq!(alert["tool"]["name"], "unknown", "{alert}");
}

#[test]
fn a_scanner_renamed_like_a_daemon_is_shown_by_its_executable_and_command_line() {
    if !tool_or_skip(
        PYTHON,
        "a_scanner_renamed_like_a_daemon_is_shown_by_its_executable_and_command_line",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("renamed", "renamed.service");
    let attacker = lab.attacker_v4().to_string();
    let script = format!("{PY_RENAMED_SCANNER}{PY_SCANNER}");
    cgroup.run(
        lab.target.name(),
        &[&AS_NOBODY[..], &[PYTHON, "-c", &script, &attacker]].concat(),
    );
    // The name is the one the process chose; what it runs is not.
    let alert = egress_alert(&daemon, "a renamed Python scanner", &["port_scan"], "sshd");
    assert_names(&alert, "/python3.11", (NOBODY, "nobody"), &cgroup);
    assert!(
        alert["process"]["command_line"]
            .as_str()
            .is_some_and(|c| c.starts_with(PYTHON) && c.contains("prctl")),
        "{alert}"
    );
}

#[test]
fn masscan_through_a_packet_socket_names_masscan_and_the_unit() {
    if !tool_or_skip(
        "masscan",
        "masscan_through_a_packet_socket_names_masscan_and_the_unit",
    ) {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("masscan", "masscan.service");
    let (attacker, target, mac) = (
        lab.attacker_v4().to_string(),
        lab.target_v4().to_string(),
        attacker_mac(&lab),
    );
    cgroup.run(
        lab.target.name(),
        &[
            "masscan",
            &attacker,
            "-p1-200",
            "--rate",
            "150",
            "--wait",
            "2",
            "--interface",
            &lab.target_if,
            "--router-mac",
            &mac,
            "--source-ip",
            &target,
        ],
    );
    let alert = egress_alert(&daemon, "masscan", &["port_scan"], "masscan");
    assert_names(&alert, "/masscan", (0, "root"), &cgroup);
    assert_eq!(alert["tool"]["name"], "masscan", "{alert}");
    assert_eq!(alert["process"]["unit"], "masscan.service", "{alert}");
}

#[test]
fn zmap_through_a_packet_socket_names_zmap_and_the_container() {
    if !tool_or_skip(
        "zmap",
        "zmap_through_a_packet_socket_names_zmap_and_the_container",
    ) {
        return;
    }
    let lab = lab();
    // The attacker answers for a whole /24 (every address is local to it): zmap sweeps one
    // port across it, and each closed port resets.
    let net = format!("10.{}.9.0/24", lab.k());
    lab.attacker
        .ip(&["route", "add", "local", &net, "dev", "lo"])
        .expect("a /24 local to the attacker");
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let cgroup = Cgroup::new("zmap", &format!("cri-containerd-{CONTAINER_ID}.scope"));
    let (target, mac) = (lab.target_v4().to_string(), attacker_mac(&lab));
    cgroup.run(
        lab.target.name(),
        &[
            "zmap",
            "-M",
            "tcp_synscan",
            "-p",
            "81",
            "-i",
            &lab.target_if,
            "-G",
            &mac,
            "-S",
            &target,
            "-b",
            "/dev/null",
            "-r",
            "200",
            "-c",
            "2",
            "-q",
            &net,
        ],
    );
    let alert = egress_alert(&daemon, "zmap", &["host_sweep", "port_scan"], "zmap");
    // zmap gives up root for nobody once its packet socket is open, before it sends: the user
    // is the one that sent the probes.
    assert_names(&alert, "/zmap", (NOBODY, "nobody"), &cgroup);
    assert_eq!(alert["tool"]["name"], "zmap", "{alert}");
    assert_eq!(alert["process"]["container"]["id"], CONTAINER_ID, "{alert}");
    assert_eq!(
        alert["process"]["container"]["runtime"], "containerd",
        "{alert}"
    );
}

#[test]
fn a_benign_client_in_another_cgroup_raises_nothing() {
    if !tool_or_skip(PYTHON, "a_benign_client_in_another_cgroup_raises_nothing") {
        return;
    }
    let lab = lab();
    let daemon = Daemon::start_shared(&lab, &[]).expect("starting scanwatch");
    let _service = Service::tcp(&lab.attacker, lab.attacker_v4().into(), &[8080])
        .expect("the attacker's open port");
    let cgroup = Cgroup::new("benign", "client.service");
    let attacker = lab.attacker_v4().to_string();
    cgroup.run(
        lab.target.name(),
        &[PYTHON, "-c", PY_CLIENT, &attacker, "8080"],
    );
    // Its sockets were recorded: the quiet is not for want of looking.
    let metrics = daemon.wait_for_metrics(Duration::from_secs(5), |m| {
        sample(m, "scanwatch_owners_recorded_total") >= 300
    });
    assert!(
        sample(&metrics, "scanwatch_owners_recorded_total") >= 300,
        "the client's 300 sockets were recorded"
    );
    thread::sleep(Duration::from_millis(1500));
    let alerts = daemon.alerts();
    assert!(
        alerts.is_empty(),
        "a benign client raised alerts: {alerts:#?}"
    );
}
