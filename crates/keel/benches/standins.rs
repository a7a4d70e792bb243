//! Regenerating gentoo-mini's stand-ins made of Debian packages' files (issue 18,
//! docs/gentoo-mini.md), side by side in one run on a copy of the tree:
//! - cold: an empty `.deb` cache (apt resolves, every `.deb` is downloaded and hashed);
//! - cached: the same again (apt resolves; the cached `.deb`s are hashed, nothing written);
//! - the size of what was downloaded.
//!
//! Run with `cargo xtask bench standins` (needs the Debian archive: a minute or two).

use std::fs;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

fn regen(p: &common::Project, repo: &std::path::Path) -> (f64, String) {
    let c = common::keel_cmd(p, &["standins", "--repo", &repo.display().to_string()]);
    let t = Instant::now();
    let (ok, out, err) = common::text(&testutil::output_within(
        c,
        std::time::Duration::from_secs(1800),
        "keel standins",
    ));
    assert!(ok, "keel standins: {err}");
    (t.elapsed().as_secs_f64(), out)
}

fn main() {
    let p = common::project()
        .expect("the tools and the Portage venv (`cargo xtask test` installs them)");
    // a copy of the tree; the project's own (empty) cache
    let repo = p.root.join("gentoo-mini");
    common::copy_tree(&common::repo(), &repo);
    let cache = p.root.join("build/cache/standins");
    assert!(!cache.exists());
    let (cold, out) = regen(&p, &repo);
    let bytes: u64 = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let n = out.lines().filter(|l| l.contains(": ")).count();
    println!(
        "cold: {cold:.1} s for {n} stand-ins, {:.1} MiB of .debs downloaded and hashed",
        bytes as f64 / (1 << 20) as f64
    );
    let (cached, out) = regen(&p, &repo);
    assert!(
        !out.contains("wrote "),
        "a second run writes nothing:\n{out}"
    );
    println!(
        "cached: {cached:.1} s ({:.1}x faster; the cache saves {:.1} s)",
        cold / cached,
        cold - cached
    );
}
