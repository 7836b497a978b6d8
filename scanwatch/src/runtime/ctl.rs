//! The control CLI: `scanwatch block`, `unblock`, `list` and `status`, working on a running
//! agent's pinned block maps and status file.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use scanwatch_common::block::{BlockEntry, BlockReason};
use serde::Serialize;

use crate::{
    config::Mode,
    kernel::{
        blocks::{BlockList, Blocks, new_block, note_text},
        clock::{Clock, rfc3339},
        pins::Instance,
    },
    net::{key_network, parse_cidr},
    policy::{
        enforce::Policy,
        evidence::{NoAnswerEvidence, NoHandshakeEvidence},
        protect::ProtectedPeers,
    },
    runtime::status::AgentStatus,
};

/// `scanwatch block`: adds a manual CIDR block (permanent unless `ttl`).
pub fn block(
    instance: &Instance,
    target: &str,
    ttl: Option<Duration>,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let net = parse_cidr(target).map_err(|e| anyhow::anyhow!(e))?;
    let status = AgentStatus::read_running(instance)?;
    let peers = ProtectedPeers::read_blocking(&status.resolv_conf).map_err(|e| {
        anyhow::anyhow!("refusing to block {net}: the protected peers cannot be read ({e})")
    })?;
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
        peers: Some(Arc::new(peers)),
        answered: Arc::new(NoAnswerEvidence),
        answered_within: Duration::ZERO,
        verified: Arc::new(NoHandshakeEvidence),
        hop_tolerance: crate::policy::evidence::HOP_TOLERANCE,
    };
    if let Some(why) = policy.protected(&net) {
        bail!(
            "refusing to block {net}: it covers {}, which scanwatch never blocks",
            why.describe()
        );
    }
    let entry = new_block(
        BlockReason::Manual,
        Clock::monotonic_ns(),
        ttl,
        1,
        reason.unwrap_or("manual"),
    );
    BlockList::open_pinned(instance)?
        .insert(&net, &entry)
        .with_context(|| format!("adding {net} to the block map"))?;
    let until = ttl.map_or_else(
        || "until unblocked".to_owned(),
        |t| format!("for {}", humantime::format_duration(t)),
    );
    println!("blocked {net} {until}");
    if status.mode != Mode::Drop || status.dry_run {
        eprintln!(
            "warning: the agent runs in {} mode{}: the block is stored but not enforced until it \
             runs with --mode drop",
            status.mode.name(),
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
    if BlockList::open_pinned(instance)?.remove(&net) {
        removed.push(net.to_string());
    }
    let mut blocks = Blocks::open_pinned(instance)?;
    for (key, _) in blocks.entries() {
        let key_net = key_network(&key, ipv6_prefix);
        if (key_net == net || net.contains(&key_net) || key_net.contains(&net))
            && blocks.remove(&key)
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
        note: note_text(e),
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
    for (key, e) in Blocks::open_pinned(instance)?.entries() {
        if !e.expired(now) {
            out.push(row(key_network(&key, ipv6_prefix).to_string(), &e));
        }
    }
    let mut hidden = 0;
    for (net, e) in BlockList::open_pinned(instance)?.entries() {
        if e.expired(now) {
            continue;
        }
        if e.reason == BlockReason::List as u32 && !all {
            hidden += 1;
            continue;
        }
        out.push(row(net.to_string(), &e));
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
        format!("{} (dry run)", status.mode.name())
    } else {
        status.mode.name().to_owned()
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
    if let Some(fleet) = &status.crowdsec {
        println!("crowdsec:        {}", fleet.lapi_url);
        for (role, health) in [("publish", &fleet.publish), ("enforce", &fleet.enforce)] {
            let Some(h) = health else { continue };
            let state = if h.up { "up" } else { "DOWN" };
            let error = h.last_error.as_deref().filter(|_| !h.up).unwrap_or("");
            println!(
                "  {role:<8} {state} (last success {}) {error}",
                h.last_success.as_deref().unwrap_or("never")
            );
        }
        println!(
            "  {} findings queued, {} decisions enforced",
            fleet.alerts_queued, fleet.decisions_active
        );
        if !fleet.decisions_refused.is_empty() {
            let why: Vec<String> = fleet
                .decisions_refused
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            println!("  decisions refused: {}", why.join(", "));
        }
    }
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
    let (entries, bad) = crate::policy::block_lists::read_block_list_file(path)
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
    Ok(entries.into_iter().map(|e| e.net).collect())
}
