//! Malformed frames the soak sends a few hundred times a minute, and the `AF_PACKET` socket
//! that puts them on a wire: the parser's error paths under a steady trickle, as a real network
//! delivers them (truncated headers, bad lengths, flags no stack sends).

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use scanwatch_tests::packet::{Ext, PacketBuilder, tcp_flags};

/// Destination port of the malformed TCP and UDP frames: one port, so they never add up to a
/// scan of their own.
const PORT: u16 = 7;

/// A named malformed frame, without its Ethernet addresses (see [`FrameSender::send`]).
pub struct Frame {
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

/// The malformed frames, from `src` to `dst` (IPv4) and `src6` to `dst6` (IPv6). Most are
/// parse errors the agent counts (`scanwatch_parse_errors_total{reason}`); the TCP flag
/// combinations are well-formed segments no stack sends.
pub fn malformed(src: Ipv4Addr, dst: Ipv4Addr, src6: Ipv6Addr, dst6: Ipv6Addr) -> Vec<Frame> {
    let v4 = || PacketBuilder::new(src, dst);
    let v6 = || PacketBuilder::new(src6, dst6);
    let syn = v4().syn(PORT);
    let l3 = syn.l3_offset();
    let with = |mut frame: Vec<u8>, at: usize, byte: u8| {
        frame[at] = byte;
        frame
    };
    let cut = |mut frame: Vec<u8>, len: usize| {
        frame.truncate(len);
        frame
    };
    let frames = [
        ("ipv4_truncated", cut(syn.build(), l3 + 12)),
        ("ipv4_ihl_3", with(syn.build(), l3, 0x43)),
        ("ipv4_ihl_past_packet", with(syn.build(), l3, 0x4f)),
        ("bad_ip_version", with(syn.build(), l3, 0x65)),
        ("tcp_truncated", v4().syn(PORT).l4_len(12).build()),
        (
            "tcp_data_offset_2",
            with(syn.build(), syn.l4_offset() + 12, 2 << 4),
        ),
        ("udp_truncated", v4().udp(PORT).l4_len(4).build()),
        ("icmp_truncated", v4().echo_request().l4_len(2).build()),
        ("ipv6_truncated", cut(v6().syn(PORT).build(), l3 + 20)),
        (
            "ipv6_ext_truncated",
            cut(v6().ext(Ext::DestOpts).syn(PORT).build(), l3 + 40 + 4),
        ),
        (
            "tcp_syn_fin",
            v4().tcp(PORT, tcp_flags::SYN | tcp_flags::FIN).build(),
        ),
        (
            "tcp_syn_rst",
            v4().tcp(PORT, tcp_flags::SYN | tcp_flags::RST).build(),
        ),
        ("tcp_all_flags", v4().tcp(PORT, 0xff).build()),
        ("tcp_no_flags", v4().tcp(PORT, 0).build()),
    ];
    frames
        .into_iter()
        .map(|(name, bytes)| Frame { name, bytes })
        .collect()
}

/// An `AF_PACKET` socket that sends whole Ethernet frames out of one interface (of the
/// calling thread's namespace), with that interface's address as source and a fixed
/// destination address.
pub struct FrameSender {
    fd: OwnedFd,
    ifindex: i32,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
}

impl FrameSender {
    /// Opens the socket on `ifname`, sending from `src_mac` to `dst_mac`.
    pub fn new(ifname: &str, src_mac: [u8; 6], dst_mac: [u8; 6]) -> io::Result<Self> {
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: this socket sends only, it receives nothing.
        // SAFETY: plain socket(2); the descriptor is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ifindex: ifindex as i32,
            dst_mac,
            src_mac,
        })
    }

    /// Sends `frame` with this sender's Ethernet addresses written over its first 12 bytes.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut bytes = frame.to_vec();
        bytes[..6].copy_from_slice(&self.dst_mac);
        bytes[6..12].copy_from_slice(&self.src_mac);
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&self.dst_mac);
        // SAFETY: the frame and the address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// A MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mac_address_and_rejects_others() {
        assert_eq!(
            parse_mac("02:1a:ff:00:0b:c3\n"),
            Some([0x02, 0x1a, 0xff, 0x00, 0x0b, 0xc3])
        );
        assert_eq!(parse_mac("02:1a:ff:00:0b"), None);
        assert_eq!(parse_mac("02:1a:ff:00:0b:c3:00"), None);
        assert_eq!(parse_mac("02:1a:ff:00:0b:zz"), None);
    }

    #[test]
    fn every_malformed_frame_has_an_ethernet_header() {
        let frames = malformed(
            Ipv4Addr::new(10, 1, 0, 2),
            Ipv4Addr::new(10, 1, 0, 1),
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::LOCALHOST,
        );
        assert!(
            frames.iter().all(|f| f.bytes.len() >= 14),
            "Ethernet header"
        );
        let ihl = frames.iter().find(|f| f.name == "ipv4_ihl_3").unwrap();
        assert_eq!(ihl.bytes[14], 0x43);
        let cut = frames.iter().find(|f| f.name == "ipv4_truncated").unwrap();
        assert_eq!(cut.bytes.len(), 14 + 12);
    }
}
