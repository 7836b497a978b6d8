//! A throwaway network for end-to-end tests: network namespaces joined by a Linux bridge, the
//! real daemon attached inside one of them, and RAII guards that tear everything down again,
//! also when a test fails or panics.
//!
//! ```text
//!   attacker (.2) ──┐
//!   benign   (.3) ──┼── switch (bridge) ── target (.1, + 10.K.1.0/24 on lo, the daemon)
//! ```
//!
//! Nothing here touches the host's own interfaces: every namespace, veth pair and address is
//! created for the lab and removed with it. Names start with [`NETNS_PREFIX`] and carry the
//! process id, so parallel tests never collide and [`sweep_stale`] can remove what a killed
//! run left behind.

use std::{
    ffi::OsStr,
    fs::File,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::{
        fd::AsRawFd as _,
        unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::Value;

/// Every namespace a lab creates starts with this.
pub const NETNS_PREFIX: &str = "swlab-";
/// Where the daemon serves metrics inside the target namespace (loopback of that namespace,
/// so parallel labs never collide).
pub const METRICS_PORT: u16 = 9977;
/// How long the daemon gets after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the daemon gets to answer `/healthz` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Per-process counter behind unique names.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A unique number for this process (labs, temp dirs).
fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Runs `cmd` to completion; its stdout, or an error carrying the command line and stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    ensure!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether a test that needs `program` can run. Missing outside CI: prints a loud notice and
/// returns false (the caller returns, so the test passes vacuously). Missing in CI (`CI=true`,
/// where `.ci/run` installs it): panics, so the gap cannot hide.
pub fn tool_or_skip(program: &str, test: &str) -> bool {
    if on_path(program) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "{test}: `{program}` is not installed, and CI=true requires it (.ci/run installs it)"
    );
    // Debian ships promtool in the prometheus package.
    let package = if program == "promtool" {
        "prometheus"
    } else {
        program
    };
    eprintln!(
        "NOTICE: {test} skipped: {program} not installed (install it, e.g. `apt-get install \
         {package}`, to run this test)"
    );
    false
}

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

// ---------------------------------------------------------------------------------------------
// Temporary directories and processes
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `scanwatch-e2e-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "scanwatch-e2e-{}-{}-{label}",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating temp dir {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A child process that is stopped on drop: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` (stdin closed).
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) unless the process has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) -> Result<()> {
        if self.try_status()?.is_none() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
        Ok(())
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("polling a child")?;
        }
        Ok(self.status)
    }

    /// Sends SIGTERM and waits up to `timeout`; then SIGKILL. Errors if SIGKILL was needed.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (try_wait said so).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait().context("reaping a killed child")?;
        self.status = Some(status);
        bail!(
            "{} (pid {}) did not exit within {timeout:?} of SIGTERM and was killed",
            self.name,
            self.child.id()
        )
    }

    /// Waits for the process to exit by itself, up to `timeout` (then kills it, and errors).
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                self.status = Some(self.child.wait()?);
                bail!("{} did not exit within {timeout:?}; killed", self.name);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(STOP_TIMEOUT);
    }
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

/// Runs `f` on a thread that has joined network namespace `ns` (sockets it creates live
/// there), and returns its result. Panics in `f` propagate.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                enter_netns(ns)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Like [`in_netns`] but returns at once: `f` runs on its own thread inside `ns`.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<Result<T>> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        enter_netns(&ns)?;
        Ok(f())
    })
}

/// Moves the calling thread into network namespace `ns`. Only sockets created afterwards are
/// in it; the thread should not go back to other work.
pub fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a valid namespace fd; CLONE_NEWNET only affects this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(
        rc == 0,
        "setns into {ns}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A network namespace, deleted on drop (after killing any process still inside).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `swlab-<pid>-<n>-<role>` (unique in this process) with its loopback up.
    pub fn unique(role: &str) -> Result<Self> {
        Self::new(&format!(
            "{NETNS_PREFIX}{}-{}-{role}",
            std::process::id(),
            next_id()
        ))
    }

    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs nmap with `args` in this namespace, killed after `limit`; fails the test unless
    /// nmap succeeds.
    pub fn nmap(&self, args: &[&str], limit: Duration) -> Output {
        let started = Instant::now();
        let out = self
            .command("timeout")
            .args(["-k", "2", &limit.as_secs().to_string(), "nmap"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running nmap");
        assert!(
            out.status.success(),
            "nmap {args:?} failed ({}) after {:?}:\n{}\n{}",
            describe(out.status),
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `args[0] args[1..]` inside the namespace to completion; its stdout.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("exec needs a program")?;
        run(self.command(program).args(rest))
    }

    /// `ip -n NAME ARGS`; its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Processes running inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        netns_pids(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_and_delete(&self.name);
    }
}

/// Processes running inside namespace `name` (`ip netns pids`).
fn netns_pids(name: &str) -> Vec<i32> {
    run(Command::new("ip").args(["netns", "pids", name]))
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process in namespace `name`, then deletes it.
fn kill_all_and_delete(name: &str) {
    for _ in 0..50 {
        let left = netns_pids(name);
        if left.is_empty() {
            break;
        }
        for pid in left {
            // SAFETY: kill(2) of a process inside a namespace this lab created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = run(Command::new("ip").args(["netns", "del", name])) {
        eprintln!("warning: could not delete network namespace {name}: {e:#}");
    }
}

/// Deletes namespaces left by earlier runs whose process is gone (a run killed with SIGKILL
/// cannot clean up after itself), and their daemons' pin and status directories. Only touches
/// names `swlab-<pid>-...` and `scanwatch-e2e-<pid>-...` with a dead `<pid>`.
pub fn sweep_stale() {
    sweep_stale_instances();
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_and_delete(&name);
        }
    }
}

/// One end of a veth pair, deleted on drop (which deletes the peer too).
#[derive(Debug)]
pub struct Veth {
    ns: String,
    name: String,
}

impl Veth {
    /// Creates veth `a` in namespace `a_ns`, peered with `b` in `b_ns`.
    pub fn new(a_ns: &Netns, a: &str, b_ns: &Netns, b: &str) -> Result<Self> {
        ensure!(
            a.len() <= 15 && b.len() <= 15,
            "interface names are at most 15 characters: {a}, {b}"
        );
        run(Command::new("ip").args([
            "link", "add", a, "netns", &a_ns.name, "type", "veth", "peer", "name", b, "netns",
            &b_ns.name,
        ]))?;
        Ok(Self {
            ns: a_ns.name.clone(),
            name: a.to_owned(),
        })
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["-n", &self.ns, "link", "del", &self.name]));
    }
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// The lab topology. Addresses: `10.K.0.0/24` and `fd5c:a7:0:K::/64` on the bridge (target .1
/// / ::1, attacker .2 / ::2, benign .3 / ::3), plus `10.K.1.0/24`, which the target owns
/// entirely (a `local` route on its loopback) and the others route through it, so a sweep
/// across it meets 256 hosts that answer.
#[derive(Debug)]
pub struct Lab {
    /// Unique for this process; also the `K` of the addresses.
    pub id: u32,
    veths: Vec<Veth>,
    pub target: Netns,
    pub attacker: Netns,
    pub benign: Netns,
    pub switch: Netns,
    /// The target's interface: the one the daemon watches.
    pub target_if: String,
    pub attacker_if: String,
    pub benign_if: String,
}

impl Lab {
    /// Builds the lab, checks the attacker reaches the target, or fails (tearing down what was
    /// built).
    pub fn new() -> Result<Self> {
        sweep_stale();
        let pid = std::process::id();
        let id = next_id();
        let ns = |role: &str| Netns::new(&format!("{NETNS_PREFIX}{pid}-{id}-{role}"));
        // Interface names: at most 2 + 5 + 1 + 3 + 2 = 13 characters.
        let tag = format!("sw{}x{}", pid % 100_000, id % 1000);
        let switch = ns("switch")?;
        let target = ns("target")?;
        let attacker = ns("attacker")?;
        let benign = ns("benign")?;
        let mut lab = Self {
            id,
            veths: Vec::new(),
            target_if: format!("{tag}t"),
            attacker_if: format!("{tag}a"),
            benign_if: format!("{tag}b"),
            target,
            attacker,
            benign,
            switch,
        };
        lab.wire()?;
        Ok(lab)
    }

    fn wire(&mut self) -> Result<()> {
        let k = self.k();
        self.switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        self.switch.ip(&["link", "set", "br0", "up"])?;
        for (ns, iface, host) in [
            (&self.target, &self.target_if, 1),
            (&self.attacker, &self.attacker_if, 2),
            (&self.benign, &self.benign_if, 3),
        ] {
            // Addresses usable at once: no duplicate address detection.
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
            let port = format!("{iface}p");
            self.veths.push(Veth::new(ns, iface, &self.switch, &port)?);
            self.switch
                .ip(&["link", "set", &port, "master", "br0", "up"])?;
            ns.ip(&["addr", "add", &format!("10.{k}.0.{host}/24"), "dev", iface])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("fd5c:a7:0:{k:x}::{host}/64"),
                "dev",
                iface,
                "nodad",
            ])?;
            ns.ip(&["link", "set", iface, "up"])?;
        }
        self.target.ip(&[
            "route",
            "add",
            "local",
            &format!("10.{k}.1.0/24"),
            "dev",
            "lo",
        ])?;
        for ns in [&self.attacker, &self.benign] {
            ns.ip(&[
                "route",
                "add",
                &format!("10.{k}.1.0/24"),
                "via",
                &self.target_v4().to_string(),
            ])?;
        }
        // The bridge forwards at once (no STP), but carrier comes up asynchronously: wait
        // until the attacker and the benign host reach the target.
        for ns in [&self.attacker, &self.benign] {
            let target = self.target_v4();
            let reached = in_netns(ns.name(), move || {
                (0..40).any(|_| {
                    crate::scanner::ping(target, Duration::from_millis(250)).unwrap_or(false)
                })
            })?;
            ensure!(reached, "{} cannot reach the target {target}", ns.name());
        }
        Ok(())
    }

    /// Adds one more host to the bridge: namespace `swlab-<pid>-<id>-<role>` with
    /// `10.K.0.<host>/24` and `fd5c:a7:0:K::<host>/64`, and waits until it reaches the target.
    /// Host numbers 1..=3 are taken (target, attacker, benign). Call it before starting a
    /// daemon (which borrows the lab). The namespace is the caller's to drop; its veth goes
    /// with it, or with the lab.
    pub fn add_host(&mut self, role: &str, host: u8) -> Result<Netns> {
        ensure!(
            (4..=254).contains(&host),
            "host {host}: use 4..=254 (1..=3 are the target, the attacker and the benign host)"
        );
        let k = self.k();
        let ns = Netns::new(&format!(
            "{NETNS_PREFIX}{}-{}-{role}",
            std::process::id(),
            self.id
        ))?;
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        let iface = self.if_name(&format!("h{host:02x}"));
        let port = format!("{iface}p");
        self.veths
            .push(Veth::new(&ns, &iface, &self.switch, &port)?);
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("10.{k}.0.{host}/24"), "dev", &iface])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("fd5c:a7:0:{k:x}::{host}/64"),
            "dev",
            &iface,
            "nodad",
        ])?;
        ns.ip(&["link", "set", &iface, "up"])?;
        let target = self.target_v4();
        let reached = in_netns(ns.name(), move || {
            (0..40)
                .any(|_| crate::scanner::ping(target, Duration::from_millis(250)).unwrap_or(false))
        })?;
        ensure!(reached, "{} cannot reach the target {target}", ns.name());
        Ok(ns)
    }

    /// An interface name unique to this lab: its tag (`sw<pid>x<id>`, at most 11 characters)
    /// and `suffix` (at most 3 characters, so that the name plus a one-letter peer suffix stays
    /// within the kernel's 15).
    pub fn if_name(&self, suffix: &str) -> String {
        // The lab's interface names end in one letter after the tag ("t" for the target).
        let tag = &self.target_if[..self.target_if.len() - 1];
        format!("{tag}{suffix}")
    }

    /// `10.K.0.<host>`: an address on the lab's bridge.
    pub fn host_v4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, host)
    }

    /// The `K` of `10.K.0.0/24`: 10..=249.
    pub fn k(&self) -> u8 {
        (10 + self.id % 240) as u8
    }

    pub fn target_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 1)
    }

    pub fn attacker_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 2)
    }

    pub fn benign_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 3)
    }

    fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd5c, 0xa7, 0, u16::from(self.k()), 0, 0, 0, host)
    }

    pub fn target_v6(&self) -> Ipv6Addr {
        self.v6(1)
    }

    pub fn attacker_v6(&self) -> Ipv6Addr {
        self.v6(2)
    }

    pub fn benign_v6(&self) -> Ipv6Addr {
        self.v6(3)
    }

    /// The lab's /64, as the daemon names IPv6 sources (aggregated to /64 by default).
    pub fn v6_source(&self) -> String {
        format!("{}/64", self.v6(0))
    }

    /// Host `n` (0..=255) of the target's extra /24, `10.K.1.n`.
    pub fn sweep_host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 1, n)
    }

    /// The target's extra /24 in CIDR notation (for nmap).
    pub fn sweep_net(&self) -> String {
        format!("10.{}.1.0/24", self.k())
    }

    /// `ip link show` of the target interface.
    pub fn target_link(&self) -> Result<String> {
        self.target.ip(&["link", "show", "dev", &self.target_if])
    }

    /// True when an XDP program (any mode) is attached to the target interface.
    pub fn target_has_xdp(&self) -> Result<bool> {
        Ok(self.target_link()?.contains("xdp"))
    }

    /// BPF programs on the target interface's TC egress hook: tcx links (Linux >= 6.6) plus
    /// classic cls_bpf filters on a clsact qdisc.
    pub fn target_egress_programs(&self) -> Result<usize> {
        let iface = self.target_if.clone();
        // The query resolves the interface in the calling thread's namespace. Kernels without
        // tcx refuse it; they have no tcx programs to count.
        let tcx = in_netns(self.target.name(), move || {
            aya::programs::SchedClassifier::query_tcx(&iface, aya::programs::TcAttachType::Egress)
                .map_or(0, |(_, programs)| programs.len())
        })?;
        // No clsact qdisc: `tc` fails, and there is no filter either.
        let filters = self
            .target
            .exec(&["tc", "filter", "show", "dev", &self.target_if, "egress"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" bpf "))
            .count();
        Ok(tcx + filters)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP (tiny client for /healthz, /metrics and Prometheus' API)
// ---------------------------------------------------------------------------------------------

/// `GET path` over HTTP/1.1 on the calling thread's namespace; (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: the daemon's endpoint reads the request with a single read.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to GET {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response from {addr}{path}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sum of every sample of metric `name` (any labels) in Prometheus text `text`; `None` when
/// the metric has no sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of one series in Prometheus text `text`, named with its labels exactly as the
/// exporter writes them (`name{label="value"}`, or a bare name); `None` when it is absent.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Calls `check` every `interval` until it returns true (true) or `timeout` has passed
/// (false; `check` runs at least once).
pub fn poll_until(timeout: Duration, interval: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(interval);
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

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
    lab: &'lab Lab,
    proc: Proc,
    dir: TempDir,
    metrics_addr: SocketAddr,
    instance: String,
    launch: Launch,
}

/// How the daemon enters the target namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Launch {
    /// `ip netns exec`: network namespace plus a private mount namespace (its own `/sys`).
    NetnsExec,
    /// `nsenter --net`: the network namespace only; bpffs pins are shared with this process.
    Nsenter,
}

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

    fn start_as(lab: &'lab Lab, extra: &[&str], launch: Launch) -> Result<Self> {
        let dir = TempDir::new("daemon")?;
        let metrics_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, METRICS_PORT));
        let instance = format!("{INSTANCE_PREFIX}{}-{}", std::process::id(), lab.id);
        let proc = Self::spawn(lab, &dir, metrics_addr, &instance, launch, extra)?;
        let mut daemon = Self {
            lab,
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
        lab: &Lab,
        dir: &TempDir,
        metrics_addr: SocketAddr,
        instance: &str,
        launch: Launch,
        extra: &[&str],
    ) -> Result<Proc> {
        let bin = daemon_binary()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("daemon.log"))?;
        let mut cmd = match launch {
            Launch::NetnsExec => lab.target.command(&bin),
            Launch::Nsenter => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{}", lab.target.name()))
                    .arg(&bin);
                cmd
            }
        };
        cmd.args(["--instance", instance])
            .arg("run")
            .args(["-i", &lab.target_if])
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
            self.lab,
            &self.dir,
            self.metrics_addr,
            &self.instance,
            self.launch,
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
            .arg(format!("--net=/run/netns/{}", self.lab.target.name()))
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
            let health = in_netns(self.lab.target.name(), move || {
                http_get(addr, "/healthz", Duration::from_millis(500))
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

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

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
        let (status, body) = in_netns(self.lab.target.name(), move || {
            http_get(addr, "/metrics", Duration::from_secs(2))
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
        if self.launch == Launch::Nsenter {
            let _ = std::fs::remove_dir_all(self.pin_dir());
        }
    }
}

/// Removes the pin and status directories of daemons whose test process is gone
/// (`scanwatch-e2e-<pid>-...` with a dead `<pid>`), as [`sweep_stale`] does for namespaces.
fn sweep_stale_instances() {
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

/// Human description of an exit status ("exit code 0", "killed by signal 9").
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
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

// ---------------------------------------------------------------------------------------------
// Services (tiny servers inside a namespace)
// ---------------------------------------------------------------------------------------------

/// Tiny servers on one thread inside a namespace, stopped and joined on drop: TCP ports that
/// answer each HTTP-style request with `200 OK` and `hello from port P` ([`Service::tcp`]), or
/// a UDP port that answers every datagram, DNS-style: the query echoed with the QR and RA bits
/// set ([`Service::udp`]).
#[derive(Debug)]
pub struct Service {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<Result<Result<()>>>>,
}

/// The body a [`Service::tcp`] port answers with.
pub fn service_body(port: u16) -> String {
    format!("hello from port {port}\n")
}

impl Service {
    /// Listens on `ports` of `addr` inside `ns` (bound before this returns).
    pub fn tcp(ns: &Netns, addr: IpAddr, ports: &[u16]) -> Result<Self> {
        let ports = ports.to_vec();
        Self::start(ns, move |stop, served, bound| {
            let listeners = ports
                .iter()
                .map(|&port| {
                    let l = TcpListener::bind((addr, port))
                        .with_context(|| format!("binding {addr} port {port}"))?;
                    l.set_nonblocking(true)?;
                    Ok((port, l))
                })
                .collect::<Result<Vec<_>>>();
            let listeners = match listeners {
                Ok(l) => {
                    let _ = bound.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = bound.send(Err(format!("{e:#}")));
                    return Err(e);
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for (port, listener) in &listeners {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            idle = false;
                            if answer_http(conn, *port) {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(anyhow!(e).context("accepting a connection")),
                    }
                }
                if idle {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
    }

    /// Answers every datagram to `addr` inside `ns` (bound before this returns).
    pub fn udp(ns: &Netns, addr: SocketAddr) -> Result<Self> {
        Self::start(ns, move |stop, served, bound| {
            let socket = match UdpSocket::bind(addr).and_then(|s| {
                s.set_read_timeout(Some(Duration::from_millis(20)))
                    .map(|()| s)
            }) {
                Ok(s) => {
                    let _ = bound.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = bound.send(Err(format!("binding {addr}: {e}")));
                    return Err(e.into());
                }
            };
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let answer = &mut buf[..n];
                if n >= 4 {
                    answer[2] |= 0x80; // QR: a response
                    answer[3] |= 0x80; // RA: recursion available
                }
                if socket.send_to(answer, from).is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    }

    fn start(
        ns: &Netns,
        serve: impl FnOnce(
            &AtomicBool,
            &AtomicUsize,
            std::sync::mpsc::Sender<std::result::Result<(), String>>,
        ) -> Result<()>
        + Send
        + 'static,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            spawn_in_netns(ns.name(), move || serve(&stop, &served, bound_tx))
        };
        let mut service = Self {
            stop,
            served,
            thread: Some(thread),
        };
        match bound_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(service),
            Ok(Err(e)) => bail!("a service in {} did not start: {e}", ns.name()),
            // The thread ended (or hangs) without a word: it could not enter the namespace.
            Err(_) => Err(service
                .join()
                .err()
                .unwrap_or_else(|| anyhow!("a service in {} did not start", ns.name()))),
        }
    }

    /// Requests answered so far (HTTP responses written, or datagrams answered).
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the server; how many requests it answered, or its error.
    pub fn stop(mut self) -> Result<usize> {
        self.join()?;
        Ok(self.served())
    }

    fn join(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("a service thread panicked"))?
                .context("entering the service's namespace")?,
            None => Ok(()),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Reads one HTTP-style request head from `conn` (bounded in size and to one second) and
/// answers it; false when the client sent no complete request (a bare connect).
fn answer_http(mut conn: TcpStream, port: u16) -> bool {
    let ready = conn.set_nonblocking(false).is_ok()
        && conn.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && conn.set_write_timeout(Some(Duration::from_secs(1))).is_ok();
    if !ready {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(n) if n > 0 && head.len() <= 8192 => head.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    let body = service_body(port);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .is_ok()
}
