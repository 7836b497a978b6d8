//! The Debian package (`cargo xtask package`, cargo-deb): installed with `dpkg -i` on the test
//! machine, it puts the binary, the unit, the default configuration (a conffile that passes
//! `check-config`), the man pages and the logrotate snippet in place, runs, and `dpkg --purge`
//! takes every file away again. The package is never left installed, also on failure, and the
//! unit is never started (it is installed disabled, and the maintainer scripts leave systemd
//! alone when it is not running).
//!
//! `cargo xtask test` builds the package first (from the debug binary, into
//! `target/debian-test/`) and names it in `$SCANWATCH_DEB`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};
use clap::CommandFactory as _;
use scanwatch::{
    cli::Cli,
    config::{Config, FileConfig, Overrides},
};
use scanwatch_common::{
    event::DetectionKind,
    kinds::{DISTRIBUTED_HOSTS, KINDS, KindSpec},
};
use scanwatch_tests::{
    deb,
    process::{run, tool_or_skip},
    require_root,
};

/// The package and unit name.
const PACKAGE: &str = "scanwatch";
/// The configuration the package installs.
const CONFIG: &str = "/etc/scanwatch/scanwatch.toml";
/// The logrotate snippet the package installs.
const LOGROTATE: &str = "/etc/logrotate.d/scanwatch";
/// The tmpfiles.d snippet that makes the unit's pin directory.
const TMPFILES: &str = "/usr/lib/tmpfiles.d/scanwatch.conf";
/// Where the packaged configuration writes alerts (made by postinst, removed on purge).
const LOG_DIR: &str = "/var/log/scanwatch";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The packaged configuration, as in the repository.
fn packaged_config() -> PathBuf {
    workspace_root().join("packaging/scanwatch.toml")
}

/// Files `/usr/share/scanwatch/<dir>/` must hold: every `packaging/<dir>/*<suffix>`.
fn shared_files(dir: &str, suffix: &str) -> Vec<String> {
    packaging_files(dir, suffix)
        .into_iter()
        .map(|name| format!("/usr/share/scanwatch/{dir}/{name}"))
        .collect()
}

/// Names of the `packaging/<dir>/*<suffix>` files (none when the directory does not exist).
fn packaging_files(dir: &str, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(workspace_root().join("packaging").join(dir)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(suffix))
        .collect()
}

/// `key = value` (after a comment's `# `), as opposed to prose.
fn is_setting(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// The man pages: one for `scanwatch`, one per subcommand, named as clap_mangen names them.
fn man_pages() -> Vec<String> {
    let cli = Cli::command();
    std::iter::once(PACKAGE.to_owned())
        .chain(
            cli.get_subcommands()
                .map(|sub| format!("{PACKAGE}-{}", sub.get_name())),
        )
        .map(|page| format!("/usr/share/man/man1/{page}.1.gz"))
        .collect()
}

/// Purges the package on drop, so a failing test never leaves it installed.
struct Installed;

impl Installed {
    fn install(deb: &Path) -> Result<Self> {
        ensure!(
            !is_installed()?,
            "{PACKAGE} is already installed on this machine; this test installs and purges its \
             own package, so it will not touch that one. Remove it (`dpkg --purge {PACKAGE}`) \
             to run the test"
        );
        let guard = Self;
        run(dpkg().arg("-i").arg(deb))?;
        Ok(guard)
    }

    fn purge(self) -> Result<()> {
        std::mem::forget(self);
        run(dpkg().args(["--purge", PACKAGE])).map(drop)
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(e) = run(dpkg().args(["--purge", PACKAGE])) {
            eprintln!("could not purge {PACKAGE} after the test: {e:#}");
        }
    }
}

fn dpkg() -> Command {
    let mut cmd = Command::new("dpkg");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Whether dpkg knows the package as installed (or half-installed).
fn is_installed() -> Result<bool> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", PACKAGE])
        .output()
        .context("running dpkg-query")?;
    let status = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success() && !status.trim().is_empty() && status.trim() != "not-installed")
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn packaged_config_holds_the_built_in_defaults() {
    let path = packaged_config();
    let parsed = FileConfig::read(&path).unwrap();
    let packaged = Config::build(Some(&parsed), &Overrides::default()).unwrap();
    // The one packaged choice: alerts go to a rotated file instead of stdout.
    let defaults = Config {
        alert_log: Some("/var/log/scanwatch/alerts.jsonl".into()),
        ..Config::build(None, &Overrides::default()).unwrap()
    };
    assert_eq!(
        packaged,
        defaults,
        "{} drifted from the defaults",
        path.display()
    );

    // The commented-out thresholds are medium's, and their keys exist.
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let uncommented: FileConfig = toml::from_str(&uncommented).unwrap();
    assert!(
        uncommented
            .thresholds
            .as_ref()
            .is_some_and(|t| t.get(DetectionKind::PortScan).is_some()),
        "thresholds are shown commented out"
    );
    let pinned = Config::build(Some(&uncommented), &Overrides::default()).unwrap();
    assert_eq!(
        pinned, defaults,
        "the commented thresholds are not the defaults"
    );
}

/// The lines of each `[section]` of a TOML text, by section name (`""` before the first).
fn sections(text: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        }
        out.entry(current).or_default().push(line);
    }
    out
}

/// The commented-out `# key = value` settings of some lines, with their values.
fn commented_settings<'a>(lines: &[&'a str]) -> BTreeMap<&'a str, u32> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("# ").filter(|rest| is_setting(rest)))
        .filter_map(|rest| {
            let (key, value) = rest.split_once(" = ")?;
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// Whether `word` appears in `lines` as a whole word.
fn names(lines: &[&str], word: &str) -> bool {
    lines.iter().any(|line| {
        line.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .any(|w| w == word)
    })
}

/// A table's medium preset of a kind, `None` when the table does not measure it.
type Preset = fn(&KindSpec) -> Option<u32>;

#[test]
fn packaged_config_names_every_kind_with_the_tables_presets() {
    let path = packaged_config();
    let parsed = FileConfig::read(&path).unwrap();
    Config::build(Some(&parsed), &Overrides::default()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let sections = sections(&text);
    let tables: [(&str, Preset); 3] = [
        ("thresholds", |s| {
            s.directions.counted().then_some(s.short.medium)
        }),
        ("long_thresholds", |s| {
            s.directions.counted().then_some(s.long.medium)
        }),
        ("egress_thresholds", |s| {
            s.directions.egress().then_some(s.egress.medium)
        }),
    ];
    for (table, preset) in tables {
        let lines = sections
            .get(table)
            .unwrap_or_else(|| panic!("{} has no [{table}]", path.display()));
        let settings = commented_settings(lines);
        for spec in &KINDS {
            let shown = settings.get(spec.name).copied();
            match preset(spec) {
                Some(medium) => assert_eq!(
                    shown,
                    Some(medium),
                    "[{table}] should show `# {} = {medium}` (the table of kinds' medium preset)",
                    spec.name
                ),
                None => assert!(
                    shown.is_none_or(|v| v == 0),
                    "[{table}] shows {} = {shown:?}, which it does not measure",
                    spec.name
                ),
            }
            if table != "egress_thresholds" {
                assert!(
                    names(lines, spec.name),
                    "[{table}] does not name {}",
                    spec.name
                );
            }
        }
        if table == "thresholds" {
            assert_eq!(
                settings.get("distributed_hosts"),
                Some(&DISTRIBUTED_HOSTS.medium)
            );
        }
    }
}

#[test]
fn package_installs_runs_and_purges_cleanly() -> Result<()> {
    require_root();
    if !tool_or_skip("dpkg", "package_installs_runs_and_purges_cleanly") {
        return Ok(());
    }
    let deb = deb::path()?;
    let guard = Installed::install(&deb)?;

    let listed: BTreeSet<String> = run(dpkg().args(["-L", PACKAGE]))?
        .lines()
        .map(str::to_owned)
        .collect();
    let units: Vec<String> = packaging_files("systemd", ".service")
        .into_iter()
        .map(|name| format!("/usr/lib/systemd/system/{name}"))
        .collect();
    let mut expected: Vec<String> = ["/usr/bin/scanwatch", CONFIG, LOGROTATE, TMPFILES]
        .map(str::to_owned)
        .into();
    expected.extend(man_pages());
    expected.extend(units);
    expected.extend(shared_files("grafana", ".json"));
    expected.extend(shared_files("prometheus", ".yml"));
    for file in &expected {
        // dpkg -L lists the path as packaged; merged-/usr systems may list /lib as well.
        ensure!(
            listed.contains(file) || listed.contains(file.trim_start_matches("/usr")),
            "`dpkg -L {PACKAGE}` does not list {file}:\n{listed:#?}"
        );
        ensure!(Path::new(file).exists(), "{file} is not installed");
    }

    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", PACKAGE]))?;
    for file in [CONFIG, LOGROTATE] {
        ensure!(
            conffiles.contains(file),
            "{file} is not a conffile:\n{conffiles}"
        );
    }
    ensure!(
        user_exists(PACKAGE),
        "postinst did not create the `{PACKAGE}` user"
    );
    ensure!(
        Path::new(LOG_DIR).is_dir(),
        "postinst did not create {LOG_DIR}, where the packaged configuration writes alerts"
    );

    let version = run(Command::new("/usr/bin/scanwatch").arg("--version"))?;
    ensure!(
        version.trim() == format!("scanwatch {}", env!("CARGO_PKG_VERSION")),
        "unexpected `scanwatch --version`: {version}"
    );

    if tool_or_skip("man", "package_installs_runs_and_purges_cleanly (man -l)") {
        let page = run(Command::new("man")
            .args(["-l", "/usr/share/man/man1/scanwatch-run.1.gz"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LANG", "C.UTF-8"))?;
        for text in ["scanwatch-run", "--iface", "SIGHUP"] {
            ensure!(
                page.contains(text),
                "man scanwatch-run does not show {text}:\n{page}"
            );
        }
    }

    let checked = run(Command::new("/usr/bin/scanwatch").args(["check-config", CONFIG]))?;
    ensure!(
        checked.contains(&format!("{CONFIG}: OK")),
        "check-config did not pass the packaged configuration:\n{checked}"
    );

    if tool_or_skip(
        "logrotate",
        "package_installs_runs_and_purges_cleanly (logrotate)",
    ) {
        // --debug reads and checks the snippet without rotating anything.
        let state =
            std::env::temp_dir().join(format!("scanwatch-logrotate-{}", std::process::id()));
        let checked = Command::new("logrotate")
            .args(["--debug", "--state"])
            .arg(&state)
            .arg(LOGROTATE)
            .output()?;
        let log = String::from_utf8_lossy(&checked.stderr);
        ensure!(
            checked.status.success() && !log.contains("error"),
            "logrotate rejects {LOGROTATE}:\n{log}"
        );
    }

    guard.purge()?;
    ensure!(!is_installed()?, "{PACKAGE} is still installed after purge");
    for file in &expected {
        ensure!(!Path::new(file).exists(), "{file} is left after purge");
    }
    ensure!(
        !Path::new("/etc/scanwatch").exists(),
        "/etc/scanwatch is left after purge"
    );
    ensure!(
        !Path::new(LOG_DIR).exists(),
        "{LOG_DIR} is left after purge"
    );
    ensure!(!user_exists(PACKAGE), "purge left the `{PACKAGE}` user");
    Ok(())
}
