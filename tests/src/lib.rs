//! Test support for scanwatch: a packet builder, a harness that loads the real XDP object and
//! drives it with `BPF_PROG_TEST_RUN`, and (for end-to-end tests) network-namespace guards.

pub mod harness;
pub mod lab;
pub mod packet;
pub mod scanner;

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
