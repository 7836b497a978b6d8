//! Reading a whole hash map in a few system calls: `BPF_MAP_LOOKUP_BATCH` (Linux 5.6, commit
//! 057996380a42 "bpf: Add batch ops to all htab bpf map"), which aya 0.14 does not wrap.
//!
//! aya's map iterators make two system calls per entry (`BPF_MAP_GET_NEXT_KEY`, then
//! `BPF_MAP_LOOKUP_ELEM`): walking 100,000 tracked sources every few seconds for the gauges cost
//! the idle daemon about 2.5 % of a core. A batch lookup copies up to [`CHUNK`] entries per
//! call, bucket by bucket. Like the per-key walk it is not a snapshot: entries the data path
//! adds or evicts meanwhile may be missed or seen, each entry present throughout is seen once.
//!
//! Kernels without batch support for the map answer `EINVAL`/`ENOTSUPP`; callers then fall back
//! to aya's per-key iteration ([`is_unsupported`]).

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;
use nix::libc;

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// The kernel's internal `ENOTSUPP` (not in libc), which a map type without batch ops returns.
const ENOTSUPP: i32 = 524;
/// Entries asked for per call: 1024 tracker entries are about 850 KB of buffer, reused for the
/// whole walk.
pub const CHUNK: usize = 1024;
/// The hash map's cursor is a `u32` bucket index; other map types use a key. Sized for any
/// key this crate's maps have.
const TOKEN_BYTES: usize = 64;

/// The `batch` member of `union bpf_attr`. The kernel zero-extends a shorter attribute to its
/// own size, so only these fields are passed.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `each` with every entry of the hash map `fd` (keys `K`, values `V`, which must be the
/// map's exact key and value sizes), a chunk at a time.
///
/// # Errors
/// The system call's error; [`is_unsupported`] tells whether a per-key walk should be used
/// instead.
pub fn for_each<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    mut each: impl FnMut(&[K], &[V]),
) -> io::Result<()> {
    if size_of::<K>() > TOKEN_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "key larger than the batch cursor",
        ));
    }
    let mut chunk = CHUNK;
    let mut keys: Vec<K> = Vec::with_capacity(chunk);
    let mut values: Vec<V> = Vec::with_capacity(chunk);
    let mut cursor = [0u8; TOKEN_BYTES];
    let mut next = [0u8; TOKEN_BYTES];
    let mut first = true;
    loop {
        keys.clear();
        values.clear();
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).unwrap_or(u32::MAX),
            map_fd: fd.as_raw_fd().cast_unsigned(),
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: `attr` points at buffers with room for `count` keys and values of the map's
        // sizes (the caller's types), and at cursors of at least the key size; the kernel
        // writes no more than that.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        // The kernel sets `count` to the entries it copied, also on ENOENT (the last chunk).
        let filled = if error
            .as_ref()
            .is_none_or(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            (attr.count as usize).min(chunk)
        } else {
            0
        };
        // SAFETY: the kernel wrote `filled` whole keys and values; `Pod` types are valid for
        // any bytes.
        unsafe {
            keys.set_len(filled);
            values.set_len(filled);
        }
        if filled > 0 {
            each(&keys, &values);
        }
        match error {
            None => {}
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            // One bucket holds more entries than a chunk: retry it with room for them.
            Some(e) if e.raw_os_error() == Some(libc::ENOSPC) && chunk < 1 << 20 => {
                chunk *= 2;
                keys.reserve(chunk);
                values.reserve(chunk);
                continue;
            }
            Some(e) => return Err(e),
        }
        cursor = next;
        first = false;
    }
}

/// Whether `error` means this kernel or map type has no batch lookup (a per-key walk works).
pub fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}
