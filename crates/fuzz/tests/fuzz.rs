//! A bounded fuzz run per target, part of the normal test suite: a fixed number of
//! executions from a fixed seed (`KEEL_FUZZ_SEED` picks another), so a run is repeatable.
//! The longer run is `cargo xtask bench fuzz` (benches/fuzz.rs, docs/fuzz.md). Each test
//! prints its executions and time (`-- --nocapture` shows them).

use fuzz::{targets, Limits};
use std::path::{Path, PathBuf};

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz")
}

/// Fuzz `name` for `execs` executions; fail with the crash (input saved and printed).
fn bounded(name: &str, execs: u64) {
    let t = targets::by_name(name).unwrap_or_else(|| panic!("no target `{name}`"));
    let seed = fuzz::seed_from_env().unwrap_or_else(|e| panic!("{e}"));
    let limits = Limits {
        execs: Some(execs),
        time: None,
    };
    let r = fuzz::run(t, seed, limits, &out_dir());
    println!(
        "fuzz {name}: {} executions in {:.2} s ({:.0}/s), {} shapes, corpus {}, slowest {:.1} ms (seed {seed:#x})",
        r.execs,
        r.elapsed.as_secs_f64(),
        r.execs_per_sec(),
        r.shapes,
        r.corpus,
        r.slowest.as_secs_f64() * 1e3
    );
    if let Some(c) = r.crash {
        panic!("{c}");
    }
    assert_eq!(r.execs, execs);
}

#[test]
fn atom() {
    bounded("atom", 20000);
}

#[test]
fn set_file() {
    bounded("set_file", 15000);
}

#[test]
fn variant_toml() {
    bounded("variant_toml", 10000);
}

#[test]
fn tmpfiles() {
    bounded("tmpfiles", 2000);
}

#[test]
fn tmpfiles_edit() {
    bounded("tmpfiles_edit", 20000);
}

#[test]
fn oci_json() {
    bounded("oci_json", 3000);
}

#[test]
fn oci_layer() {
    bounded("oci_layer", 1500);
}

#[test]
fn oci_archive() {
    bounded("oci_archive", 2000);
}

#[test]
fn image_manifest() {
    bounded("image_manifest", 1500);
}

/// Inputs that once made a target panic (`regressions/<target>/*`), replayed as they are.
#[test]
fn regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut n = 0;
    for t in targets::ALL {
        let Ok(rd) = std::fs::read_dir(dir.join(t.name)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let input = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if let Err(m) = fuzz::replay(t, &input) {
                panic!("{}: {m}", f.display());
            }
            n += 1;
        }
    }
    println!("{n} regression inputs replayed");
}

#[test]
fn every_target_has_a_test() {
    let src = include_str!("fuzz.rs");
    for t in targets::ALL {
        assert!(
            src.contains(&format!("bounded(\"{}\", ", t.name)),
            "no bounded run of `{}`",
            t.name
        );
    }
}
