//! Names of the eBPF programs (their ELF symbols), for the loader, the tests and the benchmark
//! to find them by. The kernel crate checks at compile time that its program functions carry
//! these names: aya-ebpf's `#[xdp]` and `#[classifier]` name a program after its function and
//! take no name argument.

/// The XDP program: ingress parsing, drop mode, replies and probe tracking.
pub const XDP: &str = "scanwatch";
/// The TC egress program: the host's own flows and the probes it sends.
pub const EGRESS: &str = "scanwatch_egress";
/// The egress program's read-only switch (a `u8` global) for recording who sends each socket's
/// packets (`owner`): 1 where TC programs may read the current task (Linux 6.10 and later).
pub const OWNERS_ON: &str = "OWNERS_ON";
/// XDP program never attached: each test run writes the kernel's jiffies and coarse monotonic
/// clock into `maps::CLOCK_SAMPLE`, from which the daemon calibrates the data path's clock.
pub const CLOCK: &str = "scanwatch_clock";
/// Bench-only XDP program that spoofs a random IPv4 source before handling each packet.
pub const SPOOF_BENCH: &str = "scanwatch_spoof_bench";
/// Bench-only XDP baseline: returns XDP_PASS and does nothing else.
pub const EMPTY: &str = "scanwatch_empty";
/// Bench-only TC baseline: lets the packet go on and does nothing else.
pub const EMPTY_TC: &str = "scanwatch_empty_tc";

/// Bench-only reference: a minimal per-source counter (one LRU lookup or insert, one increment).
pub const REFERENCE: &str = "scanwatch_reference";
/// Bench-only reference under a spoofed storm: rewrites the IPv4 source, then counts it.
pub const REFERENCE_SPOOF: &str = "scanwatch_reference_spoof";

/// Byte-wise string equality usable in constants (`str::eq` is not `const`).
pub const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_names_byte_for_byte() {
        assert!(same_name(XDP, "scanwatch"));
        assert!(!same_name(XDP, EGRESS));
        assert!(!same_name("scanwatch_a", "scanwatch_b"));
    }
}
