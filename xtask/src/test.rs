//! `cargo xtask test`: clippy on every host crate and on the eBPF crate (for its BPF target),
//! then every test (host unit tests, kernel tests under `BPF_PROG_TEST_RUN`, end-to-end tests in
//! network namespaces), then a one-line summary.

use std::{
    ffi::OsString,
    io::{BufRead as _, BufReader, Write as _},
    process::{ExitCode, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result};

use crate::cmd;

/// The eBPF crate only builds for `bpfel-unknown-none` (through `scanwatch/build.rs`); built
/// for the host its `no_std` binaries clash with the test harness's `std`.
const EBPF_CRATE: &str = "scanwatch-ebpf";

/// Runs clippy and the tests; `args` go to `cargo test` (a filter, or `-- --nocapture`).
pub fn test(args: &[OsString]) -> Result<ExitCode> {
    cmd::require_root(
        "test",
        "the kernel and end-to-end tests load BPF programs and create network namespaces \
         (CAP_BPF + CAP_NET_ADMIN)",
    )?;
    crate::setup::setup()?;
    let start = Instant::now();

    let mut clippy = cmd::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        EBPF_CRATE,
        "--all-targets",
    ]);
    clippy.args(["--", "-D", "warnings"]);
    // Clippy failing does not stop the tests: their results are worth seeing either way.
    let clippy_ok = cmd::status(&mut clippy)?.success();
    let ebpf_clippy_ok = cmd::status(&mut ebpf_clippy())?.success();
    let clippy_ok = clippy_ok && ebpf_clippy_ok;

    // The end-to-end tests run the daemon binary (target/debug/scanwatch), which `cargo test`
    // does not build for another package.
    cmd::run(cmd::cargo().args(["build", "-p", "scanwatch"]))?;
    // The package test (tests/tests/package.rs) installs a .deb: built here from that same
    // debug binary, so testing the packaging costs no second, optimised build.
    let deb = crate::package::package(
        crate::package::Profile::Dev,
        &cmd::target_dir().join("debian-test"),
    )?;

    let mut test = cmd::cargo();
    // --no-fail-fast: one failing test binary must not hide the results of the others.
    test.args([
        "test",
        "--workspace",
        "--exclude",
        EBPF_CRATE,
        "--no-fail-fast",
    ]);
    test.args(args).env("SCANWATCH_DEB", &deb);
    let (test_status, tally) = run_counting(&mut test)?;

    let clippy_part = if clippy_ok {
        "clippy clean"
    } else {
        "clippy reported problems"
    };
    let tests_part = if tally.binaries == 0 && !test_status.success() {
        "cargo test failed before running any test (build error?)".to_owned()
    } else {
        format!(
            "{} passed, {} failed, {} ignored ({} test binaries)",
            tally.passed, tally.failed, tally.ignored, tally.binaries
        )
    };
    let ok = clippy_ok && test_status.success();
    eprintln!(
        "scanwatch: test {}: {clippy_part}; {tests_part}; {:.0?}",
        if ok { "ok" } else { "FAILED" },
        start.elapsed()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        // cargo test's own code (101 for failures) when it failed, else 1 for clippy.
        test_status
            .code()
            .filter(|&code| code != 0)
            .map_or(ExitCode::FAILURE, |code| ExitCode::from(code as u8))
    })
}

/// Clippy on the eBPF crate, for the target it is built for: nightly, `bpfel-unknown-none`,
/// `-Z build-std=core`, as `scanwatch/build.rs` builds it (aya lints its eBPF crates this way).
fn ebpf_clippy() -> std::process::Command {
    let mut cmd = std::process::Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "clippy", "--package", EBPF_CRATE])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"])
        .current_dir(cmd::workspace_root())
        // The outer cargo's compiler settings are for the host toolchain, not nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS");
    cmd
}

/// Totals of the `test result:` lines libtest prints, one per test binary.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
    binaries: u64,
}

impl Tally {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line; ignores others.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        self.binaries += 1;
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Prints and runs `cmd`, copying its stdout through line by line while counting results.
fn run_counting(cmd: &mut std::process::Command) -> Result<(std::process::ExitStatus, Tally)> {
    cmd::announce(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::display(cmd)))?;
    let mut reader = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut tally = Tally::default();
    let mut stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        stdout.write_all(&line)?;
        stdout.flush()?;
        tally.add_line(&String::from_utf8_lossy(&line));
    }
    let status = child.wait()?;
    Ok((status, tally))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_libtest_result_lines() {
        let mut t = Tally::default();
        t.add_line("running 3 tests\n");
        t.add_line(
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; \
             finished in 0.01s\n",
        );
        t.add_line(
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; \
             finished in 1.20s",
        );
        assert_eq!(
            t,
            Tally {
                passed: 4,
                failed: 2,
                ignored: 1,
                binaries: 2
            }
        );
    }
}
