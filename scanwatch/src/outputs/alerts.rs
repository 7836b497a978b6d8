//! The alert log: one finding per line, as scanwatch's own JSON (`jsonl`) or as an Elastic
//! Common Schema document (`ecs`, see [`crate::outputs::ecs`]), appended with one `write` per line so
//! concurrent readers never see half a line. Reopened on SIGHUP for logrotate. Optionally each
//! alert also goes to syslog as an RFC 5424 message (UDP to a collector, or a local datagram
//! socket such as `/dev/log`), for SIEMs that ingest syslog.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    net::{SocketAddr, UdpSocket},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    str::FromStr,
};

use anyhow::Context as _;
use serde::Deserialize;

use crate::{finding::record::Finding, outputs::ecs};

/// How each alert line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// scanwatch's own JSON object per line (README, "Alerts").
    #[default]
    Jsonl,
    /// Elastic Common Schema: `@timestamp`, `event.*`, `source.*`, `threat.*`, ... and
    /// scanwatch's measures under `scanwatch.*`.
    Ecs,
}

/// Where syslog messages go: `udp://HOST:PORT` or `HOST:PORT` (UDP), or a local datagram
/// socket path (`/dev/log`, `unix:/dev/log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTarget {
    Udp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for SyslogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(path.into()));
        }
        if s.starts_with('/') {
            return Ok(Self::Unix(s.into()));
        }
        let addr = s.strip_prefix("udp://").unwrap_or(s);
        addr.parse().map(Self::Udp).map_err(|_| {
            format!(
                "`{s}` is neither an address:port such as 192.0.2.10:514 (UDP) nor a socket \
                 path such as /dev/log"
            )
        })
    }
}

/// Where alerts go.
#[derive(Debug)]
pub struct AlertSink {
    out: Output,
    format: AlertFormat,
    syslog: Option<Syslog>,
}

#[derive(Debug)]
enum Output {
    Stdout,
    File { path: PathBuf, file: File },
}

impl AlertSink {
    /// JSON Lines on stdout.
    pub fn stdout() -> Self {
        Self {
            out: Output::Stdout,
            format: AlertFormat::Jsonl,
            syslog: None,
        }
    }

    /// Opens `path` for appending (creating it), or stdout when `None`; JSON Lines, no syslog.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        let out = match path {
            None => Output::Stdout,
            Some(path) => Output::File {
                path: path.to_owned(),
                file: open_append(path)?,
            },
        };
        Ok(Self {
            out,
            ..Self::stdout()
        })
    }

    /// Writes lines in `format`.
    #[must_use]
    pub fn with_format(mut self, format: AlertFormat) -> Self {
        self.format = format;
        self
    }

    /// Also sends each alert to syslog at `target`.
    pub fn with_syslog(mut self, target: &SyslogTarget) -> anyhow::Result<Self> {
        self.syslog = Some(Syslog::new(target.clone())?);
        Ok(self)
    }

    /// The finding as one line of the sink's format, without the newline.
    pub fn render(&self, finding: &Finding) -> io::Result<Vec<u8>> {
        match self.format {
            AlertFormat::Jsonl => serde_json::to_vec(finding),
            AlertFormat::Ecs => serde_json::to_vec(&ecs::document(finding)),
        }
        .map_err(io::Error::other)
    }

    /// Writes one finding as one line, and to syslog when configured. Both are tried; the
    /// first error is returned.
    pub fn write(&mut self, finding: &Finding) -> io::Result<()> {
        let mut line = self.render(finding)?;
        let syslog = self
            .syslog
            .as_ref()
            .map_or(Ok(()), |s| s.send(finding, &line));
        line.push(b'\n');
        let written = match &mut self.out {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Output::File { file, .. } => file.write_all(&line),
        };
        written.and(syslog)
    }

    /// Reopens the file (after logrotate moved it).
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        if let Output::File { path, file } = &mut self.out {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// Flushes buffered output to the OS and disk.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Output::Stdout => io::stdout().flush(),
            Output::File { file, .. } => file.sync_data(),
        }
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening alert log {} for appending", path.display()))
}

/// Syslog facility `auth` (4: security/authorization) at severity `warning` (4), RFC 5424
/// section 6.2.1: PRI = facility * 8 + severity.
pub const SYSLOG_PRI: u8 = 4 * 8 + 4;

/// An RFC 5424 sender.
#[derive(Debug)]
struct Syslog {
    target: SyslogTarget,
    socket: SyslogSocket,
    hostname: String,
    pid: u32,
}

#[derive(Debug)]
enum SyslogSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Syslog {
    fn new(target: SyslogTarget) -> anyhow::Result<Self> {
        let socket = match &target {
            SyslogTarget::Udp(addr) => {
                let any: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse()?
                } else {
                    "[::]:0".parse()?
                };
                SyslogSocket::Udp(UdpSocket::bind(any).context("opening a UDP socket for syslog")?)
            }
            SyslogTarget::Unix(_) => SyslogSocket::Unix(
                UnixDatagram::unbound().context("opening a datagram socket for syslog")?,
            ),
        };
        Ok(Self {
            target,
            socket,
            hostname: hostname(),
            pid: std::process::id(),
        })
    }

    /// Sends one message: unconnected, so an unreachable collector never turns into an error
    /// on a later alert.
    fn send(&self, finding: &Finding, payload: &[u8]) -> io::Result<()> {
        let message = rfc5424(finding, payload, &self.hostname, self.pid);
        match (&self.socket, &self.target) {
            (SyslogSocket::Udp(s), SyslogTarget::Udp(addr)) => s.send_to(&message, addr),
            (SyslogSocket::Unix(s), SyslogTarget::Unix(path)) => s.send_to(&message, path),
            _ => unreachable!("the socket is made for its target"),
        }
        .map(drop)
    }
}

/// This host's name as RFC 5424 HOSTNAME (printable ASCII, at most 255), or `-` (NILVALUE).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        "-".to_owned()
    } else {
        name.to_owned()
    }
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME scanwatch PROCID MSGID - MSG`, MSGID the
/// detection kind, no structured data, MSG the alert line (JSON, so ASCII-safe for syslog
/// relays that mangle a BOM, which RFC 5424 makes optional).
pub fn rfc5424(finding: &Finding, payload: &[u8], hostname: &str, pid: u32) -> Vec<u8> {
    let mut message = format!(
        "<{SYSLOG_PRI}>1 {} {hostname} scanwatch {pid} {} - ",
        finding.timestamp,
        finding.kind.name()
    )
    .into_bytes();
    message.extend_from_slice(payload);
    message
}

#[cfg(test)]
mod tests {

    use super::*;

    fn finding(source: &str) -> Finding {
        Finding::sample(source)
    }

    #[test]
    fn appends_lines_and_reopens_after_rotation() {
        let dir = std::env::temp_dir().join(format!("scanwatch-alerts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let rotated = dir.join("alerts.jsonl.1");
        let mut sink = AlertSink::open(Some(&path)).unwrap();
        sink.write(&finding("192.0.2.1")).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen().unwrap();
        sink.write(&finding("192.0.2.2")).unwrap();
        sink.flush().unwrap();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1);
        assert!(old.contains("192.0.2.1"));
        assert_eq!(new.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v["source"], "192.0.2.2");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ecs_format_writes_ecs_documents() {
        let dir = std::env::temp_dir().join(format!("scanwatch-ecs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let mut sink = AlertSink::open(Some(&path))
            .unwrap()
            .with_format(AlertFormat::Ecs);
        sink.write(&finding("192.0.2.3")).unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["source"]["ip"], "192.0.2.3");
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["@timestamp"], "2026-01-01T00:00:00.000Z");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syslog_sends_one_rfc5424_message_per_alert_over_udp() {
        let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let target: SyslogTarget = collector.local_addr().unwrap().to_string().parse().unwrap();
        let dir = std::env::temp_dir().join(format!("scanwatch-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sink = AlertSink::open(Some(&dir.join("alerts.jsonl")))
            .unwrap()
            .with_format(AlertFormat::Ecs)
            .with_syslog(&target)
            .unwrap();
        sink.write(&finding("192.0.2.4")).unwrap();
        let mut buf = vec![0u8; 65_536];
        let n = collector.recv(&mut buf).unwrap();
        let message = std::str::from_utf8(&buf[..n]).unwrap();
        // HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID, then
        // STRUCTURED-DATA and MSG (RFC 5424 section 6).
        let parts: Vec<&str> = message.splitn(8, ' ').collect();
        assert_eq!(parts.len(), 8, "{message}");
        assert_eq!(parts[0], "<36>1", "{message}");
        assert_eq!(parts[1], "2026-01-01T00:00:00.000Z");
        assert!(
            !parts[2].is_empty() && parts[2].bytes().all(|b| b.is_ascii_graphic()),
            "{message}"
        );
        assert_eq!(parts[3], "scanwatch");
        assert_eq!(parts[4], std::process::id().to_string());
        assert_eq!(parts[5], "port_scan");
        assert_eq!(parts[6], "-");
        let payload: serde_json::Value = serde_json::from_str(parts[7]).unwrap();
        assert_eq!(payload["source"]["ip"], "192.0.2.4");
        assert_eq!(payload["rule"]["name"], "port_scan");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syslog_reaches_a_local_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("scanwatch-devlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("log");
        let listener = UnixDatagram::bind(&socket).unwrap();
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let target: SyslogTarget = socket.to_string_lossy().parse().unwrap();
        let mut sink = AlertSink::open(Some(&dir.join("alerts.jsonl")))
            .unwrap()
            .with_syslog(&target)
            .unwrap();
        sink.write(&finding("192.0.2.5")).unwrap();
        let mut buf = vec![0u8; 65_536];
        let n = listener.recv(&mut buf).unwrap();
        let message = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            message.starts_with("<36>1 2026-01-01T00:00:00.000Z "),
            "{message}"
        );
        let payload = message.splitn(8, ' ').nth(7).unwrap();
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(v["source"], "192.0.2.5", "the JSON Lines form: {message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn syslog_targets_parse() {
        assert_eq!(
            "192.0.2.10:514".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Udp("192.0.2.10:514".parse().unwrap()))
        );
        assert_eq!(
            "udp://[2001:db8::1]:514".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Udp("[2001:db8::1]:514".parse().unwrap()))
        );
        assert_eq!(
            "/dev/log".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert_eq!(
            "unix:/run/syslog".parse::<SyslogTarget>(),
            Ok(SyslogTarget::Unix("/run/syslog".into()))
        );
        assert!("syslog.example".parse::<SyslogTarget>().is_err());
    }

    #[test]
    fn the_process_of_an_egress_finding_is_in_the_line_and_the_syslog_message() {
        use crate::finding::{process::Process, record::Direction};
        let sink = AlertSink::stdout();
        let mut f = finding("192.0.2.5");
        let line = String::from_utf8(sink.render(&f).unwrap()).unwrap();
        assert!(!line.contains("\"process\""), "ingress: no process: {line}");
        f.direction = Direction::Egress;
        f.process = Some(None);
        let line = String::from_utf8(sink.render(&f).unwrap()).unwrap();
        assert!(line.contains("\"process\":null"), "{line}");
        f.process = Some(Some(Process {
            pid: Some(31337),
            name: Some("masscan".into()),
            unit: Some("scan.service".into()),
            ..Process::default()
        }));
        let payload = sink.render(&f).unwrap();
        let message = String::from_utf8(rfc5424(&f, &payload, "host", 1)).unwrap();
        assert!(
            message.contains(r#""process":{"pid":31337,"name":"masscan","unit":"scan.service"}"#),
            "{message}"
        );
    }
}
