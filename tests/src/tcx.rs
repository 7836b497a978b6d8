//! Filling an interface's tcx egress chain, so that attaching one more program fails: the
//! kernel holds a bounded number of programs per tcx hook (`BPF_MPROG_MAX`, Linux 6.6; 63 on
//! Linux 6.18), and one more attach returns `ERANGE`. This is how the tests make the daemon's
//! egress attach fail for real.
//!
//! The filler programs are the smallest valid TC programs (`r0 = TC_ACT_UNSPEC; exit`), loaded
//! and linked with raw `bpf(2)` calls; dropping [`TcxFill`] closes their link descriptors, which
//! detaches them.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// More than one tcx hook holds (`BPF_MPROG_MAX` is 64).
const TCX_ATTEMPTS: usize = 128;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_EGRESS: u32 = 47;

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with tcx options.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads one `r0 = -1; exit` SCHED_CLS program for tcx egress.
fn load_pass_program() -> io::Result<OwnedFd> {
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm -1 (TC_ACT_UNSPEC); BPF_JMP | BPF_EXIT.
    let insns: [u64; 2] = [
        u64::from(0xb7u8) | (u64::from(u32::MAX) << 32),
        u64::from(0x95u8),
    ];
    let license = c"GPL";
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_TCX_EGRESS,
        ..ProgLoadAttr::default()
    };
    bpf(BPF_PROG_LOAD, &attr)
}

/// Links holding an interface's tcx egress chain full; dropped, they detach.
#[derive(Debug)]
pub struct TcxFill {
    links: Vec<OwnedFd>,
}

impl TcxFill {
    /// Attaches filler programs to the egress hook of `ifindex` (in the caller's network
    /// namespace) until the kernel refuses one with `ERANGE`: the chain is full. How many it
    /// took is [`TcxFill::len`].
    pub fn fill(ifindex: u32) -> io::Result<Self> {
        let mut links = Vec::new();
        for _ in 0..TCX_ATTEMPTS {
            let prog = load_pass_program()?;
            let attr = LinkCreateAttr {
                prog_fd: prog.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: BPF_TCX_EGRESS,
                ..LinkCreateAttr::default()
            };
            match bpf(BPF_LINK_CREATE, &attr) {
                Ok(link) => links.push(link),
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => return Ok(Self { links }),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "the tcx egress chain took {TCX_ATTEMPTS} programs without ERANGE"
        )))
    }

    /// Programs attached.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}
