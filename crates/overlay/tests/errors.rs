//! Errors: each names the path; DEST never holds a partially written file at a final name.
//! We run as root, so "unreadable" and "cannot be created" are made real without modes: a
//! write-only sysfs attribute bind-mounted over a source file (open for reading fails with
//! EACCES even for root), and an immutable (`chattr +i`) DEST directory (EPERM for root).

mod common;

use common::*;
use overlay::{Error, Nesting};
use rustix::fs::{IFlags, Mode, OFlags};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tree(t: &Path) -> (PathBuf, PathBuf) {
    let (src, dest) = (t.join("src"), t.join("dest"));
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("a"), b"a").unwrap();
    std::fs::write(src.join("sub/b"), b"b").unwrap();
    std::fs::write(dest.join("old"), b"kept").unwrap();
    (src, dest)
}

fn no_temp_files(dest: &Path) {
    let snap = snapshot(dest);
    let left: Vec<_> = snap
        .keys()
        .filter(|p| p.to_string_lossy().contains(".keel."))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn missing_source_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    let missing = tmp.path().join("no-such-overlay");
    let before = snapshot(&dest);
    // a good source first: nothing is synced when any source is missing
    let e = overlay::sync(&[&src, &missing], &dest).unwrap_err();
    assert!(matches!(e, Error::Source { .. }), "{e}");
    assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
    assert_eq!(before, snapshot(&dest));
}

#[test]
fn source_that_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    let e = overlay::sync(&[src.join("a")], &dest).unwrap_err();
    assert!(matches!(e, Error::SourceNotDir { .. }), "{e}");
    assert!(e.to_string().contains("src/a"), "{e}");
}

#[test]
fn dest_not_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    let file = dest.join("old");
    let e = overlay::sync(&[&src], &file).unwrap_err();
    assert!(matches!(e, Error::DestNotDir { .. }), "{e}");
    assert!(e.to_string().contains("dest/old"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"kept");
    let e = overlay::sync(&[&src], &tmp.path().join("absent")).unwrap_err();
    assert!(matches!(e, Error::Dest { .. }), "{e}");
    assert!(e.to_string().contains("absent"), "{e}");
    let e = overlay::set_mtime(&file, Path::new("/usr"), overlay::Mtime::from_secs(0)).unwrap_err();
    assert!(matches!(e, Error::DestNotDir { .. }), "{e}");
}

/// A write-only sysfs attribute: open(O_RDONLY) fails with EACCES, even for root.
fn write_only_sysfs_file() -> Option<PathBuf> {
    [
        "/sys/bus/pci/rescan",
        "/sys/bus/pci/drivers_probe",
        "/sys/bus/platform/drivers_probe",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists() && std::fs::File::open(p).is_err())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn unreadable_source_file() {
    let Some(wo) = write_only_sysfs_file() else {
        testutil::skip_or_fail("no write-only sysfs attribute to make an unreadable file");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    let bad = src.join("sub/unreadable");
    std::fs::write(&bad, b"").unwrap();
    // The same name in DEST holds older content: it must survive intact.
    std::fs::create_dir_all(dest.join("sub")).unwrap();
    std::fs::write(dest.join("sub/unreadable"), b"previous content").unwrap();
    let ok = Command::new("mount")
        .arg("--bind")
        .arg(&wo)
        .arg(&bad)
        .status();
    if !ok.is_ok_and(|s| s.success()) {
        testutil::skip_or_fail("cannot bind-mount (not root, or no mount privilege)");
        return;
    }
    let _guard = Unmount(bad.clone());
    assert!(
        std::fs::File::open(&bad).is_err(),
        "the bind mount is readable"
    );

    let e = overlay::sync(&[&src], &dest).unwrap_err();
    let Error::Incomplete { errors, stats } = &e else {
        panic!("{e}")
    };
    assert_eq!(errors.len(), 1, "{e}");
    assert!(
        matches!(&errors[0], Error::Read { path, .. } if path == &bad),
        "{e}"
    );
    assert!(e.to_string().contains("src/sub/unreadable"), "{e}");
    // everything else was synced; the final name keeps its old, whole content
    assert_eq!(stats.files_written, 2, "{stats:?}");
    assert_eq!(std::fs::read(dest.join("sub/b")).unwrap(), b"b");
    assert_eq!(
        std::fs::read(dest.join("sub/unreadable")).unwrap(),
        b"previous content"
    );
    no_temp_files(&dest);

    // rsync fails on it too (exit 23, partial transfer)
    if testutil::require("rsync") {
        let dr = tmp.path().join("dest-rsync");
        std::fs::create_dir(&dr).unwrap();
        let r = rsync(&src, &dr);
        assert_eq!(r.code, 23, "{}", r.stderr);
    }
}

struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = set_immutable(&self.0, false);
    }
}

fn set_immutable(dir: &Path, on: bool) -> rustix::io::Result<()> {
    let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
    let flags = rustix::fs::ioctl_getflags(&fd)?;
    let flags = if on {
        flags | IFlags::IMMUTABLE
    } else {
        flags - IFlags::IMMUTABLE
    };
    rustix::fs::ioctl_setflags(&fd, flags)
}

#[test]
fn name_that_cannot_be_created() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    std::fs::create_dir_all(src.join("locked")).unwrap();
    std::fs::write(src.join("locked/new-file"), b"content").unwrap();
    std::fs::create_dir_all(src.join("locked/new-dir")).unwrap();
    std::os::unix::fs::symlink("x", src.join("locked/new-link")).unwrap();
    std::fs::create_dir_all(dest.join("locked")).unwrap();
    if let Err(e) = set_immutable(&dest.join("locked"), true) {
        testutil::skip_or_fail(&format!("cannot set the immutable flag here: {e}"));
        return;
    }
    let _guard = Mutable(dest.join("locked"));
    let e = overlay::sync(&[&src], &dest).unwrap_err();
    let msg = e.to_string();
    let Error::Incomplete { errors, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(errors.len(), 3, "{msg}");
    for name in ["new-file", "new-dir", "new-link"] {
        assert!(
            msg.contains(&*dest.join("locked").join(name).to_string_lossy()),
            "{name} not named in: {msg}"
        );
    }
    // the rest went through
    assert_eq!(std::fs::read(dest.join("sub/b")).unwrap(), b"b");
    set_immutable(&dest.join("locked"), false).unwrap();
    assert_eq!(std::fs::read_dir(dest.join("locked")).unwrap().count(), 0);
    no_temp_files(&dest);
}

#[test]
fn non_empty_directory_in_the_way_is_kept_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dest) = tree(tmp.path());
    std::fs::create_dir_all(dest.join("a/inside")).unwrap();
    std::fs::create_dir_all(dest.join("sub/b")).unwrap();
    std::fs::write(dest.join("sub/b/kept"), b"kept").unwrap();
    let e = overlay::sync(&[&src], &dest).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("2 entries could not be synced"), "{msg}");
    assert!(msg.contains("cannot replace non-empty directory"), "{msg}");
    assert!(
        msg.contains(&*dest.join("sub/b").to_string_lossy()),
        "{msg}"
    );
    assert_eq!(std::fs::read(dest.join("sub/b/kept")).unwrap(), b"kept");
    assert!(dest.join("a/inside").is_dir());
    no_temp_files(&dest);
}

/// Run `f` in a thread; fail if it takes more than 20 s (a hang fails the test instead of
/// hanging it; a stuck thread is left behind and dies with the test binary).
fn within_20s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("still running after 20 s: it hangs"))
}

/// A temporary directory removed at the end of a test that passed, and kept (named on
/// stderr) after a failure: a runaway sync may still be writing in it, deeper than a
/// recursive removal on the test's stack survives.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(tempfile::tempdir().unwrap().keep())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("left behind: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `sync(sources, dest)` must be refused, within the time limit, with nothing written.
/// The sync of `sources` into `dest` is refused within 20 s, as `Error::Nested` of kind
/// `nesting` whose message contains `says`, and nothing under `top` changed.
fn refused_nested(sources: &[PathBuf], dest: &Path, top: &Path, nesting: Nesting, says: &str) {
    let before = snapshot(top);
    let (s, d) = (sources.to_vec(), dest.to_owned());
    let e = within_20s(move || overlay::sync(&s, &d)).unwrap_err();
    eprintln!("error: {e}");
    assert_eq!(before, snapshot(top), "{e}");
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Nested { nesting: n, .. } if n == nesting),
        "{msg}"
    );
    assert!(msg.contains(says), "{msg}");
}

/// `b/f`, `b/in/` (empty): the tree of `keel overlay sync b b/in`.
fn nest(t: &Path) -> (PathBuf, PathBuf) {
    let b = t.join("b");
    std::fs::create_dir_all(b.join("in")).unwrap();
    std::fs::write(b.join("f"), b"1").unwrap();
    (b.clone(), b.join("in"))
}

#[test]
fn dest_inside_a_source_is_refused() {
    // rsync copies one level and stops; Keel recursed into its own output without end.
    let tmp = Scratch::new();
    let (b, inner) = nest(&tmp.0);
    refused_nested(
        std::slice::from_ref(&b),
        &inner,
        &tmp.0,
        Nesting::Inside,
        &format!(
            "destination `{}` is inside source `{}`; the copy would contain itself",
            inner.display(),
            b.display()
        ),
    );
}

#[test]
fn dest_inside_a_later_source_through_a_symlink_is_refused() {
    // Identity, not the path's string: DEST is a symlink to `b/in`, b comes second.
    let tmp = Scratch::new();
    let (b, inner) = nest(&tmp.0);
    let other = tmp.0.join("other");
    std::fs::create_dir(&other).unwrap();
    let link = tmp.0.join("link");
    std::os::unix::fs::symlink(&inner, &link).unwrap();
    refused_nested(
        &[other, b.clone()],
        &link,
        &tmp.0,
        Nesting::Inside,
        &format!(
            "destination `{}` is inside source `{}`",
            link.display(),
            b.display()
        ),
    );
}

#[test]
fn a_missing_dest_inside_a_source_is_refused() {
    // Its nearest existing ancestor decides.
    let tmp = Scratch::new();
    let (b, inner) = nest(&tmp.0);
    let dest = inner.join("not/yet");
    refused_nested(
        std::slice::from_ref(&b),
        &dest,
        &tmp.0,
        Nesting::Inside,
        &format!(
            "destination `{}` is inside source `{}`",
            dest.display(),
            b.display()
        ),
    );
}

#[test]
fn dest_that_is_a_source_is_refused() {
    let tmp = Scratch::new();
    let (b, _) = nest(&tmp.0);
    let dot = b.join(".");
    refused_nested(
        std::slice::from_ref(&b),
        &dot,
        &tmp.0,
        Nesting::Same,
        &format!(
            "destination `{}` is the same directory as source `{}`",
            dot.display(),
            b.display()
        ),
    );
}

#[test]
fn dest_that_contains_a_source_is_refused() {
    let tmp = Scratch::new();
    let (b, inner) = nest(&tmp.0);
    std::fs::create_dir(inner.join("in")).unwrap();
    std::fs::write(inner.join("in/g"), b"2").unwrap();
    refused_nested(
        std::slice::from_ref(&inner),
        &b,
        &tmp.0,
        Nesting::Contains,
        &format!(
            "destination `{}` contains source `{}`",
            b.display(),
            inner.display()
        ),
    );
}

#[test]
fn siblings_that_share_a_prefix_are_not_nested() {
    let tmp = Scratch::new();
    let (b, _) = nest(&tmp.0);
    let bb = tmp.0.join("bb");
    std::fs::create_dir(&bb).unwrap();
    overlay::sync(&[&b], &bb).unwrap();
    assert_eq!(std::fs::read(bb.join("f")).unwrap(), b"1");
    assert!(bb.join("in").is_dir());
    overlay::sync(&[&bb], &b).unwrap();
}
