//! Writes the fuzz targets' seed corpora (`aop::fuzzing::seeds`) under a directory, one
//! folder per target, replacing what was there:
//!
//!     cargo run --example fuzz_seeds -- fuzz/seeds
//!
//! The seeds are made from the shipped zones, node configs and key, so they follow the
//! formats when those change; `tests/it/fuzz_inputs.rs` replays them through the targets.

fn main() -> std::io::Result<()> {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(2);
    };
    let out = std::path::PathBuf::from(out);
    let seeds = aop::fuzzing::seeds();
    let mut targets: Vec<&str> = seeds.iter().map(|seed| seed.target).collect();
    targets.dedup();
    for target in targets {
        let dir = out.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    for seed in &seeds {
        std::fs::write(out.join(seed.target).join(&seed.name), &seed.bytes)?;
    }
    println!("{} seeds written under {}", seeds.len(), out.display());
    Ok(())
}
