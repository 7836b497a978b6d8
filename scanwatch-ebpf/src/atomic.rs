//! The one read-modify-write the programs' BPF instruction set offers every kernel: an atomic
//! add without fetch. Counters shared by every CPU (a block's drops, a source's measures) are
//! updated with it, so no CPU's update is lost to another's.

/// Adds `n` to `*counter` with one BPF atomic add (`BPF_ATOMIC | BPF_ADD`, in every kernel
/// with eBPF). `AtomicU64::fetch_add` is not available: the BPF target has no compare-and-swap,
/// so Rust offers atomic loads and stores only. LLVM's own atomic add, whose result is unused,
/// becomes that instruction; unlike inline assembly, LLVM knows it touches `*counter` alone,
/// so nothing else is reloaded around it (inline assembly there cost the verifier 170,000
/// more instructions on the XDP program).
///
/// # Safety
/// `counter` points to an 8-aligned `u64` in map memory, valid for this run, that others
/// update only atomically.
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub unsafe fn atomic_add(counter: *mut u64, n: u64) {
    use core::intrinsics::{AtomicOrdering, atomic_xadd};
    // SAFETY: the caller's contract; the result is not used, so no fetch is asked for.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n);
    }
}

/// The same add where the crate is built for the host (its unit tests, clippy): the BPF
/// instruction does not assemble there.
///
/// # Safety
/// As the BPF version's.
#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
pub unsafe fn atomic_add(counter: *mut u64, n: u64) {
    // SAFETY: the caller's contract: aligned, valid, updated only atomically.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(counter) }
        .fetch_add(n, core::sync::atomic::Ordering::Relaxed);
}
