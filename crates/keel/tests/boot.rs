//! The boot tests (docs/boot.md): the real Debian variants built by the real pipeline
//! (mmdebstrap from Debian's archive) and booted once each under QEMU with the boot check;
//! the verdicts come from what the running system reported.
//!
//! They run in the project itself, so they share its apt cache (`build/cache/debian`) and
//! its up-to-date stages with `keel build`; the pipeline's lock keeps two builds of one
//! variant apart.

use std::path::Path;
use std::process::Command;

fn keel(args: &[&str]) -> (bool, String, String) {
    let root = testutil::project_root();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(&root)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tools() -> bool {
    [
        "mmdebstrap",
        "qemu-system-x86_64",
        "mkfs.btrfs",
        "unsquashfs",
        "mksquashfs",
    ]
    .iter()
    .all(|t| testutil::require(t))
}

/// debian-base: a clean boot on the read-only root, /var/log a subvolume made by tmpfiles,
/// a sandboxed service, journal metadata, two containers; then a boot that cannot finish
/// in its time limit is stopped and reported with the console log.
#[test]
fn debian_base_boots_clean() {
    if !tools() {
        return;
    }
    let (ok, stdout, stderr) = keel(&["boot", "--variant", "debian-base", "--check"]);
    assert!(ok, "keel boot --check failed:\n{stdout}\n{stderr}");
    for line in [
        "PASS check-completed",
        "PASS selinux: not enabled",
        "PASS boot-clean: running, no failed unit",
        "PASS root-read-only: / is squashfs (ro,",
        "PASS var-log-subvolume: btrfs subvolume (inode 256), absent from the /var disk at build",
        "PASS sandboxed-service",
        "PASS journal-metadata: _CMDLINE=logger -t keel-check",
        "PASS containers: 2 containers running",
        "PASS avc-denials: none",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
    assert!(stdout.contains("== failed-units\n== "), "{stdout}");

    // Bounded: a boot that cannot reach the check in 5 s is stopped and explained.
    let (ok, _, stderr) = keel(&[
        "boot",
        "--variant",
        "debian-base",
        "--check",
        "--timeout",
        "5",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("the machine did not finish within 5 s (QEMU stopped): `setpriv ")
            && stderr.contains("; console log "),
        "{stderr}"
    );
    let console = testutil::project_root().join("build/work/debian-base/boot/console.log");
    assert!(Path::new(&console).exists());
}

/// debian-selinux: enforcing MCS, and every assertion of debian-base, containers in
/// distinct categories, no AVC denial beyond the accepted list (the policy:
/// `policy/keel_*.te`, `variants/debian-selinux/policy/keel_container_engine.te`).
#[test]
fn debian_selinux_boots_enforcing() {
    if !tools() {
        return;
    }
    let (ok, stdout, stderr) = keel(&["boot", "--variant", "debian-selinux", "--check"]);
    assert!(ok, "keel boot --check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS selinux: Enforcing, policy `default` with MCS"));
    assert!(stdout.contains("PASS containers: 2 containers running as container_t in categories"));
    assert!(
        stdout.contains("PASS var-log-subvolume: btrfs subvolume (inode 256), absent from the /var disk at build, label system_u:object_r:var_log_t:s0"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS avc-denials"), "{stdout}");
}
