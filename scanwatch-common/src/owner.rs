//! Who sends this host's probes: the socket an outbound packet leaves through, and the process
//! that sent through it.
//!
//! The TC egress program reads the cookie and the cgroup of the socket of every packet that
//! opens a flow or is a probe by itself ([`Sender`]), keeps them with the flow, and an egress
//! event carries them. The first such packet of a socket leaves in its sender's system call
//! (connect, or sendmsg on a UDP, raw or packet socket), so the program records the current
//! task under the socket's cookie in `OWNERS` ([`SocketOwner`]); user space looks the cookie up
//! only when it writes a finding. The established fast path reads nothing.
//!
//! The cgroup comes from the packet's own socket, so it names the sender even when `OWNERS`
//! has lost the entry (a host opening sockets faster than the map turns over) or the kernel
//! does not let a TC program read the current task (before Linux 6.10). The record keeps the
//! recorded packet's headers too, so the tool matcher names the scanner of an egress finding as
//! it names an ingress one.

use crate::sample::ProbeSample;

/// A socket's identity as the TC egress program reads it from a packet (`bpf_get_socket_cookie`,
/// `bpf_skb_cgroup_id`): both 0 for a packet without a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sender {
    /// The socket's cookie: the key of `OWNERS`.
    pub cookie: u64,
    /// The socket's cgroup v2 id (the inode number of its cgroup directory).
    pub cgroup: u64,
}

impl Sender {
    /// No socket (a packet the kernel sends on nobody's behalf, or an ingress event).
    pub const NONE: Self = Self {
        cookie: 0,
        cgroup: 0,
    };
}

/// The process that sent a socket's first recorded packet, as the TC egress program saw it in
/// the sender's own system call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketOwner {
    /// Process id (thread group id), in the initial PID namespace.
    pub tgid: u32,
    /// Id of the thread that sent the packet.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id of the sending process (the socket's, checked when recorded).
    pub cgroup: u64,
    /// The task's command name (`comm`, NUL-padded).
    pub comm: [u8; 16],
    /// The headers of the packet recorded (the socket's first probe or flow opener), for the
    /// tool matcher (`fingerprints`), as the ingress samples are.
    pub sample: ProbeSample,
}

const _: () = assert!(core::mem::size_of::<SocketOwner>() == 112);
const _: () = assert!(core::mem::size_of::<Sender>() == 16);

/// The command name in `comm`, up to its first NUL, if it is UTF-8.
pub fn comm_name(comm: &[u8; 16]) -> Option<&str> {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    core::str::from_utf8(&comm[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_the_first_nul() {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"nmap");
        assert_eq!(comm_name(&comm), Some("nmap"));
        assert_eq!(comm_name(&[b'x'; 16]), Some("xxxxxxxxxxxxxxxx"));
        comm[1] = 0xff;
        assert_eq!(comm_name(&comm), None);
    }
}
