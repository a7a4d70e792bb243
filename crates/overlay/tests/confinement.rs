//! Confinement: whatever DEST holds (links to `/`, `../../..`, chains, a directory replaced
//! by a link to outside), a sync never reads, creates, changes or follows anything outside
//! DEST. A sentinel tree outside DEST is snapshotted (type, mode, owner, mtime, ctime, inode,
//! content, link target) before and after; the result is also checked against real rsync.

mod common;

use common::*;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// The sentinel tree a hostile DEST points into.
fn sentinel(outside: &Path) {
    std::fs::create_dir_all(outside.join("sub/deeper")).unwrap();
    std::fs::write(outside.join("f"), b"sentinel file").unwrap();
    std::fs::write(outside.join("passwd"), b"root:x:0:0").unwrap();
    std::fs::write(outside.join("sub/deeper/g"), b"sentinel g").unwrap();
    symlink("f", outside.join("link-to-f")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        outside.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::lchown(outside.join("f"), Some(1000), Some(1000)).unwrap();
    for p in ["f", "passwd", "sub", "sub/deeper", "sub/deeper/g", ""] {
        set_times(&outside.join(p), (1_000_000_000, 0));
    }
}

/// A DEST full of links that lead out of it, each colliding with something in the source.
fn hostile_dest(dest: &Path, outside: &Path, probe: &str) {
    std::fs::create_dir_all(dest.join("usr/share")).unwrap();
    std::fs::create_dir_all(dest.join("var")).unwrap();
    // absolute links, to the sentinel and to `/`
    symlink(outside, dest.join("etc")).unwrap();
    symlink("/", dest.join("rootlink")).unwrap();
    symlink(outside.join("f"), dest.join("file-link")).unwrap();
    symlink(outside.join("fifo"), dest.join("node-link")).unwrap();
    // relative links escaping DEST
    let up = "../".repeat(dest.components().count() + 2);
    symlink(&up, dest.join("up")).unwrap();
    symlink("../../outside", dest.join("usr/rel")).unwrap();
    symlink("../../outside/passwd", dest.join("usr/share/passwd")).unwrap();
    // a chain: a -> b -> c -> outside
    symlink("b", dest.join("a")).unwrap();
    symlink("c", dest.join("b")).unwrap();
    symlink("../outside", dest.join("c")).unwrap();
    // a DEST directory replaced by a link to outside
    symlink(outside.join("sub"), dest.join("var/lib")).unwrap();
    // links to outside directories where the source has a symlink or a file
    symlink(outside.join("sub/deeper"), dest.join("deeper")).unwrap();
    let _ = probe;
}

/// A source whose names collide with every hostile link in DEST.
fn colliding_source(src: &Path, probe: &str) {
    let f = |p: &str, c: &[u8]| {
        let p = src.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    };
    f("etc/passwd", b"overlay passwd");
    f("etc/sub/deeper/g", b"overlay g");
    f(&format!("rootlink/{probe}"), b"must not land in /");
    f(&format!("up/{probe}"), b"must not land in /");
    f("file-link", b"replaces the link");
    f("usr/rel/f", b"overlay");
    f("usr/share/passwd", b"overlay");
    f("a/f", b"overlay");
    f("b", b"overlay");
    f("c/passwd", b"overlay");
    f("var/lib/sub-file", b"overlay");
    symlink("/etc/hostname", src.join("deeper")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("node-link"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Old mtimes: rsync leaves a new node's creation time when its seconds equal the
    // source's (it compares seconds only), so a source made "now" would differ in nsec.
    for p in ["deeper", "node-link"] {
        set_times(&src.join(p), (1_200_000_000, 5));
    }
    for p in ["etc", "etc/sub", "usr", "var", "var/lib"] {
        std::fs::set_permissions(
            src.join(p),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
    }
}

fn probe_name() -> String {
    format!("keel-confinement-probe-{}", std::process::id())
}

fn setup(t: &Path, probe: &str) -> (PathBuf, PathBuf, PathBuf) {
    let outside = t.join("outside");
    let dest = t.join("dest");
    let src = t.join("src");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    sentinel(&outside);
    hostile_dest(&dest, &outside, probe);
    colliding_source(&src, probe);
    (outside, dest, src)
}

fn assert_untouched(before: &Snapshot, outside: &Path, probe: &str) {
    let after = snapshot(outside);
    assert_eq!(before, &after, "the sentinel tree outside DEST changed");
    assert!(
        !Path::new("/").join(probe).exists(),
        "a file was written to /{probe}"
    );
}

#[test]
fn hostile_dest_links_are_replaced_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = probe_name();
    let (outside, dest, src) = setup(tmp.path(), &probe);
    let before = snapshot(&outside);
    let r = overlay::sync(&[&src], &dest);
    assert_untouched(&before, &outside, &probe);
    r.unwrap();
    // Every colliding link became what the source holds, inside DEST.
    for d in ["etc", "rootlink", "up", "a", "c", "usr/rel", "var/lib"] {
        let md = dest.join(d).symlink_metadata().unwrap();
        assert!(md.is_dir(), "{d} is not a real directory: {md:?}");
    }
    assert_eq!(
        std::fs::read(dest.join("etc/passwd")).unwrap(),
        b"overlay passwd"
    );
    assert_eq!(
        std::fs::read(dest.join("file-link")).unwrap(),
        b"replaces the link"
    );
    assert_eq!(
        std::fs::read_link(dest.join("deeper")).unwrap(),
        Path::new("/etc/hostname")
    );
    assert!(dest.join(format!("rootlink/{probe}")).is_file());
    // A second sync (now over real directories) stays inside too.
    overlay::sync(&[&src], &dest).unwrap();
    assert_untouched(&before, &outside, &probe);
}

#[test]
fn hostile_dest_matches_rsync() {
    if !testutil::require("rsync") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let probe = probe_name() + "-r";
    let (outside, dk, src) = setup(tmp.path(), &probe);
    let dr = tmp.path().join("dest-rsync");
    std::fs::create_dir(&dr).unwrap();
    hostile_dest(&dr, &outside, &probe);
    let before = snapshot(&outside);
    let (before_r, before_k) = (snapshot(&dr), snapshot(&dk));
    let start = now();
    let r = rsync(&src, &dr);
    assert_eq!(r.code, 0, "{}", r.stderr);
    overlay::sync(&[&src], &dk).unwrap();
    assert_untouched(&before, &outside, &probe);
    let diffs = diff(&snapshot(&dr), &snapshot(&dk), &before_r, &before_k, start);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Generated sources layered over a DEST salted with escaping links at every level.
#[test]
fn generated_sources_over_links_to_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let outside = t.join("outside");
    sentinel(&outside);
    let before = snapshot(&outside);
    for seed in [51, 52, 53] {
        let src = t.join(format!("src{seed}"));
        let dest = t.join(format!("dest{seed}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        generate(&src, seed, Shape::default());
        // DEST first holds the synced tree; then entries at every depth, directories
        // included, are replaced by links out of DEST.
        overlay::sync(&[&src], &dest).unwrap();
        let snap = snapshot(&src);
        let mut made = 0;
        for (i, rel) in snap.keys().enumerate() {
            let d = dest.join(rel);
            if rel.as_os_str().is_empty() || i % 3 != 0 || d.symlink_metadata().is_err() {
                continue;
            }
            if d.symlink_metadata().unwrap().is_dir() {
                std::fs::remove_dir_all(&d).unwrap();
            } else {
                std::fs::remove_file(&d).unwrap();
            }
            let target = match i % 4 {
                0 => outside.clone(),
                1 => PathBuf::from("../".repeat(12)).join("outside-nowhere"),
                2 => PathBuf::from("../".repeat(rel.components().count())).join("../outside"),
                _ => outside.join("sub"),
            };
            symlink(target, &d).unwrap();
            made += 1;
        }
        assert!(made > 10);
        overlay::sync(&[&src], &dest).unwrap();
        assert_eq!(before, snapshot(&outside), "seed {seed}: outside changed");
        // Every source entry landed inside DEST.
        let after = snapshot(&dest);
        assert!(snap.keys().all(|p| after.contains_key(p)), "seed {seed}");
    }
}

#[test]
fn set_mtime_never_follows_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = probe_name();
    let (outside, dest, _src) = setup(tmp.path(), &probe);
    let before = snapshot(&outside);
    let t = overlay::Mtime::from_secs(1_700_000_000);
    // through an intermediate link: refused, naming the link
    let e = overlay::set_mtime(&dest, Path::new("/etc/passwd"), t).unwrap_err();
    assert!(e.to_string().contains("etc"), "{e}");
    assert!(matches!(e, overlay::Error::BadPath { .. }), "{e}");
    let e = overlay::set_mtime(&dest, Path::new("var/lib/deeper"), t).unwrap_err();
    assert!(matches!(e, overlay::Error::BadPath { .. }), "{e}");
    let e = overlay::set_mtime(&dest, Path::new("usr/../etc"), t).unwrap_err();
    assert!(e.to_string().contains("`..`"), "{e}");
    // a final link: its own mtime changes, not its target's
    overlay::set_mtime(&dest, Path::new("/file-link"), t).unwrap();
    let md = dest.join("file-link").symlink_metadata().unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), 1_700_000_000);
    assert_untouched(&before, &outside, &probe);
    // and a real directory gets it
    overlay::set_mtime(&dest, Path::new("/usr"), t).unwrap();
    let md = dest.join("usr").symlink_metadata().unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime(&md), 1_700_000_000);
    overlay::set_mtime(&dest, Path::new("/"), overlay::Mtime { secs: 5, nsecs: 7 }).unwrap();
    let md = dest.symlink_metadata().unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::mtime_nsec(&md), 7);
}
