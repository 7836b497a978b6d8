//! What every stage's settings share: the error a bad key gives, and the duration syntax.

use std::{path::PathBuf, time::Duration};

/// Why a configuration was refused. Each names the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The error of a key whose value is refused, and why.
pub fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// A duration as written in the configuration (`"5m"`, `"90s"`, `"1h"`), or `default`.
pub fn parse_duration(
    key: &'static str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| invalid(key, format!("`{t}`: {e} (e.g. \"5m\", \"90s\", \"1h\")"))),
    }
}
