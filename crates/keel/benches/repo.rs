//! Exact incremental at Gentoo scale (issue 22). A repository of 180,000 files:
//! tests/fixtures/gentoo-mini plus generated packages (ebuilds, Manifest, metadata.xml,
//! files/), eclasses and profiles no variant uses. `selinux` is built against it once;
//! then, side by side in one run:
//! - the no-op rebuild (median of three), which fingerprints what the last build read;
//! - today's full walk of the repository through the warm stat cache (what the sysroot
//!   fingerprint did before: `Fingerprint::tree` over the whole tree);
//! - a daily sync: 2,000 generated files changed, then a build, which must run nothing.
//!
//! Target: the no-op under 0.15 s. Run with `cargo xtask bench repo`.

use pipeline::fingerprint::{Fingerprint, StatCache};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CATEGORIES: usize = 200;
const PACKAGES: usize = 148;

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let real = testutil::project_root();
    let p = common::project()
        .expect("the tools and the Portage venv (`cargo xtask test` installs them)");
    let root = p.root.clone();
    // The binary packages this checkout already built: the first build takes them.
    if real.join("build/cache/binpkgs").is_dir() {
        fs::create_dir_all(root.join("build/cache")).expect("mkdir");
        common::copy_tree(
            &real.join("build/cache/binpkgs"),
            &root.join("build/cache/binpkgs"),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    common::copy_tree(&common::repo(), &repo);
    let t = Instant::now();
    let generated = generate(&repo);
    let files = count_files(&repo);
    println!(
        "repository: {files} files ({generated} generated in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let first = build(&root, &repo);
    println!(
        "first build of selinux: {:.1} s, stages run: {}",
        t.elapsed().as_secs_f64(),
        first.join(" ")
    );

    let mut noop = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let ran = build(&root, &repo);
        noop.push(t.elapsed().as_secs_f64());
        assert!(ran.is_empty(), "a no-op rebuild ran {ran:?}");
    }
    noop.sort_by(f64::total_cmp);

    // Today's path: the whole repository through the stat cache, warm.
    let cache_file = dir.path().join("statcache");
    let walk = |cache_file: &Path| {
        let mut cache = StatCache::load(cache_file);
        let t = Instant::now();
        Fingerprint::new()
            .tree("repo", &repo, Some(&mut cache))
            .expect("walk");
        let secs = t.elapsed().as_secs_f64();
        cache.save(cache_file).expect("save");
        secs
    };
    walk(&cache_file);
    let mut full = [walk(&cache_file), walk(&cache_file), walk(&cache_file)];
    full.sort_by(f64::total_cmp);
    println!(
        "no-op rebuild: median {:.3} s of 3 (target under 0.15 s); today's full walk alone: median {:.3} s; ratio {:.1}x",
        noop[1],
        full[1],
        full[1] / noop[1]
    );

    // A daily sync: 2,000 files outside the graph change.
    let mut changed = 0;
    'outer: for c in 0..CATEGORIES {
        for k in 0..PACKAGES {
            if changed == 2000 {
                break 'outer;
            }
            let e = repo.join(format!("gen-cat{c}/pkg{k}/pkg{k}-1.ebuild"));
            let text = fs::read_to_string(&e).expect("read");
            fs::write(&e, format!("{text}# synced\n")).expect("write");
            changed += 1;
        }
    }
    let t = Instant::now();
    let ran = build(&root, &repo);
    println!(
        "daily sync ({changed} files changed outside the graph): {:.3} s, stages run: {}",
        t.elapsed().as_secs_f64(),
        if ran.is_empty() {
            "none".to_owned()
        } else {
            ran.join(" ")
        }
    );
    assert!(ran.is_empty(), "a sync outside the graph reran {ran:?}");
}

/// Unrelated packages, eclasses and profiles: about 180,000 files with gentoo-mini's.
fn generate(repo: &Path) -> usize {
    let mut n = 0;
    let mut write = |p: PathBuf, text: &str| {
        fs::write(p, text).expect("write");
        n += 1;
    };
    fs::create_dir_all(repo.join("eclass")).expect("mkdir");
    for e in 0..500 {
        write(
            repo.join(format!("eclass/gen{e}.eclass")),
            &format!("# generated\ninherit gen{}\n", (e + 1) % 500),
        );
    }
    for pr in 0..100 {
        let d = repo.join(format!("profiles/gen/{pr}"));
        fs::create_dir_all(&d).expect("mkdir");
        for f in [
            "make.defaults",
            "package.use",
            "package.mask",
            "parent",
            "eapi",
        ] {
            write(d.join(f), "# generated\n");
        }
    }
    for c in 0..CATEGORIES {
        for k in 0..PACKAGES {
            let d = repo.join(format!("gen-cat{c}/pkg{k}"));
            fs::create_dir_all(d.join("files")).expect("mkdir");
            let ebuild = format!(
                "EAPI=8\ninherit gen{}\nDESCRIPTION=\"generated\"\nSLOT=\"0\"\nKEYWORDS=\"amd64\"\nLICENSE=\"MIT\"\n",
                k % 500
            );
            write(d.join(format!("pkg{k}-1.ebuild")), &ebuild);
            write(d.join(format!("pkg{k}-2.ebuild")), &ebuild);
            write(
                d.join("Manifest"),
                "DIST pkg-1.tar.gz 1 BLAKE2B 00 SHA512 00\n",
            );
            write(d.join("metadata.xml"), "<pkgmetadata/>\n");
            write(d.join("files/a.patch"), "--- a\n+++ b\n");
            write(d.join("files/b.conf"), "x=1\n");
        }
    }
    n
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// `keel build --variant selinux` against `repo`: the stages that ran.
fn build(root: &Path, repo: &Path) -> Vec<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(root)
        .args(["build", "--variant", "selinux", "--gentoo-repo"])
        .arg(repo)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run keel");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    err.lines()
        .filter(|l| l.contains("s] ") && l.contains(": done"))
        .filter_map(|l| l.split("s] ").nth(1)?.split(':').next())
        .map(str::to_owned)
        .collect()
}
