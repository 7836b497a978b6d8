//! The protected peers: who drop mode must never block because the host depends on them — its
//! own addresses, its connected networks, its default gateways and its DNS resolvers — read
//! from netlink and `resolv.conf`, and kept current while the agent runs.
//!
//! [`watch`] starts a task that reads the set once, then re-reads it whenever rtnetlink
//! announces an address or route change (multicast groups `RTNLGRP_IPV4_IFADDR`,
//! `RTNLGRP_IPV6_IFADDR`, `RTNLGRP_IPV4_ROUTE`, `RTNLGRP_IPV6_ROUTE`) and whenever a
//! `resolv.conf` file changes (its modification time, size or inode, polled every
//! [`POLL_INTERVAL`]). While the set cannot be read the task publishes `None`, and the
//! enforcement policy fails closed: findings are alert-only (`protected_set_unavailable`).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::StreamExt as _;
use ipnet::IpNet;
use log::{info, warn};
use rtnetlink::MulticastGroup;
use tokio::sync::watch;

use crate::net::{HostNetwork, normalize};

/// How often `resolv.conf` files are checked for changes (and netlink re-read when the
/// multicast subscription could not be made, or the last read failed).
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// After a netlink notification, further notifications this close are folded into one re-read
/// (an interface coming up announces several addresses and routes at once).
const SETTLE: Duration = Duration::from_millis(100);

/// Where the host's resolvers are configured by default: the libc resolver's file, and
/// systemd-resolved's list of upstream servers (when it runs, `/etc/resolv.conf` names only its
/// stub, 127.0.0.53).
pub const DEFAULT_RESOLV_CONF: [&str; 2] = ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"];

/// Networks drop mode never blocks, as read at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtectedPeers {
    /// The host's own addresses (host routes).
    pub own: Vec<IpNet>,
    /// The host's connected networks: a block may lie inside one (a scanner on the LAN), but
    /// never cover one.
    pub connected: Vec<IpNet>,
    /// Default gateways (host routes).
    pub gateways: Vec<IpNet>,
    /// Configured DNS resolvers (host routes).
    pub resolvers: Vec<IpNet>,
}

impl ProtectedPeers {
    /// The set of a host's network and its resolvers.
    pub fn new(host: &HostNetwork, resolvers: &[IpAddr]) -> Self {
        let mut resolvers: Vec<IpNet> = resolvers
            .iter()
            .map(|a| normalize(IpNet::from(*a)))
            .collect();
        resolvers.sort_unstable();
        resolvers.dedup();
        Self {
            own: host.addresses.iter().copied().map(normalize).collect(),
            connected: host.connected.clone(),
            gateways: host.gateways().into_iter().map(normalize).collect(),
            resolvers,
        }
    }

    /// Reads netlink and the resolver files now.
    pub async fn read(resolv_conf: &[PathBuf]) -> Result<Self, String> {
        let host = HostNetwork::read()
            .await
            .map_err(|e| format!("reading addresses and routes over netlink: {e}"))?;
        Ok(Self::new(&host, &read_resolvers(resolv_conf)?))
    }

    /// [`ProtectedPeers::read`] outside an async runtime (the control CLI).
    pub fn read_blocking(resolv_conf: &[PathBuf]) -> Result<Self, String> {
        let host = HostNetwork::read_blocking()
            .map_err(|e| format!("reading addresses and routes over netlink: {e}"))?;
        Ok(Self::new(&host, &read_resolvers(resolv_conf)?))
    }
}

/// The `nameserver` addresses of a `resolv.conf` text, in order (malformed lines are ignored,
/// as the libc resolver ignores them; a scoped IPv6 address `fe80::1%eth0` counts as its
/// address).
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The resolvers of every file; a missing file names none (systemd-resolved may not run), any
/// other read error makes the set unreadable.
pub fn read_resolvers(paths: &[PathBuf]) -> Result<Vec<IpAddr>, String> {
    let mut all = Vec::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => all.extend(parse_resolv_conf(&String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        }
    }
    Ok(all)
}

/// What identifies a version of a file: modification time, size, inode (editors and
/// resolvconf replace the file by renaming). `None` when it does not exist.
type FileStamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The current protected set: `None` while it cannot be read (fail closed).
pub type Snapshot = Option<Arc<ProtectedPeers>>;

/// Starts keeping the protected set current; the receiver sees every change. It starts at
/// `None` until the first read completes.
pub fn watch(
    resolv_conf: Vec<PathBuf>,
) -> (watch::Receiver<Snapshot>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(keep_current(resolv_conf, tx));
    (rx, task)
}

async fn keep_current(resolv_conf: Vec<PathBuf>, tx: watch::Sender<Snapshot>) {
    let groups = [
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let mut notifications = match rtnetlink::new_multicast_connection(&groups) {
        Ok((connection, _handle, messages)) => {
            tokio::spawn(connection);
            Some(messages)
        }
        Err(e) => {
            warn!(
                "subscribing to netlink address and route changes failed ({e}); re-reading them \
                 every {}s instead",
                POLL_INTERVAL.as_secs()
            );
            None
        }
    };
    let stamps = |paths: &[PathBuf]| paths.iter().map(|p| stamp(p)).collect::<Vec<_>>();
    let mut seen = stamps(&resolv_conf);
    publish(&tx, ProtectedPeers::read(&resolv_conf).await);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        let reread = tokio::select! {
            message = async {
                match notifications.as_mut() {
                    Some(n) => n.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if message.is_none() {
                    warn!("netlink change notifications ended; re-reading every {}s instead",
                        POLL_INTERVAL.as_secs());
                    notifications = None;
                }
                // Fold a burst of notifications into one read.
                tokio::time::sleep(SETTLE).await;
                if let Some(n) = notifications.as_mut() {
                    while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, n.next()).await {}
                }
                true
            }
            _ = tick.tick() => {
                let now = stamps(&resolv_conf);
                let changed = now != seen;
                seen = now;
                changed || notifications.is_none() || tx.borrow().is_none()
            }
            () = tx.closed() => return,
        };
        if reread {
            publish(&tx, ProtectedPeers::read(&resolv_conf).await);
        }
    }
}

/// Publishes a read if it changed the set; logs transitions.
fn publish(tx: &watch::Sender<Snapshot>, read: Result<ProtectedPeers, String>) {
    tx.send_if_modified(|current| match read {
        Ok(peers) => {
            if current.as_deref() == Some(&peers) {
                return false;
            }
            if current.is_none() {
                info!("protected peers: {}", describe(&peers));
            } else {
                info!("protected peers changed: {}", describe(&peers));
            }
            *current = Some(Arc::new(peers));
            true
        }
        Err(e) => {
            if current.is_some() {
                warn!(
                    "the protected set cannot be read ({e}): findings are alert-only until it \
                     can (not_blocked: protected_set_unavailable)"
                );
                *current = None;
                true
            } else {
                log::debug!("the protected set still cannot be read: {e}");
                false
            }
        }
    });
}

/// One line for the log.
pub fn describe(p: &ProtectedPeers) -> String {
    let list = |nets: &[IpNet]| {
        nets.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "own [{}], connected [{}], gateways [{}], resolvers [{}]",
        list(&p.own),
        list(&p.connected),
        list(&p.gateways),
        list(&p.resolvers)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_in_order() {
        let text = "# generated\nsearch example.org\nnameserver 192.0.2.53\n\
                    nameserver   2001:db8::53 # comment\nnameserver fe80::1%eth0\n\
                    nameserver not-an-ip\noptions edns0\n nameserver 198.51.100.1\n\
                    nameserver ::ffff:203.0.113.9\n";
        let got: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "192.0.2.53",
                "2001:db8::53",
                "fe80::1",
                "198.51.100.1",
                "::ffff:203.0.113.9"
            ]
        );
        // v4-mapped resolvers are protected as IPv4.
        let peers = ProtectedPeers::new(&HostNetwork::default(), &parse_resolv_conf(text));
        assert!(peers.resolvers.contains(&"203.0.113.9/32".parse().unwrap()));
    }

    #[test]
    fn missing_resolver_files_name_none_unreadable_ones_fail() {
        let dir = std::env::temp_dir().join(format!("scanwatch-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 192.0.2.53\n").unwrap();
        let missing = dir.join("missing.conf");
        assert_eq!(
            read_resolvers(&[file.clone(), missing]).unwrap(),
            ["192.0.2.53".parse::<IpAddr>().unwrap()]
        );
        // A directory cannot be read as a file: the set is unreadable, not empty.
        assert!(read_resolvers(std::slice::from_ref(&dir)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn watch_publishes_the_set_and_follows_resolv_conf() {
        let dir = std::env::temp_dir().join(format!("scanwatch-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("resolv.conf");
        std::fs::write(&file, "nameserver 192.0.2.53\n").unwrap();
        let (mut rx, task) = watch(vec![file.clone()]);
        let first = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
            .await
            .expect("a first read")
            .unwrap()
            .clone()
            .unwrap();
        assert_eq!(first.resolvers, ["192.0.2.53/32".parse::<IpNet>().unwrap()]);
        std::fs::write(&file, "nameserver 192.0.2.54\nnameserver 192.0.2.55\n").unwrap();
        let wanted: Vec<IpNet> = vec![
            "192.0.2.54/32".parse().unwrap(),
            "192.0.2.55/32".parse().unwrap(),
        ];
        tokio::time::timeout(
            POLL_INTERVAL * 3,
            rx.wait_for(|s| s.as_ref().is_some_and(|p| p.resolvers == wanted)),
        )
        .await
        .expect("the change is noticed within a few polls")
        .unwrap();
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
