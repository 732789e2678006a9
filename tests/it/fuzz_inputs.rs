//! The fuzz targets' inputs replayed through the targets' entry points (`aop::fuzzing`): the
//! seed corpora (`fuzz/seeds/`), and every input a fuzz run found to crash
//! (`fuzz/regressions/<target>/`, kept there after the fix), so that `cargo test` catches a
//! crash coming back without cargo-fuzz or a nightly feature. Also: the committed seeds are
//! what `cargo run --example fuzz_seeds` writes today.

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("zone_file", aop::fuzzing::zone_file),
    ("key_file", aop::fuzzing::key_file),
    ("node_config", aop::fuzzing::node_config),
    ("dns_fast", aop::fuzzing::dns_fast),
    ("dns_full", aop::fuzzing::dns_full),
    ("grpc_message", aop::fuzzing::grpc_message),
    ("stored_values", aop::fuzzing::stored_values),
    ("mcp_arguments", aop::fuzzing::mcp_arguments),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir/<target>/`, none when the folder does not exist.
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_every_past_crash_runs_through_its_target() {
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds"), target);
        assert!(!seeds.is_empty(), "no seeds for fuzz target {target}");
        for path in seeds
            .iter()
            .chain(&inputs(&fuzz_dir().join("regressions"), target))
        {
            let bytes = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(
                outcome.is_ok(),
                "fuzz target {target} panics on {}",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(replayed >= TARGETS.len());
}

#[test]
fn the_committed_seeds_are_what_the_generator_writes() {
    for seed in aop::fuzzing::seeds() {
        let path = fuzz_dir().join("seeds").join(seed.target).join(&seed.name);
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo run --example fuzz_seeds -- fuzz/seeds`)",
                path.display()
            )
        });
        assert!(
            committed == seed.bytes,
            "{} differs from what `cargo run --example fuzz_seeds -- fuzz/seeds` writes",
            path.display()
        );
    }
}
