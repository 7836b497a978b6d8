//! Runtime configuration the daemon writes into the kernel's one-entry `CONFIG` array. The
//! program reads it on every probe, so changes take effect on the next packet, with no reload.
//! An all-zero entry is a safe configuration: default window and prefix, every feature on,
//! detection events off.

use crate::{addr::DEFAULT_IPV6_PREFIX_LEN, event::DETECTION_KINDS, ticks::Ticks};

/// Default detection window (tumbling): 5 minutes, Zeek's scan-policy interval.
pub const DEFAULT_WINDOW_NS: u64 = 300 * 1_000_000_000;

/// Feature switch: do not use the admission filter (track a source from its first probe).
pub const FLAG_NO_ADMISSION: u32 = 1 << 0;
/// Feature switch: do not track IPv6 sources.
pub const FLAG_NO_IPV6: u32 = 1 << 1;
/// Feature switch: do not send threshold events.
pub const FLAG_NO_EVENTS: u32 = 1 << 2;
/// Feature switch: no egress scan detection (reply recognition stays on).
pub const FLAG_NO_EGRESS: u32 = 1 << 4;
/// Drop mode: drop packets from sources in `BLOCKS` or `BLOCKLIST` before anything else.
/// Off (monitor mode) by default, so the drop path costs nothing unless asked for.
pub const FLAG_DROP: u32 = 1 << 3;
/// Replay of a capture: sample a web request without asking the kernel for its connection (a
/// capture's connections were never this host's sockets). Only `scanwatch replay` sets it; a
/// live agent samples only requests on connections the kernel holds established.
pub const FLAG_REPLAY: u32 = 1 << 5;

/// The kernel's runtime configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Window length; 0 means [`DEFAULT_WINDOW_NS`].
    pub window_ns: u64,
    /// When non-zero (with `tick_ns` 0), the program uses this as "now" instead of its clock:
    /// tests drive windows deterministically (the rakelimit approach). The daemon always
    /// writes 0.
    pub clock_override_ns: u64,
    /// Seed of every hash (estimators, admission filter); random per daemon start.
    pub hash_seed: u64,
    /// Per detection kind, the kernel-unit threshold (bits set for distinct counts, probes for
    /// fragments) at which an event is sent; 0 disables the kind. Indexed by `DetectionKind`.
    pub thresholds: [u32; DETECTION_KINDS],
    /// IPv6 aggregation prefix; 0 means [`DEFAULT_IPV6_PREFIX_LEN`].
    pub ipv6_prefix_len: u32,
    /// `FLAG_*` feature switches.
    pub flags: u32,
    /// Entries in the ignore list; 0 lets the program skip the trie lookup.
    pub ignore_entries: u32,
    /// Wide IPv6 level (`WIDE`): the prefix length a scanner rotating first-level prefixes
    /// inside is counted at as well (48: its /64s inside a /48); 0 turns the level off.
    pub ipv6_wide_prefix_len: u32,
    /// Thresholds for egress detection (probes this host sends), as `thresholds`.
    pub egress_thresholds: [u32; DETECTION_KINDS],
    /// A recorded outbound flow matches replies this long; 0 means
    /// `DEFAULT_FLOW_TIMEOUT_NS`.
    pub flow_timeout_ns: u64,
    /// Ingress thresholds over the long window (slow scans), as `thresholds`.
    pub long_thresholds: [u32; DETECTION_KINDS],
    /// Explicit padding: the threshold arrays have an odd number of `u32`s.
    pub long_reserved: u32,
    /// Long window length (slow scans); 0 turns the long window off (no `LONG` state).
    pub long_window_ns: u64,
    /// Distributed sweeps: the kernel-unit threshold (bits of `distributed::PortState::hosts` whose
    /// host did not answer) of distinct destination hosts probed on one (protocol, port); 0
    /// turns the per-port form off (no `PORTS` state). Its findings are `DistributedScan`
    /// events of scope `event::SCOPE_PORT`.
    pub distributed_hosts: u32,
    pub reserved2: u32,
    /// Destination ports whose first HTTP request per connection is sampled into
    /// `WEB_SAMPLES` (`crate::web`); 0 marks an unused slot. All zero: no sampling.
    pub web_ports: [u16; crate::web::WEB_PORTS],
    /// The data path's clock (`crate::ticks`): nanoseconds per jiffy, measured by the daemon
    /// at start; 0 makes the program read `bpf_ktime_get_coarse_ns` instead.
    pub tick_ns: u64,
    /// CLOCK_MONOTONIC at jiffies 0, with `tick_ns`.
    pub tick_offset_ns: u64,
}

const _: () = assert!(core::mem::size_of::<KernelConfig>() == 232);

impl KernelConfig {
    /// The effective window length.
    #[inline(always)]
    pub const fn window(&self) -> u64 {
        if self.window_ns == 0 {
            DEFAULT_WINDOW_NS
        } else {
            self.window_ns
        }
    }

    /// The effective flow lifetime.
    #[inline(always)]
    pub const fn flow_timeout(&self) -> u64 {
        if self.flow_timeout_ns == 0 {
            crate::flow::DEFAULT_FLOW_TIMEOUT_NS
        } else {
            self.flow_timeout_ns
        }
    }

    /// Whether `port` is one of the web ports (`web_ports`): unrolled compares, stopping at
    /// the first unused slot, so the established fast path pays a few instructions.
    #[inline(always)]
    pub const fn is_web_port(&self, port: u16) -> bool {
        let mut i = 0;
        while i < crate::web::WEB_PORTS {
            let p = self.web_ports[i];
            if p == 0 {
                return false;
            }
            if p == port {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The data path's clock calibration (`tick_ns` 0: none).
    #[inline(always)]
    pub const fn ticks(&self) -> Ticks {
        Ticks {
            tick_ns: self.tick_ns,
            offset_ns: self.tick_offset_ns,
        }
    }

    /// Sets the data path's clock calibration, as the agent measured it at start.
    pub const fn set_ticks(&mut self, ticks: Ticks) {
        self.tick_ns = ticks.tick_ns;
        self.tick_offset_ns = ticks.offset_ns;
    }

    /// The effective IPv6 prefix length.
    #[inline(always)]
    pub const fn ipv6_prefix(&self) -> u32 {
        if self.ipv6_prefix_len == 0 {
            DEFAULT_IPV6_PREFIX_LEN
        } else {
            self.ipv6_prefix_len
        }
    }
}
