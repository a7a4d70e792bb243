//! Issue 20: two machines sharing binary packages through a signed Portage binhost, on
//! loopback.
//!
//! Build A is the suite's shared build of `selinux-quick` (`testutil::shared_build`; the
//! shipped `selinux` with gentoo-mini's source-built core and no kernel, from
//! tests/fixtures/variants; this test is the one that needs it, so on a clean clone it is a
//! cold build). A publishes its packages
//! signed with a throwaway GnuPG key; `python3 -m http.server` serves them on 127.0.0.1.
//! Build B is a fresh project copy with an empty build directory and cache, pointed at A's
//! URL with `--binhost-only`: it compiles nothing (only binary merges, in the sysroot and
//! in the destroot, whose `installonly.packages`, `app-misc/ca-certificates`, comes from the
//! binhost too), Portage verifies every signature, and its image is A's, byte for byte. Then the ways it must fail, each with an error naming what is wrong and no image:
//! a package changed after it was signed (the index changed to match, as whoever controls
//! the server could), a URL that does not answer, a key file that is not there, another
//! signer's key, and with `--binhost-only` a package the binhost lacks (named before
//! anything compiles).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const VARIANT: &str = "selinux-quick";

fn text(o: &Output) -> (bool, String, String) {
    common::text(o)
}

/// Change one byte in the middle of a package's image after it was signed, and give the
/// index the changed file's digests, as whoever controls the server could.
fn tamper(binhost: &Path, cpv: &str, file: &str) {
    let script = r#"
import gzip, hashlib, re, sys, tarfile
d, cpv, rel = sys.argv[1:4]
p = f"{d}/{rel}"
with tarfile.open(p) as t:
    m = [m for m in t.getmembers() if "/image.tar" in m.name and not m.name.endswith(".sig")][0]
    off = m.offset_data + m.size // 2
data = bytearray(open(p, "rb").read())
data[off] ^= 0xFF
open(p, "wb").write(data)
idx = open(f"{d}/Packages").read()
blk = re.search(r"CPV: " + re.escape(cpv) + r"\n(?:.+\n)*", idx).group(0)
new = re.sub(r"MD5: \w+", "MD5: " + hashlib.md5(data).hexdigest(), blk)
new = re.sub(r"SHA1: \w+", "SHA1: " + hashlib.sha1(data).hexdigest(), new)
idx = idx.replace(blk, new)
open(f"{d}/Packages", "w").write(idx)
open(f"{d}/Packages.gz", "wb").write(gzip.compress(idx.encode()))
"#;
    python(script, binhost, &[cpv, file]);
}

/// Run a Python script on a binhost directory (its index written back, `Packages.gz` too).
fn python(script: &str, binhost: &Path, args: &[&str]) {
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(binhost)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// The binhost without one package in its index (the file stays; Portage does not see it).
fn without(binhost: &Path, cpv: &str) {
    let script = r#"
import gzip, re, sys
d, cpv = sys.argv[1:3]
idx = open(f"{d}/Packages").read()
idx = re.sub(r"CPV: " + re.escape(cpv) + r"\n(?:.+\n)*\n", "", idx)
n = idx.count("\nCPV: ")
idx = re.sub(r"PACKAGES: \d+", f"PACKAGES: {n}", idx)
open(f"{d}/Packages", "w").write(idx)
open(f"{d}/Packages.gz", "wb").write(gzip.compress(idx.encode()))
"#;
    python(script, binhost, &[cpv]);
}

fn gpkg_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            gpkg_files(&p, out);
        } else if p.to_string_lossy().ends_with(".gpkg.tar") {
            out.push(p);
        }
    }
}

fn squashfs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(squashfs_in(&p));
            } else if p.to_string_lossy().contains(".squashfs") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn binhost_on_loopback() {
    let started = Instant::now();
    for tool in ["gpg", "gpgconf", "curl", "wget", "python3"] {
        if !testutil::require(tool) {
            return;
        }
    }
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let Some((a, b)) =
        common::shared_build_and_fresh_copy(Path::new(env!("CARGO_TARGET_TMPDIR")), VARIANT)
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (home, fpr, public) = common::gpg_key(t, "a");
    let (other_home, _, other_public) = common::gpg_key(t, "other");
    let mut cleanup = common::Cleanup {
        homes: vec![home.clone(), other_home],
        server: None,
    };

    // 1. A publishes, signing with the key its machine's config file names.
    let config = t.join("config.toml");
    fs::write(
        &config,
        format!(
            "[publish]\nsigning-key = \"{fpr}\"\ngpg-home = \"{}\"\n",
            home.display()
        ),
    )
    .unwrap();
    let www = t.join("www");
    let good = www.join("good");
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.arg("-C")
        .arg(&a.project)
        .args(["publish", "--variant", VARIANT, "--to"])
        .arg(&good)
        .env("KEEL_CONFIG", &config);
    let (ok, out, err) = text(&testutil::output_within(
        c,
        Duration::from_secs(300),
        "keel publish",
    ));
    assert!(ok, "publish: {err}");
    assert_eq!(out.trim(), good.display().to_string());
    let mut built = Vec::new();
    gpkg_files(
        &a.cache.join("binpkgs").join(VARIANT).join("pkgdir"),
        &mut built,
    );
    let mut published = Vec::new();
    gpkg_files(&good, &mut published);
    assert_eq!(published.len(), built.len(), "{err}");
    let index = fs::read_to_string(good.join("Packages")).unwrap();
    assert_eq!(
        index.lines().filter(|l| l.starts_with("CPV: ")).count(),
        built.len(),
        "Portage's index lists every package:\n{index}"
    );
    for p in &published {
        let o = Command::new("tar").arg("tf").arg(p).output().unwrap();
        let names = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            names.lines().any(|n| n.ends_with("/Manifest"))
                && names
                    .lines()
                    .any(|n| n.contains("/image.tar") && n.ends_with(".sig")),
            "{} is not signed: {names}",
            p.display()
        );
    }
    assert!(good.join("keel/patches.asc").is_file());

    let tampered = www.join("tampered");
    common::copy_tree(&good, &tampered);
    let libselinux = index
        .split("\n\n")
        .find(|b| b.contains("CPV: sys-libs/libselinux-"))
        .expect("libselinux in the index");
    let field = |k: &str| {
        libselinux
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let (lib_cpv, lib_path) = (field("CPV: "), field("PATH: "));
    tamper(&tampered, &lib_cpv, &lib_path);
    let partial = www.join("partial");
    common::copy_tree(&good, &partial);
    let container = index
        .lines()
        .find_map(|l| l.strip_prefix("CPV: sec-policy/selinux-container-"))
        .map(|v| format!("sec-policy/selinux-container-{v}"))
        .expect("selinux-container in the index");
    without(&partial, &container);

    let (server, port) = common::serve(&www);
    cleanup.server = Some(server);
    let url = |d: &str| format!("http://127.0.0.1:{port}/{d}");

    // 2. B: a fresh copy, an empty build directory and cache, everything from A's URL.
    let build = |args: &[&str], dirs: Option<&Path>, limit: u64| {
        let mut c = common::keel_cmd(&b, &["build", "--variant", VARIANT]);
        c.args(args)
            .env("SOURCE_DATE_EPOCH", testutil::EPOCH)
            .env("KEEL_CONFIG", "");
        if let Some(d) = dirs {
            c.env("KEEL_BUILD_DIR", d.join("build"))
                .env("KEEL_CACHE_DIR", d.join("cache"))
                .env("KEEL_OUTPUT_DIR", d.join("out"))
                .env("KEEL_PORTAGE_VENV", &venv);
        }
        text(&testutil::output_within(
            c,
            Duration::from_secs(limit),
            "keel build",
        ))
    };
    let key = public.display().to_string();
    let t0 = Instant::now();
    let (ok, out, err) = build(
        &[
            "--binhost",
            &url("good"),
            "--binhost-key",
            &key,
            "--binhost-only",
        ],
        None,
        1200,
    );
    assert!(ok, "build B: {err}");
    let b_secs = t0.elapsed().as_secs_f64();
    let logs = b.root.join("build/work").join(VARIANT).join("logs");
    // B compiles nothing: only binary merges, in the sysroot and in the destroot (whose
    // `installonly.packages` come from the binhost too), and every package A built is one.
    let mut merged = std::collections::BTreeSet::new();
    for stage in ["sysroot", "destroot"] {
        let log = fs::read_to_string(logs.join(format!("{stage}.log"))).unwrap();
        let emerging: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with(">>> Emerging "))
            .collect();
        assert!(
            !emerging.is_empty()
                && emerging
                    .iter()
                    .all(|l| l.starts_with(">>> Emerging binary ")),
            "B's {stage} compiled something:\n{}",
            emerging.join("\n")
        );
        assert!(!log.contains(">>> Compiling source"), "{log}");
        // `>>> Emerging binary (1 of 18) sys-apps/baselayout-2.15::gentoo for /...`
        merged.extend(
            emerging
                .iter()
                .filter_map(|l| l.split(") ").nth(1)?.split("::").next())
                .map(str::to_owned),
        );
    }
    for p in &built {
        let cat = p.parent().unwrap().parent().unwrap().file_name().unwrap();
        let name = p.file_name().unwrap().to_string_lossy();
        // `pf-BUILD_ID.gpkg.tar`
        let pf = name
            .trim_end_matches(".gpkg.tar")
            .rsplit_once('-')
            .unwrap()
            .0;
        let cpv = format!("{}/{pf}", cat.to_string_lossy());
        assert!(merged.contains(&cpv), "B did not merge {cpv}: {merged:?}");
    }
    assert!(
        merged
            .iter()
            .any(|c| c.starts_with("app-misc/ca-certificates-")),
        "B's destroot lacks the installonly package: {merged:?}"
    );
    let b_image = PathBuf::from(out.trim());
    let a_image = a.output.join(format!("{VARIANT}.squashfs"));
    assert_eq!(
        common::sha256(&b_image),
        common::sha256(&a_image),
        "B's image differs from A's"
    );

    // The binhost is a site setting, outside the fingerprint: another URL rebuilds nothing.
    let (ok, _, err) = build(
        &[
            "--dry-run",
            "--binhost",
            "http://127.0.0.1:9/elsewhere",
            "--binhost-key",
            &key,
        ],
        None,
        120,
    );
    assert!(ok && err.contains("nothing to do"), "{err}");

    // 3. The ways it must fail, each in a fresh build directory: an error naming what is
    // wrong, and no image.
    // (name, binhost URL, key file, extra flags, time limit): the error.
    let fail = |name: &str, binhost: &str, key: &Path, extra: &[&str], limit: u64| -> String {
        let d = t.join(format!("fresh-{name}"));
        let key = key.display().to_string();
        let mut args = vec!["--binhost", binhost, "--binhost-key", &key];
        args.extend(extra);
        let (ok, _, err) = build(&args, Some(&d), limit);
        assert!(!ok, "{name}: the build should fail:\n{err}");
        assert_eq!(
            squashfs_in(&d.join("out")),
            Vec::<PathBuf>::new(),
            "{name}: an image was left:\n{err}"
        );
        err
    };
    let err = fail("tampered", &url("tampered"), &public, &[], 900);
    assert!(
        err.contains(&format!("refused the binary package {lib_cpv}"))
            && err.contains("BAD signature")
            && err.contains(&url("tampered")),
        "{err}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let silent = format!("http://127.0.0.1:{closed}/good");
    let err = fail("silent", &silent, &public, &[], 120);
    assert!(
        err.contains(&format!("the binhost does not answer: {silent}/Packages")),
        "{err}"
    );
    let missing = t.join("no-such-key.asc");
    let err = fail("no-key", &url("good"), &missing, &[], 120);
    assert!(
        err.contains(&format!(
            "the binhost key {} does not exist",
            missing.display()
        )),
        "{err}"
    );
    let err = fail("other-key", &url("good"), &other_public, &[], 120);
    assert!(
        err.contains("is not signed by the binhost key") && err.contains(&url("good")),
        "{err}"
    );
    let err = fail(
        "partial",
        &url("partial"),
        &public,
        &["--binhost-only"],
        300,
    );
    assert!(
        err.contains("--binhost-only: 1 package(s) would be compiled") && err.contains(&container),
        "{err}"
    );
    let log = fs::read_to_string(
        t.join("fresh-partial/build/work")
            .join(VARIANT)
            .join("logs/sysroot.log"),
    )
    .unwrap();
    assert!(!log.contains(">>> Emerging"), "nothing was merged:\n{log}");

    eprintln!(
        "binhost: A (shared build) {:.0} s, B from the binhost {b_secs:.0} s; the whole test {:.0} s",
        a.secs,
        started.elapsed().as_secs_f64()
    );
}
