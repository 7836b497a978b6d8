//! A throwaway network for end-to-end tests: network namespaces joined by a Linux bridge, where
//! the real daemon ([`crate::daemon::Daemon`]) watches the target, torn down by RAII guards also
//! when a test fails or panics.
//!
//! ```text
//!   attacker (.2) ──┐
//!   benign   (.3) ──┼── switch (bridge) ── target (.1, + 10.K.1.0/24 on lo, the daemon)
//! ```
//!
//! Nothing here touches the host's own interfaces: every namespace, veth pair and address is
//! created for the lab and removed with it. Names start with [`NETNS_PREFIX`] and carry the
//! process id, so parallel tests never collide and [`netns::sweep_stale`] can remove what a
//! killed run left behind.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Result, ensure};

use crate::{
    daemon,
    netns::{self, NETNS_PREFIX, Netns, Veth, in_netns},
};

/// The lab topology. Addresses: `10.K.0.0/24` and `fd5c:a7:0:K::/64` on the bridge (target .1
/// / ::1, attacker .2 / ::2, benign .3 / ::3), plus `10.K.1.0/24`, which the target owns
/// entirely (a `local` route on its loopback) and the others route through it, so a sweep
/// across it meets 256 hosts that answer.
#[derive(Debug)]
pub struct Lab {
    /// Unique for this process; also the `K` of the addresses.
    pub id: u32,
    veths: Vec<Veth>,
    pub target: Netns,
    pub attacker: Netns,
    pub benign: Netns,
    pub switch: Netns,
    /// The target's interface: the one the daemon watches.
    pub target_if: String,
    pub attacker_if: String,
    pub benign_if: String,
}

impl Lab {
    /// Builds the lab, checks the attacker reaches the target, or fails (tearing down what was
    /// built).
    pub fn new() -> Result<Self> {
        daemon::sweep_stale_instances();
        netns::sweep_stale();
        let pid = std::process::id();
        let id = crate::next_id();
        let ns = |role: &str| Netns::new(&format!("{NETNS_PREFIX}{pid}-{id}-{role}"));
        // Interface names: at most 2 + 5 + 1 + 3 + 2 = 13 characters.
        let tag = format!("sw{}x{}", pid % 100_000, id % 1000);
        let switch = ns("switch")?;
        let target = ns("target")?;
        let attacker = ns("attacker")?;
        let benign = ns("benign")?;
        let mut lab = Self {
            id,
            veths: Vec::new(),
            target_if: format!("{tag}t"),
            attacker_if: format!("{tag}a"),
            benign_if: format!("{tag}b"),
            target,
            attacker,
            benign,
            switch,
        };
        lab.wire()?;
        Ok(lab)
    }

    fn wire(&mut self) -> Result<()> {
        let k = self.k();
        self.switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        self.switch.ip(&["link", "set", "br0", "up"])?;
        for (ns, iface, host) in [
            (&self.target, &self.target_if, 1),
            (&self.attacker, &self.attacker_if, 2),
            (&self.benign, &self.benign_if, 3),
        ] {
            let veth = self.plug(ns, iface, host)?;
            self.veths.push(veth);
        }
        self.target.ip(&[
            "route",
            "add",
            "local",
            &format!("10.{k}.1.0/24"),
            "dev",
            "lo",
        ])?;
        for ns in [&self.attacker, &self.benign] {
            ns.ip(&[
                "route",
                "add",
                &format!("10.{k}.1.0/24"),
                "via",
                &self.target_v4().to_string(),
            ])?;
        }
        // The bridge forwards at once (no STP), but carrier comes up asynchronously: wait
        // until the attacker and the benign host reach the target.
        for ns in [&self.attacker, &self.benign] {
            self.wait_reaches_target(ns)?;
        }
        Ok(())
    }

    /// Plugs `ns` into the bridge as host `host`: veth `iface` in `ns` (its peer `<iface>p` a
    /// port of the bridge), up, with `10.K.0.<host>/24` and `fd5c:a7:0:K::<host>/64`.
    fn plug(&self, ns: &Netns, iface: &str, host: u8) -> Result<Veth> {
        let k = self.k();
        // Addresses usable at once: no duplicate address detection.
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        let port = Self::bridge_port(iface);
        let veth = Veth::new(ns, iface, &self.switch, &port)?;
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("10.{k}.0.{host}/24"), "dev", iface])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("fd5c:a7:0:{k:x}::{host}/64"),
            "dev",
            iface,
            "nodad",
        ])?;
        ns.ip(&["link", "set", iface, "up"])?;
        Ok(veth)
    }

    /// The bridge port, in the switch namespace, that host interface `iface` is plugged into:
    /// a frame sent out of it reaches `iface` as it is, past the bridge's own checks.
    pub fn bridge_port(iface: &str) -> String {
        format!("{iface}p")
    }

    /// Waits until `ns` reaches the target (40 pings, 250 ms each at most), or fails.
    fn wait_reaches_target(&self, ns: &Netns) -> Result<()> {
        let target = self.target_v4();
        let reached = in_netns(ns.name(), move || {
            (0..40)
                .any(|_| crate::scanner::ping(target, Duration::from_millis(250)).unwrap_or(false))
        })?;
        ensure!(reached, "{} cannot reach the target {target}", ns.name());
        Ok(())
    }

    /// Adds one more host to the bridge: namespace `swlab-<pid>-<id>-<role>` with
    /// `10.K.0.<host>/24` and `fd5c:a7:0:K::<host>/64`, and waits until it reaches the target.
    /// Host numbers 1..=3 are taken (target, attacker, benign). Call it before starting a
    /// daemon (which borrows the lab). The namespace is the caller's to drop; its veth goes
    /// with it, or with the lab.
    pub fn add_host(&mut self, role: &str, host: u8) -> Result<Netns> {
        ensure!(
            (4..=254).contains(&host),
            "host {host}: use 4..=254 (1..=3 are the target, the attacker and the benign host)"
        );
        let ns = Netns::new(&format!(
            "{NETNS_PREFIX}{}-{}-{role}",
            std::process::id(),
            self.id
        ))?;
        let iface = self.if_name(&format!("h{host:02x}"));
        let veth = self.plug(&ns, &iface, host)?;
        self.veths.push(veth);
        self.wait_reaches_target(&ns)?;
        Ok(ns)
    }

    /// An interface name unique to this lab: its tag (`sw<pid>x<id>`, at most 11 characters)
    /// and `suffix` (at most 3 characters, so that the name plus a one-letter peer suffix stays
    /// within the kernel's 15).
    pub fn if_name(&self, suffix: &str) -> String {
        // The lab's interface names end in one letter after the tag ("t" for the target).
        let tag = &self.target_if[..self.target_if.len() - 1];
        format!("{tag}{suffix}")
    }

    /// `10.K.0.<host>`: an address on the lab's bridge.
    pub fn host_v4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, host)
    }

    /// The `K` of `10.K.0.0/24`: 10..=249.
    pub fn k(&self) -> u8 {
        (10 + self.id % 240) as u8
    }

    /// The target's IPv4 address, `10.K.0.1`.
    pub fn target_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 1)
    }

    /// The attacker's IPv4 address, `10.K.0.2`.
    pub fn attacker_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 2)
    }

    /// The benign's IPv4 address, `10.K.0.3`.
    pub fn benign_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 0, 3)
    }

    fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd5c, 0xa7, 0, u16::from(self.k()), 0, 0, 0, host)
    }

    /// The target's IPv6 address, `fd5c:a7:0:K::1`.
    pub fn target_v6(&self) -> Ipv6Addr {
        self.v6(1)
    }

    /// The attacker's IPv6 address, `fd5c:a7:0:K::2`.
    pub fn attacker_v6(&self) -> Ipv6Addr {
        self.v6(2)
    }

    /// The benign's IPv6 address, `fd5c:a7:0:K::3`.
    pub fn benign_v6(&self) -> Ipv6Addr {
        self.v6(3)
    }

    /// The lab's /64, as the daemon names IPv6 sources (aggregated to /64 by default).
    pub fn v6_source(&self) -> String {
        format!("{}/64", self.v6(0))
    }

    /// Host `n` (0..=255) of the target's extra /24, `10.K.1.n`.
    pub fn sweep_host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.k(), 1, n)
    }

    /// The target's extra /24 in CIDR notation (for nmap).
    pub fn sweep_net(&self) -> String {
        format!("10.{}.1.0/24", self.k())
    }

    /// `ip link show` of the target interface.
    pub fn target_link(&self) -> Result<String> {
        self.target.ip(&["link", "show", "dev", &self.target_if])
    }

    /// True when an XDP program (any mode) is attached to the target interface.
    pub fn target_has_xdp(&self) -> Result<bool> {
        Ok(self.target_link()?.contains("xdp"))
    }

    /// BPF programs on the target interface's TC egress hook: tcx links (Linux >= 6.6) plus
    /// classic cls_bpf filters on a clsact qdisc.
    pub fn target_egress_programs(&self) -> Result<usize> {
        let iface = self.target_if.clone();
        // The query resolves the interface in the calling thread's namespace. Kernels without
        // tcx refuse it; they have no tcx programs to count.
        let tcx = in_netns(self.target.name(), move || {
            aya::programs::SchedClassifier::query_tcx(&iface, aya::programs::TcAttachType::Egress)
                .map_or(0, |(_, programs)| programs.len())
        })?;
        // No clsact qdisc: `tc` fails, and there is no filter either.
        let filters = self
            .target
            .exec(&["tc", "filter", "show", "dev", &self.target_if, "egress"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" bpf "))
            .count();
        Ok(tcx + filters)
    }
}
