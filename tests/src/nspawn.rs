//! A Debian system booted under its own systemd in a systemd-nspawn container: a writable copy
//! ([`Rootfs`]) of the cached tree ([`crate::debootstrap`]) booted with `systemd-nspawn --boot`
//! inside a network namespace of the test's lab, and commands run in it through `nsenter` into
//! the container's PID 1 ([`Container`]).
//!
//! The container shares nothing with the host but the kernel: its network is the lab
//! namespace's (never this host's interfaces), its bpffs a fresh instance mounted for it, its
//! files an overlay over the cached tree (which stays untouched), and it is not registered with
//! systemd-machined (the host need not run systemd). It holds nspawn's default capabilities
//! plus the three the agent's unit grants, and nspawn's system call filter plus `bpf`.
//! Dropping the [`Container`] powers it off (killing it if it does not halt in time) and
//! unmounts all of that; dropping the [`Rootfs`] removes the copy.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, Weak},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    mounts::{Mount, remove_tree},
    netns::Netns,
    process::{describe, on_path, run, tail},
};

/// The programs a container test needs, and the Debian packages that ship them.
const TOOLS: [(&str, &str); 3] = [
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
];
/// Where systemd-nspawn keeps its locks and each container's mount propagation directory.
const NSPAWN_STATE: &str = "/run/systemd/nspawn";
/// Capabilities the container gets on top of nspawn's defaults (which include CAP_SYS_ADMIN,
/// for the mount namespaces systemd sets up for a unit): the ones the agent's unit grants it.
const CAPABILITIES: &str = "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON";
/// System calls allowed on top of nspawn's filter, which refuses `bpf` with EPERM (the agent
/// fails with "failed to create map ... Operation not permitted" without it).
const SYSTEM_CALLS: &str = "bpf";
/// The kernel's BTF, bound read-only into the container (CO-RE relocations read it).
const BTF: &str = "/sys/kernel/btf";
/// How long systemd-nspawn may take to start the container's init.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the container's systemd may take to finish booting.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the container may take to power off before it is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one command inside the container may run (`systemctl start` waits for the unit's
/// `TimeoutStartSec=`, 60 s, at most).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// `PATH` inside the container (Debian's default for root).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The container's console output (systemd-nspawn's and its systemd's messages), in its
/// scratch directory.
const CONSOLE_LOG: &str = "console.log";
/// Every container's scratch directory (`<temp>/scanwatch-nspawn-<pid>-<n>`) starts with this.
const PREFIX: &str = "scanwatch-nspawn-";

/// Makes sure debootstrap, systemd-nspawn and nsenter are installed, installing their packages
/// with apt-get when they are missing; fails the test, naming them, when that is not possible.
/// Never skips: a test that boots a container is only worth something when it runs.
pub fn require_tools() {
    let missing: Vec<(&str, &str)> = TOOLS.into_iter().filter(|(p, _)| !on_path(p)).collect();
    if missing.is_empty() {
        return;
    }
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    assert!(
        on_path("apt-get"),
        "this test needs {programs:?}: install the packages {packages:?} (there is no apt-get \
         here to do it)"
    );
    eprintln!("installing {packages:?} for {programs:?}");
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if let Err(first) = install() {
        let retry = run(Command::new("apt-get").arg("update")).and_then(|_| install());
        if let Err(e) = retry {
            panic!(
                "this test needs {programs:?} and could not install {packages:?}: {first:#}; \
                 after apt-get update: {e:#}"
            );
        }
    }
    let still: Vec<&str> = programs.into_iter().filter(|p| !on_path(p)).collect();
    assert!(
        still.is_empty(),
        "{still:?} still missing after installing {packages:?}"
    );
}

/// A writable copy of a tree for one container: an overlay whose lower layer is the tree
/// (never written) and whose upper layer is a scratch directory of this test, removed on drop
/// with everything the container wrote.
#[derive(Debug)]
pub struct Rootfs {
    root: Option<Mount>,
    dir: PathBuf,
}

impl Rootfs {
    /// Mounts the copy of `tree`.
    pub fn new(tree: &Path) -> Result<Self> {
        sweep_stale();
        let dir = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            crate::next_id()
        ));
        remove_tree(&dir)?;
        let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
        for d in [&upper, &work, &root] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let mut rootfs = Self { root: None, dir };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            tree.display(),
            upper.display(),
            work.display()
        );
        ensure!(
            !options.contains(['\\', ' ']) && options.matches(',').count() == 2,
            "overlay paths must not hold commas, spaces or backslashes: {options}"
        );
        rootfs.root = Some(
            Mount::new("overlay", "overlay", &root, Some(&options))
                .context("mounting an overlay over the Debian tree for the container")?,
        );
        Ok(rootfs)
    }

    /// The copy's root directory.
    pub fn path(&self) -> &Path {
        self.root.as_ref().map_or(&self.dir, Mount::path)
    }

    /// Installs `deb` into the copy with its own dpkg database (`dpkg --root`: maintainer
    /// scripts run chrooted into it), as `dpkg -i` on that system would; its dependencies must
    /// be in the tree already.
    pub fn install(&self, deb: &Path) -> Result<()> {
        run(Command::new("dpkg")
            .arg(format!("--root={}", self.path().display()))
            .arg("--install")
            .arg(deb)
            .env("DEBIAN_FRONTEND", "noninteractive"))
        .with_context(|| format!("installing {} into the container's tree", deb.display()))
        .map(drop)
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        drop(self.root.take());
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!("warning: could not remove the container's copy: {e:#}");
        }
    }
}

/// Removes the scratch directories (and unmounts the overlays and bpffs instances in them) of
/// runs that are gone. Their containers' processes died with their lab's namespace
/// ([`crate::netns::sweep_stale`], which `Lab::new` runs first).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && let Err(e) = remove_tree(&entry.path())
        {
            eprintln!("warning: could not remove a stale container copy: {e:#}");
        }
    }
}

/// A tmpfs at [`NSPAWN_STATE`] while containers run, when that directory would be on a disk
/// file system: at exit systemd-nspawn refuses to remove its propagation directory from one
/// ("Attempted to remove disk file system ... and we can't allow that") and leaves it behind. On
/// a host running systemd `/run` is a tmpfs already, and nothing is mounted. Shared by the
/// containers of this process ([`NspawnState::shared`]) and unmounted after the last one.
#[derive(Debug)]
struct NspawnState {
    mount: Option<Mount>,
    /// Directories made for the mount point, deepest first, removed again on drop.
    created: Vec<PathBuf>,
}

/// The state directory the running containers of this process share.
static NSPAWN_STATE_IN_USE: Mutex<Weak<NspawnState>> = Mutex::new(Weak::new());

impl NspawnState {
    /// The one the running containers use, else a new one.
    fn shared() -> Result<Arc<Self>> {
        let mut in_use = NSPAWN_STATE_IN_USE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(state) = in_use.upgrade() {
            return Ok(state);
        }
        let state = Arc::new(Self::new()?);
        *in_use = Arc::downgrade(&state);
        Ok(state)
    }

    fn new() -> Result<Self> {
        let dir = Path::new(NSPAWN_STATE);
        let existing = dir.ancestors().find(|a| a.exists()).context("/ exists")?;
        if on_tmpfs(existing)? {
            return Ok(Self {
                mount: None,
                created: Vec::new(),
            });
        }
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {NSPAWN_STATE}"))?;
        let mut state = Self {
            mount: None,
            created,
        };
        state.mount = Some(
            Mount::new("tmpfs", "tmpfs", dir, Some("mode=0755"))
                .with_context(|| format!("mounting a tmpfs at {NSPAWN_STATE}"))?,
        );
        Ok(state)
    }
}

impl Drop for NspawnState {
    fn drop(&mut self) {
        drop(self.mount.take());
        for dir in &self.created {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether `path` is on a tmpfs.
fn on_tmpfs(path: &Path) -> Result<bool> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a plain C struct, for which all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string and st a struct statfs statfs(2) may fill.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut st) };
    ensure!(
        rc == 0,
        "statfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    Ok(st.f_type == libc::TMPFS_MAGIC)
}

/// A booted container (see the module's documentation), powered off on drop.
#[derive(Debug)]
pub struct Container {
    nspawn: Child,
    /// The container's PID 1 (its systemd), as this host numbers it.
    init: i32,
    // Dropped after `Drop::drop` has powered the container off, in this order.
    bpffs: Option<Mount>,
    state: Option<Arc<NspawnState>>,
    rootfs: Rootfs,
}

impl Container {
    /// Boots `rootfs` in network namespace `netns` and waits until its systemd has finished
    /// starting up. Fails naming the step the host refused: the mounts, systemd-nspawn (with its
    /// console output), or the boot.
    pub fn boot(rootfs: Rootfs, netns: &Netns) -> Result<Self> {
        let state = NspawnState::shared()?;
        let bpf_dir = rootfs.dir.join("bpf");
        std::fs::create_dir_all(&bpf_dir)?;
        let bpffs = Mount::new("bpf", "bpf", &bpf_dir, None)
            .context("mounting a bpffs instance for the container")?;
        let log = File::create(rootfs.dir.join(CONSOLE_LOG))?;
        let name = rootfs
            .dir
            .file_name()
            .context("the copy has a name")?
            .to_string_lossy()
            .into_owned();
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
        ])
        .arg(format!("--directory={}", rootfs.path().display()))
        .arg(format!("--machine={name}"))
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            netns.name()
        ))
        .arg(format!("--capability={CAPABILITIES}"))
        .arg(format!("--system-call-filter={SYSTEM_CALLS}"))
        .arg(format!("--bind={}:/sys/fs/bpf", bpf_dir.display()));
        if Path::new(BTF).is_dir() {
            cmd.arg(format!("--bind-ro={BTF}"));
        }
        // No colours in the console log.
        cmd.env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let shown = format!("{cmd:?}");
        let nspawn = cmd.spawn().with_context(|| format!("starting {shown}"))?;
        let mut container = Self {
            nspawn,
            init: 0,
            bpffs: Some(bpffs),
            state: Some(state),
            rootfs,
        };
        container.init = container
            .wait_for_init()
            .with_context(|| format!("booting the container: {shown}"))?;
        container.wait_booted()?;
        Ok(container)
    }

    /// The container's init, once systemd-nspawn has started it: the descendant of nspawn that
    /// is PID 1 of its own PID namespace.
    fn wait_for_init(&mut self) -> Result<i32> {
        let deadline = Instant::now() + INIT_TIMEOUT;
        loop {
            if let Some(status) = self.nspawn.try_wait()? {
                bail!(
                    "systemd-nspawn refused the container: it exited ({}) before the container's \
                     init started. Its output:\n{}",
                    describe(status),
                    self.console_tail(40)
                );
            }
            if let Some(pid) = namespace_init_below(self.nspawn.id()) {
                return Ok(pid);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no init in the container {INIT_TIMEOUT:?} after systemd-nspawn started. Its \
                     output:\n{}",
                    self.console_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `systemctl is-system-running` says `running` (or `degraded`: a unit failed,
    /// which is printed, but the system is up).
    fn wait_booted(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(status) = self.nspawn.try_wait()? {
                bail!(
                    "the container stopped while booting (systemd-nspawn {}). Its console:\n{}",
                    describe(status),
                    self.console_tail(40)
                );
            }
            let state = match self.output(&["systemctl", "is-system-running"]) {
                Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                Err(e) => format!("{e:#}"),
            };
            if state == "running" {
                return Ok(());
            }
            if state == "degraded" {
                let failed = self
                    .run(&["systemctl", "--failed", "--no-legend"])
                    .unwrap_or_default();
                eprintln!("note: the container booted degraded; failed units:\n{failed}");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let jobs = self.run(&["systemctl", "list-jobs"]).unwrap_or_default();
                bail!(
                    "the container's systemd did not finish booting within {BOOT_TIMEOUT:?} \
                     (`systemctl is-system-running`: {state}); jobs:\n{jobs}\nconsole:\n{}",
                    self.console_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// A command that runs `program` inside the container, as root: `nsenter` into every
    /// namespace of its init, so it sees the container's files, processes, units and
    /// interfaces; killed after [`COMMAND_LIMIT`].
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &COMMAND_LIMIT.as_secs().to_string()])
            .args(["nsenter", "--target", &self.init.to_string(), "--all", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8");
        cmd
    }

    /// Runs `args` inside the container to completion; its stdout, or an error carrying the
    /// command and its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("run needs a program")?;
        run(self.command(program).args(rest))
    }

    /// Runs `args` inside the container; its output, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let (program, rest) = args.split_first().context("output needs a program")?;
        let mut cmd = self.command(program);
        cmd.args(rest).stdin(Stdio::null());
        cmd.output().with_context(|| format!("running {cmd:?}"))
    }

    /// A file of the container, read inside it.
    pub fn read(&self, path: &str) -> Result<String> {
        self.run(&["cat", "--", path])
    }

    /// Replaces a file of the container, inside it.
    pub fn write(&self, path: &str, contents: &str) -> Result<()> {
        self.run(&["sh", "-c", r#"printf '%s' "$1" > "$0""#, path, contents])
            .map(drop)
    }

    /// `journalctl -u UNIT` of this boot (for failure messages; empty when it cannot be read).
    pub fn journal(&self, unit: &str) -> String {
        self.run(&["journalctl", "--boot", "--no-pager", "--unit", unit])
            .unwrap_or_else(|e| format!("(journalctl failed: {e:#})"))
    }

    /// The last `n` lines of the container's console (its boot and shutdown messages).
    pub fn console_tail(&self, n: usize) -> String {
        tail(
            &std::fs::read_to_string(self.rootfs.dir.join(CONSOLE_LOG)).unwrap_or_default(),
            n,
        )
    }

    /// Powers the container off, as [`Drop`] does, and reports whether it halted by itself.
    pub fn poweroff(mut self) -> Result<()> {
        self.shut_down()
    }

    /// SIGTERM to systemd-nspawn, which asks the container's systemd to power off
    /// (SIGRTMIN+3); if it has not halted within [`POWEROFF_TIMEOUT`], SIGKILL to its init
    /// (taking its whole PID namespace) and to nspawn, and an error.
    fn shut_down(&mut self) -> Result<()> {
        if self.nspawn.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill(2) on our own child, not reaped yet (try_wait said so).
        unsafe { libc::kill(self.nspawn.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + POWEROFF_TIMEOUT;
        while Instant::now() < deadline {
            if self.nspawn.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        if self.init > 0 {
            // SAFETY: kill(2) on the container's init, alive while its nspawn parent is.
            unsafe { libc::kill(self.init, libc::SIGKILL) };
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        bail!(
            "the container did not power off within {POWEROFF_TIMEOUT:?} and was killed; \
             console:\n{}",
            self.console_tail(30)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            eprintln!("warning: {e:#}");
        }
        drop(self.bpffs.take());
        drop(self.state.take());
    }
}

/// The descendant of process `parent` (up to three generations down) that is PID 1 of its own
/// PID namespace (its `NSpid` ends in 1).
fn namespace_init_below(parent: u32) -> Option<i32> {
    let mut generation = vec![i32::try_from(parent).ok()?];
    for _ in 0..3 {
        let children: Vec<i32> = generation.iter().flat_map(|&pid| children(pid)).collect();
        if let Some(&init) = children.iter().find(|&&pid| is_namespace_init(pid)) {
            return Some(init);
        }
        generation = children;
    }
    None
}

/// The children of `pid` (`/proc/PID/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether `pid` is PID 1 of a PID namespace below this one (`NSpid:\t<pid>\t1`).
fn is_namespace_init(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                ids.len() >= 2 && ids.last() == Some(&"1")
            })
    })
}
