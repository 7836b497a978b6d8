//! Real TCP connections on loopback, for kernel tests of paths that look up the kernel's
//! sockets: under `BPF_PROG_TEST_RUN` the XDP program's socket lookups run in the test
//! process's network namespace, so a connection on 127.0.0.1 (or ::1) is what they find.

use std::net::{IpAddr, TcpListener, TcpStream};

/// A listener and one established connection to it, all three sockets held open.
pub struct Connection {
    listener: TcpListener,
    _client: TcpStream,
    _server: TcpStream,
    /// The address both ends use.
    pub addr: IpAddr,
    /// The client's (ephemeral) port.
    pub client_port: u16,
    /// The listener's port.
    pub server_port: u16,
}

impl Connection {
    /// A new listener on `addr` (an ephemeral port) and one connection to it.
    pub fn open(addr: IpAddr) -> Self {
        let listener = TcpListener::bind((addr, 0)).expect("listen on loopback");
        Self::to(listener, addr)
    }

    /// Another connection to the same listener (another client port).
    #[must_use]
    pub fn another(&self) -> Self {
        let listener = self.listener.try_clone().expect("a second listener handle");
        Self::to(listener, self.addr)
    }

    fn to(listener: TcpListener, addr: IpAddr) -> Self {
        let server_port = listener.local_addr().expect("listener address").port();
        let client = TcpStream::connect((addr, server_port)).expect("connect on loopback");
        let (server, _) = listener.accept().expect("accept on loopback");
        Self {
            client_port: client.local_addr().expect("client address").port(),
            listener,
            _client: client,
            _server: server,
            addr,
            server_port,
        }
    }
}
