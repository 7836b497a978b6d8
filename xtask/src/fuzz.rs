//! `cargo xtask fuzz`: runs every libFuzzer target of `fuzz/` (cargo-fuzz, nightly) for a while
//! and prints what each did. The targets are those `cargo fuzz list` names (`fuzz/Cargo.toml`:
//! one per entry point of `scanwatch::fuzzing`, and `datapath`, which runs each input through
//! the real XDP program and the host model of its parser, so it needs root); the saved corpus
//! is replayed without cargo-fuzz by `tests/tests/fuzz_corpus.rs`.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup};

/// The cargo-fuzz the targets are run with: 0.13.1 builds with `--locked` on stable 1.95.
pub const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// The fuzz package.
fn fuzz_dir() -> PathBuf {
    cmd::workspace_root().join("fuzz")
}

/// `cargo +nightly fuzz ...` from the fuzz package. The eBPF objects are built too: the
/// `datapath` target loads the product program.
fn cargo_fuzz() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"])
        .current_dir(fuzz_dir())
        .env_remove("AYA_BUILD_SKIP")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// The cargo-fuzz version installed (`cargo fuzz --version`), or `None`.
fn cargo_fuzz_version() -> Result<Option<String>> {
    cmd::cargo_subcommand_version("fuzz")
}

/// cargo-fuzz at [`CARGO_FUZZ_VERSION`], installed if there is none or another.
fn ensure_cargo_fuzz() -> Result<()> {
    cmd::PinnedTool {
        name: "cargo-fuzz",
        version: CARGO_FUZZ_VERSION,
        purpose: "builds and runs the libFuzzer targets",
        version_source: "`cargo fuzz --version`",
        installed: cargo_fuzz_version,
        why: |found| match found {
            None => "none installed".to_owned(),
            Some(other) => {
                format!("{other} is installed; the targets run with {CARGO_FUZZ_VERSION}")
            }
        },
    }
    .ensure()
}

/// What one target's run did, from libFuzzer's final statistics.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    executions: u64,
    per_second: u64,
    seconds: f64,
}

/// Reads `stat::number_of_executed_units` and `stat::average_exec_per_sec` from libFuzzer's
/// output (`-print_final_stats=1`).
fn parse_stats(stderr: &str, seconds: f64) -> Stats {
    let stat = |name: &str| {
        stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_prefix(':')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    Stats {
        executions: stat("stat::number_of_executed_units"),
        per_second: stat("stat::average_exec_per_sec"),
        seconds,
    }
}

/// Builds every target, then runs each for `seconds` (new inputs go to `fuzz/target/corpus/`,
/// the saved corpus is read only), and prints each one's executions and time. Fails on the
/// first target that crashes; its input is in `fuzz/artifacts/<target>/`.
pub fn fuzz(seconds: u64) -> Result<()> {
    // The eBPF toolchain: `datapath` embeds the product program.
    setup::setup()?;
    ensure_cargo_fuzz()?;
    cmd::run(cargo_fuzz().args(["build", "--release"]))?;
    let list = cmd::output(cargo_fuzz().arg("list"))?.context("cargo-fuzz is not installed")?;
    let mut results = Vec::new();
    for target in list.split_whitespace() {
        let scratch = fuzz_dir().join("target/corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let mut run = cargo_fuzz();
        run.args(["run", "--release", target])
            .arg(&scratch)
            .arg(fuzz_dir().join("corpus").join(target))
            .args([
                "--".to_owned(),
                format!("-max_total_time={seconds}"),
                "-print_final_stats=1".to_owned(),
            ]);
        cmd::announce(&run);
        let started = Instant::now();
        let out = run
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("could not start `{}`", cmd::display(&run)))?;
        let stats = parse_stats(
            &String::from_utf8_lossy(&out.stderr),
            started.elapsed().as_secs_f64(),
        );
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            bail!(
                "fuzz target {target} failed ({}); the input is in fuzz/artifacts/{target}/: add a \
                 unit test, fix, and keep the input (the corpus test replays it)",
                out.status
            );
        }
        eprintln!(
            "scanwatch: {target}: {} executions in {:.0} s ({}/s)",
            stats.executions, stats.seconds, stats.per_second
        );
        results.push((target, stats));
    }
    println!(
        "{:<16} {:>12} {:>8} {:>10}",
        "target", "executions", "seconds", "exec/s"
    );
    for (target, s) in results {
        println!(
            "{target:<16} {:>12} {:>8.0} {:>10}",
            s.executions, s.seconds, s.per_second
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let stderr = "INFO: Seed: 1\n#2 INITED\nDone 1234 runs in 61 second(s)\n\
                      stat::number_of_executed_units: 1234\nstat::average_exec_per_sec:     20\n\
                      stat::new_units_added:          5\n";
        assert_eq!(
            parse_stats(stderr, 61.0),
            Stats {
                executions: 1234,
                per_second: 20,
                seconds: 61.0
            }
        );
    }
}
