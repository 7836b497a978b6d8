//! The `[crowdsec]` configuration section: the file's keys and their validated form.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::settings::{ConfigError, parse_duration};

/// `[crowdsec]` as written in the file (every key optional but `lapi_url`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    pub lapi_url: Option<String>,
    pub machine_id: Option<String>,
    pub password_file: Option<PathBuf>,
    pub api_key_file: Option<PathBuf>,
    pub publish: Option<bool>,
    pub enforce: Option<bool>,
    pub poll_interval: Option<String>,
    pub timeout: Option<String>,
    pub max_backoff: Option<String>,
    pub queue_size: Option<usize>,
    pub ca_cert_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
}

/// The validated `[crowdsec]` section. Credentials are read from their files when the agent
/// starts, never kept here (this struct is logged in debug output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Base URL of the Local API, `http://` or `https://` (no credentials in it).
    pub lapi_url: String,
    /// Machine role: publish findings as alerts. Default on when `password_file` is set.
    pub publish: bool,
    pub machine_id: String,
    pub password_file: Option<PathBuf>,
    /// Bouncer role: enforce `ban` decisions (drop mode only). Default on when `api_key_file`
    /// is set.
    pub enforce: bool,
    pub api_key_file: Option<PathBuf>,
    /// Decisions stream poll period. Default 10 s (crowdsec-firewall-bouncer's
    /// `update_frequency`).
    pub poll_interval: Duration,
    /// Per-request timeout (connect and answer). Default 10 s.
    pub timeout: Duration,
    /// Retries back off from 1 s, doubling up to this. Default 60 s.
    pub max_backoff: Duration,
    /// Findings held while the LAPI cannot take them; over it the oldest is dropped (counted).
    /// Default 1000.
    pub queue_size: usize,
    /// PEM CA bundle trusted for an `https://` LAPI (default: the webpki roots).
    pub ca_cert_file: Option<PathBuf>,
    /// Accept any server certificate (tests, self-signed labs). Default false.
    pub insecure_skip_verify: bool,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Settings {
    /// Validates the section.
    pub fn build(s: &Section) -> Result<Self, ConfigError> {
        let lapi_url = s
            .lapi_url
            .clone()
            .ok_or_else(|| invalid("crowdsec.lapi_url", "is required in [crowdsec]"))?;
        let rest = lapi_url
            .strip_prefix("http://")
            .or_else(|| lapi_url.strip_prefix("https://"))
            .ok_or_else(|| {
                invalid(
                    "crowdsec.lapi_url",
                    "must start with http:// or https:// (e.g. http://127.0.0.1:8080/)",
                )
            })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid(
                "crowdsec.lapi_url",
                "needs a host and no user:password@ (credentials go in password_file / \
                 api_key_file)",
            ));
        }
        let publish = s.publish.unwrap_or(s.password_file.is_some());
        let enforce = s.enforce.unwrap_or(s.api_key_file.is_some());
        if publish && (s.password_file.is_none() || s.machine_id.is_none()) {
            return Err(invalid(
                "crowdsec.publish",
                "needs machine_id and password_file (`cscli machines add NAME`)",
            ));
        }
        if enforce && s.api_key_file.is_none() {
            return Err(invalid(
                "crowdsec.enforce",
                "needs api_key_file (`cscli bouncers add NAME`)",
            ));
        }
        if !publish && !enforce {
            return Err(invalid(
                "crowdsec",
                "no role is on: set password_file (publish) and/or api_key_file (enforce)",
            ));
        }
        let poll_interval = parse_duration(
            "crowdsec.poll_interval",
            s.poll_interval.as_deref(),
            Duration::from_secs(10),
        )?;
        let timeout = parse_duration(
            "crowdsec.timeout",
            s.timeout.as_deref(),
            Duration::from_secs(10),
        )?;
        let max_backoff = parse_duration(
            "crowdsec.max_backoff",
            s.max_backoff.as_deref(),
            Duration::from_secs(60),
        )?;
        for (key, d) in [
            ("crowdsec.poll_interval", poll_interval),
            ("crowdsec.timeout", timeout),
            ("crowdsec.max_backoff", max_backoff),
        ] {
            if d < Duration::from_millis(100) {
                return Err(invalid(key, "must be at least 100ms"));
            }
        }
        let queue_size = s.queue_size.unwrap_or(1000);
        if !(1..=100_000).contains(&queue_size) {
            return Err(invalid("crowdsec.queue_size", "must be 1..=100000"));
        }
        Ok(Self {
            lapi_url: lapi_url.trim_end_matches('/').to_owned(),
            publish,
            machine_id: s.machine_id.clone().unwrap_or_default(),
            password_file: s.password_file.clone(),
            enforce,
            api_key_file: s.api_key_file.clone(),
            poll_interval,
            timeout,
            max_backoff,
            queue_size,
            ca_cert_file: s.ca_cert_file.clone(),
            insecure_skip_verify: s.insecure_skip_verify.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml: &str) -> Section {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn roles_follow_the_credentials_given() {
        let s = Settings::build(&section(
            "lapi_url = \"http://127.0.0.1:8080/\"\napi_key_file = \"/k\"\n",
        ))
        .unwrap();
        assert!(s.enforce && !s.publish);
        assert_eq!(s.lapi_url, "http://127.0.0.1:8080");
        assert_eq!(s.poll_interval, Duration::from_secs(10));
    }

    #[test]
    fn refuses_credentials_in_the_url_and_missing_roles() {
        for bad in [
            "lapi_url = \"http://u:p@h:8080\"\napi_key_file = \"/k\"\n",
            "lapi_url = \"ftp://h\"\napi_key_file = \"/k\"\n",
            "lapi_url = \"http://h\"\n",
            "lapi_url = \"http://h\"\npassword_file = \"/p\"\n",
        ] {
            assert!(Settings::build(&section(bad)).is_err(), "{bad}");
        }
    }
}
