//! `block_lists` as the file writes them (a path, or a table), resolved into the block lists
//! drop mode enforces and alerts name.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    config::Config,
    policy::block_lists::ListSpec,
    settings::{ConfigError, invalid},
};

/// A `block_lists` entry as written: a path (`"/etc/scanwatch/spamhaus_drop.txt"`), or a table
/// (`{ path = "...", name = "firehol_level1", block = false }`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ListFile {
    Path(PathBuf),
    Table(ListTable),
}

/// A `block_lists` entry written as a table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTable {
    pub path: PathBuf,
    /// The name alerts give the list. Default: the file stem (`firehol_level1` for
    /// `firehol_level1.netset`).
    pub name: Option<String>,
    /// Default true: enforced in drop mode. False: enrichment only (alerts name it, nothing
    /// is blocked for it).
    pub block: Option<bool>,
}

impl Config {
    /// The block-list files drop mode enforces (`block` true).
    pub fn enforced_lists(&self) -> Vec<PathBuf> {
        self.block_lists
            .iter()
            .filter(|l| l.block)
            .map(|l| l.path.clone())
            .collect()
    }
}

pub(super) fn list_specs(files: &[ListFile]) -> Result<Vec<ListSpec>, ConfigError> {
    let mut specs: Vec<ListSpec> = Vec::with_capacity(files.len());
    for file in files {
        let (path, name, block) = match file {
            ListFile::Path(path) => (path, None, None),
            ListFile::Table(ListTable { path, name, block }) => (path, name.clone(), *block),
        };
        let name = match name {
            Some(name) => name,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(invalid(
                "block_lists",
                format!(
                    "list {}: name `{name}` must be 1 to 64 letters, digits, `_`, `.` or `-` \
                     (set `name = \"...\"` in its table)",
                    path.display()
                ),
            ));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(invalid(
                "block_lists",
                format!("two lists are named `{name}`: give one a `name = \"...\"` of its own"),
            ));
        }
        specs.push(ListSpec {
            path: path.clone(),
            name,
            block: block.unwrap_or(true),
        });
    }
    Ok(specs)
}
