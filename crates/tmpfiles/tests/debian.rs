//! Every tmpfiles.d file shipped by Debian's `systemd` and by 29 other Debian packages
//! parses without error, and `cat` agrees with `systemd-tmpfiles --cat-config` on a root
//! holding them all. The .debs come from the Debian archive with `apt-get download`
//! (cached under build/tools/debs); under KEEL_TEST_STRICT a failure to get them fails.

use std::path::{Path, PathBuf};
use tmpfiles::apply;

/// Packages that ship /usr/lib/tmpfiles.d files in Debian 12 (checked with dpkg-deb -c).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-container",
    "systemd-resolved",
    "colord",
    "lighttpd",
    "lvm2",
    "man-db",
    "polkitd",
    "rpcbind",
    "screen",
    "sudo",
    "apt-cacher-ng",
    "bind9",
    "fail2ban",
    "frr",
    "haproxy",
    "memcached",
    "nscd",
    "nut-client",
    "nut-server",
    "opendkim",
    "opendmarc",
    "openvpn",
    "passwd",
    "php8.2-fpm",
    "postgresql-common",
    "snapd",
    "speech-dispatcher",
    "squid",
    "tuned",
];

fn cached(dir: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
        })
}

/// Download (once) and unpack the packages' tmpfiles.d files into `root/usr/lib/tmpfiles.d`.
/// Returns the (package, file name) pairs, or None when the archive cannot be reached
/// (a skip locally, a panic under strict mode).
fn fetch(root: &Path) -> Option<Vec<(String, String)>> {
    if !testutil::require("apt-get") || !testutil::require("dpkg-deb") {
        return None;
    }
    let debs = testutil::project_root().join("build/tools/debs");
    std::fs::create_dir_all(&debs).unwrap();
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| cached(&debs, p).is_none())
        .collect();
    if !missing.is_empty() {
        if let Err(e) = exec::Cmd::new("apt-get")
            .arg("download")
            .args(&missing)
            .cwd(&debs)
            .output()
        {
            testutil::skip_or_fail(&format!("cannot download Debian packages: {e}"));
            return None;
        }
    }
    let dest = root.join("usr/lib/tmpfiles.d");
    std::fs::create_dir_all(&dest).unwrap();
    let mut files = Vec::new();
    for pkg in PACKAGES {
        let deb =
            cached(&debs, pkg).unwrap_or_else(|| panic!("{pkg}: no .deb after apt-get download"));
        let x = tempfile::tempdir().unwrap();
        exec::Cmd::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(x.path())
            .run()
            .unwrap();
        let dir = x.path().join("usr/lib/tmpfiles.d");
        let mut n = 0;
        for e in
            std::fs::read_dir(&dir).unwrap_or_else(|_| panic!("{pkg} ships no /usr/lib/tmpfiles.d"))
        {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!dest.join(&name).exists(), "{name} shipped twice");
            std::fs::copy(e.path(), dest.join(&name)).unwrap();
            files.push((pkg.to_string(), name));
            n += 1;
        }
        assert!(n > 0, "{pkg} ships no tmpfiles.d file");
    }
    Some(files)
}

#[test]
fn debian_files_parse_and_cat_agrees() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    let Some(files) = fetch(r) else { return };
    let pkgs: std::collections::BTreeSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert!(pkgs.len() >= 21 && pkgs.contains("systemd"), "{pkgs:?}");
    let mut lines = 0;
    let mut errors = Vec::new();
    for (pkg, name) in &files {
        let text = std::fs::read(r.join("usr/lib/tmpfiles.d").join(name)).unwrap();
        for (n, l) in tmpfiles::config::lines(&text).iter().enumerate() {
            match tmpfiles::parse_line(l) {
                Ok(Some(e)) => {
                    lines += 1;
                    // And writing it back gives the same entry.
                    assert_eq!(
                        tmpfiles::parse_line(&e.to_string()).unwrap().as_ref(),
                        Some(&e),
                        "{name}:{}",
                        n + 1
                    );
                }
                Ok(None) => {}
                Err(e) => errors.push(format!("{pkg}: {name}:{}: {e}", n + 1)),
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    eprintln!(
        "{} files from {} packages, {lines} entries: all parse",
        files.len(),
        pkgs.len()
    );
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    let root = apply::open_root(r).unwrap();
    let ours = apply::cat(&root).unwrap();
    let theirs = exec::Cmd::new("systemd-tmpfiles")
        .arg(format!("--root={}", r.display()))
        .arg("--cat-config")
        .output()
        .unwrap()
        .stdout;
    assert_eq!(ours, theirs);
}
