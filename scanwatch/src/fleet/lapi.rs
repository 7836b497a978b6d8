//! A minimal, tolerant client of CrowdSec's Local API (`pkg/models/localapi_swagger.yaml`):
//! machine login, alert push, and the bouncers' decisions stream. Blocking (ureq), used from
//! the publisher and bouncer threads only. Secrets never reach an error message: errors carry
//! the status code and a short reason, never a request or response body.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use ureq::{
    Agent,
    tls::{Certificate, RootCerts, TlsConfig},
};

use super::settings::Settings;

/// A credential: printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Reads a credential file (surrounding whitespace trimmed).
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "reading the CrowdSec credential file {}: {e}",
                path.display()
            )
        })?;
        let text = text.trim();
        if text.is_empty() {
            anyhow::bail!("the CrowdSec credential file {} is empty", path.display());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What went wrong talking to the LAPI; `name` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum LapiError {
    #[error("the Local API cannot be reached ({0}); is crowdsec running and lapi_url right?")]
    Unreachable(String),
    #[error(
        "the Local API refused the credentials (HTTP {0}); check machine_id/password_file or \
         api_key_file (`cscli machines list`, `cscli bouncers list`)"
    )]
    Unauthorized(u16),
    #[error("the Local API answered HTTP {0}")]
    Http(u16),
    #[error("the Local API answered something that is not the expected JSON ({0})")]
    BadResponse(String),
}

impl LapiError {
    /// Metric label.
    pub const NAMES: [&'static str; 4] =
        ["unreachable", "unauthorized", "http_error", "bad_response"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Http(_) => "http_error",
            Self::BadResponse(_) => "bad_response",
        }
    }
}

/// `POST /v1/alerts` item (the `Alert` model, the fields the LAPI requires plus ours).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Alert {
    pub scenario: String,
    pub scenario_hash: String,
    pub scenario_version: String,
    pub message: String,
    pub events_count: i32,
    pub start_at: String,
    pub stop_at: String,
    pub capacity: i32,
    pub leakspeed: String,
    pub simulated: bool,
    pub remediation: bool,
    pub labels: Vec<String>,
    pub events: Vec<Event>,
    pub source: Source,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub timestamp: String,
    pub meta: Vec<Meta>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Meta {
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Source {
    pub scope: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

/// A decision of the stream (the `Decision` model; unknown fields ignored, missing ones empty).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Decision {
    pub id: i64,
    pub origin: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: String,
    pub value: String,
    pub duration: String,
    pub scenario: String,
}

/// `GET /v1/decisions/stream` answer; `null` lists are empty.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Stream {
    #[serde(default, deserialize_with = "null_is_empty")]
    pub new: Vec<Decision>,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub deleted: Vec<Decision>,
}

fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Decision>, D::Error> {
    Ok(Option::<Vec<Decision>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct Login {
    token: Option<String>,
}

/// One HTTP client of one LAPI.
pub struct Lapi {
    agent: Agent,
    base: String,
}

impl Lapi {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &settings.ca_cert_file {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("reading crowdsec.ca_cert_file {}: {e}", path.display())
            })?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                anyhow::bail!(
                    "crowdsec.ca_cert_file {} holds no PEM certificate",
                    path.display()
                );
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if settings.insecure_skip_verify {
            tls = tls.disable_verification(true);
        }
        let agent = Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("scanwatch/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self {
            agent,
            base: settings.lapi_url.clone(),
        })
    }

    /// `POST /v1/watchers/login`: a bearer token.
    pub fn login(&self, machine_id: &str, password: &Secret) -> Result<Secret, LapiError> {
        let body = serde_json::json!({"machine_id": machine_id, "password": password.expose()});
        let text = answer(
            self.agent
                .post(format!("{}/v1/watchers/login", self.base))
                .content_type("application/json")
                .send(body.to_string()),
        )?;
        let login: Login = parse(&text)?;
        login
            .token
            .filter(|t| !t.is_empty())
            .map(Secret)
            .ok_or_else(|| LapiError::BadResponse("login answer without a token".into()))
    }

    /// `POST /v1/alerts`: the ids of the alerts created.
    pub fn push_alerts(&self, token: &Secret, alerts: &[Alert]) -> Result<usize, LapiError> {
        let text = answer(
            self.agent
                .post(format!("{}/v1/alerts", self.base))
                .header("Authorization", &format!("Bearer {}", token.expose()))
                .content_type("application/json")
                .send(json(alerts)?),
        )?;
        let ids: Vec<serde_json::Value> = parse(&text)?;
        Ok(ids.len())
    }

    /// `GET /v1/decisions/stream`: everything current (`startup`), else what changed since the
    /// last call.
    pub fn stream(&self, api_key: &Secret, startup: bool) -> Result<Stream, LapiError> {
        let text = answer(
            self.agent
                .get(format!("{}/v1/decisions/stream", self.base))
                .query("startup", if startup { "true" } else { "false" })
                .header("X-Api-Key", api_key.expose())
                .call(),
        )?;
        parse_stream(&text)
    }
}

/// A decisions-stream answer's body as [`Lapi::stream`] reads it.
pub fn parse_stream(text: &str) -> Result<Stream, LapiError> {
    parse(text)
}

/// The body of a 2xx answer, or the error its status or transport failure means.
fn answer(
    result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, LapiError> {
    let mut response = result.map_err(|e| LapiError::Unreachable(error_text(&e)))?;
    let status = response.status().as_u16();
    match status {
        200..=299 => response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| LapiError::BadResponse(format!("reading the body: {}", error_text(&e)))),
        401 | 403 => Err(LapiError::Unauthorized(status)),
        _ => Err(LapiError::Http(status)),
    }
}

/// A request body; our models always serialise.
fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, LapiError> {
    serde_json::to_string(value).map_err(|e| LapiError::BadResponse(format!("encoding: {e}")))
}

/// An error's text without anything that could carry a secret (ureq errors name the URL at
/// most, and the URL has none: validated in settings).
fn error_text(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => other.to_string(),
    }
}

/// Parses a JSON body; the error says what was wrong, not what the body held.
fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LapiError> {
    serde_json::from_str(text)
        .map_err(|e| LapiError::BadResponse(format!("{} bytes, {}", text.len(), e.classify_name())))
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
            serde_json::error::Category::Eof => "truncated JSON",
        }
    }
}

/// Longest text read as a duration. Go writes at most 24 characters
/// (`2562047h47m16.854775807s`); a longer one is not the LAPI's.
const MAX_DURATION_CHARS: usize = 64;

/// Go's longest duration, in nanoseconds (`time.Duration` is an `int64`: about 292 years).
const GO_MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits read; further ones are ignored (as Go does once its fraction would overflow).
const MAX_FRACTION_DIGITS: usize = 18;

/// A Go duration (`4h`, `3h59m58.9s`, `300ms`) as the LAPI writes decision durations, read
/// with integer arithmetic as Go's `time.ParseDuration` does. `None` for anything Go would not
/// write: negative (already expired) durations, more than Go's longest duration, empty,
/// longer than [`MAX_DURATION_CHARS`], and garbage (`NaNh`, `infh`, `1e400s`, unknown units).
pub fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.len() > MAX_DURATION_CHARS || text.starts_with('-') {
        return None;
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let mut value: u128 = 0;
        for digit in whole.bytes() {
            value = value * 10 + u128::from(digit - b'0');
            if value > GO_MAX_NANOS {
                return None;
            }
        }
        let (mut part, mut scale): (u128, u128) = (0, 1);
        for digit in fraction.bytes().take(MAX_FRACTION_DIGITS) {
            part = part * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        total = total
            .checked_add(value.checked_mul(unit_ns)?)?
            .checked_add(part * unit_ns / scale)?;
        if total > GO_MAX_NANOS {
            return None;
        }
        rest = next;
    }
    Some(Duration::from_nanos(u64::try_from(total).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(go_duration("4h"), Some(Duration::from_secs(14_400)));
        assert_eq!(
            go_duration("3h59m58.5s"),
            Some(Duration::from_secs_f64(14_398.5))
        );
        assert_eq!(go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(go_duration("-2.5s"), None);
        assert_eq!(go_duration("4 hours"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn hostile_go_durations_are_none_never_a_panic() {
        for text in [
            "99999999999999999999h",
            "2562048h",
            "9223372037s",
            "1e400s",
            "NaNh",
            "nanh",
            "infh",
            "inf",
            "-inf",
            "-0s",
            "-1h",
            "",
            " ",
            "+",
            "h",
            ".h",
            "1.2.3s",
            "1hh",
            "4 hours",
            "\u{1b}[2J1h",
        ] {
            assert_eq!(go_duration(text), None, "{text:?}");
        }
        let digits = format!("{}h", "9".repeat(400));
        assert_eq!(go_duration(&digits), None);
        let overlong = "1h".repeat(10_000);
        assert_eq!(go_duration(&overlong), None);
        // Go's own bound (i64 nanoseconds) is still a duration.
        assert_eq!(
            go_duration("2562047h"),
            Some(Duration::from_secs(2_562_047 * 3600))
        );
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
    }

    #[test]
    fn stream_tolerates_nulls_and_unknown_fields() {
        let s: Stream = serde_json::from_str(
            r#"{"new":null,"deleted":[{"id":3,"type":"ban","scope":"Ip","value":"1.2.3.4",
            "duration":"-1s","origin":"cscli","until":"x","simulated":false,"extra":1}]}"#,
        )
        .unwrap();
        assert!(s.new.is_empty());
        assert_eq!(s.deleted[0].value, "1.2.3.4");
        let empty: Stream = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Stream::default());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<redacted>");
    }

    #[test]
    fn garbage_is_a_bad_response_that_hides_the_body() {
        let e = parse::<Stream>("<html>token=abc</html>").unwrap_err();
        assert_eq!(e.name(), "bad_response");
        assert!(!e.to_string().contains("abc"), "{e}");
    }
}
