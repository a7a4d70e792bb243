//! Differential suite: the corpus (tests/corpus/build.conf) applied by the real
//! `systemd-tmpfiles --root=DIR --create --boot` and by Keel to two identical fresh roots;
//! the trees must agree entry by entry.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tmpfiles::apply;
use tmpfiles::plan::Options;

#[path = "differential/scenarios.rs"]
mod scenarios;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nkeelsvc:x:4242:4343::/nonexistent:/usr/sbin/nologin\nkeeldev:x:4444:4444::/:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nadm:x:4:\nkeelgrp:x:4343:\nkeeldev:x:4444:\n";

/// ACL entries as (tag, perm, id) in the kernel's xattr format (`id` 0xFFFFFFFF for the
/// unqualified ones); written independently of the crate under test.
fn acl_bytes(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut b = 2u32.to_le_bytes().to_vec();
    for (t, p, i) in entries {
        b.extend_from_slice(&t.to_le_bytes());
        b.extend_from_slice(&p.to_le_bytes());
        b.extend_from_slice(&i.to_le_bytes());
    }
    b
}

/// An ACL xattr value as text (`u:4242:rw-,...`), entries in stored order.
fn acl_text(b: &[u8]) -> String {
    if b.len() < 4 || !(b.len() - 4).is_multiple_of(8) {
        return format!("malformed {b:?}");
    }
    let mut out = vec![format!(
        "v{}",
        u32::from_le_bytes(b[..4].try_into().unwrap())
    )];
    for c in b[4..].chunks_exact(8) {
        let t = u16::from_le_bytes([c[0], c[1]]);
        let p = u16::from_le_bytes([c[2], c[3]]);
        let id = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        let tag = match t {
            0x01 | 0x02 => "u",
            0x04 | 0x08 => "g",
            0x10 => "m",
            0x20 => "o",
            _ => "?",
        };
        let q = if id == u32::MAX {
            String::new()
        } else {
            id.to_string()
        };
        let bit = |m: u16, ch: char| if p & m != 0 { ch } else { '-' };
        out.push(format!(
            "{tag}:{q}:{}{}{}",
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        ));
    }
    out.join(",")
}

fn set_acl(root: &Path, p: &str, name: &str, entries: &[(u16, u16, u32)]) {
    rustix::fs::setxattr(
        root.join(p),
        name,
        &acl_bytes(entries),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

const ACCESS: &str = "system.posix_acl_access";
const DEFAULT: &str = "system.posix_acl_default";
const NONE: u32 = u32::MAX;

fn file(root: &Path, p: &str, content: &str, mode: u32) {
    let f = root.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, content).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn dir(root: &Path, p: &str) {
    std::fs::create_dir_all(root.join(p)).unwrap();
}

fn link(root: &Path, p: &str, target: &str) {
    let f = root.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    symlink(target, f).unwrap();
}

fn fifo(root: &Path, p: &str) {
    let f = root.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &f,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// The same starting tree in every root.
pub fn seed(r: &Path) {
    file(r, "etc/passwd", PASSWD, 0o644);
    file(r, "etc/group", GROUP, 0o644);
    file(
        r,
        "etc/os-release",
        "ID=keel\nVERSION_ID=1\nNAME=Keel\n",
        0o644,
    );
    file(
        r,
        "etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
        0o444,
    );
    for f in [
        "file",
        "keepowner",
        "maskme",
        "w3",
        "w4",
        "pfile",
        "file2",
        "cdev",
        "cdev2",
        "bdev",
        "zfile",
        "zfile2",
        "mfile",
        "xfile",
        "x1",
        "rfile",
        "file3",
        "rep/file",
        "eqlink",
        "notdir",
        "w1target",
    ] {
        file(r, &format!("seed/{f}"), "seed\n", 0o644);
    }
    file(r, "seed/maskdir", "m\n", 0o640);
    file(r, "seed/trunc", "old content\n", 0o644);
    file(r, "seed/w1", "old\n", 0o644);
    file(r, "seed/w2", "first", 0o644);
    for f in ["a.log", "b.log", "c.txt", ".hidden.log", "d.txt"] {
        file(r, &format!("seed/glob/{f}"), "g\n", 0o644);
    }
    file(r, "seed/brace/x.txt", "b\n", 0o644);
    link(r, "seed/wlink", "w1target");
    file(r, "seed/dir/a", "a\n", 0o600);
    file(r, "seed/dir/sub/b", "b\n", 0o640);
    file(r, "seed/dir2/inside", "i\n", 0o644);
    fifo(r, "seed/fifo");
    fifo(r, "seed/fifo2file");
    link(r, "seed/link", "file");
    link(r, "seed/oldlink", "old");
    link(r, "seed/samelink", "file");
    link(r, "seed/samelink2", "file");
    link(r, "seed/zlink", "zfile");
    link(r, "seed/dirlink", "dir");
    dir(r, "seed/emptydir");
    file(r, "seed/fulldir/keep", "k\n", 0o644);
    dir(r, "seed/edir");
    file(r, "seed/zglob/1", "1\n", 0o644);
    file(r, "seed/zglob/2", "2\n", 0o600);
    file(r, "seed/ztree/a", "a\n", 0o644);
    file(r, "seed/ztree/sub/b", "b\n", 0o600);
    file(r, "seed/ztree2/a", "a\n", 0o644);
    file(r, "seed/ztree2/sub/x", "x\n", 0o755);
    file(r, "seed/xtree/a", "a\n", 0o644);
    file(r, "seed/xtree/sub/b", "b\n", 0o644);
    file(r, "seed/rtree/a", "a\n", 0o644);
    // Pre-existing ACLs for `a`/`a+`/`A` lines.
    for f in ["pre1", "pre2", "plain", "tree/x", "tree/sub/y", "tree2/x"] {
        file(r, &format!("seed/acl/{f}"), "acl\n", 0o644);
    }
    dir(r, "seed/acl/predir");
    let extended = [
        (0x01, 6, NONE),
        (0x02, 7, 4242),
        (0x04, 4, NONE),
        (0x10, 4, NONE),
        (0x20, 4, NONE),
    ];
    set_acl(r, "seed/acl/pre1", ACCESS, &extended);
    set_acl(r, "seed/acl/pre2", ACCESS, &extended);
    set_acl(r, "seed/acl/tree/x", ACCESS, &extended);
    set_acl(
        r,
        "seed/acl/predir",
        DEFAULT,
        &[
            (0x01, 7, NONE),
            (0x04, 5, NONE),
            (0x08, 5, 4343),
            (0x10, 5, NONE),
            (0x20, 5, NONE),
        ],
    );
    set_acl(
        r,
        "seed/acl/tree2",
        DEFAULT,
        &[(0x01, 7, NONE), (0x04, 0, NONE), (0x20, 0, NONE)],
    );
    file(r, "usr/share/factory/etc/factory.conf", "factory\n", 0o644);
    file(r, "usr/share/factory/srv/tree/x", "x\n", 0o644);
    file(r, "usr/share/factory/srv/tree/y/z", "z\n", 0o600);
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    rdev: Option<u64>,
    /// user.* xattrs (text, or the bytes when not UTF-8) and the ACLs, decoded.
    xattrs: BTreeMap<String, String>,
}

fn xattrs(p: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(p, &mut buf) else {
        return out;
    };
    for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let acl = name == ACCESS || name == DEFAULT;
        if !name.starts_with("user.") && !acl {
            continue;
        }
        let mut v = vec![0u8; 4096];
        if let Ok(k) = rustix::fs::lgetxattr(p, name.as_str(), &mut v) {
            // ACLs compared byte for byte, shown decoded.
            let value = if acl {
                acl_text(&v[..k])
            } else {
                String::from_utf8(v[..k].to_vec())
                    .unwrap_or_else(|e| format!("{:?}", e.into_bytes()))
            };
            out.insert(name, value);
        }
    }
    out
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                stack.push(p.clone());
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "chardev"
            } else if ft.is_block_device() {
                "blockdev"
            } else {
                "other"
            };
            let node = Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.mode() & 0o7777
                },
                uid: md.uid(),
                gid: md.gid(),
                content: ft.is_file().then(|| std::fs::read(&p).unwrap()),
                target: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
                rdev: (ft.is_char_device() || ft.is_block_device()).then(|| md.rdev()),
                xattrs: xattrs(&p),
            };
            out.insert(p.strip_prefix(root).unwrap().display().to_string(), node);
        }
    }
    out
}

fn differences(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) -> Vec<String> {
    let mut diffs = Vec::new();
    for (p, n) in a {
        match b.get(p) {
            None => diffs.push(format!("/{p}: systemd made {n:?}, Keel made nothing")),
            Some(m) if m != n => {
                diffs.push(format!("/{p}:\n    systemd: {n:?}\n    keel:    {m:?}"))
            }
            _ => {}
        }
    }
    for (p, m) in b {
        if !a.contains_key(p) {
            diffs.push(format!("/{p}: systemd made nothing, Keel made {m:?}"));
        }
    }
    diffs
}

/// Run both on fresh seeded roots with the given config; returns (diffs, exit codes).
pub fn compare(config: &str, opts_args: &[&str], opts: &Options) -> (Vec<String>, i32, i32) {
    let (diffs, sd, keel, _) = compare_trees(config, opts_args, opts);
    (diffs, sd, keel)
}

/// As [`compare`], also returning systemd's tree.
fn compare_trees(
    config: &str,
    opts_args: &[&str],
    opts: &Options,
) -> (Vec<String>, i32, i32, BTreeMap<String, Node>) {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("corpus.conf");
    std::fs::write(&conf, config).unwrap();
    let (sd, kl) = (t.path().join("systemd"), t.path().join("keel"));
    seed(&sd);
    seed(&kl);
    let out = exec::Cmd::new("systemd-tmpfiles")
        .arg(format!("--root={}", sd.display()))
        .args(["--create", "--boot"])
        .args(opts_args)
        .arg(&conf)
        .env_remove("TMPDIR")
        .env_remove("CREDENTIALS_DIRECTORY")
        .ok_codes(&[0, 65, 73])
        .output()
        .expect("systemd-tmpfiles runs");
    let sd_code = out.status.code().unwrap_or(-1);
    let root = apply::open_root(&kl).unwrap();
    let report = apply::apply_files(
        &root,
        &[(conf.display().to_string(), config.as_bytes().to_vec())],
        opts,
        &apply::host_facts(),
    );
    let sd_tree = tree(&sd);
    (
        differences(&sd_tree, &tree(&kl)),
        sd_code,
        report.exit_code(),
        sd_tree,
    )
}

fn corpus() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/build.conf"))
        .unwrap()
}

#[test]
fn corpus_is_large_enough() {
    let n = corpus()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    assert!(n >= 200, "{n} lines");
}

#[test]
fn corpus_agrees_with_systemd_tmpfiles() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    let opts = Options {
        boot: true,
        ..Options::default()
    };
    let (diffs, sd, keel, sd_tree) = compare_trees(&corpus(), &[], &opts);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(sd, keel, "exit codes: systemd {sd}, keel {keel}");
    // The ACL lines did something (the filesystem supports ACLs and systemd applied
    // them): the comparison above covered real ACLs, not two empty trees.
    let acls = |name: &str| {
        sd_tree
            .values()
            .filter(|n| n.xattrs.contains_key(name))
            .count()
    };
    if std::env::var_os("KEEL_SHOW_ACLS").is_some() {
        for (p, n) in sd_tree.iter().filter(|(p, _)| p.contains("acl")) {
            eprintln!("/{p} {:o} {:?}", n.mode, n.xattrs);
        }
    }
    assert!(
        acls(ACCESS) >= 25 && acls(DEFAULT) >= 8,
        "systemd set {} access and {} default ACLs",
        acls(ACCESS),
        acls(DEFAULT)
    );
}

/// The one deliberate divergence: systemd 252 resolves ACL names with the build host's
/// NSS (`acl_from_text()`), Keel in the target root's databases. A user only the root
/// has: systemd warns and sets nothing, Keel sets the root's id.
#[test]
fn acl_names_come_from_the_target_root() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("keelsvc:")),
        "the build host has a keelsvc user: this test needs a name only the root has"
    );
    let opts = Options {
        boot: true,
        ..Options::default()
    };
    let conf = "f /only 0644\na /only - - - - u:keelsvc:rw\n";
    let (diffs, sd, keel, sd_tree) = compare_trees(conf, &[], &opts);
    assert_eq!((sd, keel), (0, 0));
    assert!(!sd_tree["only"].xattrs.contains_key(ACCESS));
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(
        diffs[0]
            .contains("\"system.posix_acl_access\": \"v2,u::rw-,u:4242:rw-,g::r--,m::rw-,o::r--\""),
        "{}",
        diffs[0]
    );
}

#[test]
fn prefixes_agree_with_systemd_tmpfiles() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    let opts = Options {
        boot: true,
        prefixes: vec!["/new".into(), "/seed".into()],
        exclude_prefixes: vec![
            "/new/files".into(),
            "/seed/glob".into(),
            "/new/bulk/e1".into(),
        ],
    };
    let args = [
        "--prefix=/new",
        "--prefix=/seed",
        "--exclude-prefix=/new/files",
        "--exclude-prefix=/seed/glob",
        "--exclude-prefix=/new/bulk/e1",
    ];
    let (diffs, sd, keel) = compare(&corpus(), &args, &opts);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert_eq!(sd, keel);
}

/// ACL texts at the edges of libacl's grammar (blanks, comments, numbers, escapes,
/// repeated and missing fields), each on its own file: both must set the same ACL or
/// refuse the same text.
#[test]
fn acl_syntax_agrees_with_systemd_tmpfiles() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    let texts = [
        "u:4242:rw #comment",
        "u :4242:rw",
        "u: 4242:rw",
        "u:4242 :rw",
        "u:4242: rw",
        "user:4242:rw-x",
        "mask:rw,u:4242:r",
        "m:rw,u:4242:r",
        "o::",
        "o:",
        "u::",
        "other::rwx,other::r",
        "g:4343:rwx,g:4343:r",
        "u:4242:r,d:",
        "d:",
        "default:",
        "d:u::rwx,d:u::r",
        "u:+4242:r",
        "u:0x:r",
        "u:08:r",
        "u:077:r",
        "u:4294967295:r",
        "u:4294967296:r",
        "u:4294967297:r",
        "u:99999999999999999999:r",
        "u:-0x1:r",
        "u:\\064242:r",
        "U::rw",
        "g::r, u:4242:rw",
        "u:4242:r,,,",
        "u:4242:r;g::r",
        "u:4242:r g:4343:w",
        "group:daemon:r",
        "g:root:rwx,u:root:r",
        "u:4242:---",
        "u:4242:-",
        "u:4242:r--x",
        "us:4242:r",
        "useR:4242:r",
        "u:4242:wr",
        "u:4242:xwr",
        "default:user:4242:r",
        "d :u:4242:r",
        "m::x,g:4343:rwx,u:4242:rw",
        "u::r,g::r,o::r,m::r",
    ];
    let mut conf = String::new();
    for (i, t) in texts.iter().enumerate() {
        conf.push_str(&format!(
            "d /e/{i} 0755\na /e/{i} - - - - {t}\nf /f/{i} 0644\na /f/{i} - - - - {t}\n"
        ));
    }
    let opts = Options {
        boot: true,
        ..Options::default()
    };
    let (diffs, sd, keel, sd_tree) = compare_trees(&conf, &[], &opts);
    let name = |d: &String| {
        let n: usize = d[3..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        format!("`{}`: {d}", texts[n])
    };
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.iter().map(name).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(sd, keel, "exit codes: systemd {sd}, keel {keel}");
    let set = sd_tree
        .values()
        .filter(|n| n.xattrs.contains_key(ACCESS) || n.xattrs.contains_key(DEFAULT))
        .count();
    assert!(set >= 20, "systemd set ACLs on only {set} paths");
}

/// The scenarios' roots start with the users and groups only.
fn base(r: &Path) {
    file(r, "etc/passwd", PASSWD, 0o644);
    file(r, "etc/group", GROUP, 0o644);
}

/// How long Keel may take on one scenario: a line that blocks (`w` on a FIFO) fails the
/// test instead of hanging the suite.
const KEEL_LIMIT: Duration = Duration::from_secs(10);

/// Run one scenario on two fresh roots; Err describes the disagreement.
fn run_scenario(c: &scenarios::Case) -> Result<(), String> {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("case.conf");
    std::fs::write(&conf, c.conf).unwrap();
    let (sd, kl) = (t.path().join("systemd"), t.path().join("keel"));
    for r in [&sd, &kl] {
        base(r);
        (c.setup)(r);
    }
    let before = tree(&kl);
    let out = exec::Cmd::new("systemd-tmpfiles")
        .arg(format!("--root={}", sd.display()))
        .arg("--create")
        .args(c.boot.then_some("--boot"))
        .arg(&conf)
        .env_remove("TMPDIR")
        .env_remove("CREDENTIALS_DIRECTORY")
        .ok_codes(&[0, 1, 65, 73])
        .output()
        .expect("systemd-tmpfiles runs");
    let sd_code = out.status.code().unwrap_or(-1);
    let (tx, rx) = std::sync::mpsc::channel();
    let (root_path, text, boot) = (kl.clone(), c.conf.to_owned(), c.boot);
    std::thread::spawn(move || {
        let root = apply::open_root(&root_path).unwrap();
        let opts = Options {
            boot,
            ..Options::default()
        };
        let files = [("case.conf".to_owned(), text.into_bytes())];
        let _ = tx.send(apply::apply_files(
            &root,
            &files,
            &opts,
            &apply::host_facts(),
        ));
    });
    let report = rx
        .recv_timeout(KEEL_LIMIT)
        .map_err(|_| format!("Keel did not finish within {KEEL_LIMIT:?} (blocked?)"))?;
    let keel_code = report.exit_code();
    let (sd_tree, kl_tree) = (tree(&sd), tree(&kl));
    let diffs = differences(&sd_tree, &kl_tree);
    let messages = || {
        let keel: Vec<String> = (report.diagnostics.iter().map(|d| d.to_string()))
            .chain(report.failures.iter().map(|f| f.to_string()))
            .chain(report.notes.iter().map(|f| format!("note: {f}")))
            .collect();
        format!(
            "\n  systemd said: {}\n  keel said: {}",
            out.stderr.trim(),
            keel.join("; ")
        )
    };
    if let Some(text) = c.says {
        let all = messages();
        if !all.contains(text) {
            return Err(format!("Keel's report does not say {text:?}:{all}"));
        }
    }
    match &c.expect {
        scenarios::Expect::Agree => {
            if !diffs.is_empty() || sd_code != keel_code {
                return Err(format!(
                    "exit statuses: systemd {sd_code}, keel {keel_code}; {} differences:\n{}{}",
                    diffs.len(),
                    diffs.join("\n"),
                    messages()
                ));
            }
        }
        scenarios::Expect::Differ { codes, keel, .. } => {
            if (sd_code, keel_code) != *codes {
                return Err(format!(
                    "deliberate difference: exit statuses should be {codes:?}, are ({sd_code}, {keel_code}){}",
                    messages()
                ));
            }
            let ok = match keel {
                scenarios::KeelTree::Same => diffs.is_empty(),
                scenarios::KeelTree::Untouched => differences(&before, &kl_tree).is_empty(),
                scenarios::KeelTree::Check(f) => f(&kl_tree),
            };
            if !ok {
                return Err(format!(
                    "deliberate difference: Keel's tree is not as expected; against systemd's:\n{}{}",
                    diffs.join("\n"),
                    messages()
                ));
            }
        }
    }
    Ok(())
}

/// tmpfiles.d(5) line type by line type and modifier by modifier, and issue 16's eight
/// reproducers, each on its own small root: the same tree and exit status as systemd,
/// or exactly the deliberate difference docs/tmpfiles.md names.
#[test]
fn scenarios_agree_with_systemd_tmpfiles() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    // Keel's apply sets the umask for its run and puts the old one back; the same value
    // for every thread of this process keeps parallel runs from seeing another's.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let cases = scenarios::cases();
    let only = std::env::var("KEEL_SCENARIO").ok();
    let chosen: Vec<&scenarios::Case> = cases
        .iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    // Two workers: each scenario is a few small processes and syscalls.
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = [0, 1]
            .into_iter()
            .map(|k| {
                let chosen = &chosen;
                s.spawn(move || {
                    (chosen.iter().skip(k).step_by(2))
                        .filter_map(|c| run_scenario(c).err().map(|e| format!("{}: {e}", c.name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} scenarios disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Every deliberate difference a scenario shows is in docs/tmpfiles.md's list; names are
/// unique.
#[test]
fn scenario_differences_are_documented() {
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/tmpfiles.md"),
    )
    .unwrap();
    // The list says how many differences it has.
    let list = docs
        .split("Differences from systemd-tmpfiles 252")
        .nth(1)
        .and_then(|l| l.split("## ").next())
        .expect("the list of differences");
    let bullets = list.lines().filter(|l| l.starts_with("- ")).count();
    assert!(
        list.contains(&format!("all deliberate ({bullets})")),
        "docs/tmpfiles.md lists {bullets} differences and says otherwise"
    );
    // Lines are wrapped: compare with single spaces.
    let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
    let cases = scenarios::cases();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "two scenarios are named {}", c.name);
        if let scenarios::Expect::Differ { doc, .. } = &c.expect {
            assert!(
                docs.contains(doc),
                "{}: docs/tmpfiles.md does not say {doc:?}",
                c.name
            );
        }
    }
    assert!(cases.len() >= 150, "{} scenarios", cases.len());
}
