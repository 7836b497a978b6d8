//! The real daemon (`scanwatch run`) inside a lab's target namespace, and its control CLI:
//! started and health-checked, stopped on drop, its alerts, log and metrics read back.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::{
    http,
    lab::Lab,
    netns::in_netns,
    process::{Proc, STOP_TIMEOUT, TempDir, describe},
};

/// Where the daemon serves metrics inside the target namespace (loopback of that namespace,
/// so parallel labs never collide).
pub const METRICS_PORT: u16 = 9977;
/// How long the daemon gets to answer `/healthz` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon binary: `$SCANWATCH_BIN`, else `target/debug/scanwatch` of this workspace.
pub fn daemon_binary() -> Result<PathBuf> {
    let path = std::env::var_os("SCANWATCH_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/scanwatch"),
        PathBuf::from,
    );
    ensure!(
        path.is_file(),
        "the scanwatch binary is missing at {}: build it with `cargo build -p scanwatch` or run \
         `cargo xtask test` (or point SCANWATCH_BIN at it)",
        path.display()
    );
    Ok(path)
}

/// The real `scanwatch run`, inside the lab's target namespace, watching the target interface,
/// alerts to a temp file. Stopped (SIGTERM, then SIGKILL after 5 s) on drop; it borrows the lab
/// so it cannot outlive it.
///
/// Each daemon is its own `--instance`, so parallel labs (and any agent the host runs) never
/// share a status file in `/run`. Started with [`Daemon::start_with`], its pinned maps live in
/// the bpffs that `ip netns exec`'s private `/sys` gets, and vanish with it. Started with
/// [`Daemon::start_shared`] (`nsenter --net`: the network namespace only), they live in this
/// host's `/sys/fs/bpf/scanwatch-<instance>`, where the control CLI ([`Daemon::ctl`]) and a
/// restarted daemon ([`Daemon::restart`]) find them; the guard removes them on drop.
#[derive(Debug)]
pub struct Daemon<'lab> {
    /// Held so the daemon cannot outlive its lab's namespaces.
    _lab: &'lab Lab,
    /// The namespace it runs in and the interface it watches (the lab's target, unless
    /// started with [`Daemon::start_shared_in`]).
    ns: String,
    iface: String,
    proc: Proc,
    dir: TempDir,
    metrics_addr: SocketAddr,
    instance: String,
    launch: Launch,
}

/// How the daemon enters the target namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Launch {
    /// `ip netns exec`: network namespace plus a private mount namespace (its own `/sys`).
    NetnsExec,
    /// `nsenter --net`: the network namespace only; bpffs pins are shared with this process.
    Nsenter,
    /// `nsenter --net`, then what `packaging/systemd/scanwatch.service` sets up: see
    /// [`Confinement`].
    Confined(Confinement),
}

/// A daemon run the way the systemd unit runs it: as `user`, holding exactly `caps` (effective,
/// permitted, inheritable, ambient and bounding sets, through `setpriv`), in a mount namespace
/// where `/sys/fs/bpf` is an empty tmpfs with only its pin directory (created here, owned by
/// `user`) bind-mounted in (`TemporaryFileSystem=` + `BindPaths=`), with its runtime directory
/// (`RuntimeDirectory=`) and the test's directory owned by `user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confinement {
    /// The user (and its primary group) the daemon runs as.
    pub user: String,
    /// `setpriv` capability names (`bpf`, `net_admin`, ...): all the daemon holds.
    pub caps: Vec<String>,
    /// Extra environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub env: Vec<(String, String)>,
}

impl Confinement {
    /// The user's uid and gid (`id -u`, `id -g`).
    pub fn ids(&self) -> Result<(u32, u32)> {
        let id = |flag: &str| -> Result<u32> {
            let out = crate::process::run(Command::new("id").arg(flag).arg(&self.user))?;
            out.trim()
                .parse()
                .with_context(|| format!("id {flag} {}: {out:?}", self.user))
        };
        Ok((id("-u")?, id("-g")?))
    }

    /// `setpriv` arguments that switch to the user and leave exactly [`Confinement::caps`].
    fn setpriv_args(&self) -> Result<Vec<String>> {
        let (uid, gid) = self.ids()?;
        let caps: String = self.caps.iter().flat_map(|c| [",+", c.as_str()]).collect();
        Ok(vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".to_owned(),
            format!("--inh-caps=-all{caps}"),
            format!("--ambient-caps=-all{caps}"),
            format!("--bounding-set=-all{caps}"),
            "--".to_owned(),
        ])
    }
}

/// Mounts an empty tmpfs over `/sys/fs/bpf` with only the pin directory `$1` bind-mounted back
/// (through the stash `$2`, as `$3`), then execs the rest of its arguments.
const CONFINE_SCRIPT: &str = r#"
mount --bind "$1" "$2"
mount -t tmpfs -o mode=0755 scanwatch-bpf /sys/fs/bpf
mkdir "/sys/fs/bpf/$3"
mount --bind "$2" "/sys/fs/bpf/$3"
shift 3
exec "$@"
"#;

/// Prefix of every `--instance` the lab's daemons use (`e2e-<pid>-<lab id>`).
const INSTANCE_PREFIX: &str = "e2e-";

impl<'lab> Daemon<'lab> {
    /// Starts the daemon with default settings and waits until `/healthz` answers.
    pub fn start(lab: &'lab Lab) -> Result<Self> {
        Self::start_with(lab, &[])
    }

    /// Starts the daemon with extra `scanwatch run` arguments and waits until `/healthz`
    /// answers.
    pub fn start_with(lab: &'lab Lab, extra: &[&str]) -> Result<Self> {
        Self::start_as(lab, extra, Launch::NetnsExec)
    }

    /// Like [`Daemon::start_with`], but entering only the target's network namespace
    /// (`nsenter --net`), so its pinned block maps live in this host's bpffs: the control CLI
    /// ([`Daemon::ctl`]) reaches them and a [`Daemon::restart`] finds them again. The guard
    /// removes `/sys/fs/bpf/scanwatch-<instance>` and `/run/scanwatch-<instance>` on drop.
    pub fn start_shared(lab: &'lab Lab, extra: &[&str]) -> Result<Self> {
        Self::start_as(lab, extra, Launch::Nsenter)
    }

    /// Starts the daemon confined as the systemd unit confines it ([`Confinement`]) and waits
    /// until `/healthz` answers. Its pins live in this host's bpffs, removed on drop.
    pub fn start_confined(
        lab: &'lab Lab,
        confinement: Confinement,
        extra: &[&str],
    ) -> Result<Self> {
        Self::start_as(lab, extra, Launch::Confined(confinement))
    }

    fn start_as(lab: &'lab Lab, extra: &[&str], launch: Launch) -> Result<Self> {
        let (ns, iface) = (lab.target.name().to_owned(), lab.target_if.clone());
        Self::start_at(lab, ns, iface, "", extra, launch)
    }

    /// Like [`Daemon::start_shared`], but in namespace `ns` watching `iface` (a second agent
    /// of the same lab, e.g. on the benign host); `tag` keeps its `--instance` apart.
    pub fn start_shared_in(
        lab: &'lab Lab,
        ns: &str,
        iface: &str,
        tag: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let tag = format!("-{tag}");
        Self::start_at(
            lab,
            ns.to_owned(),
            iface.to_owned(),
            &tag,
            extra,
            Launch::Nsenter,
        )
    }

    fn start_at(
        lab: &'lab Lab,
        ns: String,
        iface: String,
        tag: &str,
        extra: &[&str],
        launch: Launch,
    ) -> Result<Self> {
        let dir = TempDir::new("daemon")?;
        let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, METRICS_PORT));
        let instance = format!("{INSTANCE_PREFIX}{}-{}{tag}", std::process::id(), lab.id);
        let proc = Self::spawn(&ns, &iface, &dir, metrics_addr, &instance, &launch, extra)?;
        let mut daemon = Self {
            _lab: lab,
            ns,
            iface,
            proc,
            dir,
            metrics_addr,
            instance,
            launch,
        };
        daemon.wait_healthy()?;
        Ok(daemon)
    }

    /// Spawns `scanwatch --instance <instance> run ...` in the target namespace; its output is
    /// appended to `daemon.log` in `dir`.
    fn spawn(
        ns: &str,
        iface: &str,
        dir: &TempDir,
        metrics_addr: SocketAddr,
        instance: &str,
        launch: &Launch,
        extra: &[&str],
    ) -> Result<Proc> {
        let bin = daemon_binary()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("daemon.log"))?;
        let mut cmd = match launch {
            Launch::NetnsExec => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(&bin);
                cmd
            }
            Launch::Nsenter => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{ns}")).arg(&bin);
                cmd
            }
            Launch::Confined(confinement) => {
                let (uid, gid) = confinement.ids()?;
                let pin_dir = Path::new("/sys/fs/bpf").join(format!("scanwatch-{instance}"));
                let run_dir = Path::new("/run").join(format!("scanwatch-{instance}"));
                let stash = dir.path().join("pins");
                for d in [&pin_dir, &run_dir, &stash] {
                    std::fs::create_dir_all(d)
                        .with_context(|| format!("creating {}", d.display()))?;
                }
                for d in [pin_dir.as_path(), run_dir.as_path(), dir.path()] {
                    std::os::unix::fs::chown(d, Some(uid), Some(gid))
                        .with_context(|| format!("chown {}", d.display()))?;
                }
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{ns}"))
                    .args(["unshare", "--mount", "--propagation", "private", "--"])
                    .args(["sh", "-ec", CONFINE_SCRIPT, "sh"])
                    .arg(&pin_dir)
                    .arg(&stash)
                    .arg(format!("scanwatch-{instance}"))
                    .arg("setpriv")
                    .args(confinement.setpriv_args()?)
                    .arg(&bin)
                    .envs(confinement.env.iter().map(|(k, v)| (k, v)));
                cmd
            }
        };
        cmd.args(["--instance", instance])
            .arg("run")
            .args(["-i", iface])
            .arg("--alert-log")
            .arg(dir.path().join("alerts.jsonl"))
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log);
        Proc::spawn("scanwatch", &mut cmd)
    }

    /// Stops the daemon (SIGTERM; an error if it needed SIGKILL) and starts a new one with the
    /// same `--instance`, alert log and log file, and `extra` arguments; waits until
    /// `/healthz` answers. Only for [`Daemon::start_shared`] daemons: with `ip netns exec`
    /// their pinned state would be gone.
    pub fn restart(&mut self, extra: &[&str]) -> Result<()> {
        ensure!(
            self.launch == Launch::Nsenter,
            "restart needs a daemon started with Daemon::start_shared: pins made under `ip \
             netns exec` vanish with the process"
        );
        let status = self.stop()?;
        ensure!(
            status.success(),
            "scanwatch exited with {} when stopped for a restart; its log:\n{}",
            describe(status),
            self.log()
        );
        self.proc = Self::spawn(
            &self.ns,
            &self.iface,
            &self.dir,
            self.metrics_addr,
            &self.instance,
            &self.launch,
            extra,
        )?;
        self.wait_healthy()
    }

    /// Runs the control CLI, `scanwatch --instance <instance> ARGS` (`block`, `unblock`,
    /// `list`, `status`), in the target's network namespace (`nsenter --net`, so it sees the
    /// target's addresses and this host's bpffs), bounded to 10 s. Its output, whatever the
    /// exit status.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        let bin = daemon_binary()?;
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "2", "10", "nsenter"])
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(&bin)
            .args(["--instance", &self.instance])
            .args(args)
            .stdin(Stdio::null());
        cmd.output().with_context(|| format!("running {cmd:?}"))
    }

    /// Like [`Daemon::ctl`], but fails unless the CLI succeeds; its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args)?;
        ensure!(
            out.status.success(),
            "scanwatch {args:?} failed ({}): {}{}",
            describe(out.status),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Where the daemon pins its block maps (in this host's bpffs for
    /// [`Daemon::start_shared`] daemons).
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf").join(format!("scanwatch-{}", self.instance))
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.metrics_addr;
        loop {
            if let Some(status) = self.proc.try_status()? {
                bail!(
                    "scanwatch exited during start-up ({status}); its log:\n{}",
                    self.log()
                );
            }
            let health = in_netns(&self.ns, move || {
                http::get(addr, "/healthz", Duration::from_millis(500))
            })?;
            if matches!(health, Ok((200, ref body)) if body.trim() == "ok") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "scanwatch did not answer /healthz within {START_TIMEOUT:?} (last: {health:?}); \
                     its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Where `/metrics` and `/healthz` answer, inside the target namespace.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The daemon's `--instance` name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The status file the daemon keeps while it runs (for `scanwatch status`).
    pub fn status_file(&self) -> PathBuf {
        Path::new("/run")
            .join(format!("scanwatch-{}", self.instance))
            .join("status.json")
    }

    /// The alert log's path.
    pub fn alert_log(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    /// The daemon's stderr/stdout so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Every complete alert line written so far, parsed.
    pub fn alerts(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.alert_log()).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("the alert log has a line that is not JSON ({e}): {l:?}")
                })
            })
            .collect()
    }

    /// Polls the alert log until an alert matches `pred`, up to `timeout`.
    pub fn wait_for_alert(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.alerts().into_iter().find(|a| pred(a)) {
                return Some(a);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> Result<String> {
        let addr = self.metrics_addr;
        let (status, body) = in_netns(&self.ns, move || {
            http::get(addr, "/metrics", Duration::from_secs(2))
        })??;
        ensure!(status == 200, "/metrics answered {status}: {body}");
        Ok(body)
    }

    /// Polls `/metrics` until `ready` accepts the text, up to `timeout` (the daemon folds the
    /// kernel counters in once a second); the last text either way, for the caller to assert on.
    pub fn wait_for_metrics(&self, timeout: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics().unwrap_or_default();
            if ready(&text) || Instant::now() >= deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, wait up to 5 s (then SIGKILL, and an error); the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.proc
            .stop(STOP_TIMEOUT)
            .map_err(|e| anyhow!("{e:#}; scanwatch's log:\n{}", self.log()))
    }

    /// Sends `signal` to the daemon (e.g. `libc::SIGINT`, `libc::SIGHUP`).
    pub fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        self.proc.signal(signal)
    }

    /// Waits up to `timeout` for the daemon to exit by itself (then kills it, and errors).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.wait(timeout)
    }

    /// The exit status once the daemon has exited (by [`Daemon::stop`] or by itself).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_status().ok().flatten()
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        let _ = self.proc.stop(STOP_TIMEOUT);
        // The daemon removes its status file on a clean exit, not the directory.
        let _ =
            std::fs::remove_dir_all(Path::new("/run").join(format!("scanwatch-{}", self.instance)));
        // Pins in this host's bpffs outlive the daemon by design (restart persistence).
        if self.launch != Launch::NetnsExec {
            let _ = std::fs::remove_dir_all(self.pin_dir());
        }
    }
}

/// Removes the pin and status directories of daemons whose test process is gone
/// (`scanwatch-e2e-<pid>-...` with a dead `<pid>`), as [`crate::netns::sweep_stale`] does for
/// namespaces.
pub fn sweep_stale_instances() {
    for root in ["/sys/fs/bpf", "/run"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("scanwatch-")
                .and_then(|rest| rest.strip_prefix(INSTANCE_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// An alert predicate: `kind` is one of `kinds` and `source` is `source`.
pub fn alert_is(source: &str, kinds: &[&str]) -> impl Fn(&Value) -> bool {
    let source = source.to_owned();
    let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
    move |a: &Value| {
        a["source"].as_str() == Some(source.as_str())
            && a["kind"]
                .as_str()
                .is_some_and(|k| kinds.iter().any(|want| want == k))
    }
}
