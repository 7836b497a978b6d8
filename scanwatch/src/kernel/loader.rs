//! Loading the XDP object, attaching it to interfaces and detaching it again, with errors that
//! tell the operator what to do next.

use std::{io, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode as AyaXdpMode, tc,
        tc::SchedClassifierLinkId, xdp::XdpLinkId,
    },
};
use log::{info, warn};
use scanwatch_common::{
    maps,
    programs::{EGRESS as EGRESS_PROGRAM, OWNERS_ON, XDP as PROGRAM},
};

use crate::{
    kernel::{object::XDP_OBJECT, pins::Instance},
    net,
    net::HostNetwork,
};

/// XDP attach mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Skb,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "scanwatch needs root, or the CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON capabilities, to \
         load and attach its programs (missing: {missing}); run it with sudo, from the systemd \
         unit (AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON), or grant them (setcap \
         cap_bpf,cap_net_admin,cap_perfmon+ep)"
    )]
    NotPrivileged { missing: String },
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
    #[error(
        "attaching the TC egress program to {interface} failed ({error}). Drop mode needs it: \
         without the host's own flows, replies to its connections (DNS answers, SYN-ACKs) look \
         like probes and the servers it talks to would be blocked. Fix the cause, or run \
         --mode monitor or --dry-run, which go on without it"
    )]
    EgressRequired { interface: String, error: String },
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

/// What a non-root agent needs, measured by `tests/tests/privileges.rs` (one fewer fails):
/// CAP_BPF to create maps and load programs; CAP_NET_ADMIN to load XDP and TC programs and
/// attach them; CAP_PERFMON because without it the verifier refuses pointer arithmetic on
/// packet pointers ("pointer arithmetic with it prohibited for !root").
pub const REQUIRED_CAPABILITIES: [caps::Capability; 3] = [
    caps::Capability::CAP_BPF,
    caps::Capability::CAP_NET_ADMIN,
    caps::Capability::CAP_PERFMON,
];

/// The [`REQUIRED_CAPABILITIES`] this process lacks (none for root).
pub fn missing_capabilities() -> Vec<caps::Capability> {
    if nix::unistd::geteuid().is_root() {
        return Vec::new();
    }
    REQUIRED_CAPABILITIES
        .into_iter()
        .filter(|&cap| !caps::has_cap(None, caps::CapSet::Effective, cap).unwrap_or(false))
        .collect()
}

/// True when running as root or with every one of [`REQUIRED_CAPABILITIES`] effective.
pub fn has_privileges() -> bool {
    missing_capabilities().is_empty()
}

/// [`LoadError::NotPrivileged`] unless [`has_privileges`].
pub fn check_privileges() -> Result<(), LoadError> {
    let missing = missing_capabilities();
    if missing.is_empty() {
        return Ok(());
    }
    Err(LoadError::NotPrivileged {
        missing: missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Index of an interface, or an error listing the ones that exist.
pub fn ifindex(name: &str) -> Result<u32, LoadError> {
    net::ifindex(name).ok_or_else(|| LoadError::NoSuchInterface {
        name: name.to_owned(),
        available: net::interface_names().join(", "),
    })
}

/// The interface of the default route (IPv4 first, then IPv6), read through netlink.
pub async fn default_interface() -> Result<String, LoadError> {
    HostNetwork::read()
        .await
        .ok()
        .and_then(|host| host.default_interface())
        .map(net::ifname)
        .ok_or(LoadError::NoDefaultInterface)
}

/// Loads the object and the program into the kernel (not attached yet). With `pins`, the block
/// maps are pinned in that instance's directory (reused if already there).
///
/// The egress program records who sends each socket's first probe (`owner`) where the kernel
/// lets a TC program read the current task (Linux 6.10 and later); on an older kernel the
/// verifier refuses that, and the object is loaded again without it, with one warning.
pub fn load(tracker_capacity: u32, pins: Option<&Instance>) -> Result<Ebpf, LoadError> {
    if XDP_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    check_privileges()?;
    raise_memlock_limit();
    match load_object(tracker_capacity, pins, true) {
        Err(LoadError::Verifier { tail, .. }) => {
            let ebpf = load_object(tracker_capacity, pins, false)?;
            warn!(
                "egress findings cannot name the process that sent their probes: this kernel's \
                 TC programs cannot read the current task (Linux 6.10 and later can); they name \
                 the sending socket's cgroup, else carry \"process\": null (verifier: {})",
                tail.lines().last().unwrap_or_default()
            );
            Ok(ebpf)
        }
        loaded => loaded,
    }
}

/// [`load`] with the egress program's recording of senders on or off (`OWNERS_ON`).
fn load_object(
    tracker_capacity: u32,
    pins: Option<&Instance>,
    owners: bool,
) -> Result<Ebpf, LoadError> {
    let owners_on = u8::from(owners);
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(maps::TRACKER, tracker_capacity);
    loader.override_global(OWNERS_ON, &owners_on, true);
    if let Some(instance) = pins {
        loader
            .map_pin_path(maps::BLOCKS, instance.pin_path(maps::BLOCKS))
            .map_pin_path(maps::BLOCKLIST, instance.pin_path(maps::BLOCKLIST))
            .map_pin_path(
                maps::BLOCK_PRESENCE,
                instance.pin_path(maps::BLOCK_PRESENCE),
            )
            .map_pin_path(maps::BLOCK_CACHE, instance.pin_path(maps::BLOCK_CACHE));
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
    use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
    if setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).is_err() {
        log::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}

/// Whether the agent may run without the TC egress program, and what to say: drop mode (not a
/// dry run) may not, since it would block the peers whose replies it no longer recognises;
/// monitor mode and dry runs go on with a warning.
pub fn egress_attach_failed(
    egress_required: bool,
    interface: &str,
    error: String,
) -> Result<(), LoadError> {
    if egress_required {
        return Err(LoadError::EgressRequired {
            interface: interface.to_owned(),
            error,
        });
    }
    warn!(
        "attaching the egress program to {interface} failed ({error}); replies to this host's \
         own connections will not be recognised and egress scans not detected"
    );
    Ok(())
}

/// Attaches the loaded programs to `interface`. When `egress_required` (drop mode, not a dry
/// run) and the egress program cannot attach, the XDP program is detached again and the
/// attach fails.
pub async fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: XdpMode,
    force: bool,
    egress_required: bool,
) -> Result<Attachment, LoadError> {
    let ifindex = ifindex(interface)?;
    let program: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .expect("program was loaded")
        .try_into()?;
    if force {
        remove_foreign_xdp(interface, ifindex).await;
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
            if let Err(fatal) = egress_attach_failed(egress_required, interface, error_chain(&e)) {
                let program: &mut Xdp = ebpf
                    .program_mut(PROGRAM)
                    .expect("program was loaded")
                    .try_into()?;
                if let Err(e) = program.detach(link) {
                    warn!("detaching XDP from {interface} failed: {e}");
                }
                return Err(fatal);
            }
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

/// `--force`: removes an XDP program attached through netlink by someone else (what
/// `ip link set dev IFACE xdp off` does: IFLA_XDP with fd -1).
async fn remove_foreign_xdp(interface: &str, ifindex: u32) {
    use rtnetlink::{
        LinkUnspec,
        packet_route::link::{LinkAttribute, LinkXdp},
    };
    let result = async {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let task = tokio::spawn(connection);
        let message = LinkUnspec::new_with_index(ifindex)
            .append_extra_attribute(LinkAttribute::Xdp(vec![LinkXdp::Fd(-1)]))
            .build();
        let done = handle.link().set(message).execute().await;
        task.abort();
        done.map_err(io::Error::other)
    }
    .await;
    match result {
        Ok(()) => warn!("--force: removed any XDP program on {interface}"),
        Err(e) => warn!("--force: removing the XDP program on {interface} failed: {e}"),
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
    fn drop_mode_refuses_to_run_without_the_egress_program() {
        let e = egress_attach_failed(true, "eth9", "ERANGE".into()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("eth9") && text.contains("ERANGE") && text.contains("--mode monitor"),
            "{text}"
        );
        assert!(egress_attach_failed(false, "eth9", "ERANGE".into()).is_ok());
    }

    #[test]
    fn unknown_interface_lists_available() {
        let e = ifindex("nosuchif0").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("nosuchif0") && text.contains("lo"), "{text}");
    }
}
