//! Where the configuration came from: the file and the flags, kept so SIGHUP can rebuild it.

use std::path::PathBuf;

use crate::config::{Config, FileConfig, Overrides};

/// Where the configuration came from, so SIGHUP can rebuild it.
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads and validates the configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        let file = self.path.as_deref().map(FileConfig::read).transpose()?;
        Ok(Config::build(file.as_ref(), &self.overrides)?)
    }
}
