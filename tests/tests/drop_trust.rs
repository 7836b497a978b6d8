//! End-to-end tests of drop mode under forged evidence: the real daemon in a throwaway lab
//! refuses to block the host's resolver when a scan is forged with its address, adds blocks no
//! faster than its token bucket under a flood of forged scanners (while a real scanner is still
//! blocked and reported), normalises `::ffff:` addresses in the CLI and in block lists, skips
//! block-list entries that cover the host, loads the rest of a list past a non-UTF-8 line,
//! reloads a 262,000-entry list without delaying alerts, follows resolver and address changes
//! without a reload, and refuses to run in drop mode when its egress program cannot attach.
//! The kernel's evidence of real addresses protects too: a peer that answered the host's own
//! query is never blocked by a scan forged in its name, nor is a client that completed a
//! handshake when the forged scan arrives at another hop count (`suspected_spoof`), nor by a
//! forged ACK scan, whose evidence (the host's own RSTs) carries no hop count at all
//! (`unverified_evidence`).
//!
//! Forged packets come from the attacker's namespace through a raw socket that writes its own
//! IPv4 header ([`scanner::Forger`]). Every test builds its own lab and daemon and tears both
//! down on exit, also on failure.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        ALERT_WITHIN, CONNECT_TIMEOUT, METRICS_WITHIN, attacker_port_scan_alert, config_file,
        connect, connects, daemon_with_config, expect_alert, lab,
    },
    lab::Lab,
    metrics::{self, sample},
    netns::in_netns,
    process::{TempDir, poll_until},
    scanner::{self, Forger, tcp_flags},
    services::Service,
    tcx::TcxFill,
};
use serde_json::Value;

/// The service port the tests connect to.
const SERVICE_PORT: u16 = 8080;

/// Writes `body` to `name` in `dir`; its path as text.
fn write_file(dir: &TempDir, name: &str, body: &[u8]) -> String {
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, body).expect("writing a test file");
    path.to_string_lossy().into_owned()
}

/// The daemon in drop mode, with `settings` (lines of its configuration file in `dir`).
fn drop_daemon<'lab>(lab: &'lab Lab, dir: &TempDir, settings: &str) -> Daemon<'lab> {
    daemon_with_config(lab, dir, &format!("mode = \"drop\"\n{settings}"))
}

/// The target's TCP service on [`SERVICE_PORT`], and its address.
fn target_service(lab: &Lab) -> (Service, SocketAddr) {
    let target = lab.target_v4();
    let service = Service::tcp(&lab.target, target.into(), &[SERVICE_PORT]).unwrap();
    (service, SocketAddr::from((target, SERVICE_PORT)))
}

/// The enforcement lines of the metrics text, for failure messages.
fn enforcement(text: &str) -> String {
    metrics::lines(
        text,
        &[
            "scanwatch_dropped",
            "scanwatch_block",
            "scanwatch_alerts_suppressed",
            "scanwatch_detections",
            "scanwatch_protected",
        ],
    )
}

/// Asserts that a connect from the attacker to the target's `addr` times out (dropped).
fn assert_dropped(lab: &Lab, addr: SocketAddr, what: &str) {
    match connect(lab.attacker.name(), addr, CONNECT_TIMEOUT) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("{what}: a connect to {addr} should time out (dropped), got {other:?}"),
    }
}

/// Waits up to 3 s for a block-list entry to be enforced: `ns` no longer reaches `addr`; else
/// fails with `what` and the daemon's log.
fn assert_list_enforced(daemon: &Daemon<'_>, ns: &str, addr: SocketAddr, what: &str) {
    assert!(
        poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
            !connects(ns, addr)
        }),
        "{what}; log:\n{}",
        daemon.log()
    );
}

/// The attacker, a real scanner, scans the target's service at `addr`: its port_scan blocks it
/// and its connects are dropped, while the forged scans the test sent before in the name of a
/// peer were refused a block for `refused` (counted in the metrics). The metrics text.
fn assert_real_scanner_blocked(
    lab: &Lab,
    daemon: &Daemon<'_>,
    addr: SocketAddr,
    refused: &str,
) -> String {
    let alert = attacker_port_scan_alert(lab, daemon, "real scanner");
    assert_eq!(alert["action"], "block", "{alert}");
    assert_dropped(lab, addr, "the real scanner");
    let metrics = daemon.metrics().unwrap();
    assert!(
        sample(
            &metrics,
            &format!("scanwatch_blocks_refused_total{{reason=\"{refused}\"}}")
        ) >= 1,
        "{}",
        enforcement(&metrics)
    );
    metrics
}

/// DNS queries from the target to `resolver`: how many of `n` were answered.
fn dns_answers(lab: &Lab, resolver: SocketAddr, n: u16) -> usize {
    in_netns(lab.target.name(), move || {
        (0..n)
            .filter(|i| {
                scanner::dns_query(resolver, 0x5300 + i, "example.org", Duration::from_secs(1))
                    .unwrap_or(false)
            })
            .count()
    })
    .expect("entering the target namespace")
}

#[test]
fn forged_scan_from_the_resolver_blocks_nothing_and_a_real_scanner_is_still_blocked() {
    let lab = lab();
    let dir = TempDir::new("trust-resolver").unwrap();
    // The benign host is the target's resolver.
    let resolver_ip = lab.benign_v4();
    let resolv = write_file(
        &dir,
        "resolv.conf",
        format!("# test\nnameserver {resolver_ip}\n").as_bytes(),
    );
    let daemon = drop_daemon(&lab, &dir, &format!("resolv_conf = [\"{resolv}\"]\n"));
    let resolver = SocketAddr::from((resolver_ip, 53));
    let dns = Service::udp(&lab.benign, resolver).expect("the resolver");
    assert_eq!(dns_answers(&lab, resolver, 5), 5, "the resolver answers");

    // 40 SYNs to 40 ports, forged with the resolver's address, sent from the attacker.
    let target = lab.target_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        Forger::new()?.syn_scan(resolver_ip, target, 3000..3040, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap();
    assert_eq!(sent, 40);
    let alert = expect_alert(
        &daemon,
        &resolver_ip.to_string(),
        &["port_scan"],
        "forged scan",
    );
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["not_blocked"], "resolver", "{alert}");
    assert_eq!(
        dns_answers(&lab, resolver, 5),
        5,
        "the resolver keeps answering after a forged scan in its name"
    );

    // A real scanner is still blocked.
    let (service, addr) = target_service(&lab);
    let metrics = assert_real_scanner_blocked(&lab, &daemon, addr, "resolver");
    assert_eq!(sample(&metrics, "scanwatch_protected_set_available"), 1);
    drop(service);
    dns.stop().unwrap();
}

#[test]
fn forged_scanner_flood_adds_blocks_within_its_prefix_share_and_a_real_scanner_is_blocked_during_it()
 {
    // A small bucket, so the bound is tight against what the flood could have done.
    const RATE: u64 = 5;
    const BURST: u64 = 20;
    /// Forged sources, or as many as fit in the flood's time.
    const SOURCES: u32 = 2000;
    const FLOOD_FOR: Duration = Duration::from_secs(8);
    let lab = lab();
    let dir = TempDir::new("trust-flood").unwrap();
    let daemon = drop_daemon(
        &lab,
        &dir,
        &format!("max_blocks_per_second = {RATE}\nblock_burst = {BURST}\n"),
    );
    let target = lab.target_v4();

    // Each forged source (198.18.0.0/15, the benchmarking range) SYN-scans 22 ports: the first
    // probe primes the admission filter, 21 cross the port_scan threshold of 20.
    let started = Instant::now();
    let flood = thread::spawn({
        let ns = lab.attacker.name().to_owned();
        move || {
            in_netns(&ns, move || -> std::io::Result<u32> {
                let forger = Forger::new()?;
                let deadline = Instant::now() + FLOOD_FOR;
                let mut sources = 0;
                while sources < SOURCES && Instant::now() < deadline {
                    let [_, _, hi, lo] = (sources + 256).to_be_bytes();
                    let src = Ipv4Addr::new(198, 18, hi, lo);
                    forger.syn_scan(src, target, 2000..2022, FLOOD_FOR)?;
                    sources += 1;
                    // Spread the flood over its time: ~250 sources a second.
                    thread::sleep(Duration::from_millis(4));
                }
                Ok(sources)
            })
        }
    });
    // Meanwhile the real scanner probes UDP ports: another kind, whose alert budget the
    // forged port scans cannot spend.
    thread::sleep(Duration::from_secs(2));
    let attacker = lab.attacker_v4().to_string();
    in_netns(lab.attacker.name(), move || {
        scanner::udp_scan(target.into(), 4000..4030, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap();
    let udp = expect_alert(
        &daemon,
        &attacker,
        &["udp_scan"],
        "real scanner in the flood",
    );
    let sources = flood.join().unwrap().unwrap().unwrap();
    let flood_time = started.elapsed();
    assert!(sources >= 500, "the flood forged {sources} sources");

    // Blocks added stay within the bucket: burst + rate · elapsed (+1 s of slack for events
    // still queued when the flood stopped).
    thread::sleep(Duration::from_secs(1));
    let metrics = daemon.metrics().unwrap();
    let added = sample(
        &metrics,
        "scanwatch_blocks_added_total{reason=\"detection\"}",
    );
    let bound = BURST + RATE * (started.elapsed().as_secs() + 1);
    let detections = sample(
        &metrics,
        "scanwatch_detections_total{direction=\"ingress\",kind=\"port_scan\"}",
    );
    assert!(
        added <= bound,
        "{added} blocks added in {flood_time:?} (bucket {RATE}/s, burst {BURST}): {}",
        enforcement(&metrics)
    );
    assert!(
        detections >= u64::from(sources) / 2,
        "the forged scans were detected ({detections} of {sources}): {}",
        enforcement(&metrics)
    );
    // The forged sources all claim one /16 (198.18.0.0/16): they spend that prefix's share of
    // the bucket (a tenth: rate 1/s, burst 2), never the bucket itself, so the real scanner,
    // elsewhere, is blocked during the flood.
    assert!(
        sample(
            &metrics,
            "scanwatch_blocks_refused_total{reason=\"prefix_rate_limited\"}"
        ) > 0,
        "{}",
        enforcement(&metrics)
    );
    assert_eq!(udp["action"], "block", "blocked during the flood: {udp}");
    let forged = added.saturating_sub(1);
    let share_bound = 2 + (started.elapsed().as_secs() + 1);
    eprintln!("forged blocks during the flood: {forged} (share bound {share_bound})");
    assert!(
        forged <= share_bound,
        "{forged} forged blocks, over the prefix's share: {}",
        enforcement(&metrics)
    );
    let (service, addr) = target_service(&lab);
    assert_dropped(&lab, addr, "the real scanner");
    drop(service);
}

/// The `list --json --all` rows of a daemon (block-list entries included).
fn list(daemon: &Daemon<'_>) -> Vec<Value> {
    let out = daemon
        .ctl_ok(&["list", "--json", "--all"])
        .expect("scanwatch list");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"))
}

#[test]
fn mapped_ipv6_forms_are_ipv4_in_the_cli_and_in_block_lists() {
    let lab = lab();
    let dir = TempDir::new("trust-mapped").unwrap();
    let benign = lab.benign_v4();
    let list_path = write_file(
        &dir,
        "mapped.netset",
        format!("::ffff:{benign}\n::ffff:0:0/96\n").as_bytes(),
    );
    let config = config_file(
        &dir,
        &format!("mode = \"drop\"\nblock_lists = [\"{list_path}\"]\n"),
    );
    let daemon = Daemon::start_shared(&lab, &["--config", &config]).expect("starting scanwatch");
    let (service, addr) = target_service(&lab);

    // The list's mapped benign address is enforced as IPv4; `::ffff:0:0/96` (all of IPv4) is
    // skipped with a warning naming file and line.
    assert_list_enforced(
        &daemon,
        lab.benign.name(),
        addr,
        "the list's ::ffff: entry is enforced",
    );
    let log = daemon.log();
    assert!(
        log.contains(&format!("{list_path}:2: 0.0.0.0/0 skipped")),
        "the all-IPv4 entry is skipped with file and line:\n{log}"
    );
    assert!(
        list(&daemon)
            .iter()
            .any(|r| r["source"] == format!("{benign}/32")),
        "{:#?}",
        list(&daemon)
    );

    // The CLI normalises too: the attacker blocked as ::ffff:a.b.c.d shows as IPv4 and drops.
    let attacker = lab.attacker_v4();
    assert!(connects(lab.attacker.name(), addr));
    daemon
        .ctl_ok(&["block", &format!("::ffff:{attacker}")])
        .expect("scanwatch block ::ffff:");
    assert!(
        list(&daemon)
            .iter()
            .any(|r| r["source"] == format!("{attacker}/32")),
        "{:#?}",
        list(&daemon)
    );
    assert_dropped(
        &lab,
        addr,
        "the attacker blocked through its mapped address",
    );
    let refused = daemon.ctl(&["block", "::ffff:0:0/96"]).unwrap();
    assert!(
        !refused.status.success(),
        "blocking all of IPv4 through ::ffff:0:0/96 is refused"
    );
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("0.0.0.0/0"), "{text}");
    daemon
        .ctl_ok(&["unblock", &format!("::ffff:{attacker}")])
        .expect("scanwatch unblock ::ffff:");
    assert!(
        poll_until(Duration::from_secs(2), Duration::from_millis(100), || {
            connects(lab.attacker.name(), addr)
        }),
        "unblocked through the mapped form"
    );
    drop(service);
}

#[test]
fn block_lists_skip_entries_covering_the_host_and_load_past_a_non_utf8_line() {
    let lab = lab();
    let dir = TempDir::new("trust-lists").unwrap();
    let attacker = lab.attacker_v4();
    // A FireHOL level1 excerpt: bogons and RFC 1918 ranges. The lab lives in 10.0.0.0/8.
    let mut body = b"# firehol_level1\n0.0.0.0/8\n10.0.0.0/8\n100.64.0.0/10\n".to_vec();
    body.extend_from_slice(b"172.16.0.0/12\n192.168.0.0/16\n# caf\xe9\n203.0.\xff113.0/24\n");
    body.extend_from_slice(format!("{attacker}\n").as_bytes());
    let list_path = write_file(&dir, "firehol_level1.netset", &body);
    let daemon = drop_daemon(&lab, &dir, &format!("block_lists = [\"{list_path}\"]\n"));
    let (service, addr) = target_service(&lab);

    // The line after the bad byte loads: the attacker is dropped ...
    assert_list_enforced(
        &daemon,
        lab.attacker.name(),
        addr,
        "the entry after the non-UTF-8 line is enforced",
    );
    // ... the benign host, inside the skipped 10.0.0.0/8, is served.
    assert!(connects(lab.benign.name(), addr), "10.0.0.0/8 was loaded");
    let log = daemon.log();
    assert!(
        log.contains(&format!("{list_path}:3: 10.0.0.0/8 skipped")),
        "the covering entry is skipped with file and line:\n{log}"
    );
    assert!(
        log.contains(&format!("{list_path}:8:")),
        "the bad line is reported:\n{log}"
    );
    let metrics = daemon.wait_for_metrics(METRICS_WITHIN, |m| {
        sample(m, "scanwatch_blocked_sources{map=\"cidr\"}") == 5
    });
    // 0/8, 100.64/10, 172.16/12, 192.168/16, the attacker.
    assert_eq!(
        sample(&metrics, "scanwatch_blocked_sources{map=\"cidr\"}"),
        5,
        "{}",
        enforcement(&metrics)
    );
    drop(service);
}

/// Entries of the big list: /32s in 100.64.0.0/10 (CGNAT space, not the lab's).
const BIG_LIST: u32 = 262_000;

#[test]
fn reloading_262k_block_list_entries_under_a_scan_keeps_alert_latency_under_100ms() {
    let lab = lab();
    let dir = TempDir::new("trust-reload").unwrap();
    let list_path = dir.path().join("big.netset");
    std::fs::write(&list_path, "").unwrap();
    let mut daemon = drop_daemon(
        &lab,
        &dir,
        &format!("block_lists = [\"{}\"]\n", list_path.display()),
    );
    let mut body = String::with_capacity(BIG_LIST as usize * 16);
    for i in 0..BIG_LIST {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
        writeln!(body, "{a}").unwrap();
    }
    std::fs::write(&list_path, body).unwrap();

    // Forged scanners, one after another, while the list reloads.
    let target = lab.target_v4();
    let reload_started = Instant::now();
    daemon.signal(libc::SIGHUP).unwrap();
    let scanned = in_netns(lab.attacker.name(), move || -> std::io::Result<u32> {
        let forger = Forger::new()?;
        let mut n: u32 = 0;
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            // A /16 of its own each (100.64.0.0/10): one prefix's share of the alert budget
            // would otherwise cap how many of them are written.
            let [_, _, hi, lo] = (n + 256).to_be_bytes();
            forger.syn_scan(
                Ipv4Addr::new(100, 64 + (n % 64) as u8, hi, lo),
                target,
                2000..2022,
                ALERT_WITHIN,
            )?;
            n += 1;
            thread::sleep(Duration::from_millis(50));
        }
        Ok(n)
    })
    .unwrap()
    .unwrap();
    let loaded = format!("block lists: {BIG_LIST} CIDRs enforced");
    assert!(
        poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
            daemon.log().contains(&loaded)
        }),
        "the reload finished; log:\n{}",
        daemon.log()
    );
    let reload_time = reload_started.elapsed();
    // The list is in force, and the alerts of the scans sent during the reload are written
    // (on a loaded machine the agent may still be draining them when the reload ends).
    let metrics = daemon.wait_for_metrics(Duration::from_secs(10), |m| {
        sample(m, "scanwatch_blocked_sources{map=\"cidr\"}") == u64::from(BIG_LIST)
            && sample(m, "scanwatch_event_to_alert_latency_seconds_count") >= u64::from(scanned) / 2
    });
    let count = sample(&metrics, "scanwatch_event_to_alert_latency_seconds_count");
    let fast = sample(
        &metrics,
        "scanwatch_event_to_alert_latency_seconds_bucket{le=\"0.1\"}",
    );
    assert!(
        count >= u64::from(scanned) / 2,
        "the forged scans were reported ({count} alerts, {scanned} scanners)"
    );
    assert_eq!(
        fast,
        count,
        "every alert within 100 ms during a {reload_time:?} reload of {BIG_LIST} entries:\n{}",
        metrics::lines(&metrics, &["scanwatch_event_to_alert"])
    );
}

#[test]
fn drop_mode_exits_with_an_error_when_the_egress_program_cannot_attach() {
    let lab = lab();
    // The target interface's tcx egress chain, full: scanwatch's egress attach gets ERANGE.
    let ifname = lab.target_if.clone();
    let fill = in_netns(lab.target.name(), move || {
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: a NUL-terminated interface name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "the target interface");
        TcxFill::fill(ifindex)
    })
    .unwrap()
    .expect("filling the tcx egress chain");
    assert!(fill.len() >= 32, "{} filler programs", fill.len());

    let e = Daemon::start_with(&lab, &["--mode", "drop"])
        .expect_err("drop mode must not run without reply recognition");
    let text = format!("{e:#}");
    assert!(
        text.contains("exited during start-up")
            && text.contains("attaching the TC egress program")
            && text.contains("--mode monitor"),
        "a clear error: {text}"
    );
    assert!(!text.contains("exit status: 0"), "a failing status: {text}");
    assert!(
        !lab.target_has_xdp().unwrap(),
        "the XDP program was detached again"
    );

    // A dry run goes on with the warning, as monitor mode does (both: egress not required).
    let daemon = Daemon::start_with(&lab, &["--mode", "drop", "--dry-run"])
        .expect("a dry run goes on without the egress program");
    assert!(
        daemon.log().contains("attaching the egress program"),
        "{}",
        daemon.log()
    );
    drop(daemon);
    drop(fill);
}

/// A SYN scan of `ports` forged from `src`, sent from the attacker's namespace.
fn forged_scan(lab: &Lab, src: Ipv4Addr, ports: std::ops::Range<u16>) {
    let target = lab.target_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        Forger::new()?.syn_scan(src, target, ports, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap();
    assert!(sent >= 21, "{sent} forged probes");
}

#[test]
fn protected_peers_follow_resolv_conf_and_address_changes_without_a_reload() {
    let lab = lab();
    let dir = TempDir::new("trust-live").unwrap();
    let resolv = write_file(&dir, "resolv.conf", b"# no resolver yet\n");
    let daemon = drop_daemon(&lab, &dir, &format!("resolv_conf = [\"{resolv}\"]\n"));

    // A resolver appears in resolv.conf: protected within a few seconds, no SIGHUP.
    let resolver = lab.benign_v4();
    std::fs::write(&resolv, format!("nameserver {resolver}\n")).unwrap();
    assert!(
        poll_until(Duration::from_secs(6), Duration::from_millis(100), || {
            daemon.log().contains(&format!("resolvers [{resolver}/32]"))
        }),
        "the new resolver is noticed; log:\n{}",
        daemon.log()
    );
    forged_scan(&lab, resolver, 3000..3030);
    let alert = expect_alert(&daemon, &resolver.to_string(), &["port_scan"], "resolver");
    assert_eq!(alert["not_blocked"], "resolver", "{alert}");

    // An address is added to the target: protected at once (a netlink notification).
    let added = Ipv4Addr::new(10, lab.k(), 0, 50);
    lab.target
        .ip(&["addr", "add", &format!("{added}/24"), "dev", &lab.target_if])
        .unwrap();
    assert!(
        poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
            daemon.log().contains(&format!("{added}/32"))
        }),
        "the new address is noticed; log:\n{}",
        daemon.log()
    );
    forged_scan(&lab, added, 3100..3130);
    let alert = expect_alert(&daemon, &added.to_string(), &["port_scan"], "own address");
    assert_eq!(alert["not_blocked"], "own_address", "{alert}");
}

/// The daemon in drop mode with an empty resolver file, so the lab's peers are protected by
/// evidence only.
fn drop_daemon_without_resolvers<'lab>(lab: &'lab Lab, dir: &TempDir) -> Daemon<'lab> {
    let resolv = write_file(dir, "resolv.conf", b"# no resolver\n");
    drop_daemon(lab, dir, &format!("resolv_conf = [\"{resolv}\"]\n"))
}

#[test]
fn forged_scan_in_the_name_of_a_peer_that_answered_us_blocks_nothing() {
    let lab = lab();
    let dir = TempDir::new("trust-answered").unwrap();
    let daemon = drop_daemon_without_resolvers(&lab, &dir);
    // The target queries a UDP service and opens a TCP connection on the peer: both answer.
    let peer = lab.benign_v4();
    let udp = SocketAddr::from((peer, 5353));
    let dns = Service::udp(&lab.benign, udp).expect("the peer's UDP service");
    let tcp = Service::tcp(&lab.benign, peer.into(), &[SERVICE_PORT]).unwrap();
    assert_eq!(dns_answers(&lab, udp, 3), 3, "the peer answers");
    assert!(connects(
        lab.target.name(),
        SocketAddr::from((peer, SERVICE_PORT))
    ));

    forged_scan(&lab, peer, 3000..3040);
    let alert = expect_alert(&daemon, &peer.to_string(), &["port_scan"], "forged scan");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["not_blocked"], "answered_peer", "{alert}");
    assert_eq!(dns_answers(&lab, udp, 3), 3, "the peer still answers");

    // A real scanner, which answered nothing of ours, is still blocked.
    let (service, addr) = target_service(&lab);
    assert_real_scanner_blocked(&lab, &daemon, addr, "answered_peer");
    drop(service);
    drop(tcp);
    dns.stop().unwrap();
}

#[test]
fn forged_scan_from_another_hop_count_with_a_verified_clients_address_blocks_nothing() {
    let lab = lab();
    let dir = TempDir::new("trust-hops").unwrap();
    let daemon = drop_daemon_without_resolvers(&lab, &dir);
    let target = lab.target_v4();
    let (service, addr) = target_service(&lab);

    // The client (on the target's LAN: 0 hops) completes handshakes with the service; so does
    // the attacker, which will scan from its own position.
    assert!(connects(lab.benign.name(), addr), "the client is served");
    assert!(
        connects(lab.attacker.name(), addr),
        "the attacker is served"
    );
    assert!(
        poll_until(METRICS_WITHIN, Duration::from_millis(200), || {
            daemon
                .metrics()
                .is_ok_and(|m| sample(&m, "scanwatch_handshakes_verified_total") >= 2)
        }),
        "both handshakes are verified: {}",
        daemon.metrics().unwrap_or_default()
    );

    // 40 SYNs forged with the client's address, arriving with TTL 57: 7 hops away.
    let client = lab.benign_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        Forger::new()?.syn_scan_ttl(client, target, 3000..3040, 57, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap();
    assert_eq!(sent, 40);
    let alert = expect_alert(&daemon, &client.to_string(), &["port_scan"], "forged scan");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["not_blocked"], "suspected_spoof", "{alert}");
    assert_eq!(alert["hops"]["verified"], 0, "{alert}");
    assert_eq!(alert["hops"]["probes"][1], 7, "{alert}");
    let served = (0..20)
        .filter(|_| connects(lab.benign.name(), addr))
        .count();
    assert!(served >= 19, "the client keeps being served: {served}/20");

    // The attacker, verified at its own hop count, scanning from there: blocked.
    assert_real_scanner_blocked(&lab, &daemon, addr, "suspected_spoof");
    drop(service);
}

#[test]
fn forged_ack_scan_with_a_verified_clients_address_blocks_nothing() {
    let lab = lab();
    let dir = TempDir::new("trust-ack").unwrap();
    let daemon = drop_daemon_without_resolvers(&lab, &dir);
    let (service, addr) = target_service(&lab);

    // The client completes handshakes with the service (its SYNs after the first are tracked,
    // with their hop count, in the window the forged ACKs will fall in).
    let served = (0..3).filter(|_| connects(lab.benign.name(), addr)).count();
    assert_eq!(served, 3, "the client is served");
    assert!(
        poll_until(METRICS_WITHIN, Duration::from_millis(200), || {
            daemon
                .metrics()
                .is_ok_and(|m| sample(&m, "scanwatch_handshakes_verified_total") >= 1)
        }),
        "the client's handshake is verified: {}",
        daemon.metrics().unwrap_or_default()
    );

    // 14 bare ACKs to 14 closed ports, forged with the client's address from another hop
    // count (TTL 41): the target answers each with a RST to the client.
    let client = lab.benign_v4();
    let alert = ack_scan_alert(&lab, &daemon, client, 4000..4014, 41, "forged ACK scan");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["not_blocked"], "unverified_evidence", "{alert}");
    let served = (0..20)
        .filter(|_| connects(lab.benign.name(), addr))
        .count();
    assert_eq!(served, 20, "the client keeps being served");

    // A real ACK scan from an address that never completed a handshake: blocked.
    let attacker = lab.attacker_v4();
    let alert = ack_scan_alert(&lab, &daemon, attacker, 4100..4114, 64, "real ACK scan");
    assert_eq!(alert["action"], "block", "{alert}");
    assert_dropped(&lab, addr, "the real ACK scanner");
    let metrics = daemon.metrics().unwrap();
    assert!(
        sample(
            &metrics,
            "scanwatch_blocks_refused_total{reason=\"unverified_evidence\"}"
        ) >= 1,
        "{}",
        enforcement(&metrics)
    );
    drop(service);
}

/// Sends 14 bare ACKs from the attacker's namespace with source `from` at `ttl` to `ports` of
/// the target (closed: it answers each with a RST), and returns `from`'s ack_scan alert.
fn ack_scan_alert(
    lab: &Lab,
    daemon: &Daemon<'_>,
    from: Ipv4Addr,
    ports: std::ops::Range<u16>,
    ttl: u8,
    what: &str,
) -> Value {
    let target = lab.target_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        Forger::new()?.flag_scan_ttl(
            from,
            target,
            ports,
            tcp_flags::ACK,
            ttl,
            Duration::from_secs(5),
        )
    })
    .unwrap()
    .unwrap();
    assert_eq!(sent, 14, "{what}");
    expect_alert(daemon, &from.to_string(), &["ack_scan"], what)
}
