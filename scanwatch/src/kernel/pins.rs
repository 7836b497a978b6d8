//! Pinned enforcement state under `/sys/fs/bpf/scanwatch/`: the block maps live there so a
//! daemon restart keeps its blocks and the control CLI (`scanwatch block`, `list`, ...) can
//! reach them while the agent runs. Also the agent's status file for `scanwatch status`.

use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// bpffs mount point.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Where one agent keeps its pinned maps and status file. The default instance uses
/// `/sys/fs/bpf/scanwatch/` and `/run/scanwatch/status.json`; `--instance NAME` uses
/// `scanwatch-NAME` in both places, so several agents (one per network namespace) can run on
/// one host without sharing block maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub pin_dir: PathBuf,
    pub status_file: PathBuf,
}

impl Instance {
    /// The paths of instance `name` (`None`: the default instance).
    pub fn new(name: Option<&str>) -> anyhow::Result<Self> {
        let dir = match name {
            None => "scanwatch".to_owned(),
            Some(n)
                if !n.is_empty()
                    && n.len() <= 64
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                format!("scanwatch-{n}")
            }
            Some(n) => anyhow::bail!("--instance `{n}`: use 1 to 64 letters, digits, `-` or `_`"),
        };
        Ok(Self {
            pin_dir: Path::new(BPFFS).join(&dir),
            status_file: Path::new("/run").join(dir).join("status.json"),
        })
    }

    /// Path of a pinned map.
    pub fn pin_path(&self, map: &str) -> PathBuf {
        self.pin_dir.join(map)
    }

    /// Makes sure bpffs is mounted at /sys/fs/bpf (mounting it if not) and the pin directory
    /// exists. A pin directory that is already on bpffs is used as it is: the systemd unit
    /// bind-mounts `/sys/fs/bpf/scanwatch` (created for the service user) over a tmpfs at
    /// `/sys/fs/bpf`, so an unprivileged agent reaches it although systemd mounts the host's
    /// bpffs with mode 0700, and it needs no CAP_SYS_ADMIN to mount anything.
    pub fn ensure_pin_dir(&self) -> anyhow::Result<()> {
        if is_bpffs(&self.pin_dir) {
            return Ok(());
        }
        if !is_bpffs(Path::new(BPFFS)) {
            std::fs::create_dir_all(BPFFS).ok();
            nix::mount::mount(
                Some("bpf"),
                BPFFS,
                Some("bpf"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .map_err(io::Error::from)
            .context("mounting bpffs at /sys/fs/bpf (needed to pin the block maps)")?;
            log::info!("mounted bpffs at {BPFFS}");
        }
        std::fs::create_dir_all(&self.pin_dir)
            .with_context(|| format!("creating {}", self.pin_dir.display()))
    }

    /// `--reset-state`: removes the pinned maps so the agent starts with no blocks.
    pub fn reset(&self) -> anyhow::Result<()> {
        for map in [
            scanwatch_common::maps::BLOCKS,
            scanwatch_common::maps::BLOCKLIST,
            scanwatch_common::maps::BLOCK_PRESENCE,
            scanwatch_common::maps::BLOCK_CACHE,
        ] {
            let path = self.pin_path(map);
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!("--reset-state: removed {}", path.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }
}

fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}
