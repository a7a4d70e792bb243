//! More than one machine (issue 20), side by side, for `selinux` from gentoo-mini:
//! - a cold build (empty build directory and cache) against a cold build that takes every
//!   package from the first one's binhost (published signed, served by
//!   `python3 -m http.server` on 127.0.0.1, `--binhost-only`), with the ratio;
//! - the cold local build against a cold build whose compiles go to distccd on 127.0.0.1
//!   (`--distcc`), with the ratio and the jobs distccd ran.
//!
//! Each build also says whether its image is the local build's. Run with `cargo xtask
//! bench binhost`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;

const VARIANT: &str = "selinux";
const EPOCH: &str = "1700000000";

/// A cold build of `VARIANT` in a fresh project copy: (seconds, image, project).
fn cold(args: &[&str]) -> (f64, PathBuf, common::Project) {
    let p = common::project()
        .expect("the tools and the Portage venv (`cargo xtask test` installs them)");
    let mut c = common::keel_cmd(&p, &["build", "--variant", VARIANT]);
    c.args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("KEEL_CONFIG", "");
    let t = Instant::now();
    let (ok, out, err) = common::text(&c.output().expect("keel"));
    let secs = t.elapsed().as_secs_f64();
    assert!(ok, "build {args:?}: {err}");
    (secs, PathBuf::from(out.trim()), p)
}

/// Whether `image` is the local build's (said, not asserted: a benchmark reports; the
/// binhost and distcc tests assert it).
fn same(image: &Path, want: &str) -> &'static str {
    if common::sha256(image) == want {
        "the image is the local build's"
    } else {
        "the image differs from the local build's"
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = dir.path();

    let (local, image, a) = cold(&[]);
    let want = common::sha256(&image);
    println!("cold local build of {VARIANT}: {local:.1} s");

    let (home, fpr, public) = common::gpg_key(t, "bench");
    let www = t.join("www");
    let mut c = common::keel_cmd(&a, &["publish", "--variant", VARIANT, "--to"]);
    c.arg(www.join(VARIANT))
        .args(["--sign-key", &fpr, "--gpg-home"])
        .arg(&home);
    let tp = Instant::now();
    let (ok, _, err) = common::text(&c.output().expect("keel publish"));
    assert!(ok, "publish: {err}");
    let publish = tp.elapsed().as_secs_f64();
    let (server, port) = common::serve(&www);
    let _cleanup = common::Cleanup {
        homes: vec![home],
        server: Some(server),
    };
    let url = format!("http://127.0.0.1:{port}/{VARIANT}");
    let key = public.display().to_string();
    // The project copy holds the image: kept until it is compared.
    let (from_binhost, image, _b) =
        cold(&["--binhost", &url, "--binhost-key", &key, "--binhost-only"]);
    println!(
        "cold build from the binhost (--binhost-only): {from_binhost:.1} s; {}",
        same(&image, &want)
    );

    let log = t.join("distccd.log");
    let daemon = common::Distccd::start(&log);
    let hosts = format!("127.0.0.1:{}/4", daemon.port);
    let (distcc, image, _d) = cold(&["--distcc", &hosts]);
    let (jobs, _) = common::Distccd::jobs(&log);
    drop(daemon);
    println!(
        "cold build with distcc ({jobs} jobs on distccd): {distcc:.1} s; {}",
        same(&image, &want)
    );

    println!("publish (sign every package, index): {publish:.1} s");
    println!(
        "cold build: compile everything {local:.1} s | everything from the binhost {from_binhost:.1} s | ratio {:.1}x",
        local / from_binhost
    );
    println!(
        "cold build: local compiles {local:.1} s | distcc on loopback ({jobs} jobs on distccd) {distcc:.1} s | ratio {:.2}x",
        local / distcc
    );
    let _ = fs::remove_dir_all(Path::new(t).join("www"));
}
