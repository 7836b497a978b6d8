//! The eBPF objects built by `build.rs` and embedded in the binary (`XDP_OBJECT`, and the
//! bench-only `SPOOF_BENCH_OBJECT` and `EMPTY_OBJECT`). Their file names live in `build.rs`,
//! their program names in `scanwatch_common::programs`.

include!(concat!(env!("OUT_DIR"), "/objects.rs"));
