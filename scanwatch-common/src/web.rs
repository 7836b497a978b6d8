//! HTTP request sampling for web-scanner signatures (ATT&CK T1595.002): the XDP program copies
//! the first bytes of the first request of each connection to a web port into the
//! `WEB_SAMPLES` ring; the daemon parses them and matches its signature list. Only the request
//! line and headers matter, so a bounded prefix is enough.

use crate::{addr::SourceKey, flow::FlowKey};

/// Web-port slots in `KernelConfig::web_ports`.
pub const WEB_PORTS: usize = 8;

/// Default web ports: plain-text HTTP (TLS ports carry no readable request).
pub const DEFAULT_WEB_PORTS: [u16; 5] = [80, 8000, 8008, 8080, 8888];

/// Payload bytes copied per sample: a request line and the headers scanners send (Host,
/// User-Agent, Accept, Referer...) fit; longer requests are truncated, which the parser
/// tolerates.
pub const WEB_SAMPLE_BYTES: usize = 512;

/// One sampled request, as written to the `WEB_SAMPLES` ring (568 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebSample {
    /// Kernel monotonic time of the segment.
    pub timestamp_ns: u64,
    /// Client address (v4-mapped for IPv4), full length.
    pub source: SourceKey,
    /// Server address (v4-mapped for IPv4).
    pub target: SourceKey,
    pub source_port: u16,
    pub target_port: u16,
    /// Interface the segment arrived on.
    pub ifindex: u32,
    /// Bytes of `data` that hold payload (1..=`WEB_SAMPLE_BYTES`).
    pub len: u16,
    /// 1 for IPv6.
    pub ipv6: u8,
    pub reserved: [u8; 5],
    /// The segment's first payload bytes.
    pub data: [u8; WEB_SAMPLE_BYTES],
}

const _: () = assert!(core::mem::size_of::<WebSample>() == 568);

impl WebSample {
    /// The sampled payload bytes (`len` clamped to the buffer).
    pub fn payload(&self) -> &[u8] {
        let len = usize::from(self.len).min(WEB_SAMPLE_BYTES);
        &self.data[..len]
    }
}

/// The key of a sampled connection in `WEB_SEEN`: the 4-tuple from the server's side.
pub type WebConnection = FlowKey;

/// Whether the first four payload bytes start an HTTP/1.x request: a method token of RFC 9110
/// §9 (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE), PATCH (RFC 5789) or PROPFIND
/// (WebDAV, RFC 4918, which scanners probe), compared as one 32-bit word.
#[inline(always)]
pub const fn is_http_method(first: [u8; 4]) -> bool {
    matches!(
        &first,
        b"GET "
            | b"HEAD"
            | b"POST"
            | b"PUT "
            | b"DELE"
            | b"CONN"
            | b"OPTI"
            | b"TRAC"
            | b"PATC"
            | b"PROP"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_request_methods_and_nothing_else() {
        for m in [
            "GET / HTTP/1.1",
            "HEAD /",
            "POST /x",
            "PUT /a",
            "DELETE /",
            "CONNECT h:443",
            "OPTIONS *",
            "TRACE /",
            "PATCH /",
            "PROPFIND /",
        ] {
            let b = m.as_bytes();
            assert!(is_http_method([b[0], b[1], b[2], b[3]]), "{m}");
        }
        for other in [*b"\x16\x03\x01\x02", *b"SSH-", *b"get ", *b"GETX", [0; 4]] {
            assert!(!is_http_method(other), "{other:?}");
        }
    }
}
