//! The link types replay reads, and each one's frames as the Ethernet frames the programs parse.
//!
//! `tcpdump -i any` writes Linux cooked captures (SLL, SLL2); tunnels and some capture tools
//! write raw IP. Each frame is given a synthesized 14-byte Ethernet header (zero addresses, the
//! ethertype the link header or the IP version says) in front of the same network packet, so
//! the programs parse it as they parse a frame from an Ethernet interface.

use pcap_file::DataLink;
use scanwatch_common::proto::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6};

/// Length of a Linux cooked (SLL) header.
const SLL_HLEN: usize = 16;
/// Length of a Linux cooked v2 (SLL2) header.
const SLL2_HLEN: usize = 20;
/// The cooked headers' packet type for a frame this host sent (`PACKET_OUTGOING`).
const PACKET_OUTGOING: u16 = 4;

/// A link type replay can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `LINKTYPE_ETHERNET` (1): frames as they are.
    Ethernet,
    /// `LINKTYPE_LINUX_SLL` (113): a 16-byte cooked header (packet type, ARP type, address,
    /// protocol).
    Sll,
    /// `LINKTYPE_LINUX_SLL2` (276): a 20-byte cooked header (protocol, interface index, ARP
    /// type, packet type, address).
    Sll2,
    /// `LINKTYPE_RAW` (101): an IPv4 or IPv6 packet, told apart by its version.
    Raw,
    /// `LINKTYPE_IPV4` (228).
    Ipv4,
    /// `LINKTYPE_IPV6` (229).
    Ipv6,
}

/// A frame of another link type as an Ethernet frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Converted {
    pub data: Vec<u8>,
    /// The cooked header says the host sent it (packet type `PACKET_OUTGOING`); always false
    /// for link types that do not say.
    pub outgoing: bool,
}

impl Link {
    /// The link type of `link`, if replay reads it.
    pub fn of(link: DataLink) -> Option<Self> {
        Some(match link {
            DataLink::ETHERNET => Self::Ethernet,
            DataLink::LINUX_SLL => Self::Sll,
            DataLink::LINUX_SLL2 => Self::Sll2,
            DataLink::RAW => Self::Raw,
            DataLink::IPV4 => Self::Ipv4,
            DataLink::IPV6 => Self::Ipv6,
            _ => return None,
        })
    }

    /// `frame` (of this link type) as an Ethernet frame; `None` if it is shorter than its link
    /// header (or, for raw IP, empty). A raw IP packet of neither version gets ethertype 0,
    /// which the programs count as not IP.
    pub fn to_ethernet(self, frame: Vec<u8>) -> Option<Converted> {
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (ethertype, header, outgoing) = match self {
            Self::Ethernet => {
                return Some(Converted {
                    data: frame,
                    outgoing: false,
                });
            }
            // Packet type at 0, protocol at 14.
            Self::Sll => {
                if frame.len() < SLL_HLEN {
                    return None;
                }
                (be16(14)?, SLL_HLEN, be16(0)? == PACKET_OUTGOING)
            }
            // Protocol at 0, packet type (one byte) at 10.
            Self::Sll2 => {
                if frame.len() < SLL2_HLEN {
                    return None;
                }
                let outgoing = frame.get(10).copied().map(u16::from) == Some(PACKET_OUTGOING);
                (be16(0)?, SLL2_HLEN, outgoing)
            }
            Self::Raw => {
                let ethertype = match frame.first()? >> 4 {
                    4 => ETH_P_IP,
                    6 => ETH_P_IPV6,
                    _ => 0,
                };
                (ethertype, 0, false)
            }
            Self::Ipv4 => (ETH_P_IP, 0, false),
            Self::Ipv6 => (ETH_P_IPV6, 0, false),
        };
        let payload = &frame[header..];
        let mut data = Vec::with_capacity(ETH_HLEN + payload.len());
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(&ethertype.to_be_bytes());
        data.extend_from_slice(payload);
        Some(Converted { data, outgoing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4() -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn reads_the_protocol_and_direction_of_cooked_frames() {
        let mut sll = vec![0u8; SLL_HLEN];
        sll[1] = 4;
        sll[14..16].copy_from_slice(&ETH_P_IP.to_be_bytes());
        sll.extend(ipv4());
        let c = Link::Sll.to_ethernet(sll).unwrap();
        assert_eq!(c.data, ethernet(ETH_P_IP, &ipv4()));
        assert!(c.outgoing);

        let mut sll2 = vec![0u8; SLL2_HLEN];
        sll2[0..2].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        sll2[10] = 0; // PACKET_HOST
        sll2.extend([0x60, 0, 0, 0]);
        let c = Link::Sll2.to_ethernet(sll2).unwrap();
        assert_eq!(c.data, ethernet(ETH_P_IPV6, &[0x60, 0, 0, 0]));
        assert!(!c.outgoing);
    }

    #[test]
    fn tells_raw_ip_versions_apart() {
        let c = Link::Raw.to_ethernet(ipv4()).unwrap();
        assert_eq!(c.data, ethernet(ETH_P_IP, &ipv4()));
        let c = Link::Raw.to_ethernet(vec![0x60, 1, 2]).unwrap();
        assert_eq!(c.data, ethernet(ETH_P_IPV6, &[0x60, 1, 2]));
        let c = Link::Ipv6.to_ethernet(vec![0x60]).unwrap();
        assert_eq!(c.data, ethernet(ETH_P_IPV6, &[0x60]));
        let c = Link::Raw.to_ethernet(vec![0x20, 0]).unwrap();
        assert_eq!(c.data, ethernet(0, &[0x20, 0]));
    }

    #[test]
    fn refuses_frames_shorter_than_their_link_header() {
        assert_eq!(Link::Sll.to_ethernet(vec![0; SLL_HLEN - 1]), None);
        assert_eq!(Link::Sll2.to_ethernet(vec![0; 3]), None);
        assert_eq!(Link::Raw.to_ethernet(Vec::new()), None);
        assert_eq!(Link::of(DataLink::IEEE802_11), None);
    }
}
