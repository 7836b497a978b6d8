//! `cargo xtask man` and `cargo xtask package`: the man pages, rendered from the CLI
//! definitions (`scanwatch::cli`) by the `mangen` binary of the tests crate, and the Debian
//! package, built by cargo-deb from `[package.metadata.deb]` in `scanwatch/Cargo.toml`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd;

/// The cargo-deb we package with: 3.8.0 needs rustc ≥ 1.85 and builds with `--locked`.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Files from the repository that go to `/usr/share/scanwatch/<dir>/`: (source directory,
/// file name suffix). Whatever matches is packaged, so new dashboards and rules need no change
/// here.
const SHARED: [(&str, &str); 2] = [("grafana", ".json"), ("prometheus", ".yml")];

/// The Cargo profile the packaged binary comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// What ships: `cargo xtask package`.
    Release,
    /// The debug binary the tests already built: `cargo xtask test` packages it, to test the
    /// packaging without a second, optimised build of the daemon.
    Dev,
}

impl Profile {
    /// The profile's directory under the target directory.
    fn dir(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Dev => "debug",
        }
    }
}

/// Renders the man pages into `target/man/` and returns that directory. `profile` is the one
/// the renderer is built with: the one whose scanwatch library is (about to be) built anyway.
pub fn man(profile: Profile) -> Result<PathBuf> {
    crate::setup::setup()?;
    let dir = cmd::target_dir().join("man");
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut mangen = cmd::cargo();
    mangen.args(["run", "--quiet", "--locked"]);
    if profile == Profile::Release {
        mangen.arg("--release");
    }
    mangen
        .args(["-p", "scanwatch-tests", "--bin", "mangen", "--"])
        .arg(&dir);
    cmd::run(&mut mangen)?;
    let pages = man_pages(&dir)?;
    ensure!(
        !pages.is_empty(),
        "mangen wrote no man page into {}",
        dir.display()
    );
    eprintln!(
        "scanwatch: {} man pages in {} (read one with `man -l {}`)",
        pages.len(),
        dir.display(),
        pages[0].display()
    );
    Ok(dir)
}

/// Builds the Debian package of `profile` into `out` (emptied first) and returns its path.
pub fn package(profile: Profile, out: &Path) -> Result<PathBuf> {
    let man_dir = man(profile)?;
    ensure_cargo_deb()?;
    let stage = cmd::target_dir().join(profile.dir()).join("package");
    stage_files(&man_dir, &stage)?;

    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // We build the binary ourselves: cargo-deb would build the whole workspace (the staged
    // files count as workspace build products), eBPF crate included, which only builds for
    // its BPF target.
    let mut build = cmd::cargo();
    build.args(["build", "-p", "scanwatch", "--locked"]);
    if profile == Profile::Release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    let mut deb = cmd::cargo();
    deb.args([
        "deb",
        "-p",
        "scanwatch",
        "--locked",
        "--no-build",
        "--output",
    ])
    .arg(out);
    if profile == Profile::Dev {
        // cargo-deb 3.8 warns that it will refuse the dev profile some day; it is pinned.
        // Fast compression: the test package is installed once and thrown away.
        deb.args(["--profile", "dev", "--fast"]);
    }
    cmd::run(&mut deb)?;
    let debs = files_with_suffix(out, ".deb")?;
    let [path] = debs.as_slice() else {
        bail!("expected one .deb in {}, found {debs:?}", out.display());
    };
    eprintln!(
        "scanwatch: built {} (install it with `dpkg -i {}`)",
        path.display(),
        path.display()
    );
    Ok(path.clone())
}

/// Fills `stage` (emptied first) with what the asset glob `target/release/package/**/*`
/// packages, laid out as installed: gzipped man pages, dashboards and rules.
fn stage_files(man_dir: &Path, stage: &Path) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let man1 = stage.join("usr/share/man/man1");
    fs::create_dir_all(&man1).with_context(|| format!("creating {}", man1.display()))?;
    for page in man_pages(man_dir)? {
        let name = page.file_name().context("man page name")?.to_string_lossy();
        gzip(&page, &man1.join(format!("{name}.gz")))?;
    }
    let root = cmd::workspace_root().join("packaging");
    for (dir, suffix) in SHARED {
        let source = root.join(dir);
        let files = if source.is_dir() {
            files_with_suffix(&source, suffix)?
        } else {
            Vec::new()
        };
        if files.is_empty() {
            eprintln!(
                "scanwatch: no packaging/{dir}/*{suffix} yet; the package ships none under \
                 /usr/share/scanwatch/{dir}/"
            );
            continue;
        }
        let dest = stage.join("usr/share/scanwatch").join(dir);
        fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        for file in files {
            let to = dest.join(file.file_name().context("file name")?);
            fs::copy(&file, &to)
                .with_context(|| format!("copying {} to {}", file.display(), to.display()))?;
        }
    }
    Ok(())
}

/// Debian policy wants man pages gzipped; cargo-deb only compresses files it did not build, and
/// it counts everything under the target directory as built. `-n`: no name or time stamp, so
/// the package is reproducible.
fn gzip(from: &Path, to: &Path) -> Result<()> {
    let out = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut gz = Command::new("gzip");
    gz.args(["-9", "-n", "-c"])
        .arg(from)
        .stdout(Stdio::from(out));
    cmd::run(&mut gz)
}

/// The `*.1` files of `dir`, sorted.
fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    files_with_suffix(dir, ".1")
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.to_string_lossy().ends_with(suffix) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The cargo-deb version installed (`cargo deb --version`: `cargo-deb 3.8.0` or `3.8.0`), or
/// `None`.
fn cargo_deb_version() -> Result<Option<String>> {
    cmd::cargo_subcommand_version("deb")
}

/// cargo-deb at [`CARGO_DEB_VERSION`], installed if there is none or another.
fn ensure_cargo_deb() -> Result<()> {
    cmd::PinnedTool {
        name: "cargo-deb",
        version: CARGO_DEB_VERSION,
        purpose: "builds the Debian package",
        version_source: "`cargo deb --version`",
        installed: cargo_deb_version,
        why: |found| match found {
            None => "none installed".to_owned(),
            Some(other) => format!(
                "{other} is installed; the package metadata and the test package's dev profile \
                 are checked with {CARGO_DEB_VERSION}"
            ),
        },
    }
    .ensure()
}
