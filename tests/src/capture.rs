//! Records what crosses one interface of a lab namespace, both directions, into a pcap
//! or pcapng file (raw `AF_PACKET` socket, no tcpdump): the captures `scanwatch replay` is checked against.

use std::{
    io,
    net::IpAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result, anyhow};
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use crate::{
    netns::spawn_in_netns,
    packet::{PacketBuilder, tcp_flags},
};

/// Largest frame kept (jumbo frames and GRO'd segments are cut; scans are small).
const SNAPLEN: usize = 65_535;
/// Socket receive buffer: a scan's burst of probes and answers must not be dropped.
const RCVBUF: i32 = 8 << 20;

/// Frames with their capture time since the epoch.
type Frames = Vec<(Duration, Vec<u8>)>;

/// A running capture; [`Recorder::finish`] stops it.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Result<io::Result<Frames>>>,
}

/// An `AF_PACKET` socket bound to `ifname` (all protocols), with a short receive timeout so
/// the recorder notices when to stop.
fn packet_socket(ifname: &str) -> io::Result<i32> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the fd is checked and closed by the caller.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    let rcvbuf = RCVBUF;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: valid pointers and lengths of the structures passed.
    let ok = unsafe {
        libc::bind(
            fd,
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        ) == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const rcvbuf).cast(),
                size_of::<i32>() as u32,
            ) == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as u32,
            ) == 0
    };
    if ifindex == 0 || !ok {
        let e = io::Error::last_os_error();
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    Ok(fd)
}

impl Recorder {
    /// Starts capturing on `ifname` inside namespace `ns`; returns once the socket is bound.
    pub fn start(ns: &str, ifname: &str) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (bound, ready) = std::sync::mpsc::channel();
        let ifname = ifname.to_owned();
        let flag = stop.clone();
        let thread = spawn_in_netns(ns, move || {
            let fd = match packet_socket(&ifname) {
                Ok(fd) => {
                    let _ = bound.send(Ok(()));
                    fd
                }
                Err(e) => {
                    let _ = bound.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            let mut frames = Vec::new();
            let mut buf = vec![0u8; SNAPLEN];
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: buf is writable for its length.
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) {
                        continue;
                    }
                    // SAFETY: our own fd.
                    unsafe { libc::close(fd) };
                    return Err(e);
                }
                let at = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                frames.push((at, buf[..n as usize].to_vec()));
            }
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
            Ok(frames)
        });
        match ready.recv() {
            Ok(Ok(())) => Ok(Self { stop, thread }),
            Ok(Err(e)) => Err(anyhow!("capturing in {ns}: {e}")),
            Err(_) => Err(anyhow!("the capture thread in {ns} ended before binding")),
        }
    }

    /// Stops the capture; the frames, to write as pcap or pcapng.
    pub fn finish(self) -> Result<Captured> {
        self.stop.store(true, Ordering::Relaxed);
        let frames = self
            .thread
            .join()
            .map_err(|_| anyhow!("the capture thread panicked"))??
            .context("capturing")?;
        Ok(Captured(frames))
    }
}

/// An Ethernet frame as a frame of link type `link`, if that link type can hold it.
fn relink(frame: &[u8], link: DataLink, outgoing: bool) -> Option<Vec<u8>> {
    let ethertype = frame.get(12..14)?;
    let packet = frame.get(14..)?;
    let ip = ethertype == [0x08, 0x00] || ethertype == [0x86, 0xdd];
    let packet_type: u8 = if outgoing { 4 } else { 0 };
    let mut out = Vec::with_capacity(frame.len() + 6);
    match link {
        DataLink::LINUX_SLL => {
            // Packet type, ARPHRD_ETHER, address length, address (8 bytes), protocol.
            out.extend([0, packet_type, 0, 1, 0, 6]);
            out.extend(frame.get(6..12)?);
            out.extend([0, 0]);
            out.extend(ethertype);
        }
        DataLink::LINUX_SLL2 => {
            // Protocol, reserved, interface index, ARPHRD_ETHER, packet type, address length,
            // address (8 bytes).
            out.extend(ethertype);
            out.extend([0, 0, 0, 0, 0, 2, 0, 1, packet_type, 6]);
            out.extend(frame.get(6..12)?);
            out.extend([0, 0]);
        }
        DataLink::RAW if ip => {}
        DataLink::IPV4 if ethertype == [0x08, 0x00] => {}
        DataLink::IPV6 if ethertype == [0x86, 0xdd] => {}
        _ => return None,
    }
    out.extend(packet);
    Some(out)
}

/// A finished capture.
pub struct Captured(Frames);

impl Captured {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The frames `keep` accepts, in capture order (called once per frame, in order).
    #[must_use]
    pub fn retain(self, mut keep: impl FnMut(&[u8]) -> bool) -> Self {
        Self(self.0.into_iter().filter(|(_, f)| keep(f)).collect())
    }

    /// Writes the frames to `path` as pcap (microseconds, Ethernet).
    pub fn write_pcap(&self, path: &Path) -> Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = PcapWriter::new(io::BufWriter::new(file))?;
        for (at, data) in &self.0 {
            writer.write_packet(&PcapPacket::new(*at, data.len() as u32, data))?;
        }
        Ok(())
    }

    /// Writes the frames to `path` as pcap with `unrunnable` frames inserted: a 4-byte record
    /// (original length 60), a 13-byte frame and a 20 KB TCP segment (as GRO and TSO make)
    /// from `local`, spread among the captured frames. Returns how many were inserted.
    pub fn write_pcap_with_unrunnable(&self, path: &Path, local: IpAddr) -> Result<usize> {
        let peer: IpAddr = if local.is_ipv4() {
            [198, 51, 100, 99].into()
        } else {
            "2001:db8:ffff::99".parse()?
        };
        let segment = vec![0x5a; 20_000];
        let large = PacketBuilder::new(local, peer)
            .src_port(80)
            .tcp(40_000, tcp_flags::ACK)
            .payload(&segment)
            .build();
        let runt = self.0.first().map(|(_, f)| f.clone()).unwrap_or_default();
        let inserts = [
            (runt[..runt.len().min(4)].to_vec(), 60),
            (runt[..runt.len().min(13)].to_vec(), 13),
            (large.clone(), large.len() as u32),
        ];
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = PcapWriter::new(io::BufWriter::new(file))?;
        let every = (self.0.len() / inserts.len()).max(1);
        let mut pending = inserts.iter();
        for (i, (at, data)) in self.0.iter().enumerate() {
            writer.write_packet(&PcapPacket::new(*at, data.len() as u32, data))?;
            if i % every == 0
                && let Some((insert, orig)) = pending.next()
            {
                writer.write_packet(&PcapPacket::new(*at, *orig, insert))?;
            }
        }
        for (insert, orig) in pending {
            writer.write_packet(&PcapPacket::new(Duration::ZERO, *orig, insert))?;
        }
        Ok(inserts.len())
    }

    /// Writes the IP frames to `path` as pcap of link type `link` (`LINUX_SLL`, `LINUX_SLL2`,
    /// `RAW`, `IPV4` or `IPV6`): the Ethernet header stripped, a cooked header (packet type
    /// outgoing when `outgoing` says the host sent the frame, else host) put in its place for
    /// SLL and SLL2. Frames that link type cannot hold (ARP in raw IP) are left out.
    pub fn write_pcap_as(
        &self,
        path: &Path,
        link: DataLink,
        outgoing: impl Fn(&[u8]) -> bool,
    ) -> Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let header = PcapHeader {
            datalink: link,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(io::BufWriter::new(file), header)?;
        for (at, data) in &self.0 {
            let Some(frame) = relink(data, link, outgoing(data)) else {
                continue;
            };
            writer.write_packet(&PcapPacket::new(*at, frame.len() as u32, &frame))?;
        }
        Ok(())
    }

    /// Writes the frames to `path` as pcapng: one Ethernet interface with nanosecond
    /// timestamps (`if_tsresol` 9), one enhanced packet block per frame.
    pub fn write_pcapng(&self, path: &Path) -> Result<()> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = PcapNgWriter::new(io::BufWriter::new(file))?;
        let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, SNAPLEN as u32);
        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
        writer.write_pcapng_block(idb)?;
        for (at, data) in &self.0 {
            writer.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: *at,
                original_len: data.len() as u32,
                data: data.as_slice().into(),
                options: Vec::new(),
            })?;
        }
        Ok(())
    }
}
