//! From the kernel's record of a socket's sender to the alert's [`Process`]: `/proc` for the
//! executable, command line and parent (while the process lives), the user database for the
//! user's name, and the cgroup v2 tree for the cgroup's path. Read only when a finding is
//! written; the user and cgroup names are cached, bounded.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use scanwatch_common::owner::{Sender, SocketOwner, comm_name};

use super::{COMMAND_LINE_CHARS, Parent, Process, User, cgroup};
use crate::text::escape;

/// Entries each cache keeps before it starts over: the names of a host's users and cgroups
/// are few, and a local user making many cannot grow the agent's memory.
const CACHE_ENTRIES: usize = 4096;
/// Directories visited looking for one cgroup id (the tree of a host with many containers
/// has a few thousand).
const CGROUP_WALK_LIMIT: usize = 65_536;
/// Bytes of `/proc/PID/cmdline` read.
const CMDLINE_BYTES: u64 = 4096;

/// Where the resolver reads: `/proc`, the user database, and the cgroup v2 mount (`None` when
/// the host has none).
#[derive(Clone, Debug)]
pub struct Roots {
    pub proc: PathBuf,
    pub passwd: PathBuf,
    pub cgroup: Option<PathBuf>,
}

impl Roots {
    /// The host's: the cgroup v2 mount is found in `/proc/self/mountinfo` (`/sys/fs/cgroup`,
    /// or `/sys/fs/cgroup/unified` on a hybrid hierarchy).
    pub fn host() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self {
            proc: PathBuf::from("/proc"),
            passwd: PathBuf::from("/etc/passwd"),
            cgroup: cgroup2_mount(&mountinfo),
        }
    }
}

/// The mount point of the first cgroup2 file system in a `mountinfo` text.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// Resolves the kernel's records into alerts' processes.
#[derive(Debug)]
pub struct Resolver {
    roots: Roots,
    users: HashMap<u32, Option<String>>,
    cgroups: HashMap<u64, Option<String>>,
}

impl Resolver {
    pub fn new(roots: Roots) -> Self {
        Self {
            roots,
            users: HashMap::new(),
            cgroups: HashMap::new(),
        }
    }

    /// The process of a finding sent through `sender`, whose sender the kernel recorded as
    /// `owner` (if it still holds the record); `None` when neither says anything.
    pub fn process(&mut self, sender: &Sender, owner: Option<&SocketOwner>) -> Option<Process> {
        let cgroup_id = match (sender.cgroup, owner) {
            (0, Some(o)) => o.cgroup,
            (id, _) => id,
        };
        let cgroup = (cgroup_id != 0)
            .then(|| self.cgroup_path(cgroup_id))
            .flatten();
        if owner.is_none() && cgroup.is_none() {
            return None;
        }
        let mut p = Process {
            unit: cgroup
                .as_deref()
                .and_then(cgroup::unit)
                .map(|u| escape(&u, COMMAND_LINE_CHARS)),
            container: cgroup.as_deref().and_then(cgroup::container),
            cgroup: cgroup.map(|c| escape(&c, COMMAND_LINE_CHARS)),
            ..Process::default()
        };
        if let Some(o) = owner {
            let comm = comm_name(&o.comm).map(str::to_owned);
            p.pid = Some(o.tgid);
            p.name = comm.as_deref().map(|c| escape(c, 16));
            p.user = Some(User {
                id: o.uid,
                name: self.user_name(o.uid),
            });
            if let Some(dir) = self.live_dir(o, comm.as_deref()) {
                p.executable = fs::read_link(dir.join("exe"))
                    .ok()
                    .map(|e| escape(&e.to_string_lossy(), COMMAND_LINE_CHARS));
                p.command_line = command_line(&dir);
                p.parent = self.parent(&dir);
            }
        }
        Some(p)
    }

    /// `/proc/TGID` if it is still the process that sent through the socket: its main thread
    /// or the sending thread still has the recorded command name (a reused process id would
    /// have to have it too).
    fn live_dir(&self, o: &SocketOwner, comm: Option<&str>) -> Option<PathBuf> {
        let comm = comm?;
        let dir = self.roots.proc.join(o.tgid.to_string());
        let same = |path: PathBuf| {
            fs::read_to_string(path).is_ok_and(|c| c.trim_end_matches('\n') == comm)
        };
        (same(dir.join("comm")) || same(dir.join(format!("task/{}/comm", o.pid)))).then_some(dir)
    }

    fn parent(&self, dir: &Path) -> Option<Parent> {
        let status = fs::read_to_string(dir.join("status")).ok()?;
        let pid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        let name = fs::read_to_string(self.roots.proc.join(pid.to_string()).join("comm"))
            .ok()
            .map(|c| escape(c.trim_end_matches('\n'), 16));
        (pid != 0).then_some(Parent { pid, name })
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        if let Some(name) = self.users.get(&uid) {
            return name.clone();
        }
        let passwd = fs::read_to_string(&self.roots.passwd).unwrap_or_default();
        let name = passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| escape(name, 64))
        });
        remember(&mut self.users, uid, name.clone());
        name
    }

    fn cgroup_path(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.cgroups.get(&id) {
            return path.clone();
        }
        let path = self
            .roots
            .cgroup
            .as_deref()
            .and_then(|root| find_cgroup(root, id));
        // A cgroup not found now may be made later: only found paths are kept.
        if path.is_some() {
            remember(&mut self.cgroups, id, path.clone());
        }
        path
    }
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &mut HashMap<K, V>, key: K, value: V) {
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, value);
}

/// `/proc/PID/cmdline`, arguments joined by spaces, escaped and bounded.
fn command_line(dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut raw = Vec::new();
    fs::File::open(dir.join("cmdline"))
        .ok()?
        .take(CMDLINE_BYTES)
        .read_to_end(&mut raw)
        .ok()?;
    let text = String::from_utf8_lossy(&raw);
    let joined = text.trim_end_matches('\0').replace('\0', " ");
    (!joined.is_empty()).then(|| escape(&joined, COMMAND_LINE_CHARS))
}

/// The path (from the cgroup v2 root, `/` for the root) of the cgroup whose id is `id`: the
/// id of a cgroup v2 directory is its inode number. Breadth first, bounded.
pub fn find_cgroup(root: &Path, id: u64) -> Option<String> {
    if fs::metadata(root).ok()?.ino() == id {
        return Some("/".to_owned());
    }
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    let mut visited = 0;
    while let Some(dir) = queue.pop_front() {
        for entry in fs::read_dir(&dir).ok()?.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            visited += 1;
            if visited > CGROUP_WALK_LIMIT {
                return None;
            }
            let path = entry.path();
            if entry.metadata().is_ok_and(|m| m.ino() == id) {
                let relative = path.strip_prefix(root).ok()?;
                return Some(format!("/{}", relative.to_string_lossy()));
            }
            queue.push_back(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed when the test ends.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("scanwatch-proc-{}-{test}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn owner(tgid: u32, comm: &str) -> SocketOwner {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        SocketOwner {
            tgid,
            pid: tgid,
            uid: 1234,
            gid: 1234,
            comm: c,
            ..SocketOwner::default()
        }
    }

    /// A fake `/proc` with one process (tgid 42, parent 7) and a user database.
    fn fake(dir: &Path) -> Roots {
        let p = dir.join("proc/42");
        fs::create_dir_all(p.join("task/43")).unwrap();
        fs::write(p.join("comm"), "scanner\n").unwrap();
        fs::write(p.join("task/43/comm"), "worker\n").unwrap();
        fs::write(
            p.join("cmdline"),
            b"python3\0scan.py\0--ports\x001-1024\x1b[2J\0",
        )
        .unwrap();
        fs::write(p.join("status"), "Name:\tscanner\nPPid:\t7\nUid:\t1234\n").unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3.11", p.join("exe")).unwrap();
        fs::create_dir_all(dir.join("proc/7")).unwrap();
        fs::write(dir.join("proc/7/comm"), "bash\n").unwrap();
        fs::write(
            dir.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1234:1234::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::create_dir_all(dir.join("cg/lab.slice/scan.service")).unwrap();
        Roots {
            proc: dir.join("proc"),
            passwd: dir.join("passwd"),
            cgroup: Some(dir.join("cg")),
        }
    }

    #[test]
    fn a_live_process_is_named_in_full() {
        let dir = Scratch::new("full");
        let roots = fake(dir.path());
        let id = fs::metadata(dir.path().join("cg/lab.slice/scan.service"))
            .unwrap()
            .ino();
        let mut r = Resolver::new(roots);
        let sender = Sender {
            cookie: 9,
            cgroup: id,
        };
        let p = r.process(&sender, Some(&owner(42, "scanner"))).unwrap();
        assert_eq!(p.pid, Some(42));
        assert_eq!(p.name.as_deref(), Some("scanner"));
        assert_eq!(p.executable.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(
            p.command_line.as_deref(),
            Some("python3 scan.py --ports 1-1024\\u{1b}[2J")
        );
        assert_eq!(
            p.parent,
            Some(Parent {
                pid: 7,
                name: Some("bash".into())
            })
        );
        assert_eq!(
            p.user,
            Some(User {
                id: 1234,
                name: Some("alice".into())
            })
        );
        assert_eq!(p.cgroup.as_deref(), Some("/lab.slice/scan.service"));
        assert_eq!(p.unit.as_deref(), Some("scan.service"));
        assert_eq!(p.container, None);
    }

    #[test]
    fn a_thread_named_otherwise_still_matches_its_process() {
        let dir = Scratch::new("thread");
        let mut r = Resolver::new(fake(dir.path()));
        let mut o = owner(42, "worker");
        o.pid = 43;
        let p = r.process(&Sender::NONE, Some(&o)).unwrap();
        assert_eq!(p.executable.as_deref(), Some("/usr/bin/python3.11"));
    }

    #[test]
    fn a_reused_or_exited_pid_lends_nothing() {
        let dir = Scratch::new("reused");
        let mut r = Resolver::new(fake(dir.path()));
        // Process 42 is now another program: only the kernel's record is told.
        let p = r.process(&Sender::NONE, Some(&owner(42, "nmap"))).unwrap();
        assert_eq!((p.pid, p.name.as_deref()), (Some(42), Some("nmap")));
        assert_eq!((p.executable, p.command_line, p.parent), (None, None, None));
        // Gone.
        let p = r.process(&Sender::NONE, Some(&owner(99, "nmap"))).unwrap();
        assert_eq!(p.executable, None);
        assert_eq!(p.user.unwrap().name.as_deref(), Some("alice"));
    }

    #[test]
    fn without_a_record_the_packet_cgroup_is_all_there_is() {
        let dir = Scratch::new("cgroup_only");
        let roots = fake(dir.path());
        let id = fs::metadata(dir.path().join("cg/lab.slice")).unwrap().ino();
        let mut r = Resolver::new(roots);
        let p = r
            .process(
                &Sender {
                    cookie: 5,
                    cgroup: id,
                },
                None,
            )
            .unwrap();
        assert_eq!(p.pid, None);
        assert_eq!(p.cgroup.as_deref(), Some("/lab.slice"));
        assert_eq!(r.process(&Sender::NONE, None), None);
        assert_eq!(
            r.process(
                &Sender {
                    cookie: 5,
                    cgroup: 1
                },
                None
            ),
            None
        );
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n\
                      36 25 0:31 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_mount("36 25 0:31 / /x rw - cgroup cgroup rw,cpu\n"),
            None
        );
    }
}
