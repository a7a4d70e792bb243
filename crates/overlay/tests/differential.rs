//! Differential tests: Keel's overlay sync against the real `rsync -rlptgoD -O --chown=0:0`
//! on seeded generated trees, into empty and pre-populated DESTs, single and layered.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

struct Case {
    /// Seeds of the source layers, applied in order.
    layers: Vec<u64>,
    /// Seed for pre-populating DEST (from the first layer's tree), or None for empty.
    prepopulate: Option<u64>,
    shape: Shape,
}

/// Paths rsync reported it could not replace ("could not make way for new regular file: X",
/// after "cannot delete non-empty directory: X").
fn rsync_refusals(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("could not make way for new "))
        .map(|l| unescape(l.split_once(": ").expect("kind: path").1))
        .collect()
}

/// rsync prints unprintable bytes of names as `\#ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'#') && i + 5 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 5], 8) {
                out.push(v);
                i += 5;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn keel_refusals(err: &overlay::Error, dest: &Path) -> BTreeSet<String> {
    let overlay::Error::Incomplete { errors, .. } = err else {
        panic!("expected a per-entry failure list, got: {err}");
    };
    errors
        .iter()
        .map(|e| match e {
            overlay::Error::NonEmptyDir { path, .. } => path
                .strip_prefix(dest)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            other => panic!("unexpected error: {other}"),
        })
        .collect()
}

/// Build the layers and two identical DESTs, sync one with rsync and one with Keel, and
/// compare. Returns (entries compared, source entries generated).
fn run(case: &Case) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut layers: Vec<PathBuf> = Vec::new();
    let mut generated = 0;
    for (i, seed) in case.layers.iter().enumerate() {
        let l = t.join(format!("layer{i}"));
        std::fs::create_dir(&l).unwrap();
        generated += generate(&l, *seed, case.shape);
        assert_coverage(&l);
        layers.push(l);
    }
    let (dr, dk) = (t.join("rsync/root"), t.join("keel/root"));
    for d in [&dr, &dk] {
        std::fs::create_dir_all(d).unwrap();
        if let Some(seed) = case.prepopulate {
            prepopulate(&layers[0], d, &t.join("elsewhere"), seed);
        }
    }
    let (before_r, before_k) = (snapshot(&dr), snapshot(&dk));
    let d0 = diff(&before_r, &before_k, &before_r, &before_k, now());
    assert!(
        d0.is_empty(),
        "the two DESTs must start identical:\n{}",
        d0.join("\n")
    );
    let start = now();
    let mut refused_r = BTreeSet::new();
    for l in &layers {
        let r = rsync(l, &dr);
        assert!(
            r.code == 0 || r.code == 23,
            "rsync failed ({}): {}",
            r.code,
            r.stderr
        );
        let refused = rsync_refusals(&r.stderr);
        assert_eq!(r.code == 23, !refused.is_empty(), "rsync: {}", r.stderr);
        refused_r.extend(refused);
    }
    let mut refused_k = BTreeSet::new();
    for l in &layers {
        match overlay::sync(&[l], &dk) {
            Ok(_) => {}
            Err(e) => refused_k.extend(keel_refusals(&e, &dk)),
        }
    }
    let (after_r, after_k) = (snapshot(&dr), snapshot(&dk));
    let diffs = diff(&after_r, &after_k, &before_r, &before_k, start);
    assert!(
        diffs.is_empty(),
        "{} differences between rsync and keel:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(refused_r, refused_k, "non-empty directories refused");
    if case.prepopulate.is_some() {
        // The suite must exercise both directory-mtime outcomes.
        let kept = after_k
            .iter()
            .filter(|(p, e)| {
                e.kind == "directory" && dir_time(p, e, &before_k, start) == DirTime::Kept
            })
            .count();
        assert!(kept > 0, "no pre-existing directory was left untouched");
    }
    // Nothing at a temporary name is left behind.
    assert!(
        !after_k
            .keys()
            .any(|p| p.to_string_lossy().contains(".keel.")),
        "temporary files left in DEST"
    );
    (after_k.len(), generated)
}

fn report(name: &str, (compared, generated): (usize, usize)) {
    eprintln!("{name}: {generated} source entries generated, {compared} DEST entries compared");
}

#[test]
fn single_source_into_empty_dest() {
    if !testutil::require("rsync") {
        return;
    }
    for seed in [1, 2, 3] {
        let n = run(&Case {
            layers: vec![seed],
            prepopulate: None,
            shape: Shape::default(),
        });
        report(&format!("seed {seed}"), n);
        assert!(n.0 >= 300, "tree too small: {n:?}");
    }
}

#[test]
fn single_source_into_prepopulated_dest() {
    if !testutil::require("rsync") {
        return;
    }
    for seed in [11, 12, 13, 14] {
        let n = run(&Case {
            layers: vec![seed],
            prepopulate: Some(seed),
            shape: Shape::default(),
        });
        report(&format!("seed {seed}"), n);
    }
}

#[test]
fn layered_sources_into_prepopulated_dest() {
    if !testutil::require("rsync") {
        return;
    }
    for seed in [21, 22] {
        let n = run(&Case {
            layers: vec![seed, seed + 100, seed + 200],
            prepopulate: Some(seed),
            shape: Shape {
                entries: 300,
                ..Shape::default()
            },
        });
        report(&format!("seed {seed}"), n);
    }
}

#[test]
fn layered_sources_into_empty_dest() {
    if !testutil::require("rsync") {
        return;
    }
    let n = run(&Case {
        layers: vec![31, 32],
        prepopulate: None,
        shape: Shape::default(),
    });
    report("seed 31+32", n);
}

/// A second sync with nothing changed writes nothing: no file is rewritten (same inode,
/// same ctime), no directory mtime moves, and the result still matches rsync's.
#[test]
fn resync_with_nothing_changed_rewrites_nothing() {
    if !testutil::require("rsync") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (dr, dk) = (tmp.path().join("r"), tmp.path().join("k"));
    for d in [&src, &dr, &dk] {
        std::fs::create_dir(d).unwrap();
    }
    generate(&src, 41, Shape::default());
    assert_eq!(rsync(&src, &dr).code, 0);
    overlay::sync(&[&src], &dk).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (before_r, before_k) = (snapshot(&dr), snapshot(&dk));
    let start = now();
    assert_eq!(rsync(&src, &dr).code, 0);
    let stats = overlay::sync(&[&src], &dk).unwrap();
    assert_eq!(stats.files_written, 0, "{stats:?}");
    assert_eq!(stats.dirs_created, 0, "{stats:?}");
    assert_eq!(
        stats.symlinks_written + stats.specials_written,
        0,
        "{stats:?}"
    );
    assert!(stats.files_unchanged > 0);
    let (after_r, after_k) = (snapshot(&dr), snapshot(&dk));
    let diffs = diff(&after_r, &after_k, &before_r, &before_k, start);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    for (p, b) in &before_k {
        let a = &after_k[p];
        assert_eq!(
            (b.ino, b.ctime, b.mtime),
            (a.ino, a.ctime, a.mtime),
            "{p:?} was touched by a no-change re-sync"
        );
    }
}
