//! The daemon at rest with full maps (`cargo xtask bench --idle`): CPU, memory and
//! gauge freshness of the real `scanwatch run` with 100,000 tracked sources and a full flow map.
//!
//! A throwaway lab; the daemon watches the target's veth with `tracker_capacity` = the number of
//! sources. This process finds the daemon's maps through the XDP program attached to that
//! interface (its map ids), fills `TRACKER` and `FLOWS` itself, and then:
//!
//! 1. times each way of reading the maps for the gauges, in this process (thread CPU time per
//!    full read, median of [`READS`]): the per-key walk the daemon used before (aya's iterators,
//!    two system calls per entry), batch lookups (`scanwatch::kernel::batch`), and the kernel's
//!    per-CPU statistics (what counting inserts would read);
//! 2. samples the daemon's CPU (utime + stime from `/proc/PID/stat`) over `--seconds` (60 by
//!    default) and its `VmRSS`, with no traffic;
//! 3. sends a real SYN scan from a new source and times how long the tracked-sources gauge takes
//!    to count it (the insert counters), then removes entries from this process and times how
//!    long the gauges take to show it (the next full walk: removals are not counted, and only
//!    this bench removes entries; the kernel only evicts).
//!
//! Nothing is asserted: figures are printed for the README. Namespaces only; no traffic.

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd as _, OwnedFd},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use scanwatch_common::{
    addr::SourceKey,
    flow::{FlowKey, FlowState},
    maps,
    state::SourceState,
    stats::STATS_LEN,
};
use scanwatch_tests::{
    attached,
    daemon::Daemon,
    e2e::config_file,
    lab::Lab,
    metrics::sample,
    netns::in_netns,
    process::TempDir,
    procstat::{clock_ticks, cpu_ticks, vm_rss_kib},
    require_root, scanner,
};

/// One way of reading the maps for the gauges; returns the entries it met.
type Read = fn(&DaemonMaps) -> Result<usize>;

/// Full reads per method; the median is reported.
const READS: usize = 5;
/// A fixed 5 s walk interval (the shortest the daemon uses), for the "% of a core" column.
const WALK_INTERVAL_S: f64 = 5.0;
/// Entries removed to check the gauges' freshness.
const REMOVED: u32 = 1000;
/// How long a gauge may take to show a change before the bench gives up (the longest walk
/// interval is 60 s).
const FRESH_WITHIN: Duration = Duration::from_secs(90);

struct Args {
    sources: u32,
    seconds: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        sources: 100_000,
        seconds: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = |it: &mut dyn Iterator<Item = String>| {
            it.next()
                .with_context(|| format!("{arg} needs a value"))?
                .parse::<u64>()
                .with_context(|| format!("{arg} needs a number"))
        };
        match arg.as_str() {
            "--sources" => args.sources = u32::try_from(value(&mut it)?)?,
            "--seconds" => args.seconds = value(&mut it)?,
            other => bail!("unknown argument {other}; expected --sources N, --seconds N"),
        }
    }
    ensure!(
        args.sources >= 2 * REMOVED,
        "--sources must be at least {}",
        2 * REMOVED
    );
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon's maps, opened by id from this process.
struct DaemonMaps {
    tracker: HashMap<MapData, SourceKey, SourceState>,
    flows: HashMap<MapData, FlowKey, FlowState>,
    stats: PerCpuArray<MapData, u64>,
    flows_capacity: u32,
    /// The same maps, for batch reads (aya's typed maps do not lend their descriptor).
    tracker_fd: OwnedFd,
    flows_fd: OwnedFd,
}

fn run() -> Result<()> {
    require_root();
    let args = parse_args()?;
    let lab = Lab::new().context("building the lab")?;
    let dir = TempDir::new("idle-bench")?;
    let config = config_file(&dir, &format!("tracker_capacity = {}\n", args.sources));
    let daemon = Daemon::start_with(&lab, &["--config", &config]).context("starting the agent")?;
    let pid = daemon.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))?;
    ensure!(
        comm.trim() == "scanwatch",
        "pid {pid} is {comm:?}, not the daemon"
    );
    let mut m = open_maps(&lab)?;
    println!(
        "daemon pid {pid} ({}), tracker capacity {}, flow capacity {}",
        scanwatch_tests::daemon::daemon_binary()?.display(),
        args.sources,
        m.flows_capacity
    );
    let rss_before = vm_rss_kib(pid)?;

    let filled = Instant::now();
    fill(&mut m, args.sources)?;
    let (tracked, flows) = (count_batch_tracker(&m)?, count_batch_flows(&m)?);
    println!(
        "filled in {:.1}s: {tracked} sources, {flows} flows present",
        filled.elapsed().as_secs_f64()
    );
    let first = wait_gauges(&daemon, tracked, flows)?;
    println!(
        "gauges show them {:.1}s after the fill ended",
        first.as_secs_f64()
    );

    println!("\nreading the maps once for the gauges, CPU ms in this process (median of {READS}):");
    println!(
        "{:<44} {:>8} {:>11} {:>11} {:>11}",
        "method", "ms/read", "% @5s", "% @30s", "% @60s"
    );
    let methods: [(&str, Read); 5] = [
        ("per-key walk, tracker (before)", count_keyed_tracker),
        ("per-key walk, flows (before)", count_keyed_flows),
        ("batch lookups, tracker (now)", count_batch_tracker),
        ("batch lookups, flows (now)", count_batch_flows),
        ("kernel counters: read STATS (72 per-CPU)", read_stats),
    ];
    for (name, method) in methods {
        let ms = median_cpu_ms(|| method(&m))?;
        println!(
            "{name:<44} {ms:>8.2} {:>10.3}% {:>10.3}% {:>10.3}%",
            ms / 10.0 / WALK_INTERVAL_S,
            ms / 10.0 / 30.0,
            ms / 10.0 / 60.0
        );
    }

    println!("\nthe daemon at rest for {}s (no traffic):", args.seconds);
    let tick = clock_ticks()?;
    let (cpu0, t0) = (cpu_ticks(pid)?, Instant::now());
    let mut rss_max = vm_rss_kib(pid)?;
    while t0.elapsed() < Duration::from_secs(args.seconds) {
        thread::sleep(Duration::from_secs(1));
        rss_max = rss_max.max(vm_rss_kib(pid)?);
    }
    let (cpu1, wall) = (cpu_ticks(pid)?, t0.elapsed().as_secs_f64());
    let (utime, stime) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
    let last_walk_cpu = metric_value(&daemon.metrics()?, "scanwatch_map_walk_cpu_seconds");
    #[expect(clippy::cast_precision_loss, reason = "tick counts are small")]
    let share = |ticks: u64| ticks as f64 / tick / wall * 100.0;
    println!(
        "CPU {:.2}% of a core (user {:.2}%, system {:.2}%) over {wall:.0}s",
        share(utime + stime),
        share(utime),
        share(stime)
    );
    println!(
        "the daemon's last full walk took {:.1} ms of CPU (next one {:.0} s later)",
        last_walk_cpu * 1e3,
        (last_walk_cpu * 200.0).clamp(5.0, 60.0)
    );
    println!(
        "VmRSS {:.1} MiB before the fill, {:.1} MiB max at rest",
        rss_before / 1024.0,
        rss_max / 1024.0
    );

    // A real scanner through the data path: its insert reaches the gauge through the counters.
    let before = sample(&daemon.metrics()?, "scanwatch_tracked_sources");
    let target = lab.target_v4();
    let sent = in_netns(lab.attacker.name(), move || {
        scanner::syn_scan(target, 1..=20, Duration::from_secs(10))
    })??;
    let scanned = Instant::now();
    loop {
        let now = sample(&daemon.metrics()?, "scanwatch_tracked_sources");
        if now > before {
            println!(
                "\na real SYN scan ({sent} probes) from a new source: tracked-sources gauge \
                 {before} -> {now} {:.1}s after the scan (insert counters, no walk)",
                scanned.elapsed().as_secs_f64()
            );
            break;
        }
        ensure!(
            scanned.elapsed() < FRESH_WITHIN,
            "the gauge stayed at {before} after a scan from a new source"
        );
        thread::sleep(Duration::from_millis(100));
    }

    let removed = Instant::now();
    remove(&mut m, args.sources);
    let (tracked, flows) = (count_batch_tracker(&m)?, count_batch_flows(&m)?);
    wait_gauges(&daemon, tracked, flows)?;
    println!(
        "removed {REMOVED} sources and {REMOVED} flows from this process: gauges exact \
         ({tracked}, {flows}) {:.1}s later (at the next full walk)",
        removed.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The daemon's maps, through the map ids of the XDP program on the target interface.
fn open_maps(lab: &Lab) -> Result<DaemonMaps> {
    let (ns, iface) = (lab.target.name(), lab.target_if.as_str());
    let tracker = attached::tracker(ns, iface)?;
    let flows = attached::flows(ns, iface)?;
    let stats = PerCpuArray::try_from(Map::PerCpuArray(attached::map(ns, iface, maps::STATS)?.0))?;
    Ok(DaemonMaps {
        tracker: tracker.map,
        flows: flows.map,
        stats,
        flows_capacity: flows.capacity,
        tracker_fd: tracker.fd,
        flows_fd: flows.fd,
    })
}

fn source(i: u32) -> SourceKey {
    SourceKey::from_ipv4(Ipv4Addr::from(0x0a00_0000 + i).octets())
}

fn flow(i: u32) -> FlowKey {
    FlowKey {
        local: SourceKey::from_ipv4([10, 255, 0, 1]),
        remote: SourceKey::from_ipv4(Ipv4Addr::from(0x0b00_0000 + (i >> 8)).octets()),
        local_port: 40_000,
        remote_port: (i & 0xff) as u16,
        proto: 6,
    }
}

/// `sources` tracker entries (source i with i % 97 SYN probes, so the top list has work) and
/// as many flows as the flow map holds, all written by this process.
fn fill(m: &mut DaemonMaps, sources: u32) -> Result<()> {
    // SAFETY: `SourceState` is `Pod` (plain integers and arrays): all-zero bytes are a valid
    // value, the state of a source whose window has not started.
    let mut state: SourceState = unsafe { std::mem::zeroed() };
    for i in 0..sources {
        state.probes[0] = i % 97;
        m.tracker.insert(source(i), state, 0)?;
    }
    let now = scanwatch::kernel::clock::Clock::monotonic_ns();
    let value = FlowState {
        last_seen_ns: now,
        packets: 1,
        ..FlowState::default()
    };
    for i in 0..m.flows_capacity {
        m.flows.insert(flow(i), value, 0)?;
    }
    Ok(())
}

/// Removes [`REMOVED`] sources and flows.
fn remove(m: &mut DaemonMaps, sources: u32) {
    for i in sources - REMOVED..sources {
        m.tracker.remove(&source(i)).ok();
    }
    for i in m.flows_capacity - REMOVED..m.flows_capacity {
        m.flows.remove(&flow(i)).ok();
    }
}

/// How long until the daemon's gauges show exactly `tracked` sources and `flows` flows.
fn wait_gauges(daemon: &Daemon<'_>, tracked: usize, flows: usize) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let text = daemon.metrics()?;
        let (t, f) = (
            sample(&text, "scanwatch_tracked_sources"),
            sample(&text, "scanwatch_flows"),
        );
        if t == tracked as u64 && f == flows as u64 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > FRESH_WITHIN {
            bail!("gauges show {t} sources, {f} flows; expected {tracked}, {flows}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an unlabelled sample `name` (0 when absent).
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "one signature for every method of the table"
)]
fn count_keyed_tracker(m: &DaemonMaps) -> Result<usize> {
    // What the daemon did before: aya's iterator, then the probes of each.
    let mut n = 0;
    let mut most = 0u64;
    for (_, state) in m.tracker.iter().filter_map(Result::ok) {
        most = most.max(state.probes.iter().map(|p| u64::from(*p)).sum());
        n += 1;
    }
    std::hint::black_box(most);
    Ok(n)
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "one signature for every method of the table"
)]
fn count_keyed_flows(m: &DaemonMaps) -> Result<usize> {
    Ok(m.flows.keys().filter_map(Result::ok).count())
}

fn count_batch_tracker(m: &DaemonMaps) -> Result<usize> {
    let mut n = 0;
    let mut most = 0u64;
    scanwatch::kernel::batch::for_each(
        m.tracker_fd.as_fd(),
        |keys: &[SourceKey], states: &[SourceState]| {
            n += keys.len();
            for state in states {
                most = most.max(state.probes.iter().map(|p| u64::from(*p)).sum());
            }
        },
    )?;
    std::hint::black_box(most);
    Ok(n)
}

fn count_batch_flows(m: &DaemonMaps) -> Result<usize> {
    let mut n = 0;
    scanwatch::kernel::batch::for_each(m.flows_fd.as_fd(), |keys: &[FlowKey], _: &[FlowState]| {
        n += keys.len();
    })?;
    Ok(n)
}

fn read_stats(m: &DaemonMaps) -> Result<usize> {
    let mut sum = 0u64;
    for slot in 0..STATS_LEN {
        sum = sum.wrapping_add(m.stats.get(&slot, 0)?.iter().sum::<u64>());
    }
    std::hint::black_box(sum);
    Ok(STATS_LEN as usize)
}

/// The median CPU time (this thread, ms) of [`READS`] runs of `f`.
fn median_cpu_ms(mut f: impl FnMut() -> Result<usize>) -> Result<f64> {
    let mut ms = Vec::with_capacity(READS);
    for _ in 0..READS {
        let start = thread_cpu_ns();
        std::hint::black_box(f()?);
        #[expect(clippy::cast_precision_loss, reason = "durations are small")]
        ms.push((thread_cpu_ns() - start) as f64 / 1e6);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[READS / 2])
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
