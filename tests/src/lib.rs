//! Test support for scanwatch.
//!
//! Kernel tests: a packet builder ([`packet`]), a harness that loads the real XDP object and
//! drives it with `BPF_PROG_TEST_RUN` ([`harness`]), the check of the program against the host
//! model of its parser ([`differential`]), and real loopback connections for the paths that
//! look sockets up ([`loopback`]).
//!
//! End-to-end tests: network namespaces and veth pairs ([`netns`]) wired into a lab
//! ([`lab`]), the real daemon inside it ([`daemon`]), processes and temp dirs ([`process`]),
//! a process's CPU time and memory ([`procstat`]),
//! services the lab runs ([`services`]), an HTTP client ([`http`]), the metrics text
//! ([`metrics`]), a real Prometheus ([`prometheus`]), a scanner ([`scanner`]), a pcap recorder ([`capture`]), the attribution matrix's cells ([`matrix`]) and the helpers
//! the end-to-end test files share ([`e2e`]).
//!
//! Package tests: the .deb under test ([`deb`]), a cached Debian tree made by debootstrap
//! ([`debootstrap`]), booted under its own systemd in a container ([`nspawn`]), and the mounts
//! they make ([`mounts`]).

use std::sync::atomic::{AtomicU32, Ordering};

pub mod attached;
pub mod capture;
pub mod crowdsec;
pub mod daemon;
pub mod deb;
pub mod debootstrap;
pub mod differential;
pub mod e2e;
pub mod harness;
pub mod http;
pub mod lab;
pub mod loopback;
pub mod matrix;
pub mod metrics;
pub mod mounts;
pub mod netns;
pub mod nspawn;
pub mod packet;
pub mod process;
pub mod procstat;
pub mod prometheus;
pub mod scanner;
pub mod scanners;
pub mod services;
pub mod tcx;

/// Per-process counter behind unique names.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A unique number for this process (labs, namespaces, temp dirs).
pub(crate) fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Fails the calling test with a clear message unless running as root: the kernel and
/// end-to-end tests load BPF programs and create network namespaces. Never skipped, in CI or
/// elsewhere.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test loads BPF programs and needs root (CAP_BPF + CAP_NET_ADMIN); \
         run it as root, e.g. `sudo -E cargo xtask test`"
    );
}
