//! Bouncer role: a thread polls the decisions stream and hands each answer to the agent, which
//! enforces `ban` decisions for `Ip` and `Range` scopes in the block trie (`BLOCKLIST`, reason
//! `crowdsec`, expiring with the decision). A received ban passes the refusals this host's own
//! findings pass: nothing overrides the protected set, and a ban of a source this host's
//! evidence shows to be real (it answered our flows, or completed a handshake with us) is not
//! enforced. Refused decisions are logged once and counted. The trie is pinned, so applied
//! decisions outlive a restart; the next startup pull reconciles them with the LAPI's current
//! set.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::atomic::Ordering,
    time::Duration,
};

use ipnet::IpNet;
use log::{info, warn};
use scanwatch_common::{addr::SourceKey, block::BlockReason};
use tokio::sync::mpsc::UnboundedSender;

use super::{
    lapi::{Decision, Lapi, Secret, Stream, go_duration},
    publisher::Backoff,
    shared::{BAD_DURATION, Shared, UNSUPPORTED, VERIFIED_CLIENT},
};
use crate::{
    finding::verdict::Refusal,
    kernel::blocks::{BlockList, MAX_BLOCK_TTL, nanos, new_block},
    net::key_network,
    policy::enforce::Policy,
    text::escape,
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

/// A decision the agent holds: its network, when it ends, and why this host's evidence refused
/// it when it arrived ([`evidence_refusal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ban {
    net: IpNet,
    expires_ns: u64,
    refused: Option<&'static str>,
}

/// The decisions known to the agent, by LAPI id.
#[derive(Debug, Default)]
pub struct Decisions {
    bans: BTreeMap<i64, Ban>,
    /// Networks refused (protected, or by evidence), so each is logged once while its decision
    /// lasts.
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

/// The tracker key of a network that names one source: an IPv4 address (also written
/// `::ffff:a.b.c.d`), or an IPv6 network no wider than the tracker's `ipv6_prefix`, keyed at
/// that prefix as the kernel keys its evidence. `None` for wider networks, which no evidence
/// speaks for.
fn one_source(net: &IpNet, ipv6_prefix: u32) -> Option<SourceKey> {
    match net {
        IpNet::V4(n) => (n.prefix_len() == 32).then(|| SourceKey::from_ipv4(n.addr().octets())),
        IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
            Some(v4) => (n.prefix_len() == 128).then(|| SourceKey::from_ipv4(v4.octets())),
            None => (u32::from(n.prefix_len()) >= ipv6_prefix)
                .then(|| SourceKey::from_ipv6(n.addr().octets(), ipv6_prefix)),
        },
    }
}

/// Why this host's evidence refuses a received ban of `net`, if it does: the source answered a
/// flow this host opened within `answered_peer_window` (`answered_peer`, as for this host's own
/// findings), or completed a TCP handshake with this host (`verified_client`: a decision brings
/// no hop counts to compare, so a proven client of this host is never banned for what was seen
/// elsewhere). Only a ban naming one source ([`one_source`]) has such evidence.
pub(crate) fn evidence_refusal(
    policy: &Policy,
    net: &IpNet,
    ipv6_prefix: u32,
) -> Option<&'static str> {
    let key = one_source(net, ipv6_prefix)?;
    if policy
        .answered
        .answered(&key_network(&key, ipv6_prefix), policy.answered_within)
    {
        return Some(Refusal::AnsweredPeer.name());
    }
    policy.verified.verified_hops(&key).map(|_| VERIFIED_CLIENT)
}

/// What a refusal reason means, for the log line.
fn meaning(reason: &str) -> &'static str {
    if reason == Refusal::AnsweredPeer.name() {
        "it answered one of this host's own connections: its address is real"
    } else if reason == VERIFIED_CLIENT {
        "it completed a TCP handshake with this host: its address is real"
    } else {
        "protected peers are never blocked"
    }
}

/// A decision's network, if it is a ban of an address or a range.
fn ban_net(d: &Decision) -> Option<IpNet> {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return None;
    }
    if d.scope.eq_ignore_ascii_case("ip") {
        d.value.parse::<IpAddr>().ok().map(IpNet::from)
    } else if d.scope.eq_ignore_ascii_case("range") {
        d.value.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        None
    }
}

/// Characters of a decision's scope or value kept with its refusal.
const SHOWN_CHARS: usize = 64;

/// A refused decision's scope and value, escaped and cut: the LAPI's strings may be of any
/// length and hold anything.
fn shown(d: &Decision) -> String {
    format!(
        "{} {}",
        escape(&d.scope, SHOWN_CHARS),
        escape(&d.value, SHOWN_CHARS)
    )
}

impl Decisions {
    /// Takes a batch in and makes the trie's `crowdsec` entries match the decisions in force:
    /// adds new bans (never over a protected peer or a source the evidence shows real, never
    /// over another reason's entry), removes those no decision holds any more. `ipv6_prefix` is
    /// the tracker's, at which the evidence is keyed.
    pub fn apply(
        &mut self,
        batch: &Batch,
        trie: &mut BlockList,
        policy: &Policy,
        ipv6_prefix: u32,
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
        self.take(batch, policy, ipv6_prefix, &mut out);
        self.reconcile(trie, policy, enforcing, batch.received_ns, &mut out);
        out
    }

    /// What [`Decisions::apply`] decides before it touches the trie: takes the batch in and
    /// returns the networks to enforce at `now_ns`, with the latest expiry of each. Reads no
    /// kernel map.
    pub fn plan(
        &mut self,
        batch: &Batch,
        policy: &Policy,
        ipv6_prefix: u32,
        now_ns: u64,
    ) -> (Applied, BTreeMap<IpNet, u64>) {
        let mut out = Applied::default();
        self.take(batch, policy, ipv6_prefix, &mut out);
        let wanted = self.wanted(policy, now_ns, &mut out);
        (out, wanted)
    }

    /// Takes a batch's decisions in. The evidence is consulted once, when a decision arrives:
    /// a refused decision stays refused while it lasts, whatever the evidence says later.
    fn take(&mut self, batch: &Batch, policy: &Policy, ipv6_prefix: u32, out: &mut Applied) {
        if batch.startup {
            self.bans.clear();
        }
        for d in &batch.stream.deleted {
            self.bans.remove(&d.id);
        }
        let mut bad_durations = Vec::new();
        for d in &batch.stream.new {
            let Some(net) = ban_net(d) else {
                out.refused.push((shown(d), UNSUPPORTED));
                continue;
            };
            let Some(left) = go_duration(&d.duration) else {
                bad_durations.push(d);
                out.refused.push((net.to_string(), BAD_DURATION));
                continue;
            };
            let expires_ns = batch
                .received_ns
                .saturating_add(nanos(left.min(MAX_BLOCK_TTL)));
            let refused = evidence_refusal(policy, &net, ipv6_prefix);
            self.bans.insert(
                d.id,
                Ban {
                    net,
                    expires_ns,
                    refused,
                },
            );
        }
        if let Some(first) = bad_durations.first() {
            warn!(
                "crowdsec: {} decisions not enforced: their duration is not a Go duration of \
                 0 to 2562047h (the first: id {}, `{}`)",
                bad_durations.len(),
                first.id,
                escape(&first.duration, SHOWN_CHARS)
            );
        }
    }

    /// Re-checks the decisions against a changed protected set (not against the evidence:
    /// see [`Decisions::take`]).
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

    /// The networks to enforce, with the latest expiry of each (two decisions on one address
    /// keep it blocked until both end); refusals not seen before go to `out`, logged.
    fn wanted(&mut self, policy: &Policy, now_ns: u64, out: &mut Applied) -> BTreeMap<IpNet, u64> {
        self.bans.retain(|_, b| b.expires_ns > now_ns);
        let mut wanted: BTreeMap<IpNet, u64> = BTreeMap::new();
        let mut refused_now = BTreeSet::new();
        for b in self.bans.values() {
            if let Some(why) = policy.protected(&b.net).map(Refusal::name).or(b.refused) {
                if !self.refused.contains(&b.net) {
                    warn!(
                        "crowdsec: decision to ban {} not enforced: {why} ({})",
                        b.net,
                        meaning(why)
                    );
                    out.refused.push((b.net.to_string(), why));
                }
                refused_now.insert(b.net);
                continue;
            }
            let e = wanted.entry(b.net).or_insert(0);
            *e = (*e).max(b.expires_ns);
        }
        self.refused = refused_now;
        wanted
    }

    fn reconcile(
        &mut self,
        trie: &mut BlockList,
        policy: &Policy,
        enforcing: bool,
        now_ns: u64,
        out: &mut Applied,
    ) {
        let wanted = self.wanted(policy, now_ns, out);
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
            let ttl = Duration::from_nanos(expires_ns.saturating_sub(now_ns));
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
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        net::overlaps,
        policy::{
            enforce::tests::policy,
            evidence::{AnsweredPeers, HandshakePeers},
        },
    };

    fn d(kind: &str, scope: &str, value: &str) -> Decision {
        Decision {
            kind: kind.into(),
            scope: scope.into(),
            value: value.into(),
            ..Decision::default()
        }
    }

    fn net(s: &str) -> IpNet {
        crate::net::parse_cidr(s).unwrap()
    }

    /// Remotes that answered within the last `.1`, as a fixed list (the kernel's `ANSWERED`).
    #[derive(Debug)]
    struct FakeAnswered(Vec<IpNet>, Duration);

    impl AnsweredPeers for FakeAnswered {
        fn answered(&self, source: &IpNet, within: Duration) -> bool {
            within >= self.1 && self.0.iter().any(|a| overlaps(a, source))
        }
    }

    /// Tracker keys that completed a handshake (the kernel's `VERIFIED`).
    #[derive(Debug)]
    struct FakeVerified(Vec<SourceKey>);

    impl HandshakePeers for FakeVerified {
        fn verified_hops(&self, source: &SourceKey) -> Option<u8> {
            self.0.contains(source).then_some(3)
        }
    }

    /// The test policy, with 203.0.113.80 having answered 5 minutes ago, and 203.0.113.7 and
    /// the /64 of 2001:db8:7::/64 having completed handshakes.
    fn with_evidence() -> Policy {
        let v6: std::net::Ipv6Addr = "2001:db8:7::".parse().unwrap();
        policy().with_evidence(
            Arc::new(FakeAnswered(
                vec![net("203.0.113.80")],
                Duration::from_secs(300),
            )),
            Arc::new(FakeVerified(vec![
                SourceKey::from_ipv4([203, 0, 113, 7]),
                SourceKey::from_ipv6(v6.octets(), 64),
            ])),
        )
    }

    #[test]
    fn bans_of_answered_peers_and_verified_clients_are_refused() {
        let p = with_evidence();
        let why = |s: &str| evidence_refusal(&p, &net(s), 64);
        assert_eq!(why("203.0.113.80"), Some("answered_peer"));
        assert_eq!(why("203.0.113.7"), Some("verified_client"));
        assert_eq!(why("::ffff:203.0.113.7"), Some("verified_client"));
        // An IPv6 address is looked up at the tracker's prefix, as the kernel keys it.
        assert_eq!(why("2001:db8:7::99"), Some("verified_client"));
        assert_eq!(why("2001:db8:7::/64"), Some("verified_client"));
        // No evidence: enforced.
        assert_eq!(why("203.0.113.8"), None);
        assert_eq!(why("2001:db8:8::1"), None);
        // A range names no one source: no evidence speaks for it.
        assert_eq!(why("203.0.113.0/24"), None);
        assert_eq!(why("2001:db8::/48"), None);
        // An answer older than answered_peer_window protects no one.
        let short = Policy {
            answered_within: Duration::from_secs(60),
            ..with_evidence()
        };
        assert_eq!(evidence_refusal(&short, &net("203.0.113.80"), 64), None);
    }

    #[test]
    fn refused_decisions_are_never_enforced_and_reported_once() {
        let batch = |new: Vec<Decision>, deleted: Vec<Decision>| Batch {
            startup: false,
            stream: Stream { new, deleted },
            received_ns: 1_000,
        };
        let ban = |id, ip: &str| Decision {
            id,
            duration: "1h".into(),
            ..d("ban", "Ip", ip)
        };
        let p = with_evidence();
        let mut decisions = Decisions::default();
        let mut out = Applied::default();
        let arrived = batch(
            vec![
                ban(1, "203.0.113.80"),
                ban(2, "203.0.113.7"),
                ban(3, "192.0.2.1"),
                ban(4, "203.0.113.9"),
            ],
            vec![],
        );
        decisions.take(&arrived, &p, 64, &mut out);
        let wanted = decisions.wanted(&p, 2_000, &mut out);
        assert_eq!(wanted.keys().collect::<Vec<_>>(), [&net("203.0.113.9")]);
        let mut refused = out.refused.clone();
        refused.sort();
        assert_eq!(
            refused,
            [
                ("192.0.2.1/32".to_owned(), "gateway"),
                ("203.0.113.7/32".to_owned(), "verified_client"),
                ("203.0.113.80/32".to_owned(), "answered_peer"),
            ]
        );
        // Reconciled again (the protected set changed, another decision arrived): still
        // refused, reported no second time. The evidence was read when the decisions arrived.
        let mut again = Applied::default();
        decisions.take(
            &batch(vec![ban(5, "203.0.113.10")], vec![]),
            &policy(),
            64,
            &mut again,
        );
        let wanted = decisions.wanted(&policy(), 3_000, &mut again);
        assert_eq!(
            wanted.keys().collect::<Vec<_>>(),
            [&net("203.0.113.9"), &net("203.0.113.10")]
        );
        assert!(again.refused.is_empty(), "{:?}", again.refused);
        // Deleted and sent again, a decision is judged again, on the evidence of then.
        let mut later = Applied::default();
        decisions.take(
            &batch(vec![ban(6, "203.0.113.7")], vec![ban(2, "203.0.113.7")]),
            &policy(),
            64,
            &mut later,
        );
        let wanted = decisions.wanted(&policy(), 4_000, &mut later);
        assert!(wanted.contains_key(&net("203.0.113.7")));
        assert!(later.refused.is_empty());
    }

    #[test]
    fn a_hostile_stream_is_applied_without_panic_and_every_bad_decision_refused() {
        let bad_durations = [
            "99999999999999999999h",
            "1e400s",
            "NaNh",
            "infh",
            "-5s",
            "",
            "forever",
        ];
        let huge = "7".repeat(4096);
        let mut new = Vec::new();
        let mut expected_bad = 0;
        for i in 0..30_000_i64 {
            let octets = i.to_be_bytes();
            let ip = format!("198.18.{}.{}", octets[6], octets[7]);
            let dec = match i % 6 {
                0 => Decision {
                    duration: bad_durations[(i / 6) as usize % bad_durations.len()].into(),
                    ..d("ban", "Ip", &ip)
                },
                1 => Decision {
                    duration: "1h".into(),
                    ..d("ban", "\u{1b}]0;x\u{7}Ip\r", &ip)
                },
                2 => Decision {
                    duration: "1h".into(),
                    ..d("ban", "Ip", "300.1.2.3\u{1b}[2J")
                },
                3 => Decision {
                    duration: "1h".into(),
                    ..d("ban", "Range", &huge)
                },
                4 => Decision {
                    duration: "2562047h".into(),
                    ..d("ban", "Ip", &ip)
                },
                _ => Decision {
                    duration: "4h".into(),
                    ..d("ban", "Range", &format!("{ip}/32"))
                },
            };
            if i % 6 < 4 {
                expected_bad += 1;
            }
            new.push(Decision { id: i, ..dec });
        }
        let text = serde_json::to_string(
            &serde_json::json!({ "new": new.iter().map(|d| serde_json::json!({
            "id": d.id, "type": d.kind, "scope": d.scope, "value": d.value, "duration": d.duration,
        })).collect::<Vec<_>>() }),
        )
        .unwrap();
        assert!(text.len() < 64 * 1024 * 1024, "{} bytes", text.len());
        let stream: Stream = serde_json::from_str(&text).unwrap();
        assert_eq!(stream.new.len(), 30_000);
        let batch = Batch {
            startup: true,
            stream,
            received_ns: u64::MAX - 1_000,
        };
        let p = policy();
        let mut decisions = Decisions::default();
        let mut out = Applied::default();
        decisions.take(&batch, &p, 64, &mut out);
        assert_eq!(out.refused.len(), expected_bad);
        let count = |why: &str| out.refused.iter().filter(|(_, r)| *r == why).count();
        assert_eq!(count(BAD_DURATION), 5_000);
        assert_eq!(count(UNSUPPORTED), 15_000);
        for (what, _) in &out.refused {
            assert!(what.len() <= 300, "{} bytes kept", what.len());
            assert!(!what.chars().any(char::is_control), "{what:?}");
        }
        let wanted = decisions.wanted(&p, u64::MAX - 999, &mut out);
        assert_eq!(wanted.len(), 10_000);
        assert!(wanted.values().all(|e| *e == u64::MAX));
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
