use super::*;
use variant::Project;

fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Resolved) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("variants")).unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let r = Project::load(dir.path()).unwrap().resolve("d").unwrap();
    (dir, r)
}

const TOML: (&str, &str) = (
    "variants/d/variant.toml",
    "distribution = \"debian\"\nsuite = \"bookworm\"\n",
);

#[test]
fn sets_name_debian_packages() {
    let (_d, r) = project(&[
        TOML,
        (
            "variants/d/install.packages",
            "# comment\ndebian/systemd\ndebian/linux-image-amd64\n",
        ),
        ("variants/d/installonly.packages", "debian/podman\n"),
    ]);
    check_sets(&r).unwrap();
    let names: Vec<String> = packages(&r, SetKind::Install)
        .unwrap()
        .into_iter()
        .map(|p| format!("{} {}", p.loc, p.name))
        .collect();
    assert_eq!(
        names,
        [
            "variants/d/install.packages:2 systemd",
            "variants/d/install.packages:3 linux-image-amd64"
        ]
    );
}

#[test]
fn bad_lines_name_file_and_line() {
    let cases = [
        (
            "variants/d/install.packages",
            "debian/systemd\nsys-apps/systemd\n",
            "variants/d/install.packages:2: `sys-apps/systemd`: a Debian variant names Debian packages as `debian/<package>` (e.g. `debian/systemd`)",
        ),
        (
            "variants/d/install.packages",
            ">=debian/systemd-252\n",
            "variants/d/install.packages:1: `>=debian/systemd-252`: only a bare package name is supported for Debian",
        ),
        (
            "variants/d/host-tools.packages",
            "debian/mmdebstrap:0\n",
            "variants/d/host-tools.packages:1: `debian/mmdebstrap:0`: only a bare package name",
        ),
        (
            "variants/d/build.packages",
            "\ndebian/gcc\n",
            "variants/d/build.packages:2: `debian/gcc`: a Debian variant has no build.packages",
        ),
    ];
    for (file, text, want) in cases {
        let (_d, r) = project(&[TOML, (file, text)]);
        let e = check_sets(&r).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}\n  wanted: {want}");
    }
}

#[test]
fn apt_messages_name_the_package() {
    assert_eq!(
        unknown_package("E: Unable to locate package keel-no-such-pkg"),
        Some("keel-no-such-pkg")
    );
    assert_eq!(
        unknown_package("E: Package 'foo' has no installation candidate"),
        Some("foo")
    );
    assert_eq!(unknown_package("I: downloading packages with apt..."), None);
}

#[test]
fn sources_of_a_stable_and_a_development_suite() {
    let d = Debian {
        suite: "bookworm".into(),
        mirror: "http://m/debian".into(),
        security_mirror: "http://m/debian-security".into(),
        cache: "/c".into(),
    };
    assert_eq!(
        d.sources(),
        [
            "deb http://m/debian bookworm main",
            "deb http://m/debian bookworm-updates main",
            "deb http://m/debian-security bookworm-security main"
        ]
    );
    let sid = Debian {
        suite: "sid".into(),
        ..d
    };
    assert_eq!(sid.sources(), ["deb http://m/debian sid main"]);
}

#[test]
fn tidy_empties_the_logs_and_the_package_cache() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for f in [
        "var/log/apt/history.log",
        "var/log/dpkg.log",
        "var/cache/apt/archives/a.deb",
        "var/lib/keep",
    ] {
        std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
        std::fs::write(r.join(f), "x").unwrap();
    }
    std::fs::create_dir_all(r.join("var/cache/apt/archives/partial")).unwrap();
    let mut removed = tidy(r).unwrap();
    removed.sort();
    assert_eq!(
        removed,
        [
            "/var/cache/apt/archives/a.deb",
            "/var/log/apt",
            "/var/log/dpkg.log"
        ]
    );
    assert!(r.join("var/log").is_dir() && r.join("var/lib/keep").exists());
}

/// mmdebstrap itself: a package the suite lacks is reported with its set file and line,
/// and no destination root is left behind.
#[test]
fn missing_package_names_the_line() {
    if !testutil::require("mmdebstrap") {
        return;
    }
    let (d, r) = project(&[
        TOML,
        (
            "variants/d/install.packages",
            "debian/systemd\ndebian/keel-no-such-package\n",
        ),
    ]);
    let deb = Debian::new(&d.path().join("build"), &r).unwrap();
    let dest = d.path().join("work/destroot");
    let log = d.path().join("destroot.log");
    let e = deb.destroot(&r, &[], &dest, &log, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("variants/d/install.packages:2: `debian/keel-no-such-package`: Debian has no package `keel-no-such-package` in bookworm"),
        "{msg}"
    );
    assert!(!dest.exists());
}

/// An archive nobody answers at: a clear error naming the archive, quickly.
#[test]
fn unreachable_archive() {
    if !testutil::require("mmdebstrap") {
        return;
    }
    let (d, r) = project(&[TOML, ("variants/d/install.packages", "debian/systemd\n")]);
    let deb = Debian {
        mirror: "http://127.0.0.1:9/debian".into(),
        security_mirror: "http://127.0.0.1:9/debian-security".into(),
        ..Debian::new(&d.path().join("build"), &r).unwrap()
    };
    let dest = d.path().join("work/destroot");
    let log = d.path().join("destroot.log");
    let msg = deb
        .destroot(&r, &[], &dest, &log, None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(
            "cannot reach the Debian archive (deb http://127.0.0.1:9/debian bookworm main;"
        ),
        "{msg}"
    );
    assert!(msg.contains(&log.display().to_string()), "{msg}");
    assert!(!dest.exists() && !dest.with_extension("new").exists());
}
