//! Replays every committed seed (`fuzz/seeds/TARGET/*`) through its target's
//! checks on stable: the corpora the fuzzers grew, and every crash they ever
//! found, stay passing in every CI run.

use std::path::PathBuf;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

#[test]
fn every_target_has_seeds_and_every_fuzz_binary_a_target() {
    let fuzz_targets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    let mut binaries: Vec<String> = std::fs::read_dir(&fuzz_targets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    binaries.sort();
    let names: Vec<&str> = fuzz_checks::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(binaries, names, "fuzz/fuzz_targets/ and TARGETS differ");
    for name in names {
        let dir = seeds_dir().join(name);
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert!(count > 0, "no seeds in {}", dir.display());
    }
}

#[test]
fn every_seed_passes_its_checks() {
    let mut replayed = 0;
    for (name, check) in fuzz_checks::TARGETS {
        let dir = seeds_dir().join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0);
    eprintln!("replayed {replayed} seeds");
}
