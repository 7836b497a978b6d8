//! Bouncer role: a thread polls the decisions stream and hands each answer to the agent, which
//! enforces `ban` decisions for `Ip` and `Range` scopes in the block trie (`BLOCKLIST`, reason
//! `crowdsec`, expiring with the decision). Nothing overrides the protected set: a decision for
//! a protected peer is refused, logged and counted. The trie is pinned, so applied decisions
//! outlive a restart; the next startup pull reconciles them with the LAPI's current set.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::atomic::Ordering,
    time::Duration,
};

use ipnet::IpNet;
use log::{info, warn};
use scanwatch_common::block::BlockReason;
use tokio::sync::mpsc::UnboundedSender;

use super::{
    lapi::{Decision, Lapi, Secret, Stream, go_duration},
    publisher::Backoff,
    shared::{Shared, UNSUPPORTED},
};
use crate::{
    kernel::blocks::{BlockList, new_block},
    policy::enforce::Policy,
};

/// One answer of the stream.
#[derive(Debug)]
pub struct Batch {
    /// A startup pull: the LAPI's whole current set.
    pub startup: bool,
    pub stream: Stream,
    /// CLOCK_MONOTONIC when it arrived: durations count from here.
    pub received_ns: u64,
}

/// The bouncer thread: startup pull, then deltas every `poll_interval`.
pub fn run(lapi: &Lapi, api_key: &Secret, shared: &Shared, tx: &UnboundedSender<Batch>) {
    let role = "enforce";
    let mut startup = true;
    let mut backoff = Backoff::new(shared.settings.max_backoff);
    while !shared.stop.load(Ordering::SeqCst) {
        match lapi.stream(api_key, startup) {
            Ok(stream) => {
                shared.success(role);
                backoff.reset();
                let batch = Batch {
                    startup,
                    stream,
                    received_ns: crate::kernel::clock::Clock::monotonic_ns(),
                };
                if tx.send(batch).is_err() {
                    break;
                }
                startup = false;
                shared.sleep(shared.settings.poll_interval);
            }
            Err(e) => {
                shared.failure(role, &e);
                backoff.sleep(shared);
            }
        }
    }
    info!("crowdsec bouncer stopped");
}

/// A decision the agent enforces: its network and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ban {
    net: IpNet,
    expires_ns: u64,
}

/// The decisions known to the agent, by LAPI id.
#[derive(Debug, Default)]
pub struct Decisions {
    bans: BTreeMap<i64, Ban>,
    /// Networks refused because protected, so each is logged once while its decision lasts.
    refused: BTreeSet<IpNet>,
    /// Networks enforced after the last reconciliation.
    active: usize,
}

/// What applying a batch did (counted by the caller).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub blocked: usize,
    pub unblocked: usize,
    /// (network, reason) of each decision not enforced.
    pub refused: Vec<(String, &'static str)>,
    pub errors: usize,
    /// Networks enforced afterwards.
    pub active: usize,
}

/// A decision's network, if it is a ban of an address or a range.
fn ban_net(d: &Decision) -> Option<IpNet> {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return None;
    }
    match d.scope.to_ascii_lowercase().as_str() {
        "ip" => d.value.parse::<IpAddr>().ok().map(IpNet::from),
        "range" => d.value.parse::<IpNet>().ok().map(|n| n.trunc()),
        _ => None,
    }
}

impl Decisions {
    /// Takes a batch in and makes the trie's `crowdsec` entries match the decisions in force:
    /// adds new bans (never over a protected peer, never over another reason's entry), removes
    /// those no decision holds any more.
    pub fn apply(
        &mut self,
        batch: &Batch,
        trie: &mut BlockList,
        policy: &Policy,
        enforcing: bool,
    ) -> Applied {
        let mut out = Applied::default();
        let stream = &batch.stream;
        if !batch.startup && stream.new.is_empty() && stream.deleted.is_empty() {
            // Nothing changed: no trie walk (it may hold 262k list entries) on a quiet poll;
            // expired bans stop dropping in the kernel by themselves.
            out.active = self.active;
            return out;
        }
        if batch.startup {
            self.bans.clear();
        }
        for d in &batch.stream.deleted {
            self.bans.remove(&d.id);
        }
        for d in &batch.stream.new {
            let Some(net) = ban_net(d) else {
                out.refused
                    .push((format!("{} {}", d.scope, d.value), UNSUPPORTED));
                continue;
            };
            let Some(left) = go_duration(&d.duration) else {
                continue;
            };
            let expires_ns = batch.received_ns + left.as_nanos() as u64;
            self.bans.insert(d.id, Ban { net, expires_ns });
        }
        self.reconcile(trie, policy, enforcing, batch.received_ns, &mut out);
        out
    }

    /// Re-checks the decisions against a changed protected set.
    pub fn reapply(&mut self, trie: &mut BlockList, policy: &Policy, enforcing: bool) -> Applied {
        let mut out = Applied::default();
        self.reconcile(
            trie,
            policy,
            enforcing,
            crate::kernel::clock::Clock::monotonic_ns(),
            &mut out,
        );
        out
    }

    fn reconcile(
        &mut self,
        trie: &mut BlockList,
        policy: &Policy,
        enforcing: bool,
        now_ns: u64,
        out: &mut Applied,
    ) {
        self.bans.retain(|_, b| b.expires_ns > now_ns);
        // Latest expiry per network: two decisions on one address keep it blocked until both end.
        let mut wanted: BTreeMap<IpNet, u64> = BTreeMap::new();
        let mut refused_now = BTreeSet::new();
        for b in self.bans.values() {
            if let Some(why) = policy.protected(&b.net) {
                if !self.refused.contains(&b.net) {
                    warn!(
                        "crowdsec: decision to ban {} not enforced: {} (protected peers are \
                         never blocked)",
                        b.net,
                        why.name()
                    );
                    out.refused.push((b.net.to_string(), why.name()));
                }
                refused_now.insert(b.net);
                continue;
            }
            let e = wanted.entry(b.net).or_insert(0);
            *e = (*e).max(b.expires_ns);
        }
        self.refused = refused_now;
        if !enforcing {
            out.active = 0;
            return;
        }
        let current: BTreeMap<IpNet, (u32, u64)> = trie
            .entries()
            .into_iter()
            .filter(|(_, e)| !e.expired(now_ns))
            .map(|(n, e)| (n, (e.reason, e.expires_ns)))
            .collect();
        for (net, (reason, _)) in &current {
            if *reason == BlockReason::Crowdsec as u32
                && !wanted.contains_key(net)
                && trie.remove(net)
            {
                info!("crowdsec: decision for {net} deleted or expired: unblocked");
                out.unblocked += 1;
            }
        }
        for (net, expires_ns) in &wanted {
            match current.get(net) {
                // Another reason's entry (manual, block list) already drops it; leave it be.
                Some((reason, _)) if *reason != BlockReason::Crowdsec as u32 => continue,
                Some((_, e)) if e.abs_diff(*expires_ns) < 2_000_000_000 => continue,
                _ => {}
            }
            let ttl = Duration::from_nanos(expires_ns - now_ns);
            let entry = new_block(BlockReason::Crowdsec, now_ns, Some(ttl), 0, "crowdsec");
            match trie.insert(net, &entry) {
                Ok(()) => {
                    if !current.contains_key(net) {
                        info!("crowdsec: enforcing a ban of {net} for {}s", ttl.as_secs());
                        out.blocked += 1;
                    }
                }
                Err(e) => {
                    warn!("crowdsec: enforcing a ban of {net} failed: {e}");
                    out.errors += 1;
                }
            }
        }
        out.active = wanted.len();
        self.active = out.active;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: &str, scope: &str, value: &str) -> Decision {
        Decision {
            kind: kind.into(),
            scope: scope.into(),
            value: value.into(),
            ..Decision::default()
        }
    }

    #[test]
    fn bans_of_addresses_and_ranges_only() {
        assert_eq!(
            ban_net(&d("ban", "Ip", "192.0.2.7")),
            "192.0.2.7/32".parse().ok()
        );
        assert_eq!(
            ban_net(&d("ban", "Range", "2001:db8::1/64")),
            "2001:db8::/64".parse().ok()
        );
        assert_eq!(ban_net(&d("captcha", "Ip", "192.0.2.7")), None);
        assert_eq!(ban_net(&d("ban", "Country", "FR")), None);
        assert_eq!(ban_net(&d("ban", "Ip", "not an address")), None);
    }
}
