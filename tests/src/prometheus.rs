//! A real Prometheus server (Debian's `prometheus`) in the lab's target namespace, scraping the
//! daemon every second and evaluating rule files every second, queried through its HTTP API.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::ExitStatus,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    http,
    lab::Lab,
    netns::in_netns,
    process::{Proc, TempDir},
};

/// Port of the Prometheus server inside the target namespace.
pub const PROMETHEUS_PORT: u16 = 9090;
/// The scrape job's name, as the shipped alert rules expect it.
pub const JOB: &str = "scanwatch";

/// A running Prometheus; stopped (and its data removed) on drop.
pub struct Prometheus<'lab> {
    lab: &'lab Lab,
    proc: Proc,
    dir: TempDir,
}

impl<'lab> Prometheus<'lab> {
    /// Starts Prometheus in the target namespace, scraping `target` (the daemon's metrics
    /// address) as job [`JOB`] and evaluating `rule_files`.
    pub fn start(lab: &'lab Lab, target: SocketAddr, rule_files: &[&Path]) -> Result<Self> {
        let dir = TempDir::new("prometheus")?;
        let config = dir.path().join("prometheus.yml");
        let mut text = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - \
             job_name: {JOB}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
             static_configs:\n      - targets: ['{target}']\n"
        );
        if !rule_files.is_empty() {
            text.push_str("rule_files:\n");
            for file in rule_files {
                let file = file
                    .canonicalize()
                    .with_context(|| format!("rule file {}", file.display()))?;
                writeln!(text, "  - '{}'", file.display())?;
            }
        }
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let proc = Proc::spawn(
            "prometheus",
            lab.target
                .command("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        Ok(Self { lab, proc, dir })
    }

    /// Prometheus' own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path?query` on the API from inside the target namespace; the `data` member.
    fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PROMETHEUS_PORT));
        let (status, body) = in_netns(self.lab.target.name(), || {
            http::get_query(addr, path, query, Duration::from_secs(2))
        })??;
        ensure!(status == 200, "{path}: HTTP {status}: {body}");
        let v: Value = serde_json::from_str(&body)?;
        ensure!(v["status"] == "success", "{path}: {body}");
        Ok(v["data"].clone())
    }

    /// An instant query (`/api/v1/query`); the `result` array.
    pub fn query(&self, query: &str) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/query", &[("query", query)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/alerts", &[])?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The loaded rule groups (`/api/v1/rules`).
    pub fn rule_groups(&self) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/rules", &[])?;
        Ok(data["groups"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until Prometheus has scraped the daemon (`up == 1`), up to `timeout`.
    pub fn wait_scraping(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let query = format!("up{{job=\"{JOB}\"}}");
        loop {
            if let Some(status) = self.proc.try_status()? {
                bail!("prometheus exited ({status:?}):\n{}", self.log());
            }
            let up = self.query(&query);
            if let Ok(up) = &up
                && up.first().is_some_and(|r| r["value"][1] == "1")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "prometheus did not scrape scanwatch within {timeout:?}: {up:?}\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// SIGTERM, wait up to 10 s; the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.proc.stop(Duration::from_secs(10))
    }
}

/// The values of an instant query's result (`[time, "value"]` pairs), parsed; NaN when a value
/// is not a number.
pub fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .map(|r| {
            r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect()
}
