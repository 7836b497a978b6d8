//! The steady traffic of the soak, on threads inside the lab's namespaces, each paced to a
//! bounded rate and stopped (and joined) when [`Load`] drops:
//!
//! - established TCP: echo round trips on long-lived connections from the benign host to a
//!   server on the target, and short connections the target opens to a server on the benign
//!   host (each a flow in the agent's flow map);
//! - a one-packet spoofed UDP flood from the attacker (every datagram from a new source: the
//!   admission filter's path);
//! - a two-packet spoofed UDP flood (each source sends twice, a fraction of a second apart, so
//!   each is admitted to the tracker: the path that churns it);
//! - malformed frames from the attacker's addresses ([`crate::frames`]).
//!
//! The spoofed sources come from ranges the target routes back through the attacker, which
//! does not forward: the target's answers end there.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use scanwatch_tests::{
    lab::Lab,
    netns::{Netns, spawn_in_netns},
    scanner,
};

use crate::frames::{self, FrameSender};

/// The one-packet flood's sources: a /10 (4,194,304 addresses), so none repeats within the
/// detection window (5 min) below 13,900 datagrams a second.
const SINGLE_SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 64, 0, 0), 10);
/// The two-packet flood's sources: a /12 (1,048,576), one pair each until the range wraps
/// (after 17 min at 2,000 datagrams a second; the tracker has long evicted them by then).
const PAIR_SOURCES: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 16, 0, 0), 12);
/// Sources per call of the one-packet flood (it steps through its range call by call).
const SINGLE_CHUNK: u32 = 4096;
/// Sources per pair burst: each sends once, then again, 256 datagrams later.
const PAIR_CHUNK: u32 = 256;
/// Closed UDP ports on the target the floods aim at.
const SINGLE_PORT: u16 = 9;
const PAIR_PORT: u16 = 19;
/// The target's echo server (long-lived connections) and the benign host's (short ones).
const TARGET_PORT: u16 = 7000;
const BENIGN_PORT: u16 = 7001;
/// Bytes per echo round trip.
const MESSAGE: usize = 256;
/// How long a blocked socket call waits before a worker looks at the stop flag again.
const POLL: Duration = Duration::from_millis(200);

/// Rates of the mix; every one is bounded.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Long-lived connections from the benign host to the target.
    pub connections: u32,
    /// Echo round trips a second on each.
    pub round_trips: u32,
    /// Short connections a second the target opens to the benign host.
    pub new_connections: u32,
    /// One-packet flood datagrams a second.
    pub single_pps: u32,
    /// Two-packet flood datagrams a second (half as many sources).
    pub pair_pps: u32,
    /// Malformed frames a minute.
    pub malformed_per_minute: u32,
}

/// What the load has sent so far.
#[derive(Debug, Default)]
pub struct Sent {
    pub round_trips: AtomicU64,
    pub reconnects: AtomicU64,
    pub new_connections: AtomicU64,
    pub single: AtomicU64,
    pub pairs: AtomicU64,
    pub malformed: AtomicU64,
}

/// The running load; stopped and joined on drop.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub sent: Arc<Sent>,
    workers: Vec<(&'static str, thread::JoinHandle<Result<Result<()>>>)>,
}

impl Load {
    /// Routes the spoofed ranges back through the attacker, starts the servers, then every
    /// worker.
    pub fn start(lab: &Lab, mix: Mix) -> Result<Self> {
        for (net, len) in [SINGLE_SOURCES, PAIR_SOURCES] {
            lab.target.ip(&[
                "route",
                "add",
                &format!("{net}/{len}"),
                "via",
                &lab.attacker_v4().to_string(),
            ])?;
        }
        let mut load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(Sent::default()),
            workers: Vec::new(),
        };
        let target = SocketAddr::from((lab.target_v4(), TARGET_PORT));
        let benign = SocketAddr::from((lab.benign_v4(), BENIGN_PORT));
        load.server(&lab.target, "target echo server", target)?;
        load.server(&lab.benign, "benign echo server", benign)?;
        for _ in 0..mix.connections {
            let (stop, sent) = (load.stop.clone(), load.sent.clone());
            load.spawn(&lab.benign, "established client", move || {
                established(target, mix.round_trips, &stop, &sent)
            });
        }
        if mix.new_connections > 0 {
            let (stop, sent) = (load.stop.clone(), load.sent.clone());
            load.spawn(&lab.target, "new connections", move || {
                short_connections(benign, mix.new_connections, &stop, &sent)
            });
        }
        let dst = lab.target_v4();
        if mix.single_pps > 0 {
            let (stop, sent) = (load.stop.clone(), load.sent.clone());
            load.spawn(&lab.attacker, "one-packet flood", move || {
                single_flood(dst, mix.single_pps, &stop, &sent)
            });
        }
        if mix.pair_pps > 0 {
            let (stop, sent) = (load.stop.clone(), load.sent.clone());
            load.spawn(&lab.attacker, "two-packet flood", move || {
                pair_flood(dst, mix.pair_pps, &stop, &sent)
            });
        }
        if mix.malformed_per_minute > 0 {
            let mac = |ns: &Netns, dev: &str| -> Result<[u8; 6]> {
                let out = ns.ip(&["-j", "link", "show", "dev", dev])?;
                let links: serde_json::Value = serde_json::from_str(&out)?;
                links[0]["address"]
                    .as_str()
                    .and_then(frames::parse_mac)
                    .with_context(|| format!("no MAC address for {dev}: {out}"))
            };
            // Sent out of the target's bridge port, not through the bridge: a host that loads
            // br_netfilter has the bridge drop IPv4 and IPv6 headers it finds malformed.
            let port = Lab::bridge_port(&lab.target_if);
            let src_mac = mac(&lab.attacker, &lab.attacker_if)?;
            let dst_mac = mac(&lab.target, &lab.target_if)?;
            let frames = frames::malformed(
                lab.attacker_v4(),
                lab.target_v4(),
                lab.attacker_v6(),
                lab.target_v6(),
            );
            let per_second = f64::from(mix.malformed_per_minute) / 60.0;
            let (stop, sent) = (load.stop.clone(), load.sent.clone());
            load.spawn(&lab.switch, "malformed frames", move || {
                let sender = FrameSender::new(&port, src_mac, dst_mac)
                    .with_context(|| format!("an AF_PACKET socket on {port}"))?;
                let started = Instant::now();
                for (n, frame) in (0u64..).zip(frames.iter().cycle()) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    pace(started, n, per_second);
                    sender
                        .send(&frame.bytes)
                        .with_context(|| format!("sending the {} frame", frame.name))?;
                    sent.malformed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
        }
        Ok(load)
    }

    /// Runs `work` on a thread inside `ns`.
    fn spawn(
        &mut self,
        ns: &Netns,
        name: &'static str,
        work: impl FnOnce() -> Result<()> + Send + 'static,
    ) {
        self.workers.push((name, spawn_in_netns(ns.name(), work)));
    }

    /// An echo server on `addr` inside `ns` (bound before this returns), a thread per
    /// connection.
    fn server(&mut self, ns: &Netns, name: &'static str, addr: SocketAddr) -> Result<()> {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let stop = self.stop.clone();
        self.spawn(ns, name, move || {
            let listener = TcpListener::bind(addr).and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(l)
            });
            let _ = bound_tx.send(listener.as_ref().map(drop).map_err(ToString::to_string));
            let listener = listener.with_context(|| format!("binding {addr}"))?;
            let mut handlers: Vec<thread::JoinHandle<()>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stop = stop.clone();
                        handlers.push(thread::spawn(move || echo(stream, &stop)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e).context("accepting a connection"),
                }
                handlers.retain(|h| !h.is_finished());
            }
            for h in handlers {
                let _ = h.join();
            }
            Ok(())
        });
        match bound_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("{name} on {addr}: {e}"),
            Err(_) => bail!("{name} on {addr} did not start"),
        }
    }

    /// The error of the first worker that has stopped by itself: the load is no longer what
    /// the soak says it is.
    pub fn check(&mut self) -> Result<()> {
        let Some(at) = self.workers.iter().position(|(_, w)| w.is_finished()) else {
            return Ok(());
        };
        let (name, worker) = self.workers.remove(at);
        let result = worker
            .join()
            .map_err(|_| anyhow!("it panicked"))
            .and_then(|r| r.context("entering its namespace")?);
        match result {
            Ok(()) => bail!("the load's {name} stopped"),
            Err(e) => Err(e.context(format!("the load's {name} stopped"))),
        }
    }

    /// Stops every worker and joins it; the first error of one.
    pub fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut first = Ok(());
        for (name, worker) in self.workers.drain(..) {
            let result = worker
                .join()
                .map_err(|_| anyhow!("{name} panicked"))
                .and_then(|r| r.with_context(|| format!("{name}: entering its namespace"))?)
                .with_context(|| format!("the load's {name}"));
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Sleeps until `done` things at `per_second` since `started` are due, if that is ahead.
fn pace(started: Instant, done: u64, per_second: f64) {
    let due = started + Duration::from_secs_f64(done as f64 / per_second);
    if let Some(ahead) = due.checked_duration_since(Instant::now()) {
        thread::sleep(ahead);
    }
}

/// Echoes what `stream` sends until it closes or the load stops.
fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// One connection to `server`, kept busy with `rate` echo round trips a second; reconnects
/// when it breaks.
fn established(server: SocketAddr, rate: u32, stop: &AtomicBool, sent: &Sent) -> Result<()> {
    let message = [0x5a_u8; MESSAGE];
    let mut answer = [0u8; MESSAGE];
    while !stop.load(Ordering::Relaxed) {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))
            .with_context(|| format!("connecting to {server}"))?;
        // Long enough for a loaded machine; the stop flag waits at most this long.
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_nodelay(true)?;
        let started = Instant::now();
        for n in 0u64.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            pace(started, n, f64::from(rate));
            if stream.write_all(&message).is_err() || stream.read_exact(&mut answer).is_err() {
                sent.reconnects.fetch_add(1, Ordering::Relaxed);
                thread::sleep(POLL);
                break;
            }
            sent.round_trips.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// `rate` short connections a second to `server`: connect, one echo, close.
fn short_connections(server: SocketAddr, rate: u32, stop: &AtomicBool, sent: &Sent) -> Result<()> {
    let started = Instant::now();
    let mut answer = [0u8; 16];
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        pace(started, n, f64::from(rate));
        let Ok(mut stream) = TcpStream::connect_timeout(&server, Duration::from_secs(1)) else {
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        if stream.write_all(b"soak: short conn").is_ok() && stream.read_exact(&mut answer).is_ok() {
            sent.new_connections.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The first address of chunk `index` of `chunk` addresses in the range `(net, len)`, wrapping.
fn chunk_base((net, len): (Ipv4Addr, u8), chunk: u32, index: u64) -> Ipv4Addr {
    let chunks = (1u64 << (32 - len)) / u64::from(chunk);
    Ipv4Addr::from(u32::from(net) + (index % chunks) as u32 * chunk)
}

/// The one-packet flood: `rate` datagrams a second to `dst`, each from a new source.
fn single_flood(dst: Ipv4Addr, rate: u32, stop: &AtomicBool, sent: &Sent) -> Result<()> {
    let mut flood = Flood::new(rate);
    for index in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = chunk_base(SINGLE_SOURCES, SINGLE_CHUNK, index);
        let n = flood.send(base, SINGLE_CHUNK, dst, SINGLE_PORT)?;
        sent.single.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

/// The two-packet flood: `rate` datagrams a second to `dst`, in bursts of [`PAIR_CHUNK`]
/// sources that each send once and then again, a burst later.
fn pair_flood(dst: Ipv4Addr, rate: u32, stop: &AtomicBool, sent: &Sent) -> Result<()> {
    let mut flood = Flood::new(rate);
    for index in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = chunk_base(PAIR_SOURCES, PAIR_CHUNK, index);
        for _ in 0..2 {
            let n = flood.send(base, PAIR_CHUNK, dst, PAIR_PORT)?;
            sent.pairs.fetch_add(n, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// A spoofed flood sent chunk by chunk ([`scanner::spoofed_udp_flood`] paces each call from its
/// own start), held to one rate over all of them.
struct Flood {
    rate: u32,
    started: Instant,
    sent: u64,
}

impl Flood {
    fn new(rate: u32) -> Self {
        Self {
            rate,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// One datagram from each of the `span` addresses at `base` to `dst:port`, when due; how
    /// many were sent.
    fn send(&mut self, base: Ipv4Addr, span: u32, dst: Ipv4Addr, port: u16) -> Result<u64> {
        pace(self.started, self.sent, f64::from(self.rate));
        let budget = Duration::from_secs_f64(2.0 * f64::from(span) / f64::from(self.rate) + 1.0);
        let report = scanner::spoofed_udp_flood(
            base,
            span,
            dst,
            port,
            b"soak",
            span as usize,
            budget,
            Some(self.rate),
        )
        .with_context(|| format!("a spoofed flood from {base}/{}", 32 - span.trailing_zeros()))?;
        self.sent += report.sent as u64;
        Ok(report.sent as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_step_through_their_range_and_wrap() {
        let range = (Ipv4Addr::new(172, 16, 0, 0), 12);
        assert_eq!(chunk_base(range, 256, 0), Ipv4Addr::new(172, 16, 0, 0));
        assert_eq!(chunk_base(range, 256, 1), Ipv4Addr::new(172, 16, 1, 0));
        assert_eq!(chunk_base(range, 256, 4095), Ipv4Addr::new(172, 31, 255, 0));
        assert_eq!(chunk_base(range, 256, 4096), Ipv4Addr::new(172, 16, 0, 0));
    }
}
