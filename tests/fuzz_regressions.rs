//! Replays what fuzzing found and what it starts from, through the very
//! properties the fuzz targets check (fuzz/checks.rs): every file in
//! sip-fixtures/fuzz/<target>/ (each crash fuzzing ever found, kept as a
//! regression fixture), the RFC 4475 messages, and the star-code seeds.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .collect();
    v.sort();
    v
}

fn root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Runs `check` on each file, naming the file that fails.
fn replay(paths: &[PathBuf], check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) -> usize {
    for p in paths {
        let data = std::fs::read(p).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails its property", p.display());
        }
    }
    paths.len()
}

#[test]
fn fuzz_crash_fixtures_replay() {
    let mut n = 0;
    n += replay(&files(&root("sip-fixtures/fuzz/framing")), checks::framing);
    n += replay(&files(&root("sip-fixtures/fuzz/parse")), checks::parse);
    n += replay(
        &files(&root("sip-fixtures/fuzz/star_code")),
        checks::star_code,
    );
    println!("{n} fuzz regression fixtures replayed");
}

#[test]
fn rfc4475_messages_hold_the_fuzz_properties() {
    let mut msgs = files(&root("sip-fixtures/rfc4475/valid"));
    msgs.extend(files(&root("sip-fixtures/rfc4475/invalid")));
    assert!(msgs.len() >= 40, "the RFC 4475 fixtures are missing");
    replay(&msgs, checks::parse);
    // As TCP streams, one message and all of them back to back, at several
    // size limits and chunkings.
    let mut all = Vec::new();
    for p in &msgs {
        let m = std::fs::read(p).unwrap();
        for (limit, seed) in [(255u8, 7u8), (255, 3), (40, 1), (4, 9)] {
            let mut input = vec![limit, seed];
            input.extend_from_slice(&m);
            checks::framing(&input);
        }
        all.extend_from_slice(&m);
        all.extend_from_slice(b"\r\n\r\n");
    }
    for seed in 0..8u8 {
        let mut input = vec![255, seed];
        input.extend_from_slice(&all);
        checks::framing(&input);
    }
}

#[test]
fn star_code_seeds_hold_the_fuzz_properties() {
    let seeds = files(&root("fuzz/seeds/star_code"));
    assert!(seeds.len() >= 10);
    replay(&seeds, checks::star_code);
}
