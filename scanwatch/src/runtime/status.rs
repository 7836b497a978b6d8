//! The agent's status file (`/run/scanwatch/status.json`), which `scanwatch status` and the
//! control CLI read.

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{config::Mode, kernel::pins::Instance};

fn process_alive(pid: u32) -> bool {
    // Signal 0 only checks that the process exists.
    i32::try_from(pid)
        .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// What `scanwatch status` shows about the running agent.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentStatus {
    pub pid: u32,
    pub started: String,
    pub mode: Mode,
    pub dry_run: bool,
    /// (interface, attach mode).
    pub interfaces: Vec<(String, String)>,
    pub tracked_sources: usize,
    pub tracker_capacity: u32,
    /// The most active sources (source, probes in window), at most 10.
    pub top_sources: Vec<(String, u64)>,
    /// `never_block` CIDRs, so the CLI refuses to block them too.
    pub never_block: Vec<String>,
    /// IPv6 aggregation prefix of the tracker and block keys.
    pub ipv6_prefix: u32,
    /// The agent's resolver files, so the CLI protects the same resolvers.
    #[serde(default)]
    pub resolv_conf: Vec<std::path::PathBuf>,
    /// CrowdSec Local API health, when `[crowdsec]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<crate::fleet::shared::FleetStatus>,
}

impl AgentStatus {
    /// Writes the status file atomically (write + rename).
    pub fn write(&self, instance: &Instance) -> anyhow::Result<()> {
        let path = instance.status_file.as_path();
        let dir = path.parent().expect("status file has a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(".status.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Reads the status of a running agent, or explains why there is none.
    pub fn read_running(instance: &Instance) -> anyhow::Result<Self> {
        let path = instance.status_file.as_path();
        let text = std::fs::read_to_string(path).map_err(|_| {
            anyhow::anyhow!(
                "no scanwatch agent is running ({} does not exist); start one with \
                 `scanwatch run` (and pass the same --instance, if it uses one)",
                path.display()
            )
        })?;
        let status: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a scanwatch status file", path.display()))?;
        if !process_alive(status.pid) {
            anyhow::bail!(
                "no scanwatch agent is running (the last one, pid {}, has exited); start one \
                 with `scanwatch run`",
                status.pid
            );
        }
        Ok(status)
    }

    /// Removes the status file (on clean exit).
    pub fn remove(instance: &Instance) {
        let _ = std::fs::remove_file(&instance.status_file);
    }
}
