//! Addresses and the host's network: conversions between kernel keys and addresses or CIDRs,
//! LPM-trie keys, interface names, and what netlink says about this host (its addresses, its
//! connected networks, its default routes). Every other module goes through here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::lpm_trie::Key;
use futures_util::TryStreamExt as _;
use ipnet::{IpNet, Ipv6Net};
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        address::AddressAttribute,
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage},
    },
};
use scanwatch_common::addr::SourceKey;

/// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (a host route); host bits are
/// cleared, and IPv4-mapped IPv6 (`::ffff:a.b.c.d`, `::ffff:a.b.c.d/n` with n ≥ 96) becomes the
/// IPv4 network it stands for, so `::ffff:0:0/96` is `0.0.0.0/0`. The one parser of addresses
/// for the configuration, the control CLI and block lists: every protection check sees
/// normalised networks.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("`{text}` is not an address or CIDR (e.g. 192.0.2.0/24, 2001:db8::/32)")
        })?,
    };
    Ok(normalize(net.trunc()))
}

/// An IPv4-mapped IPv6 network (`::ffff:0:0/96` or longer) as the IPv4 network it stands for;
/// any other network unchanged.
pub fn normalize(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96)
                .expect("prefix length within the family's bound"),
            None => net,
        },
        _ => net,
    }
}

/// A network in the kernel's address space, where IPv4 is v4-mapped IPv6 (`a.b.c.d/n` is
/// `::ffff:a.b.c.d/(96+n)`): overlap checks done here see that `::/0` or `::ffff:0:0/95` cover
/// IPv4 too, as they would in the LPM trie.
pub fn kernel_space(net: &IpNet) -> Ipv6Net {
    match net {
        IpNet::V4(n) => Ipv6Net::new(n.network().to_ipv6_mapped(), n.prefix_len() + 96)
            .expect("prefix length within the family's bound"),
        IpNet::V6(n) => n.trunc(),
    }
}

/// True when `a` and `b` share an address (one contains the other), in the kernel's address
/// space, whatever their families.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let (a, b) = (kernel_space(a), kernel_space(b));
    a.contains(&b) || b.contains(&a)
}

/// True when `outer` contains all of `inner`, in the kernel's address space.
pub fn covers(outer: &IpNet, inner: &IpNet) -> bool {
    kernel_space(outer).contains(&kernel_space(inner))
}

/// The prefix a source shares its budgets with ([`crate::rate::Shares`]): an IPv4 source's
/// /16, an IPv6 source's /32 (a provider's allocation), as one number.
pub fn share_prefix(key: &SourceKey) -> u64 {
    let a = key.addr;
    if key.is_ipv4() {
        1 << 32 | u64::from(u16::from_be_bytes([a[12], a[13]]))
    } else {
        u64::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }
}

/// The address of a kernel key: IPv4 keys are stored v4-mapped (`::ffff:a.b.c.d`) and come back
/// as IPv4 here, and only here.
pub fn key_addr(key: &SourceKey) -> IpAddr {
    if key.is_ipv4() {
        IpAddr::V4(Ipv4Addr::new(
            key.addr[12],
            key.addr[13],
            key.addr[14],
            key.addr[15],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(key.addr))
    }
}

/// The network a tracker key stands for: an IPv4 host, or an IPv6 prefix of `ipv6_prefix`.
pub fn key_network(key: &SourceKey, ipv6_prefix: u32) -> IpNet {
    let addr = key_addr(key);
    let len = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => ipv6_prefix.min(128) as u8,
    };
    IpNet::new(addr, len).expect("prefix length within the family's bound")
}

/// Formats a tracker key: `a.b.c.d` for IPv4, `addr/len` for IPv6 aggregated to `ipv6_prefix`
/// (the bare address at 128).
pub fn format_source(key: &SourceKey, ipv6_prefix: u32) -> String {
    match key_addr(key) {
        IpAddr::V6(a) if ipv6_prefix < 128 => format!("{a}/{ipv6_prefix}"),
        a => a.to_string(),
    }
}

/// `host:port` (`[host]:port` for IPv6), or `host` when `port` is 0, of a 16-byte address as
/// the kernel stores it.
pub fn format_target(addr: &[u8; 16], port: u16) -> String {
    let host = key_addr(&SourceKey { addr: *addr });
    match (port, host) {
        (0, _) => host.to_string(),
        (p, IpAddr::V4(_)) => format!("{host}:{p}"),
        (p, IpAddr::V6(_)) => format!("[{host}]:{p}"),
    }
}

/// The LPM-trie key of a network: IPv4 as v4-mapped IPv6 with the prefix shifted by 96, as the
/// kernel looks sources up.
pub fn lpm_key(net: &IpNet) -> Key<[u8; 16]> {
    match net {
        IpNet::V4(n) => Key::new(
            u32::from(n.prefix_len()) + 96,
            SourceKey::from_ipv4(n.network().octets()).addr,
        ),
        IpNet::V6(n) => Key::new(u32::from(n.prefix_len()), n.network().octets()),
    }
}

/// The network an LPM-trie key stands for.
pub fn lpm_network(key: &Key<[u8; 16]>) -> IpNet {
    let source = SourceKey { addr: key.data() };
    let len = key.prefix_len();
    match key_addr(&source) {
        IpAddr::V4(a) if len >= 96 => IpNet::new(IpAddr::V4(a), (len - 96) as u8),
        _ => IpNet::new(IpAddr::V6(Ipv6Addr::from(source.addr)), len.min(128) as u8),
    }
    .expect("prefix length within the family's bound")
}

/// Index of an interface by name, or `None`.
pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Name of an interface index, or the index as text.
pub fn ifname(index: u32) -> String {
    nix::net::if_::if_indextoname(index).map_or_else(
        |_| index.to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Names of this network namespace's interfaces, sorted (`if_nameindex`, which unlike
/// `/sys/class/net` follows the caller's namespace).
pub fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = nix::net::if_::if_nameindex()
        .map(|list| {
            list.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What netlink says about this host's place in the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostNetwork {
    /// The host's own addresses, as host routes (/32, /128).
    pub addresses: Vec<IpNet>,
    /// The networks the host's addresses sit in (address and prefix length), host bits
    /// cleared: its connected networks.
    pub connected: Vec<IpNet>,
    /// Default routes of the main table, IPv4 first.
    pub default_routes: Vec<DefaultRoute>,
}

/// One default route (`0.0.0.0/0` or `::/0`) of the main routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub ipv6: bool,
    /// Output interface index (0 when none).
    pub oif: u32,
    pub metric: u32,
    pub gateway: Option<IpAddr>,
}

impl HostNetwork {
    /// Reads addresses and routes over one rtnetlink connection.
    pub async fn read() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(connection);
        let result = Self::read_with(&handle).await;
        task.abort();
        result.map_err(std::io::Error::other)
    }

    /// [`HostNetwork::read`] for callers outside an async runtime (the control CLI): runs it on
    /// a thread of its own with a one-off runtime.
    pub fn read_blocking() -> std::io::Result<Self> {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?
                .block_on(Self::read())
        })
        .join()
        .map_err(|_| std::io::Error::other("the netlink reader thread panicked"))?
    }

    async fn read_with(handle: &Handle) -> Result<Self, rtnetlink::Error> {
        let mut addresses = Vec::new();
        let mut connected = Vec::new();
        let mut dump = handle.address().get().execute();
        while let Some(msg) = dump.try_next().await? {
            // IFA_LOCAL is the local end on point-to-point links (IFA_ADDRESS is the peer).
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local.or(address) {
                addresses.push(IpNet::from(ip));
                if let Ok(net) = IpNet::new(ip, msg.header.prefix_len) {
                    connected.push(normalize(net.trunc()));
                }
            }
        }
        let mut default_routes = Vec::new();
        for query in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut dump = handle.route().get(query).execute();
            while let Some(msg) = dump.try_next().await? {
                default_routes.extend(default_route(&msg));
            }
        }
        connected.sort_unstable();
        connected.dedup();
        Ok(Self {
            addresses,
            connected,
            default_routes,
        })
    }

    /// The host's default gateways, as host routes.
    pub fn gateways(&self) -> Vec<IpNet> {
        self.default_routes
            .iter()
            .filter_map(|r| r.gateway)
            .filter(|g| !g.is_unspecified())
            .map(IpNet::from)
            .collect()
    }

    /// Index of the interface of the lowest-metric default route, IPv4 first, then IPv6
    /// (IPv6 routes through loopback are unreachable markers, not routes).
    pub fn default_interface(&self) -> Option<u32> {
        let loopback = ifindex("lo");
        let best = |ipv6: bool| {
            self.default_routes
                .iter()
                .filter(|r| r.ipv6 == ipv6 && r.oif != 0 && !(ipv6 && Some(r.oif) == loopback))
                .min_by_key(|r| r.metric)
                .map(|r| r.oif)
        };
        best(false).or_else(|| best(true))
    }
}

/// The default route a route message describes, if it is one of the main table.
fn default_route(msg: &RouteMessage) -> Option<DefaultRoute> {
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if msg.header.destination_prefix_length != 0 || table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let mut route = DefaultRoute {
        ipv6: msg.header.address_family == rtnetlink::packet_route::AddressFamily::Inet6,
        oif: 0,
        metric: 0,
        gateway: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Oif(i) => route.oif = *i,
            RouteAttribute::Priority(p) => route.metric = *p,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.gateway = Some((*a).into()),
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) => route.gateway = Some((*a).into()),
            _ => {}
        }
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_addresses_networks_and_text() {
        let v4 = SourceKey::from_ipv4([192, 0, 2, 9]);
        assert_eq!(key_addr(&v4), "192.0.2.9".parse::<IpAddr>().unwrap());
        assert_eq!(key_network(&v4, 64).to_string(), "192.0.2.9/32");
        assert_eq!(format_source(&v4, 64), "192.0.2.9");
        let v6 = SourceKey::from_ipv6("2001:db8:1:2::99".parse::<Ipv6Addr>().unwrap().octets(), 64);
        assert_eq!(key_network(&v6, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(format_source(&v6, 64), "2001:db8:1:2::/64");
        assert_eq!(format_source(&v6, 128), "2001:db8:1:2::");
        assert_eq!(format_target(&v4.addr, 22), "192.0.2.9:22");
        assert_eq!(format_target(&v4.addr, 0), "192.0.2.9");
        assert_eq!(format_target(&v6.addr, 80), "[2001:db8:1:2::]:80");
    }

    #[test]
    fn lpm_keys_round_trip() {
        for text in [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "192.0.2.7/32",
            "2001:db8::/48",
            "2001:db8::/32",
            "::/0",
            "0.0.0.0/0",
        ] {
            let net: IpNet = text.parse().unwrap();
            assert_eq!(lpm_network(&lpm_key(&net)), net, "{text}");
        }
        assert_eq!(lpm_key(&"10.0.0.0/8".parse().unwrap()).prefix_len(), 104);
    }

    #[test]
    fn cidrs_parse_with_host_bits_cleared() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr(" 10.1.2.3/8 ").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_cidr("192.0.2.1").unwrap().to_string(), "192.0.2.1/32");
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_cidr("300.1.1.1").is_err());
        assert!(parse_cidr("nonsense").unwrap_err().contains("nonsense"));
    }

    #[test]
    fn ipv4_mapped_ipv6_becomes_ipv4() {
        let parse = |s: &str| parse_cidr(s).unwrap().to_string();
        assert_eq!(parse("::ffff:10.0.0.5"), "10.0.0.5/32");
        assert_eq!(parse("::ffff:10.0.0.5/128"), "10.0.0.5/32");
        assert_eq!(parse("::ffff:10.1.2.3/104"), "10.0.0.0/8");
        assert_eq!(parse("::ffff:0:0/96"), "0.0.0.0/0");
        assert_eq!(parse("::FFFF:c000:0201"), "192.0.2.1/32");
        // Shorter than /96, or not mapped: IPv6 stays IPv6.
        assert_eq!(parse("::ffff:0:0/95"), "::fffe:0:0/95");
        assert_eq!(parse("64:ff9b::1.2.3.4"), "64:ff9b::102:304/128");
        assert_eq!(parse("::1.2.3.4"), "::102:304/128");
    }

    #[test]
    fn overlap_checks_work_across_families_in_kernel_space() {
        let net = |s: &str| parse_cidr(s).unwrap();
        assert!(overlaps(&net("::/0"), &net("10.0.0.1")));
        assert!(overlaps(&net("::ffff:0:0/95"), &net("10.0.0.1")));
        assert!(covers(&net("::ffff:0:0/95"), &net("0.0.0.0/0")));
        assert!(!overlaps(&net("2001:db8::/32"), &net("10.0.0.1")));
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.2.3.4")));
        assert!(covers(&net("10.0.0.0/8"), &net("10.2.0.0/16")));
        assert!(!covers(&net("10.2.0.0/16"), &net("10.0.0.0/8")));
        assert!(!overlaps(&net("10.0.0.0/8"), &net("11.0.0.0/8")));
    }

    #[test]
    fn default_routes_of_the_main_table_only() {
        let mut main = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(Ipv4Addr::new(10, 0, 0, 1))
            .output_interface(7)
            .priority(100)
            .build();
        let route = default_route(&main).unwrap();
        assert_eq!(route.oif, 7);
        assert_eq!(route.metric, 100);
        assert_eq!(route.gateway, Some(IpAddr::from([10, 0, 0, 1])));
        main.header.table = 255; // the local table
        main.attributes
            .retain(|a| !matches!(a, RouteAttribute::Table(_)));
        assert_eq!(default_route(&main), None);
        let subnet = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(10, 0, 0, 0), 24)
            .build();
        assert_eq!(default_route(&subnet), None);
    }

    #[test]
    fn default_interface_prefers_ipv4_then_lowest_metric() {
        let route = |ipv6, oif, metric| DefaultRoute {
            ipv6,
            oif,
            metric,
            gateway: None,
        };
        let host = HostNetwork {
            addresses: Vec::new(),
            connected: Vec::new(),
            default_routes: vec![
                route(true, 3, 1),
                route(false, 5, 200),
                route(false, 4, 100),
            ],
        };
        assert_eq!(host.default_interface(), Some(4));
        let v6_only = HostNetwork {
            addresses: Vec::new(),
            connected: Vec::new(),
            default_routes: vec![route(true, 3, 1)],
        };
        assert_eq!(v6_only.default_interface(), Some(3));
        assert_eq!(HostNetwork::default().default_interface(), None);
    }

    #[test]
    fn netlink_reads_loopback_address() {
        let host = HostNetwork::read_blocking().unwrap();
        assert!(
            host.addresses.iter().any(|a| a.addr().is_loopback()),
            "{host:?}"
        );
        assert!(
            host.connected
                .iter()
                .any(|n| n.to_string() == "127.0.0.0/8"),
            "{host:?}"
        );
        assert!(interface_names().contains(&"lo".to_owned()));
        assert_eq!(ifname(ifindex("lo").unwrap()), "lo");
    }
}
