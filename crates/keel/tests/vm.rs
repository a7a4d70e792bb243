//! `keel vm` end to end (issues 9, 14): the default build environment (a Debian image
//! made once by `keel vm`, docs/vm.md), booted under QEMU (TCG on these machines).
//!
//! One test, in steps, because each step boots a VM and the machine has two cores:
//! the `selinux-mini` fixture (tests/fixtures/variants: `selinux` cut down to a shell, the
//! SELinux userspace and the whole policy) built on the host, shared with the other tests
//! that need it; beside it, a failing inner command and an interrupted run (SIGINT to keel
//! vm, then SIGKILL); then the same variant built in the VM over the host build's cache
//! (binary packages), whose manifest (paths, types, modes, owners, labels, content hashes)
//! must equal the host build's. `benches/vm.rs` times a cold in-VM build of the full
//! `selinux` variant against the host's.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EPOCH: &str = testutil::EPOCH;
const REPO: &str = "tests/fixtures/gentoo-mini";
/// The variant built on both sides.
const VARIANT: &str = "selinux-mini";

/// The QEMU processes of a VM (by the name in its command line).
fn qemu_of(name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("qemu-system") && c.contains(&format!("keel-vm-{name},")) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn no_qemu_left(name: &str) {
    let t = Instant::now();
    while !qemu_of(name).is_empty() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(qemu_of(name), Vec::<String>::new(), "a VM was left running");
}

struct Vm<'a> {
    p: &'a common::Project,
}

impl Vm<'_> {
    fn cmd(&self, name: &str, extra: &[&str], inner: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
        c.current_dir(&self.p.root)
            .arg("-C")
            .arg(&self.p.root)
            .args([
                "vm",
                "--kernel",
                "image",
                "--timeout",
                "5400",
                "--name",
                name,
            ])
            .args(extra)
            .arg("--")
            .args(inner)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .stdin(Stdio::null());
        c
    }

    /// Start, wait until the inner command has started, send `sig` to keel vm.
    fn interrupt(&self, name: &str, sig: &str) -> (Option<i32>, String) {
        let log = self.p.root.join(format!("{name}.stderr"));
        let mut child = self
            .cmd(
                name,
                &[],
                &["build", "--variant", VARIANT, "--gentoo-repo", REPO],
            )
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let report = vm::state_dir(&self.p.root.join("build"), name).join("report");
        let t = Instant::now();
        loop {
            let started = fs::read_to_string(&report)
                .map(|r| qemu::Report::parse(&r).sections.contains_key("start"))
                .unwrap_or(false);
            if started || t.elapsed() > Duration::from_secs(900) {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "keel vm ended before the command started ({st}):\n{}",
                    fs::read_to_string(&log).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(!qemu_of(name).is_empty(), "no VM while the command runs");
        std::thread::sleep(Duration::from_secs(3));
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        let st = child.wait().unwrap();
        (st.code(), fs::read_to_string(&log).unwrap())
    }
}

#[test]
fn keel_vm_builds_what_the_host_builds() {
    for tool in ["qemu-system-x86_64", "mke2fs", "setpriv"] {
        if !testutil::require(tool) {
            return;
        }
    }
    if !testutil::require("mmdebstrap") || !testutil::require("umoci") {
        return;
    }
    let Some(p) = common::project() else { return };
    common::copy_tree(
        &testutil::project_root().join("tests"),
        &p.root.join("tests"),
    );
    // QEMU runs as the invoking user in one step below: it must reach the project.
    let mut d = p.root.clone();
    while d.pop() {
        if d.starts_with(std::env::temp_dir()) && d != std::env::temp_dir() {
            fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }

    // 0 (started first, joined in step 3). The variant built on the host: the suite's
    // shared build of it (testutil::shared_build), cold on a clean clone. The VM's build in
    // step 3 shares a copy of its cache, as a user's builds share `build/cache`: Portage in
    // the VM installs the host's binary packages instead of compiling them again. Everything
    // after the packages (their merge into the sysroot and the destination root, tmpfiles,
    // fixups, the policy store, booleans, labels, the image) is done in the VM.
    let host_build = std::thread::spawn(|| {
        testutil::shared_build(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            Path::new(env!("CARGO_BIN_EXE_keel")),
            VARIANT,
        )
    });

    // No --image: keel vm's default build environment. It is made once per key into the
    // real project's build/tools (testutil calls the same code) and linked into this
    // project's, where keel vm looks for it, so the runs below take the default path.
    let env = testutil::vm_build_env_image().expect("mmdebstrap and umoci are here");
    std::os::unix::fs::symlink(
        &env,
        p.root.join("build/tools").join(env.file_name().unwrap()),
    )
    .unwrap();
    let vm = Vm { p: &p };

    // 1. A failing inner command: its exit code, and the end of its output.
    let o = vm
        .cmd("fail", &[], &["build", "--variant", "no-such-variant"])
        .output()
        .unwrap();
    let (ok, _, err) = common::text(&o);
    assert!(!ok && o.status.code() == Some(1), "{err}");
    assert!(
        err.contains("failed in VM `fail` with exit code 1")
            && err.contains("    | ")
            && err.contains("no-such-variant"),
        "{err}"
    );
    no_qemu_left("fail");

    // 2. Interrupted: SIGINT to keel vm stops the VM and says so; SIGKILL to keel vm
    //    leaves no VM either (QEMU's parent-death signal).
    let (code, err) = vm.interrupt("intr", "INT");
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("interrupted by signal 2"), "{err}");
    no_qemu_left("intr");
    let (code, _) = vm.interrupt("killed", "KILL");
    assert_eq!(code, None, "killed by a signal");
    no_qemu_left("killed");

    // 3. The selinux variant built in a VM, as an unprivileged invoking user (what sudo
    //    says in SUDO_UID/SUDO_GID): the artifacts on the host are theirs. The cache is
    //    theirs too, as their own `build/cache` would be.
    let host = host_build
        .join()
        .unwrap()
        .expect("the Portage venv is here");
    let cache = p.root.join("shared-cache");
    testutil::copy(&host.cache, &cache);
    let host_out = host.output.clone();
    let binpkgs = gpkgs(&cache);
    assert!(binpkgs.len() >= 10, "the host build made {binpkgs:?}");
    chown_tree(&cache, 4242);
    let out = p.root.join("vm-out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::chown(&out, Some(4242), Some(4242)).unwrap();
    let t = Instant::now();
    let o = vm
        .cmd(
            "build",
            &["--output", out.to_str().unwrap()],
            &["build", "--variant", VARIANT, "--gentoo-repo", REPO],
        )
        .env("KEEL_CACHE_DIR", &cache)
        .env("SUDO_UID", "4242")
        .env("SUDO_GID", "4242")
        .output()
        .unwrap();
    let vm_secs = t.elapsed().as_secs_f64();
    let (ok, _, err) = common::text(&o);
    assert!(ok, "the build in the VM failed:\n{err}");
    assert!(err.contains("keel vm: the command started"), "{err}");
    no_qemu_left("build");
    let vm_manifest = out.join(VARIANT).join("manifest.txt");
    for f in [
        out.join(VARIANT),
        out.join(VARIANT).join(format!("{VARIANT}.squashfs")),
        vm_manifest.clone(),
    ] {
        let m = fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (4242, 4242), "{}", f.display());
    }

    // The VM took the host's packages: it made no new ones.
    assert_eq!(gpkgs(&cache), binpkgs, "the VM built packages of its own");

    // 4. The two manifests.
    let host_manifest = fs::read_to_string(host_out.join("manifest.txt")).unwrap();
    let inside = fs::read_to_string(&vm_manifest).unwrap();
    assert!(host_manifest.lines().count() > 100, "{host_manifest}");
    for label in [
        "system_u:object_r:shell_exec_t:s0",
        "system_u:object_r:semanage_store_t:s0",
        "system_u:object_r:lib_t:s0",
    ] {
        assert!(
            host_manifest.contains(label),
            "{label} in the manifest:\n{host_manifest}"
        );
    }
    if host_manifest != inside {
        let h: std::collections::BTreeSet<&str> = host_manifest.lines().collect();
        let v: std::collections::BTreeSet<&str> = inside.lines().collect();
        panic!(
            "manifests differ\nonly on the host:\n{}\nonly in the VM:\n{}",
            h.difference(&v)
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            v.difference(&h)
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "{VARIANT} build: on the host {:.0} s (the suite's shared build; 0 when it was already \
         there); then in the VM {vm_secs:.0} s (TCG, incl. boot, the host's {} binary packages)",
        host.secs,
        binpkgs.len()
    );
}

/// The binary packages below `dir`, by path.
fn gpkgs(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(path);
            } else if [".gpkg.tar", ".tbz2"]
                .iter()
                .any(|x| path.to_string_lossy().ends_with(x))
            {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// `chown -hR uid:uid dir`, never following a link.
fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).unwrap();
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            chown_tree(&e.path(), uid);
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid)).unwrap();
        }
    }
}
