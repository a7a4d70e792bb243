//! Exact incremental at Gentoo scale (issue 22): the Portage stages fingerprint what their
//! last run read in the repository, so a change the build never reads reruns nothing, and
//! a change it reads reruns the stage. One case per kind of change in the rule
//! (docs/pipeline.md, "What the Portage stages read"), each with the emerge count.
//!
//! A change that must rerun is shown with `keel build --dry-run` (which names the input
//! that changed and runs no emerge), and one of them (an eclass in the inherit chain) also
//! by a real build; a change that must not rerun is shown by a real build that runs no
//! stage and no emerge.

mod common;

use common::{emerge_runs, project, ran, text, Project};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn keel(p: &Project, repo: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(&p.root)
        .args(args)
        .arg("--gentoo-repo")
        .arg(repo)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    let (ok, _, err) = text(&o);
    (ok, err)
}

/// A real build: the stages that ran.
fn build(p: &Project, repo: &Path) -> Vec<String> {
    let (ok, err) = keel(p, repo, &["build", "--variant", "base-quick"]);
    assert!(ok, "{err}");
    ran(&err)
}

/// `--dry-run`: the first stage that would run and why (`None`: nothing would).
fn would_run(p: &Project, repo: &Path) -> Option<String> {
    let (ok, err) = keel(p, repo, &["build", "--variant", "base-quick", "--dry-run"]);
    assert!(ok, "{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("[    would run] "))
        .map(str::to_owned)
}

fn append(path: &Path, text: &str) {
    let old = fs::read_to_string(path).unwrap_or_default();
    fs::write(path, format!("{old}{text}")).unwrap();
}

/// Apply `change`, check what a dry run says, then undo it (`undo`) and check that
/// nothing would run again.
fn expect_rerun(
    p: &Project,
    repo: &Path,
    what: &str,
    changed: &str,
    change: impl FnOnce(),
    undo: impl FnOnce(),
) {
    change();
    let why = would_run(p, repo);
    assert!(
        why.as_deref()
            .is_some_and(|w| w.starts_with("sysroot") && w.contains(changed)),
        "{what}: the sysroot must rerun, naming `{changed}`; the dry run said {why:?}"
    );
    undo();
    assert_eq!(would_run(p, repo), None, "{what}: undone, nothing must run");
}

/// Apply `change` and build: no stage and no emerge may run.
fn expect_no_rerun(p: &Project, repo: &Path, what: &str, change: impl FnOnce()) {
    change();
    let before = emerge_runs(p, "base-quick");
    assert_eq!(
        build(p, repo),
        Vec::<String>::new(),
        "{what}: nothing may run"
    );
    assert_eq!(
        emerge_runs(p, "base-quick"),
        before,
        "{what}: no emerge may run"
    );
}

/// The stand-in repository, plus: an eclass chain a package of the graph inherits, a
/// package the variant does not use with its own eclass, another profile, and 2,000
/// files in categories no variant uses (what a daily sync touches).
fn repo_copy(p: &Project) -> PathBuf {
    let repo = p.root.join("repo");
    common::copy_tree(&common::repo(), &repo);
    let ec = repo.join("eclass");
    fs::create_dir_all(&ec).unwrap();
    fs::write(
        ec.join("keel-chain.eclass"),
        "# keel test: inherited by sys-apps/coreutils\ninherit keel-chain-base\n",
    )
    .unwrap();
    fs::write(
        ec.join("keel-chain-base.eclass"),
        "# keel test: inherited through keel-chain\n_KEEL_CHAIN_BASE=1\n",
    )
    .unwrap();
    fs::write(
        ec.join("keel-unused.eclass"),
        "# keel test: no package of the graph inherits it\n",
    )
    .unwrap();
    let ebuild = repo.join("sys-apps/coreutils/coreutils-9.5.ebuild");
    let text = fs::read_to_string(&ebuild).unwrap();
    fs::write(
        &ebuild,
        text.replacen("EAPI=8\n", "EAPI=8\ninherit keel-chain\n", 1),
    )
    .unwrap();
    let unused = repo.join("app-misc/keel-unused");
    fs::create_dir_all(&unused).unwrap();
    fs::write(
        unused.join("keel-unused-1.ebuild"),
        "EAPI=8\ninherit keel-unused\nDESCRIPTION=\"unused\"\nSLOT=\"0\"\nKEYWORDS=\"amd64\"\nLICENSE=\"MIT\"\n",
    )
    .unwrap();
    fs::create_dir_all(repo.join("profiles/keel-other")).unwrap();
    fs::write(
        repo.join("profiles/keel-other/make.defaults"),
        "USE=\"x\"\n",
    )
    .unwrap();
    for c in 0..40 {
        for k in 0..25 {
            let d = repo.join(format!("gen-cat{c}/pkg{k}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("pkg{k}-1.ebuild")), "EAPI=8\nSLOT=\"0\"\n").unwrap();
            fs::write(d.join("metadata.xml"), "<pkgmetadata/>\n").unwrap();
        }
    }
    repo
}

#[test]
fn the_portage_stages_rerun_for_what_they_read_and_only_that() {
    let Some(p) = project() else { return };
    let repo = repo_copy(&p);
    build(&p, &repo);
    let reads =
        fs::read_to_string(p.root.join("build/work/base-quick/stamps/sysroot.reads")).unwrap();
    assert!(
        reads.contains("f eclass/keel-chain-base.eclass\n"),
        "{reads}"
    );
    assert!(!reads.contains("gen-cat"), "{reads}");
    assert!(!reads.contains("keel-unused"), "{reads}");
    // Nothing changed: nothing runs, no emerge.
    expect_no_rerun(&p, &repo, "no change", || {});

    // What the build does not read.
    expect_no_rerun(&p, &repo, "a package the variant does not use", || {
        append(
            &repo.join("app-misc/keel-unused/keel-unused-1.ebuild"),
            "# edited\n",
        );
        fs::write(
            repo.join("app-misc/keel-unused/keel-unused-2.ebuild"),
            "EAPI=8\nSLOT=\"0\"\n",
        )
        .unwrap();
    });
    expect_no_rerun(&p, &repo, "that package's eclass", || {
        append(&repo.join("eclass/keel-unused.eclass"), "# edited\n");
    });
    expect_no_rerun(&p, &repo, "another profile", || {
        append(
            &repo.join("profiles/keel-other/make.defaults"),
            "USE=\"y\"\n",
        );
    });
    expect_no_rerun(
        &p,
        &repo,
        "a daily sync: 2,000 files outside the graph",
        || {
            for c in 0..40 {
                for k in 0..25 {
                    let d = repo.join(format!("gen-cat{c}/pkg{k}"));
                    append(&d.join(format!("pkg{k}-1.ebuild")), "# synced\n");
                    append(&d.join("metadata.xml"), "<!-- synced -->\n");
                }
            }
        },
    );

    // What the build reads: each reruns the sysroot (and so every later stage).
    let coreutils = repo.join("sys-apps/coreutils");
    let new_version = coreutils.join("coreutils-9.6.ebuild");
    expect_rerun(
        &p,
        &repo,
        "a new version of a package in the graph",
        "repo:sys-apps/coreutils/",
        || {
            fs::copy(coreutils.join("coreutils-9.5.ebuild"), &new_version).unwrap();
        },
        || fs::remove_file(&new_version).unwrap(),
    );
    let ebuild = coreutils.join("coreutils-9.5.ebuild");
    let text = fs::read_to_string(&ebuild).unwrap();
    expect_rerun(
        &p,
        &repo,
        "a changed ebuild of a chosen version (say, a new dependency)",
        "repo:sys-apps/coreutils/coreutils-9.5.ebuild",
        || append(&ebuild, "RDEPEND+=\" app-misc/keel-new\"\n"),
        || fs::write(&ebuild, &text).unwrap(),
    );
    let files = repo.join("sys-apps/systemd/files");
    let had_files = files.exists();
    let patch = files.join("keel-test.patch");
    expect_rerun(
        &p,
        &repo,
        "a new files/ entry of a chosen package",
        "repo:sys-apps/systemd/files/",
        || {
            fs::create_dir_all(&files).unwrap();
            fs::write(&patch, "x\n").unwrap();
        },
        || {
            fs::remove_file(&patch).unwrap();
            if !had_files {
                fs::remove_dir(&files).unwrap();
            }
        },
    );
    // (coreutils has a Manifest: its generated version beside the source-built one fetches a
    // .deb; the change is undone by writing it back)
    let manifest = coreutils.join("Manifest");
    let had_manifest = fs::read(&manifest).ok();
    expect_rerun(
        &p,
        &repo,
        "a Manifest of a chosen package",
        "repo:sys-apps/coreutils/Manifest",
        || append(&manifest, "DIST x 1 BLAKE2B 00\n"),
        || match &had_manifest {
            Some(old) => fs::write(&manifest, old).unwrap(),
            None => fs::remove_file(&manifest).unwrap(),
        },
    );
    let base_eclass = repo.join("eclass/keel-chain-base.eclass");
    let eclass_text = fs::read_to_string(&base_eclass).unwrap();
    expect_rerun(
        &p,
        &repo,
        "an eclass in the inherit chain",
        "repo:eclass/keel-chain-base.eclass",
        || append(&base_eclass, "# edited\n"),
        || fs::write(&base_eclass, &eclass_text).unwrap(),
    );
    let defaults = repo.join("profiles/base/make.defaults");
    let defaults_text = fs::read_to_string(&defaults).unwrap();
    expect_rerun(
        &p,
        &repo,
        "a file of the variant's profile chain",
        "repo:profiles/base/make.defaults",
        || append(&defaults, "# edited\n"),
        || fs::write(&defaults, &defaults_text).unwrap(),
    );
    let mask = repo.join("profiles/package.mask");
    let mask_text = fs::read_to_string(&mask).unwrap();
    expect_rerun(
        &p,
        &repo,
        "the repository's package.mask",
        "repo:profiles/package.mask",
        || append(&mask, "app-misc/keel-unused\n"),
        || fs::write(&mask, &mask_text).unwrap(),
    );

    // One of them for real: the eclass edit reruns the sysroot with one emerge, and the
    // destination root with its own; then the build is up to date again.
    append(&base_eclass, "# edited for real\n");
    let ran = build(&p, &repo);
    assert_eq!(ran.first().map(String::as_str), Some("sysroot"), "{ran:?}");
    let emerge_lines = |stage: &str| {
        fs::read_to_string(
            p.root
                .join(format!("build/work/base-quick/logs/{stage}.log")),
        )
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("$ ") && l.contains("/emerge "))
        .count()
    };
    assert_eq!(emerge_lines("sysroot"), 1);
    assert!(emerge_lines("destroot") >= 1);
    assert_eq!(build(&p, &repo), Vec::<String>::new());
}
