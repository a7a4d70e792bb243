//! Whole builds of the shipped variants against tests/fixtures/gentoo-mini (issues 5, 6).
//!
//! Reports, per variant: wall time per stage for a clean build, the number of emerge
//! invocations, the no-op rebuild time (and its emerge count: must be 0), an overlay-only
//! rebuild, and Keel's own share of a full build: everything but emerge (the sysroot and
//! destroot stages) and mksquashfs (timed separately on the same tree).
//! Run with `cargo xtask bench build`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn main() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("root")
        .to_owned();
    let venv = fs::read_dir(real.join("build/tools")).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path())
            .find(|p| p.join(".keel-complete").exists())
    });
    let Some(venv) = venv else {
        eprintln!("no Portage venv under build/tools: run `cargo xtask test` (or `keel tools portage-venv`) first");
        std::process::exit(1);
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("p");
    fs::create_dir_all(root.join("build/tools")).expect("mkdir");
    for d in ["variants", "portage", "overlay", "tmpfiles.d", "policy"] {
        if real.join(d).exists() {
            let ok = Command::new("cp")
                .arg("-a")
                .arg(real.join(d))
                .arg(root.join(d))
                .status()
                .expect("cp")
                .success();
            assert!(ok);
        }
    }
    std::os::unix::fs::symlink(
        &venv,
        root.join("build/tools")
            .join(venv.file_name().expect("name")),
    )
    .expect("symlink");
    let repo = real.join("tests/fixtures/gentoo-mini");

    for variant in ["base", "selinux"] {
        println!("== {variant}");
        let clean = build(&root, &repo, variant);
        let emerges = emerge_count(&root, variant);
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
        let noop = build(&root, &repo, variant);
        let after = emerge_count(&root, variant);
        println!("  no-op rebuild: {:.3} s, stages run: {}, emerge invocations: {} (target: under 1 s, 0 emerge)", noop.wall, noop.stages.len(), after - emerges);
        let f = root.join(
            "overlay/usr/lib/systemd/system/systemd-tmpfiles-setup.service.d/keel-subvolumes.conf",
        );
        let ok = Command::new("touch")
            .arg(&f)
            .status()
            .expect("touch")
            .success();
        assert!(ok);
        let ov = build(&root, &repo, variant);
        let names: Vec<&str> = ov.stages.iter().map(|(s, _)| s.as_str()).collect();
        println!(
            "  overlay-only rebuild: {:.2} s, stages run: {}",
            ov.wall,
            names.join(" ")
        );
    }
}

struct Run {
    wall: f64,
    stages: Vec<(String, f64)>,
}

fn build(root: &Path, repo: &Path, variant: &str) -> Run {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
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

fn emerge_count(root: &Path, variant: &str) -> usize {
    let logs = root.join("build/work").join(variant).join("logs");
    fs::read_dir(logs)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| {
                    fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.starts_with("$ ") && l.contains("/emerge "))
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
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
