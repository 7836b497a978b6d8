//! End-to-end tests of "no false alarms from the traffic every server has": the
//! real daemon watches the lab's target, which plays an ordinary server with a backend, its
//! own UDP service, an upstream resolver and a routed path. Its keep-alive connections closed
//! by the peer (however old, or older than the agent), its own connections aborted while the
//! server still sends (late segments answered with bare RSTs), the ICMP port unreachable its answers
//! meet when a client has gone, traceroute's time-exceeded and a small-MTU path's
//! fragmentation-needed / packet-too-big, and a spoofed flood at its UDP service while it
//! resolves names must raise no alert, and in drop mode block nothing. The capped
//! `scanwatch_top_source_probes` gauge appears only when `top_sources` asks for it.
//!
//! ```text
//!   attacker (.2) ──┐                        ┌── host 4: backend / resolver / router ── far
//!   benign   (.3) ──┼── switch (bridge) ─────┤          (10.K.3.0/24, fd5c:a7:3:K::/64,
//!   target   (.1) ──┘   the monitored host   └── host 5 (a third scanner)   MTU 1280)
//! ```
//!
//! Every test builds its own namespaces and daemon and tears both down on exit, also on
//! failure; traffic never leaves them. Every detection of today still fires: `e2e.rs`,
//! `drop.rs` and `egress_e2e.rs` cover that and are not repeated here.

use std::{
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use scanwatch_tests::{
    daemon::Daemon,
    e2e::{
        ALERT_WITHIN, SCAN_BUDGET, attacker_port_scan_alert, connects, daemon_with_config, excerpt,
        expect_alert, lab,
    },
    lab::Lab,
    metrics::{self, metric_sample, sample, total},
    netns::{Netns, Veth, in_netns, snmp_counter, spawn_in_netns},
    process::TempDir,
    scanner::{self, FloodReport},
    services::Service,
};
use serde_json::Value;

/// The flow lifetime of the tests where time matters: connections outlive it in seconds.
const FLOW_TIMEOUT: Duration = Duration::from_secs(1);
/// Keep-alive connections in the pool the backend closes.
const POOL: usize = 50;
/// The backend's port (a database, say).
const BACKEND_PORT: u16 = 5432;
/// The host's own UDP service (DNS-style).
const SERVICE_PORT: u16 = 53;
/// Exchanges with clients that left before the answer (ICMP port unreachable back).
const EXCHANGES: u64 = 2_000;
/// Bound on those exchanges.
const EXCHANGE_BUDGET: Duration = Duration::from_secs(20);
/// Spoofed queries of the flood, and its time bound (whichever comes first).
const FLOOD: usize = 1_000_000;
const FLOOD_BUDGET: Duration = Duration::from_secs(15);
/// Datagrams to distinct ports over the small-MTU path, per IP version: more than the egress
/// `udp_scan` threshold (15), so counting them as failures would raise one.
const MTU_PROBES: u16 = 30;
/// The small MTU of the router's far link.
const SMALL_MTU: u32 = 1280;
/// The daemon walks the tracker for the gauges every 5 s: two walks.
const WALK_WITHIN: Duration = Duration::from_secs(11);
/// Probes per hop of the traceroute (mtr-style repeats): 2 hops × 8 errors would cross the
/// egress `udp_scan` threshold of 15 if time-exceeded counted as failure.
const PROBES_PER_HOP: u8 = 8;

/// The daemon in drop mode, with the short [`FLOW_TIMEOUT`] of the tests where time matters.
fn drop_daemon_with_short_flows<'lab>(lab: &'lab Lab, dir: &TempDir) -> Daemon<'lab> {
    daemon_with_config(
        lab,
        dir,
        &format!(
            "mode = \"drop\"\nflow_timeout = \"{}s\"\n",
            FLOW_TIMEOUT.as_secs()
        ),
    )
}

/// Waits [`ALERT_WITHIN`] for late alerts (also two folds of the kernel counters into the
/// metrics); every alert, and the metrics text.
fn settle(daemon: &Daemon<'_>) -> (Vec<Value>, String) {
    thread::sleep(ALERT_WITHIN);
    (daemon.alerts(), daemon.metrics().expect("reading /metrics"))
}

/// Fails showing every alert unless there is none.
fn assert_no_alert(alerts: &[Value], metrics_text: &str, what: &str) {
    assert!(
        alerts.is_empty(),
        "{what} raised {} alert(s): {alerts:#?}\nmetrics excerpt:\n{}",
        alerts.len(),
        excerpt(metrics_text)
    );
}

/// The enforcement lines of the metrics text.
fn enforcement(text: &str) -> String {
    metrics::lines(
        text,
        &["scanwatch_dropped", "scanwatch_block", "scanwatch_verdicts"],
    )
}

/// Drop mode blocked nothing: no block added, no packet dropped.
fn assert_nothing_blocked(text: &str, what: &str) {
    assert_eq!(
        total(text, "scanwatch_blocks_added_total")
            + total(text, "scanwatch_dropped_packets_total"),
        0,
        "{what}: drop mode blocked something:\n{}",
        enforcement(text)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Long-lived connections closed by the peer.

/// How the backend ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// close(): FIN|ACK.
    Fin,
    /// close() with SO_LINGER 0: RST|ACK.
    Reset,
}

/// Keep-alive connections from the host (the lab's target) to the backend, both ends held.
struct Pool {
    host: Vec<TcpStream>,
    backend: Vec<TcpStream>,
}

impl Pool {
    /// The host opens `n` connections to `listener` (the backend's, at `addr`); the backend
    /// accepts them. Nothing is sent on them: they stay idle.
    fn open(lab: &Lab, listener: &TcpListener, addr: SocketAddr, n: usize) -> Self {
        let host = in_netns(lab.target.name(), move || {
            (0..n)
                .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
                .collect::<io::Result<Vec<_>>>()
        })
        .expect("entering the target ns")
        .expect("the host opens its keep-alive connections");
        listener.set_nonblocking(false).unwrap();
        let backend = (0..n)
            .map(|_| listener.accept().map(|(s, _)| s))
            .collect::<io::Result<Vec<_>>>()
            .expect("the backend accepts the connections");
        Self { host, backend }
    }

    /// The backend closes every connection, `how` for each by index; the host reads each to its
    /// end (EOF or reset; 3 s for all, so closes dropped in drop mode cost no more) and closes
    /// its side, as a client library does. How many closes the host saw.
    fn backend_closes(self, how: impl Fn(usize) -> Close) -> usize {
        for (i, stream) in self.backend.into_iter().enumerate() {
            if how(i) == Close::Reset {
                set_linger_zero(&stream);
            }
            drop(stream);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        self.host
            .into_iter()
            .filter(|stream| {
                let mut stream = stream;
                let left = deadline.saturating_duration_since(Instant::now());
                stream
                    .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .unwrap();
                match stream.read(&mut [0u8; 64]) {
                    Ok(0) => true,
                    Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
                    Ok(_) => false,
                }
            })
            .count()
    }
}

/// SO_LINGER on, 0 s: close() sends a reset instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid linger struct and its size, on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// The lab plus a backend (host 4) listening on [`BACKEND_PORT`].
fn with_backend() -> (Lab, Netns, TcpListener, SocketAddr) {
    let mut lab = lab();
    let backend = lab.add_host("backend", 4).expect("adding the backend");
    let addr = SocketAddr::from((lab.host_v4(4), BACKEND_PORT));
    let listener = in_netns(backend.name(), move || TcpListener::bind(addr))
        .expect("entering the backend ns")
        .expect("the backend listens");
    (lab, backend, listener, addr)
}

/// After the backend closed the pool: no alert in either direction, nothing blocked, and the
/// backend still serves the host.
fn assert_closes_were_quiet(
    daemon: &Daemon<'_>,
    lab: &Lab,
    addr: SocketAddr,
    closed: usize,
    what: &str,
) {
    let (alerts, text) = settle(daemon);
    assert_no_alert(
        &alerts,
        &text,
        &format!("the backend closing {POOL} keep-alive connections {what}"),
    );
    assert_eq!(
        closed,
        POOL,
        "the host saw every close of the backend (a missing one was dropped):\n{}",
        enforcement(&text)
    );
    assert_nothing_blocked(&text, "the backend's closes");
    assert!(
        connects(lab.target.name(), addr),
        "the host no longer reaches its backend {addr} after the closes:\n{}",
        enforcement(&text)
    );
}

#[test]
fn backend_closing_idle_keepalive_connections_raises_no_alert_and_is_not_blocked() {
    let (lab, _backend, listener, addr) = with_backend();
    let dir = TempDir::new("keepalive").unwrap();
    let daemon = drop_daemon_with_short_flows(&lab, &dir);
    let pool = Pool::open(&lab, &listener, addr, POOL);
    // The connections outlive the flow lifetime three times over, idle.
    thread::sleep(3 * FLOW_TIMEOUT);
    let closed = pool.backend_closes(|_| Close::Fin);
    assert_closes_were_quiet(
        &daemon,
        &lab,
        addr,
        closed,
        "(FIN|ACK) idle for 3 x flow_timeout",
    );
}

#[test]
fn peer_closing_connections_opened_before_the_agent_started_raises_no_alert() {
    let (lab, _backend, listener, addr) = with_backend();
    let pool = Pool::open(&lab, &listener, addr, POOL);
    let dir = TempDir::new("preexisting").unwrap();
    let daemon = drop_daemon_with_short_flows(&lab, &dir);
    thread::sleep(FLOW_TIMEOUT);
    // Half end with FIN|ACK, half with RST|ACK.
    let closed = pool.backend_closes(|i| if i % 2 == 0 { Close::Fin } else { Close::Reset });
    assert_closes_were_quiet(
        &daemon,
        &lab,
        addr,
        closed,
        "(half FIN|ACK, half RST|ACK) opened before the agent started",
    );
}

/// Connections the host opens to a streaming server and aborts.
const ABORTED: usize = 30;
/// The streaming server's port.
const STREAM_PORT: u16 = 8443;

/// A server in the backend namespace that writes to every connection it accepts until the
/// connection fails, behind a slow queue (tbf, 2 Mbit/s, up to a second of data), so that when
/// a client aborts, the server's segments already queued still reach the client after its
/// socket is gone, as on a path with a real round-trip time.
fn streaming_server(backend: &Netns, listener: TcpListener, iface: &str) {
    backend
        .exec(&[
            "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", "2mbit", "burst", "16kb",
            "latency", "1s",
        ])
        .expect("a slow queue on the backend's link");
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                let chunk = [b'x'; 16 * 1024];
                while io::Write::write_all(&mut stream, &chunk).is_ok() {}
            });
        }
    });
}

#[test]
fn host_aborting_connections_while_the_server_still_sends_raises_no_ack_scan() {
    // A client closing pooled connections with data unread: its kernel resets each one
    // (RST|ACK), and answers every segment the server had already sent with a bare RST on the
    // closed connection's 4-tuple, from 30 local ports: what an ACK scan's answers look like.
    let mut lab = lab();
    let backend = lab.add_host("backend", 4).expect("adding the backend");
    let addr = SocketAddr::from((lab.host_v4(4), STREAM_PORT));
    let listener = in_netns(backend.name(), move || TcpListener::bind(addr))
        .expect("entering the backend ns")
        .expect("the backend listens");
    streaming_server(&backend, listener, &lab.if_name("h04"));
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let resets = in_netns(lab.target.name(), move || {
        let before = snmp_counter("Tcp:OutRsts").unwrap();
        let streams = (0..ABORTED)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.read_exact(&mut [0u8; 1024])?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()
            .expect("the host opens its connections and reads from each");
        // The server keeps sending; the host reads no more, then closes everything.
        thread::sleep(Duration::from_millis(500));
        drop(streams);
        thread::sleep(Duration::from_millis(1500));
        snmp_counter("Tcp:OutRsts").unwrap() - before
    })
    .expect("entering the target ns");
    let (alerts, text) = settle(&daemon);
    assert_no_alert(
        &alerts,
        &text,
        &format!("the host aborting {ABORTED} connections to a server still sending"),
    );
    assert!(
        resets > ABORTED as u64,
        "the host sent {resets} resets: no late segment was answered"
    );
    let own = total(&text, "scanwatch_own_connection_resets_total");
    assert!(
        own >= 10,
        "{own} resets on the host's own connections counted (of {resets} RSTs):\n{}",
        excerpt(&text)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The host's own UDP service, clients that leave early.

/// Lets `ns` send every ICMP error at once: no per-peer rate limit, a high global one (both
/// per namespace).
fn unlimited_icmp(ns: &Netns) {
    for (key, value) in [
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv4.icmp_msgs_per_sec", "100000"),
        ("net.ipv4.icmp_msgs_burst", "10000"),
        ("net.ipv6.icmp.ratelimit", "0"),
    ] {
        ns.sysctl(key, value)
            .unwrap_or_else(|e| panic!("{key}={value} in {}: {e:#}", ns.name()));
    }
}

#[test]
fn udp_service_answering_clients_that_left_raises_no_egress_alert() {
    let lab = lab();
    unlimited_icmp(&lab.benign);
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    let service_addr = SocketAddr::from((lab.target_v4(), SERVICE_PORT));
    let service = Service::udp(&lab.target, service_addr).expect("the host's UDP service");
    let before = lab.target.snmp("IcmpMsg:InType3").unwrap();

    // Each client queries from a fresh port and closes it at once: when the answer arrives
    // after the close, the client's kernel sends ICMP port unreachable back to the host.
    let client = lab.benign_v4();
    let (queries, unreachables) = in_netns(lab.benign.name(), move || {
        let deadline = Instant::now() + EXCHANGE_BUDGET;
        let start = snmp_counter("IcmpMsg:OutType3").unwrap();
        let mut queries = 0u64;
        let mut sent = 0;
        while sent < EXCHANGES && Instant::now() < deadline {
            let socket = UdpSocket::bind((client, 0)).expect("a client socket");
            let query = scanner::dns_query_message(queries as u16, "www.example.test");
            socket.send_to(&query, service_addr).expect("a query");
            drop(socket);
            queries += 1;
            if queries.is_multiple_of(50) {
                sent = snmp_counter("IcmpMsg:OutType3").unwrap() - start;
            }
        }
        (queries, snmp_counter("IcmpMsg:OutType3").unwrap() - start)
    })
    .unwrap();
    thread::sleep(Duration::from_millis(200));
    let answered = service.stop().unwrap();
    let came_back = lab.target.snmp("IcmpMsg:InType3").unwrap() - before;
    let load = format!(
        "{queries} queries, {answered} answered, {unreachables} port unreachables sent by the \
         clients, {came_back} received by the host"
    );
    assert!(
        unreachables >= EXCHANGES && came_back >= EXCHANGES,
        "fewer than {EXCHANGES} exchanges ended in ICMP port unreachable within \
         {EXCHANGE_BUDGET:?}: {load}"
    );

    let (alerts, text) = settle(&daemon);
    let egress: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["direction"] == "egress")
        .collect();
    assert!(
        egress.is_empty(),
        "the host's answers to clients that left raised egress alerts ({load}): {egress:#?}\n\
         metrics excerpt:\n{}",
        excerpt(&text)
    );
    assert_no_alert(&alerts, &text, &format!("the host's UDP service ({load})"));
}

// ---------------------------------------------------------------------------------------------
// 3. ICMP that is not a failure: traceroute, a small-MTU path.

/// The lab plus a router (host 4, forwarding) and a host behind it on a link of MTU
/// [`SMALL_MTU`], both families; the target routes the far link through the router.
struct Routed {
    lab: Lab,
    _link: Veth,
    _far: Netns,
    _router: Netns,
}

impl Routed {
    fn new() -> Self {
        let mut lab = lab();
        let router = lab.add_host("router", 4).expect("adding the router");
        let far = Netns::new(&format!("{}-far", router.name())).expect("the far host");
        let k = lab.k();
        let (near_if, far_if) = (lab.if_name("ra"), lab.if_name("rb"));
        let link = Veth::new(&router, &near_if, &far, &far_if).expect("the far link");
        let mtu = SMALL_MTU.to_string();
        for (ns, iface, host) in [(&router, &near_if, 1), (&far, &far_if, 2)] {
            let ip = |args: &[&str]| ns.ip(args).expect("configuring the far link");
            ip(&["link", "set", iface, "mtu", &mtu, "up"]);
            ip(&["addr", "add", &format!("10.{k}.3.{host}/24"), "dev", iface]);
            ip(&[
                "addr",
                "add",
                &format!("fd5c:a7:3:{k:x}::{host}/64"),
                "dev",
                iface,
                "nodad",
            ]);
            unlimited_icmp(ns);
        }
        far.ip(&["route", "add", "default", "via", &format!("10.{k}.3.1")])
            .unwrap();
        far.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("fd5c:a7:3:{k:x}::1"),
        ])
        .unwrap();
        router.sysctl("net.ipv4.ip_forward", "1").unwrap();
        router.sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
        lab.target
            .ip(&[
                "route",
                "add",
                &format!("10.{k}.3.0/24"),
                "via",
                &lab.host_v4(4).to_string(),
            ])
            .unwrap();
        lab.target
            .ip(&[
                "-6",
                "route",
                "add",
                &format!("fd5c:a7:3:{k:x}::/64"),
                "via",
                &format!("fd5c:a7:0:{k:x}::4"),
            ])
            .unwrap();
        let built = Self {
            lab,
            _link: link,
            _far: far,
            _router: router,
        };
        let far_v4 = built.far_v4();
        let reached = in_netns(built.lab.target.name(), move || {
            (0..40).any(|_| scanner::ping(far_v4, Duration::from_millis(250)).unwrap_or(false))
        })
        .unwrap();
        assert!(
            reached,
            "the target cannot reach {far_v4} through the router"
        );
        built
    }

    fn router_v4(&self) -> Ipv4Addr {
        self.lab.host_v4(4)
    }

    fn far_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.lab.k(), 3, 2)
    }

    fn far_v6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd5c, 0xa7, 3, u16::from(self.lab.k()), 0, 0, 0, 2)
    }
}

#[test]
fn traceroute_through_a_router_raises_no_alert() {
    let routed = Routed::new();
    let daemon = Daemon::start(&routed.lab).expect("starting scanwatch");
    let far = routed.far_v4();
    let trace = in_netns(routed.lab.target.name(), move || {
        scanner::traceroute(
            far,
            5,
            PROBES_PER_HOP,
            Duration::from_millis(500),
            SCAN_BUDGET,
        )
    })
    .unwrap()
    .expect("traceroute");
    assert!(
        trace.reached && trace.hops == [Some(routed.router_v4()), Some(far)],
        "the traceroute finds the router, then the far host: {trace:?}"
    );
    let (alerts, text) = settle(&daemon);
    assert_no_alert(
        &alerts,
        &text,
        &format!(
            "a traceroute ({} probes, {PROBES_PER_HOP} per hop)",
            trace.sent
        ),
    );
    assert!(
        sample(&text, "scanwatch_replies_total{protocol=\"icmp\"}") >= u64::from(PROBES_PER_HOP),
        "the time-exceeded errors quote the host's datagrams, so they are replies:\n{}",
        excerpt(&text)
    );
}

/// Sends one datagram of 1400 bytes, don't-fragment and ignoring the learned path MTU
/// (`*_PMTUDISC_PROBE`, as a PMTU prober or a QUIC stack does), to each of `ports` of `dst`
/// from a fresh socket; inside the caller's namespace.
fn oversized_datagrams(dst: IpAddr, ports: std::ops::Range<u16>) {
    for port in ports {
        let (socket, level, option, probe) = match dst {
            IpAddr::V4(_) => (
                UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            ),
            IpAddr::V6(_) => (
                UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)),
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            ),
        };
        let socket = socket.expect("a UDP socket");
        // SAFETY: setsockopt with a valid c_int and its size, on an open socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                (&raw const probe).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "MTU_DISCOVER: {}", io::Error::last_os_error());
        socket
            .send_to(&[0x5c; 1400], (dst, port))
            .expect("an oversized datagram");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn small_mtu_path_errors_raise_no_alert() {
    let routed = Routed::new();
    let daemon = Daemon::start(&routed.lab).expect("starting scanwatch");
    let target = &routed.lab.target;
    let (v4_before, v6_before) = (
        target.snmp("IcmpMsg:InType3").unwrap(),
        target.snmp("Icmp6InPktTooBigs").unwrap(),
    );
    let (far_v4, far_v6) = (routed.far_v4(), routed.far_v6());
    in_netns(target.name(), move || {
        oversized_datagrams(far_v4.into(), 7000..7000 + MTU_PROBES);
        oversized_datagrams(far_v6.into(), 7000..7000 + MTU_PROBES);
    })
    .unwrap();
    thread::sleep(Duration::from_millis(200));
    let frag_needed = target.snmp("IcmpMsg:InType3").unwrap() - v4_before;
    let too_big = target.snmp("Icmp6InPktTooBigs").unwrap() - v6_before;
    let got = format!(
        "{frag_needed} fragmentation-needed and {too_big} packet-too-big errors from the router \
         for {MTU_PROBES} datagrams of each family"
    );
    assert!(
        frag_needed >= u64::from(MTU_PROBES) && too_big >= u64::from(MTU_PROBES),
        "the router did not answer every oversized datagram: {got}"
    );
    let (alerts, text) = settle(&daemon);
    assert_no_alert(
        &alerts,
        &text,
        &format!("a path with MTU {SMALL_MTU} ({got})"),
    );
    assert_eq!(
        sample(&text, "scanwatch_egress_failures_total"),
        0,
        "path-MTU errors are not failed attempts ({got}):\n{}",
        excerpt(&text)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A spoofed flood at the host's UDP service while it resolves names.

/// How long the upstream takes to answer: a slow recursive lookup, far within the flow
/// lifetime (120 s by default), yet longer than today's flow map lasts under the flood
/// (65,536 flows at the ~40,000 answers/s the host's service manages here: 1.5 s).
const UPSTREAM_DELAY: Duration = Duration::from_secs(2);
/// A lookup of the loop is sent every this, and waits this long for its answer.
const LOOKUP_EVERY: Duration = Duration::from_millis(20);
const LOOKUP_PATIENCE: Duration = Duration::from_secs(4);

/// A stub resolver's load, inside the caller's namespace: a query to `resolver` from a fresh
/// socket (a fresh port) every [`LOOKUP_EVERY`] while `running`, and for
/// [`UPSTREAM_DELAY`] + 1 s after, each waiting up to [`LOOKUP_PATIENCE`] for its answer while
/// the next ones go out. Lookups tried and answered.
fn lookups_in_flight(resolver: SocketAddr, running: &AtomicBool) -> (u32, u32) {
    let (mut tried, mut answered) = (0u32, 0u32);
    let mut in_flight: Vec<(UdpSocket, u16, Instant)> = Vec::new();
    let mut stopped: Option<Instant> = None;
    let mut next = Instant::now();
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if stopped.is_none() && !running.load(Ordering::Relaxed) {
            stopped = Some(now);
        }
        let sending = stopped.is_none_or(|t| now - t < UPSTREAM_DELAY + Duration::from_secs(1));
        if !sending && in_flight.is_empty() {
            return (tried, answered);
        }
        if sending && now >= next {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a lookup socket");
            socket.set_nonblocking(true).unwrap();
            let id = tried as u16;
            let query = scanner::dns_query_message(id, &format!("host{tried}.example.test"));
            socket.send_to(&query, resolver).expect("a lookup");
            in_flight.push((socket, id, now));
            tried += 1;
            next += LOOKUP_EVERY;
        }
        in_flight.retain(|(socket, id, sent)| match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == resolver && n >= 2 && buf[..2] == id.to_be_bytes() => {
                answered += 1;
                false
            }
            _ => now - *sent < LOOKUP_PATIENCE,
        });
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn spoofed_flood_at_the_hosts_udp_service_leaves_its_resolvers_answers_replies() {
    let mut lab = lab();
    let resolver_ns = lab.add_host("resolver", 4).expect("adding the resolver");
    let k = lab.k();
    // The spoofed sources: a /17 the host reaches through the attacker (its "internet"
    // gateway, which does not forward, so the host's answers end there).
    let spoofed = Ipv4Addr::new(10, k, 128, 0);
    lab.target
        .ip(&[
            "route",
            "add",
            &format!("{spoofed}/17"),
            "via",
            &lab.attacker_v4().to_string(),
        ])
        .unwrap();
    let resolver = SocketAddr::from((lab.host_v4(4), 53));
    let _upstream =
        Service::udp_delayed(&resolver_ns, resolver, UPSTREAM_DELAY).expect("the upstream");
    let service_addr = SocketAddr::from((lab.target_v4(), SERVICE_PORT));
    let service = Service::udp(&lab.target, service_addr).expect("the host's UDP service");
    let daemon = Daemon::start(&lab).expect("starting scanwatch");

    // The host resolves names in a loop, from a fresh port each time, during the flood and
    // for a while after it.
    let flooding = Arc::new(AtomicBool::new(true));
    let lookups = {
        let flooding = flooding.clone();
        spawn_in_netns(lab.target.name(), move || {
            lookups_in_flight(resolver, &flooding)
        })
    };
    let query = scanner::dns_query_message(0x5c5c, "flood.example.test");
    let target = lab.target_v4();
    let flood: FloodReport = in_netns(lab.attacker.name(), move || {
        scanner::spoofed_udp_flood(
            spoofed,
            1 << 15,
            target,
            SERVICE_PORT,
            &query,
            FLOOD,
            FLOOD_BUDGET,
            None,
        )
    })
    .unwrap()
    .expect("the spoofed flood");
    flooding.store(false, Ordering::Relaxed);
    let (tried, answered) = lookups.join().unwrap().unwrap();
    let served = service.stop().unwrap();

    let (alerts, text) = settle(&daemon);
    let evictions = metric_sample(&text, "scanwatch_flow_evictions_total");
    // The host's answers whose inbound conversation was overwritten in INBOUND by the flood
    // before they left: recorded as flows instead of counted as answers.
    let egress_answers = sample(&text, "scanwatch_egress_answers_total");
    let cost = format!(
        "flood: {} spoofed queries sent in {:.1?} ({:.0}/s; bound {FLOOD} or {FLOOD_BUDGET:?}), \
         {served} answered by the host, {egress_answers} of them known as answers \
         (scanwatch_flows_recorded_total = {}); lookups: {answered}/{tried} answered; \
         scanwatch_flow_evictions_total = {evictions:?}",
        flood.sent,
        flood.elapsed,
        flood.rate(),
        sample(&text, "scanwatch_flows_recorded_total"),
    );
    println!("{cost}");
    let upstream = resolver.ip().to_string();
    let naming: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["source"] == upstream.as_str())
        .collect();
    assert!(
        naming.is_empty(),
        "the upstream's answers were taken for probes ({cost}): {naming:#?}\nmetrics \
         excerpt:\n{}",
        excerpt(&text)
    );
    assert!(
        evictions.is_some(),
        "scanwatch_flow_evictions_total is missing ({cost}):\n{}",
        excerpt(&text)
    );
    assert!(
        answered > 0 && tried - answered <= tried / 100,
        "the lookups went unanswered ({cost})"
    );
    assert!(
        sample(&text, "scanwatch_replies_total{protocol=\"udp\"}") >= u64::from(answered),
        "some of the upstream's answers were not recognised as replies ({cost}):\n{}",
        excerpt(&text)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. The top-sources gauge is opt-in and capped.

/// The `scanwatch_top_source_probes` lines of the metrics text (help, type and samples).
fn top_source_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("scanwatch_top_source_probes"))
        .collect()
}

#[test]
fn top_source_probes_is_absent_by_default_even_after_a_scan() {
    let lab = lab();
    let daemon = Daemon::start(&lab).expect("starting scanwatch");
    attacker_port_scan_alert(&lab, &daemon, "SYN scan with top_sources = 0");
    // The walk that counts the scanner as tracked is the one that sets the top sources.
    let text =
        daemon.wait_for_metrics(WALK_WITHIN, |m| sample(m, "scanwatch_tracked_sources") >= 1);
    assert!(
        sample(&text, "scanwatch_tracked_sources") >= 1,
        "the scanner is tracked:\n{}",
        excerpt(&text)
    );
    let lines = top_source_lines(&text);
    assert!(
        lines.is_empty(),
        "scanwatch_top_source_probes is exported with the default top_sources = 0: {lines:#?}"
    );
}

#[test]
fn top_source_probes_exports_at_most_top_sources_series_after_scans() {
    const TOP: usize = 2;
    let mut lab = lab();
    let third = lab.add_host("scanner3", 5).expect("adding a third scanner");
    let dir = TempDir::new("top-sources").unwrap();
    let daemon = daemon_with_config(&lab, &dir, &format!("top_sources = {TOP}\n"));
    let target = lab.target_v4();
    // Three scanners of different sizes: the two largest make the top two.
    for (ns, ports, source) in [
        (lab.attacker.name(), 60, lab.attacker_v4()),
        (lab.benign.name(), 40, lab.benign_v4()),
        (third.name(), 25, lab.host_v4(5)),
    ] {
        let sent = in_netns(ns, move || {
            scanner::syn_scan(target, 1..=ports, SCAN_BUDGET)
        })
        .unwrap()
        .expect("SYN scan");
        assert_eq!(sent, usize::from(ports));
        expect_alert(&daemon, &source.to_string(), &["port_scan"], "SYN scan");
    }
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("scanwatch_top_source_probes{"))
            .map(|l| l.split('"').nth(1).unwrap_or_default().to_owned())
            .collect()
    };
    let text = daemon.wait_for_metrics(WALK_WITHIN, |m| series(m).len() >= TOP);
    let mut shown = series(&text);
    shown.sort();
    let mut want = vec![lab.attacker_v4().to_string(), lab.benign_v4().to_string()];
    want.sort();
    assert!(
        !shown.is_empty() && shown.len() <= TOP,
        "top_sources = {TOP} after three scans: {} series: {:#?}",
        shown.len(),
        top_source_lines(&text)
    );
    assert_eq!(
        shown,
        want,
        "the two most active scanners: {:#?}",
        top_source_lines(&text)
    );
}
