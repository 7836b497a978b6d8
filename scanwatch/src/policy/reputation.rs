//! Reputation: which configured block lists cover a finding's source, for the alert's
//! `listed_in`. Every entry of `block_lists` (enforcing or enrichment-only) is indexed here, in
//! monitor mode too; matching runs in user space, once per finding, never per packet.
//!
//! Each list becomes sorted, merged address ranges per family (IPv4 as `u32`, IPv6 as `u128`;
//! `::ffff:a.b.c.d` is IPv4, as [`parse_cidr`] normalises it) searched by bisection. Memory is
//! bounded: at most [`MAX_REPUTATION_ENTRIES`] entries over all lists (past it, the reload is
//! refused and the previous index stays), at most 32 bytes each, 32 MiB in all.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::block_lists::{ListEntry, ListSpec, parse_block_list};

/// Most entries indexed over all lists: 1,048,576 (FireHOL level1 has ~4,500, level4 ~100,000).
pub const MAX_REPUTATION_ENTRIES: usize = 1 << 20;

/// One list's prefixes, as merged inclusive ranges sorted by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixIndex {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl PrefixIndex {
    /// Indexes `nets` (any order; overlaps and duplicates merge).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((n.network().to_bits(), n.broadcast().to_bits())),
                IpNet::V6(n) => v6.push((n.network().to_bits(), n.broadcast().to_bits())),
            }
        }
        Self {
            v4: merge(v4, |a| a.saturating_add(1)),
            v6: merge(v6, |a| a.saturating_add(1)),
        }
    }

    /// True when every address of `net` is in the list (an address: when it is listed).
    pub fn covers(&self, net: &IpNet) -> bool {
        match crate::net::normalize(*net) {
            IpNet::V4(n) => covered(&self.v4, n.network().to_bits(), n.broadcast().to_bits()),
            IpNet::V6(n) => covered(&self.v6, n.network().to_bits(), n.broadcast().to_bits()),
        }
    }

    /// Ranges held (after merging).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sorts ranges and merges overlapping or adjacent ones (`succ`: the next address, saturating).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, succ: impl Fn(T) -> T) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= succ(last.1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

fn covered<T: Ord + Copy>(ranges: &[(T, T)], first: T, last: T) -> bool {
    // The last range starting at or before `first` is the only one that can hold it.
    let i = ranges.partition_point(|(start, _)| *start <= first);
    i > 0 && ranges[i - 1].1 >= last
}

/// One named list: its index, and whether drop mode enforces it.
#[derive(Clone, Debug)]
pub struct NamedIndex {
    pub name: String,
    pub block: bool,
    pub index: PrefixIndex,
}

/// Every configured list, by name, in configuration order.
#[derive(Clone, Debug, Default)]
pub struct Reputation {
    pub lists: Vec<NamedIndex>,
}

/// Why a reputation index was not rebuilt.
#[derive(Debug, thiserror::Error)]
#[error(
    "block lists hold {count} entries, more than the reputation index's cap of {cap}; the \
     previous index stays: shorten or drop a list"
)]
pub struct TooLarge {
    pub count: usize,
    pub cap: usize,
}

impl Reputation {
    /// Reads and indexes every list (unreadable files are logged and index nothing; bad lines
    /// are reported by the block-list loader, not twice here).
    pub fn read(lists: &[ListSpec], cap: usize) -> Result<Self, TooLarge> {
        let mut count = 0;
        let mut out = Vec::with_capacity(lists.len());
        for spec in lists {
            let entries = match std::fs::read(&spec.path) {
                Ok(bytes) => parse_block_list(&bytes).0,
                Err(e) => {
                    log::error!(
                        "list {} ({}): cannot read: {e}; it names no source",
                        spec.name,
                        spec.path.display()
                    );
                    Vec::new()
                }
            };
            count += entries.len();
            if count > cap {
                return Err(TooLarge { count, cap });
            }
            out.push(NamedIndex {
                name: spec.name.clone(),
                block: spec.block,
                index: PrefixIndex::new(entries.into_iter().map(|ListEntry { net, .. }| net)),
            });
        }
        Ok(Self { lists: out })
    }

    /// Names of the lists covering `source`, in configuration order (empty when none).
    pub fn listed_in(&self, source: &IpNet) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for l in &self.lists {
            if l.index.covers(source) && !names.contains(&l.name) {
                names.push(l.name.clone());
            }
        }
        names
    }

    /// Same, for a bare address.
    pub fn listed_in_addr(&self, addr: IpAddr) -> Vec<String> {
        self.listed_in(&IpNet::from(addr))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::net::parse_cidr;

    fn index(entries: &[&str]) -> PrefixIndex {
        PrefixIndex::new(entries.iter().map(|e| parse_cidr(e).unwrap()))
    }

    fn covers(i: &PrefixIndex, s: &str) -> bool {
        i.covers(&parse_cidr(s).unwrap())
    }

    #[test]
    fn finds_ipv4_addresses_and_prefixes_inside_listed_ranges() {
        let i = index(&[
            "192.0.2.0/24",
            "198.51.100.7",
            "203.0.113.0/25",
            "10.0.0.0/8",
        ]);
        assert!(covers(&i, "192.0.2.0"));
        assert!(covers(&i, "192.0.2.255"));
        assert!(covers(&i, "198.51.100.7"));
        assert!(covers(&i, "10.200.3.4"));
        assert!(covers(&i, "10.1.0.0/16"), "a prefix inside a listed range");
        assert!(!covers(&i, "192.0.3.0"));
        assert!(!covers(&i, "198.51.100.8"));
        assert!(!covers(&i, "203.0.113.128"));
        assert!(!covers(&i, "203.0.113.0/24"), "only half of it is listed");
        assert!(!covers(&i, "9.255.255.255"));
        assert!(!covers(&i, "2001:db8::1"), "IPv6 is not in IPv4 ranges");
    }

    #[test]
    fn finds_ipv6_addresses_and_aggregated_prefixes() {
        let i = index(&["2001:db8:bad::/48", "2001:db8:1::5"]);
        assert!(covers(&i, "2001:db8:bad:1::1"));
        assert!(
            covers(&i, "2001:db8:bad:7::/64"),
            "an aggregated /64 source"
        );
        assert!(covers(&i, "2001:db8:1::5"));
        assert!(!covers(&i, "2001:db8:1::6"));
        assert!(!covers(&i, "2001:db8::/32"));
        assert!(!covers(&i, "192.0.2.1"));
    }

    #[test]
    fn adjacent_and_overlapping_entries_merge_and_cover_together() {
        let i = index(&[
            "192.0.2.0/25",
            "192.0.2.128/25",
            "192.0.2.64/26",
            "255.255.255.255",
            "0.0.0.0/32",
        ]);
        assert_eq!(i.len(), 3);
        assert!(covers(&i, "192.0.2.0/24"), "two halves cover the whole");
        assert!(covers(&i, "255.255.255.255"));
        assert!(covers(&i, "0.0.0.0"));
    }

    #[test]
    fn v4_mapped_entries_and_sources_are_ipv4() {
        let i = index(&["::ffff:192.0.2.0/120"]);
        assert!(covers(&i, "192.0.2.9"));
        assert!(
            i.covers(&"::ffff:192.0.2.9/128".parse().unwrap()),
            "a mapped source, not normalised by the caller"
        );
        let i = index(&["192.0.2.0/24"]);
        assert!(covers(&i, "::ffff:192.0.2.200"));
        assert!(!covers(&i, "::ffff:192.0.3.1"));
    }

    fn dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scanwatch-rep-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(dir: &Path, file: &str, name: &str, block: bool, text: &str) -> ListSpec {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        ListSpec {
            path,
            name: name.into(),
            block,
        }
    }

    #[test]
    fn names_every_list_covering_a_source_in_configuration_order() {
        let dir = dir("names");
        let lists = [
            spec(
                &dir,
                "a.netset",
                "spamhaus_drop",
                true,
                "192.0.2.0/24 ; SBL1\n",
            ),
            spec(
                &dir,
                "b.netset",
                "firehol_level1",
                false,
                "# c\n192.0.2.7\nbad line\n",
            ),
            spec(&dir, "c.netset", "other", false, "2001:db8::/32\n"),
        ];
        let r = Reputation::read(&lists, 100).unwrap();
        assert_eq!(
            r.listed_in_addr("192.0.2.7".parse().unwrap()),
            ["spamhaus_drop", "firehol_level1"]
        );
        assert_eq!(
            r.listed_in_addr("192.0.2.8".parse().unwrap()),
            ["spamhaus_drop"]
        );
        assert!(r.listed_in_addr("198.51.100.1".parse().unwrap()).is_empty());
        assert_eq!(r.listed_in_addr("2001:db8::9".parse().unwrap()), ["other"]);
    }

    #[test]
    fn too_many_entries_refuse_the_index_and_a_missing_file_names_nothing() {
        let dir = dir("cap");
        let lists = [spec(
            &dir,
            "a",
            "a",
            true,
            "192.0.2.1\n192.0.2.2\n192.0.2.3\n",
        )];
        let e = Reputation::read(&lists, 2).unwrap_err();
        assert_eq!((e.count, e.cap), (3, 2));
        let missing = [ListSpec {
            path: dir.join("absent"),
            name: "absent".into(),
            block: false,
        }];
        let r = Reputation::read(&missing, 2).unwrap();
        assert!(r.listed_in_addr("192.0.2.1".parse().unwrap()).is_empty());
    }
}
