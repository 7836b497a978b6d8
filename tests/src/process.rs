//! Processes and scratch space for end-to-end tests: running a command to completion,
//! finding a tool on `PATH` (or skipping a test without it), a temp directory removed on drop,
//! a child process stopped on drop, a poll loop, and the end of a log.

use std::{
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

/// How long a [`Proc`] (the daemon, for one) gets after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Whether a test that needs `program` (a name on `PATH`, or an absolute path) can run. Missing outside CI: prints a loud notice and
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
    // Debian ships promtool in the prometheus package, systemd-analyze in systemd.
    let package = match program {
        "promtool" => "prometheus",
        "systemd-analyze" => "systemd",
        "/usr/bin/python3" => "python3",
        _ => program,
    };
    eprintln!(
        "NOTICE: {test} skipped: {program} not installed (install it, e.g. `apt-get install \
         {package}`, to run this test)"
    );
    false
}

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
            crate::next_id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating temp dir {}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
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

    /// The process id.
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

/// Human description of an exit status ("exit code 0", "killed by signal 9").
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
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

/// The last `n` lines of `text` (the end of a log, for a failure message).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
