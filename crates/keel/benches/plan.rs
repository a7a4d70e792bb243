//! `keel plan` on a generated 6-level variant chain holding 5,000 atoms.
//! Target (issue 2): under 50 ms per run. Run with `cargo xtask bench plan`.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

const LEVELS: usize = 6;
const ATOMS: usize = 5000;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let per_level = ATOMS / LEVELS;
    let ops = ["", ">=", "~", "=", "<"];
    for level in 0..LEVELS {
        let v = dir.path().join(format!("variants/l{level}"));
        fs::create_dir_all(&v).expect("mkdir");
        let toml = if level == 0 {
            String::new()
        } else {
            format!("inherits = \"l{}\"\n", level - 1)
        };
        fs::write(v.join("variant.toml"), toml).expect("write");
        for (k, file) in [
            "build.packages",
            "install.packages",
            "host-tools.packages",
            "installonly.packages",
        ]
        .iter()
        .enumerate()
        {
            let mut text = String::from("# generated\n");
            let n = if k < 2 {
                per_level * 4 / 10
            } else {
                per_level / 10
            };
            for i in 0..n {
                let op = ops[i % ops.len()];
                let ver = if op.is_empty() {
                    String::new()
                } else {
                    format!("-{}.{}.{}", i % 7, i % 13, level)
                };
                let slot = if i % 3 == 0 { ":0" } else { "" };
                let _ = writeln!(text, "{op}cat-{k}{}/pkg{level}x{i}{ver}{slot}", i % 40);
            }
            // Each level removes a few of its parent's atoms.
            if level > 0 {
                for i in (0..n).step_by(50) {
                    let _ = writeln!(text, "-cat-{k}{}/pkg{}x{i}", i % 40, level - 1);
                }
            }
            fs::write(v.join(file), text).expect("write");
        }
    }
    let keel = env!("CARGO_BIN_EXE_keel");
    let run = || {
        let t = Instant::now();
        let o = Command::new(keel)
            .arg("-C")
            .arg(dir.path())
            .args(["plan", "--variant", "l5"])
            .output()
            .expect("run keel");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (t.elapsed(), o.stdout.len())
    };
    let (_, bytes) = run(); // warm the page cache
    let mut times: Vec<Duration> = (0..21).map(|_| run().0).collect();
    times.sort();
    let atoms_line = String::from_utf8_lossy(
        &Command::new(keel)
            .arg("-C")
            .arg(dir.path())
            .args(["plan", "--variant", "l5"])
            .output()
            .expect("run keel")
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with("set "))
    .collect::<Vec<_>>()
    .join("; ");
    println!("keel plan, {LEVELS}-level chain, {ATOMS} atoms written ({atoms_line}), {bytes} bytes of output");
    println!(
        "  21 runs: min {:.1} ms, median {:.1} ms, max {:.1} ms (target: under 50 ms) {}",
        ms(times[0]),
        ms(times[10]),
        ms(times[20]),
        if times[10] < Duration::from_millis(50) {
            "OK"
        } else {
            "OVER TARGET"
        }
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
