//! Running commands the way the tasks need: print each one (`+ cargo ...`) before it runs, fail
//! with the command line in the error, and find the workspace and the tools.

use std::{
    ffi::OsString,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the xtask crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, with the same cargo that runs this xtask
/// (cargo sets `CARGO` for `cargo run`), so the toolchain stays the same.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line as a user would type it: `cargo` rather than the path of the toolchain's
/// cargo, arguments with spaces quoted.
pub fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    let root = workspace_root();
    let mut line = if let Ok(relative) = program.strip_prefix(&root) {
        relative.display().to_string()
    } else if let Some(name) = program.file_name() {
        name.to_string_lossy().into_owned()
    } else {
        program.display().to_string()
    };
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            let _ = write!(line, " '{arg}'");
        } else {
            let _ = write!(line, " {arg}");
        }
    }
    line
}

/// Prints `+ <command>` to stderr.
pub fn announce(cmd: &Command) {
    eprintln!("+ {}", display(cmd));
}

/// Prints and runs `cmd`; returns its exit status (after it could be started).
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    announce(cmd);
    cmd.status()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Prints and runs `cmd`; fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or `None` if the program is not installed.
/// Fails if it runs but exits unsuccessfully.
pub fn output(cmd: &mut Command) -> Result<Option<String>> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(Some(String::from_utf8_lossy(&out.stdout).into())),
        Ok(out) => bail!(
            "`{}` failed ({}): {}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not start `{}`", display(cmd))),
    }
}

/// The version `cargo SUB --version` reports (its last word: `cargo-deb 3.8.0` or `3.8.0`),
/// or `None` when the subcommand is not installed.
pub fn cargo_subcommand_version(sub: &str) -> Result<Option<String>> {
    let out = cargo()
        .args([sub, "--version"])
        .stderr(std::process::Stdio::null())
        .output()
        .context("could not start cargo")?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().last().map(str::to_owned))
}

/// A tool that `cargo install` builds from crates.io, pinned to the one version the tasks use
/// (bpf-linker, cargo-deb). Every pinned tool is checked and installed by [`PinnedTool::ensure`],
/// so their checks and messages stay alike.
pub struct PinnedTool {
    /// The crate, as `cargo install` and the messages name it.
    pub name: &'static str,
    /// The version the tasks use.
    pub version: &'static str,
    /// What the tool does, for the install notice ("links the eBPF object").
    pub purpose: &'static str,
    /// Where `installed` reads the version, as the error after a failed install names it
    /// ("`bpf-linker --version` on PATH").
    pub version_source: &'static str,
    /// The version installed now, or `None` when there is none.
    pub installed: fn() -> Result<Option<String>>,
    /// Why the tool is being installed, given the other version `installed` found (`None`:
    /// none at all), for the install notice.
    pub why: fn(Option<&str>) -> String,
}

impl PinnedTool {
    /// Does nothing if the pinned version is installed; else installs it with
    /// `cargo install --locked` (`--force` over another version) and checks that the version
    /// is then the pinned one.
    pub fn ensure(&self) -> Result<()> {
        let (name, version) = (self.name, self.version);
        let found = (self.installed)()?;
        if found.as_deref() == Some(version) {
            eprintln!("scanwatch: {name} {version} present");
            return Ok(());
        }
        let mut install = cargo();
        install.args(["install", name, "--version", version, "--locked"]);
        if found.is_some() {
            // Replace the other version in CARGO_HOME/bin.
            install.arg("--force");
        }
        eprintln!(
            "scanwatch: installing {name} {version} ({}; {}) — {}",
            self.purpose,
            (self.why)(found.as_deref()),
            display(&install)
        );
        run(&mut install).with_context(|| {
            format!(
                "could not install {name} {version} (see cargo's output above). It builds from \
                 crates.io: check network access to crates.io, or run the command yourself, then \
                 rerun"
            )
        })?;
        match (self.installed)()? {
            Some(v) if v == version => {
                eprintln!("scanwatch: {name} {version} installed");
                Ok(())
            }
            other => bail!(
                "installed {name} {version}, but {} reports {}; put cargo's bin directory \
                 (usually ~/.cargo/bin) first on PATH, then rerun",
                self.version_source,
                other.as_deref().unwrap_or("nothing (not found)")
            ),
        }
    }
}

/// The effective user id, read from `/proc/self/status` (no libc dependency needed).
pub fn effective_uid() -> Result<u32> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_effective_uid(&status).context("no Uid line in /proc/self/status")
}

/// The effective uid from the `Uid:` line of a `/proc/<pid>/status` file (real, effective,
/// saved, filesystem).
fn parse_effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Fails with a message telling the user to rerun `task` as root.
pub fn require_root(task: &str, why: &str) -> Result<()> {
    if effective_uid()? != 0 {
        bail!(
            "`cargo xtask {task}` must run as root: {why}. Rerun it with sudo, keeping your \
             toolchain on PATH:\n    sudo -E env \"PATH=$PATH\" cargo xtask {task}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_effective_uid_from_proc_status() {
        let status =
            "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn displays_commands_as_typed() {
        let mut cmd = Command::new("/some/toolchain/bin/cargo");
        cmd.args(["test", "--workspace", "a filter"]);
        assert_eq!(display(&cmd), "cargo test --workspace 'a filter'");
        let cmd = Command::new(workspace_root().join("target/release/scanwatch"));
        assert_eq!(display(&cmd), "target/release/scanwatch");
    }
}
