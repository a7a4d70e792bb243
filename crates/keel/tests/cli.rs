//! The `keel` binary on real project trees: the commands' output and their errors.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn keel(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(project)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the project's variants/ (and nothing else) in a temp dir.
fn copy_of_shipped_variants() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = testutil::project_root().join("variants");
    for v in fs::read_dir(&src).unwrap() {
        let v = v.unwrap();
        let to = d.path().join("variants").join(v.file_name());
        fs::create_dir_all(&to).unwrap();
        for f in fs::read_dir(v.path()).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_file() {
                fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
    }
    d
}

#[test]
fn shipped_variants_are_listed() {
    let o = keel(&testutil::project_root(), &["variants"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["base", "base"]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["selinux", "base", "->", "selinux"]),
        "{out}"
    );
}

#[test]
fn a_new_variant_directory_is_a_new_variant() {
    let d = copy_of_shipped_variants();
    let edge = d.path().join("variants/edge");
    fs::create_dir_all(&edge).unwrap();
    fs::write(edge.join("variant.toml"), "inherits = \"selinux\"\n").unwrap();
    fs::write(
        edge.join("install.packages"),
        "# edge drops ssh, adds tmux\n-net-misc/openssh\napp-misc/tmux\n",
    )
    .unwrap();

    let o = keel(d.path(), &["variants"]);
    assert!(stdout(&o)
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["edge", "base", "->", "selinux", "->", "edge"]));

    let o = keel(d.path(), &["plan", "--variant", "edge"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    let install: Vec<&str> = plan
        .split("set install.packages")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert!(
        !install.iter().any(|l| l.contains("net-misc/openssh")),
        "{plan}"
    );
    assert!(
        install
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["app-misc/tmux", "variants/edge/install.packages:3"]),
        "{plan}"
    );
    assert!(
        install
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["sys-apps/systemd", "variants/base/install.packages:8"]),
        "{plan}"
    );
    assert!(plan.contains("chain: base -> selinux -> edge"), "{plan}");
    // The plan's stages, in order: the Portage backend's, then the SELinux tree stages.
    let stages: Vec<&str> = plan
        .split("\nstages:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        stages,
        [
            "host-tools",
            "sysroot",
            "destroot",
            "policy-store",
            "overlay",
            "tmpfiles",
            "fixups",
            "label",
            "image"
        ],
        "{plan}"
    );
    // openssh is still in the build set: only install.packages dropped it.
    assert!(plan
        .split("set install.packages")
        .next()
        .unwrap()
        .contains("net-misc/openssh"));
}

#[test]
fn errors_name_file_line_and_exit_nonzero() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "variant.toml",
            "inherits = \"selinux\"\nwat = 1\n",
            "variants/edge/variant.toml:2: unknown field `wat`",
        ),
        (
            "variant.toml",
            "inherits = \"nope\"\n",
            "variants/edge/variant.toml:1: `inherits = \"nope\"`: no variant `nope`",
        ),
        (
            "variant.toml",
            "inherits = \"selinux\"\npython = 3\n",
            "variants/edge/variant.toml:2: invalid type: integer `3`, expected a boolean",
        ),
        (
            "install.packages",
            "\n-app-misc/not-there\n",
            "variants/edge/install.packages:2: `-app-misc/not-there` removes nothing",
        ),
        (
            "build.packages",
            "sys-apps/ok\n=sys-apps/bad\n",
            "variants/edge/build.packages:2: invalid atom `=sys-apps/bad`",
        ),
    ];
    for (file, text, want) in cases {
        let d = copy_of_shipped_variants();
        let edge = d.path().join("variants/edge");
        fs::create_dir_all(&edge).unwrap();
        if *file != "variant.toml" {
            fs::write(edge.join("variant.toml"), "inherits = \"selinux\"\n").unwrap();
        }
        fs::write(edge.join(file), text).unwrap();
        let o = keel(d.path(), &["plan", "--variant", "edge"]);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{file}: want {want:?}, got {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"));
    }
}

/// Issue 17: a 70,000-byte package name made `keel plan` pad a column to 70,000 and the
/// formatter panic (exit 101).
#[test]
fn a_huge_package_name_is_an_error_not_a_panic() {
    let d = copy_of_shipped_variants();
    let edge = d.path().join("variants/edge");
    fs::create_dir_all(&edge).unwrap();
    fs::write(edge.join("variant.toml"), "inherits = \"base\"\n").unwrap();
    fs::write(
        edge.join("install.packages"),
        format!("# hostile\napp-misc/{}\n", "a".repeat(70_000)),
    )
    .unwrap();
    let o = keel(d.path(), &["plan", "--variant", "edge"]);
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(101), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("variants/edge/install.packages:2: invalid atom `app-misc/aaa")
            && err.contains(
                "package name is 70000 bytes; at most 255 (NAME_MAX: a package is a directory of its category)"
            ),
        "{err}"
    );
    assert!(
        err.len() < 1000,
        "the message repeats the whole line: {err}"
    );
}

/// The longest names the limits allow still plan, and a long atom overflows its column
/// instead of widening it for every line.
#[test]
fn plan_columns_are_capped() {
    let d = copy_of_shipped_variants();
    let edge = d.path().join("variants/edge");
    fs::create_dir_all(&edge).unwrap();
    fs::write(edge.join("variant.toml"), "inherits = \"base\"\n").unwrap();
    let long = format!("{}/{}", "c".repeat(255), "p".repeat(255));
    fs::write(
        edge.join("install.packages"),
        format!("{long}\napp-misc/tmux\n"),
    )
    .unwrap();
    let o = keel(d.path(), &["plan", "--variant", "edge"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains(&format!("  {long}  variants/edge/install.packages:1\n")),
        "{plan}"
    );
    let tmux = plan
        .lines()
        .find(|l| l.starts_with("  app-misc/tmux "))
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(
        tmux,
        format!("  {:60}  variants/edge/install.packages:2", "app-misc/tmux")
    );
}

#[test]
fn atom_check_refuses_a_huge_package_name() {
    let name = format!("app-misc/{}", "a".repeat(120 * 1024));
    let o = keel(&testutil::project_root(), &["atom", "check", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.ends_with("… (122889 bytes): invalid: package name is 122880 bytes; at most 255 (NAME_MAX: a package is a directory of its category)\n"),
        "{out}"
    );
    assert!(out.len() < 300, "{out}");
}

#[test]
fn cycle_is_an_error_for_every_command() {
    let d = copy_of_shipped_variants();
    fs::write(
        d.path().join("variants/base/variant.toml"),
        "inherits = \"selinux\"\n",
    )
    .unwrap();
    let o = keel(d.path(), &["variants"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("inheritance cycle: "), "{}", stderr(&o));
}

#[test]
fn duplicate_atom_is_a_warning() {
    let d = copy_of_shipped_variants();
    let edge = d.path().join("variants/edge");
    fs::create_dir_all(&edge).unwrap();
    fs::write(edge.join("variant.toml"), "inherits = \"base\"\n").unwrap();
    fs::write(edge.join("install.packages"), "sys-apps/systemd\n").unwrap();
    let o = keel(d.path(), &["plan", "--variant", "edge"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("warning: variants/edge/install.packages:1: duplicate atom `sys-apps/systemd` (already at variants/base/install.packages:8)"), "{}", stderr(&o));
}

#[test]
fn atom_check_exit_codes() {
    let root = testutil::project_root();
    let o = keel(
        &root,
        &[
            "atom",
            "check",
            ">=sys-apps/systemd-252",
            "dev-lang/python:3.11",
        ],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let o = keel(
        &root,
        &["atom", "check", "sys-apps/systemd", "=sys-apps/bad"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("=sys-apps/bad: invalid: "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn no_project_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("variants")
        .current_dir(d.path())
        .env_remove("KEEL_PROJECT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no Keel project at or above"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn clean_removes_what_it_says() {
    let d = copy_of_shipped_variants();
    let b = d.path().join("build");
    for p in [
        "work/base/sysroot/x",
        "base/base.squashfs",
        "work/selinux/x",
        "selinux/x",
        "tools/portage-x/y",
    ] {
        let p = b.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "x").unwrap();
    }
    let o = keel(d.path(), &["clean", "--variant", "base"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!b.join("work/base").exists() && !b.join("base").exists());
    assert!(b.join("work/selinux/x").exists() && b.join("tools/portage-x/y").exists());
    let o = keel(d.path(), &["clean"]);
    assert!(o.status.success());
    assert!(
        !b.join("work/selinux").exists()
            && !b.join("selinux").exists()
            && b.join("tools/portage-x/y").exists()
    );
    let o = keel(d.path(), &["clean", "--variant", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no variant `nope`"));
    let o = keel(d.path(), &["clean", "--all"]);
    assert!(o.status.success());
    assert!(!b.exists());
}

#[test]
fn overlay_sync_reports_errors_with_the_path_and_exits_nonzero() {
    let d = tempfile::tempdir().unwrap();
    let (src, dest) = (d.path().join("src"), d.path().join("dest"));
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/a"), "a").unwrap();
    fs::create_dir_all(&dest).unwrap();
    let o = keel(
        d.path(),
        &[
            "overlay",
            "sync",
            src.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(dest.join("etc/a")).unwrap(), "a");

    let missing = d.path().join("missing");
    let o = keel(
        d.path(),
        &[
            "overlay",
            "sync",
            missing.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(missing.to_str().unwrap()),
        "{}",
        stderr(&o)
    );

    // A source file where DEST has a non-empty directory: rsync (without --force) refuses.
    fs::write(src.join("blocker"), "x").unwrap();
    fs::create_dir_all(dest.join("blocker/inside")).unwrap();
    let o = keel(
        d.path(),
        &[
            "overlay",
            "sync",
            src.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("blocker"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

/// Issue 17: `keel overlay sync b b/in` recursed into its own output (26,744 levels after a
/// minute, without a word). It must fail at once, naming both paths; a run past 20 s is
/// killed and fails the test. The directory is kept after a failure: a runaway sync leaves a
/// tree too deep for a recursive removal on the test's stack.
#[test]
fn overlay_sync_into_its_own_source_is_refused() {
    let d = tempfile::tempdir().unwrap().keep();
    fs::create_dir_all(d.join("b/in")).unwrap();
    fs::write(d.join("b/f"), "1").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .current_dir(&d)
        .args(["overlay", "sync", "b", "b/in"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`keel overlay sync b b/in` still running after 20 s (killed; left {})",
                d.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("destination `b/in` is inside source `b`; the copy would contain itself"),
        "{err}"
    );
    assert_eq!(fs::read_dir(d.join("b/in")).unwrap().count(), 0);
    fs::remove_dir_all(&d).unwrap();
}

/// Site settings (docs/scale-out.md) are checked before any work: the config file's keys,
/// a binhost without its key, a publish of a variant that was never built.
#[test]
fn site_settings_are_checked_before_any_work() {
    let d = copy_of_shipped_variants();
    let config = d.path().join("config.toml");
    fs::write(
        &config,
        "[binhost]\nurl = \"http://127.0.0.1:9/x\"\nkeyy = \"k.asc\"\n",
    )
    .unwrap();
    let build = |config: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("-C")
            .arg(d.path())
            .args(["build", "--variant", "selinux"])
            .args(extra)
            .env("KEEL_CONFIG", config)
            .output()
            .unwrap()
    };
    let o = build(&config, &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&config.display().to_string()) && err.contains("keyy"),
        "{err}"
    );
    let o = build(Path::new(""), &["--binhost", "http://127.0.0.1:9/x"]);
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("the binhost http://127.0.0.1:9/x has no key"),
        "{err}"
    );
    let o = build(Path::new(""), &["--binhost-only"]);
    assert!(
        !o.status.success() && stderr(&o).contains("no binhost URL"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("build").exists(), "nothing was built");

    let to = d.path().join("www");
    let o = keel(
        d.path(),
        &[
            "publish",
            "--variant",
            "selinux",
            "--to",
            &to.display().to_string(),
        ],
    );
    let err = stderr(&o);
    assert!(
        !o.status.success() && err.contains("variant `selinux` has no binary packages to publish"),
        "{err}"
    );
    assert!(!to.exists());
}
