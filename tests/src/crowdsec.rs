//! A real CrowdSec Local API for the fleet tests: Debian's `crowdsec` package (1.4.6 in
//! bookworm) fetched with `apt-get download` and unpacked into `target/crowdsec/` once (never
//! `apt-get install`: its post-install step registers with the central API, fails offline and
//! leaves dpkg half-configured). Each [`Lapi`] writes its own configuration and sqlite data
//! directory, runs `crowdsec -no-cs` (the API only, no online client) inside a lab namespace,
//! and is stopped on drop. `cscli` runs in the same namespace with a machine of its own.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    netns::in_netns,
    process::{Proc, STOP_TIMEOUT, TempDir, poll_until, run},
};

/// Serialises the one-time download and unpacking between parallel tests.
static UNPACK: Mutex<()> = Mutex::new(());

/// Where the package is unpacked (`usr/bin/crowdsec`, `usr/bin/cscli`, `etc/crowdsec/`).
fn package_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/crowdsec")
}

/// The unpacked package: `apt-get download crowdsec` (after `apt-get update` if the lists are
/// missing) and `dpkg-deb -x`, once; `$SCANWATCH_CROWDSEC_DEB` names a .deb to use instead.
pub fn package() -> Result<PathBuf> {
    let _guard = UNPACK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = package_root();
    let tree = root.join("x");
    if tree.join("usr/bin/crowdsec").is_file() && tree.join("usr/bin/cscli").is_file() {
        return Ok(tree);
    }
    std::fs::create_dir_all(&root)?;
    let deb = std::env::var_os("SCANWATCH_CROWDSEC_DEB")
        .map_or_else(|| download(&root), |deb| Ok(PathBuf::from(deb)))?;
    let tmp = root.join("x.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::rename(&tmp, &tree)?;
    Ok(tree)
}

/// `apt-get download crowdsec` into `root` (after `apt-get update` if the lists are missing);
/// the .deb's path.
fn download(root: &Path) -> Result<PathBuf> {
    let download = || {
        Command::new("apt-get")
            .args(["download", "crowdsec"])
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
    };
    let ok = download().is_ok_and(|o| o.status.success());
    if !ok {
        run(Command::new("apt-get").arg("update").stdin(Stdio::null()))
            .context("apt-get update (to download the crowdsec package)")?;
        let out = download()?;
        ensure!(
            out.status.success(),
            "`apt-get download crowdsec` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("crowdsec_"))
                && p.extension().is_some_and(|e| e == "deb")
        })
        .context("apt-get download left no crowdsec_*.deb")
}

/// A running Local API.
pub struct Lapi {
    proc: Option<Proc>,
    dir: TempDir,
    ns: String,
    listen: SocketAddr,
    tree: PathBuf,
}

impl Lapi {
    /// Starts a Local API in namespace `ns`, listening on `listen`, with an empty database and
    /// the package's default profile (a 4 h ban for alerts with `remediation: true` and scope
    /// `Ip`); waits until it accepts connections.
    pub fn start(ns: &str, listen: SocketAddr) -> Result<Self> {
        let tree = package()?;
        let dir = TempDir::new("lapi")?;
        let d = dir.path().to_path_buf();
        for sub in ["cfg", "data", "hub", "plugins"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        for f in ["profiles.yaml", "simulation.yaml"] {
            std::fs::copy(tree.join("etc/crowdsec").join(f), d.join("cfg").join(f))?;
        }
        std::fs::write(d.join("cfg/acquis.yaml"), "")?;
        let dp = d.display();
        std::fs::write(
            d.join("config.yaml"),
            format!(
                "common:\n  daemonize: false\n  log_media: file\n  log_level: info\n  \
                 log_dir: {dp}/\n  working_dir: .\n\
                 config_paths:\n  config_dir: {dp}/cfg/\n  data_dir: {dp}/data/\n  \
                 simulation_path: {dp}/cfg/simulation.yaml\n  hub_dir: {dp}/hub/\n  \
                 index_path: {dp}/hub/.index.json\n  notification_dir: {dp}/cfg/notifications/\n  \
                 plugin_dir: {dp}/plugins/\n\
                 crowdsec_service:\n  acquisition_path: {dp}/cfg/acquis.yaml\n  parser_routines: 1\n\
                 cscli:\n  output: human\n\
                 db_config:\n  log_level: info\n  type: sqlite\n  use_wal: false\n  \
                 db_path: {dp}/data/crowdsec.db\n\
                 api:\n  client:\n    insecure_skip_verify: false\n    \
                 credentials_path: {dp}/cfg/local_api_credentials.yaml\n  \
                 server:\n    log_level: info\n    listen_uri: {listen}\n    \
                 profiles_path: {dp}/cfg/profiles.yaml\n    console_path: {dp}/cfg/console.yaml\n\
                 prometheus:\n  enabled: false\n  level: full\n  listen_addr: 127.0.0.1\n  \
                 listen_port: 6060\n"
            ),
        )?;
        let mut lapi = Self {
            proc: None,
            dir,
            ns: ns.to_owned(),
            listen,
            tree,
        };
        // cscli's own machine, for `decisions list/add/delete` through the API.
        lapi.cscli(&[
            "machines",
            "add",
            "cscli",
            "--password",
            "cscli-password",
            "-f",
            &format!("{dp}/cfg/local_api_credentials.yaml"),
            "--url",
            &format!("http://{listen}/"),
        ])?;
        lapi.start_again()?;
        Ok(lapi)
    }

    /// Starts the stopped API again, on the same database; waits until it listens.
    pub fn start_again(&mut self) -> Result<()> {
        ensure!(self.proc.is_none(), "the Local API is running");
        let log = std::fs::File::create(self.dir.path().join("crowdsec.out"))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(self.tree.join("usr/bin/crowdsec"))
            .arg("-c")
            .arg(self.dir.path().join("config.yaml"))
            .arg("-no-cs")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.proc = Some(Proc::spawn("crowdsec", &mut cmd)?);
        let addr = self.listen;
        let ns = self.ns.clone();
        let up = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
            in_netns(&ns, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
            .unwrap_or(false)
        });
        if !up {
            bail!(
                "the Local API did not listen on {addr} within 20 s; its log:\n{}",
                self.log()
            );
        }
        Ok(())
    }

    /// Stops the API (SIGTERM); its database stays.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.stop(STOP_TIMEOUT)?;
        }
        Ok(())
    }

    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Runs `cscli -c CONFIG ARGS` in the API's namespace; its stdout, or an error with both
    /// outputs.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns))
            .arg(self.tree.join("usr/bin/cscli"))
            .arg("-c")
            .arg(self.dir.path().join("config.yaml"))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        ensure!(
            out.status.success(),
            "cscli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Registers a machine; writes its password to `dir/<name>.password`, returns that path.
    pub fn add_machine(&self, name: &str, password: &str, dir: &Path) -> Result<PathBuf> {
        self.cscli(&[
            "machines",
            "add",
            name,
            "--password",
            password,
            "-f",
            "/dev/null",
        ])?;
        let path = dir.join(format!("{name}.password"));
        std::fs::write(&path, password)?;
        Ok(path)
    }

    /// Registers a bouncer; writes its API key to `dir/<name>.key`, returns that path.
    pub fn add_bouncer(&self, name: &str, dir: &Path) -> Result<PathBuf> {
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"])?;
        let key = key.trim();
        ensure!(!key.is_empty(), "cscli bouncers add printed no key");
        let path = dir.join(format!("{name}.key"));
        std::fs::write(&path, key)?;
        Ok(path)
    }

    /// `cscli decisions list -o json`: alerts, each with its `decisions` (empty list when none).
    pub fn decisions(&self) -> Result<Vec<Value>> {
        let text = self.cscli(&["decisions", "list", "-o", "json"])?;
        Ok(match serde_json::from_str::<Value>(text.trim())? {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    /// Every alert (`GET /v1/alerts` as cscli's machine): `cscli alerts list` hides alerts
    /// without decisions, such as those published with `remediation: false`.
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let base = self.url();
        in_netns(&self.ns, move || -> Result<Vec<Value>> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let login: Value = serde_json::from_str(
                &agent
                    .post(format!("{base}/v1/watchers/login"))
                    .content_type("application/json")
                    .send(r#"{"machine_id":"cscli","password":"cscli-password"}"#)?
                    .body_mut()
                    .read_to_string()?,
            )?;
            let token = login["token"].as_str().context("no token")?;
            let text = agent
                .get(format!("{base}/v1/alerts"))
                .header("Authorization", &format!("Bearer {token}"))
                .call()?
                .body_mut()
                .read_to_string()?;
            Ok(match serde_json::from_str::<Value>(&text)? {
                Value::Array(a) => a,
                _ => Vec::new(),
            })
        })?
    }

    /// The API's log.
    pub fn log(&self) -> String {
        let d = self.dir.path();
        let mut text = std::fs::read_to_string(d.join("crowdsec.out")).unwrap_or_default();
        text += &std::fs::read_to_string(d.join("crowdsec_api.log")).unwrap_or_default();
        text
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
