//! Copies the headers of a source's first probes of a window into its state, for tool
//! attribution in user space (`scanwatch_common::fingerprints`). Only probes reach here, and only
//! while a slot is empty: once both are full, a probe pays one load and a branch.

use aya_ebpf::{
    helpers::{bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use scanwatch_common::sample::{ProbeSample, SAMPLE_BYTES, SAMPLES};

/// The IP header starts within the first 22 bytes (see `parse`); masked so the verifier knows.
const L3_MASK: u32 = 31;

/// The fixed IPv4 header: the shortest sample.
const MIN_BYTES: u64 = 20;

/// True while a sample slot is empty: the caller's cheap check before [`take`].
#[inline(always)]
pub fn wanted(samples: &[ProbeSample; SAMPLES]) -> bool {
    samples[SAMPLES - 1].len == 0
}

/// Copies up to `SAMPLE_BYTES` from the IP header at `l3` into the first empty slot.
///
/// Through `bpf_xdp_load_bytes` (Linux >= 5.18, commit 3f364222d032): a non-inlined function
/// cannot derive packet pointers from the context, and the helper also copies from
/// multi-buffer frames.
#[inline(never)] // own BPF stack frame, off the inlined probe path
pub fn take(ctx: &XdpContext, l3: u16, samples: &mut [ProbeSample; SAMPLES]) {
    let slot = if samples[0].len == 0 {
        &mut samples[0]
    } else if samples[1].len == 0 {
        &mut samples[1]
    } else {
        return;
    };
    let l3 = u32::from(l3) & L3_MASK;
    // SAFETY: the context the kernel passed in.
    let frame = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let available = frame.saturating_sub(u64::from(l3));
    // At least the fixed IPv4 header (parsed before any probe reaches here), at most
    // SAMPLE_BYTES. Written as a floor plus a clamped extra: the helper's size must be provably
    // non-zero, which a clamped length checked against zero is not once LLVM reorders checks.
    let Some(extra) = available.checked_sub(MIN_BYTES) else {
        return;
    };
    let len = (MIN_BYTES + extra.min(SAMPLE_BYTES as u64 - MIN_BYTES)) as u32;
    // SAFETY: `slot.bytes` holds SAMPLE_BYTES >= len bytes; the helper checks the packet side.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, l3, slot.bytes.as_mut_ptr().cast(), len) };
    if rc == 0 {
        slot.len = len as u16;
    }
}
