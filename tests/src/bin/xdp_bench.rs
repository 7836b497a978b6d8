//! Data-path benchmark (XDP ingress and TC egress) under `BPF_PROG_TEST_RUN` (run it with
//! `cargo xtask bench`).
//!
//! Each case loads a program, primes its maps, and times one frame: ns/packet is the kernel's
//! average duration over [`REPEAT`] runs, the median of [`RUNS`] calls. Next to every call the
//! empty program of the same hook (XDP or TC) runs on the same frame, so the floor (the test-run loop's own cost) shares
//! the case's drift; the ratio case/floor is the number to compare across machines. Targets are
//! printed for reference and never asserted.
//!
//! The process pins itself to CPU 0: `BPF_PROG_TEST_RUN` runs the program on the calling CPU.
//! Results go to `target/bench/xdp.json`. Arguments filter cases by name (substring).
//!
//! XDP cases also time the reference program (a minimal per-source counter: one LRU lookup or
//! insert keyed by the source, one increment) on the same frame, spoofed like the case when the
//! case spoofs. The second ratio, the case's cost over the floor divided by the reference's, says
//! how close a path is to the least a per-source tracker can cost.
//!
//! To add a case, write a `fn() -> Result<Prepared>` and list it in [`CASES`].

use std::{
    fmt::Write as _,
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};
use rand::Rng as _;
use scanwatch_common::{
    addr::SourceKey,
    block::{BLOCK_NOTE_LEN, BlockEntry, BlockReason},
    config::{FLAG_DROP, FLAG_NO_ADMISSION, KernelConfig},
    distinct::bits_for_count,
    event::DetectionKind,
    maps::TRACKER_CAPACITY,
    proto::IPPROTO_TCP,
    web::DEFAULT_WEB_PORTS,
};
use scanwatch_tests::{
    harness::{Harness, Object, XDP_DROP, XDP_PASS},
    loopback::Connection,
    packet::{PacketBuilder, tcp_flags},
};

/// Program runs per `BPF_PROG_TEST_RUN` call.
const REPEAT: u32 = 1_000_000;
/// Calls per case (and per floor); the median is reported.
const RUNS: usize = 5;

const SRC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SRC_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10);
const DST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);

/// One benchmark case.
struct Case {
    name: &'static str,
    /// Target for the ratio to the floor; informational only. `None`: a baseline to compare
    /// against, not a goal.
    target: Option<f64>,
    /// Loads and primes the program; returns it with the frame to time.
    prepare: fn() -> Result<Prepared>,
}

const CASES: &[Case] = &[
    Case {
        name: "established_tcp",
        target: Some(1.5),
        prepare: established_tcp,
    },
    Case {
        name: "established_drop_mode",
        target: Some(2.0),
        prepare: established_drop_mode,
    },
    Case {
        name: "handshake_ack_check",
        target: None,
        prepare: handshake_ack_check,
    },
    Case {
        name: "established_tcp_web_ports",
        target: None,
        prepare: established_tcp_web_ports,
    },
    Case {
        name: "web_port_ack",
        target: None,
        prepare: web_port_ack,
    },
    Case {
        name: "web_request_sampled_connection",
        target: None,
        prepare: web_request_sampled_connection,
    },
    Case {
        name: "web_request_new_connection",
        target: None,
        prepare: web_request_new_connection,
    },
    Case {
        name: "web_request_forged",
        target: None,
        prepare: web_request_forged,
    },
    Case {
        name: "tracked_syn",
        target: Some(2.5),
        prepare: tracked_syn,
    },
    Case {
        name: "tracked_syn_new_port",
        target: None,
        prepare: tracked_syn_new_port,
    },
    Case {
        name: "syn_long_distributed",
        target: None,
        prepare: tracked_syn_long_distributed,
    },
    Case {
        name: "syn_distributed_ports",
        target: None,
        prepare: tracked_syn_distributed_ports,
    },
    Case {
        name: "spoofed_pairs_new_ports",
        target: None,
        prepare: spoofed_pairs_new_ports,
    },
    Case {
        name: "spoofed_port_spray",
        target: None,
        prepare: spoofed_port_spray,
    },
    Case {
        name: "new_source_map_full",
        target: None,
        prepare: new_source_map_full,
    },
    Case {
        name: "spoofed_storm",
        target: Some(4.0),
        prepare: spoofed_storm,
    },
    Case {
        name: "ipv6_syn",
        target: Some(3.0),
        prepare: ipv6_syn,
    },
    Case {
        name: "ipv6_syn_wide",
        target: None,
        prepare: ipv6_syn_wide,
    },
    Case {
        name: "blocked_drop",
        target: Some(1.5),
        prepare: blocked_drop,
    },
    Case {
        name: "block_list_lpm",
        target: None,
        prepare: block_list_lpm,
    },
    Case {
        name: "block_list_unlisted",
        target: None,
        prepare: block_list_unlisted,
    },
    Case {
        name: "reply_udp",
        target: Some(2.5),
        prepare: reply_udp,
    },
    Case {
        name: "tc_egress_syn",
        target: Some(2.5),
        prepare: tc_egress_syn,
    },
    Case {
        name: "tc_egress_syn_ack_drop",
        target: None,
        prepare: tc_egress_syn_ack_drop,
    },
    Case {
        name: "tc_egress_established",
        target: Some(1.5),
        prepare: tc_egress_established,
    },
    Case {
        name: "tc_egress_udp_answer",
        target: Some(2.5),
        prepare: tc_egress_udp_answer,
    },
    Case {
        name: "udp_probe_tracked",
        target: None,
        prepare: udp_probe_tracked,
    },
    Case {
        name: "spoofed_udp_storm",
        target: None,
        prepare: spoofed_udp_storm,
    },
    Case {
        name: "fin_ack_no_flow",
        target: None,
        prepare: fin_ack_no_flow,
    },
    Case {
        name: "tc_egress_ack_reset",
        target: None,
        prepare: tc_egress_ack_reset,
    },
    Case {
        name: "protocol_probe",
        target: None,
        prepare: protocol_probe,
    },
    Case {
        name: "sctp_init",
        target: None,
        prepare: sctp_init,
    },
];

/// Cost targets between two cases of the same run: `case` at most `max` × `base`.
const RELATIONS: &[(&str, &str, f64)] = &[
    ("block_list_lpm", "blocked_drop", 2.0),
    ("block_list_unlisted", "blocked_drop", 2.0),
    ("established_drop_mode", "established_tcp", 1.5),
    ("established_tcp_web_ports", "established_tcp", 1.1),
];

/// Targets for (case − floor) / (reference − floor) in one run (see docs/performance.md).
const REFERENCE_TARGETS: &[(&str, f64)] = &[
    ("tracked_syn", 1.25),
    ("udp_probe_tracked", 1.5),
    ("established_tcp", 1.0),
    ("spoofed_storm", 1.25),
];

/// A program `BPF_PROG_TEST_RUN` can time: the XDP harness now, other hooks later.
trait Timed {
    /// Runs the program `repeat` times on `frame`; returns the verdict and the kernel's average
    /// duration per run in nanoseconds.
    fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64)>;
}

impl Timed for Harness {
    fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        self.run_repeat(frame, repeat)
    }
}

/// The TC egress program of a harness (its XDP program is not run).
struct Egress(Harness);

impl Timed for Egress {
    fn time(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, u64)> {
        let (action, ns) = self.0.run_egress_repeat(frame, repeat)?;
        Ok((action as u32, ns))
    }
}

/// TC_ACT_UNSPEC as the test run reports it.
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// A primed case, ready to time.
struct Prepared {
    program: Box<dyn Timed>,
    /// The empty program of the same hook: the floor.
    floor: Box<dyn Timed>,
    frame: Vec<u8>,
    /// The reference program on the same hook (XDP only); `None` for TC cases.
    reference: Option<Box<dyn Timed>>,
    /// The verdict every run must return.
    verdict: u32,
    /// What priming did, for the report.
    note: Option<String>,
}

impl Prepared {
    /// An XDP case, with the empty XDP program as its floor.
    fn xdp(program: Harness, frame: Vec<u8>, verdict: u32) -> Result<Self> {
        Ok(Self {
            program: Box::new(program),
            floor: Box::new(Harness::load_with(Object::Empty, None)?),
            reference: Some(Box::new(Harness::load_with(Object::Reference, None)?)),
            frame,
            verdict,
            note: None,
        })
    }

    /// A TC egress case, with the empty TC program as its floor.
    fn tc(program: Harness, frame: Vec<u8>) -> Result<Self> {
        Ok(Self {
            program: Box::new(Egress(program)),
            floor: Box::new(Egress(Harness::load_with(Object::Empty, None)?)),
            reference: None,
            frame,
            verdict: TC_ACT_UNSPEC,
            note: None,
        })
    }

    /// Compares the case with the reference under the same spoofed storm, its map filled by
    /// `prefill` runs first.
    fn with_spoofed_reference(mut self, prefill: u32) -> Result<Self> {
        let mut reference = Harness::load_with(Object::ReferenceSpoof, None)?;
        reference.run_repeat(&self.frame, prefill.max(1))?;
        self.reference = Some(Box::new(reference));
        Ok(self)
    }

    fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }
}

/// Established TCP (ACK only): the fast path, no map write.
fn established_tcp() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .tcp(443, tcp_flags::ACK)
        .build();
    Prepared::xdp(Harness::load()?, frame, XDP_PASS)
}

/// The product program with the daemon's default web ports.
fn web_harness() -> Result<Harness> {
    let mut h = Harness::load()?;
    h.set_config(&web_config())?;
    Ok(h)
}

/// The daemon's default web ports (`[web] ports`), as `KernelConfig::web_ports` holds them.
fn web_config() -> KernelConfig {
    let mut config = KernelConfig::default();
    config.web_ports[..DEFAULT_WEB_PORTS.len()].copy_from_slice(&DEFAULT_WEB_PORTS);
    config
}

const WEB_REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: target\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// `established_tcp` with the default web ports configured: a segment to another port pays
/// the port compares (every slot, as 443 is in none).
fn established_tcp_web_ports() -> Result<Prepared> {
    let h = web_harness()?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .tcp(443, tcp_flags::ACK)
        .build();
    Prepared::xdp(h, frame, XDP_PASS)
}

/// A bare ACK to a web port (a client acknowledging the answer): the sampling function runs
/// and finds no payload.
fn web_port_ack() -> Result<Prepared> {
    let h = web_harness()?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .tcp(80, tcp_flags::ACK)
        .build();
    Prepared::xdp(h, frame, XDP_PASS)
}

/// Real loopback connections to one listener, open for the whole bench: the program samples
/// only requests on connections the kernel holds established, and its socket lookup runs in
/// this process's network namespace. The listener's port is the one web port configured.
struct WebConnections {
    server_port: u16,
    client_ports: Vec<u16>,
}

/// Connections the new-connection case cycles through.
const WEB_CONNECTIONS: usize = 64;

static WEB_CONNECTIONS_OPEN: std::sync::OnceLock<WebConnections> = std::sync::OnceLock::new();

/// The bench's loopback connections, opened on first use and kept open until exit.
fn web_connections() -> &'static WebConnections {
    WEB_CONNECTIONS_OPEN.get_or_init(|| {
        let first = Connection::open(Ipv4Addr::LOCALHOST.into());
        let mut client_ports = vec![first.client_port];
        let mut open = vec![];
        for _ in 1..WEB_CONNECTIONS {
            let c = first.another();
            client_ports.push(c.client_port);
            open.push(c);
        }
        let server_port = first.server_port;
        // Held open for the bench's life: the program must find them established.
        std::mem::forget((first, open));
        WebConnections {
            server_port,
            client_ports,
        }
    })
}

/// A first request on loopback connection `n` (of [`WEB_CONNECTIONS`]).
fn loopback_request(n: u32) -> Vec<u8> {
    let c = web_connections();
    let client_port = c.client_ports[n as usize % c.client_ports.len()];
    PacketBuilder::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST)
        .src_port(client_port)
        .tcp(c.server_port, tcp_flags::PSH | tcp_flags::ACK)
        .payload(WEB_REQUEST)
        .build()
}

/// Sampling on the loopback listener's port.
fn loopback_web_harness() -> Result<Harness> {
    let mut h = Harness::load()?;
    let mut config = KernelConfig::default();
    config.web_ports[0] = web_connections().server_port;
    h.set_config(&config)?;
    Ok(h)
}

/// A request on a keep-alive connection already sampled: method check and one `WEB_SEEN`
/// lookup, no copy.
fn web_request_sampled_connection() -> Result<Prepared> {
    let mut h = loopback_web_harness()?;
    let frame = loopback_request(0);
    h.run(&frame)?;
    ensure!(
        h.web_samples().len() == 1,
        "the first request was not sampled"
    );
    Prepared::xdp(h, frame, XDP_PASS)
}

/// The first request of a connection: method check, the socket lookup that finds it
/// established, ring reserve, a bounded copy, submit and the `WEB_SEEN` write. Each run is its
/// own test run ([`EachConnection`]) on one of [`WEB_CONNECTIONS`] real connections, whose
/// `WEB_SEEN` entry is forgotten between runs (untimed); floor and reference are timed the
/// same way.
fn web_request_new_connection() -> Result<Prepared> {
    let h = loopback_web_harness()?;
    let frame = loopback_request(0);
    Ok(Prepared {
        program: Box::new(EachConnection::new(h, loopback_request, true)),
        floor: Box::new(EachConnection::new(
            Harness::load_with(Object::Empty, None)?,
            loopback_request,
            false,
        )),
        reference: Some(Box::new(EachConnection::new(
            Harness::load_with(Object::Reference, None)?,
            loopback_request,
            false,
        ))),
        frame,
        verdict: XDP_PASS,
        note: Some(format!(
            "{NEW_CONNECTIONS} single runs per call over {WEB_CONNECTIONS} real loopback connections"
        )),
    })
}

/// A forged first request: a new 4-tuple each run that no socket holds (a spoofed source), so
/// the socket lookup misses and nothing is sampled. Single runs, floor and reference timed the
/// same way.
fn web_request_forged() -> Result<Prepared> {
    let h = web_harness()?;
    let frame = new_connection_request(0);
    Ok(Prepared {
        program: Box::new(EachConnection::new(h, new_connection_request, false)),
        floor: Box::new(EachConnection::new(
            Harness::load_with(Object::Empty, None)?,
            new_connection_request,
            false,
        )),
        reference: Some(Box::new(EachConnection::new(
            Harness::load_with(Object::Reference, None)?,
            new_connection_request,
            false,
        ))),
        frame,
        verdict: XDP_PASS,
        note: Some(format!(
            "{NEW_CONNECTIONS} single runs per call, each a new spoofed source"
        )),
    })
}

/// Single runs per timing call of [`EachConnection`].
const NEW_CONNECTIONS: u16 = 2000;

/// A first request from spoofed source `n`: a new source address each, no connection.
fn new_connection_request(n: u32) -> Vec<u8> {
    let [_, hi, mid, lo] = n.to_be_bytes();
    PacketBuilder::new(Ipv4Addr::new(10, hi, mid, lo), DST_V4)
        .src_port(40_000)
        .tcp(80, tcp_flags::PSH | tcp_flags::ACK)
        .payload(WEB_REQUEST)
        .build()
}

/// Times a program on a different frame each run (`frame(n)` for run `n`): one test run per
/// frame (the kernel's duration of a single run), the web-sample ring drained and the sampled
/// connections forgotten between runs when `drain` (each frame is then a connection's first
/// request, which must be sampled).
struct EachConnection {
    h: Harness,
    frame: fn(u32) -> Vec<u8>,
    drain: bool,
    next: u32,
}

impl EachConnection {
    fn new(h: Harness, frame: fn(u32) -> Vec<u8>, drain: bool) -> Self {
        Self {
            h,
            frame,
            drain,
            next: 0,
        }
    }
}

impl Timed for EachConnection {
    fn time(&mut self, _frame: &[u8], _repeat: u32) -> Result<(u32, u64)> {
        let mut total = 0;
        let mut verdict = XDP_PASS;
        for _ in 0..NEW_CONNECTIONS {
            self.next += 1;
            let frame = (self.frame)(self.next);
            let (v, ns) = self.h.run_repeat(&frame, 1)?;
            verdict = v;
            total += ns;
            if self.drain {
                ensure!(
                    self.h.web_samples().len() == 1,
                    "a new connection was not sampled"
                );
                self.h.forget_sampled_connections()?;
            }
        }
        Ok((verdict, total / u64::from(NEW_CONNECTIONS)))
    }
}

/// A SYN from a tracked source to a new port each run, the case of a real scan: the estimators'
/// update. Single runs ([`EachConnection`]), floor and reference timed the same way.
fn tracked_syn_new_port() -> Result<Prepared> {
    let first = new_port_syn(0);
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    each_new_port(tracked(&first, &key)?, first, new_port_syn)
}

/// Times `h` on [`new_port_syn`] frames, one single run each, against floor and reference
/// timed the same way.
fn each_new_port(h: Harness, first: Vec<u8>, frame: fn(u32) -> Vec<u8>) -> Result<Prepared> {
    let each = |h| EachConnection::new(h, frame, false);
    Ok(Prepared {
        program: Box::new(each(h)),
        floor: Box::new(each(Harness::load_with(Object::Empty, None)?)),
        reference: Some(Box::new(each(Harness::load_with(Object::Reference, None)?))),
        frame: first,
        verdict: XDP_PASS,
        note: Some(format!(
            "{NEW_CONNECTIONS} single runs per call, each to a new destination port"
        )),
    })
}

/// A SYN of `SRC_V4` to destination port `n` (cycling through 1..=65535).
fn new_port_syn(n: u32) -> Vec<u8> {
    let port = (n % 65_535 + 1) as u16;
    PacketBuilder::new(SRC_V4, DST_V4).syn(port).build()
}

/// [`new_port_syn`] over IPv6 (`SRC_V6` to `DST_V6`).
fn new_port_syn_v6(n: u32) -> Vec<u8> {
    let port = (n % 65_535 + 1) as u16;
    PacketBuilder::new(SRC_V6, DST_V6).syn(port).build()
}

/// A SYN from a source already in the tracker, the same one each run: a repeat of the source's
/// last probe (retransmissions, a flood of one port), counted without the estimators.
fn tracked_syn() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4).syn(80).build();
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    Prepared::xdp(tracked(&frame, &key)?, frame, XDP_PASS)
}

/// `tracked_syn_new_port` with the long window and distributed scans on, as the daemon configures it: the
/// long window (`LONG` lookup and estimator update) and distributed scans (`TARGETS` lookup and
/// port bit). Compare with `tracked_syn_new_port` of the same run.
fn tracked_syn_long_distributed() -> Result<Prepared> {
    long_distributed(false)
}

/// `syn_long_distributed` with distributed sweeps on too (`PORTS` lookup and host bit), as the
/// daemon configures them: compare with `syn_long_distributed` of the same run.
fn tracked_syn_distributed_ports() -> Result<Prepared> {
    long_distributed(true)
}

/// The long window and per-target distributed scans on, as the daemon configures them, and
/// distributed sweeps (`ports`) on or off.
fn long_distributed_config(ports: bool) -> KernelConfig {
    let mut config = KernelConfig {
        long_window_ns: 3600 * 1_000_000_000,
        ..KernelConfig::default()
    };
    config.thresholds[DetectionKind::DistributedScan as usize] = bits_for_count(40, 1024);
    config.long_thresholds[DetectionKind::PortScan as usize] = bits_for_count(20, 1024);
    if ports {
        config.distributed_hosts = bits_for_count(32, 512);
    }
    config
}

/// A tracked SYN with the long window and per-target distributed scans on, and distributed
/// sweeps (`ports`) on or off.
fn long_distributed(ports: bool) -> Result<Prepared> {
    let frame = new_port_syn(79);
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    let mut h = tracked(&frame, &key)?;
    // A fixed clock far past the source's first window: its next probe ends that window and
    // gives it its long-window state, as a slow scanner has (the timed runs stay in the new
    // window). Another port: a repeat of the last probe would reach no other level.
    h.set_config(&KernelConfig {
        clock_override_ns: 1 << 62,
        ..long_distributed_config(ports)
    })?;
    h.run(&new_port_syn(78))?;
    ensure!(
        h.long_state(&key)?.is_some()
            && h.target_state(&SourceKey::from_ipv4(DST_V4.octets()))?
                .is_some(),
        "the long window and the target state are not in use"
    );
    ensure!(
        h.port_state(IPPROTO_TCP, 79)?.is_some() == ports,
        "the port state is not as configured"
    );
    each_new_port(h, frame, new_port_syn)
}

/// A SYN from forged source `n / per_source` (100.64.0.0/10 onward) to a new port each: every
/// forged source sends `per_source` of them.
fn spoofed_syn(n: u32, per_source: u32) -> Vec<u8> {
    let [_, a, b, c] = (n / per_source + (100 << 24 | 64 << 16)).to_be_bytes();
    let port = (n % 65_535 + 1) as u16;
    PacketBuilder::new(Ipv4Addr::new(100, a, b, c), DST_V4)
        .syn(port)
        .build()
}

/// Each forged source twice, each SYN to a new port ([`spoofed_syn`]).
fn spoofed_pair_syn(n: u32) -> Vec<u8> {
    spoofed_syn(n, 2)
}

/// Each forged source eight times, to eight new ports: below every threshold.
fn spoofed_spray_syn(n: u32) -> Vec<u8> {
    spoofed_syn(n, 8)
}

/// The two-packet spoofed storm with new ports, the daemon's configuration (admission filter,
/// long window, both distributed forms on): the first packet of a forged source is deferred
/// by the admission filter, the second admits it and runs every level. Single runs, floor and
/// reference timed the same way.
fn spoofed_pairs_new_ports() -> Result<Prepared> {
    spoofed_new_ports(spoofed_pair_syn)
}

/// A spoofed port spray below every threshold: each forged source sends eight SYNs to eight
/// new ports, the daemon's configuration.
fn spoofed_port_spray() -> Result<Prepared> {
    spoofed_new_ports(spoofed_spray_syn)
}

fn spoofed_new_ports(frame: fn(u32) -> Vec<u8>) -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&long_distributed_config(true))?;
    each_new_port(h, frame(0), frame)
}

/// An IPv6 SYN from a source already in the tracker (keyed by its prefix).
fn ipv6_syn() -> Result<Prepared> {
    let frame = new_port_syn_v6(79);
    let key = SourceKey::from_ipv6(SRC_V6.octets(), KernelConfig::default().ipv6_prefix());
    each_new_port(tracked(&frame, &key)?, frame, new_port_syn_v6)
}

/// `ipv6_syn` with the wide IPv6 level on (/48, the daemon's default): a `WIDE` lookup, the
/// ring check of the /64 and a second estimator update. Compare with `ipv6_syn` of the same run.
fn ipv6_syn_wide() -> Result<Prepared> {
    let frame = new_port_syn_v6(79);
    let key = SourceKey::from_ipv6(SRC_V6.octets(), KernelConfig::default().ipv6_prefix());
    let mut h = tracked(&frame, &key)?;
    h.set_config(&KernelConfig {
        ipv6_wide_prefix_len: 48,
        ..KernelConfig::default()
    })?;
    h.run(&new_port_syn_v6(78))?;
    ensure!(
        h.wide_state(&SourceKey::wide_from_ipv6(SRC_V6.octets(), 48))?
            .is_some(),
        "the wide level is not in use"
    );
    each_new_port(h, frame, new_port_syn_v6)
}

/// The product program with the default config (admission filter on) after `frame` has been
/// seen three times: the first probe is deferred by the admission filter, the second admits.
fn tracked(frame: &[u8], key: &SourceKey) -> Result<Harness> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    for _ in 0..3 {
        h.run(frame)?;
    }
    ensure!(
        h.tracked(key)?.is_some(),
        "the source is not tracked after three probes"
    );
    Ok(h)
}

/// Every packet from a new random source and no admission filter: an LRU insert (and, with
/// the tracker full, an eviction) per packet. The naive design's cost.
fn new_source_map_full() -> Result<Prepared> {
    let mut h = Harness::load_with(Object::SpoofBench, None)?;
    h.set_config(&KernelConfig {
        flags: FLAG_NO_ADMISSION,
        ..KernelConfig::default()
    })?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4).syn(80).build();
    h.run_repeat(&frame, 3 * TRACKER_CAPACITY)?;
    let tracked = h.tracked_count()?;
    let capacity = TRACKER_CAPACITY as usize;
    ensure!(
        tracked >= capacity * 9 / 10,
        "the tracker holds only {tracked} of {capacity} sources after the pre-fill"
    );
    Ok(Prepared::xdp(h, frame, XDP_PASS)?
        .with_spoofed_reference(3 * TRACKER_CAPACITY)?
        .with_note(format!("tracker pre-filled to {tracked}/{capacity}")))
}

/// Every packet from a new random source with the admission filter on: one array write per
/// packet, no LRU insert.
fn spoofed_storm() -> Result<Prepared> {
    let mut h = Harness::load_with(Object::SpoofBench, None)?;
    h.set_config(&KernelConfig::default())?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4).syn(80).build();
    Prepared::xdp(h, frame, XDP_PASS)?.with_spoofed_reference(1)
}

/// As `spoofed_storm`, with UDP datagrams at a service of the host: each random source starts an
/// inbound conversation, so the admission filter's array write plus a store into the
/// conversation's `INBOUND` slot (overwriting whatever conversation held it).
fn spoofed_udp_storm() -> Result<Prepared> {
    let mut h = Harness::load_with(Object::SpoofBench, None)?;
    h.set_config(&KernelConfig::default())?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(33_000)
        .udp(53)
        .build();
    Prepared::xdp(h, frame, XDP_PASS)?.with_spoofed_reference(1)
}

/// A block that never expires.
fn block_entry(reason: BlockReason) -> BlockEntry {
    BlockEntry {
        added_ns: 1,
        expires_ns: 0,
        packets: 0,
        bytes: 0,
        reason: reason as u32,
        offenses: 1,
        note: [0; BLOCK_NOTE_LEN],
    }
}

/// Drop mode on.
fn drop_config() -> KernelConfig {
    KernelConfig {
        flags: FLAG_DROP,
        ..KernelConfig::default()
    }
}

/// Drop mode, the source in the per-source block hash: the check before everything else.
fn blocked_drop() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&drop_config())?;
    h.block_source(
        &SourceKey::from_ipv4(SRC_V4.octets()),
        &block_entry(BlockReason::Detection),
    )?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4).syn(80).build();
    Prepared::xdp(h, frame, XDP_DROP)
}

/// Block-list prefixes loaded by the block-list cases.
const PREFIXES: u32 = 100_000;
/// A source no block is near: no loaded prefix covers its /24.
const UNLISTED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Drop mode with [`PREFIXES`] block-list prefixes loaded: random /16../32 IPv4 networks
/// (none covering [`UNLISTED_V4`]'s /24) and 192.0.2.0/24, which holds `SRC_V4`.
fn loaded_block_list() -> Result<Harness> {
    let mut h = Harness::load()?;
    h.set_config(&drop_config())?;
    let entry = block_entry(BlockReason::List);
    let mut rng = rand::rng();
    let unlisted = u32::from(UNLISTED_V4);
    let mut loaded = 1;
    while loaded < PREFIXES {
        let len = rng.random_range(16..=32u32);
        let mask = u32::MAX << (32 - len);
        let addr = rng.random::<u32>() & mask;
        if addr == unlisted & mask || (addr ^ unlisted) >> 8 == 0 {
            continue;
        }
        let key = SourceKey::from_ipv4(addr.to_be_bytes());
        h.block_prefix(key.addr, 96 + len, &entry)?;
        loaded += 1;
    }
    let net = SourceKey::from_ipv4([192, 0, 2, 0]);
    h.block_prefix(net.addr, 96 + 24, &entry)?;
    Ok(h)
}

/// Drop mode with the block list loaded, the source inside one of its prefixes: the listed
/// source's cost.
fn block_list_lpm() -> Result<Prepared> {
    let h = loaded_block_list()?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4).syn(80).build();
    Ok(Prepared::xdp(h, frame, XDP_DROP)?
        .with_note(format!("{PREFIXES} prefixes in the block list")))
}

/// Drop mode with the block list loaded, a SYN from a source no prefix covers: what every
/// other packet pays for drop mode.
fn block_list_unlisted() -> Result<Prepared> {
    let h = loaded_block_list()?;
    let frame = PacketBuilder::new(UNLISTED_V4, DST_V4).syn(80).build();
    let mut prepared = Prepared::xdp(h, frame, XDP_PASS)?;
    // Warm the tracker like tracked_syn: the case times the block check, not admission.
    for _ in 0..3 {
        prepared.program.time(&prepared.frame, 1)?;
    }
    Ok(prepared.with_note(format!("{PREFIXES} prefixes, source in none")))
}

/// Established TCP in drop mode with the block list loaded, from an unlisted source. A bare
/// ACK with a real ack number: drop mode checks it against the handshake hints.
fn established_drop_mode() -> Result<Prepared> {
    let h = loaded_block_list()?;
    let frame = PacketBuilder::new(UNLISTED_V4, DST_V4)
        .tcp(443, tcp_flags::ACK)
        .ack(0x9abc_def1)
        .build();
    Ok(
        Prepared::xdp(h, frame, XDP_PASS)?
            .with_note(format!("{PREFIXES} prefixes, source in none")),
    )
}

/// A DNS answer matching a query the egress program recorded: recognised as a reply.
fn reply_udp() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    let query = PacketBuilder::new(DST_V4, SRC_V4)
        .udp(53)
        .src_port(33_000)
        .build();
    ensure!(
        h.run_egress(&query)? as u32 == TC_ACT_UNSPEC,
        "egress program changed the query's fate"
    );
    let answer = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(53)
        .udp(33_000)
        .build();
    Prepared::xdp(h, answer, XDP_PASS)
}

/// An outbound SYN through the TC egress program: flow recording.
fn tc_egress_syn() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .syn(443)
        .src_port(40_000)
        .build();
    Prepared::tc(h, frame)
}

/// An outbound segment of an established connection (ACK only) through the TC egress program:
/// the egress fast path, no map access.
fn tc_egress_established() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    let frame = PacketBuilder::new(DST_V4, SRC_V4)
        .src_port(443)
        .tcp(40_000, tcp_flags::ACK)
        .build();
    Prepared::tc(h, frame)
}

/// This host's UDP answer (from its port 53) to a client whose query the XDP program saw.
fn tc_egress_udp_answer() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    let query = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(33_000)
        .udp(53)
        .build();
    ensure!(h.run(&query)? == XDP_PASS, "query not passed");
    let answer = PacketBuilder::new(DST_V4, SRC_V4)
        .src_port(53)
        .udp(33_000)
        .build();
    Prepared::tc(h, answer)
}

/// A UDP datagram from a tracked source that answers no flow of ours: a probe (and a refresh of
/// its conversation's `INBOUND` slot).
fn udp_probe_tracked() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(33_000)
        .udp(53)
        .build();
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    Prepared::xdp(tracked(&frame, &key)?, frame, XDP_PASS)
}

/// A FIN|ACK from a tracked source with no flow and no socket: a Maimon probe (and, with the
/// socket lookup, one miss in the kernel's TCP socket table first).
fn fin_ack_no_flow() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(443)
        .tcp(40_000, tcp_flags::FIN | tcp_flags::ACK)
        .build();
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    Prepared::xdp(tracked(&frame, &key)?, frame, XDP_PASS)
}

/// This host's bare RST to a tracked remote's ACK of no connection, through the TC egress
/// program: ack_scan evidence, one tracker lookup and estimator update.
fn tc_egress_ack_reset() -> Result<Prepared> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig::default())?;
    let reset = PacketBuilder::new(DST_V4, SRC_V4)
        .src_port(443)
        .tcp(40_000, tcp_flags::RST)
        .build();
    for _ in 0..3 {
        h.run_egress(&reset)?;
    }
    ensure!(
        h.tracked(&SourceKey::from_ipv4(SRC_V4.octets()))?.is_some(),
        "the remote is not tracked after three resets"
    );
    Prepared::tc(h, reset)
}

/// A GRE packet (an IP-protocol probe) from a tracked source.
fn protocol_probe() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .raw(47, vec![0, 0, 0x08, 0])
        .build();
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    Prepared::xdp(tracked(&frame, &key)?, frame, XDP_PASS)
}

/// An SCTP INIT from a tracked source.
fn sctp_init() -> Result<Prepared> {
    let frame = PacketBuilder::new(SRC_V4, DST_V4).sctp(3868, 1).build();
    let key = SourceKey::from_ipv4(SRC_V4.octets());
    Prepared::xdp(tracked(&frame, &key)?, frame, XDP_PASS)
}

/// One case's result.
struct Outcome {
    case: &'static str,
    ns_per_packet: u64,
    floor_ns: u64,
    ratio: f64,
    target: Option<f64>,
    /// The reference's ns/packet on the same frame (XDP cases).
    reference_ns: Option<u64>,
    /// (case − floor) / (reference − floor).
    reference_ratio: Option<f64>,
    reference_target: Option<f64>,
}

/// Times a prepared case and its floor, interleaved so both see the same drift.
fn measure(case: &Case, prepared: &mut Prepared) -> Result<Outcome> {
    let mut case_ns = Vec::with_capacity(RUNS);
    let mut floor_ns = Vec::with_capacity(RUNS);
    let mut reference_ns = Vec::with_capacity(RUNS);
    if let Some(reference) = &mut prepared.reference {
        // Warm up: the source is in the reference's map before timing, as in tracked cases.
        reference.time(&prepared.frame, 1)?;
    }
    for _ in 0..RUNS {
        let (verdict, ns) = prepared.program.time(&prepared.frame, REPEAT)?;
        ensure!(
            verdict == prepared.verdict,
            "{}: verdict {verdict}, expected {}",
            case.name,
            prepared.verdict
        );
        case_ns.push(ns);
        let (_, ns) = prepared.floor.time(&prepared.frame, REPEAT)?;
        floor_ns.push(ns);
        if let Some(reference) = &mut prepared.reference {
            let (_, ns) = reference.time(&prepared.frame, REPEAT)?;
            reference_ns.push(ns);
        }
    }
    let ns_per_packet = median(&mut case_ns);
    let floor_ns = median(&mut floor_ns);
    if floor_ns == 0 {
        eprintln!(
            "warning: {}: the floor measured 0 ns; its ratio is against 1 ns",
            case.name
        );
    }
    let reference_ns = (!reference_ns.is_empty()).then(|| median(&mut reference_ns));
    Ok(Outcome {
        case: case.name,
        ns_per_packet,
        floor_ns,
        ratio: ns_per_packet as f64 / floor_ns.max(1) as f64,
        target: case.target,
        reference_ns,
        reference_ratio: reference_ns.map(|r| over_reference(ns_per_packet, r, floor_ns)),
        reference_target: REFERENCE_TARGETS
            .iter()
            .find(|(name, _)| *name == case.name)
            .map(|(_, t)| *t),
    })
}

/// (case − floor) / (reference − floor), each difference at least 1 ns (a cost below the
/// floor is noise).
fn over_reference(case_ns: u64, reference_ns: u64, floor_ns: u64) -> f64 {
    let over = |ns: u64| ns.saturating_sub(floor_ns).max(1) as f64;
    over(case_ns) / over(reference_ns)
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Pins this thread to CPU 0, where `BPF_PROG_TEST_RUN` will then run the program.
fn pin_to_cpu0() -> Result<()> {
    // SAFETY: cpu_set_t is plain data and all-zero is the empty set; CPU_SET writes inside it;
    // sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("pinning to CPU 0");
    }
    Ok(())
}

fn target_text(target: Option<f64>) -> String {
    target.map_or_else(|| "-".to_owned(), |t| format!("<={t}"))
}

fn verdict(ratio: Option<f64>, target: Option<f64>) -> &'static str {
    match (ratio, target) {
        (Some(r), Some(t)) if r <= t => "met",
        (Some(_), Some(_)) => "over",
        _ => "-",
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<22} {:>9} {:>8} {:>6} {:>7} {:>7} {:>5}  {:>7} {:>7} {:>5}\n",
        "case", "ns/packet", "floor ns", "ref ns", "/floor", "target", "", "/ref", "target", ""
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>8} {:>6} {:>7.2} {:>7} {:>5}  {:>7} {:>7} {:>5}",
            o.case,
            o.ns_per_packet,
            o.floor_ns,
            o.reference_ns
                .map_or_else(|| "-".to_owned(), |r| r.to_string()),
            o.ratio,
            target_text(o.target),
            verdict(Some(o.ratio), o.target),
            o.reference_ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            target_text(o.reference_target),
            verdict(o.reference_ratio, o.reference_target),
        );
    }
    out.push_str(
        "/floor: ns/packet over the empty program's; /ref: (case - floor) / (reference - floor), \
         the reference on the same frame\n",
    );
    out
}

/// The [`RELATIONS`] whose two cases both ran, with their ratio in this run.
fn relations_table(outcomes: &[Outcome]) -> String {
    let ns = |name: &str| {
        outcomes
            .iter()
            .find(|o| o.case == name)
            .map(|o| o.ns_per_packet)
    };
    let mut out = String::new();
    for (case, base, max) in RELATIONS {
        let (Some(a), Some(b)) = (ns(case), ns(base)) else {
            continue;
        };
        let ratio = a as f64 / b.max(1) as f64;
        let verdict = if ratio <= *max { "met" } else { "over" };
        let _ = writeln!(
            out,
            "{case} / {base} = {ratio:.2} (target <= {max})  {verdict}"
        );
    }
    out
}

/// The results as a JSON array of `{"case", "ns_per_packet", "floor_ns", "ratio",
/// "reference_ns", "reference_ratio"}` (the last two `null` for TC cases).
fn json(outcomes: &[Outcome]) -> String {
    let or_null = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
    let rows: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "  {{\"case\": \"{}\", \"ns_per_packet\": {}, \"floor_ns\": {}, \"ratio\": {:.3}, \
                 \"reference_ns\": {}, \"reference_ratio\": {}}}",
                o.case,
                o.ns_per_packet,
                o.floor_ns,
                o.ratio,
                or_null(o.reference_ns.map(|r| r.to_string())),
                or_null(o.reference_ratio.map(|r| format!("{r:.3}")))
            )
        })
        .collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

fn results_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .join("target/bench/xdp.json")
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads BPF programs and needs root; run `sudo -E cargo xtask bench`");
    }
    let filters: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    let replay = filters.is_empty() || filters.iter().any(|f| "replay".contains(f.as_str()));
    if cases.is_empty() && !replay {
        let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        bail!(
            "no case matches {filters:?}; cases: {}, replay",
            names.join(", ")
        );
    }
    pin_to_cpu0()?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "scanwatch XDP bench: kernel {}, CPU 0, {REPEAT} runs per call, median of {RUNS} calls",
        kernel.trim()
    );

    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let mut prepared = (case.prepare)().with_context(|| format!("preparing {}", case.name))?;
        if let Some(note) = &prepared.note {
            println!("{}: {note}", case.name);
        }
        outcomes.push(measure(case, &mut prepared)?);
    }
    println!();
    print!("{}", table(&outcomes));
    let relations = relations_table(&outcomes);
    if !relations.is_empty() {
        println!();
        print!("{relations}");
    }

    if replay {
        println!("\n{}", replay_throughput()?);
    }

    let path = results_path();
    fs::create_dir_all(path.parent().expect("results path has a parent"))
        .with_context(|| format!("creating {}", path.display()))?;
    fs::write(&path, json(&outcomes)).with_context(|| format!("writing {}", path.display()))?;
    println!("\nresults: {}", path.display());
    Ok(())
}

/// Our ISN in the handshake cases.
const ISN: u32 = 0x1357_9bdf;

/// Drop mode (no block list) with one SYN-ACK of ours noted.
fn drop_mode_with_handshake() -> Result<Harness> {
    let mut h = Harness::load()?;
    h.set_config(&KernelConfig {
        flags: FLAG_DROP,
        ..KernelConfig::default()
    })?;
    let syn_ack = PacketBuilder::new(DST_V4, SRC_V4)
        .src_port(443)
        .tcp(40_000, tcp_flags::SYN | tcp_flags::ACK)
        .seq(ISN)
        .build();
    ensure!(
        h.run_egress(&syn_ack)? as u32 == TC_ACT_UNSPEC,
        "egress program changed the SYN-ACK's fate"
    );
    Ok(h)
}

/// A bare ACK whose number is in its hint slot (it acknowledges a SYN-ACK of ours) but whose
/// tuple is another: the `HANDSHAKES` lookup, the most an ACK pays in drop mode.
fn handshake_ack_check() -> Result<Prepared> {
    let h = drop_mode_with_handshake()?;
    let frame = PacketBuilder::new(SRC_V4, DST_V4)
        .src_port(40_001)
        .tcp(443, tcp_flags::ACK)
        .ack(ISN.wrapping_add(1))
        .build();
    Ok(Prepared::xdp(h, frame, XDP_PASS)?.with_note("hint hit, HANDSHAKES miss".into()))
}

/// A SYN-ACK the host sends, in drop mode: noted in `HANDSHAKES` (an LRU update per SYN-ACK).
fn tc_egress_syn_ack_drop() -> Result<Prepared> {
    let h = drop_mode_with_handshake()?;
    let frame = PacketBuilder::new(DST_V4, SRC_V4)
        .src_port(443)
        .tcp(40_000, tcp_flags::SYN | tcp_flags::ACK)
        .seq(ISN)
        .build();
    Prepared::tc(h, frame)
}

/// Frames in the replay throughput capture.
const REPLAY_FRAMES: u32 = 50_000;

/// `scanwatch replay` throughput (packets per second, end to end: capture parsing, a config
/// write and a `BPF_PROG_TEST_RUN` per frame, events to alerts) on a synthetic capture: SYN
/// scans from 50 sources, every probe answered by a RST from the local host (TC egress).
fn replay_throughput() -> Result<String> {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut writer = PcapWriter::new(Vec::new())?;
    let local = Ipv4Addr::new(198, 51, 100, 1);
    for i in 0..REPLAY_FRAMES {
        let src = Ipv4Addr::new(192, 0, 2, (i / 1000) as u8 + 1);
        let port = (i % 1000) as u16 + 1;
        let frame = if i % 2 == 0 {
            PacketBuilder::new(src, local)
                .src_port(40000)
                .syn(port)
                .build()
        } else {
            PacketBuilder::new(local, src)
                .src_port(port)
                .tcp(40000, tcp_flags::RST | tcp_flags::ACK)
                .build()
        };
        let at = std::time::Duration::from_micros(1_700_000_000_000_000 + u64::from(i) * 20);
        writer.write_packet(&PcapPacket::new(at, frame.len() as u32, &frame))?;
    }
    let bytes = writer.into_writer();
    let config = scanwatch::runtime::replay::default_config()?;
    let local_net = ipnet::IpNet::from(std::net::IpAddr::from(local));
    let mut alerts = 0;
    let summary = scanwatch::runtime::replay::replay_capture(&bytes, config, &[local_net], |_| {
        alerts += 1;
        Ok(())
    })?;
    Ok(format!(
        "replay throughput: {:.0} packets/s ({} frames, {} egress, {alerts} alerts, {:.2}s)",
        summary.packets_per_second,
        summary.packets,
        summary.egress_packets,
        summary.elapsed_seconds
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_middle_value() {
        assert_eq!(median(&mut [9, 1, 5, 7, 3]), 5);
    }

    #[test]
    fn json_lists_every_outcome() {
        let outcomes = [
            Outcome {
                case: "a",
                ns_per_packet: 30,
                floor_ns: 10,
                ratio: 3.0,
                target: None,
                reference_ns: Some(20),
                reference_ratio: Some(2.0),
                reference_target: None,
            },
            Outcome {
                case: "b",
                ns_per_packet: 15,
                floor_ns: 10,
                ratio: 1.5,
                target: Some(2.0),
                reference_ns: None,
                reference_ratio: None,
                reference_target: None,
            },
        ];
        assert_eq!(
            json(&outcomes),
            "[\n  {\"case\": \"a\", \"ns_per_packet\": 30, \"floor_ns\": 10, \"ratio\": 3.000, \
             \"reference_ns\": 20, \"reference_ratio\": 2.000},\n  \
             {\"case\": \"b\", \"ns_per_packet\": 15, \"floor_ns\": 10, \"ratio\": 1.500, \
             \"reference_ns\": null, \"reference_ratio\": null}\n]\n"
        );
    }

    #[test]
    fn reference_ratio_compares_costs_over_the_floor() {
        assert!((over_reference(30, 20, 10) - 2.0).abs() < 1e-9);
        // A reference at or below the floor counts as 1 ns over it.
        assert!((over_reference(15, 9, 10) - 5.0).abs() < 1e-9);
    }

    #[test]
    fn reference_targets_name_cases() {
        for (name, _) in REFERENCE_TARGETS {
            assert!(CASES.iter().any(|c| c.name == *name), "{name}");
        }
    }

    #[test]
    fn case_names_are_unique() {
        let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CASES.len());
    }
}
