//! Under a flood the agent says which guarantee of its fixed-size state it lost, once, in its
//! log and in `scanwatch_flood_guarantee_lost`, and says so again when the flood is over: a
//! spoofed UDP flood, every datagram from a new source, outruns the admission filter's hold
//! (`kernel::pressure`).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    e2e::{daemon_with_config, lab},
    metrics::metric_sample,
    netns::in_netns,
    process::TempDir,
    scanner,
};

/// A short window, so the flood watch's period (the window, up to a minute) is short: the
/// admission state is lost at 65,536 / 10 ≈ 6,554 new sources a second.
const CONFIG: &str = "window = \"10s\"\n";
/// The flood lasts two periods, so one whole period lies inside it.
const FLOOD_FOR: Duration = Duration::from_secs(22);
/// Datagrams a second: twice what ends the guarantee, and what a veth delivers whole.
const FLOOD_RATE: u32 = 15_000;
/// Datagrams the flood sends at most.
const FLOOD_AT_MOST: usize = 3_000_000;
/// How long the agent gets to say the guarantee holds again: one period after the flood, and
/// the next reading.
const CALM_WITHIN: Duration = Duration::from_secs(25);

const LOST: &str = "under flood: the admission state";
const KEPT: &str = "the admission state keeps its guarantee again";

fn lost_gauge(text: &str, state: &str) -> Option<f64> {
    metric_sample(
        text,
        &format!("scanwatch_flood_guarantee_lost{{state=\"{state}\"}}"),
    )
}

#[test]
fn a_spoofed_flood_ends_the_admission_guarantee_and_the_agent_says_so_once() {
    let lab = lab();
    let dir = TempDir::new("flood").unwrap();
    let daemon = daemon_with_config(&lab, &dir, CONFIG);
    // The spoofed sources: 2^20 addresses of a /12 the host reaches through the attacker,
    // which does not forward, so the host's port unreachables end there. None repeats, so
    // none is admitted.
    let spoofed = Ipv4Addr::new(172, 16, 0, 0);
    lab.target
        .ip(&[
            "route",
            "add",
            &format!("{spoofed}/12"),
            "via",
            &lab.attacker_v4().to_string(),
        ])
        .unwrap();
    let target = lab.target_v4();
    let flood = in_netns(lab.attacker.name(), move || {
        scanner::spoofed_udp_flood(
            spoofed,
            1 << 20,
            target,
            9,
            b"flood",
            FLOOD_AT_MOST,
            FLOOD_FOR,
            Some(FLOOD_RATE),
        )
    })
    .unwrap()
    .expect("the spoofed flood");
    let during = daemon.metrics().unwrap();
    let rate = flood.rate();
    let deferred = metric_sample(&during, "scanwatch_admission_deferred_total").unwrap_or(0.0);
    println!(
        "flood: {} datagrams in {:.1?} ({rate:.0}/s); admission churn ratio {:?}, \
         scanwatch_admission_deferred_total {}",
        flood.sent,
        flood.elapsed,
        metric_sample(&during, "scanwatch_state_churn_ratio{state=\"admission\"}"),
        deferred,
    );
    assert!(
        deferred > 6_554.0 * 15.0,
        "{deferred} first probes reached the filter in {:.1?}, too few to outrun its hold: \
         nothing to test",
        flood.elapsed
    );
    let log = daemon.log();
    assert_eq!(
        log.matches(LOST).count(),
        1,
        "one line when the guarantee is lost:\n{log}"
    );
    assert_eq!(lost_gauge(&during, "admission"), Some(1.0), "{during}");
    // One packet per source never enters the tracker: its guarantee holds.
    assert_eq!(lost_gauge(&during, "tracker"), Some(0.0));

    let deadline = Instant::now() + CALM_WITHIN;
    let after = daemon.wait_for_metrics(CALM_WITHIN, |t| lost_gauge(t, "admission") == Some(0.0));
    assert_eq!(
        lost_gauge(&after, "admission"),
        Some(0.0),
        "still lost {CALM_WITHIN:?} after the flood"
    );
    while !daemon.log().contains(KEPT) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = daemon.log();
    assert_eq!(log.matches(KEPT).count(), 1, "{log}");
    assert_eq!(log.matches(LOST).count(), 1, "{log}");
}
