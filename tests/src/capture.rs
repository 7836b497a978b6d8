//! Records what crosses one interface of a lab namespace, both directions, into a pcap
//! or pcapng file (raw `AF_PACKET` socket, no tcpdump): the captures `scanwatch replay` is checked against.

use std::{
    io,
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
    pcap::{PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

use crate::netns::spawn_in_netns;

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
