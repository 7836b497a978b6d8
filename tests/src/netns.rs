//! Network namespaces and veth pairs for end-to-end tests, deleted by RAII guards also when a
//! test fails or panics, and a way to run code on a thread inside a namespace.
//!
//! Names start with [`NETNS_PREFIX`] and carry the process id, so parallel tests never
//! collide and [`sweep_stale`] can remove what a killed run left behind.

use std::{
    ffi::OsStr,
    fs::File,
    os::fd::AsRawFd as _,
    path::Path,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};

use crate::process::{describe, run};

/// Every namespace a lab creates starts with this.
pub const NETNS_PREFIX: &str = "swlab-";

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
            crate::next_id()
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

    /// The namespace's name (as `ip netns` knows it).
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

    /// One of the namespace's SNMP counters: `Group:Field` of `/proc/net/snmp` (e.g.
    /// `IcmpMsg:InType3`, `Icmp:OutDestUnreachs`), else `Field` of `/proc/net/snmp6` (e.g.
    /// `Icmp6InPktTooBigs`); 0 when the kernel has not counted it yet (`IcmpMsg` lists only
    /// types seen). Tells what really crossed the wire, whatever the daemon says.
    pub fn snmp(&self, counter: &str) -> Result<u64> {
        let counter = counter.to_owned();
        in_netns(&self.name, move || snmp_counter(&counter))?
    }
}

/// [`Netns::snmp`] for the calling thread's namespace.
pub fn snmp_counter(counter: &str) -> Result<u64> {
    // /proc/net follows the process's first thread; thread-self follows this thread's setns.
    if let Some((group, field)) = counter.split_once(':') {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let prefix = format!("{group}: ");
        let mut rows = text.lines().filter(|l| l.starts_with(&prefix));
        while let (Some(names), Some(values)) = (rows.next(), rows.next()) {
            let found = names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(name, _)| *name == field);
            if let Some((_, value)) = found {
                return value.parse().with_context(|| format!("{counter}: {value}"));
            }
        }
        return Ok(0);
    }
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp6")?;
    let value = text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(counter))
            .then(|| parts.next())
            .flatten()
    });
    value.map_or(Ok(0), |v| {
        v.parse().with_context(|| format!("{counter}: {v}"))
    })
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
/// cannot clean up after itself). Only touches names `swlab-<pid>-...` with a dead `<pid>`;
/// [`crate::daemon::sweep_stale_instances`] does the same for their daemons' directories.
pub fn sweep_stale() {
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
