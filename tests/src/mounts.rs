//! Mounts a test makes on this host (a tmpfs, a bpffs instance, an overlay), unmounted by a
//! guard also when the test fails, and the mount table, so nothing is ever deleted through a
//! mount point that is still in use.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use crate::process::run;

/// A file system mounted at a path, unmounted on drop (lazily if it is busy).
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
}

impl Mount {
    /// `mount -t FSTYPE [-o OPTIONS] SOURCE TARGET`; `target` must exist.
    pub fn new(fstype: &str, source: &str, target: &Path, options: Option<&str>) -> Result<Self> {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", fstype]);
        if let Some(options) = options {
            cmd.args(["-o", options]);
        }
        run(cmd.arg(source).arg(target))?;
        Ok(Self {
            target: target.to_owned(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        unmount(&self.target);
    }
}

/// Unmounts `target`; lazily (`umount -l`) when it is busy, so it is gone from the tree at
/// once and released when its last user goes.
pub fn unmount(target: &Path) {
    if run(Command::new("umount").arg(target)).is_ok() {
        return;
    }
    if let Err(e) = run(Command::new("umount").arg("-l").arg(target)) {
        eprintln!("warning: could not unmount {}: {e:#}", target.display());
    }
}

/// Whether `path` is a mount point (it appears in this process's mount table).
pub fn is_mount_point(path: &Path) -> bool {
    let path = canonical(path);
    mount_points().contains(&path)
}

/// `path` as the mount table spells it: absolute, without `..` or symbolic links (as it is
/// when it does not exist).
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

/// Unmounts every mount at or below `dir`, deepest first, then fails unless none is left:
/// what a killed run may leave in a directory (debootstrap mounts `/proc` and `/sys` in its
/// tree) must be gone before the directory is removed.
pub fn unmount_all_below(dir: &Path) -> Result<()> {
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let below = || -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(dir))
            .collect();
        found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        found
    };
    for mount in below() {
        unmount(&mount);
    }
    let left = below();
    ensure!(
        left.is_empty(),
        "mounts left below {} after unmounting: {left:?}",
        dir.display()
    );
    Ok(())
}

/// Removes directory `dir` and everything in it, after unmounting whatever is mounted below it
/// (never deleting through a mount point); a missing `dir` is fine.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = &dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    unmount_all_below(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// The mount points of this process's mount namespace (`/proc/self/mountinfo`, field 5).
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
    }

    #[test]
    fn remove_tree_unmounts_first_however_the_path_is_spelled() {
        crate::require_root();
        let scratch = crate::process::TempDir::new("mounts").unwrap();
        let tree = scratch.path().join("tree");
        let inner = tree.join("m");
        std::fs::create_dir_all(&inner).unwrap();
        let mount = Mount::new("tmpfs", "tmpfs", &inner, None).unwrap();
        std::fs::write(inner.join("kept"), "on the tmpfs").unwrap();
        assert!(is_mount_point(&tree.join("m/../m")));
        remove_tree(&tree.join("m/../../tree")).unwrap();
        // Unmounted by remove_tree already.
        std::mem::forget(mount);
        assert!(!tree.exists());
        assert!(!is_mount_point(&inner));
    }
}
