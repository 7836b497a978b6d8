//! A minimal Debian system with systemd, for tests that boot it in a container
//! ([`crate::nspawn`]): made once by debootstrap (`--variant=minbase`, from the mirror this
//! host's apt uses) and cached in `target/systemd-root/`.
//!
//! The cache is keyed by what the tree was made from (suite, variant, packages), written into
//! the tree as its last step; a tree with another key is made again. A tree is made in a
//! directory of its own and renamed into place only when complete, so an interrupted run never
//! leaves one that looks cached, and the next run removes what it left. Tests never write to the
//! cached tree: they boot a copy of it ([`crate::nspawn::Rootfs`]).

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    mounts::{remove_tree, unmount_all_below},
    process::tail,
};

/// The Debian release the tree holds: the one the tests' packages are built on.
pub const SUITE: &str = "bookworm";
/// debootstrap's smallest variant: essential packages and apt.
const VARIANT: &str = "minbase";
/// What a booted system needs on top of minbase: systemd as PID 1 (`systemd-sysv`), a system
/// bus for `systemctl`, and `ip` to look at the interfaces from inside.
pub const BASE_PACKAGES: [&str; 4] = ["systemd", "systemd-sysv", "dbus", "iproute2"];
/// Longest debootstrap may take (about a minute from a nearby mirror; a slow one takes more).
const DEBOOTSTRAP_LIMIT: Duration = Duration::from_secs(20 * 60);
/// The file in the tree's root that holds its key.
const MARKER: &str = ".scanwatch-tree";
/// The cache directory's name under the target directory.
const CACHE_NAME: &str = "systemd-root";

/// Serialises making the tree between the tests of one process.
static MAKE: Mutex<()> = Mutex::new(());

/// The cached tree holding [`BASE_PACKAGES`] and `extra` (e.g. the dependencies of a package a
/// test installs in it), made first if it is missing or was made from other packages.
pub fn tree(extra: &[String]) -> Result<PathBuf> {
    let _guard = MAKE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut packages: Vec<String> = BASE_PACKAGES.map(str::to_owned).into();
    packages.extend(extra.iter().cloned());
    packages.sort();
    packages.dedup();
    let include = format!("--include={}", packages.join(","));
    let key = format!("debootstrap --variant={VARIANT} {include} {SUITE}\n");

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target)?;
    let cache = target
        .canonicalize()
        .with_context(|| format!("resolving {}", target.display()))?
        .join(CACHE_NAME);
    if std::fs::read_to_string(cache.join(MARKER)).is_ok_and(|k| k == key) {
        return Ok(cache);
    }
    let parent = cache.parent().context("the cache has a parent")?;
    sweep_stale(parent)?;

    let mirror = mirror()?;
    let partial = parent.join(format!("{CACHE_NAME}.partial-{}", std::process::id()));
    remove_tree(&partial)?;
    eprintln!(
        "making a Debian {SUITE} tree with systemd in {} (debootstrap from {mirror}; a few \
         minutes, once: later runs use the cached tree)",
        cache.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", &DEBOOTSTRAP_LIMIT.as_secs().to_string()])
        .arg("debootstrap")
        .arg(format!("--variant={VARIANT}"))
        .arg(&include)
        .arg(SUITE)
        .arg(&partial)
        .arg(&mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    // SAFETY: prctl(2) only, between fork and exec. If this test process dies, `timeout` gets
    // SIGTERM and passes it on, so no debootstrap keeps writing into a tree that the next run
    // sweeps away.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(partial.join("debootstrap/debootstrap.log"))
            .unwrap_or_default();
        let _ = remove_tree(&partial);
        bail!(
            "debootstrap could not make the Debian tree: {shown} failed ({}) after {:.0?}:\n{}\n{}\
             \ndebootstrap.log (end):\n{}",
            out.status,
            started.elapsed(),
            tail(&String::from_utf8_lossy(&out.stdout), 20),
            tail(&String::from_utf8_lossy(&out.stderr), 20),
            tail(&log, 30)
        );
    }
    // debootstrap unmounts the /proc and /sys it mounted in the tree; be sure before caching.
    unmount_all_below(&partial)?;
    std::fs::write(partial.join(MARKER), &key)?;
    if cache.exists() {
        let stale = parent.join(format!("{CACHE_NAME}.stale-{}", std::process::id()));
        std::fs::rename(&cache, &stale)
            .with_context(|| format!("moving the old tree {} aside", cache.display()))?;
        remove_tree(&stale)?;
    }
    std::fs::rename(&partial, &cache)
        .with_context(|| format!("renaming {} to {}", partial.display(), cache.display()))?;
    eprintln!(
        "made the Debian tree in {:.0?} ({key:?})",
        started.elapsed()
    );
    Ok(cache)
}

/// Removes partial and replaced trees left by runs that are gone (killed mid-debootstrap).
fn sweep_stale(parent: &Path) -> Result<()> {
    for entry in std::fs::read_dir(parent)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = [".partial-", ".stale-"].iter().find_map(|infix| {
            name.strip_prefix(CACHE_NAME)?
                .strip_prefix(infix)?
                .parse::<u32>()
                .ok()
        }) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// The Debian mirror this host's apt uses for [`SUITE`]: the first URI of an enabled `deb`
/// stanza for it in `/etc/apt/sources.list.d/*.sources`, else of a `deb` line for it in
/// `/etc/apt/sources.list` or `/etc/apt/sources.list.d/*.list`. Read at run time, so the tests
/// use whatever mirror (or proxy) this host is set up with.
pub fn mirror() -> Result<String> {
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let deb822 = files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "sources"))
        .find_map(|p| deb822_mirror(&read(p), SUITE));
    let one_line = || {
        std::iter::once(PathBuf::from("/etc/apt/sources.list"))
            .chain(
                files
                    .iter()
                    .filter(|p| p.extension().is_some_and(|x| x == "list"))
                    .cloned(),
            )
            .find_map(|p| one_line_mirror(&read(&p), SUITE))
    };
    deb822.or_else(one_line).with_context(|| {
        format!(
            "no Debian mirror for {SUITE} in /etc/apt/sources.list.d/*.sources or \
             /etc/apt/sources.list: debootstrap needs one to make the test's Debian tree"
        )
    })
}

/// The first URI of an enabled `Types: deb` stanza whose `Suites` include `suite`.
fn deb822_mirror(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if !line.starts_with('#') {
            stanzas.last_mut()?.push(line);
        }
    }
    stanzas.iter().find_map(|stanza| {
        let field = |name: &str| {
            stanza.iter().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.split_whitespace().collect::<Vec<_>>())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != ["no"]);
        let deb = field("Types").is_some_and(|t| t.contains(&"deb"));
        let for_suite = field("Suites").is_some_and(|s| s.contains(&suite));
        (enabled && deb && for_suite)
            .then(|| field("URIs")?.first().map(|u| (*u).to_owned()))
            .flatten()
    })
}

/// The URI of the first `deb [options] URI SUITE COMPONENTS...` line for `suite`.
fn one_line_mirror(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == suite).then(|| uri.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn mirror_from_a_deb822_sources_file() {
        assert_eq!(
            deb822_mirror(SOURCES, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            deb822_mirror(SOURCES, "bookworm-security").as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        assert_eq!(deb822_mirror(SOURCES, "trixie"), None);
        let disabled = SOURCES.replacen("Types: deb\n", "Types: deb\nEnabled: no\n", 1);
        assert_eq!(deb822_mirror(&disabled, "bookworm"), None);
        let sources_only = SOURCES.replace("Types: deb\n", "Types: deb-src\n");
        assert_eq!(deb822_mirror(&sources_only, "bookworm"), None);
    }

    #[test]
    fn mirror_from_a_one_line_sources_list() {
        let list = "\
# deb http://old.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main
deb http://other.example/debian bookworm main
";
        assert_eq!(
            one_line_mirror(list, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(one_line_mirror(list, "trixie"), None);
    }
}
