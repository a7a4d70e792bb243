//! The Portage backend end to end, with real emerge against tests/fixtures/gentoo-mini.
//!
//! One test walks through the contract in order, on a copy of the project (so it can edit
//! set files and portage/ layers) that shares the real project's `build/tools` (the PyPI
//! Portage venv). It builds the shipped variants in their quick test form, `base-quick` and
//! `selinux-quick` (tests/fixtures/variants: gentoo-mini's source-built core, no kernel), and
//! edits the shipped variants' files they inherit:
//! both variants build; the destroot holds what the sets say and no Python for `selinux`;
//! a rebuild with nothing changed runs no emerge; changing one set reruns exactly the
//! stages that read it; a file deleted from portage/ stops taking effect; the host's own
//! Portage paths are untouched.
//!
//! Cold on purpose, not a shared build (`testutil::shared_build`): the first builds must run
//! every stage from nothing, and the later steps edit the project and rebuild it.

mod common;

use common::{build, emerge_runs, from, keel, keel_cmd, project, Project};
use pipeline::StageId;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The builds `keel diff` compares are reproducible: the same inputs, the same image.
const EPOCH: &str = "1700000000";

const HOST_PORTAGE_PATHS: &[&str] = &[
    "/etc/portage",
    "/var/db/pkg",
    "/var/cache/edb",
    "/var/lib/portage",
];

fn installed(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let vdb = root.join("var/db/pkg");
    for cat in fs::read_dir(&vdb).unwrap().flatten() {
        for pf in fs::read_dir(cat.path()).unwrap().flatten() {
            out.push(format!(
                "{}/{}",
                cat.file_name().to_string_lossy(),
                pf.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

fn has_pkg(list: &[String], key: &str) -> bool {
    list.iter().any(|cpv| {
        cpv.strip_prefix(key).is_some_and(|rest| {
            rest.starts_with('-') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
        })
    })
}

/// A build with stderr not a terminal, read as it comes: each line with when it arrived.
fn build_live(p: &Project, variant: &str) -> (Vec<String>, Vec<(Instant, String)>) {
    let mut child = keel_cmd(p, &["build", "--variant", variant])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<(Instant, String)> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map(|l| (Instant::now(), l.unwrap()))
        .collect();
    let st = child.wait().unwrap();
    let err: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(st.success(), "build of {variant} failed:\n{err}");
    (common::ran(&err), lines)
}

/// When the line that ends with `needle` arrived.
fn arrived(lines: &[(Instant, String)], needle: &str) -> Instant {
    lines
        .iter()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}`"))
        .0
}

fn snapshot_host() -> Vec<String> {
    HOST_PORTAGE_PATHS
        .iter()
        .map(|p| match fs::symlink_metadata(p) {
            Ok(m) => format!("{p} exists {:?}", m.modified().ok()),
            Err(_) => format!("{p} absent"),
        })
        .collect()
}

#[test]
fn portage_backend_end_to_end() {
    let Some(p) = project() else { return };
    let host_before = snapshot_host();

    // 1. Both variants build; the destroot holds exactly the install sets (plus deps).
    let (ran, dest) = build(&p, "base-quick");
    assert_eq!(ran, from(&p, StageId::HostTools, "base-quick"));
    let base_pkgs = installed(Path::new(&dest));
    for key in [
        "sys-apps/systemd",
        "app-containers/podman",
        "net-misc/openssh",
        "sys-fs/btrfs-progs",
        "app-misc/ca-certificates",
    ] {
        assert!(
            has_pkg(&base_pkgs, key),
            "{key} missing from base destroot: {base_pkgs:?}"
        );
    }
    assert!(!has_pkg(&base_pkgs, "sys-libs/libselinux"), "{base_pkgs:?}");
    assert!(Path::new(&dest)
        .join("usr/lib/tmpfiles.d/var.conf")
        .exists());

    // Live progress (issue 21), stderr a pipe: a plain `N of M` line for each package
    // emerge takes on, arriving while the stage still runs, not when it ends.
    let (ran, lines) = build_live(&p, "selinux-quick");
    let sdest = p
        .root
        .join("build/work/selinux-quick/destroot")
        .display()
        .to_string();
    assert_eq!(ran, from(&p, StageId::HostTools, "selinux-quick"));
    let sysroot_done = arrived(&lines, "] sysroot: done");
    let progress: Vec<&(Instant, String)> = lines
        .iter()
        .filter(|(_, l)| l.contains("] sysroot: ") && l.contains(" of ") && l.contains("/"))
        .collect();
    assert!(progress.len() >= 10, "one line per package: {lines:#?}");
    assert!(
        progress[0].1.starts_with("[") && progress[0].1.contains("] sysroot: 1 of "),
        "{}",
        progress[0].1
    );
    assert!(
        sysroot_done.duration_since(progress[0].0) > Duration::from_secs(5),
        "the first package's line came when the stage ended: {lines:#?}"
    );
    let se_pkgs = installed(Path::new(&sdest));
    for key in [
        "sys-libs/libselinux",
        "sys-apps/policycoreutils",
        "sec-policy/selinux-base-policy",
        "sys-apps/systemd",
    ] {
        assert!(
            has_pkg(&se_pkgs, key),
            "{key} missing from selinux destroot: {se_pkgs:?}"
        );
    }
    // No Python for `python = false`: not installed, no files, and the sysroot did have it.
    assert!(!has_pkg(&se_pkgs, "dev-lang/python"), "{se_pkgs:?}");
    assert_eq!(
        portage::find_python(Path::new(&sdest)).unwrap(),
        Vec::<String>::new()
    );
    let sysroot = p.root.join("build/work/selinux-quick/sysroot");
    assert!(
        has_pkg(&installed(&sysroot), "dev-lang/python"),
        "the sysroot should have built Python"
    );

    // The selinux image (issue 7): labelled by the target policy, path by path as setfiles
    // would; the right /etc/selinux/config; no Python in the image itself.
    let image = p.root.join("build/selinux-quick/selinux-quick.squashfs");
    let x = tempfile::tempdir().unwrap();
    let root = x.path().join("r");
    let o = Command::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-xattrs", "-d"])
        .arg(&root)
        .arg(&image)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let policy = root.join("etc/selinux/mcs/policy/policy.33");
    let fc = root.join("etc/selinux/mcs/contexts/files/file_contexts");
    let o = Command::new("setfiles")
        .args(["-n", "-v", "-r"])
        .arg(&root)
        .arg("-c")
        .arg(&policy)
        .arg(&fc)
        .arg(&root)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "setfiles -n: {report}");
    assert!(
        !report.contains("Would relabel") && !report.contains("Relabeled"),
        "labels differ from setfiles:\n{report}"
    );
    let labelled = common::manifest_for_snapshot(
        &fs::read_to_string(p.root.join("build/selinux-quick/manifest.txt")).unwrap(),
    );
    assert!(
        labelled.lines().any(|l| l.starts_with("/usr/bin/bash\t")
            && l.ends_with("system_u:object_r:shell_exec_t:s0")),
        "{labelled}"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/selinux/config"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["SELINUX=enforcing", "SELINUXTYPE=mcs"]
    );
    assert_eq!(portage::find_python(&root).unwrap(), Vec::<String>::new());
    insta::assert_snapshot!("selinux-manifest", labelled);
    insta::assert_snapshot!(
        "selinux-config-destroot",
        common::render_dir(
            &p,
            &p.root
                .join("build/work/selinux-quick/config/destroot/etc/portage")
        )
    );

    // 2. Nothing changed: no stage runs, no emerge runs.
    let before = emerge_runs(&p, "base-quick");
    let (ok, _, err) = keel(&p, &["build", "--variant", "base-quick"]);
    assert!(ok, "{err}");
    assert_eq!(common::ran(&err), Vec::<String>::new(), "{err}");
    assert_eq!(emerge_runs(&p, "base-quick"), before);

    // 3. Changing one set reruns exactly the stages that read it.
    let install = p.root.join("variants/base/install.packages");
    let text = fs::read_to_string(&install).unwrap();
    fs::write(&install, text.replace("net-misc/openssh\n", "")).unwrap();
    let (ran, dest) = build(&p, "base-quick");
    assert_eq!(ran, from(&p, StageId::Destroot, "base-quick"));
    assert!(!has_pkg(&installed(Path::new(&dest)), "net-misc/openssh"));
    fs::write(&install, &text).unwrap();
    let build_set = p.root.join("variants/base/build.packages");
    let btext = fs::read_to_string(&build_set).unwrap();
    fs::write(&build_set, format!("{btext}sys-libs/libsepol\n")).unwrap();
    let (ran, _) = build(&p, "base-quick");
    assert_eq!(ran, from(&p, StageId::Sysroot, "base-quick"));
    assert!(has_pkg(
        &installed(&p.root.join("build/work/base-quick/sysroot")),
        "sys-libs/libsepol"
    ));

    // 4. A portage/ file changes what gets installed; deleting it takes effect next build.
    let use_file = p.root.join("portage/package.use/keel-test");
    fs::create_dir_all(use_file.parent().unwrap()).unwrap();
    fs::write(&use_file, "net-misc/openssh selinux\n").unwrap();
    let (ran, dest) = build(&p, "base-quick");
    assert_eq!(ran, from(&p, StageId::Sysroot, "base-quick"));
    assert!(
        has_pkg(&installed(Path::new(&dest)), "sys-libs/libselinux"),
        "openssh[selinux] should pull libselinux"
    );
    fs::remove_file(&use_file).unwrap();
    let (ran, dest) = build(&p, "base-quick");
    assert_eq!(ran, from(&p, StageId::Sysroot, "base-quick"));
    assert!(
        !has_pkg(&installed(Path::new(&dest)), "sys-libs/libselinux"),
        "the deleted package.use must not linger"
    );
    assert!(
        !p.root
            .join("build/work/base-quick/sysroot/etc/portage")
            .exists(),
        "nothing is written to the sysroot's etc/portage"
    );

    // 5. The host's Portage state is untouched.
    assert_eq!(snapshot_host(), host_before);

    // 6. What changed between builds (issue 21). One more package and one overlay file
    // are exactly what the build's summary and `keel diff` report.
    let sets: Vec<(std::path::PathBuf, String)> = ["build", "install"]
        .iter()
        .map(|k| {
            let f = p.root.join(format!("variants/selinux/{k}.packages"));
            let t = fs::read_to_string(&f).unwrap();
            (f, t)
        })
        .collect();
    for (f, t) in &sets {
        fs::write(f, format!("{t}app-misc/pax-utils\n")).unwrap();
    }
    let added = p.root.join("overlay/etc/keel-diff-test");
    fs::write(&added, "one overlay file\n").unwrap();
    let o = keel_cmd(&p, &["build", "--variant", "selinux-quick", "--json"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    let (ok, out, err) = common::text(&o);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let image = Path::new(summary["image"].as_str().unwrap());
    assert_eq!(
        summary["image_bytes"].as_u64().unwrap(),
        fs::metadata(image).unwrap().len()
    );
    assert_eq!(summary["packages"], 19, "{summary:#}");
    assert!(
        summary["since_previous"].as_str().unwrap().starts_with(
            "1 package added (app-misc/pax-utils 1.3.7); 1 file added (/etc/keel-diff-test)"
        ),
        "{summary:#}"
    );
    let stages: Vec<(&str, bool)> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["seconds"].is_number()))
        .collect();
    assert_eq!(stages[0], ("host-tools", false), "{summary:#}");
    assert!(stages[1..].iter().all(|(_, ran)| *ran), "{summary:#}");
    let history = p.root.join("build/selinux-quick/history");
    let (one, two) = (history.join("0001"), history.join("0002"));
    let (ok, out, err) = keel(
        &p,
        &[
            "diff",
            one.to_str().unwrap(),
            two.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        d["packages"],
        serde_json::json!([{"change": "added", "name": "app-misc/pax-utils", "version": "1.3.7",
            "size": d["packages"][0]["size"], "files": 6}]),
        "{d:#}"
    );
    assert_eq!(
        d["files"],
        serde_json::json!([{"path": "/etc/keel-diff-test", "change": "added", "what": ["file"]}]),
        "{d:#}"
    );
    let (ok, out, _) = keel(&p, &["size", "--variant", "selinux-quick"]);
    assert!(ok);
    assert!(out.contains("app-misc/pax-utils 1.3.7"), "{out}");

    // Undone, under a pseudo-terminal: one status line rewritten in place (no plain
    // progress lines), no colour with NO_COLOR; the image is the first one again.
    for (f, t) in &sets {
        fs::write(f, t).unwrap();
    }
    fs::remove_file(&added).unwrap();
    let cmdline = format!(
        "{} -C {} build --variant selinux-quick --gentoo-repo {}",
        env!("CARGO_BIN_EXE_keel"),
        p.root.display(),
        common::repo().display()
    );
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &cmdline, "/dev/null"])
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(
        tty.contains("\r\x1b[2K[      running] destroot: 1 of "),
        "no status line: {tty:?}"
    );
    assert!(
        !tty.contains("s] destroot: 1 of "),
        "plain progress lines on a terminal: {tty:?}"
    );
    assert!(
        tty.contains("\r\x1b[2K[         ") && tty.contains("destroot: done"),
        "the status line is cleared before the stage's last line: {tty:?}"
    );
    assert!(!tty.contains("\x1b[3"), "colour despite NO_COLOR: {tty:?}");
    for status in tty.split("\r\x1b[2K").skip(1) {
        let line = status.split(['\r', '\n']).next().unwrap();
        assert!(
            line.chars().count() <= 100,
            "wider than the terminal: {line:?}"
        );
    }
    let three = history.join("0003");
    let (ok, out, err) = keel(
        &p,
        &["diff", one.to_str().unwrap(), three.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "", "identical builds differ");

    // 7. A user patch that no longer applies fails the build, naming the patch. A changed
    // patch set rebuilds its package (Portage itself does not track user patches).
    let stale = p
        .root
        .join("variants/selinux/portage/patches/sec-policy/selinux-base/9999-keel-stale.patch");
    fs::write(&stale, "--- a/policy/modules/kernel/kernel.te\n+++ b/policy/modules/kernel/kernel.te\n@@ -1,3 +1,3 @@\n-this line is not in the file\n+nor is this one\n context\n context\n").unwrap();
    // With --verbose the tools' output reaches stderr as it comes, and the failed stage's
    // line names its log.
    let (ok, _, err) = keel(&p, &["build", "--variant", "selinux-quick", "--verbose"]);
    assert!(!ok);
    assert!(
        err.contains("user patch ") && err.contains("9999-keel-stale.patch does not apply"),
        "{err}"
    );
    assert!(err.contains("\n>>> Emerging (1 of "), "{err}");
    assert!(
        err.contains("] sysroot (log: ") && err.contains("logs/sysroot.log)"),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_complete_root() {
    let Some(p) = project() else { return };
    // An atom no repository has.
    let v = p.root.join("variants/ghost");
    fs::create_dir_all(&v).unwrap();
    fs::write(v.join("variant.toml"), "inherits = \"base-quick\"\n").unwrap();
    fs::write(
        v.join("build.packages"),
        "# ghost\napp-misc/does-not-exist\n",
    )
    .unwrap();
    let (ok, _, err) = keel(&p, &["build", "--variant", "ghost"]);
    assert!(!ok);
    assert!(
        err.contains(
            "variants/ghost/build.packages:2: Portage cannot satisfy `app-misc/does-not-exist`"
        ),
        "{err}"
    );
    assert!(err.contains("sysroot.log"), "{err}");
    assert!(!p.root.join("build/work/ghost/destroot").exists());

    // A USE conflict: the set asks for a flag the configuration does not enable.
    fs::write(
        v.join("build.packages"),
        "# ghost\nnet-misc/openssh[selinux]\n",
    )
    .unwrap();
    let (ok, _, err) = keel(&p, &["build", "--variant", "ghost"]);
    assert!(!ok);
    assert!(
        err.contains("USE conflict: ") && err.contains("variants/ghost/build.packages:2: "),
        "{err}"
    );

    // install.packages names what the sysroot did not build.
    fs::write(v.join("build.packages"), "").unwrap();
    fs::write(v.join("install.packages"), "sys-libs/libsepol\n").unwrap();
    let (ok, _, err) = keel(&p, &["build", "--variant", "ghost"]);
    assert!(!ok);
    assert!(
        err.contains(
            "variants/ghost/install.packages:1: Portage cannot satisfy `sys-libs/libsepol`"
        ),
        "{err}"
    );
    assert!(
        !p.root.join("build/work/ghost/destroot").exists(),
        "a failed destroot must not look complete"
    );

    // A missing repository.
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["-C"])
        .arg(&p.root)
        .args([
            "build",
            "--variant",
            "base",
            "--gentoo-repo",
            "/nonexistent/repo",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("/nonexistent/repo does not exist") && err.contains("--gentoo-repo"),
        "{err}"
    );
}

/// Keel's venv carries its patch (docs/portage.md): no helper checks a process
/// substitution with `wait "$!"`, which Debian 12's bash sometimes answers with -1.
#[test]
fn the_venvs_portage_checks_no_process_substitution_with_wait() {
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let bin = venv.join("lib/portage/bin");
    let mut checked = 0;
    let mut left = Vec::new();
    let mut todo = vec![bin.clone()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(path);
            } else if let Ok(text) = fs::read_to_string(&path) {
                checked += 1;
                for (n, l) in text.lines().enumerate() {
                    if l.contains("wait \"$!\"") {
                        left.push(format!("{}:{}: {}", path.display(), n + 1, l.trim()));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "{} holds {checked} scripts", bin.display());
    assert_eq!(left, Vec::<String>::new());
}
