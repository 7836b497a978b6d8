//! Web-scanner signatures (ATT&CK T1595.002): the XDP program samples the first request of each
//! connection to a web port (`scanwatch_common::web`); here a sample is parsed
//! ([`request`]), matched against the signature list ([`signature`]), and a match becomes a
//! `web_scan` finding for its source, at most one per source and window.

pub mod request;
pub mod signature;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use scanwatch_common::{
    addr::SourceKey,
    event::DetectionKind,
    web::{DEFAULT_WEB_PORTS, WEB_PORTS, WebSample},
};
use serde::Deserialize;

pub use self::{
    request::Request,
    signature::{SignatureError, Signatures},
};
use crate::{
    finding::record::{Direction, Finding, WebDetail},
    kernel::clock::{Clock, rfc3339},
    net::{format_source, format_target},
};

/// `[web]` in the configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Destination ports whose requests are sampled; `[]` turns sampling off. Default
    /// [`DEFAULT_WEB_PORTS`]; at most [`WEB_PORTS`].
    pub ports: Option<Vec<u16>>,
    /// A signature file extending the built-in list (`packaging/web-signatures.toml`).
    pub signatures: Option<PathBuf>,
}

/// The validated `[web]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub ports: Vec<u16>,
    pub signatures_path: Option<PathBuf>,
    /// Built-in signatures plus the file's; re-read on every configuration load (SIGHUP).
    pub signatures: Arc<Signatures>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ports: DEFAULT_WEB_PORTS.to_vec(),
            signatures_path: None,
            signatures: Arc::new(Signatures::default()),
        }
    }
}

/// Why a `[web]` section was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "at most {WEB_PORTS} ports (the kernel compares each established segment against them), \
         got {0}"
    )]
    TooManyPorts(usize),
    #[error("0 is not a port")]
    PortZero,
    #[error(transparent)]
    Signatures(#[from] SignatureError),
}

impl Settings {
    pub fn build(section: Option<&Section>) -> Result<Self, SettingsError> {
        let empty = Section::default();
        let section = section.unwrap_or(&empty);
        let mut ports = section
            .ports
            .clone()
            .unwrap_or_else(|| DEFAULT_WEB_PORTS.to_vec());
        ports.sort_unstable();
        ports.dedup();
        if ports.len() > WEB_PORTS {
            return Err(SettingsError::TooManyPorts(ports.len()));
        }
        if ports.contains(&0) {
            return Err(SettingsError::PortZero);
        }
        Ok(Self {
            signatures: Arc::new(Signatures::load(section.signatures.as_deref())?),
            signatures_path: section.signatures.clone(),
            ports,
        })
    }

    /// The ports as `KernelConfig::web_ports` holds them (unused slots 0, after the ports).
    pub fn kernel_ports(&self) -> [u16; WEB_PORTS] {
        let mut out = [0; WEB_PORTS];
        for (slot, port) in out.iter_mut().zip(&self.ports) {
            *slot = *port;
        }
        out
    }
}

/// Characters of the request line and user agent an alert shows.
pub const SHOWN_CHARS: usize = 200;

/// The signatures a sampled request matches; `None` when it matches none.
pub fn inspect(payload: &[u8], signatures: &Signatures) -> Option<WebDetail> {
    let request = Request::parse(payload);
    let matched: Vec<_> = signatures.matching(&request).collect();
    let first = matched.first()?;
    // The user agent as sent (the parsed one is lowercased).
    let raw = Request::parse_raw_user_agent(payload);
    Some(WebDetail {
        tool: first.tool.clone(),
        signatures: matched.iter().map(|s| s.name.clone()).collect(),
        request_line: crate::text::escape(&request.request_line, SHOWN_CHARS),
        user_agent: raw.map(|ua| crate::text::escape(&ua, SHOWN_CHARS)),
    })
}

/// The `web_scan` finding of a matching sample.
pub fn finding(
    sample: &WebSample,
    detail: WebDetail,
    interface: String,
    window: Duration,
    ipv6_prefix: u32,
) -> Finding {
    let seen = rfc3339(Clock::wall(sample.timestamp_ns));
    let target = format_target(&sample.target.addr, sample.target_port);
    Finding {
        target: Some(target.clone()),
        distinct_ports: 1,
        distinct_hosts: 1,
        packets: 1,
        examples: vec![target],
        // The scanner is named by the matched signature (`web.tool`), not by packet traits.
        web: Some(detail),
        ..Finding::new(
            DetectionKind::WebScan,
            Direction::Ingress,
            format_source(&source_key(sample, ipv6_prefix), ipv6_prefix),
            [seen.clone(), seen],
            window,
            interface,
        )
    }
}

/// The tracker key of a sample's client (IPv6 aggregated to the tracker's prefix, as blocks
/// are).
pub fn source_key(sample: &WebSample, ipv6_prefix: u32) -> SourceKey {
    if sample.ipv6 == 0 {
        sample.source
    } else {
        SourceKey::from_ipv6(sample.source.addr, ipv6_prefix)
    }
}

/// Sources remembered by [`Throttle`]; beyond, the oldest half is forgotten.
const THROTTLE_SOURCES: usize = 4096;

/// One `web_scan` per source per window: a scanner sends hundreds of matching requests, each
/// a new connection; the first is the finding, the rest are counted.
#[derive(Debug, Default)]
pub struct Throttle {
    reported: HashMap<SourceKey, Instant>,
}

impl Throttle {
    /// True when `source` was not reported in the `window` before `now` (and records it).
    pub fn first(&mut self, source: SourceKey, window: Duration, now: Instant) -> bool {
        if let Some(at) = self.reported.get(&source)
            && now.saturating_duration_since(*at) < window
        {
            return false;
        }
        if self.reported.len() >= THROTTLE_SOURCES {
            let mut times: Vec<Instant> = self.reported.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            self.reported.retain(|_, at| *at > cut);
        }
        self.reported.insert(source, now);
        true
    }
}

/// A sampled request of `payload` from 192.0.2.7 to 198.51.100.1:80, for tests of the modules
/// that read samples.
#[cfg(test)]
pub(crate) fn test_sample(payload: &[u8]) -> WebSample {
    let mut s = WebSample {
        timestamp_ns: 1,
        source: SourceKey::from_ipv4([192, 0, 2, 7]),
        target: SourceKey::from_ipv4([198, 51, 100, 1]),
        source_port: 40000,
        target_port: 80,
        ifindex: 1,
        len: 0,
        ipv6: 0,
        reserved: [0; 5],
        data: [0; scanwatch_common::web::WEB_SAMPLE_BYTES],
    };
    let n = payload.len().min(s.data.len());
    s.data[..n].copy_from_slice(&payload[..n]);
    s.len = n as u16;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scanner_request_becomes_one_web_scan_finding() {
        let s = test_sample(
            b"GET /nice HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)\r\n\r\n",
        );
        let detail = inspect(s.payload(), &Signatures::default()).unwrap();
        assert_eq!(detail.tool, "Nmap Scripting Engine");
        assert_eq!(detail.signatures, ["nmap-nse-user-agent"]);
        assert_eq!(detail.request_line, "GET /nice HTTP/1.1");
        assert!(
            detail
                .user_agent
                .as_deref()
                .unwrap()
                .contains("Nmap Scripting Engine")
        );
        let f = finding(&s, detail, "eth0".into(), Duration::from_secs(300), 64);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["kind"], "web_scan");
        assert_eq!(v["technique"], "T1595.002");
        assert_eq!(v["source"], "192.0.2.7");
        assert_eq!(v["target"], "198.51.100.1:80");
        assert_eq!(v["web"]["signatures"][0], "nmap-nse-user-agent");
    }

    #[test]
    fn ordinary_requests_and_garbage_give_nothing() {
        let sigs = Signatures::default();
        for payload in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n\r\n",
            b"",
            b"\x00\x01\x02",
            &[0xffu8; 512],
        ] {
            assert!(inspect(payload, &sigs).is_none());
        }
    }

    #[test]
    fn throttle_reports_a_source_once_per_window() {
        let mut t = Throttle::default();
        let a = SourceKey::from_ipv4([192, 0, 2, 1]);
        let b = SourceKey::from_ipv4([192, 0, 2, 2]);
        let w = Duration::from_secs(300);
        let now = Instant::now();
        assert!(t.first(a, w, now));
        assert!(!t.first(a, w, now + Duration::from_secs(10)));
        assert!(t.first(b, w, now + Duration::from_secs(10)));
        assert!(t.first(a, w, now + Duration::from_secs(301)));
    }

    #[test]
    fn throttle_memory_is_bounded() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..20_000u32 {
            let key = SourceKey::from_ipv4(i.to_be_bytes());
            t.first(
                key,
                Duration::from_secs(300),
                now + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(t.reported.len() <= THROTTLE_SOURCES);
    }

    #[test]
    fn settings_check_ports() {
        let s = Settings::build(None).unwrap();
        assert_eq!(s.kernel_ports(), [80, 8000, 8008, 8080, 8888, 0, 0, 0]);
        let sec = |ports: Vec<u16>| Section {
            ports: Some(ports),
            signatures: None,
        };
        assert!(matches!(
            Settings::build(Some(&sec((1..=9).collect()))),
            Err(SettingsError::TooManyPorts(9))
        ));
        assert!(matches!(
            Settings::build(Some(&sec(vec![0]))),
            Err(SettingsError::PortZero)
        ));
        assert_eq!(
            Settings::build(Some(&sec(vec![]))).unwrap().kernel_ports(),
            [0; 8]
        );
    }
}
