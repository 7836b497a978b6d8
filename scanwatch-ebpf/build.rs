use which::which;

/// Rebuild when the `bpf-linker` binary changes (it is an undeclared dependency of this crate;
/// see aya-template).
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
