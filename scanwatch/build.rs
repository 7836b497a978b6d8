//! Builds the XDP program (nightly, `bpfel-unknown-none`, `-Z build-std=core`, BTF) with
//! aya-build and leaves the objects in `OUT_DIR` for `include_bytes_aligned!`.
//!
//! Set `AYA_BUILD_SKIP=1` to skip (for `cargo clippy` on a machine without bpf-linker); the
//! binary then embeds empty objects and refuses to start.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "scanwatch-ebpf")
        .ok_or_else(|| anyhow!("scanwatch-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        for name in ["scanwatch", "scanwatch-spoof-bench", "scanwatch-empty"] {
            std::fs::write(out_dir.join(name), [])?;
        }
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
