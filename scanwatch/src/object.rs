//! The eBPF objects built by `build.rs` and embedded in the binary.

/// The XDP program the daemon loads.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/scanwatch"));

/// Bench-only variant that rewrites the IPv4 source on every run (spoofed-source storm).
pub static SPOOF_BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/scanwatch-spoof-bench"));

/// Bench-only baseline: an empty XDP_PASS program.
pub static EMPTY_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/scanwatch-empty"));
