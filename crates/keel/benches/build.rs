//! Whole builds of the shipped variants against tests/fixtures/gentoo-mini (issues 5, 6).
//!
//! Reports, per variant: wall time per stage for a clean build, the number of emerge
//! invocations, the no-op rebuild time (and its emerge count: must be 0), an overlay-only
//! rebuild, and Keel's own share of a full build: everything but emerge (the sysroot and
//! destroot stages) and mksquashfs (timed separately on the same tree); then the peak
//! size of `build/work/V` during the clean build against the final tree, and the median of
//! three overlay-only edits (issue 15: under 3 s for `selinux`, peak under 2.5 times the
//! final tree); then the build from destroot on with progress on and off (issue 21).
//!
//! `KEEL_BENCH_BASELINE=/path/to/an/older/keel` runs the same peak-size and overlay-edit
//! measurements with that binary too, side by side, in its own project copy.
//! Run with `cargo xtask bench build`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let real = testutil::project_root();
    let p = common::project()
        .expect("the tools and the Portage venv (`cargo xtask test` installs them)");
    let root = p.root.clone();
    let keel = PathBuf::from(env!("CARGO_BIN_EXE_keel"));
    let repo = real.join("tests/fixtures/gentoo-mini");

    for variant in ["base", "selinux"] {
        println!("== {variant}");
        let (clean, peak) = with_peak(&root.join("build/work").join(variant), || {
            build(&keel, &root, &repo, variant)
        });
        let emerges = common::emerge_runs(&p, variant);
        for (stage, secs) in &clean.stages {
            println!("  {stage:<11} {secs:>7.1} s");
        }
        println!(
            "  total       {:>7.1} s   emerge invocations: {emerges}",
            clean.wall
        );
        let emerge_secs: f64 = clean
            .stages
            .iter()
            .filter(|(s, _)| s == "sysroot" || s == "destroot")
            .map(|(_, t)| t)
            .sum();
        let squash = time_mksquashfs(&root, variant);
        let own = clean.wall - emerge_secs - squash;
        println!(
            "  Keel's own time: {own:.1} s of {:.1} s = {:.1}% (emerge {emerge_secs:.1} s, mksquashfs {squash:.1} s; target under 10%)",
            clean.wall,
            100.0 * own / clean.wall
        );
        let noop = build(&keel, &root, &repo, variant);
        let after = common::emerge_runs(&p, variant);
        println!("  no-op rebuild: {:.3} s, stages run: {}, emerge invocations: {} (target: under 1 s, 0 emerge)", noop.wall, noop.stages.len(), after - emerges);
        let (tree, sysroot) = sizes(&root, variant);
        print_peak("this Keel", peak, tree, sysroot);
        let (ov, names) = overlay_edits(&keel, &root, &repo, variant);
        println!("  overlay-only rebuild: median {ov:.2} s of 3, stages run: {names}");
        let (on, off) = progress_on_off(&keel, &root, &repo, variant);
        println!(
            "  progress (issue 21): destroot onward with progress lines {on:.2} s vs --quiet (log not followed) {off:.2} s, median of 3 each, alternating: ratio {:.3}",
            on / off
        );
        if let Some(old) = std::env::var_os("KEEL_BENCH_BASELINE").filter(|v| !v.is_empty()) {
            let old = PathBuf::from(old);
            let op = common::project().expect("a second project copy");
            let oroot = op.root.clone();
            // The baseline starts from this build's binary packages.
            common::copy_tree(&root.join("build/cache"), &oroot.join("build/cache"));
            let (_, opeak) = with_peak(&oroot.join("build/work").join(variant), || {
                build(&old, &oroot, &repo, variant)
            });
            let (otree, osysroot) = sizes(&oroot, variant);
            print_peak("baseline", opeak, otree, osysroot);
            let (oov, onames) = overlay_edits(&old, &oroot, &repo, variant);
            println!(
                "  baseline overlay-only rebuild: median {oov:.2} s of 3, stages run: {onames}"
            );
            println!(
                "  side by side: overlay-only edit {ov:.2} s vs {oov:.2} s (ratio {:.2}); peak work {:.0} MiB vs {:.0} MiB (ratio {:.2})",
                ov / oov,
                mib(peak),
                mib(opeak),
                peak as f64 / opeak as f64
            );
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn print_peak(who: &str, peak: u64, tree: u64, sysroot: u64) {
    println!(
        "  {who}: peak of build/work/V {:.0} MiB = {:.2} x the final tree ({:.0} MiB); without the sysroot ({:.0} MiB, Portage's build root): {:.2} x (target under 2.5)",
        mib(peak),
        peak as f64 / tree as f64,
        mib(tree),
        mib(sysroot),
        peak.saturating_sub(sysroot) as f64 / tree as f64
    );
}

/// The final tree's size and the sysroot's.
fn sizes(root: &Path, variant: &str) -> (u64, u64) {
    let work = root.join("build/work").join(variant);
    // This Keel keeps one tree; an older one kept a tree per stage.
    let tree = ["tree", "stage/policy", "stage/fixups"]
        .iter()
        .map(|t| work.join(t))
        .find(|p| p.is_dir())
        .expect("final tree");
    (du(&tree), du(&work.join("sysroot")))
}

/// Three overlay-only edits (a touched overlay file): the median wall time and the stages
/// the last one ran.
fn overlay_edits(keel: &Path, root: &Path, repo: &Path, variant: &str) -> (f64, String) {
    let f = root.join(
        "overlay/usr/lib/systemd/system/systemd-tmpfiles-setup.service.d/keel-subvolumes.conf",
    );
    let mut times = Vec::new();
    let mut names = String::new();
    for _ in 0..3 {
        let ok = Command::new("touch")
            .arg(&f)
            .status()
            .expect("touch")
            .success();
        assert!(ok);
        let ov = build(keel, root, repo, variant);
        names = ov
            .stages
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        times.push(ov.wall);
    }
    times.sort_by(f64::total_cmp);
    (times[1], names)
}

/// The build from destroot on (its stamp removed), with progress on (stderr a pipe: the
/// stage logs followed, a line per package) and off (`--quiet`), alternating: the medians.
fn progress_on_off(keel: &Path, root: &Path, repo: &Path, variant: &str) -> (f64, f64) {
    let stamp = root
        .join("build/work")
        .join(variant)
        .join("stamps/destroot");
    let mut on = Vec::new();
    let mut off = Vec::new();
    for i in 0..6 {
        fs::remove_file(&stamp).expect("the destroot stamp");
        let quiet = i % 2 == 1;
        let t = Instant::now();
        let mut c = Command::new(keel);
        c.arg("-C")
            .arg(root)
            .args(["build", "--variant", variant, "--gentoo-repo"])
            .arg(repo)
            .env("SOURCE_DATE_EPOCH", "1700000000");
        if quiet {
            c.arg("--quiet");
        }
        let o = c.output().expect("run keel");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            err.lines().any(|l| l.contains("] destroot: 1 of ")),
            !quiet,
            "{err}"
        );
        if quiet { &mut off } else { &mut on }.push(t.elapsed().as_secs_f64());
    }
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    (on[1], off[1])
}

/// Disk usage of a tree (allocated blocks, hard links once), as `du -s` counts it.
fn du(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Run `f` while sampling the size of `dir` every 200 ms: its result and the largest size.
fn with_peak<T>(dir: &Path, f: impl FnOnce() -> T) -> (T, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak, dir) = (done.clone(), peak.clone(), dir.to_owned());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(du(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let out = f();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    peak.fetch_max(du(dir), Ordering::Relaxed);
    (out, peak.load(Ordering::Relaxed))
}

struct Run {
    wall: f64,
    stages: Vec<(String, f64)>,
}

fn build(keel: &Path, root: &Path, repo: &Path, variant: &str) -> Run {
    let t = Instant::now();
    let o = Command::new(keel)
        .arg("-C")
        .arg(root)
        .args(["build", "--variant", variant, "--gentoo-repo"])
        .arg(repo)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run keel");
    let wall = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // "[       42.6s] sysroot: done (log: ...)"
    let stages = err
        .lines()
        .filter(|l| l.contains("s] ") && l.contains(": done"))
        .filter_map(|l| {
            let (secs, rest) = l.trim_start_matches('[').split_once("s] ")?;
            Some((
                rest.split(':').next()?.to_owned(),
                secs.trim().parse().ok()?,
            ))
        })
        .collect();
    Run { wall, stages }
}

/// mksquashfs alone on the variant's final tree, as the image stage runs it.
fn time_mksquashfs(root: &Path, variant: &str) -> f64 {
    let tree = root.join("build/work").join(variant).join("tree");
    let out = root.join("bench.squashfs");
    let t = Instant::now();
    let ok = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&out)
        .args([
            "-noappend",
            "-no-progress",
            "-quiet",
            "-reproducible",
            "-xattrs",
            "-comp",
            "zstd",
            "-Xcompression-level",
            "3",
            "-mkfs-time",
            "1700000000",
        ])
        .env_remove("SOURCE_DATE_EPOCH")
        .status()
        .expect("mksquashfs")
        .success();
    assert!(ok);
    let _ = fs::remove_file(out);
    t.elapsed().as_secs_f64()
}
