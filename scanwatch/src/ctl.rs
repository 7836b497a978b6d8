//! The control CLI: `scanwatch block`, `unblock`, `list` and `status`, working on a running
//! agent's pinned block maps and status file.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};
use aya::maps::{HashMap, LpmTrie, Map, MapData};
use ipnet::IpNet;
use scanwatch_common::{
    addr::SourceKey,
    block::{BlockEntry, BlockReason},
    maps,
};
use serde::Serialize;

use crate::{
    config::parse_cidr,
    detect::{Clock, rfc3339},
    enforce::{self, Policy, key_network, lpm_key, lpm_network, note, note_text},
    pins::{AgentStatus, Instance},
};

fn open_pinned(instance: &Instance, name: &str) -> anyhow::Result<MapData> {
    let path = instance.pin_path(name);
    if !path.exists() {
        bail!(
            "no pinned {name} map at {} — is a scanwatch agent running (`scanwatch run`) with \
             the same --instance?",
            path.display()
        );
    }
    MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))
}

fn blocks(instance: &Instance) -> anyhow::Result<HashMap<MapData, SourceKey, BlockEntry>> {
    Ok(HashMap::try_from(Map::HashMap(open_pinned(
        instance,
        maps::BLOCKS,
    )?))?)
}

fn blocklist(instance: &Instance) -> anyhow::Result<LpmTrie<MapData, [u8; 16], BlockEntry>> {
    Ok(LpmTrie::try_from(Map::LpmTrie(open_pinned(
        instance,
        maps::BLOCKLIST,
    )?))?)
}

/// `scanwatch block`: adds a manual CIDR block (permanent unless `ttl`).
pub fn block(
    instance: &Instance,
    target: &str,
    ttl: Option<Duration>,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let net = parse_cidr(target).map_err(|e| anyhow::anyhow!(e))?;
    let status = AgentStatus::read_running(instance)?;
    let policy = Policy {
        drop: true,
        dry_run: false,
        ttl: Duration::from_secs(1),
        max_ttl: Duration::from_secs(1),
        never_block: status
            .never_block
            .iter()
            .filter_map(|s| parse_cidr(s).ok())
            .collect(),
        own: enforce::own_addresses(),
        gateways: enforce::default_gateways(),
    };
    if let Some(why) = policy.protected(&net) {
        let what = match why {
            "loopback" => "a loopback address",
            "own_address" => "an address of this host",
            "gateway" => "a default gateway",
            _ => "a never_block network",
        };
        bail!("refusing to block {net}: it covers {what}, which scanwatch never blocks");
    }
    let now = Clock::monotonic_ns();
    let entry = BlockEntry {
        added_ns: now,
        expires_ns: ttl.map_or(0, |t| now + t.as_nanos() as u64),
        packets: 0,
        bytes: 0,
        reason: BlockReason::Manual as u32,
        offenses: 1,
        note: note(reason.unwrap_or("manual")),
    };
    blocklist(instance)?
        .insert(&lpm_key(&net), entry, 0)
        .with_context(|| format!("adding {net} to the block map"))?;
    let until = ttl.map_or_else(
        || "until unblocked".to_owned(),
        |t| format!("for {}", humantime::format_duration(t)),
    );
    println!("blocked {net} {until}");
    if status.mode != "drop" || status.dry_run {
        eprintln!(
            "warning: the agent runs in {} mode{}: the block is stored but not enforced until it \
             runs with --mode drop",
            status.mode,
            if status.dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(())
}

/// `scanwatch unblock`: removes manual, list or detection blocks of exactly this network, and
/// detection blocks inside it.
pub fn unblock(instance: &Instance, target: &str) -> anyhow::Result<()> {
    let net = parse_cidr(target).map_err(|e| anyhow::anyhow!(e))?;
    let ipv6_prefix = AgentStatus::read_running(instance)?.ipv6_prefix;
    let mut removed = Vec::new();
    let mut trie = blocklist(instance)?;
    if trie.remove(&lpm_key(&net)).is_ok() {
        removed.push(net.to_string());
    }
    let mut hash = blocks(instance)?;
    let keys: Vec<SourceKey> = hash.keys().flatten().collect();
    for key in keys {
        let key_net = key_network(&key, ipv6_prefix);
        if (key_net == net || net.contains(&key_net) || key_net.contains(&net))
            && hash.remove(&key).is_ok()
        {
            removed.push(key_net.to_string());
        }
    }
    if removed.is_empty() {
        bail!("{net} is not blocked (see `scanwatch list --all`)");
    }
    println!("unblocked {}", removed.join(", "));
    Ok(())
}

/// One row of `scanwatch list`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BlockRow {
    pub source: String,
    pub reason: &'static str,
    pub note: String,
    pub since: String,
    /// RFC 3339, or `never`.
    pub expires: String,
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
}

fn row(source: String, e: &BlockEntry) -> BlockRow {
    BlockRow {
        source,
        reason: BlockReason::from_index(e.reason).map_or("unknown", BlockReason::name),
        note: note_text(&e.note),
        since: rfc3339(Clock::wall(e.added_ns)),
        expires: if e.expires_ns == 0 {
            "never".to_owned()
        } else {
            rfc3339(Clock::wall(e.expires_ns))
        },
        packets_dropped: e.packets,
        bytes_dropped: e.bytes,
    }
}

/// Every live block; block-list entries only with `all`.
pub fn rows(instance: &Instance, all: bool) -> anyhow::Result<(Vec<BlockRow>, usize)> {
    let ipv6_prefix = AgentStatus::read_running(instance)?.ipv6_prefix;
    let now = Clock::monotonic_ns();
    let mut out = Vec::new();
    for (key, e) in blocks(instance)?.iter().flatten() {
        if !e.expired(now) {
            out.push(row(key_network(&key, ipv6_prefix).to_string(), &e));
        }
    }
    let mut hidden = 0;
    for (key, e) in blocklist(instance)?.iter().flatten() {
        if e.expired(now) {
            continue;
        }
        if e.reason == BlockReason::List as u32 && !all {
            hidden += 1;
            continue;
        }
        out.push(row(lpm_network(&key).to_string(), &e));
    }
    out.sort_by(|a, b| a.source.cmp(&b.source));
    Ok((out, hidden))
}

/// `scanwatch list`.
pub fn list(instance: &Instance, json: bool, all: bool) -> anyhow::Result<()> {
    let (rows, hidden) = rows(instance, all)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<10} {:<14} {:<25} {:<25} {:>10}",
        "SOURCE", "REASON", "NOTE", "SINCE", "EXPIRES", "DROPPED"
    );
    for r in &rows {
        println!(
            "{:<24} {:<10} {:<14} {:<25} {:<25} {:>10}",
            r.source, r.reason, r.note, r.since, r.expires, r.packets_dropped
        );
    }
    if hidden > 0 {
        println!("(+{hidden} block-list entries; `scanwatch list --all` shows them)");
    }
    Ok(())
}

/// `scanwatch status`.
pub fn status(instance: &Instance, json: bool) -> anyhow::Result<()> {
    let status = AgentStatus::read_running(instance)?;
    let (rows, hidden) = rows(instance, false)?;
    if json {
        let mut v = serde_json::to_value(&status)?;
        v["blocks"] = (rows.len() + hidden).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mode = if status.dry_run {
        format!("{} (dry run)", status.mode)
    } else {
        status.mode.clone()
    };
    println!(
        "scanwatch agent, pid {}, running since {}",
        status.pid, status.started
    );
    println!("mode:            {mode}");
    for (iface, attach) in &status.interfaces {
        println!("interface:       {iface} ({attach} XDP)");
    }
    println!(
        "tracked sources: {} of {}",
        status.tracked_sources, status.tracker_capacity
    );
    println!(
        "blocks:          {} ({hidden} from block lists)",
        rows.len() + hidden
    );
    if !status.top_sources.is_empty() {
        println!("top sources (probes in window):");
        for (source, probes) in &status.top_sources {
            println!("  {source:<40} {probes}");
        }
    }
    Ok(())
}

/// Reads a block-list file and reports what `scanwatch run` would load (for operators).
pub fn check_block_list(path: &Path) -> anyhow::Result<Vec<IpNet>> {
    let (nets, bad) = enforce::read_block_list_file(path)
        .with_context(|| format!("reading {}", path.display()))?;
    for b in &bad {
        eprintln!(
            "{}:{}: `{}` skipped: {}",
            path.display(),
            b.line,
            b.text,
            b.reason
        );
    }
    Ok(nets)
}
