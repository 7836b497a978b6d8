//! The alert log: JSON Lines, one finding per line, appended with one `write` per line so
//! concurrent readers never see half a line. Reopened on SIGHUP for logrotate.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::detect::Finding;

/// Where alerts go.
#[derive(Debug)]
pub enum AlertSink {
    Stdout,
    File { path: PathBuf, file: File },
}

impl AlertSink {
    /// Opens `path` for appending (creating it), or stdout when `None`.
    pub fn open(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Self::Stdout),
            Some(path) => Ok(Self::File {
                path: path.to_owned(),
                file: open_append(path)?,
            }),
        }
    }

    /// Writes one finding as one line.
    pub fn write(&mut self, finding: &Finding) -> io::Result<()> {
        let mut line = serde_json::to_vec(finding).map_err(io::Error::other)?;
        line.push(b'\n');
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&line)?;
                out.flush()
            }
            Self::File { file, .. } => file.write_all(&line),
        }
    }

    /// Reopens the file (after logrotate moved it).
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        if let Self::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// Flushes buffered output to the OS and disk.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout => io::stdout().flush(),
            Self::File { file, .. } => file.sync_data(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn finding(source: &str) -> Finding {
        Finding {
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            source: source.into(),
            target: None,
            sources: None,
            kind: scanwatch_common::event::DetectionKind::PortScan,
            technique: "T1046",
            direction: crate::detect::Direction::Ingress,
            distinct_ports: 20,
            distinct_hosts: 1,
            packets: 21,
            probes: BTreeMap::new(),
            examples: Vec::new(),
            window_seconds: 300,
            first_seen: "2026-01-01T00:00:00.000Z".into(),
            last_seen: "2026-01-01T00:00:00.000Z".into(),
            interface: "eth0".into(),
            action: crate::detect::Action::Alert,
            block_ttl_seconds: None,
            not_blocked: None,
        }
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
}
