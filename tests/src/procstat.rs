//! A process's CPU time and resident memory, read from `/proc`: what the daemon benches sample
//! to show the agent's cost (`% of a core` from `utime + stime` deltas, `VmRSS`).

use anyhow::{Context as _, Result, ensure};

/// `utime` and `stime` of `pid`, in clock ticks ([`clock_ticks`] a second).
pub fn cpu_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let rest = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    ensure!(fields.len() > 12, "malformed /proc/{pid}/stat: {stat:?}");
    Ok((fields[11].parse()?, fields[12].parse()?))
}

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`), the unit of [`cpu_ticks`].
pub fn clock_ticks() -> Result<f64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ensure!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    Ok(hz as f64)
}

/// `VmRSS` of `pid`, KiB.
pub fn vm_rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?)
}
