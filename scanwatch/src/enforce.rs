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

use aya::maps::{HashMap, LpmTrie, MapData, MapError, lpm_trie::Key};
use ipnet::IpNet;
use scanwatch_common::{
    addr::SourceKey,
    block::{BLOCK_NOTE_LEN, BlockEntry, BlockReason},
};

use crate::config::parse_cidr;

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
    /// Not blocked, and why (`never_block`, `own_address`, `gateway`, `loopback`, `full`,
    /// `error`).
    NotBlocked(&'static str),
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
    /// Why a network may not be blocked, if it may not: it is loopback, or contains or lies
    /// inside a protected network.
    pub fn protected(&self, net: &IpNet) -> Option<&'static str> {
        let loopback: [IpNet; 2] = [
            IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid"),
            IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid"),
        ];
        let overlaps = |list: &[IpNet]| {
            list.iter()
                .any(|p| p.contains(net) || net.contains(p) || same_family_overlap(p, net))
        };
        if overlaps(&loopback) {
            Some("loopback")
        } else if overlaps(&self.never_block) {
            Some("never_block")
        } else if overlaps(&self.own) {
            Some("own_address")
        } else if overlaps(&self.gateways) {
            Some("gateway")
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

/// The network a tracker key stands for: an IPv4 host, or an IPv6 prefix.
pub fn key_network(key: &SourceKey, ipv6_prefix: u32) -> IpNet {
    if key.is_ipv4() {
        let a = Ipv4Addr::new(key.addr[12], key.addr[13], key.addr[14], key.addr[15]);
        IpNet::new(IpAddr::V4(a), 32).expect("valid prefix")
    } else {
        IpNet::new(
            IpAddr::V6(Ipv6Addr::from(key.addr)),
            ipv6_prefix.min(128) as u8,
        )
        .expect("valid prefix")
    }
}

/// A NUL-padded note.
pub fn note(text: &str) -> [u8; BLOCK_NOTE_LEN] {
    let mut out = [0u8; BLOCK_NOTE_LEN];
    let mut end = text.len().min(BLOCK_NOTE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// The text of a note.
pub fn note_text(note: &[u8; BLOCK_NOTE_LEN]) -> String {
    let end = note.iter().position(|b| *b == 0).unwrap_or(note.len());
    String::from_utf8_lossy(&note[..end]).into_owned()
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

    /// Decides on and, in drop mode, applies a block for a finding's source.
    pub fn on_finding(
        &mut self,
        blocks: &mut HashMap<&mut MapData, SourceKey, BlockEntry>,
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
        let existing = blocks.get(key, 0).ok();
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
        let entry = BlockEntry {
            added_ns: now_ns,
            expires_ns: now_ns + ttl.as_nanos() as u64,
            packets: 0,
            bytes: 0,
            reason: BlockReason::Detection as u32,
            offenses,
            note: note(kind),
        };
        match blocks.insert(key, entry, 0) {
            Ok(()) => Verdict::Block { ttl, offenses },
            Err(MapError::SyscallError(e))
                if matches!(e.io_error.raw_os_error(), Some(libc::E2BIG | libc::ENOSPC)) =>
            {
                Verdict::NotBlocked("full")
            }
            Err(e) => {
                log::error!("adding a block failed: {e}");
                Verdict::NotBlocked("error")
            }
        }
    }
}

/// What one sweep of a block map did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub removed: usize,
    /// Entries left in the map.
    pub left: usize,
}

/// Removes expired blocks among `entries` (one walk of a block map) with `remove`; counts
/// what was removed and what is left, so the caller need not walk the map again.
fn sweep<K>(
    entries: impl Iterator<Item = (K, BlockEntry)>,
    now_ns: u64,
    mut remove: impl FnMut(&K) -> bool,
) -> Swept {
    let mut total = 0;
    let expired: Vec<K> = entries
        .inspect(|_| total += 1)
        .filter(|(_, e)| e.expired(now_ns))
        .map(|(k, _)| k)
        .collect();
    let removed = expired.iter().filter(|k| remove(k)).count();
    Swept {
        removed,
        left: total - removed,
    }
}

/// Removes expired entries from the detection-block hash.
pub fn sweep_blocks(
    blocks: &mut HashMap<&mut MapData, SourceKey, BlockEntry>,
    now_ns: u64,
) -> Swept {
    let entries: Vec<_> = blocks.iter().filter_map(Result::ok).collect();
    sweep(entries.into_iter(), now_ns, |k| blocks.remove(k).is_ok())
}

/// Removes expired (manual, TTL'd) entries from the CIDR trie.
pub fn sweep_blocklist(
    trie: &mut LpmTrie<&mut MapData, [u8; 16], BlockEntry>,
    now_ns: u64,
) -> Swept {
    let entries: Vec<_> = trie.iter().filter_map(Result::ok).collect();
    sweep(entries.into_iter(), now_ns, |k| trie.remove(k).is_ok())
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
                    "block list {}: {net} not loaded: it covers a {why} address",
                    path.display()
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

/// The LPM key of a network: IPv4 as v4-mapped IPv6 with the prefix shifted by 96.
pub fn lpm_key(net: &IpNet) -> Key<[u8; 16]> {
    match net {
        IpNet::V4(n) => Key::new(
            u32::from(n.prefix_len()) + 96,
            SourceKey::from_ipv4(n.network().octets()).addr,
        ),
        IpNet::V6(n) => Key::new(u32::from(n.prefix_len()), n.network().octets()),
    }
}

/// The network an LPM key stands for.
pub fn lpm_network(key: &Key<[u8; 16]>) -> IpNet {
    let addr = key.data();
    let len = key.prefix_len();
    if (SourceKey { addr }).is_ipv4() && len >= 96 {
        let a = Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]);
        IpNet::new(IpAddr::V4(a), (len - 96) as u8).expect("valid prefix")
    } else {
        IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len.min(128) as u8).expect("valid prefix")
    }
}

/// Makes the block-list entries of the trie equal `wanted`, leaving manual entries alone.
/// Inserts in batches, yielding between them: large LPM updates can stall the kernel.
pub async fn sync_block_lists(
    trie: &mut LpmTrie<&mut MapData, [u8; 16], BlockEntry>,
    wanted: &[IpNet],
    now_ns: u64,
) -> anyhow::Result<(usize, usize)> {
    const BATCH: usize = 1000;
    let current: Vec<Key<[u8; 16]>> = trie
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, e)| e.reason == BlockReason::List as u32)
        .map(|(k, _)| k)
        .collect();
    let wanted_keys: std::collections::HashSet<(u32, [u8; 16])> = wanted
        .iter()
        .map(|n| {
            let k = lpm_key(n);
            (k.prefix_len(), k.data())
        })
        .collect();
    let mut removed = 0;
    for key in &current {
        if !wanted_keys.contains(&(key.prefix_len(), key.data())) && trie.remove(key).is_ok() {
            removed += 1;
        }
    }
    let entry = BlockEntry {
        added_ns: now_ns,
        expires_ns: 0,
        packets: 0,
        bytes: 0,
        reason: BlockReason::List as u32,
        offenses: 0,
        note: note("block list"),
    };
    let mut added = 0;
    for chunk in wanted.chunks(BATCH) {
        for net in chunk {
            let key = lpm_key(net);
            if trie.get(&key, 0).is_ok() {
                continue; // present (list or manual): keep its counters
            }
            trie.insert(&key, entry, 0)
                .map_err(|e| anyhow::anyhow!("loading block list entry {net}: {e}"))?;
            added += 1;
        }
        tokio::task::yield_now().await;
    }
    Ok((added, removed))
}

/// The host's own addresses, as host routes.
pub fn own_addresses() -> Vec<IpNet> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&raw mut ifap) } != 0 {
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: cur walks the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family says sockaddr_in.
                let sin = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_in>().read_unaligned() };
                let a = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out.push(IpNet::from(IpAddr::V4(a)));
            } else if family == libc::AF_INET6 {
                // SAFETY: family says sockaddr_in6.
                let sin6 = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_in6>().read_unaligned() };
                out.push(IpNet::from(IpAddr::V6(Ipv6Addr::from(
                    sin6.sin6_addr.s6_addr,
                ))));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: ifap came from getifaddrs.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// The default gateways, from `/proc/net/route` and `/proc/net/ipv6_route`.
pub fn default_gateways() -> Vec<IpNet> {
    let mut out = Vec::new();
    if let Ok(table) = std::fs::read_to_string("/proc/net/route") {
        for l in table.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 3
                && f[1] == "00000000"
                && let Ok(gw) = u32::from_str_radix(f[2], 16)
                && gw != 0
            {
                out.push(IpNet::from(IpAddr::V4(Ipv4Addr::from(u32::from_be(gw)))));
            }
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for l in table.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 5
                && f[1] == "00"
                && let Ok(gw) = u128::from_str_radix(f[4], 16)
                && gw != 0
            {
                out.push(IpNet::from(IpAddr::V6(Ipv6Addr::from(gw))));
            }
        }
    }
    out
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
        assert_eq!(p.protected(&net("127.0.0.5/32")), Some("loopback"));
        assert_eq!(p.protected(&net("::1/128")), Some("loopback"));
        assert_eq!(p.protected(&net("198.51.100.7/32")), Some("never_block"));
        assert_eq!(p.protected(&net("192.0.2.10/32")), Some("own_address"));
        assert_eq!(p.protected(&net("192.0.2.1/32")), Some("gateway"));
        // A list entry covering our own address is refused too.
        assert_eq!(p.protected(&net("192.0.2.0/24")), Some("own_address"));
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

    #[test]
    fn lpm_keys_round_trip() {
        for s in ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/48", "::/0"] {
            let net: IpNet = s.parse().unwrap();
            assert_eq!(lpm_network(&lpm_key(&net)), net);
        }
    }

    fn entry(expires_ns: u64) -> BlockEntry {
        BlockEntry {
            added_ns: 1,
            expires_ns,
            packets: 0,
            bytes: 0,
            reason: 0,
            offenses: 1,
            note: [0; BLOCK_NOTE_LEN],
        }
    }

    #[test]
    fn sweep_removes_expired_and_counts_what_is_left() {
        let entries = vec![
            (1, entry(50)),
            (2, entry(0)),
            (3, entry(200)),
            (4, entry(100)),
        ];
        let mut removed = Vec::new();
        let swept = sweep(entries.into_iter(), 100, |k| {
            removed.push(*k);
            true
        });
        assert_eq!(removed, [1, 4]);
        assert_eq!(
            swept,
            Swept {
                removed: 2,
                left: 2
            }
        );
    }

    #[test]
    fn notes_truncate_on_char_boundaries() {
        let n = note(&"é".repeat(40));
        assert_eq!(note_text(&n).chars().count(), 24);
        assert_eq!(note_text(&note("port_scan")), "port_scan");
    }
}
