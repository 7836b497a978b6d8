//! The fuzz targets' saved inputs replayed as ordinary tests: every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` (crashes the fuzzer saved) goes
//! through the target's entry point in `scanwatch::fuzzing`, the function the libFuzzer target
//! calls. No cargo-fuzz, no nightly; a panic fails the test and names the file.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use scanwatch::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn saved_fuzz_inputs_never_panic() {
    let mut panicked = Vec::new();
    for (name, entry) in TARGETS {
        let corpus = files(&fuzz_dir().join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed");
        for path in corpus
            .iter()
            .chain(&files(&fuzz_dir().join("artifacts").join(name)))
        {
            let data = std::fs::read(path).expect("reading a corpus file");
            if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                panicked.push(path.display().to_string());
            }
        }
    }
    assert!(panicked.is_empty(), "panicked on {panicked:?}");
}

#[test]
fn every_entry_point_is_a_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| bin.split("name = \"").nth(1)?.split('"').next())
        .collect();
    let entry_points: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(bins, entry_points);
    for name in bins {
        let source =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            source.contains(&format!("scanwatch::fuzzing::{name}(data)")),
            "{name}"
        );
    }
}
