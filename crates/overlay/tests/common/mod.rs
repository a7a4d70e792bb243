//! Shared by the overlay tests: a seeded tree generator, a tree snapshot, the rsync oracle
//! and an entry-by-entry comparison.
#![allow(dead_code)]

use rustix::fs::{self as fs, AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The rsync command line the overlay stage replaces.
pub const RSYNC_ARGS: &[&str] = &["-rlptgoD", "-O", "--chown=0:0"];

/// splitmix64: small, seeded, good enough to vary trees.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Names drawn from a small pool, so that layered sources and pre-populated DESTs collide
/// often; with spaces, unicode, leading dashes, dots and a newline.
const NAMES: &[&str] = &[
    "etc",
    "usr",
    "lib",
    "bin",
    "share",
    "conf.d",
    "a",
    "b",
    "c",
    "data",
    "with space",
    "two  spaces ",
    "ünïcødé-名前",
    "émoji-🦀",
    "-leading-dash",
    "--double-dash",
    ".hidden",
    "..dots",
    "new\nline",
    "tab\tname",
    "x.conf",
    "y.service",
    "z",
    "README",
    "Makefile",
    "k1",
    "k2",
    "k3",
];

const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o644, 0o755, 0o600, 0o444, 0o4755, 0o2755, 0o6755, 0o1644, 0o000, 0o640,
];
const DIR_MODES: &[u32] = &[
    0o755, 0o755, 0o755, 0o700, 0o1777, 0o2775, 0o555, 0o750, 0o3777,
];
const OWNERS: &[(u32, u32)] = &[(0, 0), (1000, 1000), (65534, 65534), (0, 100), (12, 0)];

/// A spread of mtimes: old (1970s/80s), recent, future (2090s), with and without
/// nanoseconds.
fn mtime(rng: &mut Rng) -> (i64, u32) {
    let secs = match rng.below(5) {
        4 => -300_000_000 + rng.below(200_000_000) as i64, // 1960s: before the epoch
        0 => 1 + rng.below(400_000_000) as i64,            // 1970..1982
        1 => 1_600_000_000 + rng.below(100_000_000) as i64, // 2020s
        2 => 3_800_000_000 + rng.below(300_000_000) as i64, // 2090s
        _ => 946_684_800 + rng.below(10) as i64,           // around 2000, close values
    };
    let nsecs = if rng.chance(50) {
        0
    } else {
        rng.below(1_000_000_000) as u32
    };
    (secs, nsecs)
}

pub fn set_times(path: &Path, (secs, nsecs): (i64, u32)) {
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: secs,
            tv_nsec: nsecs as _,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: nsecs as _,
        },
    };
    fs::utimensat(CWD, path, &t, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn lchown(path: &Path, (u, g): (u32, u32)) {
    std::os::unix::fs::lchown(path, Some(u), Some(g))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn mknod(path: &Path, ft: FileType, mode: u32, dev: u64) {
    fs::mknodat(CWD, path, ft, Mode::from_raw_mode(mode), dev)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    fs::makedev(major, minor)
}

/// Generation knobs.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Approximate number of entries.
    pub entries: usize,
    pub max_depth: usize,
    /// How many multi-MiB files.
    pub big_files: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            entries: 400,
            max_depth: 4,
            big_files: 2,
        }
    }
}

/// Fill `root` (an existing directory) with a seeded random tree of every entry type.
/// Returns the number of entries made.
pub fn generate(root: &Path, seed: u64, shape: Shape) -> usize {
    let mut rng = Rng::new(seed);
    let mut made = 0usize;
    let mut dirs: Vec<(PathBuf, usize)> = vec![(root.to_owned(), 0)];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut big_left = shape.big_files;
    let mut attempts = 0;
    while made < shape.entries && attempts < shape.entries * 20 {
        attempts += 1;
        let (dir, depth) = dirs[rng.below(dirs.len() as u64) as usize].clone();
        let name = rng.pick(NAMES);
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        let roll = rng.below(100);
        match roll {
            0..=19 if depth < shape.max_depth => {
                std::fs::create_dir(&path).unwrap();
                dirs.push((path.clone(), depth + 1));
            }
            0..=49 => {
                let n = match rng.below(10) {
                    0 => 0,
                    1..=6 => rng.below(2048) as usize,
                    _ => rng.below(200_000) as usize,
                };
                let n = if big_left > 0 && (rng.chance(3) || files.len() > 40) {
                    big_left -= 1;
                    (2 << 20) + rng.below(3 << 20) as usize
                } else {
                    n
                };
                std::fs::write(&path, rng.bytes(n)).unwrap();
                files.push(path.clone());
            }
            50..=64 => {
                let target = match rng.below(5) {
                    0 => format!("/usr/share/{name}"),
                    1 => "../".repeat(1 + rng.below(6) as usize) + "etc/passwd",
                    2 => "dangling/nowhere".to_owned(),
                    3 => (*rng.pick(NAMES)).to_owned(),
                    _ => "/".to_owned(),
                };
                std::os::unix::fs::symlink(&target, &path).unwrap();
            }
            65..=71 => mknod(&path, FileType::Fifo, 0o644, 0),
            72..=76 => {
                let ft = if rng.chance(50) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                let dev = makedev(1 + rng.below(250) as u32, rng.below(4000) as u32);
                mknod(&path, ft, 0o600, dev);
            }
            77..=79 => {
                let l = std::os::unix::net::UnixListener::bind(&path);
                if l.is_err() {
                    continue; // path too long for sun_path
                }
            }
            80..=84 if !files.is_empty() => {
                // A hard link: rsync without -H copies it as a separate file.
                let f = rng.pick(&files).clone();
                std::fs::hard_link(&f, &path).unwrap();
            }
            _ => continue,
        }
        made += 1;
    }
    // Attributes last, deepest first, so directory mtimes are final.
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &all {
        let md = p.symlink_metadata().unwrap();
        let ft = md.file_type();
        lchown(p, *rng.pick(OWNERS));
        if ft.is_dir() {
            chmod(p, *rng.pick(DIR_MODES));
        } else if !ft.is_symlink() {
            chmod(p, *rng.pick(FILE_MODES));
        }
        set_times(p, mtime(&mut rng));
    }
    made
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.symlink_metadata().unwrap().is_dir() {
            collect(&p, out);
        }
        out.push(p);
    }
}

/// Pre-populate a DEST from a source tree: for entries of `src`, make in `dest` the same
/// name as something else (every type conflict), an identical or near-identical copy, or
/// leave it absent; plus DEST-only entries. Deterministic for a seed, so two DESTs made
/// with the same seed are the same tree.
/// Links that point out of DEST point at `outside`.
pub fn prepopulate(src: &Path, dest: &Path, outside: &Path, seed: u64) {
    let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
    let mut all = Vec::new();
    collect(src, &mut all);
    all.sort();
    let outside_dir = outside;
    let mut explicit = std::collections::HashSet::new();
    for p in &all {
        let rel = p.strip_prefix(src).unwrap();
        let d = dest.join(rel);
        if !d.parent().unwrap().is_dir() || d.parent().unwrap().is_symlink() {
            continue;
        }
        if d.symlink_metadata().is_ok() {
            continue;
        }
        let md = p.symlink_metadata().unwrap();
        let ft = md.file_type();
        let roll = rng.below(100);
        if roll < 40 {
            continue; // absent
        }
        if ft.is_dir() {
            match roll {
                40..=69 => std::fs::create_dir(&d).unwrap(), // existing directory
                70..=77 => std::fs::write(&d, b"file where a dir goes").unwrap(),
                78..=85 => std::os::unix::fs::symlink(outside_dir, &d).unwrap(),
                86..=90 => std::os::unix::fs::symlink("../..", &d).unwrap(),
                91..=95 => mknod(&d, FileType::Fifo, 0o644, 0),
                _ => std::os::unix::fs::symlink("dangling", &d).unwrap(),
            }
        } else if ft.is_file() {
            let content = std::fs::read(p).unwrap();
            match roll {
                40..=54 => {
                    // identical content and mtime; owner and mode may differ
                    std::fs::write(&d, &content).unwrap();
                    set_times(&d, (md.mtime(), md.mtime_nsec() as u32));
                    explicit.insert(d.clone());
                }
                55..=61 => {
                    // same size and mtime seconds, different content: quick check
                    // says unchanged, so it must NOT be rewritten
                    let mut c = content.clone();
                    if let Some(b) = c.first_mut() {
                        *b ^= 0xff;
                    }
                    std::fs::write(&d, &c).unwrap();
                    set_times(
                        &d,
                        (md.mtime(), (md.mtime_nsec() as u32 + 1) % 1_000_000_000),
                    );
                    explicit.insert(d.clone());
                }
                62..=65 => {
                    // same size, different content and mtime: must be rewritten
                    let mut c = content.clone();
                    if let Some(b) = c.last_mut() {
                        *b ^= 0x55;
                    }
                    std::fs::write(&d, &c).unwrap();
                    set_times(&d, (md.mtime() + 3600, 0));
                    explicit.insert(d.clone());
                }
                66..=69 => {
                    std::fs::write(&d, b"older content").unwrap();
                    set_times(&d, (md.mtime() - 1, 0));
                    explicit.insert(d.clone());
                }
                70..=74 => std::fs::create_dir(&d).unwrap(), // empty dir: replaced
                75..=79 => {
                    // non-empty dir: rsync refuses to delete it
                    std::fs::create_dir(&d).unwrap();
                    std::fs::write(d.join("inside"), b"kept").unwrap();
                }
                80..=86 => std::os::unix::fs::symlink(outside_dir.join("f"), &d).unwrap(),
                87..=92 => mknod(&d, FileType::Fifo, 0o600, 0),
                _ => mknod(&d, FileType::CharacterDevice, 0o600, makedev(1, 3)),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(p).unwrap();
            match roll {
                40..=59 => std::os::unix::fs::symlink(&target, &d).unwrap(), // same target
                60..=69 => std::os::unix::fs::symlink("other/target", &d).unwrap(),
                70..=79 => std::fs::create_dir(&d).unwrap(),
                80..=84 => {
                    std::fs::create_dir(&d).unwrap();
                    std::fs::write(d.join("inside"), b"kept").unwrap();
                }
                _ => std::fs::write(&d, b"a file where a link goes").unwrap(),
            }
        } else {
            // fifo, socket, device
            match roll {
                40..=59 => {
                    // same type, same device numbers
                    if ft_of(&md) == FileType::Socket {
                        let _ = std::os::unix::net::UnixListener::bind(&d);
                    } else {
                        mknod(&d, ft_of(&md), 0o600, md.rdev());
                    }
                }
                60..=69 if ft_of(&md) == FileType::CharacterDevice => {
                    mknod(&d, FileType::CharacterDevice, 0o644, md.rdev() + 1)
                }
                60..=79 => std::fs::write(&d, b"file where a node goes").unwrap(),
                80..=89 => std::fs::create_dir(&d).unwrap(),
                _ => std::os::unix::fs::symlink("/dev/null", &d).unwrap(),
            }
        }
        if d.symlink_metadata().is_err() {
            continue;
        }
        let dmd = d.symlink_metadata().unwrap();
        lchown(&d, *rng.pick(OWNERS));
        if dmd.is_dir() {
            chmod(&d, *rng.pick(DIR_MODES));
        } else if !dmd.file_type().is_symlink() && rng.chance(50) {
            chmod(&d, *rng.pick(FILE_MODES));
        }
    }
    // DEST-only entries, untouched by a sync.
    for i in 0..20 {
        let name = format!("dest-only-{i}");
        let d = if i % 2 == 0 {
            dest.join(&name)
        } else {
            dest.join("etc").join(&name)
        };
        if !d.parent().unwrap().is_dir() || d.parent().unwrap().is_symlink() {
            continue;
        }
        if i % 3 == 0 {
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
        } else {
            std::fs::write(&d, b"dest only").unwrap();
        }
        lchown(&d, (1000, 1000));
    }
    // Every other mtime last (old, deterministic values), deepest first.
    let mut all = Vec::new();
    collect(dest, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all.iter().chain([dest.to_path_buf()].iter()) {
        if !explicit.contains(p) {
            set_times(p, (1_000_000_000 + rng.below(1000) as i64, 0));
        }
    }
}

fn ft_of(md: &std::fs::Metadata) -> FileType {
    FileType::from_raw_mode(md.mode())
}

/// One entry of a tree as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// (secs, nsecs); for directories see [`DirTime`].
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: Option<Vec<u8>>,
    pub link: Option<OsString>,
    pub rdev: Option<u64>,
    pub ino: u64,
    pub ctime: (i64, i64),
}

pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Every entry under `root` (root itself as ""), never following a symlink.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut map = BTreeMap::new();
    snap_into(root, Path::new(""), &mut map);
    map
}

fn snap_into(root: &Path, rel: &Path, map: &mut Snapshot) {
    let p = root.join(rel);
    let md = p
        .symlink_metadata()
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char device"
    } else {
        "block device"
    };
    let e = Entry {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: if ft.is_file() { md.size() } else { 0 },
        content: ft.is_file().then(|| std::fs::read(&p).unwrap_or_default()),
        link: ft
            .is_symlink()
            .then(|| std::fs::read_link(&p).unwrap().into_os_string()),
        rdev: (ft.is_char_device() || ft.is_block_device()).then(|| md.rdev()),
        ino: md.ino(),
        ctime: (md.ctime(), md.ctime_nsec()),
    };
    map.insert(rel.to_owned(), e);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            snap_into(root, &rel.join(n), map);
        }
    }
}

/// Check that a generated source tree holds every kind of entry the suite promises.
pub fn assert_coverage(root: &Path) {
    let snap = snapshot(root);
    let mut missing = Vec::new();
    for kind in [
        "file",
        "directory",
        "symlink",
        "fifo",
        "socket",
        "char device",
        "block device",
    ] {
        if !snap.values().any(|e| e.kind == kind) {
            missing.push(kind.to_owned());
        }
    }
    type Check<'a> = (&'a str, &'a dyn Fn(&Entry) -> bool);
    let checks: [Check; 6] = [
        ("setuid file", &|e| e.kind == "file" && e.mode & 0o4000 != 0),
        ("sticky directory", &|e| {
            e.kind == "directory" && e.mode & 0o1000 != 0
        }),
        ("multi-MiB file", &|e| e.size >= 2 << 20),
        ("empty file", &|e| e.kind == "file" && e.size == 0),
        ("pre-1970 mtime", &|e| e.mtime.0 < 0),
        ("post-2090 mtime", &|e| e.mtime.0 > 3_800_000_000),
    ];
    for (what, f) in checks {
        if !snap.values().any(f) {
            missing.push(what.to_owned());
        }
    }
    let hard_linked = std::collections::HashSet::<u64>::new();
    let mut seen = hard_linked;
    let has_hard_link = snap
        .values()
        .filter(|e| e.kind == "file")
        .any(|e| !seen.insert(e.ino));
    if !has_hard_link {
        missing.push("hard link".to_owned());
    }
    assert!(missing.is_empty(), "generated tree lacks: {missing:?}");
}

/// How a directory's mtime came out, relative to before the sync.
#[derive(Debug, PartialEq, Eq)]
pub enum DirTime {
    /// Same value as before the sync (an existing directory nothing was added to).
    Kept,
    /// Set by the kernel during the sync (new directory, or an entry added/renamed inside).
    Fresh,
    /// Anything else: a copied source mtime, say. Always a failure.
    Other((i64, i64)),
}

pub fn dir_time(rel: &Path, e: &Entry, before: &Snapshot, start: (i64, i64)) -> DirTime {
    match before.get(rel) {
        Some(b) if b.kind == "directory" && b.mtime == e.mtime => DirTime::Kept,
        _ if e.mtime >= start => DirTime::Fresh,
        _ => DirTime::Other(e.mtime),
    }
}

pub fn now() -> (i64, i64) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // Filesystem timestamps are coarse (jiffies): allow 20 ms of slack.
    let ns = t.as_nanos() as i64 - 20_000_000;
    (ns / 1_000_000_000, ns % 1_000_000_000)
}

fn show(p: &Path) -> String {
    format!("{:?}", p.as_os_str())
}

/// Compare two synced trees entry by entry: the path set, type, mode, owner, mtime of
/// non-directories, content, link target, device numbers; directory mtimes by class
/// against the trees before the sync. Returns one line per difference.
pub fn diff(
    rsync: &Snapshot,
    keel: &Snapshot,
    rsync_before: &Snapshot,
    keel_before: &Snapshot,
    start: (i64, i64),
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, a) in rsync {
        let Some(b) = keel.get(p) else {
            out.push(format!("{}: only in rsync's DEST ({})", show(p), a.kind));
            continue;
        };
        let mut field = |what: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{}: {what}: rsync {x}, keel {y}", show(p)));
            }
        };
        field("type", a.kind.into(), b.kind.into());
        if a.kind != b.kind {
            continue;
        }
        field("mode", format!("{:o}", a.mode), format!("{:o}", b.mode));
        field(
            "uid:gid",
            format!("{}:{}", a.uid, a.gid),
            format!("{}:{}", b.uid, b.gid),
        );
        field("size", a.size.to_string(), b.size.to_string());
        if a.content != b.content {
            field(
                "content",
                format!("{} bytes", a.size),
                format!("{} bytes, different", b.size),
            );
        }
        field(
            "link target",
            format!("{:?}", a.link),
            format!("{:?}", b.link),
        );
        field("rdev", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
        if a.kind == "directory" {
            let ta = dir_time(p, a, rsync_before, start);
            let tb = dir_time(p, b, keel_before, start);
            field("directory mtime", format!("{ta:?}"), format!("{tb:?}"));
        } else {
            field("mtime", format!("{:?}", a.mtime), format!("{:?}", b.mtime));
        }
    }
    for (p, b) in keel {
        if !rsync.contains_key(p) {
            out.push(format!("{}: only in keel's DEST ({})", show(p), b.kind));
        }
    }
    out
}

/// What rsync reported for one run.
pub struct RsyncRun {
    pub code: i32,
    pub stderr: String,
}

/// Run the real `rsync -rlptgoD -O --chown=0:0 SRC/ DEST/`.
pub fn rsync(src: &Path, dest: &Path) -> RsyncRun {
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dest.as_os_str().to_owned();
    d.push("/");
    let out = Command::new("rsync")
        .args(RSYNC_ARGS)
        .arg(&s)
        .arg(&d)
        .env("LC_ALL", "C")
        .output()
        .expect("run rsync");
    RsyncRun {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether a path in `OsStr` form has any non-UTF-8 (never, for the names above).
pub fn os(s: &str) -> &OsStr {
    OsStr::from_bytes(s.as_bytes())
}
