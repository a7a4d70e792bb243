//! A layer is untrusted input: entries that would write outside the tree are refused with an
//! error naming the layer and the entry, nothing outside DEST changes, nothing is left at
//! DEST; symlinks placed by a layer are never followed.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

struct Scene {
    _dir: tempfile::TempDir,
    top: PathBuf,
}

impl Scene {
    /// `TOP/sentinel/precious`, `TOP/outside`; the image goes to `TOP/img`, DEST is
    /// `TOP/root`.
    fn new() -> Scene {
        let dir = tmp();
        let top = dir.path().to_owned();
        std::fs::create_dir(top.join("sentinel")).unwrap();
        std::fs::write(top.join("sentinel/precious"), b"keep me\n").unwrap();
        std::fs::write(top.join("outside"), b"outside\n").unwrap();
        Scene { _dir: dir, top }
    }

    fn t(&self, rel: &str) -> String {
        self.top.join(rel).to_string_lossy().into_owned()
    }

    /// Everything outside DEST and the image.
    fn outside(&self) -> Vec<String> {
        let s = snapshot(&self.top);
        s.iter()
            .filter(|(p, _)| !p.is_empty() && !p.starts_with("img") && !p.starts_with("root"))
            .map(|(p, n)| format!("{p} {n:?}"))
            .collect()
    }

    fn unpack(&self, layers: &[Vec<u8>]) -> Result<oci::UnpackStats, oci::Error> {
        write_layout(&self.top.join("img"), layers, TAR);
        oci::unpack_ref(&format!("{}:t", self.t("img")), &self.top.join("root")).map(|(_, s)| s)
    }

    /// The last layer is refused at `entry`; nothing changed outside, nothing at DEST.
    fn refused(&self, layers: &[Vec<u8>], entry: &str) -> String {
        let before = self.outside();
        let e = self.unpack(layers).unwrap_err();
        let msg = e.to_string();
        let digest = sha256(layers.last().unwrap());
        match &e {
            oci::Error::Unsafe {
                digest: d,
                entry: en,
                ..
            } => {
                assert_eq!(d, &digest, "{msg}");
                assert_eq!(en, entry, "{msg}");
            }
            other => panic!("expected a refusal, got: {other}"),
        }
        assert!(msg.contains(&digest) && msg.contains(entry), "{msg}");
        assert_eq!(
            self.outside(),
            before,
            "something outside DEST changed: {msg}"
        );
        assert!(!self.top.join("root").exists(), "DEST exists after: {msg}");
        assert!(
            leftovers(&self.top).is_empty(),
            "{:?}",
            leftovers(&self.top)
        );
        assert!(!self.top.join("escape").exists());
        msg
    }

    fn root(&self) -> PathBuf {
        self.top.join("root")
    }
}

#[test]
fn dotdot_names_are_refused() {
    let s = Scene::new();
    let m = s.refused(&[layer(&[E::File("../escape", b"x")])], "../escape");
    assert!(m.contains("`..` component"), "{m}");
    let s = Scene::new();
    s.refused(
        &[layer(&[E::Dir("a/"), E::File("a/../../escape", b"x")])],
        "a/../../escape",
    );
}

#[test]
fn absolute_names_are_rooted_at_the_tree() {
    // `umoci insert` writes names like `/` and `/etc/x`: they mean the tree's root.
    let s = Scene::new();
    let before = s.outside();
    let abs = s.t("escape");
    s.unpack(&[layer(&[
        E::Dir("/"),
        E::Dir("/etc/"),
        E::File("/etc/x", b"x"),
        E::File(&abs, b"y"),
        E::Hardlink("/etc/y", "/etc/x"),
    ])])
    .unwrap();
    assert_eq!(std::fs::read(s.root().join("etc/x")).unwrap(), b"x");
    assert_eq!(std::fs::read(s.root().join("etc/y")).unwrap(), b"x");
    let inside = s.root().join(abs.trim_start_matches('/'));
    assert_eq!(std::fs::read(&inside).unwrap(), b"y");
    assert_eq!(s.outside(), before, "something outside DEST changed");
    assert!(!s.top.join("escape").exists());
    let s = Scene::new();
    let m = s.refused(&[layer(&[E::File("/../escape", b"x")])], "/../escape");
    assert!(m.contains("`..` component"), "{m}");
}

#[test]
fn an_entry_below_a_symlink_of_the_same_layer_is_refused() {
    let s = Scene::new();
    let top = s.t("");
    let m = s.refused(
        &[layer(&[E::Symlink("x", &top), E::File("x/escape", b"x")])],
        "x/escape",
    );
    assert!(m.contains("`x` is a symlink"), "{m}");
    let s = Scene::new();
    s.refused(
        &[layer(&[E::Symlink("x", "/"), E::File("x/escape", b"x")])],
        "x/escape",
    );
    // ROOT/a/x -> ../.. is TOP
    let s = Scene::new();
    s.refused(
        &[layer(&[
            E::Dir("a/"),
            E::Symlink("a/x", "../.."),
            E::File("a/x/escape", b"x"),
        ])],
        "a/x/escape",
    );
}

#[test]
fn an_entry_below_a_symlink_of_a_lower_layer_is_refused() {
    let s = Scene::new();
    let top = s.t("");
    s.refused(
        &[
            layer(&[E::Symlink("x", &top)]),
            layer(&[
                E::Dir("x/"),
                E::File("x/ok", b"fine"),
                E::File("x/../escape", b"x"),
            ]),
        ],
        "x/../escape",
    );
    let s = Scene::new();
    s.refused(
        &[
            layer(&[E::Symlink("x", &top)]),
            layer(&[E::File("x/escape", b"x")]),
        ],
        "x/escape",
    );
}

#[test]
fn hard_links_outside_are_refused() {
    let s = Scene::new();
    s.refused(&[layer(&[E::Hardlink("h", "../outside")])], "h");
    let s = Scene::new();
    let abs = s.t("outside");
    s.refused(&[layer(&[E::Hardlink("h", &abs)])], "h");
    let s = Scene::new();
    let top = s.t("");
    let m = s.refused(
        &[layer(&[
            E::Symlink("s", &top),
            E::Hardlink("h", "s/outside"),
        ])],
        "h",
    );
    assert!(m.contains("symlinks are never followed"), "{m}");
}

#[test]
fn whiteouts_of_dot_names_are_refused() {
    let s = Scene::new();
    s.refused(
        &[layer(&[E::Dir("a/"), E::File("a/.wh..", b"")])],
        "a/.wh..",
    );
}

#[test]
fn whiteouts_and_opaque_markers_below_a_symlink_delete_nothing_outside() {
    let s = Scene::new();
    let sentinel = s.t("sentinel");
    let before = s.outside();
    s.unpack(&[
        layer(&[E::Symlink("x", &sentinel)]),
        layer(&[
            E::File("x/.wh.precious", b""),
            E::File("x/.wh..wh..opq", b""),
        ]),
    ])
    .unwrap();
    assert_eq!(s.outside(), before);
    assert_eq!(
        std::fs::read_link(s.root().join("x")).unwrap(),
        Path::new(&sentinel)
    );
}

#[test]
fn entries_over_symlinks_replace_the_symlink() {
    let s = Scene::new();
    let sentinel = s.t("sentinel");
    let outside = s.t("outside");
    let before = s.outside();
    s.unpack(&[
        layer(&[
            E::Symlink("x", &sentinel),
            E::Symlink("y", &outside),
            E::Symlink("z", &outside),
        ]),
        layer(&[
            E::Dir("x/"),
            E::File("x/new", b"inside"),
            E::File("y", b"pwned?"),
            E::Hardlink("h", "z"),
        ]),
    ])
    .unwrap();
    assert_eq!(s.outside(), before);
    let r = s.root();
    assert_eq!(std::fs::read(r.join("x/new")).unwrap(), b"inside");
    assert_eq!(std::fs::read(r.join("y")).unwrap(), b"pwned?");
    assert_eq!(ftype(&r.join("x")), Some(rustix::fs::FileType::Directory));
    // A hard link to a symlink links the symlink itself.
    assert_eq!(
        std::fs::read_link(r.join("h")).unwrap(),
        Path::new(&outside)
    );
}

#[test]
fn aufs_metadata_is_not_part_of_the_tree() {
    let s = Scene::new();
    let stats = s
        .unpack(&[layer(&[
            E::Dir(".wh..wh.plnk/"),
            E::File(".wh..wh.plnk/123.456", b"aufs hard link store"),
            E::File("kept", b"k"),
        ])])
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(s.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(stats.files, 1);
}
