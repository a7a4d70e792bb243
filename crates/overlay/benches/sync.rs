//! Overlay sync against rsync, side by side in the same run, on a generated tree of
//! 20,000 files (mostly small, some multi-MiB): a first sync into an empty DEST, and a
//! re-sync with nothing changed. Prints every run of both tools, the ratio keel/rsync per
//! run and the medians. Not a timed test: it reports, it does not assert.
//!
//! Method. The source is generated once and stays in the page cache; each tool is warmed up
//! by one untimed sync. Every timed first sync goes into a new empty directory next to the
//! others; nothing is deleted until the end. The order of the tools rotates from run to run,
//! and `sync` flushes dirty pages before every timed run, so neither tool is billed for the
//! other's writeback. Deleting a DEST just before a timed run is measured separately (the
//! last table): on ext4 without a journal (this machine's disk), every inode allocation
//! then scans past the inodes freed in the last minute or more (`recently_deleted()` in
//! `fs/ext4/ialloc.c`), a kernel cost that grows with what was deleted, whoever deleted it,
//! and that dominated earlier versions of this benchmark.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const FILES: usize = 20_000;
const BIG_FILES: usize = 24;
const RUNS: usize = 5;
/// Runs of the after-a-deletion case (each takes seconds of kernel time). Even, so that
/// each tool runs second (after more freshly freed inodes) equally often.
const DELETE_RUNS: usize = 4;

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

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Rsync,
    /// Keel with its default number of worker threads.
    Keel,
    /// Keel on one thread.
    Keel1,
}

fn run(tool: Tool, src: &Path, dest: &Path) {
    match tool {
        Tool::Rsync => {
            let st = Command::new("rsync")
                .args(["-rlptgoD", "-O", "--chown=0:0"])
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dest.display()))
                .status()
                .expect("run rsync");
            assert!(st.success(), "rsync failed: {st}");
        }
        Tool::Keel => {
            overlay::sync(&[src], dest).expect("overlay sync");
        }
        Tool::Keel1 => {
            overlay::sync_with_threads(&[src], dest, 1).expect("overlay sync");
        }
    }
}

/// Wall time of one run, after flushing every dirty page so that earlier writeback is not
/// billed to it.
fn timed(tool: Tool, src: &Path, dest: &Path) -> Duration {
    let _ = Command::new("sync").status();
    let t = Instant::now();
    run(tool, src, dest);
    t.elapsed()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0}ms", d.as_secs_f64() * 1e3)
}

fn ratio(k: Duration, r: Duration) -> String {
    format!("{:.2}", k.as_secs_f64() / r.as_secs_f64())
}

/// One table: a row per run and the medians; `cols` are (name, times per run), the first
/// being rsync; each other column is followed by its ratio to rsync.
fn table(title: &str, cols: &[(&str, &[Duration])]) {
    println!("\n{title}");
    let mut head = format!("{:<8}", "run");
    for (i, (name, _)) in cols.iter().enumerate() {
        head += &format!(" {name:>10}");
        if i > 0 {
            head += &format!(" {:>14}", format!("{name}/rsync"));
        }
    }
    println!("{head}");
    let row = |label: String, pick: &dyn Fn(&[Duration]) -> Duration| {
        let r = pick(cols[0].1);
        let mut line = format!("{label:<8} {:>10}", ms(r));
        for (_, times) in &cols[1..] {
            let k = pick(times);
            line += &format!(" {:>10} {:>14}", ms(k), ratio(k, r));
        }
        println!("{line}");
    };
    for i in 0..cols[0].1.len() {
        row(format!("{}", i + 1), &|t| t[i]);
    }
    row("median".into(), &|t| median(t));
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
    let mut n = 0;
    let mut new_dest = || {
        n += 1;
        let d = tmp.path().join(format!("dest-{n}"));
        std::fs::create_dir(&d).unwrap();
        d
    };
    // Warm-up, untimed: the source in the page cache, the binaries loaded, and any inodes
    // the filesystem freed recently (before this benchmark) used up by someone.
    for tool in [Tool::Rsync, Tool::Keel] {
        run(tool, &src, &new_dest());
    }

    let tools = [Tool::Rsync, Tool::Keel, Tool::Keel1];
    let mut first = [vec![], vec![], vec![]];
    let mut again = [vec![], vec![], vec![]];
    for r in 0..RUNS {
        // Rotate the order, so no tool always runs first or last.
        for k in 0..tools.len() {
            let i = (r + k) % tools.len();
            let d = new_dest();
            first[i].push(timed(tools[i], &src, &d));
            again[i].push(timed(tools[i], &src, &d));
        }
    }

    // A DEST deleted just before each first sync: each tool deletes its own previous one.
    let mut deleted = [vec![], vec![]];
    let mut last = [new_dest(), new_dest()];
    for (i, d) in last.iter().enumerate() {
        run(tools[i], &src, d);
    }
    for r in 0..DELETE_RUNS {
        for k in 0..2 {
            let i = (r + k) % 2;
            std::fs::remove_dir_all(&last[i]).unwrap();
            last[i] = new_dest();
            deleted[i].push(timed(tools[i], &src, &last[i]));
        }
    }

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    println!(
        "overlay sync: {FILES} files ({BIG_FILES} of 2-8 MiB), {:.1} MiB; keel = {threads} worker \
         threads, keel-j1 = one thread; wall times of every run, then the median",
        bytes as f64 / (1 << 20) as f64
    );
    table(
        "first sync into an empty DEST (new directory; nothing deleted during the benchmark)",
        &[
            ("rsync", &first[0]),
            ("keel", &first[1]),
            ("keel-j1", &first[2]),
        ],
    );
    table(
        "re-sync, nothing changed",
        &[
            ("rsync", &again[0]),
            ("keel", &again[1]),
            ("keel-j1", &again[2]),
        ],
    );
    table(
        "first sync right after deleting the previous 20,000-file DEST (ext4 without a journal: \
         inode allocation scans past recently freed inodes; kernel-bound, high variance)",
        &[("rsync", &deleted[0]), ("keel", &deleted[1])],
    );
}
