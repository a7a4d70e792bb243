//! Apply 5,000 entries to a fresh root: Keel and systemd-tmpfiles side by side, same run.
//! `cargo bench -p tmpfiles --bench apply`

use std::path::Path;
use std::time::{Duration, Instant};
use tmpfiles::apply;
use tmpfiles::plan::Options;

const ENTRIES: usize = 5000;
const RUNS: usize = 5;

fn config() -> String {
    let mut s = String::new();
    let owners = ["- -", "root root", "benchuser benchgroup", "4242 4343"];
    for i in 0..ENTRIES {
        let dir = format!("/bench/d{:02}/s{:02}", i % 50, (i / 50) % 20);
        let o = owners[i % owners.len()];
        let line = match i % 8 {
            0 => format!("d {dir}/dir{i} 0750 {o} -\n"),
            1 => format!("f {dir}/file{i} 0640 {o} - content {i}\n"),
            2 => format!("L {dir}/link{i} - - - - ../target{i}\n"),
            3 => format!("p {dir}/fifo{i} 0600 {o} -\n"),
            4 => format!("f+ {dir}/trunc{i} 0644 {o} - data\n"),
            5 => format!("D {dir}/tmp{i} 1777 {o} 10d\n"),
            6 => format!("z {dir}/file{} 0600 {o}\n", i - 5),
            _ => format!("w {dir}/file{} - - - - written\n", i - 6),
        };
        s.push_str(&line);
    }
    s
}

fn fresh(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nbenchuser:x:4242:4343::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nbenchgroup:x:4343:\n").unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("bench.conf");
    let text = config();
    std::fs::write(&conf, &text).unwrap();
    let have_systemd = Path::new("/usr/bin/systemd-tmpfiles").exists()
        || Path::new("/bin/systemd-tmpfiles").exists();
    let (mut keel, mut sd) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let kr = t.path().join(format!("keel{run}"));
        fresh(&kr);
        let start = Instant::now();
        let root = apply::open_root(&kr).unwrap();
        let rep = apply::apply_files(
            &root,
            &[(conf.display().to_string(), text.clone().into_bytes())],
            &Options {
                boot: true,
                ..Options::default()
            },
            &apply::host_facts(),
        );
        keel.push(start.elapsed());
        assert_eq!(rep.exit_code(), 0, "{:?}", rep.failures.first());
        if have_systemd {
            let sr = t.path().join(format!("systemd{run}"));
            fresh(&sr);
            let start = Instant::now();
            exec::Cmd::new("systemd-tmpfiles")
                .arg(format!("--root={}", sr.display()))
                .args(["--create", "--boot"])
                .arg(&conf)
                .output()
                .expect("systemd-tmpfiles");
            sd.push(start.elapsed());
        }
    }
    let k = median(keel);
    println!("tmpfiles apply, {ENTRIES} entries on a fresh root, median of {RUNS} runs");
    println!("  keel              {:>9.1} ms", k.as_secs_f64() * 1e3);
    if have_systemd {
        let s = median(sd);
        println!(
            "  systemd-tmpfiles  {:>9.1} ms  (process included)",
            s.as_secs_f64() * 1e3
        );
        println!(
            "  ratio keel/systemd-tmpfiles = {:.2}",
            k.as_secs_f64() / s.as_secs_f64()
        );
    } else {
        println!("  systemd-tmpfiles not installed: no comparison");
    }
}
