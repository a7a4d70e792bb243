//! Labelling a generated 50,000-file tree with the real policy's file_contexts: Keel
//! (load + validate + label) beside `setfiles -r ROOT -c POLICY FC ROOT`, same run, same
//! tree shape, both starting unlabelled; the labels are compared afterwards.

#[path = "../tests/common/mod.rs"]
mod common;

use exec::Cmd;
use std::fs;
use std::path::Path;
use std::time::Instant;

const FILES: usize = 50_000;

/// Directories an image has, with files spread over them.
const DIRS: &[&str] = &[
    "usr/bin",
    "usr/lib64",
    "usr/lib/systemd/system",
    "usr/share/locale/de/LC_MESSAGES",
    "usr/share/man/man1",
    "usr/include/linux",
    "usr/lib/python3.11/site-packages",
    "etc",
    "etc/systemd/system",
    "etc/ssh",
    "var/lib/containers/storage",
    "var/log",
    "var/lib/portage",
    "usr/libexec",
    "usr/lib/firmware",
    "usr/share/zoneinfo/Europe",
    "opt/app",
    "srv/www",
    "usr/lib/modules/6.6/kernel/drivers",
    "var/cache/app",
    "etc/selinux/mcs",
    "root",
    "home/user",
];

fn generate(dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    for (i, d) in DIRS.iter().enumerate() {
        for sub in 0..(FILES / DIRS.len() / 100 + 1) {
            fs::create_dir_all(dest.join(d).join(format!("d{i}-{sub}"))).unwrap();
        }
    }
    for n in 0..FILES {
        let d = DIRS[n % DIRS.len()];
        let sub = (n / DIRS.len()) % (FILES / DIRS.len() / 100 + 1);
        let name = match n % 5 {
            0 => format!("lib{n}.so.1"),
            1 => format!("tool{n}"),
            2 => format!("file{n}.conf"),
            3 => format!("data{n}.log"),
            _ => format!("x{n}.service"),
        };
        fs::write(
            dest.join(d)
                .join(format!("d{}-{sub}", n % DIRS.len()))
                .join(name),
            b"",
        )
        .unwrap();
    }
}

fn main() {
    let Some(root) = common::policy_root() else {
        eprintln!("label bench: skipped (no policy fixture)");
        return;
    };
    let policy = policy::binary_policy(root, "mcs").unwrap();
    let fc = root.join("etc/selinux/mcs/contexts/files/file_contexts");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("keel"), tmp.path().join("setfiles"));
    generate(&a);
    generate(&b);
    let log = tmp.path().join("bench.log");
    let mut keel = Vec::new();
    let mut setfiles = Vec::new();
    for round in 0..3 {
        if round > 0 {
            for t in [&a, &b] {
                Cmd::new("setfattr")
                    .args(["-h", "-x", "security.selinux"])
                    .arg(t)
                    .run()
                    .ok();
                Cmd::new("sh")
                    .arg("-c")
                    .arg("find \"$1\" -exec setfattr -h -x security.selinux {} + 2>/dev/null; true")
                    .arg("sh")
                    .arg(t)
                    .run()
                    .unwrap();
            }
        }
        let t = Instant::now();
        let fcs = policy::fc::FileContexts::load(&fc).unwrap();
        policy::validate(&policy, &fcs, &log).unwrap();
        let report = policy::label_with(&a, &fcs, policy.clone(), fc.clone()).unwrap();
        keel.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        Cmd::new("setfiles")
            .arg("-r")
            .arg(&b)
            .arg("-c")
            .arg(&policy)
            .arg(&fc)
            .arg(&b)
            .run()
            .unwrap();
        setfiles.push(t.elapsed().as_secs_f64());
        if round == 0 {
            let (la, lb) = (common::labels(&a), common::labels(&b));
            let diffs = la.iter().filter(|(p, l)| lb.get(*p) != Some(*l)).count();
            println!(
                "label bench: {} paths ({} labels set by Keel), {} differences from setfiles",
                report.paths, report.set, diffs
            );
            assert_eq!(diffs, 0);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    let (k, s) = (med(&mut keel), med(&mut setfiles));
    println!("label bench, median of 3 (both include loading file_contexts and validating against the policy):");
    println!("  keel label      {k:8.3} s");
    println!("  setfiles -r -c  {s:8.3} s");
    println!("  ratio keel/setfiles = {:.2} (target <= 1.00)", k / s);
}
