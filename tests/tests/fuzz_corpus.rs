//! The fuzz targets' saved inputs replayed as ordinary tests: every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/` (crashes the fuzzer saved) goes
//! through the target's entry point in `scanwatch::fuzzing`, the function the libFuzzer target
//! calls. No cargo-fuzz, no nightly; a panic fails the test and names the file.
//!
//! The `datapath` target's inputs are frames: each runs through the real XDP program and the
//! host model of its parser (`scanwatch_tests::differential`), as the target does, so this test
//! needs root; a disagreement fails it and names the file.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
};

use scanwatch::fuzzing::TARGETS;
use scanwatch_tests::{differential::Datapath, require_root};

/// The target that runs frames through the kernel, with the call its source makes.
const DATAPATH: (&str, &str) = ("datapath", "scanwatch_tests::differential::fuzz(data)");

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
fn saved_datapath_inputs_agree_with_the_model() {
    require_root();
    let (name, _) = DATAPATH;
    let corpus = files(&fuzz_dir().join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} has no seed");
    let mut datapath = Datapath::load().expect("loading the scanwatch XDP program");
    let mut disagreed = Vec::new();
    for path in corpus
        .iter()
        .chain(&files(&fuzz_dir().join("artifacts").join(name)))
    {
        let frame = std::fs::read(path).expect("reading a corpus file");
        if let Some(mismatch) = datapath.check(&frame).expect("BPF_PROG_TEST_RUN") {
            println!("{}: {mismatch}\n", path.display());
            disagreed.push(path.display().to_string());
        }
    }
    assert!(
        disagreed.is_empty(),
        "the XDP program and the model disagree on {disagreed:?} (printed above)"
    );
}

#[test]
fn every_entry_point_is_a_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| bin.split("name = \"").nth(1)?.split('"').next())
        .collect();
    let calls: Vec<(&str, String)> = TARGETS
        .iter()
        .map(|(name, _)| (*name, format!("scanwatch::fuzzing::{name}(data)")))
        .chain([(DATAPATH.0, DATAPATH.1.to_owned())])
        .collect();
    assert_eq!(
        bins,
        calls.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    for (name, call) in calls {
        let source =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(source.contains(&call), "{name} calls {call}");
    }
}
