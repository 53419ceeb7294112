//! Replays every input kept in `fuzz/corpus/<target>/` (what cargo-fuzz found that reaches new
//! code, and the seeds) through the same function the fuzz target runs (`fuzz/targets.rs`), so
//! that CI guards what fuzzing found without nightly or sanitizers.

#[path = "../../../fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

fn corpus() -> PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(dir).join("../../fuzz/corpus")
}

#[test]
fn every_kept_fuzz_input_runs_clean() {
    let mut total = 0;
    for (name, target) in targets::TARGETS {
        let dir = corpus().join(name);
        let inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "no corpus for {name}");
        for input in &inputs {
            let data = std::fs::read(input).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("fuzz target {name} fails on {}", input.display());
            }
        }
        total += inputs.len();
    }
    // every target has a corpus folder, and the folders are not empty
    assert!(total >= targets::TARGETS.len());
    let folders = std::fs::read_dir(corpus()).unwrap().count();
    assert_eq!(folders, targets::TARGETS.len(), "a corpus folder without a target, or the reverse");
}
