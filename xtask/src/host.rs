//! What the host needs, and installing what is missing.
//!
//! Debian: each need is a file that must exist (a program, a data file) and the Debian
//! package that provides it. The check is a handful of `stat` calls (microseconds), so a
//! host that has everything costs nothing. Missing packages are installed with one
//! `apt-get install`, after printing what and why.
//!
//! Gentoo: the variant's `host-tools.packages` are emerged by the build's host-tools stage
//! (`keel build`), which knows the variant; nothing is done here.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Build,
    Test,
}

/// (file that proves presence, Debian package, why, needed for builds too)
const NEEDS: &[(&str, &str, &str, bool)] = &[
    (
        "/usr/lib/python3.11/ensurepip/__init__.py",
        "python3-venv",
        "a private venv for Portage from PyPI",
        true,
    ),
    (
        "/usr/bin/mksquashfs",
        "squashfs-tools",
        "the image is a squashfs (and unsquashfs reads images back)",
        true,
    ),
    (
        "/usr/bin/mkfs.erofs",
        "erofs-utils",
        "variants with `format = \"erofs\"` (and fsck.erofs reads them back)",
        true,
    ),
    (
        "/usr/bin/scanelf",
        "pax-utils",
        "Portage strips binaries and records sonames with scanelf",
        true,
    ),
    (
        "/usr/bin/zstd",
        "zstd",
        "Portage's gpkg binary packages are zstd-compressed",
        true,
    ),
    (
        "/usr/bin/gcc",
        "gcc",
        "gentoo-mini's glibc stand-in compiles a shared library",
        true,
    ),
    (
        "/usr/bin/make",
        "make",
        "ebuilds and the reference policy build with make",
        true,
    ),
    (
        "/usr/bin/rsync",
        "rsync",
        "the oracle of the overlay differential tests",
        false,
    ),
    (
        "/usr/bin/systemd-tmpfiles",
        "systemd",
        "the oracle of the tmpfiles differential tests",
        false,
    ),
    // SELinux variants: the refpolicy sources (sec-policy/* distfile) and the policy tools
    // the ebuilds and the policy stage run against the image's store (semodule -p ROOT)
    (
        "/usr/src/selinux-policy-src.tar.zst",
        "selinux-policy-src",
        "refpolicy sources for sec-policy/* (pinned distfile)",
        true,
    ),
    (
        "/usr/bin/checkmodule",
        "checkpolicy",
        "compiles refpolicy and Keel's local policy modules",
        true,
    ),
    (
        "/usr/sbin/semodule",
        "semodule-utils",
        "builds the image's policy store (semodule -p ROOT)",
        true,
    ),
    (
        "/usr/bin/semodule_package",
        "semodule-utils",
        "packages refpolicy modules",
        true,
    ),
    (
        "/usr/sbin/setfiles",
        "policycoreutils",
        "validates file_contexts against the target policy",
        true,
    ),
    (
        "/usr/bin/seinfo",
        "setools",
        "checks booleans in the built policy; sesearch for the policy tests",
        true,
    ),
    ("/usr/bin/secilc", "secilc", "CIL policy modules", false),
    (
        "/usr/sbin/getenforce",
        "selinux-utils",
        "the policy tests",
        false,
    ),
    // Debian variants and `keel boot` (docs/debian.md, docs/boot.md)
    (
        "/usr/bin/mmdebstrap",
        "mmdebstrap",
        "the Debian backend's destination root",
        true,
    ),
    (
        "/usr/bin/dpkg-deb",
        "dpkg",
        "the Debian backend unpacks the policy headers",
        true,
    ),
    (
        "/usr/share/selinux/devel/include/Makefile",
        "selinux-policy-dev",
        "m4 and the module tools that build refpolicy's container module for debian-selinux",
        true,
    ),
    (
        "/usr/sbin/mkfs.btrfs",
        "btrfs-progs",
        "keel boot: the writable /var disk",
        true,
    ),
    (
        "/usr/bin/unsquashfs",
        "squashfs-tools",
        "keel boot: kernel, initramfs and /var from the image",
        true,
    ),
    (
        "/usr/bin/qemu-system-x86_64",
        "qemu-system-x86",
        "keel boot and the boot tests",
        true,
    ),
    // crates/oci (docs/oci.md): the oracles of the image unpack tests
    (
        "/usr/bin/umoci",
        "umoci",
        "makes the OCI test images and is the oracle of the oci unpack differential tests",
        false,
    ),
    (
        "/usr/bin/skopeo",
        "skopeo",
        "makes the oci-archive the oci archive tests read",
        false,
    ),
];

fn missing(purpose: Purpose) -> Vec<(&'static str, &'static str)> {
    NEEDS
        .iter()
        .filter(|(_, _, _, build)| *build || purpose == Purpose::Test)
        .filter(|(path, ..)| !Path::new(path).exists())
        .map(|(_, pkg, why, _)| (*pkg, *why))
        .collect()
}

pub fn ensure(purpose: Purpose) -> Result<(), String> {
    if Path::new("/etc/gentoo-release").exists() {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() {
        let need: Vec<&str> = missing(purpose).iter().map(|(p, _)| *p).collect();
        if need.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "this host is neither Debian nor Gentoo; install the equivalents of: {}",
            need.join(" ")
        ));
    }
    let need = missing(purpose);
    if need.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = Vec::new();
    for (pkg, why) in &need {
        eprintln!("xtask: installing {pkg}: {why}");
        if !pkgs.contains(pkg) {
            pkgs.push(pkg);
        }
    }
    let apt = |args: &[&str]| -> Result<(), String> {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
        }
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&pkgs);
    apt(&args)?;
    let still: Vec<&str> = missing(purpose).iter().map(|(p, _)| *p).collect();
    if !still.is_empty() {
        return Err(format!(
            "still missing after apt-get install: {}",
            still.join(" ")
        ));
    }
    Ok(())
}
