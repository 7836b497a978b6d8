//! The process behind an egress finding: who sent through the socket its probes left by
//! (`scanwatch_common::owner`), as the alert names it. `cgroup` reads a unit or a container out
//! of a cgroup path; `procfs` resolves the kernel's record (process id, command name, user,
//! cgroup id) into names when the finding is written.

pub mod cgroup;
pub mod procfs;

use serde::Serialize;

pub use self::cgroup::Container;

/// Who sent an egress finding's probes, under `process` in the alert. Every field but `pid`
/// and `name` may be missing: the process may have exited before the finding was written, the
/// agent may not be allowed to read its executable, and the socket's sender is unknown when
/// the kernel's record of it was lost (only `cgroup` is left then, read from the packet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id (in the host's PID namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Command name (`comm`), escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path of the executable, escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// Arguments joined by spaces, escaped and truncated to [`COMMAND_LINE_CHARS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// The cgroup v2 path of the socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The systemd unit the cgroup path names (a service or a scope).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The container the cgroup path names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

/// The parent of the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Parent {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The user the process ran as when it sent the socket's first probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: u32,
    /// From the local user database; absent for a user it does not list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Characters of a command line kept in an alert.
pub const COMMAND_LINE_CHARS: usize = 512;
