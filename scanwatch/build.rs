//! Builds the eBPF programs (nightly, `bpfel-unknown-none`, `-Z build-std=core`, BTF) and leaves
//! the objects in `OUT_DIR` for `include_bytes_aligned!`.
//!
//! This is aya-build's cargo-in-cargo, with one flag aya-build cannot pass:
//! `-C target-feature=+allows-misaligned-mem-access`. Packet headers sit at any alignment;
//! without the feature the BPF backend splits every header field load into single-byte loads,
//! which made the per-packet path several times slower. With it, LLVM emits one load per field,
//! which the verifier accepts on architectures with efficient unaligned access (x86_64,
//! arm64).
//!
//! Set `AYA_BUILD_SKIP=1` to skip (for `cargo clippy` on a machine without bpf-linker); the
//! binary then embeds empty objects and refuses to start.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

/// The eBPF package.
const PACKAGE: &str = "scanwatch-ebpf";
/// The objects (binaries of the eBPF package) to embed, each as the static that
/// `src/object.rs` gets from the generated `objects.rs`, with its doc comment.
const OBJECTS: [(&str, &str, &str); 4] = [
    (
        "scanwatch",
        "XDP_OBJECT",
        "The XDP and TC egress programs the daemon loads.",
    ),
    (
        "scanwatch-spoof-bench",
        "SPOOF_BENCH_OBJECT",
        "Bench-only variant that rewrites the IPv4 source on every run (spoofed-source storm).",
    ),
    (
        "scanwatch-empty",
        "EMPTY_OBJECT",
        "Bench-only baselines: an empty XDP_PASS program and an empty TC program.",
    ),
    (
        "scanwatch-reference",
        "REFERENCE_OBJECT",
        "Bench-only reference: a minimal per-source counter, plainly and under spoofed sources.",
    ),
];
const TARGET: &str = "bpfel-unknown-none";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:warning=AYA_BUILD_SKIP set: embedding empty eBPF objects");
        for (name, _, _) in OBJECTS {
            std::fs::write(out_dir.join(name), [])?;
        }
        return write_objects_rs(&out_dir);
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let workspace = manifest_dir.parent().context("no workspace dir")?;
    for dir in ["scanwatch-ebpf", "scanwatch-common"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let target_dir = out_dir.join("ebpf-target");
    build(workspace, &target_dir)?;
    let built = target_dir.join(TARGET).join("release");
    for (name, _, _) in OBJECTS {
        std::fs::copy(built.join(name), out_dir.join(name))
            .with_context(|| format!("copying the eBPF program {name}"))?;
    }
    write_objects_rs(&out_dir)
}

/// Writes `objects.rs`: one aligned `static` per embedded object.
fn write_objects_rs(out_dir: &Path) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut code = String::new();
    for (file, name, doc) in OBJECTS {
        writeln!(
            code,
            "/// {doc}\npub static {name}: &[u8] =\n    \
             aya::include_bytes_aligned!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));"
        )?;
    }
    std::fs::write(out_dir.join("objects.rs"), code).context("writing objects.rs")
}

fn build(workspace: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
        "-Ctarget-feature=+allows-misaligned-mem-access".to_owned(),
    ]
    .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        PACKAGE,
        "--bins",
    ])
    .args(["--release", "--target", TARGET, "-Z", "build-std=core"])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(workspace)
    .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
    // The outer cargo's compiler settings are for the host toolchain, not nightly's.
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("RUSTFLAGS");
    let output = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is rustup installed?)"))?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building the eBPF programs failed ({}); run `cargo xtask setup` to install the \
             nightly rust-src component and bpf-linker",
            output.status
        );
    }
    Ok(())
}
