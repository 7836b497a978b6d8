//! A small scanner for the end-to-end tests, so they do not depend on nmap: TCP SYN and
//! FIN/NULL/Xmas probes through a raw socket (our own TCP header, checksummed), a connect()
//! scan, UDP probes and an ICMP echo sweep. Call it on a thread inside the attacker's namespace
//! ([`crate::netns::in_netns`]). Every scan is bounded by its list of targets and by a time
//! budget; each returns how many probes it sent.

use std::{
    collections::BTreeSet,
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use crate::packet::checksum;
pub use crate::packet::tcp_flags;

/// FIN|PSH|URG, nmap's -sX.
pub const XMAS: u8 = tcp_flags::FIN | tcp_flags::PSH | tcp_flags::URG;

/// Source port of raw TCP probes (nmap also uses one fixed source port per scan).
const RAW_SOURCE_PORT: u16 = 47_311;

/// A 20-byte TCP header with `flags`, checksummed over the IPv4 pseudo-header.
pub fn tcp_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    // Acknowledgment number 0 (bytes 8..12); data offset 5 words.
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&1024u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = libc::IPPROTO_TCP as u8;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let sum = checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An ICMP echo request with `id` and `seq` and a small payload, checksummed.
pub fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = 8;
    m[4..6].copy_from_slice(&id.to_be_bytes());
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    m[8..16].copy_from_slice(b"swprobe!");
    let sum = checksum(&[&m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A raw IPv4 socket of `protocol` (the kernel writes the IP header).
fn raw_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn send_to(fd: &OwnedFd, bytes: &[u8], dst: Ipv4Addr) -> io::Result<()> {
    let sa = sockaddr(dst);
    // SAFETY: bytes and sa are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_recv_timeout(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros().max(1)),
    };
    // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The local address the kernel would use to reach `dst` (the source of our raw probes, which
/// the TCP checksum covers).
pub fn source_for(dst: Ipv4Addr) -> io::Result<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect((dst, 9))?;
    match socket.local_addr()?.ip() {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(a) => Err(io::Error::other(format!("IPv6 source {a} for {dst}"))),
    }
}

/// Sends one TCP segment with `flags` to each port of `ports` on `dst` through a raw socket,
/// within `budget`. SYN is nmap's -sS; FIN, 0 (NULL) and [`XMAS`] its -sF, -sN, -sX. Returns
/// the probes sent.
pub fn tcp_flag_scan(
    dst: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
    flags: u8,
    budget: Duration,
) -> io::Result<usize> {
    let deadline = Instant::now() + budget;
    let src = source_for(dst)?;
    let fd = raw_socket(libc::IPPROTO_TCP)?;
    let mut sent = 0;
    for port in ports {
        if Instant::now() >= deadline {
            break;
        }
        let seq = 0x5ca7_0000 | u32::from(port);
        send_to(
            &fd,
            &tcp_header(src, dst, RAW_SOURCE_PORT, port, seq, flags),
            dst,
        )?;
        sent += 1;
    }
    Ok(sent)
}

/// TCP SYN scan (nmap -sS): see [`tcp_flag_scan`].
pub fn syn_scan(
    dst: Ipv4Addr,
    ports: impl IntoIterator<Item = u16>,
    budget: Duration,
) -> io::Result<usize> {
    tcp_flag_scan(dst, ports, tcp_flags::SYN, budget)
}

/// A raw socket that sends whole IPv4 packets, header included (`IPPROTO_RAW`): the source
/// address is ours to forge.
pub struct Forger(OwnedFd);

impl Forger {
    /// Opens the socket (in the caller's namespace).
    pub fn new() -> io::Result<Self> {
        raw_socket(libc::IPPROTO_RAW).map(Self)
    }

    /// Sends a TCP segment with `flags` from `src` (forged) to `dst:port`, with IP TTL `ttl`.
    pub fn tcp(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        port: u16,
        flags: u8,
        ttl: u8,
    ) -> io::Result<()> {
        let mut packet = [0u8; 40];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&40u16.to_be_bytes());
        packet[6] = 0x40; // DF
        packet[8] = ttl;
        packet[9] = libc::IPPROTO_TCP as u8;
        packet[12..16].copy_from_slice(&src.octets());
        packet[16..20].copy_from_slice(&dst.octets());
        let sum = checksum(&[&packet[..20]]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        let seq = 0x0f0e_0000 | u32::from(port);
        packet[20..].copy_from_slice(&tcp_header(src, dst, RAW_SOURCE_PORT, port, seq, flags));
        send_to(&self.0, &packet, dst)
    }

    /// A SYN scan of `ports` on `dst` forged from `src`, within `budget`; returns probes sent.
    pub fn syn_scan(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ports: impl IntoIterator<Item = u16>,
        budget: Duration,
    ) -> io::Result<usize> {
        self.syn_scan_ttl(src, dst, ports, 64, budget)
    }

    /// [`Forger::syn_scan`] with IP TTL `ttl`: as if sent from another network position.
    pub fn syn_scan_ttl(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ports: impl IntoIterator<Item = u16>,
        ttl: u8,
        budget: Duration,
    ) -> io::Result<usize> {
        self.flag_scan_ttl(src, dst, ports, tcp_flags::SYN, ttl, budget)
    }

    /// One segment with `flags` (bare ACK: nmap -sA) to each port of `ports` on `dst`,
    /// forged from `src` with IP TTL `ttl`, within `budget`; returns probes sent.
    pub fn flag_scan_ttl(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ports: impl IntoIterator<Item = u16>,
        flags: u8,
        ttl: u8,
        budget: Duration,
    ) -> io::Result<usize> {
        let deadline = Instant::now() + budget;
        let mut sent = 0;
        for port in ports {
            if Instant::now() >= deadline {
                break;
            }
            self.tcp(src, dst, port, flags, ttl)?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// What a connect() scan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectReport {
    pub tried: usize,
    pub open: Vec<u16>,
    pub refused: usize,
    pub timed_out: usize,
}

/// connect() to each port of `ports` on `dst` (nmap -sT), each attempt bounded by
/// `per_port`, the whole scan by `budget`.
pub fn connect_scan(
    dst: IpAddr,
    ports: impl IntoIterator<Item = u16>,
    per_port: Duration,
    budget: Duration,
) -> ConnectReport {
    let deadline = Instant::now() + budget;
    let mut report = ConnectReport::default();
    for port in ports {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        report.tried += 1;
        match TcpStream::connect_timeout(&SocketAddr::new(dst, port), per_port.min(deadline - now))
        {
            Ok(_) => report.open.push(port),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => report.refused += 1,
            Err(_) => report.timed_out += 1,
        }
    }
    report
}

/// One small UDP datagram to each port of `ports` on `dst` (nmap -sU), within `budget`.
pub fn udp_scan(
    dst: IpAddr,
    ports: impl IntoIterator<Item = u16>,
    budget: Duration,
) -> io::Result<usize> {
    let deadline = Instant::now() + budget;
    let unspecified: IpAddr = match dst {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((unspecified, 0))?;
    let mut sent = 0;
    for port in ports {
        if Instant::now() >= deadline {
            break;
        }
        socket.send_to(b"scanwatch-probe", (dst, port))?;
        sent += 1;
    }
    Ok(sent)
}

/// What a ping sweep found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub sent: usize,
    /// Hosts that answered.
    pub answered: BTreeSet<Ipv4Addr>,
}

/// ICMP echo requests to each of `hosts` (nmap -sn -PE), within `budget`; then waits up to
/// `wait` for the replies (also within `budget`).
pub fn ping_sweep(
    hosts: impl IntoIterator<Item = Ipv4Addr>,
    wait: Duration,
    budget: Duration,
) -> io::Result<SweepReport> {
    let start = Instant::now();
    let deadline = start + budget;
    let fd = raw_socket(libc::IPPROTO_ICMP)?;
    let id = (std::process::id() as u16) ^ (rand::random::<u16>() | 1);
    let mut report = SweepReport::default();
    let mut wanted = BTreeSet::new();
    for (seq, host) in hosts.into_iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        send_to(&fd, &echo_request(id, seq as u16), host)?;
        wanted.insert(host);
        report.sent += 1;
    }
    let wait_until = (Instant::now() + wait).min(deadline);
    let mut buf = [0u8; 1500];
    while report.answered.len() < wanted.len() {
        let now = Instant::now();
        if now >= wait_until {
            break;
        }
        set_recv_timeout(&fd, wait_until - now)?;
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) {
                continue;
            }
            return Err(e);
        }
        if let Some(from) = echo_reply_from(&buf[..n as usize], id)
            && wanted.contains(&from)
        {
            report.answered.insert(from);
        }
    }
    Ok(report)
}

/// The source of an IPv4 packet (as a raw ICMP socket delivers it) if it is an echo reply
/// with identifier `id`.
fn echo_reply_from(packet: &[u8], id: u16) -> Option<Ipv4Addr> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(ihl..)?;
    (icmp.len() >= 8 && icmp[0] == 0 && u16::from_be_bytes([icmp[4], icmp[5]]) == id)
        .then(|| Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]))
}

/// One echo request to `dst`; true when it answered within `timeout`.
pub fn ping(dst: Ipv4Addr, timeout: Duration) -> io::Result<bool> {
    Ok(
        ping_sweep([dst], timeout, timeout + Duration::from_millis(100))?
            .answered
            .contains(&dst),
    )
}

/// A DNS query (`A` record of `name`, recursion desired) with identifier `id`.
pub fn dns_query_message(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(18 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    m
}

/// One DNS-style lookup, as a stub resolver makes it: a fresh UDP socket (so a fresh ephemeral
/// source port), one query to `resolver`, and a wait of up to `timeout` for a response from
/// it with the same identifier. True when answered.
pub fn dns_query(resolver: SocketAddr, id: u16, name: &str, timeout: Duration) -> io::Result<bool> {
    let unspecified: IpAddr = match resolver {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((unspecified, 0))?;
    socket.send_to(&dns_query_message(id, name), resolver)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        socket.set_read_timeout(Some(deadline - now))?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let answer = &buf[..n];
                if from == resolver
                    && n >= 12
                    && u16::from_be_bytes([answer[0], answer[1]]) == id
                    && answer[2] & 0x80 != 0
                {
                    return Ok(true);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// What a spoofed flood sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FloodReport {
    pub sent: usize,
    pub elapsed: Duration,
}

impl FloodReport {
    /// Datagrams sent per second.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends up to `count` UDP datagrams carrying `payload` to `dst`:`dport`, each from a
/// different spoofed source: address `i % span` of the /`32 - log2(span)` at `spoofed`
/// (`span` a power of two), port `1024 + i / span`, so no (address, port) pair repeats within
/// `span * 64512` datagrams. Raw socket with our own IPv4 header (the kernel fills in the
/// checksum and identification; UDP checksum 0, "none"); stops at `count` or when `budget`
/// runs out. At most `per_second` datagrams a second when given: a veth drops what its peer's
/// ring cannot take, so an unpaced flood delivers less than a paced one. Call it inside the
/// sending namespace; the replies go wherever that namespace's peers route `spoofed`.
#[expect(
    clippy::too_many_arguments,
    reason = "a flood's shape: sources, destination, payload and bounds"
)]
pub fn spoofed_udp_flood(
    spoofed: Ipv4Addr,
    span: u32,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
    count: usize,
    budget: Duration,
    per_second: Option<u32>,
) -> io::Result<FloodReport> {
    assert!(span.is_power_of_two(), "span {span} is not a power of two");
    let started = Instant::now();
    let deadline = started + budget;
    let fd = raw_socket(libc::IPPROTO_RAW)?;
    let udp_len = 8 + payload.len();
    let mut packet = vec![0u8; 20 + udp_len];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = libc::IPPROTO_UDP as u8;
    packet[16..20].copy_from_slice(&dst.octets());
    packet[22..24].copy_from_slice(&dport.to_be_bytes());
    packet[24..26].copy_from_slice(&(udp_len as u16).to_be_bytes());
    packet[28..].copy_from_slice(payload);
    let base = u32::from(spoofed) & !(span - 1);
    let mut sent = 0;
    while sent < count {
        // The clock costs more than a send: look at it every 1024 datagrams.
        if sent % 1024 == 0 && Instant::now() >= deadline {
            break;
        }
        if let Some(rate) = per_second
            && sent % 64 == 0
        {
            let due = started + Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
        let i = sent as u32;
        packet[12..16].copy_from_slice(&(base | (i % span)).to_be_bytes());
        packet[20..22].copy_from_slice(&(1024 + (i / span) as u16).to_be_bytes());
        match send_to(&fd, &packet, dst) {
            Ok(()) => sent += 1,
            // A full socket buffer: wait for the wire, as a flooder would.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(FloodReport {
        sent,
        elapsed: started.elapsed(),
    })
}

/// First port of traceroute's UDP probes.
pub const TRACEROUTE_PORT: u16 = 33_434;

/// What a traceroute found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceReport {
    pub sent: usize,
    /// The address that answered at each TTL (1, 2, ...), `None` where nobody did.
    pub hops: Vec<Option<Ipv4Addr>>,
    /// The destination answered (port unreachable): the trace is complete.
    pub reached: bool,
}

/// A classic UDP traceroute, as `traceroute` does by default: `probes_per_hop` datagrams per TTL
/// from 1 up to `max_hops`, to ports 33434, 33435, ... of `dst` from one ephemeral port, each
/// waiting up to `wait` for the ICMP time exceeded (a router) or port unreachable (the
/// destination) quoting it; stops at the destination, or when `budget` runs out.
pub fn traceroute(
    dst: Ipv4Addr,
    max_hops: u8,
    probes_per_hop: u8,
    wait: Duration,
    budget: Duration,
) -> io::Result<TraceReport> {
    let deadline = Instant::now() + budget;
    let icmp = raw_socket(libc::IPPROTO_ICMP)?;
    let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    let sport = udp.local_addr()?.port();
    let mut report = TraceReport::default();
    let mut port = TRACEROUTE_PORT;
    let mut buf = [0u8; 1500];
    'hops: for ttl in 1..=max_hops {
        udp.set_ttl(u32::from(ttl))?;
        let mut hop = None;
        for _ in 0..probes_per_hop {
            if Instant::now() >= deadline {
                report.hops.push(hop);
                break 'hops;
            }
            udp.send_to(b"scanwatch-trace", (dst, port))?;
            report.sent += 1;
            let wait_until = (Instant::now() + wait).min(deadline);
            loop {
                let now = Instant::now();
                if now >= wait_until {
                    break;
                }
                set_recv_timeout(&icmp, wait_until - now)?;
                // SAFETY: buf is valid for writes of its length.
                let n =
                    unsafe { libc::recv(icmp.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) {
                        continue;
                    }
                    return Err(e);
                }
                if let Some((kind, from)) = icmp_error_for(&buf[..n as usize], dst, sport, port) {
                    hop = Some(from);
                    report.reached |= kind == IcmpError::PortUnreachable && from == dst;
                    break;
                }
            }
            port = port.wrapping_add(1);
        }
        report.hops.push(hop);
        if report.reached {
            break;
        }
    }
    Ok(report)
}

/// The ICMP errors a traceroute tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11: a router on the way.
    TimeExceeded,
    /// Type 3, code 3: the destination's closed port.
    PortUnreachable,
    /// Any other type 3.
    OtherUnreachable,
}

/// The kind and sender of an IPv4 ICMP error (as a raw ICMP socket delivers it, IP header
/// first) if it quotes our UDP datagram from `sport` to `dst`:`dport`.
pub fn icmp_error_for(
    packet: &[u8],
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> Option<(IcmpError, Ipv4Addr)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let from = Ipv4Addr::new(
        *packet.get(12)?,
        *packet.get(13)?,
        *packet.get(14)?,
        *packet.get(15)?,
    );
    let icmp = packet.get(ihl..)?;
    let kind = match (icmp.first()?, icmp.get(1)?) {
        (11, _) => IcmpError::TimeExceeded,
        (3, 3) => IcmpError::PortUnreachable,
        (3, _) => IcmpError::OtherUnreachable,
        _ => return None,
    };
    let quoted = icmp.get(8..)?;
    let quoted_ihl = usize::from(quoted.first()? & 0x0f) * 4;
    let quoted_dst = Ipv4Addr::new(
        *quoted.get(16)?,
        *quoted.get(17)?,
        *quoted.get(18)?,
        *quoted.get(19)?,
    );
    let udp = quoted.get(quoted_ihl..quoted_ihl + 4)?;
    let matches = *quoted.get(9)? == libc::IPPROTO_UDP as u8
        && quoted_dst == dst
        && u16::from_be_bytes([udp[0], udp[1]]) == sport
        && u16::from_be_bytes([udp[2], udp[3]]) == dport;
    matches.then_some((kind, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_checksum_verifies_to_zero() {
        let src = Ipv4Addr::new(10, 1, 0, 2);
        let dst = Ipv4Addr::new(10, 1, 0, 1);
        let h = tcp_header(src, dst, 40000, 80, 7, tcp_flags::SYN);
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = 6;
        pseudo[11] = 20;
        assert_eq!(checksum(&[&pseudo, &h]), 0);
    }

    #[test]
    fn dns_query_message_encodes_labels_and_question() {
        let m = dns_query_message(0xbeef, "www.example.test");
        assert_eq!(&m[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&m[12..17], b"\x03www\x07");
        assert_eq!(&m[m.len() - 5..], &[0, 0, 1, 0, 1]);
    }

    #[test]
    fn icmp_error_parser_matches_only_our_datagram() {
        let dst = Ipv4Addr::new(10, 9, 3, 2);
        // Outer IPv4 header from 10.9.0.5, ICMP time exceeded, quoting IPv4 + UDP 40000 -> 33434.
        let mut p = vec![
            0x45u8, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 9, 0, 5, 10, 9, 0, 1,
        ];
        p.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0, 0, 1, 17, 0, 0, 10, 9, 0, 1, 10, 9, 3, 2,
        ]);
        p.extend_from_slice(&[0x9c, 0x40, 0x82, 0x9a, 0, 8, 0, 0]);
        let hop = Ipv4Addr::new(10, 9, 0, 5);
        assert_eq!(
            icmp_error_for(&p, dst, 40_000, TRACEROUTE_PORT),
            Some((IcmpError::TimeExceeded, hop))
        );
        assert_eq!(icmp_error_for(&p, dst, 40_001, TRACEROUTE_PORT), None);
        assert_eq!(icmp_error_for(&p, dst, 40_000, TRACEROUTE_PORT + 1), None);
        p[20] = 3;
        p[21] = 3;
        assert_eq!(
            icmp_error_for(&p, dst, 40_000, TRACEROUTE_PORT),
            Some((IcmpError::PortUnreachable, hop))
        );
        p[20] = 0;
        assert_eq!(
            icmp_error_for(&p, dst, 40_000, TRACEROUTE_PORT),
            None,
            "an echo reply is no error"
        );
    }

    #[test]
    fn echo_request_checksum_verifies_to_zero() {
        assert_eq!(checksum(&[&echo_request(0x1234, 9)]), 0);
    }

    #[test]
    fn echo_reply_parser_matches_id_only() {
        let mut p = vec![
            0x45u8, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 9, 1, 7, 10, 9, 0, 2,
        ];
        p.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert_eq!(
            echo_reply_from(&p, 0x1234),
            Some(Ipv4Addr::new(10, 9, 1, 7))
        );
        assert_eq!(echo_reply_from(&p, 0x1235), None);
        p[20] = 8;
        assert_eq!(
            echo_reply_from(&p, 0x1234),
            None,
            "a request is not a reply"
        );
    }
}
