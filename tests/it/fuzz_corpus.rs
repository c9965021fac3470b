//! Replays every committed fuzz seed (`fuzz/corpus/<target>/*`, hand-made cases plus
//! the minimized inputs that once broke a property) through the property its fuzz
//! target checks, so the stable test run guards them without cargo-fuzz.

use std::path::Path;

use slipway::fuzzing::TARGETS;

fn replay(target: &str) {
    let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(failed.is_empty(), "property broken by {failed:#?}");
}

#[test]
fn every_target_has_a_corpus() {
    for (name, _) in TARGETS {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/fuzz_targets")
                .join(format!("{name}.rs"))
                .exists(),
            "no fuzz target for {name}"
        );
    }
}

#[test]
fn directives() {
    replay("directives");
}

#[test]
fn status_write() {
    replay("status_write");
}

#[test]
fn recordio() {
    replay("recordio");
}

#[test]
fn dockerignore() {
    replay("dockerignore");
}

#[test]
fn unpack() {
    replay("unpack");
}

#[test]
fn challenge() {
    replay("challenge");
}
