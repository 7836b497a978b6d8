//! Raw header samples of a source's first probes in a window, for tool attribution in user
//! space (`traits`): the kernel only copies bytes, it never interprets them.

/// Bytes kept per sample, from the IP header on: an IPv4 header (20), a TCP header (20) and 24
/// bytes of TCP options (the longest common SYN layout, macOS's, is 24); an IPv6 header (40),
/// TCP header (20) and the first option (MSS).
pub const SAMPLE_BYTES: usize = 64;

/// Samples kept per source and window: two, so user space sees whether probes agree.
pub const SAMPLES: usize = 2;

/// One probe's headers as it arrived (72 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSample {
    /// Bytes copied into `bytes` (0: the slot is empty).
    pub len: u16,
    pub reserved: [u8; 6],
    /// The probe from the first byte of its IP header.
    pub bytes: [u8; SAMPLE_BYTES],
}

impl ProbeSample {
    /// An empty slot.
    pub const EMPTY: Self = Self {
        len: 0,
        reserved: [0; 6],
        bytes: [0; SAMPLE_BYTES],
    };

    /// The copied bytes.
    pub fn data(&self) -> &[u8] {
        let len = usize::from(self.len).min(SAMPLE_BYTES);
        &self.bytes[..len]
    }
}

impl Default for ProbeSample {
    fn default() -> Self {
        Self::EMPTY
    }
}

const _: () = assert!(core::mem::size_of::<ProbeSample>() == 72);
