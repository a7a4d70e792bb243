//! Edits as data against the real systemd 252 files: the `var.conf` edit (`/var/log` as a
//! `v` subvolume) and the `provision.conf` drop, recorded as snapshots and checked with the
//! real `systemd-tmpfiles --cat-config`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tmpfiles::apply;
use tmpfiles::build::{self, Written};

fn systemd_file(name: &str) -> Option<Vec<u8>> {
    let p = Path::new("/usr/lib/tmpfiles.d").join(name);
    match std::fs::read(&p) {
        Ok(c) => Some(c),
        Err(_) => {
            testutil::skip_or_fail(&format!(
                "{} (from Debian's systemd package) is missing",
                p.display()
            ));
            None
        }
    }
}

/// The tree under `/etc/tmpfiles.d` as text: each entry, a link's target or the content.
fn render(root: &Path) -> String {
    let dir = root.join("etc/tmpfiles.d");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let mut out = String::new();
    for n in names {
        let p = dir.join(&n);
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            out.push_str(&format!(
                "== /etc/tmpfiles.d/{} -> {}\n",
                n.to_string_lossy(),
                std::fs::read_link(&p).unwrap().display()
            ));
        } else {
            out.push_str(&format!(
                "== /etc/tmpfiles.d/{}\n{}",
                n.to_string_lossy(),
                std::fs::read_to_string(&p).unwrap()
            ));
        }
    }
    out
}

fn layer(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (n, c) in files {
        std::fs::write(dir.join(n), c).unwrap();
    }
}

#[test]
fn var_conf_edit_and_provision_drop() {
    let (Some(var), Some(prov)) = (systemd_file("var.conf"), systemd_file("provision.conf")) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    std::fs::create_dir_all(r.join("usr/lib/tmpfiles.d")).unwrap();
    std::fs::write(r.join("usr/lib/tmpfiles.d/var.conf"), &var).unwrap();
    std::fs::write(r.join("usr/lib/tmpfiles.d/provision.conf"), &prov).unwrap();
    let shared = t.path().join("shared");
    let variant = t.path().join("variant");
    layer(
        &shared,
        &[
            (
                "var.conf.edit",
                "# /var/log becomes a btrfs subvolume\nset /var/log type=v\n",
            ),
            ("provision.conf.edit", "drop\n"),
        ],
    );
    layer(
        &variant,
        &[("keel.conf", "d /var/lib/keel 0700 root root -\n")],
    );
    let root = apply::open_root(&r).unwrap();
    let written = build::write_layers(&root, t.path(), &[shared, variant]).unwrap();
    assert_eq!(written.len(), 3, "{written:?}");
    assert!(written.contains(&Written::Masked {
        name: "provision.conf".into()
    }));
    insta::assert_snapshot!("var_conf_edit_provision_drop", render(&r));

    // The edited copy differs from the packaged file in exactly the one line.
    let edited = std::fs::read_to_string(r.join("etc/tmpfiles.d/var.conf")).unwrap();
    let packaged = String::from_utf8(var).unwrap();
    let changed: Vec<(&str, &str)> = packaged
        .lines()
        .zip(edited.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [("d /var/log 0755 - - -", "v /var/log 0755 - - -")]
    );
    assert_eq!(packaged.lines().count(), edited.lines().count());

    // The real tool sees the same effective configuration.
    if testutil::require("systemd-tmpfiles") {
        let out = exec::Cmd::new("systemd-tmpfiles")
            .arg(format!("--root={}", r.display()))
            .arg("--cat-config")
            .output()
            .unwrap()
            .stdout;
        assert_eq!(out, apply::cat(&root).unwrap());
        assert!(out.contains("\nv /var/log 0755 - - -\n") && !out.contains("\nd /var/log "));
        assert!(!out.contains("/usr/lib/tmpfiles.d/provision.conf"));
    }
}

#[test]
fn edit_matching_nothing_names_file_and_line() {
    let Some(var) = systemd_file("var.conf") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("root");
    std::fs::create_dir_all(r.join("usr/lib/tmpfiles.d")).unwrap();
    std::fs::write(r.join("usr/lib/tmpfiles.d/var.conf"), &var).unwrap();
    let l = t.path().join("layer");
    layer(
        &l,
        &[
            (
                "var.conf.edit",
                "set /var/log type=v\n\nset /var/mail type=v\n",
            ),
            ("other.conf", "d /x\n"),
        ],
    );
    let root = apply::open_root(&r).unwrap();
    let e = build::write_layers(&root, t.path(), std::slice::from_ref(&l))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}:3: `set /var/mail` matches no line of var.conf (did the package change?)",
            l.join("var.conf.edit").display()
        )
    );
    // Nothing was written.
    assert!(!r.join("etc/tmpfiles.d").exists());
    layer(
        &l,
        &[
            ("var.conf.edit", "set /var/log type=v\n"),
            ("gone.conf.edit", "drop\n"),
        ],
    );
    let e = build::write_layers(&root, t.path(), std::slice::from_ref(&l))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gone.conf.edit:1: edits `gone.conf`, which no package"),
        "{e}"
    );
}

#[test]
fn build_time_creation_and_runtime_report() {
    let Some(var) = systemd_file("var.conf") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("usr/lib/tmpfiles.d")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nutmp:x:43:\n").unwrap();
    std::fs::write(r.join("usr/lib/tmpfiles.d/var.conf"), &var).unwrap();
    std::fs::write(
        r.join("usr/lib/tmpfiles.d/keel-test.conf"),
        "d /usr/lib/keel 0750 root root -\na /usr/lib/keel - - - - u:4242:rwx,d:g:4343:r\nd /var/lib/acl-later 0755\na /var/lib/acl-later - - - - u:4242:r\nw /usr/lib/keel/stamp - - - - x\nL /etc/keel-link - - - - ../usr/lib/keel\nd /etc/writable 0755\nr! /usr/lib/keel/old\nd /opt/cache 0755 - - 10d\n",
    )
    .unwrap();
    let root = apply::open_root(r).unwrap();
    let mutable: Vec<String> = [
        "/var",
        "/run",
        "/tmp",
        "/home",
        "/srv",
        "/root",
        "/etc/writable",
    ]
    .map(String::from)
    .to_vec();
    let rep = build::create_at_build_time(&root, &mutable, &apply::host_facts()).unwrap();
    assert_eq!(rep.apply.exit_code(), 0, "{:?}", rep.apply);
    assert!(r.join("usr/lib/keel").is_dir());
    assert_eq!(
        std::fs::read_link(r.join("etc/keel-link")).unwrap(),
        Path::new("../usr/lib/keel")
    );
    assert!(
        !r.join("var/log").exists(),
        "mutable prefixes are left for boot"
    );
    assert!(!r.join("etc/writable").exists());
    assert!(!r.join("var/lib/acl-later").exists());
    // The ACL is applied at build time: the mask (rwx) shows in the group bits.
    let acl = |name: &str| {
        let mut b = vec![0u8; 256];
        let n = rustix::fs::getxattr(r.join("usr/lib/keel"), name, &mut b).unwrap();
        tmpfiles::acl::Acl::decode(&b[..n]).unwrap().to_string()
    };
    assert_eq!(
        acl("system.posix_acl_access"),
        "u::rwx,u:4242:rwx,g::r-x,m::rwx,o::---"
    );
    assert_eq!(
        acl("system.posix_acl_default"),
        "u::rwx,g::rwx,g:4343:r--,m::r--,o::---"
    );
    assert_eq!(
        std::fs::metadata(r.join("usr/lib/keel"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o770
    );
    let problems: Vec<String> = rep
        .runtime
        .iter()
        .map(|p| format!("{} {}", p.path, p.reason))
        .collect();
    assert_eq!(
        problems,
        [
            "/usr/lib/keel sets its ACL again at every boot, which fails on the read-only root",
            "/usr/lib/keel/stamp writes into the read-only root at every boot",
            "/usr/lib/keel/old removes from the read-only root at boot (--remove)",
            "/opt/cache ages out contents, which cannot be deleted on the read-only root",
        ]
    );
}

/// Issue 17: a layer file linked out of the project is refused naming the link, and
/// nothing of it is read or written into the root.
#[test]
fn a_layer_file_linked_out_of_the_project_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let project = t.path().join("p");
    let l = project.join("tmpfiles.d");
    std::fs::create_dir_all(&l).unwrap();
    std::fs::write(t.path().join("secret"), "d /SECRET\n").unwrap();
    std::os::unix::fs::symlink(t.path().join("secret"), l.join("x.conf")).unwrap();
    let r = t.path().join("root");
    std::fs::create_dir_all(&r).unwrap();
    let root = apply::open_root(&r).unwrap();
    let e = build::write_layers(&root, &project, std::slice::from_ref(&l))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/tmpfiles.d/x.conf is a symlink to"), "{e}");
    assert!(!e.contains("SECRET"), "{e}");
    assert!(!r.join("etc/tmpfiles.d").exists());
}
