//! Differential tests: images made by umoci (a real tool) from trees edited here, unpacked
//! by `oci::unpack` and by `umoci unpack` (umoci's own unpacker), compared entry by entry
//! (path set, type, mode, owner, mtime, content, link target, device numbers, xattrs, hard
//! link groups); and against the trees the layers were made from.

mod common;

use common::*;
use rustix::fs::{self as fs, FileType, Mode, Timespec, Timestamps};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// cap_net_raw+ep as a VFS_CAP_REVISION_2 `security.capability` value (what setcap writes).
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

struct Fixture {
    work: PathBuf,
    layout: PathBuf,
}

fn w(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap();
}

fn mtime(p: &Path, sec: i64) {
    let t = Timespec {
        tv_sec: sec as _,
        tv_nsec: 0,
    };
    fs::utimensat(
        fs::CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn layer1(r: &Path) {
    let p = |s: &str| r.join(s);
    for d in [
        "d/sub/deep",
        "rep",
        "opq/b",
        "opq2",
        "gone/x/y",
        "odir",
        "shared",
        "tmp",
    ] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    w(&p("d/f"), b"hello\n");
    w(&p("d/sub/deep/file"), b"deep\n");
    w(&p("d/sub/x"), b"x\n");
    w(&p("big.bin"), &noise(3 << 20, 7));
    w(&p("empty"), b"");
    w(&p("rep/c"), b"c\n");
    w(&p("file2"), b"file2\n");
    w(&p("opq/a"), b"a\n");
    w(&p("opq/b/c"), b"c\n");
    w(&p("opq2/z"), b"z\n");
    w(&p("gone/x/y/z"), b"z\n");
    w(&p("odir/child"), b"child\n");
    w(&p("owned"), b"owned\n");
    w(&p("ping"), b"\x7fELF not really\n");
    w(&p("suid"), b"#!/bin/sh\n");
    std::os::unix::fs::symlink("d", p("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("abslink")).unwrap();
    std::os::unix::fs::symlink("nowhere/at/all", p("dangling")).unwrap();
    std::os::unix::fs::symlink("d", p("symrep")).unwrap();
    std::fs::hard_link(p("d/f"), p("hl")).unwrap();
    std::fs::hard_link(p("big.bin"), p("hl2")).unwrap();
    chmod(&p("suid"), 0o4755);
    chmod(&p("shared"), 0o2775);
    chmod(&p("tmp"), 0o1777);
    chmod(&p("d/sub/x"), 0o600);
    fs::mknodat(
        fs::CWD,
        p("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    fs::mknodat(
        fs::CWD,
        p("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        fs::makedev(1, 3),
    )
    .unwrap();
    fs::mknodat(
        fs::CWD,
        p("loop0"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        fs::makedev(7, 0),
    )
    .unwrap();
    chmod(&p("fifo"), 0o640);
    std::os::unix::fs::chown(p("owned"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::chown(p("odir"), Some(123), Some(456)).unwrap();
    std::os::unix::fs::lchown(p("dangling"), Some(5), Some(6)).unwrap();
    fs::lsetxattr(p("d/f"), "user.note", b"a note", fs::XattrFlags::empty()).unwrap();
    fs::lsetxattr(p("d"), "user.dir", b"on a dir", fs::XattrFlags::empty()).unwrap();
    fs::lsetxattr(
        p("ping"),
        "security.capability",
        &CAP_NET_RAW,
        fs::XattrFlags::empty(),
    )
    .unwrap();
    for (f, t) in [
        ("big.bin", 1_000_000_000),
        ("link", 1_100_000_000),
        ("fifo", 1_200_000_000),
    ] {
        mtime(&p(f), t);
    }
    mtime(&p("d/sub"), 1_300_000_000);
}

fn layer2(r: &Path) {
    let p = |s: &str| r.join(s);
    std::fs::remove_file(p("d/f")).unwrap();
    std::fs::remove_dir_all(p("d/sub")).unwrap();
    std::fs::remove_dir_all(p("rep")).unwrap();
    w(&p("rep"), b"rep is a file now\n");
    std::fs::remove_file(p("file2")).unwrap();
    std::fs::create_dir(p("file2")).unwrap();
    w(&p("file2/inner"), b"inner\n");
    std::fs::remove_file(p("symrep")).unwrap();
    w(&p("symrep"), b"was a symlink\n");
    w(&p("big.bin"), &noise(1 << 20, 11));
    w(&p("d/new"), b"new\n");
    chmod(&p("d"), 0o700);
    std::fs::remove_dir_all(p("gone")).unwrap();
    std::os::unix::fs::symlink("../d/new", p("tmp/ln")).unwrap();
}

fn layer3(r: &Path) {
    let p = |s: &str| r.join(s);
    w(&p("d/f"), b"hello again\n");
    std::fs::hard_link(p("big.bin"), p("bighl")).unwrap();
    std::fs::remove_file(p("link")).unwrap();
    std::fs::create_dir(p("link")).unwrap();
    std::fs::remove_file(p("rep")).unwrap();
    std::fs::create_dir(p("rep")).unwrap();
    w(&p("rep/again"), b"again\n");
    std::os::unix::fs::chown(p("owned"), Some(7), Some(8)).unwrap();
    std::fs::remove_file(p("fifo")).unwrap();
}

/// Opaque directories, which umoci's repack does not write: made by hand and added with
/// `umoci raw add-layer`. In `opq` the marker follows the layer's own entries, in `opq2` it
/// comes first; both must keep what this layer adds and drop what lower layers put there.
fn layer4() -> Vec<u8> {
    layer(&[
        E::Dir("opq/"),
        E::File("opq/new", b"new in opq\n"),
        E::Dir("opq/b/"),
        E::File("opq/b/n2", b"n2\n"),
        E::File("opq/.wh..wh..opq", b""),
        E::File("opq2/.wh..wh..opq", b""),
        E::File("opq2/fresh", b"fresh\n"),
        E::File(".wh.empty", b""),
        E::File("d/.wh.new", b""),
        E::File("tmp/.wh.missing-is-fine", b""),
    ])
}

fn umoci(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    run("umoci", args);
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Fixture> = OnceLock::new();
    if !testutil::require("umoci") {
        return None;
    }
    Some(F.get_or_init(|| {
        // A static is never dropped, so a TempDir here would be left in /tmp by every run:
        // the fixture lives in cargo's directory for integration tests instead, remade by
        // each test process.
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oci-umoci-fixture");
        if work.exists() {
            std::fs::remove_dir_all(&work).unwrap();
        }
        std::fs::create_dir_all(&work).unwrap();
        let l = work.join("L");
        let li = |t: &str| format!("{}:{t}", l.display());
        umoci(&[&"init", &"--layout", &l]);
        umoci(&[&"new", &"--image", &li("t0")]);
        for (i, edit) in [layer1 as fn(&Path), layer2, layer3].iter().enumerate() {
            let b = work.join(format!("B{}", i + 1));
            umoci(&[&"unpack", &"--image", &li(&format!("t{i}")), &b]);
            edit(&b.join("rootfs"));
            umoci(&[&"repack", &"--image", &li(&format!("t{}", i + 1)), &b]);
        }
        let l4 = work.join("layer4.tar");
        std::fs::write(&l4, layer4()).unwrap();
        umoci(&[
            &"raw",
            &"add-layer",
            &"--image",
            &li("t3"),
            &"--tag",
            &"t4",
            &l4,
        ]);
        Fixture { work, layout: l }
    }))
}

/// The one known difference from `umoci unpack`, in layer 4: `opq/b` has its own entry
/// (mtime 1000000000) and the opaque marker of `opq` comes after it; umoci removes the lower
/// `opq/b/c` after setting `opq/b`'s mtime, so its `opq/b` carries the time of the unpack.
/// Ours carries the entry's mtime (directory metadata is applied after the layer's changes),
/// which [`whiteouts_and_opaque_directories`] checks.
fn umoci_opaque_mtime(line: &str) -> bool {
    line.starts_with("`opq/b`: mtime: ours (1000000000, 0), theirs (")
}

/// Ours and umoci's unpack of one tag; returns (ours, umoci's rootfs).
fn both(f: &Fixture, tag: &str) -> (PathBuf, PathBuf) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ours = f.work.join(format!("ours-{tag}"));
    let theirs = f.work.join(format!("umoci-{tag}"));
    if !ours.exists() {
        let r = format!("{}:{tag}", f.layout.display());
        let (img, stats) = oci::unpack_ref(&r, &ours).unwrap();
        assert_eq!(stats.layers as usize, img.layers().len());
        umoci(&[&"unpack", &"--image", &r, &theirs]);
    }
    (ours, theirs.join("rootfs"))
}

#[test]
fn every_tag_unpacks_like_umoci() {
    let Some(f) = fixture() else { return };
    for tag in ["t1", "t2", "t3", "t4"] {
        let (ours, theirs) = both(f, tag);
        let n = assert_same_but(&ours, &theirs, &[], umoci_opaque_mtime);
        eprintln!("{tag}: {n} entries equal to umoci's unpack");
    }
}

#[test]
fn every_tag_unpacks_to_the_tree_it_was_made_from() {
    let Some(f) = fixture() else { return };
    for (tag, b) in [("t1", "B1"), ("t2", "B2"), ("t3", "B3")] {
        let (ours, _) = both(f, tag);
        let n = assert_same(&ours, &f.work.join(b).join("rootfs"), &["nsec"]);
        eprintln!("{tag}: {n} entries equal to the source tree {b}/rootfs");
    }
}

#[test]
fn whiteouts_and_opaque_directories() {
    let Some(f) = fixture() else { return };
    let (t2, _) = both(f, "t2");
    assert_eq!(ftype(&t2.join("d/f")), None);
    assert_eq!(ftype(&t2.join("d/sub")), None);
    assert_eq!(ftype(&t2.join("gone")), None);
    assert_eq!(ftype(&t2.join("rep")), Some(FileType::RegularFile));
    assert_eq!(ftype(&t2.join("file2/inner")), Some(FileType::RegularFile));
    assert_eq!(ftype(&t2.join("symrep")), Some(FileType::RegularFile));
    let (t3, _) = both(f, "t3");
    assert_eq!(std::fs::read(t3.join("d/f")).unwrap(), b"hello again\n");
    assert_eq!(ftype(&t3.join("link")), Some(FileType::Directory));
    assert_eq!(ftype(&t3.join("rep/again")), Some(FileType::RegularFile));
    assert_eq!(ftype(&t3.join("fifo")), None);
    let (t4, _) = both(f, "t4");
    let names = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(t4.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("opq"), ["b", "new"]);
    assert_eq!(names("opq/b"), ["n2"]);
    assert_eq!(snapshot(&t4)["opq/b"].mtime, (1_000_000_000, 0));
    assert_eq!(names("opq2"), ["fresh"]);
    assert_eq!(ftype(&t4.join("empty")), None);
    assert_eq!(ftype(&t4.join("d/new")), None);
    assert_eq!(ftype(&t4.join("tmp/ln")), Some(FileType::Symlink));
}

#[test]
fn metadata_survives() {
    let Some(f) = fixture() else { return };
    let (t4, _) = both(f, "t4");
    let s = snapshot(&t4);
    assert_eq!(s["suid"].mode, 0o4755);
    assert_eq!(s["shared"].mode, 0o2775);
    assert_eq!(s["tmp"].mode, 0o1777);
    assert_eq!(s["null"].data, "1:3");
    assert_eq!(s["loop0"].data, "7:0");
    assert_eq!((s["owned"].uid, s["owned"].gid), (7, 8));
    assert_eq!((s["odir"].uid, s["odir"].gid), (123, 456));
    assert_eq!((s["dangling"].uid, s["dangling"].gid), (5, 6));
    assert_eq!(s["ping"].xattrs["security.capability"], CAP_NET_RAW);
    assert_eq!(s["hl"].xattrs["user.note"], b"a note");
    assert_eq!(s["d"].xattrs["user.dir"], b"on a dir");
    assert_eq!(s["abslink"].data, "/etc/passwd");
    assert_eq!(s["big.bin"].links, ["bighl", "hl2"]);
    assert_eq!(s["link"].kind, "dir");
}

#[test]
fn config_and_identity() {
    let Some(f) = fixture() else { return };
    let img = oci::resolve(&oci::ImageRef::parse(&format!("{}:t4", f.layout.display()))).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.layout.join("index.json")).unwrap()).unwrap();
    let listed = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "t4")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(img.manifest_digest, listed);
    assert_eq!(img.layers().len(), 4);
    assert_eq!(img.config.rootfs.diff_ids.len(), 4);
    assert_eq!(img.config.os, "linux");
}

#[test]
fn oci_archive_from_skopeo_unpacks_the_same() {
    let Some(f) = fixture() else { return };
    if !testutil::require("skopeo") {
        return;
    }
    let dir = tmp();
    let a = dir.path().join("A.tar");
    run(
        "skopeo",
        &[
            &"copy",
            &format!("oci:{}:t4", f.layout.display()),
            &format!("oci-archive:{}", a.display()),
        ],
    );
    let (ours, theirs) = both(f, "t4");
    let out = dir.path().join("from-archive");
    let (img, _) = oci::unpack_ref(&a.to_string_lossy(), &out).unwrap();
    let n = assert_same_but(&out, &theirs, &[], umoci_opaque_mtime);
    assert_same(&out, &ours, &[]);
    let dir_img =
        oci::resolve(&oci::ImageRef::parse(&format!("{}:t4", f.layout.display()))).unwrap();
    assert_eq!(img.manifest_digest, dir_img.manifest_digest);
    eprintln!("oci-archive: {n} entries equal to umoci's unpack");

    // The same archive gzip-compressed.
    let gz = dir.path().join("A.tar.gz");
    {
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&a).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
    }
    let out = dir.path().join("from-gz");
    oci::unpack_ref(&gz.to_string_lossy(), &out).unwrap();
    assert_same_but(&out, &theirs, &[], umoci_opaque_mtime);
}

fn media_types(img: &oci::Image) -> Vec<String> {
    let mut m: Vec<String> = img.layers().iter().map(|l| l.media_type.clone()).collect();
    m.dedup();
    m
}

#[test]
fn zstd_layers_from_skopeo_unpack_the_same() {
    let Some(f) = fixture() else { return };
    if !testutil::require("skopeo") {
        return;
    }
    let dir = tmp();
    let z = dir.path().join("Z");
    run(
        "skopeo",
        &[
            &"copy",
            &"--dest-compress-format",
            &"zstd",
            &format!("oci:{}:t4", f.layout.display()),
            &format!("oci:{}:t4", z.display()),
        ],
    );
    let out = dir.path().join("out");
    let (img, _) = oci::unpack_ref(&format!("{}:t4", z.display()), &out).unwrap();
    assert_eq!(
        media_types(&img),
        ["application/vnd.oci.image.layer.v1.tar+zstd"]
    );
    let (_, theirs) = both(f, "t4");
    assert_same_but(&out, &theirs, &[], umoci_opaque_mtime);
}

#[test]
fn docker_media_types_from_skopeo_unpack_the_same() {
    let Some(f) = fixture() else { return };
    if !testutil::require("skopeo") {
        return;
    }
    let dir = tmp();
    let d = dir.path().join("D");
    run(
        "skopeo",
        &[
            &"copy",
            &"--format",
            &"v2s2",
            &format!("oci:{}:t4", f.layout.display()),
            &format!("oci:{}:t4", d.display()),
        ],
    );
    let out = dir.path().join("out");
    let (img, _) = oci::unpack_ref(&format!("{}:t4", d.display()), &out).unwrap();
    assert_eq!(
        media_types(&img),
        ["application/vnd.docker.image.rootfs.diff.tar.gzip"]
    );
    let (_, theirs) = both(f, "t4");
    assert_same_but(&out, &theirs, &[], umoci_opaque_mtime);
}

/// Hand-made uncompressed layers (media type `...layer.v1.tar`, which umoci's repack never
/// writes): an opaque marker before the layer's own entries, a whiteout of a lower file,
/// a hard link to an entry of a lower layer.
#[test]
fn hand_made_uncompressed_layers_unpack_like_umoci() {
    if !testutil::require("umoci") {
        return;
    }
    let dir = tmp();
    let l = dir.path().join("L");
    write_layout(
        &l,
        &[
            layer(&[
                E::Dir("a/"),
                E::File("a/x", b"x"),
                E::Dir("a/sub/"),
                E::File("a/sub/z", b"z"),
                E::Dir("keep/"),
                E::File("keep/k", b"k"),
                E::File("f", b"f"),
            ]),
            layer(&[
                E::File("a/.wh..wh..opq", b""),
                E::File("a/new", b"new"),
                E::Dir("a/sub/"),
                E::File("a/sub/z2", b"z2"),
                E::File(".wh.f", b""),
            ]),
            layer(&[
                E::File("keep/.wh.k", b""),
                E::Hardlink("keep/h", "a/new"),
                E::File("impl/icit/file", b"parents not in the layer"),
            ]),
        ],
        "application/vnd.oci.image.layer.v1.tar",
    );
    let r = format!("{}:t", l.display());
    let ours = dir.path().join("ours");
    oci::unpack_ref(&r, &ours).unwrap();
    let theirs = dir.path().join("umoci");
    umoci(&[&"unpack", &"--image", &r, &theirs]);
    // `impl/icit/file` has no entries for its parents: umoci makes them (and touches the
    // root) at the time of the unpack; ours are the epoch, like an untouched root.
    let made_now = |l: &str| {
        ["``", "`impl`", "`impl/icit`"]
            .iter()
            .any(|p| l.starts_with(&format!("{p}: mtime: ours (0, 0), theirs (")))
    };
    let n = assert_same_but(&ours, &theirs.join("rootfs"), &[], made_now);
    eprintln!("hand-made uncompressed: {n} entries equal to umoci's unpack");
    let s = snapshot(&ours);
    let paths: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "",
            "a",
            "a/new",
            "a/sub",
            "a/sub/z2",
            "impl",
            "impl/icit",
            "impl/icit/file",
            "keep",
            "keep/h"
        ]
    );
    for p in ["", "impl", "impl/icit"] {
        assert_eq!((s[p].mtime, s[p].mode, s[p].uid), ((0, 0), 0o755, 0), "{p}");
    }
}

/// A real tree: this machine's `/etc`, `/usr/sbin`, `/usr/lib/python3.11`, setuid programs
/// and a program with file capabilities, packed by umoci in one layer, unpacked by both.
#[test]
fn a_real_tree_unpacks_like_umoci() {
    if !testutil::require("umoci") {
        return;
    }
    let dir = tmp();
    let l = dir.path().join("L");
    let li = format!("{}:real", l.display());
    let b = dir.path().join("B");
    umoci(&[&"init", &"--layout", &l]);
    umoci(&[&"new", &"--image", &li]);
    umoci(&[&"unpack", &"--image", &li, &b]);
    let rootfs = b.join("rootfs");
    let mut copied = Vec::new();
    for src in [
        "/etc",
        "/usr/sbin",
        "/usr/lib/python3.11",
        "/usr/bin/mount",
        "/usr/bin/newuidmap",
        "/usr/bin/gpasswd",
        "/usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0/gst-ptp-helper",
    ] {
        if !Path::new(src).exists() {
            continue;
        }
        let dst = rootfs.join(&src[1..]);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        run("cp", &[&"-a", &src, &dst]);
        copied.push(src);
    }
    umoci(&[&"repack", &"--image", &li, &b]);
    let ours = dir.path().join("ours");
    let (_, stats) = oci::unpack_ref(&li, &ours).unwrap();
    let theirs = dir.path().join("umoci");
    umoci(&[&"unpack", &"--image", &li, &theirs]);
    // umoci's rootfs parents it made itself (`usr`, `usr/lib`, ...) are in the layer.
    let n = assert_same(&ours, &theirs.join("rootfs"), &[]);
    assert_same(&ours, &rootfs, &["nsec"]);
    let s = snapshot(&ours);
    assert_eq!(s["usr/bin/mount"].mode & 0o4000, 0o4000);
    let ptp = "usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0/gst-ptp-helper";
    if let Some(n) = s.get(ptp) {
        assert!(n.xattrs.contains_key("security.capability"), "{n:?}");
    }
    eprintln!(
        "real tree ({}): {n} entries, {} files, {} MB equal to umoci's unpack and to the source",
        copied.join(" "),
        stats.files,
        stats.bytes / 1_000_000
    );
}
