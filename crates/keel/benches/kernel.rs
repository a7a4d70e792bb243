//! The kernel (issue 18), for gentoo-mini's `sys-kernel/gentoo-kernel` (Linux 6.1 from
//! Debian's `linux-source-6.1`, docs/kernel.md), side by side in one run:
//! - a cold build of `base` against a cold build of a variant that is `base` plus the
//!   kernel, configured with `selinux`'s fragment (every option checked): the difference is
//!   what compiling the kernel costs;
//! - that variant built again from an empty work directory with the binary-package cache
//!   kept: what the cache saves.
//!
//! Run with `cargo xtask bench kernel` (tens of minutes on 2 CPUs).

use std::fs;
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

const EPOCH: &str = "1700000000";

fn build(p: &common::Project, variant: &str) -> f64 {
    let mut c = common::keel_cmd(p, &["build", "--quiet", "--variant", variant]);
    c.env("SOURCE_DATE_EPOCH", EPOCH).env("KEEL_CONFIG", "");
    let t = Instant::now();
    let (ok, _, err) = common::text(&c.output().expect("keel"));
    assert!(ok, "build {variant}: {err}");
    t.elapsed().as_secs_f64()
}

fn main() {
    let p = common::project()
        .expect("the tools and the Portage venv (`cargo xtask test` installs them)");
    assert!(
        portage::distfiles::KERNEL.present(),
        "{} (`cargo xtask test` installs linux-source-6.1)",
        portage::distfiles::KERNEL.src
    );
    let v = p.root.join("variants/kernel-bench");
    fs::create_dir_all(v.join("kernel/config.d")).unwrap();
    fs::write(v.join("variant.toml"), "inherits = \"base\"\n").unwrap();
    fs::write(v.join("build.packages"), "sys-kernel/gentoo-kernel\n").unwrap();
    fs::copy(
        p.root
            .join("variants/selinux/kernel/config.d/50-keel-selinux.config"),
        v.join("kernel/config.d/50-keel-selinux.config"),
    )
    .unwrap();

    let base = build(&p, "base");
    println!("cold build of base: {base:.1} s");
    let cold = build(&p, "kernel-bench");
    println!(
        "cold build of base + the kernel: {cold:.1} s (the kernel: {:.1} s, {:.1}x base)",
        cold - base,
        cold / base
    );
    let work = p.root.join("build/work/kernel-bench");
    fs::remove_dir_all(&work).unwrap();
    let cached = build(&p, "kernel-bench");
    println!(
        "the same from its binary packages (empty work directory): {cached:.1} s ({:.1}x faster; the cache saves {:.1} s)",
        cold / cached,
        cold - cached
    );
    let sysroot = p.root.join("build/work/kernel-bench/sysroot/usr/src");
    for e in fs::read_dir(&sysroot).unwrap().flatten() {
        let config = fs::read_to_string(e.path().join(".config")).unwrap_or_default();
        let selinux: Vec<&str> = config
            .lines()
            .filter(|l| l.starts_with("CONFIG_SECURITY_SELINUX=") || l.starts_with("CONFIG_LSM="))
            .collect();
        println!("{}: {}", e.path().display(), selinux.join(" "));
    }
}
