//! Shared by the integration tests: a tree snapshot to compare unpacked roots entry by
//! entry, the real tools, and hand-made layers and layouts.
#![allow(dead_code)]

use rustix::fs::{self as fs, FileType};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One entry of a tree, everything the unpack must preserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    /// sha256 of a file's content, a symlink's target, a device's major:minor.
    pub data: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// The other paths that are hard links to the same inode.
    pub links: Vec<String>,
}

fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "socket"
    }
}

pub fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = fs::llistxattr(p, &mut names).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let len = fs::lgetxattr(p, name, &mut v).unwrap();
        out.insert(
            String::from_utf8_lossy(name).into_owned(),
            v[..len].to_vec(),
        );
    }
    out
}

/// Every entry under `root` (the root itself is ""), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    for paths in inodes.values().filter(|p| p.len() > 1) {
        for p in paths {
            let mut others: Vec<String> = paths.iter().filter(|o| *o != p).cloned().collect();
            others.sort();
            out.get_mut(p).unwrap().links = others;
        }
    }
    out
}

fn walk(
    root: &Path,
    p: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let k = kind(m.file_type());
    let data = match k {
        "file" => format!("{:x}", Sha256::digest(std::fs::read(p).unwrap())),
        "symlink" => std::fs::read_link(p)
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        "char" | "block" => format!("{}:{}", fs::major(m.rdev() as _), fs::minor(m.rdev() as _)),
        _ => String::new(),
    };
    if k != "dir" {
        inodes
            .entry((m.dev(), m.ino()))
            .or_default()
            .push(rel.clone());
    }
    out.insert(
        rel,
        Node {
            kind: k,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), m.mtime_nsec()),
            data,
            xattrs: xattrs(p),
            links: Vec::new(),
        },
    );
    if k == "dir" {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for c in names {
            walk(root, &c, out, inodes);
        }
    }
}

/// The differences between two snapshots, one line each; `ignore` drops fields by name
/// ("mtime", "root"; "nsec": theirs is a source tree, whose mtime ours must hold rounded or
/// truncated to a whole second).
pub fn diff(
    a: &BTreeMap<String, Node>,
    b: &BTreeMap<String, Node>,
    ignore: &[&str],
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, na) in a {
        if ignore.contains(&"root") && p.is_empty() {
            continue;
        }
        let Some(nb) = b.get(p) else {
            out.push(format!("only in ours: `{p}`"));
            continue;
        };
        let mut f = |name: &str, x: String, y: String| {
            if x != y && !ignore.contains(&name) {
                out.push(format!("`{p}`: {name}: ours {x}, theirs {y}"));
            }
        };
        f("kind", na.kind.into(), nb.kind.into());
        f("mode", format!("{:o}", na.mode), format!("{:o}", nb.mode));
        f(
            "owner",
            format!("{}:{}", na.uid, na.gid),
            format!("{}:{}", nb.uid, nb.gid),
        );
        if ignore.contains(&"nsec") {
            // Tar headers hold whole seconds. umoci writes a source tree's mtime rounded to
            // the nearest second (Go's archive/tar), but its diff compares whole seconds
            // (mtree `tar_time`), so a directory changed within the second of its previous
            // mtime is not written again and keeps the truncated value.
            let (s, ns) = nb.mtime;
            let ok =
                na.mtime.1 == 0 && (na.mtime.0 == s || (ns >= 500_000_000 && na.mtime.0 == s + 1));
            if !ok {
                f(
                    "mtime",
                    format!("{:?}", na.mtime),
                    format!("{:?}", nb.mtime),
                );
            }
        } else {
            f(
                "mtime",
                format!("{:?}", na.mtime),
                format!("{:?}", nb.mtime),
            );
        }
        f("data", na.data.clone(), nb.data.clone());
        f(
            "xattrs",
            format!("{:?}", na.xattrs),
            format!("{:?}", nb.xattrs),
        );
        f(
            "links",
            format!("{:?}", na.links),
            format!("{:?}", nb.links),
        );
    }
    for p in b.keys() {
        if !a.contains_key(p) {
            out.push(format!("only in theirs: `{p}`"));
        }
    }
    out
}

pub fn assert_same(ours: &Path, theirs: &Path, ignore: &[&str]) -> usize {
    assert_same_but(ours, theirs, ignore, |_| false)
}

/// [`assert_same`], with differences for which `known` returns true (each one explained
/// at the call site) allowed.
pub fn assert_same_but(
    ours: &Path,
    theirs: &Path,
    ignore: &[&str],
    known: impl Fn(&str) -> bool,
) -> usize {
    let a = snapshot(ours);
    let b = snapshot(theirs);
    let d: Vec<String> = diff(&a, &b, ignore)
        .into_iter()
        .filter(|l| !known(l))
        .collect();
    assert!(
        d.is_empty(),
        "`{}` and `{}` differ ({} entries vs {}):\n{}",
        ours.display(),
        theirs.display(),
        a.len(),
        b.len(),
        d.join("\n")
    );
    a.len()
}

pub fn run(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let mut c = exec::Cmd::new(program);
    for a in args {
        c = c.arg(a);
    }
    match c.output() {
        Ok(o) => o.stdout,
        Err(e) => panic!("{e}"),
    }
}

/// Hand-made layers and layouts (shared with `keel vm`'s tests).
#[allow(unused_imports)]
pub use testutil::oci::{layer, put_blob, sha256, write_layout, write_layout_with, E};

pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("oci-test.")
        .tempdir_in(std::env::temp_dir())
        .unwrap()
}

pub fn path(p: &Path, rel: &str) -> PathBuf {
    p.join(rel)
}

/// Whether anything named `NAME.tmp-*` (a temporary tree) is left in `dir`.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

pub fn ftype(p: &Path) -> Option<FileType> {
    fs::lstat(p)
        .ok()
        .map(|s| FileType::from_raw_mode(s.st_mode))
}
