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

/// The subcommands `keel --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let o = keel(&testutil::project_root(), &["--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let help = stdout(&o);
    let names: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 10, "{help}");
    names
}

/// Whether an optional shell is here (fish and zsh are not CI packages: checked locally).
fn have(program: &str) -> bool {
    let here = testutil::find(program).is_some();
    if !here {
        eprintln!("note: `{program}` is not installed; its syntax check is skipped");
    }
    here
}

/// `keel completions SHELL` for bash, zsh and fish: a script naming every subcommand that the
/// shell's own parser accepts (bash always; zsh and fish where installed), and bash's
/// completes `keel pl` to `plan`.
#[test]
fn completions_name_every_subcommand_and_parse() {
    let root = testutil::project_root();
    let subs = subcommands();
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [
        ("bash", Some(&["bash", "-n"][..])),
        ("zsh", have("zsh").then_some(&["zsh", "-n"][..])),
        (
            "fish",
            have("fish").then_some(&["fish", "--no-execute"][..]),
        ),
    ] {
        let o = keel(&root, &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        for s in &subs {
            assert!(
                script.contains(s.as_str()),
                "{shell}: no `{s}` in\n{script}"
            );
        }
        let file = dir.path().join(shell);
        fs::write(&file, &script).unwrap();
        if let Some([program, args @ ..]) = check {
            let o = Command::new(program)
                .args(args)
                .arg(&file)
                .output()
                .unwrap();
            assert!(o.status.success(), "{program} {args:?}: {}", stderr(&o));
        }
    }
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(keel pl); COMP_CWORD=1; _keel keel pl keel; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            dir.path().join("bash").display()
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "plan\n", "{}", stderr(&o));

    let o = keel(&root, &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&o)
    );
}

/// `keel man` prints keel(1), which lists every subcommand; `keel man --out DIR` writes it
/// and a page for each subcommand (nested ones too), each of which groff renders without a
/// warning.
#[test]
fn man_pages_name_every_subcommand_and_render() {
    let root = testutil::project_root();
    let subs = subcommands();
    let o = keel(&root, &["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(page.contains("\n.TH keel 1 "), "{page}");
    for s in &subs {
        assert!(
            page.contains(&format!("keel\\-{s}(1)")),
            "no `{s}` in\n{page}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let o = keel(&root, &["man", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut written: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(stdout(&o).lines().count(), written.len(), "{}", stdout(&o));
    let mut want: Vec<String> = subs.iter().map(|s| format!("keel-{s}.1")).collect();
    want.extend(["keel.1", "keel-atom-check.1", "keel-tmpfiles-apply.1"].map(String::from));
    for w in &want {
        assert!(written.contains(w), "no {w} in {written:?}");
    }
    assert!(!written.iter().any(|w| w.contains("help")), "{written:?}");
    assert_eq!(fs::read_to_string(out.join("keel.1")).unwrap(), page);

    if testutil::require("groff") {
        for w in &written {
            let o = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(out.join(w))
                .output()
                .unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "groff on {w}: {}",
                stderr(&o)
            );
        }
    }

    let o = keel(&root, &["man", "--out", "/dev/null/man"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/dev/null/man"), "{}", stderr(&o));
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The words of each line of a text output: padding is not content.
fn words(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn variants_json_is_the_text_as_an_array() {
    let root = testutil::project_root();
    let v = json(&keel(&root, &["variants", "--json"]));
    let text = stdout(&keel(&root, &["variants"]));
    let from_json: String = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let chain: Vec<&str> = o["chain"].as_array().unwrap().iter().map(str_of).collect();
            format!("{} {}\n", str_of(&o["name"]), chain.join(" -> "))
        })
        .collect();
    assert_eq!(words(&from_json), words(&text));
    insta::assert_snapshot!(
        "variants-json",
        stdout(&keel(&root, &["variants", "--json"]))
    );
}

/// `keel plan --json` of every shipped variant says what the text says: the text, written
/// again from the JSON, has the same words on every line.
#[test]
fn plan_json_is_the_text_as_an_object() {
    let root = testutil::project_root();
    let project = variant::Project::load(&root).unwrap();
    for name in project.variants.keys() {
        let p = json(&keel(&root, &["plan", "--variant", name, "--json"]));
        let text = stdout(&keel(&root, &["plan", "--variant", name]));
        let mut t = format!(
            "variant: {}\nchain: {}\ndistribution: {}",
            str_of(&p["variant"]),
            p["chain"]
                .as_array()
                .unwrap()
                .iter()
                .map(str_of)
                .collect::<Vec<_>>()
                .join(" -> "),
            str_of(&p["distribution"])
        );
        if let Some(suite) = p["suite"].as_str() {
            t += &format!(" ({suite})");
        }
        t += "\n";
        if let Some(profile) = p["profile"].as_str() {
            t += &format!("profile: {profile}\n");
        }
        t += &format!("image: {}\n", str_of(&p["image"]));
        t += &match &p["selinux"] {
            serde_json::Value::Null => "selinux: off\n".to_owned(),
            s => format!("selinux: {} ({})\n", str_of(&s["mode"]), str_of(&s["type"])),
        };
        t += &format!(
            "python: {}\n",
            if p["python"].as_bool().unwrap() {
                "allowed"
            } else {
                "forbidden"
            }
        );
        // The text's set order.
        for set in [
            "build.packages",
            "install.packages",
            "host-tools.packages",
            "installonly.packages",
        ] {
            let atoms = p["sets"][set].as_array().unwrap();
            t += &format!("set {set} ({} atoms):\n", atoms.len());
            for a in atoms {
                t += &format!(
                    "{} {}:{}\n",
                    str_of(&a["atom"]),
                    str_of(&a["file"]),
                    a["line"]
                );
            }
        }
        assert_eq!(p["sets"].as_object().unwrap().len(), 4, "{p}");
        t += "layers:\n";
        for l in p["layers"].as_array().unwrap() {
            t += &format!("{} {}\n", str_of(&l["kind"]), str_of(&l["path"]));
        }
        t += "stages:\n";
        for s in p["stages"].as_array().unwrap() {
            t += &format!("{} {}\n", str_of(&s["name"]), str_of(&s["what"]));
        }
        assert_eq!(words(&t), words(&text), "{name}:\n{t}\n---\n{text}");
    }
    let selinux = stdout(&keel(&root, &["plan", "--variant", "selinux", "--json"]));
    insta::assert_snapshot!(
        "plan-json-selinux",
        selinux.replace(root.to_str().unwrap(), "[project]")
    );
}

/// `keel manifest --json` of a tree with every kind of line: each entry is its text line's
/// columns (written back, the same line); names that need escapes stay escaped.
#[test]
fn manifest_json_is_the_text_as_entries() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("root");
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(r.join("etc/a file"), "hello\n").unwrap();
    fs::write(r.join("etc/tab\there"), "").unwrap();
    std::os::unix::fs::symlink("../etc/a file", r.join("link")).unwrap();
    mkfifo(&r.join("fifo"));
    for (p, mode) in [
        ("", 0o755),
        ("etc", 0o750),
        ("etc/a file", 0o4755),
        ("etc/tab\there", 0o600),
        ("fifo", 0o640),
    ] {
        fs::set_permissions(r.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    let root = r.to_str().unwrap();
    let m = json(&keel(d.path(), &["manifest", root, "--json"]));
    let text = stdout(&keel(d.path(), &["manifest", root]));
    let entries = m["entries"].as_array().unwrap();
    assert_eq!(m.as_object().unwrap().len(), 1, "{m}");
    let back: String = entries
        .iter()
        .map(|e| {
            let (what, hash) = match str_of(&e["type"]) {
                "f" => (e["size"].to_string(), str_of(&e["sha256"]).to_owned()),
                "l" => (format!("-> {}", str_of(&e["target"])), "-".into()),
                "c" | "b" => (format!("{},{}", e["device"][0], e["device"][1]), "-".into()),
                _ => ("-".into(), "-".into()),
            };
            format!(
                "{}\t{}\t{}\t{}:{}\t{what}\t{hash}\t{}\n",
                str_of(&e["path"]),
                str_of(&e["type"]),
                str_of(&e["mode"]),
                e["uid"],
                e["gid"],
                e["label"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(back, text);
    // Stable apart from the owner, whoever runs the test.
    let (uid, gid) = (&entries[0]["uid"], &entries[0]["gid"]);
    insta::assert_snapshot!(
        "manifest-json",
        stdout(&keel(d.path(), &["manifest", root, "--json"]))
            .replace(&format!("\"uid\": {uid},"), "\"uid\": 0,")
            .replace(&format!("\"gid\": {gid},"), "\"gid\": 0,")
    );

    let o = keel(d.path(), &["manifest", "--json", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/x"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

fn mkfifo(path: &Path) {
    let o = Command::new("mkfifo").arg(path).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The exit codes the README's "Exit codes" section documents, for the commands that need
/// no build.
#[test]
fn exit_codes_are_as_documented() {
    let root = testutil::project_root();
    let code = |args: &[&str]| keel(&root, args).status.code();
    // Usage errors are clap's: 2.
    assert_eq!(code(&[]), Some(2));
    assert_eq!(code(&["--bogus"]), Some(2));
    assert_eq!(code(&["plan"]), Some(2));
    assert_eq!(code(&["completions", "tcsh"]), Some(2));
    assert_eq!(code(&["--help"]), Some(0));
    assert_eq!(code(&["--version"]), Some(0));
    // An error: 1.
    assert_eq!(code(&["plan", "--variant", "nope"]), Some(1));
    assert_eq!(code(&["atom", "check", "sys-apps/ok", "=bad"]), Some(1));
    // tmpfiles apply: systemd-tmpfiles' codes, 65 for a bad line, 73 for a failed one.
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("etc/tmpfiles.d");
    fs::create_dir_all(&conf).unwrap();
    fs::write(d.path().join("file"), "").unwrap();
    let apply = |line: &str| {
        fs::write(conf.join("x.conf"), line).unwrap();
        let o = keel(
            &root,
            &["tmpfiles", "apply", "--root", d.path().to_str().unwrap()],
        );
        (o.status.code(), stderr(&o))
    };
    let (c, err) = apply("d /a 0755 no-such-user - -\nd /valid 0755 - - -\n");
    assert_eq!(c, Some(65), "{err}");
    assert!(
        d.path().join("valid").is_dir(),
        "the valid line was not applied"
    );
    let (c, err) = apply("f /file/below 0644 - - -\n");
    assert_eq!(c, Some(73), "{err}");
    let (c, err) = apply("d /a 0755 - - -\n");
    assert_eq!(c, Some(0), "{err}");
}

/// A reader that closes the pipe early (`keel manifest IMAGE | head`) ends the output
/// quietly with exit 0; `print!` panicked there (exit 101).
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("root");
    fs::create_dir_all(&r).unwrap();
    // Well past a pipe's 64 KiB buffer.
    for i in 0..2000 {
        fs::write(r.join(format!("file-{i:04}")), "").unwrap();
    }
    for args in [&["manifest"][..], &["manifest", "--json"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .arg(&r)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
}

/// `keel diff` on manifests: the differences field by field, nothing for equal ones, and
/// a clear error naming the file and line for a bad one.
#[test]
fn diff_of_manifests() {
    let d = tempfile::tempdir().unwrap();
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let a = d.path().join("a.txt");
    let b = d.path().join("b.txt");
    fs::write(
        &a,
        format!("/\td\t0755\t0:0\t-\t-\t-\n/etc/motd\tf\t0644\t0:0\t0\t{sha}\tetc_t\n"),
    )
    .unwrap();
    fs::write(
        &b,
        format!("/\td\t0755\t0:0\t-\t-\t-\n/etc/motd\tf\t0600\t0:0\t0\t{sha}\tshadow_t\n/etc/new\tl\t0777\t0:0\t-> motd\t-\t-\n"),
    )
    .unwrap();
    let root = testutil::project_root();
    let o = keel(&root, &["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "files:\n  ~ /etc/motd (mode, label)\n  + /etc/new (symlink)\n"
    );
    let o = keel(&root, &["diff", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    fs::write(&b, "/\td\t0755\n").unwrap();
    let o = keel(&root, &["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:1: not a manifest line", b.display())),
        "{err}"
    );
    let o = keel(&root, &["diff", "/nonexistent/x", a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x: No such file"));
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

/// `--image-version` must be a version systemd-sysupdate and file names take; a bad one is
/// refused, naming it, before any work.
#[test]
fn a_bad_image_version_is_refused_before_any_work() {
    let d = copy_of_shipped_variants();
    for bad in ["../x", "1 2", ".1", ""] {
        let o = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("-C")
            .arg(d.path())
            .args(["build", "--variant", "debian-base", "--image-version", bad])
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(
            !o.status.success() && err.contains(&format!("--image-version `{bad}`")),
            "{bad}: {err}"
        );
        assert!(!d.path().join("build/debian-base").exists());
    }
}
