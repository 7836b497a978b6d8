//! Drop mode: deciding whether a finding's source may be blocked, writing blocks with TTLs into
//! the kernel, expiring them, and loading static block lists.
//!
//! Never blocked, whatever a finding says: `never_block` CIDRs (still tracked and alerted), the
//! host's own addresses, its default gateways, and loopback. Repeat offenders get doubling TTLs
//! up to a cap. When the block map is full, new blocks are refused and counted (an attacker must
//! not be able to lift a block by flooding the map).

use std::{
    collections::HashMap as StdHashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use ipnet::IpNet;
use scanwatch_common::{addr::SourceKey, block::BlockReason};
use serde::Serialize;

use crate::{
    kernel::{BlockWriteError, Blocks, new_block},
    net::{HostNetwork, key_network, parse_cidr},
};

/// Why a finding in drop mode was not blocked (the alert's `not_blocked`, and the `reason`
/// label of `scanwatch_blocks_refused_total`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    /// Dry run: it would have been blocked.
    DryRun,
    /// On the `never_block` list.
    NeverBlock,
    /// One of this host's own addresses.
    OwnAddress,
    /// One of this host's default gateways.
    Gateway,
    Loopback,
    /// The block map is full (blocks are never evicted to make room).
    Full,
    /// Writing the block failed.
    Error,
}

impl Refusal {
    /// The metric label and alert value.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// What the protected network is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::OwnAddress => "an address of this host",
            Self::Gateway => "a default gateway",
            Self::NeverBlock => "a never_block network",
            Self::DryRun => "dry run",
            Self::Full => "a full block map",
            Self::Error => "an error",
        }
    }
}

/// What enforcement did with a finding, as written in its alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Monitor mode: alert only.
    Alert,
    /// Blocked for this long (a new block).
    Block { ttl: Duration, offenses: u32 },
    /// Already blocked (another kind from the same source): the block has this long left.
    AlreadyBlocked { ttl: Duration },
    /// Dry run: would have blocked for this long.
    WouldBlock { ttl: Duration },
    /// Not blocked, and why.
    NotBlocked(Refusal),
}

/// Who may never be blocked, and how long blocks last.
#[derive(Clone, Debug)]
pub struct Policy {
    pub drop: bool,
    pub dry_run: bool,
    pub ttl: Duration,
    pub max_ttl: Duration,
    pub never_block: Vec<IpNet>,
    /// The host's own addresses (host routes).
    pub own: Vec<IpNet>,
    /// The host's default gateways (host routes).
    pub gateways: Vec<IpNet>,
}

impl Policy {
    /// The policy of a configuration, protecting what netlink says this host's addresses and
    /// default gateways are.
    pub fn new(config: &crate::config::Config, host: &HostNetwork) -> Self {
        Self {
            drop: config.mode == crate::config::Mode::Drop,
            dry_run: config.dry_run,
            ttl: config.block_ttl,
            max_ttl: config.max_block_ttl,
            never_block: config.never_block.clone(),
            own: host.addresses.clone(),
            gateways: host.gateways(),
        }
    }

    /// Why a network may not be blocked, if it may not: it is loopback, or contains or lies
    /// inside a protected network.
    pub fn protected(&self, net: &IpNet) -> Option<Refusal> {
        let loopback: [IpNet; 2] = [
            IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid"),
            IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid"),
        ];
        let overlaps = |list: &[IpNet]| {
            list.iter()
                .any(|p| p.contains(net) || net.contains(p) || same_family_overlap(p, net))
        };
        if overlaps(&loopback) {
            Some(Refusal::Loopback)
        } else if overlaps(&self.never_block) {
            Some(Refusal::NeverBlock)
        } else if overlaps(&self.own) {
            Some(Refusal::OwnAddress)
        } else if overlaps(&self.gateways) {
            Some(Refusal::Gateway)
        } else {
            None
        }
    }

    /// TTL of the `offenses`-th block: `ttl · 2^(offenses-1)`, at most `max_ttl`.
    pub fn ttl_for(&self, offenses: u32) -> Duration {
        let doublings = offenses.saturating_sub(1).min(20);
        self.ttl.saturating_mul(1u32 << doublings).min(self.max_ttl)
    }
}

fn same_family_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Blocks the daemon adds for findings, in the pinned `BLOCKS` hash.
pub struct Enforcer {
    pub policy: Policy,
    /// Offences per source, remembered across expiries (bounded: cleared past the cap).
    offenses: StdHashMap<SourceKey, u32>,
}

/// Sources whose offence count is remembered.
const OFFENSE_MEMORY: usize = 65_536;

impl Enforcer {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            offenses: StdHashMap::new(),
        }
    }

    /// Decides on and, in drop mode, writes a block for a finding's source into `blocks`.
    pub fn block_finding(
        &mut self,
        blocks: &mut Blocks,
        key: &SourceKey,
        ipv6_prefix: u32,
        kind: &str,
        now_ns: u64,
    ) -> Verdict {
        if !self.policy.drop {
            return Verdict::Alert;
        }
        if let Some(why) = self.policy.protected(&key_network(key, ipv6_prefix)) {
            return Verdict::NotBlocked(why);
        }
        let existing = blocks.get(key).ok().flatten();
        if let Some(e) = existing
            && !e.expired(now_ns)
        {
            // Already blocked (a second kind from the same source): keep the block.
            return Verdict::AlreadyBlocked {
                ttl: Duration::from_nanos(e.expires_ns.saturating_sub(now_ns)),
            };
        }
        if self.offenses.len() >= OFFENSE_MEMORY {
            self.offenses.clear();
        }
        let remembered = self.offenses.entry(*key).or_insert(0);
        let offenses = (*remembered).max(existing.map_or(0, |e| e.offenses)) + 1;
        let ttl = self.policy.ttl_for(offenses);
        if self.policy.dry_run {
            return Verdict::WouldBlock { ttl };
        }
        *remembered = offenses;
        let entry = new_block(BlockReason::Detection, now_ns, Some(ttl), offenses, kind);
        match blocks.insert(key, &entry) {
            Ok(()) => Verdict::Block { ttl, offenses },
            Err(BlockWriteError::Full) => Verdict::NotBlocked(Refusal::Full),
            Err(e) => {
                log::error!("adding a block failed: {e}");
                Verdict::NotBlocked(Refusal::Error)
            }
        }
    }
}

/// One bad line of a block-list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// Parses a block list: one CIDR or address per line, `#` and `;` start comments (the FireHOL
/// `.netset` and Spamhaus DROP formats). Bad lines are returned, not fatal.
pub fn parse_block_list(text: &str) -> (Vec<IpNet>, Vec<BadLine>) {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match parse_cidr(entry) {
            Ok(net) => nets.push(net),
            Err(reason) => bad.push(BadLine {
                line: i + 1,
                text: entry.to_owned(),
                reason,
            }),
        }
    }
    (nets, bad)
}

/// Reads every block-list file; bad lines and unreadable files are logged with file and line
/// and skipped. Entries the policy protects are skipped with a warning.
pub fn read_block_lists(paths: &[std::path::PathBuf], policy: &Policy) -> Vec<IpNet> {
    let mut all = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                log::error!("block list {}: cannot read: {e}; skipped", path.display());
                continue;
            }
        };
        let (nets, bad) = parse_block_list(&text);
        for b in &bad {
            log::warn!(
                "block list {}:{}: `{}` skipped: {}",
                path.display(),
                b.line,
                b.text,
                b.reason
            );
        }
        let before = all.len();
        for net in nets {
            match policy.protected(&net) {
                Some(why) => log::warn!(
                    "block list {}: {net} not loaded: it covers a {} address",
                    path.display(),
                    why.name()
                ),
                None => all.push(net),
            }
        }
        log::info!(
            "block list {}: {} entries loaded, {} bad lines",
            path.display(),
            all.len() - before,
            bad.len()
        );
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// Reads a block list file's entries (for tests and the CLI).
pub fn read_block_list_file(path: &Path) -> std::io::Result<(Vec<IpNet>, Vec<BadLine>)> {
    Ok(parse_block_list(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            drop: true,
            dry_run: false,
            ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86400),
            never_block: vec!["198.51.100.0/24".parse().unwrap()],
            own: vec!["192.0.2.10/32".parse().unwrap()],
            gateways: vec!["192.0.2.1/32".parse().unwrap()],
        }
    }

    #[test]
    fn protected_networks_are_never_blocked() {
        let p = policy();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(p.protected(&net("127.0.0.5/32")), Some(Refusal::Loopback));
        assert_eq!(p.protected(&net("::1/128")), Some(Refusal::Loopback));
        assert_eq!(
            p.protected(&net("198.51.100.7/32")),
            Some(Refusal::NeverBlock)
        );
        assert_eq!(
            p.protected(&net("192.0.2.10/32")),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(p.protected(&net("192.0.2.1/32")), Some(Refusal::Gateway));
        // A list entry covering our own address is refused too.
        assert_eq!(p.protected(&net("192.0.2.0/24")), Some(Refusal::OwnAddress));
        assert_eq!(p.protected(&net("203.0.113.9/32")), None);
    }

    #[test]
    fn repeat_offenders_get_doubling_ttls_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.ttl_for(1), Duration::from_secs(3600));
        assert_eq!(p.ttl_for(2), Duration::from_secs(7200));
        assert_eq!(p.ttl_for(3), Duration::from_secs(14400));
        assert_eq!(p.ttl_for(10), Duration::from_secs(86400));
        assert_eq!(p.ttl_for(u32::MAX), Duration::from_secs(86400));
    }

    #[test]
    fn block_list_formats_parse_with_bad_lines_reported() {
        let text = "# FireHOL level1\n1.2.3.0/24\n5.6.7.8\n\n; Spamhaus DROP\n\
                    10.20.0.0/16 ; SBL123456\nnot-an-ip\n2001:db8::/32 # v6\n300.1.1.1/8\n";
        let (nets, bad) = parse_block_list(text);
        let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            nets,
            ["1.2.3.0/24", "5.6.7.8/32", "10.20.0.0/16", "2001:db8::/32"]
        );
        assert_eq!(bad.len(), 2);
        assert_eq!((bad[0].line, bad[0].text.as_str()), (7, "not-an-ip"));
        assert_eq!(bad[1].line, 9);
    }
}
