//! Builds Ethernet frames for the kernel tests: any mix of VLAN tags, IPv4 (options,
//! fragments) or IPv6 (extension headers, fragments), and TCP/UDP/ICMP/ICMPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub use scanwatch_common::classify::tcp_flags;

/// The L4 part of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Tcp {
        dst_port: u16,
        flags: u8,
    },
    Udp {
        dst_port: u16,
    },
    /// ICMP (v4 or v6, by the IP version) with type and code.
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    /// Raw payload after the IP header, with this protocol number.
    Raw {
        proto: u8,
        payload: Vec<u8>,
    },
}

/// An IPv6 extension header to insert before the L4 header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    /// Fragment header with this offset (8-byte units) and more-fragments flag.
    Fragment {
        offset: u16,
        more: bool,
    },
}

/// A packet under construction.
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    src: IpAddr,
    dst: IpAddr,
    vlans: Vec<u16>,
    ipv4_options: usize,
    /// IPv4 fragment: (offset in 8-byte units, more fragments).
    ipv4_fragment: Option<(u16, bool)>,
    ext: Vec<Ext>,
    l4: L4,
    /// Truncate the L4 part to this many bytes (the IP length fields say so too).
    l4_len: Option<usize>,
    /// TCP/UDP source port, or the ICMP echo identifier.
    src_port: u16,
    /// Bytes after the 8-byte ICMP header (an ICMP error's quoted datagram).
    icmp_body: Vec<u8>,
    /// IP identification: IPv4's 16-bit field (low bits), IPv6 fragment headers' 32-bit one.
    ident: Option<u32>,
    /// IPv4 TTL or IPv6 hop limit (default 64).
    ttl: u8,
    /// TCP sequence and acknowledgement numbers (default 1 and 0).
    seq: u32,
    ack: u32,
    /// Bytes after the TCP header (a segment's payload).
    tcp_payload: Vec<u8>,
}

impl PacketBuilder {
    /// A packet from `src` to `dst`, by default a TCP SYN to port 80.
    pub fn new(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            vlans: Vec::new(),
            ipv4_options: 0,
            ipv4_fragment: None,
            ext: Vec::new(),
            l4: L4::Tcp {
                dst_port: 80,
                flags: tcp_flags::SYN,
            },
            l4_len: None,
            src_port: 40000,
            icmp_body: Vec::new(),
            ident: None,
            ttl: 64,
            seq: 1,
            ack: 0,
            tcp_payload: Vec::new(),
        }
    }

    /// Sets the IPv4 TTL or IPv6 hop limit, as it arrives.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the TCP sequence number.
    #[must_use]
    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    /// Sets the TCP acknowledgement number.
    #[must_use]
    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }

    /// Sets the datagram's identification (IPv4: its low 16 bits; IPv6: every fragment
    /// header's). Defaults: 0x1234 (IPv4), 1 (IPv6).
    #[must_use]
    pub fn ident(mut self, id: u32) -> Self {
        self.ident = Some(id);
        self
    }

    /// Sets the TCP/UDP source port, or the ICMP echo identifier.
    #[must_use]
    pub fn src_port(mut self, port: u16) -> Self {
        self.src_port = port;
        self
    }

    /// Makes this an ICMP error (`icmp_type`, `code`) quoting `quoted`'s IP header and first
    /// eight L4 bytes, as a router or host would.
    #[must_use]
    pub fn icmp_error_quoting(mut self, icmp_type: u8, code: u8, quoted: &PacketBuilder) -> Self {
        let frame = quoted.build();
        let start = quoted.l3_offset();
        let end = (quoted.l4_offset() + 8).min(frame.len());
        self.icmp_body = frame[start..end].to_vec();
        self.icmp(icmp_type, code)
    }

    /// TCP segment with `flags` to `port`.
    #[must_use]
    pub fn tcp(mut self, port: u16, flags: u8) -> Self {
        self.l4 = L4::Tcp {
            dst_port: port,
            flags,
        };
        self
    }

    /// Payload carried after the TCP header.
    #[must_use]
    pub fn payload(mut self, bytes: &[u8]) -> Self {
        self.tcp_payload = bytes.to_vec();
        self
    }

    /// TCP SYN to `port`.
    #[must_use]
    pub fn syn(self, port: u16) -> Self {
        self.tcp(port, tcp_flags::SYN)
    }

    /// UDP datagram to `port`.
    #[must_use]
    pub fn udp(mut self, port: u16) -> Self {
        self.l4 = L4::Udp { dst_port: port };
        self
    }

    /// ICMP/ICMPv6 message.
    #[must_use]
    pub fn icmp(mut self, icmp_type: u8, code: u8) -> Self {
        self.l4 = L4::Icmp { icmp_type, code };
        self
    }

    /// Echo request for the packet's IP version.
    #[must_use]
    pub fn echo_request(self) -> Self {
        let t = if self.src.is_ipv4() { 8 } else { 128 };
        self.icmp(t, 0)
    }

    /// Another IP protocol with a payload.
    #[must_use]
    pub fn raw(mut self, proto: u8, payload: Vec<u8>) -> Self {
        self.l4 = L4::Raw { proto, payload };
        self
    }

    /// An SCTP packet (IP protocol 132) to `port` whose first chunk has type `chunk` (1 INIT,
    /// 10 COOKIE ECHO, 0 DATA, ...): common header, then a 20-byte chunk. The checksum is left
    /// zero (the programs do not verify it).
    #[must_use]
    pub fn sctp(self, port: u16, chunk: u8) -> Self {
        let mut b = vec![0u8; 32];
        b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[12] = chunk;
        b[14..16].copy_from_slice(&20u16.to_be_bytes());
        self.raw(132, b)
    }

    /// Adds a VLAN tag (outermost first). Two tags make the outer one 802.1ad.
    #[must_use]
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlans.push(id);
        self
    }

    /// Adds `words` 4-byte words of IPv4 options (NOPs).
    #[must_use]
    pub fn ipv4_options(mut self, words: usize) -> Self {
        self.ipv4_options = words;
        self
    }

    /// Makes this an IPv4 fragment (offset in 8-byte units).
    #[must_use]
    pub fn ipv4_fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_fragment = Some((offset, more));
        self
    }

    /// Adds an IPv6 extension header.
    #[must_use]
    pub fn ext(mut self, ext: Ext) -> Self {
        self.ext.push(ext);
        self
    }

    /// Cuts the L4 part to `len` bytes, with IP lengths that agree (a tiny fragment).
    #[must_use]
    pub fn l4_len(mut self, len: usize) -> Self {
        self.l4_len = Some(len);
        self
    }

    /// True for an IPv6 packet.
    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// Offset of the IP header in the built frame: after Ethernet and any VLAN tags.
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }

    /// Offset of the L4 header in the built frame: after the IPv4 header with its options, or
    /// after the IPv6 header and its extension headers (8 bytes each, as built here).
    pub fn l4_offset(&self) -> usize {
        if self.src.is_ipv4() {
            self.l3_offset() + 20 + 4 * self.ipv4_options
        } else {
            self.l3_offset() + 40 + 8 * self.ext.len()
        }
    }

    fn l4_bytes(&self) -> (u8, Vec<u8>) {
        let v6 = self.src.is_ipv6();
        let (proto, mut bytes) = match &self.l4 {
            L4::Tcp { dst_port, flags } => {
                let mut b = vec![0u8; 20];
                b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
                b[2..4].copy_from_slice(&dst_port.to_be_bytes());
                b[4..8].copy_from_slice(&self.seq.to_be_bytes());
                b[8..12].copy_from_slice(&self.ack.to_be_bytes());
                b[12] = 5 << 4;
                b[13] = *flags;
                b[14..16].copy_from_slice(&1024u16.to_be_bytes());
                b.extend_from_slice(&self.tcp_payload);
                (6, b)
            }
            L4::Udp { dst_port } => {
                let mut b = vec![0u8; 12];
                b[0..2].copy_from_slice(&self.src_port.to_be_bytes());
                b[2..4].copy_from_slice(&dst_port.to_be_bytes());
                b[4..6].copy_from_slice(&12u16.to_be_bytes());
                (17, b)
            }
            L4::Icmp { icmp_type, code } => {
                let mut b = vec![0u8; 8];
                b[0] = *icmp_type;
                b[1] = *code;
                b[4..6].copy_from_slice(&self.src_port.to_be_bytes());
                b.extend_from_slice(&self.icmp_body);
                (if v6 { 58 } else { 1 }, b)
            }
            L4::Raw { proto, payload } => (*proto, payload.clone()),
        };
        if let Some(len) = self.l4_len {
            bytes.truncate(len);
        }
        (proto, bytes)
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        for (i, id) in self.vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && self.vlans.len() > 1 {
                0x88a8
            } else {
                0x8100
            };
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&id.to_be_bytes());
        }
        frame.extend_from_slice(&ethertype.to_be_bytes());
        let (proto, l4) = self.l4_bytes();
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.ipv4(&mut frame, src, dst, proto, &l4),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.ipv6(&mut frame, src, dst, proto, &l4),
            _ => panic!("source and destination must be the same IP version"),
        }
        frame
    }

    fn ipv4(&self, frame: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) {
        let header_len = 20 + self.ipv4_options * 4;
        let total = header_len + l4.len();
        let mut h = vec![0u8; header_len];
        h[0] = 0x40 | (header_len / 4) as u8;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&(self.ident.unwrap_or(0x1234) as u16).to_be_bytes());
        if let Some((offset, more)) = self.ipv4_fragment {
            let v = (offset & 0x1fff) | if more { 0x2000 } else { 0 };
            h[6..8].copy_from_slice(&v.to_be_bytes());
        }
        h[8] = self.ttl;
        h[9] = proto;
        h[12..16].copy_from_slice(&src.octets());
        h[16..20].copy_from_slice(&dst.octets());
        for b in &mut h[20..] {
            *b = 1; // NOP options
        }
        let sum = checksum(&[&h]);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&h);
        frame.extend_from_slice(l4);
    }

    fn ipv6(&self, frame: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) {
        let mut ext_bytes = Vec::new();
        let codes: Vec<u8> = self
            .ext
            .iter()
            .map(|e| match e {
                Ext::HopByHop => 0,
                Ext::Routing => 43,
                Ext::DestOpts => 60,
                Ext::Fragment { .. } => 44,
            })
            .collect();
        for (i, e) in self.ext.iter().enumerate() {
            let next = codes.get(i + 1).copied().unwrap_or(proto);
            match e {
                Ext::Fragment { offset, more } => {
                    let v = (offset << 3) | u16::from(*more);
                    ext_bytes.extend_from_slice(&[next, 0]);
                    ext_bytes.extend_from_slice(&v.to_be_bytes());
                    ext_bytes.extend_from_slice(&self.ident.unwrap_or(1).to_be_bytes());
                }
                Ext::Routing => ext_bytes.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]),
                _ => ext_bytes.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]), // PadN
            }
        }
        let first = codes.first().copied().unwrap_or(proto);
        let payload_len = ext_bytes.len() + l4.len();
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        h[6] = first;
        h[7] = self.ttl;
        h[8..24].copy_from_slice(&src.octets());
        h[24..40].copy_from_slice(&dst.octets());
        frame.extend_from_slice(&h);
        frame.extend_from_slice(&ext_bytes);
        frame.extend_from_slice(l4);
    }
}

/// An untagged Ethernet frame carrying `payload` under `ethertype` (ARP, LLDP, ...).
pub fn ethernet_frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x02];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The internet checksum (RFC 1071) of `chunks`, taken as one byte sequence: every chunk but
/// the last has an even length (a pseudo-header, then the header it covers).
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        let mut pairs = chunk.chunks_exact(2);
        for pair in pairs.by_ref() {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = pairs.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
