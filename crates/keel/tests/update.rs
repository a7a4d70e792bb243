//! Issue 19: an installed disk updates to the next version in its free slot, boots it, and
//! falls back to the version it ran when the next one does not boot (docs/disk.md).
//!
//! `debian-trixie` (Debian 13: systemd-sysupdate, systemd-boot's boot assessment) is built
//! three times, `--image-version` 1, 2 and 3 with one `SOURCE_DATE_EPOCH` (the package
//! root is made once; the tree stages onwards rerun). Version 1's disk is the machine's; QEMU boots it with OVMF, the update
//! sets shared over 9p, and the image's `keel-update.target` (the SMBIOS asset tag
//! `keel-update`): each boot reports what runs, then `systemd-sysupdate update` from busybox
//! httpd serving the share on the image's update URL, then reboots when it installed a
//! version, else powers off.
//! - First machine run, the share holding version 2: version 1 boots and installs 2 into
//!   slot B (partitions named by the UUIDs in the file names, the unified image with three
//!   tries); version 2 boots from slot B, with its root hash, and finds nothing newer.
//! - Second run, version 3 added whose root has one flipped byte (its SHA256SUMS line made
//!   to match, as a corrupted or malicious server would): version 2 installs 3 into slot A;
//!   3 does not boot (dm-verity refuses the block, the initramfs panics, the machine
//!   reboots) until systemd-boot has spent its three tries; then version 2 runs again.
//!
//! Every boot and both runs are bounded; the console logs are kept in the test's directory
//! and named on failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const VARIANT: &str = "debian-trixie";
/// The three versions (`keel build --image-version`, the image's IMAGE_VERSION).
const V1: &str = "1";
const V2: &str = "2";
const V3: &str = "3";

fn tools() -> bool {
    [
        "mmdebstrap",
        "qemu-system-x86_64",
        "mksquashfs",
        qemu::OVMF_CODE,
    ]
    .iter()
    .chain(disk::TOOLS)
    .all(|t| testutil::require(t))
}

/// Build `version`; its output directory.
fn build(version: &str) -> PathBuf {
    let root = testutil::project_root();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(&root)
        .args([
            "build",
            "--quiet",
            "--variant",
            VARIANT,
            "--image-version",
            version,
        ])
        .env("SOURCE_DATE_EPOCH", "1790000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keel build --image-version {version} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("build").join(VARIANT)
}

/// The update set of the output `out` merged into `share` (SHA256SUMS appended); the file
/// names it added.
fn publish(out: &Path, share: &Path) -> Vec<String> {
    fs::create_dir_all(share).unwrap();
    let set = out.join("update");
    let mut names = Vec::new();
    for e in fs::read_dir(&set).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name != "SHA256SUMS" {
            fs::copy(set.join(&name), share.join(&name)).unwrap();
            names.push(name);
        }
    }
    let sums = fs::read_to_string(set.join("SHA256SUMS")).unwrap();
    let mut all = fs::read_to_string(share.join("SHA256SUMS")).unwrap_or_default();
    all.push_str(&sums);
    fs::write(share.join("SHA256SUMS"), all).unwrap();
    names
}

/// Flip one byte of the first block of `file` (the squashfs superblock, which mounting
/// reads) and give SHA256SUMS its new digest.
fn corrupt(share: &Path, file: &str) {
    let p = share.join(file);
    let mut data = fs::read(&p).unwrap();
    data[100] ^= 0x01;
    fs::write(&p, &data).unwrap();
    let o = Command::new("sha256sum").arg(&p).output().unwrap();
    let digest = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let sums: String = fs::read_to_string(share.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.ends_with(&format!("  {file}")) {
                format!("{digest}  {file}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(share.join("SHA256SUMS"), sums).unwrap();
}

/// The reports of every boot of one machine run, in order.
fn reports(file: &Path) -> Vec<qemu::Report> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.split(qemu::report::BEGIN)
        .skip(1)
        .map(|chunk| qemu::Report::parse(&format!("{}{chunk}", qemu::report::BEGIN)))
        .collect()
}

/// Run the machine on `disk` until it powers off, with `share` as `keel-update`.
fn run(dir: &Path, name: &str, disk: &Path, vars: &Path, share: &Path, limit: u64) -> PathBuf {
    let console = dir.join(format!("{name}-console.log"));
    let report = dir.join(format!("{name}-report.txt"));
    let probe_kernel = testutil::project_root().join(format!("build/work/{VARIANT}/disk/vmlinuz"));
    let accel = qemu::Accel::detect(&probe_kernel, dir);
    let m = qemu::Machine {
        shares: vec![qemu::Share {
            tag: "keel-update".into(),
            path: share.to_owned(),
            writable: false,
        }],
        report: Some(report.clone()),
        reboot: true,
        ..boot::disk_machine(
            disk,
            vars,
            accel,
            qemu::Console::Log {
                path: console.clone(),
                echo: false,
            },
            Some("keel-update"),
        )
    };
    let r = qemu::run::run(&m, Some(Duration::from_secs(limit)));
    assert!(
        r.is_ok(),
        "{name}: {}\nreports: {}",
        r.unwrap_err(),
        report.display()
    );
    report
}

fn roothash(out: &Path) -> String {
    fs::read_to_string(out.join(format!("{VARIANT}.roothash")))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn an_update_boots_from_the_other_slot_and_a_broken_one_falls_back() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let share = dir.join("share");

    let out = build(V1);
    let (disk, vars) = boot::fresh_disk(
        &out.join(format!("{VARIANT}.raw")),
        dir,
        &dir.join("disks.log"),
    )
    .unwrap();
    let out = build(V2);
    let hash2 = roothash(&out);
    publish(&out, &share);
    let out = build(V3);
    let hash3 = roothash(&out);
    // Kept aside until the second run.
    let v3 = dir.join("v3");
    fs::create_dir_all(&v3).unwrap();
    let o = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(out.join("update"))
        .arg(&v3)
        .status()
        .unwrap();
    assert!(o.success());

    // Run 1: version 1 installs 2 and reboots; 2 runs from slot B and finds nothing newer.
    let r1 = reports(&run(dir, "run1", &disk, &vars, &share, 1200));
    let keep = t.keep();
    let show = |rs: &[qemu::Report]| {
        rs.iter()
            .map(|r| {
                r.sections
                    .iter()
                    .map(|(k, v)| format!("== {k}\n{v}"))
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n--------\n")
    };
    assert_eq!(
        r1.len(),
        2,
        "run 1 (kept in {}):\n{}",
        keep.display(),
        show(&r1)
    );
    assert_eq!(r1[0].get("version"), V1, "{}", show(&r1));
    assert!(
        r1[0].get("sysupdate").ends_with("exit 0")
            && r1[0]
                .get("esp-after")
                .contains(&format!("{VARIANT}_{V2}+3-0.efi")),
        "{}",
        show(&r1)
    );
    assert_eq!(r1[1].get("version"), V2, "{}", show(&r1));
    assert_eq!(r1[1].get("roothash"), hash2, "{}", show(&r1));
    assert!(
        r1[1]
            .get("partitions")
            .contains(&format!("label={VARIANT}_{V2} ")),
        "{}",
        show(&r1)
    );

    // Run 2: version 3, its root corrupted, is installed; it never boots; 2 runs again.
    let added = publish(&v3, &share);
    let root3 = added.iter().find(|n| n.ends_with(".root")).unwrap().clone();
    corrupt(&share, &root3);
    let r2 = reports(&run(&keep, "run2", &disk, &vars, &share, 1500));
    assert_eq!(
        r2.len(),
        2,
        "run 2 (kept in {}):\n{}",
        keep.display(),
        show(&r2)
    );
    assert_eq!(r2[0].get("version"), V2, "{}", show(&r2));
    assert!(
        r2[0]
            .get("esp-after")
            .contains(&format!("{VARIANT}_{V3}+3-0.efi")),
        "{}",
        show(&r2)
    );
    assert_eq!(r2[1].get("version"), V2, "{}", show(&r2));
    assert_eq!(r2[1].get("roothash"), hash2, "{}", show(&r2));
    // systemd-boot spent version 3's tries.
    assert!(
        r2[1]
            .get("esp-before")
            .contains(&format!("{VARIANT}_{V3}+0-3.efi")),
        "{}",
        show(&r2)
    );
    // Each of version 3's three boots: dm-verity refused its root, the initramfs gave up.
    let console = fs::read_to_string(keep.join("run2-console.log")).unwrap();
    let (data3, _) = disk::slot_uuids(&hash3);
    let refused =
        format!("keel-verity: /dev/disk/by-partuuid/{data3} does not match root hash {hash3}");
    assert_eq!(
        console.matches(&refused).count(),
        3,
        "`{refused}` three times in {}",
        keep.join("run2-console.log").display()
    );
    assert!(console.contains("device-mapper: verity"), "no verity error");
    let _ = fs::remove_dir_all(&keep);
}
