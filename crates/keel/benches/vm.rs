//! `keel vm` (issue 9): the VM's start-to-command time, and the full cold `selinux` build in
//! the VM against the same build on the host (ratio). Run with `cargo xtask bench vm`.
//! Under TCG on the project's machines; the build environment image is the one `keel vm`
//! uses without `--image` (made once, kept under the project's build/tools).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const REPO: &str = "tests/fixtures/gentoo-mini";
const EPOCH: &str = "1700000000";

fn run(c: &mut Command) -> (f64, String) {
    let t = Instant::now();
    let o = c.stdin(Stdio::null()).output().expect("keel");
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{c:?} failed:\n{err}");
    (secs, err)
}

/// "keel vm: the command started S s after QEMU, ran until E s"
fn started(stderr: &str) -> (f64, f64) {
    let l = stderr
        .lines()
        .find_map(|l| l.strip_prefix("keel vm: the command started "))
        .expect("start line");
    let nums: Vec<f64> = l
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn copy(from: &Path, to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp")
        .success());
}

fn main() {
    // `cargo bench -p keel --bench vm -- start|build`: one half only (the build takes long)
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "start" || a == "build")
        .collect();
    let want = |part: &str| only.is_empty() || only.iter().any(|a| a == part);
    let Some(image) = testutil::vm_build_env_image() else {
        eprintln!("vm bench: mmdebstrap/umoci missing (cargo xtask bench installs them)");
        return;
    };
    let real = testutil::project_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("p");
    fs::create_dir_all(root.join("tests/fixtures")).expect("mkdir");
    for d in ["variants", "portage", "overlay", "tmpfiles.d", "policy"] {
        copy(&real.join(d), &root.join(d));
    }
    copy(&real.join(REPO), &root.join(REPO));
    // Both sides use the pinned Portage venv already made (not timed).
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    fs::create_dir_all(root.join("build/tools")).expect("mkdir");
    // The Portage venv and keel vm's default build environment (no --image: the path a
    // user takes), both made once under the real project's build/tools, linked here.
    for made in [&venv, &image] {
        std::os::unix::fs::symlink(
            made,
            root.join("build/tools")
                .join(made.file_name().expect("name")),
        )
        .expect("symlink");
    }
    let vm = |name: &str, cache: &Path, inner: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
        c.current_dir(&root)
            .args(["vm", "--kernel", "image", "--name", name])
            .arg("--output")
            .arg(root.join("out-vm"))
            .arg("--")
            .args(inner)
            .env("KEEL_CACHE_DIR", cache)
            .env("SOURCE_DATE_EPOCH", EPOCH);
        c
    };

    // Start to command: QEMU started -> the command runs (the root disk made first, once).
    if want("start") {
        start_to_command(&vm, &root);
    }
    if want("build") {
        build(&vm, &root);
    }
}

fn start_to_command(vm: &dyn Fn(&str, &Path, &[&str]) -> Command, root: &Path) {
    let cache = root.join("cache-start");
    let (first, err) = run(&mut vm("start", &cache, &["variants"]));
    let disk = err
        .lines()
        .find_map(|l| l.strip_prefix("keel vm: root disk ready ("))
        .unwrap_or("kept")
        .trim_end_matches(')')
        .to_owned();
    let mut starts = vec![started(&err).0];
    for _ in 0..2 {
        starts.push(started(&run(&mut vm("start", &cache, &["variants"])).1).0);
    }
    starts.sort_by(f64::total_cmp);
    println!("root disk from the image: {disk}; first `keel vm -- variants`: {first:.1} s");
    println!(
        "VM start to command (TCG): runs {} s; median {:.1} s",
        starts
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
        starts[1]
    );
}

fn build(vm: &dyn Fn(&str, &Path, &[&str]) -> Command, root: &Path) {
    // The full selinux build, cold on both sides (empty caches, new build directories).
    let inner = ["build", "--variant", "selinux", "--gentoo-repo", REPO];
    let (vm_total, err) = run(&mut vm("build", &root.join("cache-vm"), &inner));
    let (vm_start, vm_end) = started(&err);
    let (host, _) = run(Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(root)
        .args(inner)
        .arg("--output")
        .arg(root.join("out-host"))
        .env("KEEL_CACHE_DIR", root.join("cache-host"))
        .env("SOURCE_DATE_EPOCH", EPOCH));
    let same = fs::read(root.join("out-vm/selinux/manifest.txt")).ok()
        == fs::read(root.join("out-host/manifest.txt")).ok();
    println!(
        "selinux build, cold: VM {vm_total:.0} s (command {:.0} s after a {vm_start:.0} s start), host {host:.0} s; VM/host {:.2}; manifests equal: {same}",
        vm_end - vm_start,
        vm_total / host
    );
}
