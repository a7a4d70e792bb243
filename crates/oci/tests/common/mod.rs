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

/// One entry of a hand-made layer. Names are written verbatim into the tar header (no
/// checks), so a layer can hold what real tools would refuse to write.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn set_raw(field: &mut [u8], v: &str) {
    assert!(v.len() < field.len(), "name too long for a raw header: {v}");
    field.fill(0);
    field[..v.len()].copy_from_slice(v.as_bytes());
}

/// An uncompressed tar of these entries (mode 0644/0755, owner 0:0, mtime 1000000000).
pub fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            E::Symlink(n, t) | E::Hardlink(n, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                set_raw(&mut h.as_old_mut().linkname, t);
                (n, b"")
            }
        };
        set_raw(&mut h.as_old_mut().name, name);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

pub fn put_blob(layout: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&d[7..]), data).unwrap();
    d
}

/// Write an OCI image layout at `dir` holding one image tagged `t` whose layers are the
/// given uncompressed tars, stored with `media_type` (gzip-compressed when it ends in
/// `+gzip`). Returns the manifest digest.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], media_type: &str) -> String {
    write_layout_with(dir, layers, media_type, None)
}

/// [`write_layout`] with the config's `diff_ids` given (to make them wrong).
pub fn write_layout_with(
    dir: &Path,
    layers: &[Vec<u8>],
    media_type: &str,
    diff_ids_override: Option<&[&str]>,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(format!("\"{}\"", sha256(l)));
        let blob = if media_type.ends_with("+gzip") {
            use std::io::Write;
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(l).unwrap();
            g.finish().unwrap()
        } else {
            l.clone()
        };
        let d = put_blob(dir, &blob);
        descs.push(format!(
            r#"{{"mediaType":"{media_type}","digest":"{d}","size":{}}}"#,
            blob.len()
        ));
    }
    if let Some(o) = diff_ids_override {
        diff_ids = o.iter().map(|d| format!("\"{d}\"")).collect();
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"WorkingDir":"/w"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let cd = put_blob(dir, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let md = put_blob(dir, manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    md
}

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
