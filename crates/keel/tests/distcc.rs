//! Issue 20: compiles sent to distccd on 127.0.0.1, as to another machine.
//!
//! A fresh project copy builds `selinux-mini` from nothing with `--distcc`; distccd's log
//! shows the compile jobs it ran, and the image is the one the suite's shared local build
//! of the same variant made (`testutil::shared_build`, same `SOURCE_DATE_EPOCH`), byte for
//! byte.

mod common;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const VARIANT: &str = "selinux-mini";

#[test]
fn distcc_on_loopback() {
    let started = Instant::now();
    for tool in ["distccd", "distcc"] {
        if !testutil::require(tool) {
            return;
        }
    }
    let Some((local, p)) =
        common::shared_build_and_fresh_copy(Path::new(env!("CARGO_TARGET_TMPDIR")), VARIANT)
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("distccd.log");
    let daemon = common::Distccd::start(&log);
    let port = daemon.port;

    let mut c = common::keel_cmd(&p, &["build", "--variant", VARIANT]);
    c.args(["--distcc", &format!("127.0.0.1:{port}/4")])
        .env("SOURCE_DATE_EPOCH", testutil::EPOCH)
        .env("KEEL_CONFIG", "");
    let t = Instant::now();
    let o = testutil::output_within(c, Duration::from_secs(1500), "keel build --distcc");
    let (ok, out, err) = common::text(&o);
    assert!(ok, "build with distcc: {err}");
    let secs = t.elapsed().as_secs_f64();
    drop(daemon);

    let sysroot_log = fs::read_to_string(
        p.root
            .join("build/work")
            .join(VARIANT)
            .join("logs/sysroot.log"),
    )
    .unwrap();
    assert!(
        sysroot_log.lines().any(|l| l.starts_with(">>> Emerging (")),
        "the packages were compiled:\n{sysroot_log}"
    );
    let (jobs, served) = common::Distccd::jobs(&log);
    assert!(
        jobs >= 1
            && served
                .lines()
                .any(|l| l.contains("COMPILE_OK") && l.ends_with(" bash.c")),
        "distccd ran {jobs} compile jobs (gentoo-mini's bash is compiled, then linked); its log:\n{served}"
    );
    assert_eq!(
        common::sha256(Path::new(out.trim())),
        common::sha256(&local.output.join(format!("{VARIANT}.squashfs"))),
        "the image built with distcc differs from the local build's"
    );
    eprintln!(
        "distcc: {jobs} compile jobs on distccd; build {secs:.0} s (local shared build {:.0} s); the whole test {:.0} s",
        local.secs,
        started.elapsed().as_secs_f64()
    );
}
