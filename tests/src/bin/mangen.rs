//! Renders the man pages of `scanwatch` and each of its subcommands (`scanwatch.1`,
//! `scanwatch-run.1`, ...) from the clap definitions in `scanwatch::cli`, into the directory
//! given as the only argument. Run by `cargo xtask man` and `cargo xtask package`: it links the
//! scanwatch library, which xtask cannot (xtask builds before the eBPF toolchain is set up).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use scanwatch::cli::Cli;

fn main() -> Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: mangen OUT_DIR")?
        .into();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(())
}
