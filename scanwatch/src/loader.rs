//! Loading the XDP object, attaching it to interfaces and detaching it again, with errors that
//! tell the operator what to do next.

use std::{ffi::CString, io, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode as AyaXdpMode, tc,
        tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use log::{info, warn};
use scanwatch_common::maps;

use crate::{config::XdpMode, object::XDP_OBJECT, pins::Instance};

/// Name of the XDP program in the object.
pub const PROGRAM: &str = "scanwatch";
/// Name of the TC egress program in the object.
pub const EGRESS_PROGRAM: &str = "scanwatch_egress";

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "scanwatch needs root, or the CAP_BPF and CAP_NET_ADMIN capabilities, to load and attach \
         XDP programs; run it with sudo or grant them (setcap cap_bpf,cap_net_admin+ep)"
    )]
    NotPrivileged,
    #[error(
        "this binary was built with AYA_BUILD_SKIP and carries no XDP object; rebuild with \
         `cargo xtask build`"
    )]
    NoObject,
    #[error("no interface named `{name}`; interfaces here: {available}")]
    NoSuchInterface { name: String, available: String },
    #[error("no default route, so no default interface; name one with --iface")]
    NoDefaultInterface,
    #[error(
        "the kernel verifier rejected the XDP program ({error}).{btf_hint} Last lines of the \
         verifier log:\n{tail}"
    )]
    Verifier {
        error: io::Error,
        tail: String,
        btf_hint: &'static str,
    },
    #[error(
        "another XDP program is already attached to {interface}; scanwatch never replaces it \
         silently. Remove it (`ip link set dev {interface} xdp off`) or rerun with --force"
    )]
    AlreadyAttached { interface: String },
    #[error(
        "XDP native mode is not supported by {interface} ({error}); retry with --xdp-mode skb \
         or --xdp-mode auto"
    )]
    NativeUnsupported { interface: String, error: String },
    #[error("attaching XDP to {interface} failed: {error}")]
    Attach { interface: String, error: String },
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("{0}")]
    Program(#[from] ProgramError),
}

/// One interface the program is attached to.
#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// `native` or `skb`.
    pub mode: &'static str,
    link: XdpLinkId,
    /// The egress program's link (tcx on Linux >= 6.6, a clsact filter before).
    egress: Option<SchedClassifierLinkId>,
}

/// True when running as root or with both CAP_BPF (39) and CAP_NET_ADMIN (12) effective.
pub fn has_privileges() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 39) != 0 && caps & (1 << 12) != 0)
}

/// Index of an interface, or an error listing the ones that exist.
pub fn ifindex(name: &str) -> Result<u32, LoadError> {
    let no_such = || LoadError::NoSuchInterface {
        name: name.to_owned(),
        available: available_interfaces(),
    };
    let c_name = CString::new(name).map_err(|_| no_such())?;
    // SAFETY: c_name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        Err(no_such())
    } else {
        Ok(index)
    }
}

/// Name of an interface index, or the index as text.
pub fn ifname(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return index.to_string();
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Interfaces of this network namespace (`if_nameindex`, which unlike `/sys/class/net` follows
/// the caller's namespace).
fn available_interfaces() -> String {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if !list.is_null() {
            let mut entry = list;
            while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
                names.push(
                    std::ffi::CStr::from_ptr((*entry).if_name)
                        .to_string_lossy()
                        .into_owned(),
                );
                entry = entry.add(1);
            }
            libc::if_freenameindex(list);
        }
    }
    names.sort();
    names.join(", ")
}

/// The interface of the default route (IPv4 first, then IPv6).
pub fn default_interface() -> Result<String, LoadError> {
    std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_route_v4(&t))
        .or_else(|| {
            std::fs::read_to_string("/proc/net/ipv6_route")
                .ok()
                .and_then(|t| default_route_v6(&t))
        })
        .ok_or(LoadError::NoDefaultInterface)
}

/// Picks the lowest-metric `0.0.0.0/0` route from `/proc/net/route`.
fn default_route_v4(table: &str) -> Option<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000")
                .then(|| (f[6].parse::<u32>().unwrap_or(u32::MAX), f[0].to_owned()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Picks the lowest-metric `::/0` route from `/proc/net/ipv6_route`.
fn default_route_v6(table: &str) -> Option<String> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // dst dst_len src src_len next_hop metric refcnt use flags iface
            (f.len() >= 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo").then(
                || {
                    (
                        u32::from_str_radix(f[5], 16).unwrap_or(u32::MAX),
                        f[9].to_owned(),
                    )
                },
            )
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Loads the object and the program into the kernel (not attached yet). With `pins`, the block
/// maps are pinned in that instance's directory (reused if already there).
pub fn load(tracker_capacity: u32, pins: Option<&Instance>) -> Result<Ebpf, LoadError> {
    if XDP_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    if !has_privileges() {
        return Err(LoadError::NotPrivileged);
    }
    raise_memlock_limit();
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(maps::TRACKER, tracker_capacity);
    if let Some(instance) = pins {
        loader
            .map_pin_path(maps::BLOCKS, instance.pin_path(maps::BLOCKS))
            .map_pin_path(maps::BLOCKLIST, instance.pin_path(maps::BLOCKLIST));
    }
    let mut ebpf = loader.load(XDP_OBJECT)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| LoadError::Attach {
            interface: String::new(),
            error: format!("program {PROGRAM} missing from the object"),
        })?
        .try_into()?;
    let verdict = program.load().and_then(|()| {
        let egress: &mut SchedClassifier = ebpf
            .program_mut(EGRESS_PROGRAM)
            .expect("egress program in the object")
            .try_into()?;
        egress.load()
    });
    match verdict {
        Ok(()) => Ok(ebpf),
        Err(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            let btf_hint = if Path::new("/sys/kernel/btf/vmlinux").exists() {
                ""
            } else {
                " This kernel has no BTF (/sys/kernel/btf/vmlinux is missing); scanwatch needs \
                 Linux >= 5.15 built with CONFIG_DEBUG_INFO_BTF=y."
            };
            Err(LoadError::Verifier {
                error: io_error,
                tail,
                btf_hint,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK (later ones use memcg accounting).
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const limit) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

/// Attaches the loaded program to `interface`.
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: XdpMode,
    force: bool,
) -> Result<Attachment, LoadError> {
    let ifindex = ifindex(interface)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .expect("program was loaded")
        .try_into()?;
    if force {
        remove_foreign_xdp(interface);
    }
    let attempt = |program: &mut Xdp, aya_mode| program.attach_to_if_index(ifindex, aya_mode);
    let classify = |e: ProgramError| {
        let text = error_chain(&e);
        if text.contains("Device or resource busy") || text.contains("EBUSY") {
            LoadError::AlreadyAttached {
                interface: interface.to_owned(),
            }
        } else {
            LoadError::Attach {
                interface: interface.to_owned(),
                error: text,
            }
        }
    };
    let (link, mode_name) = match mode {
        XdpMode::Skb => (attempt(program, AyaXdpMode::Skb).map_err(classify)?, "skb"),
        XdpMode::Native => match attempt(program, AyaXdpMode::Driver) {
            Ok(link) => (link, "native"),
            Err(e) => match classify(e) {
                LoadError::Attach { error, .. } => {
                    return Err(LoadError::NativeUnsupported {
                        interface: interface.to_owned(),
                        error,
                    });
                }
                other => return Err(other),
            },
        },
        XdpMode::Auto => match attempt(program, AyaXdpMode::Driver) {
            Ok(link) => (link, "native"),
            Err(e) => match classify(e) {
                LoadError::Attach { error, .. } => {
                    warn!(
                        "native XDP is not available on {interface} ({error}); falling back to \
                         skb (generic) mode, which is slower"
                    );
                    (attempt(program, AyaXdpMode::Skb).map_err(classify)?, "skb")
                }
                other => return Err(other),
            },
        },
    };
    info!("attached XDP program to {interface} (ifindex {ifindex}, {mode_name} mode)");
    let egress = match attach_egress(ebpf, interface) {
        Ok(link) => Some(link),
        Err(e) => {
            warn!(
                "attaching the egress program to {interface} failed ({}); replies to this \
                 host's own connections will not be recognised and egress scans not detected",
                error_chain(&e)
            );
            None
        }
    };
    Ok(Attachment {
        interface: interface.to_owned(),
        ifindex,
        mode: mode_name,
        link,
        egress,
    })
}

/// Attaches the TC egress program: a tcx link on Linux >= 6.6 (detached with the process, even
/// on a crash), else a filter on a clsact qdisc (added if missing; a foreign clsact and its
/// filters are left alone).
fn attach_egress(ebpf: &mut Ebpf, interface: &str) -> Result<SchedClassifierLinkId, ProgramError> {
    let tcx = aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
    if !tcx {
        // EEXIST when a clsact is already there, ours or someone else's: fine either way.
        let _ = tc::qdisc_add_clsact(interface);
    }
    let program: &mut SchedClassifier = ebpf
        .program_mut(EGRESS_PROGRAM)
        .expect("egress program loaded")
        .try_into()?;
    let link = program.attach(interface, TcAttachType::Egress)?;
    info!("attached egress program to {interface}");
    Ok(link)
}

/// `--force`: removes an XDP program attached through netlink by someone else.
fn remove_foreign_xdp(interface: &str) {
    match std::process::Command::new("ip")
        .args(["link", "set", "dev", interface, "xdp", "off"])
        .status()
    {
        Ok(s) if s.success() => warn!("--force: removed any XDP program on {interface}"),
        Ok(s) => warn!("--force: `ip link set dev {interface} xdp off` exited with {s}"),
        Err(e) => warn!("--force: could not run `ip`: {e}"),
    }
}

/// Detaches both programs from every interface.
pub fn detach_all(ebpf: &mut Ebpf, attachments: Vec<Attachment>) {
    let mut egress_links = Vec::new();
    if let Some(Ok(program)) = ebpf.program_mut(PROGRAM).map(<&mut Xdp>::try_from) {
        for a in attachments {
            match program.detach(a.link) {
                Ok(()) => info!("detached XDP program from {}", a.interface),
                Err(e) => warn!("detaching XDP from {} failed: {e}", a.interface),
            }
            if let Some(link) = a.egress {
                egress_links.push((a.interface, link));
            }
        }
    }
    if let Some(Ok(program)) = ebpf
        .program_mut(EGRESS_PROGRAM)
        .map(<&mut SchedClassifier>::try_from)
    {
        for (interface, link) in egress_links {
            match program.detach(link) {
                Ok(()) => info!("detached egress program from {interface}"),
                Err(e) => warn!("detaching the egress program from {interface} failed: {e}"),
            }
        }
    }
}

/// The error and its sources, joined.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_v4_picks_lowest_metric() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
                     eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                     eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_v4(table).as_deref(), Some("eth0"));
        assert_eq!(default_route_v4("Iface\n"), None);
    }

    #[test]
    fn default_route_v6_skips_loopback() {
        let table = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
                     00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth9\n";
        assert_eq!(default_route_v6(table).as_deref(), Some("eth9"));
    }

    #[test]
    fn unknown_interface_lists_available() {
        let e = ifindex("nosuchif0").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("nosuchif0") && text.contains("lo"), "{text}");
    }
}
