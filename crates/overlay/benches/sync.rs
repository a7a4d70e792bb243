//! Overlay sync against rsync, side by side in the same run, on a generated tree of
//! 20,000 files (mostly small, some multi-MiB): a first sync into an empty DEST, and a
//! re-sync with nothing changed. Prints both wall times (median of several runs) and the
//! ratio keel/rsync. Not a timed test: it reports, it does not assert.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 20_000;
const BIG_FILES: usize = 24;
const RUNS: usize = 3;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// 20,000 files in a three-level tree of directories, a few symlinks; returns total bytes.
fn generate(root: &Path) -> u64 {
    let mut rng = Rng(20_000);
    let mut total = 0u64;
    for i in 0..FILES {
        let dir = root.join(format!("d{}/e{}/f{}", i % 10, i % 97, i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        let size = if i % (FILES / BIG_FILES) == 0 {
            (2 << 20) + (rng.next() % (6 << 20)) as usize
        } else {
            (rng.next() % 8192) as usize
        };
        let p = dir.join(format!("file-{i}.conf"));
        std::fs::write(&p, rng.bytes(size)).unwrap();
        total += size as u64;
        if i % 200 == 0 {
            std::os::unix::fs::symlink(format!("file-{i}.conf"), dir.join(format!("link-{i}")))
                .unwrap();
        }
    }
    total
}

fn rsync(src: &Path, dest: &Path) {
    let st = Command::new("rsync")
        .args(["-rlptgoD", "-O", "--chown=0:0"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .status()
        .expect("run rsync");
    assert!(st.success(), "rsync failed: {st}");
}

fn keel(src: &Path, dest: &Path) {
    overlay::sync(&[src], dest).expect("overlay sync");
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fresh(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir(dir).unwrap();
}

fn settle() {
    let _ = Command::new("sync").status();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if Command::new("rsync").arg("--version").output().is_err() {
        eprintln!("SKIPPED: rsync is not installed (cargo xtask test installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let bytes = generate(&src);
    let (dr, dk) = (tmp.path().join("dest-rsync"), tmp.path().join("dest-keel"));
    // Warm the page cache for both.
    fresh(&dr);
    rsync(&src, &dr);
    fresh(&dk);
    keel(&src, &dk);

    let (mut first_r, mut first_k, mut again_r, mut again_k) = (vec![], vec![], vec![], vec![]);
    for run in 0..RUNS {
        // Alternate which tool goes first, so neither always gets the warmer cache.
        let order: [bool; 2] = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_rsync in order {
            let d = if is_rsync { &dr } else { &dk };
            fresh(d);
            // Start each timed run with no dirty pages from the previous one: the disk's
            // writeback of earlier runs would otherwise be billed to whoever runs next.
            settle();
            let first = time(|| {
                if is_rsync {
                    rsync(&src, d)
                } else {
                    keel(&src, d)
                }
            });
            settle();
            let again = time(|| {
                if is_rsync {
                    rsync(&src, d)
                } else {
                    keel(&src, d)
                }
            });
            if is_rsync {
                first_r.push(first);
                again_r.push(again);
            } else {
                first_k.push(first);
                again_k.push(again);
            }
        }
    }
    let rows = [
        (
            "first sync into an empty DEST",
            median(first_r),
            median(first_k),
        ),
        ("re-sync, nothing changed", median(again_r), median(again_k)),
    ];
    println!(
        "overlay sync: {FILES} files ({BIG_FILES} of 2-8 MiB), {:.1} MiB; median of {RUNS} runs",
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<32} {:>12} {:>12} {:>12}",
        "case", "rsync", "keel", "keel/rsync"
    );
    for (name, r, k) in rows {
        println!(
            "{:<32} {:>10.1}ms {:>10.1}ms {:>12.2}",
            name,
            r.as_secs_f64() * 1e3,
            k.as_secs_f64() * 1e3,
            k.as_secs_f64() / r.as_secs_f64()
        );
    }
}
