//! Least privilege, measured: the daemon run the way `packaging/systemd/scanwatch.service`
//! runs it — an unprivileged user holding only CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, seeing
//! only its own pin directory in bpffs — attaches, tells systemd it is ready, pings the
//! watchdog, detects a scan and detaches on SIGTERM; with any one of the three missing it
//! refuses to start and names what is missing, and the kernel refuses too (a root daemon
//! whose capabilities lack that one fails to load or attach). The unit itself passes
//! `systemd-analyze verify`.
//!
//! The user is `nobody` (present on every Debian system; nothing is created or removed).

use std::{
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::{Confinement, Daemon, daemon_binary},
    e2e::{attacker_port_scan_alert, lab},
    process::{TempDir, tool_or_skip},
};

/// The user the confined daemon runs as.
const USER: &str = "nobody";
/// The capabilities the unit grants (setpriv names), in the unit's order.
const CAPS: [&str; 3] = ["bpf", "net_admin", "perfmon"];

fn confinement(caps: &[&str], env: Vec<(String, String)>) -> Confinement {
    Confinement {
        user: USER.to_owned(),
        caps: caps.iter().map(|c| (*c).to_owned()).collect(),
        env,
    }
}

/// A `$NOTIFY_SOCKET` the confined user can write to.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
}

impl NotifySocket {
    fn new(dir: &TempDir, uid: u32) -> Self {
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self {
            socket,
            path: path.to_string_lossy().into_owned(),
        }
    }

    /// Waits up to `timeout` for a notification containing the line `line`; every line seen.
    fn expect(&self, line: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = msg.lines().any(|l| l == line);
                seen.extend(msg.lines().map(str::to_owned));
                if found {
                    return seen;
                }
            }
        }
        panic!("no {line} notification within {timeout:?}; seen: {seen:?}");
    }
}

#[test]
fn unprivileged_daemon_with_the_units_capabilities_attaches_detects_and_detaches() {
    let lab = lab();
    let notify_dir = TempDir::new("notify").unwrap();
    let uid = confinement(&CAPS, Vec::new()).ids().unwrap().0;
    let notify = NotifySocket::new(&notify_dir, uid);
    let env = vec![
        ("NOTIFY_SOCKET".to_owned(), notify.path.clone()),
        ("WATCHDOG_USEC".to_owned(), "200000".to_owned()),
    ];
    let mut daemon =
        Daemon::start_confined(&lab, confinement(&CAPS, env), &[]).expect("starting scanwatch");

    let seen = notify.expect("READY=1", Duration::from_secs(5));
    assert!(
        lab.target_has_xdp().unwrap() && lab.target_egress_programs().unwrap() > 0,
        "READY=1 ({seen:?}) only once XDP and TC egress are attached: {}",
        lab.target_link().unwrap()
    );
    notify.expect("WATCHDOG=1", Duration::from_secs(2));
    let pins: Vec<_> = std::fs::read_dir(daemon.pin_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        pins.iter().any(|p| p == scanwatch_common::maps::BLOCKS),
        "the unprivileged daemon pinned its block maps in its own directory: {pins:?}"
    );

    let alert = attacker_port_scan_alert(&lab, &daemon, "unprivileged daemon");
    assert_eq!(alert["interface"], lab.target_if.as_str(), "{alert}");

    daemon.signal(libc::SIGHUP).unwrap();
    let seen = notify.expect("RELOADING=1", Duration::from_secs(2));
    assert!(
        seen.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 carries MONOTONIC_USEC: {seen:?}"
    );
    notify.expect("READY=1", Duration::from_secs(2));

    let status = daemon.stop().unwrap();
    assert!(status.success(), "exit {status:?}; log:\n{}", daemon.log());
    notify.expect("STOPPING=1", Duration::from_secs(1));
    assert!(
        !lab.target_has_xdp().unwrap() && lab.target_egress_programs().unwrap() == 0,
        "both programs detached: {}",
        lab.target_link().unwrap()
    );
}

#[test]
fn unprivileged_daemon_missing_any_capability_refuses_to_start() {
    let lab = lab();
    for missing in CAPS {
        let caps: Vec<&str> = CAPS.into_iter().filter(|&c| c != missing).collect();
        let err = Daemon::start_confined(&lab, confinement(&caps, Vec::new()), &[])
            .expect_err(&format!("scanwatch started without CAP_{missing}"));
        let want = format!("missing: CAP_{}", missing.to_uppercase());
        assert!(
            format!("{err:#}").contains(&want),
            "without CAP_{missing} the error should say `{want}`: {err:#}"
        );
        assert!(!lab.target_has_xdp().unwrap(), "nothing left attached");
    }
}

/// The check above is not the only gate: uid 0 passes it, so a root daemon holding two of the
/// three capabilities reaches the kernel, which refuses: without CAP_BPF, map creation (EPERM);
/// without CAP_NET_ADMIN, loading the XDP program (EPERM); without CAP_PERFMON, the verifier's
/// check of the parser's packet-pointer arithmetic (EACCES).
#[test]
fn kernel_refuses_a_daemon_missing_any_capability() {
    let lab = lab();
    for missing in CAPS {
        let caps: Vec<&str> = CAPS.into_iter().filter(|&c| c != missing).collect();
        let confined = Confinement {
            user: "root".to_owned(),
            ..confinement(&caps, Vec::new())
        };
        let err = Daemon::start_confined(&lab, confined, &[]).expect_err(&format!(
            "the kernel accepted a daemon without CAP_{missing}"
        ));
        let text = format!("{err:#}");
        let refusal = match missing {
            "bpf" => "failed to create map",
            "net_admin" => "the kernel verifier rejected the XDP program (Operation not permitted",
            _ => "pointer arithmetic with it prohibited for !root",
        };
        assert!(
            text.contains("exited during start-up") && text.contains(refusal),
            "without CAP_{missing} the kernel should refuse with `{refusal}`: {text}"
        );
        assert!(!lab.target_has_xdp().unwrap(), "nothing left attached");
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if !tool_or_skip(
        "systemd-analyze",
        "systemd_unit_passes_systemd_analyze_verify",
    ) {
        return;
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/scanwatch.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    // verify checks that every Exec* program exists: point the unit at the built binary.
    let bin = daemon_binary().unwrap();
    let dir = TempDir::new("unit").unwrap();
    let copy = dir.path().join("scanwatch.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/scanwatch", &bin.to_string_lossy()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("running systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {} ({}): {stderr}",
        unit.display(),
        out.status
    );
}
