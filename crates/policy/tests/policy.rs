//! The real reference policy (Debian 12's refpolicy sources through gentoo-mini's
//! sec-policy ebuilds and real emerge), the project's patches and local modules, and
//! labels compared with setfiles path by path.

mod common;

use exec::Cmd;
use std::fs;
use std::path::Path;

fn policy33(root: &Path) -> std::path::PathBuf {
    policy::binary_policy(root, "mcs").unwrap()
}

fn fc(root: &Path) -> std::path::PathBuf {
    root.join("etc/selinux/mcs/contexts/files/file_contexts")
}

#[test]
fn policy_compiles_with_all_patches_and_setfiles_accepts_its_file_contexts() {
    let Some(root) = common::policy_root() else {
        return;
    };
    let patches = common::project_patches();
    assert!(patches.len() >= 2, "{patches:?}");
    // every patch applied, in order (the emerge log of the fixture names each one)
    let log = fs::read_to_string(root.parent().unwrap().join("portage/logs/emerge.log"))
        .unwrap_or_default();
    let build_logs: String = fs::read_dir(root.parent().unwrap().join("portage/logs"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sec-policy:selinux-base-2")
        })
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect::<String>()
        + &log;
    let mut at = 0;
    for p in &patches {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let pos = build_logs[at..]
            .find(&format!("Applying {name}"))
            .unwrap_or_else(|| panic!("{name} not applied (or not in order)"));
        at += pos;
    }
    // the duplicate rspamd line is gone: setfiles -c accepts the file contexts
    Cmd::new("setfiles")
        .arg("-c")
        .arg(policy33(root))
        .arg(fc(root))
        .run()
        .unwrap();
    let text = fs::read_to_string(fc(root)).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("/var/log/rspamd(/.*)?"))
            .count(),
        1
    );
    // the store: distribution modules at 100, Keel's at 400
    for m in [
        "100/base",
        "100/container",
        "400/keel_systemd",
        "400/keel_journald",
        "400/keel_container_mcs",
    ] {
        assert!(
            root.join("var/lib/selinux/mcs/active/modules")
                .join(m)
                .is_dir(),
            "{m} not in the store"
        );
    }
}

fn sesearch(root: &Path, args: &[&str]) -> String {
    let out = Cmd::new("sesearch")
        .args(args)
        .arg(policy33(root))
        .output()
        .unwrap()
        .stdout;
    eprintln!("sesearch {}:\n{out}", args.join(" "));
    out
}

#[test]
fn sesearch_shows_the_rules_of_each_group() {
    let Some(root) = common::policy_root() else {
        return;
    };
    // alternate namespaces: systemd mounts on service paths and mounts tmpfs
    let ns = sesearch(
        root,
        &[
            "-A", "-s", "init_t", "-t", "etc_t", "-c", "dir", "-p", "mounton",
        ],
    );
    assert!(
        ns.contains("allow init_t non_security_file_type:dir"),
        "{ns}"
    );
    let ns = sesearch(
        root,
        &[
            "-A",
            "-s",
            "init_t",
            "-t",
            "tmpfs_t",
            "-c",
            "filesystem",
            "-p",
            "mount",
        ],
    );
    assert!(ns.contains("allow init_t tmpfs_t:filesystem"), "{ns}");
    let ns = sesearch(
        root,
        &[
            "-A", "-s", "init_t", "-t", "etc_t", "-c", "file", "-p", "mounton",
        ],
    );
    assert!(
        ns.lines()
            .any(|l| l == "allow init_t non_security_file_type:file { getattr mounton };"),
        "{ns}"
    );
    // journald reads the /proc entries of senders of any domain
    let j = sesearch(
        root,
        &[
            "-A",
            "-s",
            "syslogd_t",
            "-t",
            "sshd_t",
            "-c",
            "file",
            "-p",
            "read",
        ],
    );
    assert!(j.contains("allow syslogd_t domain:file"), "{j}");
    let j = sesearch(
        root,
        &[
            "-A",
            "-s",
            "syslogd_t",
            "-t",
            "sshd_t",
            "-c",
            "process",
            "-p",
            "getattr",
        ],
    );
    assert!(
        j.lines()
            .any(|l| l.starts_with("allow syslogd_t domain:process {") && l.contains(" getattr ")),
        "{j}"
    );
    // systemd creates directories of any type before services start
    let d = sesearch(
        root,
        &[
            "-A",
            "-s",
            "init_t",
            "-t",
            "var_lib_t",
            "-c",
            "dir",
            "-p",
            "create",
        ],
    );
    assert!(d.contains("allow init_t non_security_file_type:dir"), "{d}");
    // systemd-tmpfiles: the boolean is on, and (patch 0002) covers symlinks
    let b = Cmd::new("seinfo")
        .args(["-b", "systemd_tmpfiles_manage_all", "-x"])
        .arg(policy33(root))
        .output()
        .unwrap()
        .stdout;
    assert!(b.contains("bool systemd_tmpfiles_manage_all true;"), "{b}");
    let t = sesearch(
        root,
        &[
            "-A",
            "-s",
            "systemd_tmpfiles_t",
            "-t",
            "etc_t",
            "-c",
            "lnk_file",
            "-p",
            "relabelfrom",
        ],
    );
    assert!(t.contains("[ systemd_tmpfiles_manage_all ]:True"), "{t}");
    // containers: container_t exists and is MCS-constrained
    let a = Cmd::new("seinfo")
        .args(["-a", "mcs_constrained_type", "-x"])
        .arg(policy33(root))
        .output()
        .unwrap()
        .stdout;
    assert!(a.lines().any(|l| l.trim() == "container_t"), "{a}");
}

#[test]
fn labels_equal_setfiles_path_by_path() {
    let Some(root) = common::policy_root() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("keel");
    let b = tmp.path().join("setfiles");
    let n = common::generate_tree(&fc(root), &a);
    common::generate_tree(&fc(root), &b);
    assert!(n > 2000, "generated only {n} paths");
    // the tree carries the policy at the usual place, as an image does
    let report = {
        let fcs = policy::fc::FileContexts::load(&fc(root)).unwrap();
        policy::validate(&policy33(root), &fcs, &tmp.path().join("v.log")).unwrap();
        policy::label_with(&a, &fcs, policy33(root), fc(root)).unwrap()
    };
    Cmd::new("setfiles")
        .arg("-r")
        .arg(&b)
        .arg("-c")
        .arg(policy33(root))
        .arg(fc(root))
        .arg(&b)
        .run()
        .unwrap();
    let (la, lb) = (common::labels(&a), common::labels(&b));
    assert_eq!(la.len(), lb.len());
    let diffs: Vec<String> = la
        .iter()
        .filter(|(p, l)| lb.get(*p) != Some(l))
        .map(|(p, l)| format!("{p}: keel {l:?} setfiles {:?}", lb.get(p)))
        .collect();
    eprintln!(
        "{n} paths compared; report: set {} unchanged {} unlabelled {}",
        report.set,
        report.unchanged,
        report.unlabelled.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(report.paths as usize, n);
    // the same through setfiles -n -v (what it would do) on an unlabelled copy
    let c = tmp.path().join("dry");
    common::generate_tree(&fc(root), &c);
    let out = Cmd::new("setfiles")
        .args(["-n", "-v", "-r"])
        .arg(&c)
        .arg(fc(root))
        .arg(&c)
        .output()
        .unwrap();
    let prefix = format!("Would relabel {}", c.display());
    let mut would = 0;
    for l in out.stdout.lines().chain(out.stderr.lines()) {
        if let Some(rest) = l.strip_prefix(&prefix) {
            let (p, ctx) = rest.rsplit_once(" to ").unwrap();
            let p = p.rsplit_once(" from ").unwrap().0;
            let p = if p.is_empty() { "/" } else { p };
            assert_eq!(la.get(p).cloned().flatten().as_deref(), Some(ctx), "{p}");
            would += 1;
        }
    }
    assert_eq!(would, la.values().filter(|l| l.is_some()).count());
    // symlinks were labelled themselves, never followed out of the tree
    assert!(la["/etc/escape-link"].is_some());
    // the labels survive a squashfs image (what the image stage makes)
    if testutil::require("mksquashfs") {
        let img = tmp.path().join("img.squashfs");
        Cmd::new("mksquashfs")
            .arg(&a)
            .arg(&img)
            .args(["-xattrs", "-noappend", "-quiet", "-no-progress"])
            .run()
            .unwrap();
        let x = tmp.path().join("x");
        Cmd::new("unsquashfs")
            .args(["-xattrs", "-quiet", "-no-progress", "-d"])
            .arg(&x)
            .arg(&img)
            .run()
            .unwrap();
        let lx = common::labels(&x);
        for (p, l) in &la {
            if p != "/" {
                assert_eq!(lx.get(p), Some(l), "{p} after squashfs");
            }
        }
    }
}

#[test]
fn label_refuses_an_invalid_context() {
    let Some(root) = common::policy_root() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("root");
    Cmd::new("cp")
        .args(["-a"])
        .arg(root.join("etc"))
        .arg(r.join("etc"))
        .run()
        .ok();
    fs::create_dir_all(&r).unwrap();
    Cmd::new("cp")
        .arg("-a")
        .arg(root.join("etc"))
        .arg(&r)
        .run()
        .unwrap();
    let local = r.join("etc/selinux/mcs/contexts/files/file_contexts.local");
    fs::write(
        &local,
        "/keel-bad(/.*)?\tsystem_u:object_r:keel_no_such_t:s0\n",
    )
    .unwrap();
    let e = policy::label(&r, "mcs", &tmp.path().join("l.log"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("file_contexts.local") && e.contains("keel_no_such_t"),
        "{e}"
    );
}

#[test]
fn config_says_enforcing_mcs() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("etc/selinux")).unwrap();
    fs::write(
        tmp.path().join("etc/selinux/config"),
        "SELINUX=permissive\nSELINUXTYPE=strict\n",
    )
    .unwrap();
    policy::write_config(tmp.path(), "mcs", policy::Mode::Enforcing).unwrap();
    let text = fs::read_to_string(tmp.path().join("etc/selinux/config")).unwrap();
    let kv: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(kv, ["SELINUX=enforcing", "SELINUXTYPE=mcs"]);
}

struct FakeHost;
impl policy::Probe for FakeHost {
    fn exists(&self, p: &Path) -> bool {
        p == Path::new("/sys/fs/selinux/enforce")
    }
    fn mounts(&self) -> String {
        "proc /proc proc rw 0 0\nselinuxfs /sys/fs/selinux selinuxfs rw,relatime 0 0\n".into()
    }
}

#[test]
fn refuses_an_selinux_enabled_host() {
    let e = policy::host_check(&FakeHost, "selinux")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("selinuxfs is mounted") && e.contains("/sys/fs/selinux/enforce exists"),
        "{e}"
    );
    assert!(
        e.contains("checked against the HOST's loaded policy"),
        "{e}"
    );
    assert!(
        e.contains("`keel vm -- build --variant selinux`") && e.contains("docs/vm.md"),
        "{e}"
    );
    // this host (SELinux disabled in the kernel) passes
    policy::host_check(&policy::HostProbe, "selinux").unwrap();
}

#[test]
fn a_patch_that_no_longer_applies_fails_naming_the_patch() {
    if !common::tools() {
        return;
    }
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("0003-keel-stale.patch");
    fs::write(
        &bad,
        "--- a/policy/modules/system/init.fc\n+++ b/policy/modules/system/init.fc\n@@ -1,2 +1,2 @@\n-/no/such/line\tgen_context(system_u:object_r:etc_t,s0)\n+/still/no/such/line\tgen_context(system_u:object_r:etc_t,s0)\n /another/missing\tgen_context(system_u:object_r:etc_t,s0)\n",
    )
    .unwrap();
    let mut patches = common::project_patches();
    patches.push(bad);
    let em = common::Emerge::new(&tmp.path().join("portage"), &venv, &patches);
    let err = em
        .run(&tmp.path().join("root"), &["sec-policy/selinux-base"])
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    // what Keel shows: the emerge error's tail names the patch
    assert!(msg.contains("0003-keel-stale.patch"), "{msg}");
    // and the patches before it applied
    let log = fs::read_to_string(tmp.path().join("portage/logs/emerge.log")).unwrap();
    let build_log: String = fs::read_dir(tmp.path().join("portage/logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sec-policy:"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        build_log.contains("Applying 0001-spamassassin")
            && build_log.contains("Applying 0003-keel-stale.patch"),
        "{log}"
    );
}

#[test]
fn python_in_an_image_is_found() {
    if !testutil::require("mksquashfs") || !testutil::require("unsquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("tree");
    fs::create_dir_all(t.join("usr/bin")).unwrap();
    fs::write(t.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    let img = tmp.path().join("a.squashfs");
    Cmd::new("mksquashfs")
        .arg(&t)
        .arg(&img)
        .args(["-noappend", "-quiet", "-no-progress"])
        .run()
        .unwrap();
    policy::find_python_in_image(&img, &tmp.path().join("l.log")).unwrap();
    fs::create_dir_all(t.join("usr/lib/python3.11")).unwrap();
    fs::write(t.join("usr/lib/python3.11/os.py"), "").unwrap();
    fs::write(t.join("usr/bin/semanage"), "#!/usr/bin/python3.11 -EsI\n").unwrap();
    Cmd::new("mksquashfs")
        .arg(&t)
        .arg(&img)
        .args(["-noappend", "-quiet", "-no-progress"])
        .run()
        .unwrap();
    let e = policy::find_python_in_image(&img, &tmp.path().join("l.log"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/usr/lib/python3.11/") && e.contains("/usr/bin/semanage (a Python program)"),
        "{e}"
    );
}
