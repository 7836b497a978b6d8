//! Who sends the host's probes (`scanwatch_common::owner`): the socket of an egress packet and
//! the process that sent the socket's first recorded packet, with that packet's headers, all
//! read by the TC program off the fast path, only for packets that open a flow or are probes by
//! themselves.

use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_socket_cookie,
            bpf_skb_cgroup_id, bpf_skb_load_bytes,
        },
    },
    programs::TcContext,
};
use scanwatch_common::{
    owner::{Sender, SocketOwner},
    sample::{ProbeSample, SAMPLE_BYTES},
    stats::Counter,
};

use crate::{
    maps::{OWNERS, SENDER},
    stats::count,
};

/// Set to 1 by the loader on kernels that let a TC program read the current task (Linux
/// 6.10): with 0 the verifier never sees the helpers [`note`] calls, so older kernels still
/// load the program (and egress findings name the socket's cgroup only).
#[unsafe(no_mangle)]
static OWNERS_ON: u8 = 0;

/// The socket an egress packet leaves through, its sender recorded ([`note`]); `l3` is the
/// packet's IP header offset.
#[inline(always)]
pub fn noted(ctx: &TcContext, l3: u16) -> Sender {
    let sender = sender(ctx);
    note(ctx, l3, &sender);
    sender
}

/// The socket an egress packet leaves through: its cookie and cgroup (both 0 without one).
#[inline(always)]
fn sender(ctx: &TcContext) -> Sender {
    let skb = ctx.skb.skb;
    // SAFETY: helpers reading the skb the kernel passed in; both return 0 without a socket.
    unsafe {
        Sender {
            cookie: bpf_get_socket_cookie(skb.cast::<c_void>()),
            cgroup: bpf_skb_cgroup_id(skb),
        }
    }
}

/// Records who sends through `sender`'s socket, the first time one of its packets opens a flow
/// or is a probe: the current task. Such a packet leaves in its sender's system call (connect,
/// sendmsg on a UDP, raw or packet socket), and the sender is in the socket's cgroup; a packet
/// the kernel sends later for the socket (a retransmission from a timer) runs in whatever task
/// it interrupted, which the cgroup check and the record already made keep from being named.
#[inline(always)]
fn note(ctx: &TcContext, l3: u16, sender: &Sender) {
    // SAFETY: a read of a constant the loader set before loading.
    if unsafe { core::ptr::read_volatile(&raw const OWNERS_ON) } == 0 || sender.cookie == 0 {
        return;
    }
    if OWNERS.get_ptr(sender.cookie).is_some() {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: a helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if pid_tgid >> 32 == 0 || cgroup != sender.cgroup {
        count(Counter::OwnersUnsure);
        return;
    }
    let uid_gid = bpf_get_current_uid_gid();
    let mut owner = SocketOwner {
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        cgroup,
        comm: [0; 16],
        sample: ProbeSample::EMPTY,
    };
    // Written in place: the helper's array wrapper leaves a byte-aligned copy on the stack,
    // which the verifier refuses.
    // SAFETY: the helper writes at most 16 bytes into the 16-byte field.
    unsafe { bpf_get_current_comm(owner.comm.as_mut_ptr().cast(), 16) };
    take_sample(ctx, l3, &mut owner.sample);
    if OWNERS.insert(sender.cookie, owner, 0).is_ok() {
        count(Counter::OwnersRecorded);
    }
}

/// The IP header starts within the first 22 bytes (see `parse`); masked so the verifier knows.
const L3_MASK: u32 = 31;
/// The fixed IPv4 header: the shortest sample.
const MIN_BYTES: u32 = 20;

/// Copies up to `SAMPLE_BYTES` of the packet from its IP header into `sample`.
#[inline(always)]
fn take_sample(ctx: &TcContext, l3: u16, sample: &mut ProbeSample) {
    let l3 = u32::from(l3) & L3_MASK;
    // At least the fixed IPv4 header (parsed before), at most SAMPLE_BYTES: a floor plus a
    // clamped extra, so the helper's size is provably non-zero.
    let Some(extra) = ctx.len().checked_sub(l3 + MIN_BYTES) else {
        return;
    };
    let len = MIN_BYTES + extra.min(SAMPLE_BYTES as u32 - MIN_BYTES);
    // SAFETY: `sample.bytes` holds SAMPLE_BYTES >= len bytes; the helper checks the packet side.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast::<c_void>(),
            l3,
            sample.bytes.as_mut_ptr().cast(),
            len,
        )
    };
    if rc == 0 {
        sample.len = len as u16;
    }
}

/// Holds the sender of the egress probe being counted, for its event (`write_held`). A per-CPU
/// slot rather than a field of the event's origin: the origin is copied into the ingress
/// path's deepest frames, which have no 16 bytes of stack to spare. Written and read within
/// one run of one program, which nothing on the same CPU interrupts to run another.
#[inline(always)]
pub fn hold(sender: Sender) {
    if let Some(slot) = SENDER.get_ptr_mut(0) {
        // SAFETY: pointer into this CPU's slot of the array, valid for this run.
        unsafe { *slot = sender };
    }
}

/// Writes the sender [`hold`] kept in this run into an egress event's field (`egress`), or
/// [`Sender::NONE`]; copied field by field, through registers, not through the stack.
#[inline(always)]
pub fn write_held(field: &mut Sender, egress: bool) {
    let (cookie, cgroup) = match SENDER.get(0) {
        Some(held) if egress => (held.cookie, held.cgroup),
        _ => (0, 0),
    };
    field.cookie = cookie;
    field.cgroup = cgroup;
}
