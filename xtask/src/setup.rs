//! `cargo xtask setup`: makes sure the tools that build the eBPF object are installed.
//!
//! `scanwatch/build.rs` builds `scanwatch-ebpf` for `bpfel-unknown-none` with
//! `rustup run nightly cargo build -Z build-std=core`, linked by `bpf-linker`. So we need
//! rustup, the `nightly` toolchain with its `rust-src` component, and `bpf-linker` at exactly
//! [`BPF_LINKER_VERSION`].

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// The bpf-linker we build with: 0.10.4 builds from crates.io with its own LLVM; newer releases
/// need a system LLVM (`llvm-config` for LLVM 22) that most machines do not have.
pub const BPF_LINKER_VERSION: &str = "0.10.4";

/// The toolchain `scanwatch/build.rs` compiles the eBPF crate with.
const NIGHTLY: &str = "nightly";

/// Checks for, and installs if missing, everything the eBPF build needs.
pub fn setup() -> Result<()> {
    check_rustup()?;
    check_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    Ok(())
}

fn check_rustup() -> Result<()> {
    if cmd::output(Command::new("rustup").arg("--version"))?.is_none() {
        bail!(
            "rustup is not on PATH. scanwatch builds its eBPF object with the nightly toolchain \
             through rustup: install rustup from https://rustup.rs, then run\n    \
             rustup toolchain install {NIGHTLY} --component rust-src\n\
             (under sudo, keep your PATH: sudo -E env \"PATH=$PATH\" cargo xtask ...)"
        );
    }
    Ok(())
}

fn check_nightly() -> Result<()> {
    let list = cmd::output(Command::new("rustup").args(["toolchain", "list"]))?.unwrap_or_default();
    if !list.lines().any(is_plain_nightly) {
        bail!(
            "the `{NIGHTLY}` toolchain is not installed; the eBPF object is built with it \
             (`-Z build-std=core` for bpfel-unknown-none). Install it with\n    \
             rustup toolchain install {NIGHTLY} --component rust-src\nthen rerun."
        );
    }
    eprintln!("scanwatch: {NIGHTLY} toolchain present");
    Ok(())
}

/// True for a `rustup toolchain list` line naming the plain nightly channel
/// (`nightly-x86_64-unknown-linux-gnu (default)`), not a dated one (`nightly-2025-01-01-...`).
fn is_plain_nightly(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or_default();
    name == NIGHTLY
        || name
            .strip_prefix("nightly-")
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

fn ensure_rust_src() -> Result<()> {
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        NIGHTLY,
        "--installed",
    ]))?
    .unwrap_or_default();
    if installed.lines().any(|line| line.trim() == "rust-src") {
        eprintln!("scanwatch: {NIGHTLY} rust-src present");
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", NIGHTLY]);
    eprintln!(
        "scanwatch: installing rust-src for {NIGHTLY} (the eBPF object is built with \
         -Z build-std=core, which needs the core sources) — {}",
        cmd::display(&add)
    );
    cmd::run(&mut add).context(
        "could not install rust-src (see rustup's output above). Check network access to \
         static.rust-lang.org, or run the command yourself, then rerun",
    )
}

/// The version `bpf-linker --version` reports (`bpf-linker 0.10.4`), or `None` if it is not
/// on PATH.
fn bpf_linker_version() -> Result<Option<String>> {
    let Some(out) = cmd::output(Command::new("bpf-linker").arg("--version"))? else {
        return Ok(None);
    };
    Ok(Some(
        parse_version(&out).unwrap_or_else(|| out.trim().to_owned()),
    ))
}

/// `0.10.4` from `bpf-linker 0.10.4`.
fn parse_version(out: &str) -> Option<String> {
    let mut words = out.split_whitespace();
    (words.next()? == "bpf-linker").then_some(())?;
    words.next().map(str::to_owned)
}

/// bpf-linker at [`BPF_LINKER_VERSION`], installed if PATH has none or another.
fn ensure_bpf_linker() -> Result<()> {
    cmd::PinnedTool {
        name: "bpf-linker",
        version: BPF_LINKER_VERSION,
        purpose: "links the eBPF object",
        version_source: "`bpf-linker --version` on PATH",
        installed: bpf_linker_version,
        why: |found| match found {
            None => "none on PATH".to_owned(),
            Some(other) => format!(
                "PATH has {other}, and only {BPF_LINKER_VERSION} builds without a system LLVM"
            ),
        },
    }
    .ensure()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_plain_nightly_toolchain() {
        assert!(is_plain_nightly("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_plain_nightly(
            "nightly-x86_64-unknown-linux-gnu (default)"
        ));
        assert!(is_plain_nightly("nightly"));
        assert!(!is_plain_nightly(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu"
        ));
        assert!(!is_plain_nightly(
            "stable-x86_64-unknown-linux-gnu (active, default)"
        ));
        assert!(!is_plain_nightly(""));
    }

    #[test]
    fn parses_bpf_linker_version() {
        assert_eq!(
            parse_version("bpf-linker 0.10.4\n").as_deref(),
            Some("0.10.4")
        );
        assert_eq!(parse_version("something 1.0"), None);
        assert_eq!(parse_version(""), None);
    }
}
