use super::*;
use std::fs as stdfs;
use std::os::unix::fs::symlink;

/// A tree `t/root` beside a victim directory `t/victim` that nothing may touch.
fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let victim = t.path().join("victim");
    stdfs::create_dir_all(root.join("usr/lib")).unwrap();
    stdfs::create_dir_all(&victim).unwrap();
    stdfs::write(victim.join("secret"), "secret\n").unwrap();
    (t, root, victim)
}

#[test]
fn links_inside_the_tree_are_followed() {
    let (_t, root, _) = tree();
    symlink("usr/lib", root.join("lib")).unwrap();
    let r = Root::open(&root).unwrap();
    r.create_dir_all(Path::new("/lib/modules/6.6"), 0o755)
        .unwrap();
    assert!(root.join("usr/lib/modules/6.6").is_dir());
    stdfs::write(root.join("usr/lib/f"), "x").unwrap();
    assert!(r.is_file(Path::new("lib/f")));
    let mut s = String::new();
    r.open_file(Path::new("lib/f"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "x");
}

#[test]
fn links_out_of_the_tree_are_refused_and_named() {
    for target in ["VICTIM", "../../../VICTIM", "../../../../../VICTIM"] {
        let (t, root, victim) = tree();
        let target = if target == "VICTIM" {
            victim.display().to_string()
        } else {
            target.replace("VICTIM", "victim")
        };
        // `lib -> usr/lib` inside, then `usr/lib/modules -> out`.
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink(&target, root.join("usr/lib/modules")).unwrap();
        let r = Root::open(&root).unwrap();
        let e = r
            .create_dir_all(Path::new("lib/modules/6.6/kernel"), 0o755)
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Escapes { .. }), "{msg}");
        assert!(
            msg.contains("refused /lib/modules")
                && msg.contains("/usr/lib/modules is a symlink to")
                && msg.contains(&target),
            "{msg}"
        );
        assert_eq!(stdfs::read_dir(&victim).unwrap().count(), 1, "{target}");
        assert!(!t.path().join("victim/6.6").exists());
        // Reading through a link out: refused, nothing of the target in the message.
        symlink(&target, root.join("initrd")).unwrap();
        let e = r.open_file(Path::new("/initrd")).unwrap_err().to_string();
        assert!(e.contains("/initrd is a symlink to"), "{e}");
        assert!(!e.contains("secret\n"), "{e}");
        assert!(!r.is_file(Path::new("initrd")));
    }
}

#[test]
fn dotdot_in_a_request_is_refused() {
    let (_t, root, _) = tree();
    let r = Root::open(&root).unwrap();
    let e = r.open_dir(Path::new("usr/../../victim")).unwrap_err();
    assert!(e.to_string().contains("`..`"), "{e}");
}

#[test]
fn fifo_and_devices_are_not_opened_for_reading() {
    let (_t, root, _) = tree();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let r = Root::open(&root).unwrap();
    let t = std::time::Instant::now();
    let e = r.open_file(Path::new("fifo")).unwrap_err().to_string();
    assert!(e.contains("a FIFO, not a regular file"), "{e}");
    assert!(t.elapsed().as_secs() < 5);
    let e = r.open_file(Path::new("usr")).unwrap_err().to_string();
    assert!(e.contains("a directory, not a regular file"), "{e}");
}

#[test]
fn reads_are_capped() {
    let (_t, root, _) = tree();
    stdfs::write(root.join("big"), vec![b'a'; 100]).unwrap();
    let r = Root::open(&root).unwrap();
    let f = r.open_file(Path::new("big")).unwrap();
    let e = read_capped(f, &root.join("big"), 99, "a test file").unwrap_err();
    assert!(
        e.to_string()
            .contains("more than the limit of 99 bytes for a test file"),
        "{e}"
    );
    let f = r.open_file(Path::new("big")).unwrap();
    assert_eq!(
        read_capped(f, &root.join("big"), 100, "x").unwrap().len(),
        100
    );
    // An endless source stops at the cap.
    let zero = stdfs::File::open("/dev/zero").unwrap();
    assert!(read_capped(zero, Path::new("/dev/zero"), 1 << 20, "x").is_err());
}

#[test]
fn remove_all_does_not_follow_links() {
    let (_t, root, victim) = tree();
    stdfs::create_dir_all(root.join("d/e")).unwrap();
    symlink(&victim, root.join("d/e/out")).unwrap();
    let r = Root::open(&root).unwrap();
    remove_all(r.fd(), b"d").unwrap();
    assert!(!root.join("d").exists());
    assert!(victim.join("secret").is_file());
}

#[test]
fn lstat_reports_links_as_links() {
    let (_t, root, victim) = tree();
    symlink(&victim, root.join("keel")).unwrap();
    let r = Root::open(&root).unwrap();
    let st = r.lstat(Path::new("/keel")).unwrap().unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
    assert!(r.lstat(Path::new("/nothing")).unwrap().is_none());
    assert!(r.lstat(Path::new("/nothing/below")).unwrap().is_none());
}

#[test]
fn locks_exclude_and_wait() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("lock");
    let held = try_lock(&p).unwrap().expect("free");
    assert!(try_lock(&p).unwrap().is_none(), "held by another open file");
    let p2 = p.clone();
    let waiter = std::thread::spawn(move || {
        let mut said = false;
        let _f = lock(&p2, || said = true).unwrap();
        said
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(held);
    assert!(waiter.join().unwrap(), "it said it was waiting");
}

#[test]
fn atomic_writes_replace_whole_files_with_the_mode_given() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub/f");
    write_atomic(&p, b"one", 0o600).unwrap();
    write_atomic(&p, b"two", 0o644).unwrap();
    assert_eq!(stdfs::read(&p).unwrap(), b"two");
    assert_eq!(
        stdfs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(stdfs::read_dir(d.path().join("sub")).unwrap().count(), 1);
}

#[test]
fn walks_depth_first_in_name_order_without_following_links() {
    let (_t, root, victim) = tree();
    stdfs::write(root.join("usr/lib/b"), "b").unwrap();
    stdfs::write(root.join("a"), "a").unwrap();
    symlink(&victim, root.join("usr/out")).unwrap();
    let mut seen = Vec::new();
    walk(&root, &mut |e: &Entry| -> Result<(), PathError> {
        let parent = e.parent.map(|(dir, name)| {
            // The handle holds the entry's directory: the name is there, not followed.
            let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            assert_eq!(st.st_ino, e.stat.st_ino);
            name.to_string_lossy().into_owned()
        });
        assert_eq!(e.shown(), root.join(e.path.strip_prefix("/").unwrap()));
        seen.push((
            e.path.display().to_string(),
            kind_name(e.file_type()),
            parent,
        ));
        Ok(())
    })
    .unwrap();
    let seen: Vec<(&str, &str, Option<&str>)> = seen
        .iter()
        .map(|(p, k, n)| (p.as_str(), *k, n.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/", "directory", None),
            ("/a", "regular file", Some("a")),
            ("/usr", "directory", Some("usr")),
            ("/usr/lib", "directory", Some("lib")),
            ("/usr/lib/b", "regular file", Some("b")),
            ("/usr/out", "symlink", Some("out")),
        ]
    );
}

#[test]
fn a_walk_refuses_a_top_that_is_a_link_and_stops_at_the_first_error() {
    let (t, root, _) = tree();
    let link = t.path().join("link");
    symlink(&root, &link).unwrap();
    let e = walk(&link, &mut |_: &Entry| -> Result<(), PathError> { Ok(()) }).unwrap_err();
    assert!(
        matches!(e.errno(), Some(Errno::LOOP | Errno::NOTDIR)),
        "{e}"
    );
    assert_eq!(e.path, link);
    let mut n = 0;
    let e = walk(&root, &mut |e: &Entry| {
        n += 1;
        match e.path == Path::new("/usr") {
            true => Err(PathError::at(e.shown())(Errno::PERM)),
            false => Ok(()),
        }
    })
    .unwrap_err();
    assert_eq!((n, e.path), (2, root.join("usr")));
}

#[test]
fn open_dir_nofollow_names_the_link_on_the_way() {
    let (_t, root, victim) = tree();
    symlink(&victim, root.join("usr/out")).unwrap();
    stdfs::write(root.join("usr/f"), "").unwrap();
    let top = open_nofollow(&root).unwrap();
    let at = |names: &[&str]| open_dir_nofollow(top.as_fd(), names.iter().copied());
    assert!(at(&["usr", "lib"]).is_ok());
    assert!(at(&[]).is_ok());
    // The kernel says ENOTDIR for a link opened with O_DIRECTORY | O_NOFOLLOW.
    assert!(matches!(
        at(&["usr", "out"]).unwrap_err(),
        (1, Errno::LOOP | Errno::NOTDIR)
    ));
    assert_eq!(at(&["usr", "f", "x"]).unwrap_err(), (1, Errno::NOTDIR));
    assert_eq!(at(&["nothing"]).unwrap_err(), (0, Errno::NOENT));
}

#[test]
fn owner_and_xattrs_of_a_link_are_its_own() {
    let (_t, root, victim) = tree();
    stdfs::write(root.join("f"), "").unwrap();
    symlink(victim.join("secret"), root.join("link")).unwrap();
    let top = open_nofollow(&root).unwrap();
    let me = rustix::process::getuid().as_raw();
    lchown_at(top.as_fd(), b"link", Some(me), None).unwrap();
    assert_eq!(
        lchown_at(top.as_fd(), b"nothing", Some(me), None),
        Err(Errno::NOENT)
    );
    let mut buf = [0u8; 64];
    match set_xattr_at(top.as_fd(), b"f", "user.keel", b"v") {
        // tmpfs before Linux 6.6 has no user xattrs: nothing to check here.
        Err(Errno::OPNOTSUPP) => {}
        r => {
            r.unwrap();
            let n = get_xattr_at(top.as_fd(), b"f", "user.keel", &mut buf).unwrap();
            assert_eq!(&buf[..n], b"v");
            // On the link itself, not its target: the kernel refuses user.* on a link.
            assert_eq!(
                set_xattr_at(top.as_fd(), b"link", "user.keel", b"v"),
                Err(Errno::PERM)
            );
        }
    }
    assert_eq!(
        stdfs::read_to_string(victim.join("secret")).unwrap(),
        "secret\n"
    );
    let pinned = pin(top.as_fd(), b"link").unwrap();
    let st = fs::fstat(&pinned).unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
    assert_eq!(
        fs::readlink(proc_self_fd(pinned.as_fd()).as_str(), Vec::new())
            .unwrap()
            .to_string_lossy(),
        root.join("link").to_string_lossy()
    );
}

#[test]
fn path_errors_name_the_path_and_keep_the_errno() {
    let e = PathError::at("/x/y")(Errno::NOENT);
    assert_eq!(e.errno(), Some(Errno::NOENT));
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().starts_with("/x/y: "), "{e}");
    let e: Error = e.into();
    assert!(e.is_not_found());
    let st = fs::stat("/").unwrap();
    assert_eq!(mtime_of(&st).tv_sec, st.st_mtime as i64);
}

#[test]
fn names_are_read_from_a_path_handle_and_lstat_at_says_none_when_absent() {
    let (_t, root, victim) = tree();
    symlink(&victim, root.join("out")).unwrap();
    let top = open_nofollow(&root).unwrap();
    let d = fs::openat(&top, "usr", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    assert_eq!(read_names(d.as_fd()).unwrap(), [b"lib".to_vec()]);
    let st = lstat_at(top.as_fd(), "out").unwrap().unwrap();
    assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
    assert!(lstat_at(top.as_fd(), "nothing").unwrap().is_none());
}

#[test]
fn remove_all_keeps_the_unlinks_own_refusal() {
    let (_t, root, _) = tree();
    let top = open_nofollow(&root).unwrap();
    assert_eq!(remove_all(top.as_fd(), b"nothing"), Err(Errno::NOENT));
    // An immutable file: the unlink's EPERM, not the ENOTDIR of trying it as a directory.
    stdfs::write(root.join("f"), "").unwrap();
    let f = stdfs::File::open(root.join("f")).unwrap();
    if fs::ioctl_setflags(&f, fs::IFlags::IMMUTABLE).is_ok() {
        assert_eq!(remove_all(top.as_fd(), b"f"), Err(Errno::PERM));
        fs::ioctl_setflags(&f, fs::IFlags::empty()).unwrap();
    }
    remove_all(top.as_fd(), b"f").unwrap();
    assert!(!root.join("f").exists());
}

#[test]
fn entry_xattrs_are_the_entrys_own_the_top_included() {
    let (_t, root, victim) = tree();
    symlink(&victim, root.join("out")).unwrap();
    let mut got = Vec::new();
    walk(&root, &mut |e: &Entry| -> Result<(), PathError> {
        let mut buf = [0u8; 64];
        if e.file_type() == FileType::Symlink {
            // user.* on a link is refused: the link itself was asked, not its target.
            assert_eq!(e.set_xattr("user.keel", b"x"), Err(Errno::PERM));
            return Ok(());
        }
        match e.set_xattr("user.keel", e.path.as_os_str().as_bytes()) {
            Err(Errno::OPNOTSUPP) => return Ok(()),
            r => r.unwrap(),
        }
        let n = e.get_xattr("user.keel", &mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        Ok(())
    })
    .unwrap();
    if !got.is_empty() {
        assert_eq!(got, ["/", "/usr", "/usr/lib"]);
        let mut buf = [0u8; 64];
        let n = fs::getxattr(&root, "user.keel", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"/");
    }
    assert!(fs::lgetxattr(&victim, "user.keel", &mut [0u8; 8]).is_err());
}
