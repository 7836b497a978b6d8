//! The Debian package under test: where it is, and what it depends on. `cargo xtask test`
//! builds it (from the debug binary, into `target/debian-test/`) and names it in
//! `$SCANWATCH_DEB` before it runs the tests that install it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::process::run;

/// The .deb under test: `$SCANWATCH_DEB`, else the one `cargo xtask test` builds.
pub fn path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SCANWATCH_DEB") {
        return Ok(PathBuf::from(path));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian-test");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|e| Some(e.ok()?.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    });
    found.with_context(|| {
        format!(
            "no .deb in {}: run `cargo xtask test` (it builds the package first) or point \
             SCANWATCH_DEB at one built by `cargo xtask package`",
            dir.display()
        )
    })
}

/// The names of the packages `deb` depends on (its `Depends:` field, versions and
/// architecture qualifiers left out, the first of each set of alternatives), so a system can be
/// given them before the package is installed.
pub fn depends(deb: &Path) -> Result<Vec<String>> {
    let field = run(Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg("Depends"))
    .with_context(|| format!("reading the Depends field of {}", deb.display()))?;
    Ok(package_names(&field))
}

/// The package names of a `Depends:` value: `adduser, libc6 (>= 2.34), a | b` gives `adduser`,
/// `libc6`, `a`.
fn package_names(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let name = first
                .split(|c: char| c.is_whitespace() || c == '(' || c == ':')
                .next()?;
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_field_gives_package_names() {
        assert_eq!(
            package_names("adduser, libc6 (>= 2.34), procps\n"),
            ["adduser", "libc6", "procps"]
        );
        assert_eq!(
            package_names("python3:any, default-mta | mail-transport-agent,"),
            ["python3", "default-mta"]
        );
        assert!(package_names("").is_empty());
    }
}
