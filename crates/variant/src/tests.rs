use super::*;
use std::fs;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("variants")).unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

fn load_err(files: &[(&str, &str)]) -> String {
    let d = project(files);
    Project::load(d.path()).unwrap_err().to_string()
}

#[test]
fn discovery_chain_settings_and_sets() {
    let d = project(&[
        (
            "variants/a/variant.toml",
            "description = \"root\"\netc-writable = [\"/etc/ssh\"]\n[image]\nformat = \"erofs\"\n",
        ),
        (
            "variants/a/install.packages",
            "sys-apps/systemd\nsys-fs/btrfs-progs\n",
        ),
        (
            "variants/b/variant.toml",
            "inherits = \"a\"\npython = false\netc-writable = [\"/etc/x\", \"/etc/ssh\"]\n",
        ),
        (
            "variants/b/install.packages",
            "-sys-fs/btrfs-progs\nnet-misc/openssh\n",
        ),
        ("variants/notavariant/readme", "x"),
        // A stray file in variants/ is not a variant, and no error.
        ("variants/README", "x"),
        ("overlay/etc/x", "x"),
        ("variants/b/overlay/etc/y", "y"),
        ("variants/a/tmpfiles.d/x.conf", ""),
    ]);
    let p = Project::load(d.path()).unwrap();
    assert_eq!(p.variants.keys().collect::<Vec<_>>(), ["a", "b"]);
    let r = p.resolve("b").unwrap();
    assert_eq!(r.chain, ["a", "b"]);
    assert_eq!(r.settings.description, "root");
    assert!(!r.settings.python);
    assert_eq!(r.settings.image_format, ImageFormat::Erofs);
    assert_eq!(r.settings.etc_writable, ["/etc/ssh", "/etc/x"]);
    let install: Vec<String> = r
        .set(SetKind::Install)
        .entries
        .iter()
        .map(|e| format!("{} {}", e.atom, e.loc))
        .collect();
    assert_eq!(
        install,
        [
            "sys-apps/systemd variants/a/install.packages:1",
            "net-misc/openssh variants/b/install.packages:2"
        ]
    );
    assert!(r.set(SetKind::Build).entries.is_empty());
    let layers: Vec<&str> = r.layers.iter().map(|l| l.rel.as_str()).collect();
    assert_eq!(
        layers,
        ["overlay", "variants/b/overlay", "variants/a/tmpfiles.d"]
    );
}

#[test]
fn missing_parent_names_file_and_line() {
    let e = load_err(&[(
        "variants/x/variant.toml",
        "description = \"d\"\ninherits = \"ghost\"\n",
    )]);
    assert_eq!(e, "variants/x/variant.toml:2: `inherits = \"ghost\"`: no variant `ghost` (no variants/ghost/variant.toml)");
}

#[test]
fn cycle_names_file_line_and_cycle() {
    let e = load_err(&[
        ("variants/a/variant.toml", "inherits = \"c\"\n"),
        ("variants/b/variant.toml", "inherits = \"a\"\n"),
        ("variants/c/variant.toml", "\ninherits = \"b\"\n"),
    ]);
    assert_eq!(
        e,
        "variants/b/variant.toml:1: inheritance cycle: a -> c -> b -> a"
    );
    let e = load_err(&[("variants/s/variant.toml", "inherits = \"s\"\n")]);
    assert_eq!(e, "variants/s/variant.toml:1: inheritance cycle: s -> s");
}

#[test]
fn schema_errors_propagate_with_path() {
    let e = load_err(&[("variants/a/variant.toml", "\nbogus = true\n")]);
    assert!(
        e.starts_with("variants/a/variant.toml:2: unknown field `bogus`"),
        "{e}"
    );
    let e = load_err(&[
        ("variants/a/variant.toml", ""),
        ("variants/a/build.packages", "ok/atom\n\n!!nonsense\n"),
    ]);
    assert!(
        e.starts_with("variants/a/build.packages:3: invalid atom `!!nonsense`"),
        "{e}"
    );
    let e = load_err(&[("variants/Bad/variant.toml", "")]);
    assert!(e.contains("`Bad` is not a valid variant name"), "{e}");
}

#[test]
fn removal_of_unknown_atom_fails_resolution() {
    let d = project(&[
        ("variants/a/variant.toml", ""),
        ("variants/a/install.packages", "sys-apps/systemd\n"),
        ("variants/b/variant.toml", "inherits = \"a\"\n"),
        ("variants/b/install.packages", "-sys-apps/openrc\n"),
    ]);
    let e = Project::load(d.path())
        .unwrap()
        .resolve("b")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("variants/b/install.packages:1: `-sys-apps/openrc` removes nothing"),
        "{e}"
    );
}

#[test]
fn unknown_variant_lists_known_ones() {
    let d = project(&[("variants/a/variant.toml", "")]);
    let e = Project::load(d.path())
        .unwrap()
        .resolve("zz")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("no variant `zz`") && e.ends_with(": a"),
        "{e}"
    );
}

#[test]
fn debian_needs_a_suite() {
    let d = project(&[("variants/d/variant.toml", "distribution = \"debian\"\n")]);
    let e = Project::load(d.path())
        .unwrap()
        .resolve("d")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "variants/d/variant.toml: `distribution = \"debian\"` needs a `suite` (e.g. \"bookworm\")"
    );
}

/// Issue 17, item 7: a set file that is a link to a host file (here a stand-in for
/// /etc/shadow) is refused naming the link; nothing of the file's content is shown.
#[test]
fn a_project_file_linked_out_of_the_project_is_refused_without_its_content() {
    let outside = tempfile::tempdir().unwrap();
    let shadow = outside.path().join("shadow");
    fs::write(&shadow, "root:$6$secrethash:19000:0:99999:7:::\n").unwrap();
    let d = project(&[("variants/base/variant.toml", "description = \"b\"\n")]);
    let link = d.path().join("variants/base/install.packages");
    std::os::unix::fs::symlink(&shadow, &link).unwrap();
    let e = Project::load(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("/variants/base/install.packages is a symlink to")
            && e.contains(&shadow.display().to_string()),
        "{e}"
    );
    assert!(!e.contains("secrethash"), "{e}");
    // The same through `../`, and for variant.toml itself.
    fs::remove_file(&link).unwrap();
    let toml = d.path().join("variants/base/variant.toml");
    fs::remove_file(&toml).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../../dev/zero", &toml).unwrap();
    let e = Project::load(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("/variants/base/variant.toml is a symlink to"),
        "{e}"
    );
    // A link inside the project is fine.
    fs::remove_file(&toml).unwrap();
    fs::write(
        d.path().join("variants/shared.toml"),
        "description = \"s\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../shared.toml", &toml).unwrap();
    let p = Project::load(d.path()).unwrap();
    assert_eq!(p.resolve("base").unwrap().settings.description, "s");
    // A layer directory linked out of the project.
    std::os::unix::fs::symlink(outside.path(), d.path().join("variants/base/overlay")).unwrap();
    let e = p.resolve("base").unwrap_err().to_string();
    assert!(e.contains("/variants/base/overlay is a symlink to"), "{e}");
}

/// Issue 17, item 8: no unbounded reads of project files; a FIFO does not block.
#[test]
fn project_files_have_a_size_limit_and_fifos_do_not_block() {
    let d = project(&[("variants/base/variant.toml", "description = \"b\"\n")]);
    let big = d.path().join("variants/base/install.packages");
    let line = "sys-apps/baselayout\n";
    fs::write(
        &big,
        line.repeat((MAX_PROJECT_FILE as usize) / line.len() + 1),
    )
    .unwrap();
    let e = Project::load(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("install.packages")
            && e.contains("more than the limit of 1048576 bytes for a package set file"),
        "{e}"
    );
    fs::remove_file(&big).unwrap();
    let toml = d.path().join("variants/base/variant.toml");
    fs::remove_file(&toml).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &toml,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let root = d.path().to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Project::load(&root).map(|_| ()).map_err(|e| e.to_string()));
    });
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("loading a project with a FIFO for variant.toml must not block")
        .unwrap_err();
    assert!(
        e.contains("variant.toml: a FIFO, not a regular file"),
        "{e}"
    );
}
