//! Reading a root's configuration and applying a [`Plan`] to the root with systemd's
//! `--create` semantics, through [`Root`] handles only.

use crate::acl::{self, Acl};
use crate::config::{self, Found, DIRS};
use crate::entry::Mode as EMode;
use crate::plan::{self, Arg, Diagnostic, Item, Options, Plan, Source, Users};
use crate::root::{DirRef, Root, Walk, WalkError};
use crate::spec::{Host, Specifiers};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Errors that stop the whole run (the root cannot be opened or its configuration read).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open root `{}`: {source}", path.display())]
    OpenRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{path}` in root `{}`: {message}", root.display())]
    Read {
        root: PathBuf,
        path: String,
        message: String,
    },
    #[error("cannot write `{path}` in root `{}`: {message}", root.display())]
    Write {
        root: PathBuf,
        path: String,
        message: String,
    },
}

/// One configuration file as read from the root.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Path inside the root (`/usr/lib/tmpfiles.d/var.conf`).
    pub path: String,
    /// Content; empty for a file masked by a link to `/dev/null`.
    pub content: Vec<u8>,
}

/// Something that went wrong with one line or one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub source: Source,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.path, self.message)
    }
}

/// What an apply run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Lines skipped while planning (bad syntax, unknown users, duplicates).
    pub diagnostics: Vec<Diagnostic>,
    /// Operations that failed (systemd would exit 73).
    pub failures: Vec<Failure>,
    /// Failures of lines with the `-` modifier; reported, not errors.
    pub notes: Vec<Failure>,
    /// How many operations ran.
    pub applied: usize,
}

impl Report {
    /// systemd-tmpfiles' exit status for this outcome: 0, 65 (bad config) or 73 (failed
    /// operations).
    pub fn exit_code(&self) -> i32 {
        // As systemd-tmpfiles: invalid configuration wins over failed operations.
        if self.diagnostics.iter().any(|d| d.error) {
            65
        } else if !self.failures.is_empty() {
            73
        } else {
            0
        }
    }
}

fn errno_msg(e: Errno) -> String {
    std::io::Error::from(e).to_string()
}

fn read_at(dir: impl AsFd, name: &str) -> Result<Vec<u8>, Errno> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        return Err(Errno::ISDIR);
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = rustix::io::read(&fd, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn write_all(fd: impl AsFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        let n = rustix::io::write(&fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

fn list_dir(dir: &DirRef) -> Result<Vec<(String, FileType)>, Errno> {
    let fd = rfs::openat(
        &dir.fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rfs::Dir::read_from(&fd)?;
    let mut out = Vec::new();
    while let Some(e) = d.next() {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push((name, e.file_type()));
        }
    }
    Ok(out)
}

impl Root {
    /// Read a file inside the root (symlinks followed inside the root). A symlink whose
    /// target is `/dev/null` reads as empty (a mask), whether or not the root has a
    /// `/dev/null`.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, WalkError> {
        let (dir, name) = self.parent(path, Walk::default())?;
        if let Ok(t) = rfs::readlinkat(&dir.fd, name.as_str(), Vec::new()) {
            if t.to_bytes() == b"/dev/null" {
                return Ok(Vec::new());
            }
        }
        let (dir, name) = self.resolve_follow(path)?;
        Ok(read_at(&dir.fd, &name)?)
    }

    /// Write a file atomically (temporary file + rename) inside the root, creating missing
    /// directories; mode 0644.
    pub fn write_atomic(&self, path: &str, data: &[u8]) -> Result<(), WalkError> {
        let (dir, name) = self.parent(
            path,
            Walk {
                create: true,
                ..Walk::default()
            },
        )?;
        let tmp = format!(".#{name}.keel-tmp");
        let _ = rfs::unlinkat(&dir.fd, tmp.as_str(), AtFlags::empty());
        let fd = rfs::openat(
            &dir.fd,
            tmp.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let r = write_all(&fd, data).and_then(|_| rfs::fchmod(&fd, Mode::from_raw_mode(0o644)));
        drop(fd);
        if let Err(e) = r.and_then(|_| rfs::renameat(&dir.fd, tmp.as_str(), &dir.fd, name.as_str()))
        {
            let _ = rfs::unlinkat(&dir.fd, tmp.as_str(), AtFlags::empty());
            return Err(e.into());
        }
        Ok(())
    }

    /// Replace `path` by a symlink to `target` (atomically), creating missing directories.
    pub fn symlink_atomic(&self, path: &str, target: &str) -> Result<(), WalkError> {
        let (dir, name) = self.parent(
            path,
            Walk {
                create: true,
                ..Walk::default()
            },
        )?;
        let tmp = format!(".#{name}.keel-tmp");
        let _ = rfs::unlinkat(&dir.fd, tmp.as_str(), AtFlags::empty());
        rfs::symlinkat(target, &dir.fd, tmp.as_str())?;
        rfs::renameat(&dir.fd, tmp.as_str(), &dir.fd, name.as_str())?;
        Ok(())
    }

    /// Names in a directory inside the root (empty when it does not exist).
    pub fn list(&self, path: &str) -> Result<Vec<String>, WalkError> {
        let (dir, name) = match self.resolve_follow(path) {
            Ok(x) => x,
            Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let fd = match rfs::openat(
            &dir.fd,
            name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let d = DirRef {
            fd,
            uid: 0,
            path: path.to_owned(),
        };
        let mut v: Vec<String> = list_dir(&d)?.into_iter().map(|(n, _)| n).collect();
        v.sort();
        Ok(v)
    }
}

/// The effective configuration files of a root, in processing order.
pub fn load_config(root: &Root) -> Result<Vec<ConfigFile>, Error> {
    let rerr = |path: &str, e: WalkError| Error::Read {
        root: root.host_path().to_owned(),
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut found = Vec::new();
    for (i, d) in DIRS.iter().enumerate() {
        let dir = format!("/{d}");
        for name in root.list(&dir).map_err(|e| rerr(&dir, e))? {
            found.push(Found { dir: i, name });
        }
    }
    let mut out = Vec::new();
    for f in config::effective(found) {
        let path = format!("/{}/{}", DIRS[f.dir], f.name);
        let content = root.read(&path).map_err(|e| rerr(&path, e))?;
        out.push(ConfigFile { path, content });
    }
    Ok(out)
}

/// `--cat-config` for a root: file paths are shown with the root's host path in front, as
/// systemd-tmpfiles shows them.
pub fn cat(root: &Root) -> Result<String, Error> {
    let files = load_config(root)?;
    let base = root
        .host_path()
        .to_string_lossy()
        .trim_end_matches('/')
        .to_owned();
    let shown: Vec<(String, &[u8])> = files
        .iter()
        .map(|f| (format!("{base}{}", f.path), f.content.as_slice()))
        .collect();
    Ok(config::render_cat(
        shown.iter().map(|(p, c)| (p.as_str(), *c)),
    ))
}

/// Specifier values and users of a root: `/etc/os-release` (else `/usr/lib/os-release`),
/// `/etc/machine-id`, `/etc/passwd`, `/etc/group`, all read inside the root.
pub fn root_context(root: &Root, host: &Host) -> (Specifiers, Users) {
    let text = |p: &str| {
        root.read(p)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let os = text("/etc/os-release").or_else(|| text("/usr/lib/os-release"));
    let mid = text("/etc/machine-id");
    let spec = Specifiers::system(os.as_deref(), mid.as_deref(), host);
    let users = Users::new(
        &text("/etc/passwd").unwrap_or_default(),
        &text("/etc/group").unwrap_or_default(),
    );
    (spec, users)
}

/// Host facts systemd expands `%b %H %l %v` to (read from the running kernel).
pub fn host_facts() -> Host {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    Host {
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        hostname: read("/proc/sys/kernel/hostname"),
        kernel_release: read("/proc/sys/kernel/osrelease"),
    }
}

/// Plan and apply configuration files (name for messages, content) to the root.
pub fn apply_files(
    root: &Root,
    files: &[(String, Vec<u8>)],
    opts: &Options,
    host: &Host,
) -> Report {
    let (spec, users) = root_context(root, host);
    let files: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|(n, c)| (n.clone(), config::lines(c)))
        .collect();
    let plan = plan::plan(&files, &spec, &users, opts);
    apply_plan(root, &plan)
}

/// Apply a plan with `--create` semantics.
pub fn apply_plan(root: &Root, plan: &Plan) -> Report {
    let old = rustix::process::umask(Mode::from_raw_mode(0o022));
    let mut report = Report {
        diagnostics: plan.diagnostics.clone(),
        ..Report::default()
    };
    for item in &plan.items {
        let r = apply_item(root, item);
        report.applied += 1;
        if let Err((path, message)) = r {
            let f = Failure {
                source: item.source.clone(),
                path,
                message,
            };
            if item.entry.modifiers.allow_failure {
                report.notes.push(f);
            } else {
                report.failures.push(f);
            }
        }
    }
    rustix::process::umask(old);
    report
}

type R = Result<(), (String, String)>;

fn fail(path: &str, e: impl std::fmt::Display) -> (String, String) {
    (path.to_owned(), e.to_string())
}

fn ftype_at(dir: &DirRef, name: &str) -> Result<Option<rfs::Stat>, Errno> {
    match rfs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn kind_of(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Remove whatever is at `dir/name`, recursively for directories (never following links).
fn remove_any(dir: &DirRef, name: &str) -> Result<(), Errno> {
    let st = match ftype_at(dir, name)? {
        Some(st) => st,
        None => return Ok(()),
    };
    if kind_of(&st) == FileType::Directory {
        let fd = rfs::openat(
            &dir.fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let sub = DirRef {
            fd,
            uid: st.st_uid,
            path: String::new(),
        };
        for (n, _) in list_dir(&sub)? {
            remove_any(&sub, &n)?;
        }
        rfs::unlinkat(&dir.fd, name, AtFlags::REMOVEDIR)
    } else {
        rfs::unlinkat(&dir.fd, name, AtFlags::empty())
    }
}

fn masked_mode(m: &EMode, st: &rfs::Stat) -> u32 {
    let mut bits = m.bits;
    if m.mask {
        let old = st.st_mode;
        if old & 0o111 == 0 {
            bits &= !0o111;
        }
        if old & 0o444 == 0 {
            bits &= !0o444;
        }
        if old & 0o222 == 0 {
            bits &= !0o222;
        }
        if kind_of(st) != FileType::Directory {
            bits &= !0o7000;
        }
    }
    bits
}

/// systemd's `fd_set_perms()` on `dir/name` (never on a symlink).
fn set_perms(dir: &DirRef, name: &str, item: &Item, created: bool, path: &str) -> R {
    let Some(st) = ftype_at(dir, name).map_err(|e| fail(path, errno_msg(e)))? else {
        return Ok(());
    };
    if kind_of(&st) == FileType::Symlink {
        return Ok(());
    }
    set_perms_stat(dir, name, item, created, path, &st)
}

fn set_perms_stat(
    dir: &DirRef,
    name: &str,
    item: &Item,
    created: bool,
    path: &str,
    st: &rfs::Stat,
) -> R {
    // Ownership first, mode second: chown() clears the set-id bits, which the mode then
    // restores (as systemd does).
    let uid = item.uid.filter(|(_, oc)| created || !oc).map(|u| u.0);
    let gid = item.gid.filter(|(_, oc)| created || !oc).map(|g| g.0);
    if uid.is_some_and(|u| u != st.st_uid) || gid.is_some_and(|g| g != st.st_gid) {
        chown_at(dir, name, uid, gid)
            .map_err(|e| fail(path, format!("cannot change ownership: {}", errno_msg(e))))?;
    }
    if kind_of(st) == FileType::Symlink {
        return Ok(());
    }
    if let Some(m) = &item.mode {
        if created || !m.only_create {
            let bits = masked_mode(m, st);
            let now = ftype_at(dir, name)
                .map_err(|e| fail(path, errno_msg(e)))?
                .map_or(st.st_mode, |s| s.st_mode);
            if bits != now & 0o7777 {
                rfs::chmodat(&dir.fd, name, Mode::from_raw_mode(bits), AtFlags::empty())
                    .map_err(|e| fail(path, format!("cannot change mode: {}", errno_msg(e))))?;
            }
        }
    }
    Ok(())
}

/// Change the owner of `dir/name` without following a symlink there: through an `O_PATH`
/// handle, as systemd's `fchownat(fd, "", AT_EMPTY_PATH)`.
fn chown_at(dir: &DirRef, name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    let fd = rfs::openat(
        &dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    std::os::unix::fs::chown(format!("/proc/self/fd/{}", fd.as_raw_fd()), uid, gid)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

fn parent_of(root: &Root, item: &Item) -> Result<(DirRef, String), (String, String)> {
    let walk = Walk {
        create: true,
        replace: item.entry.modifiers.replace,
        safe: true,
    };
    root.parent(&item.path, walk)
        .map_err(|e| fail(&item.path, e))
}

fn apply_item(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    match item.kind {
        'f' => create_file(root, item),
        'd' | 'D' | 'v' | 'q' | 'Q' => create_dir(root, item),
        'p' | 'c' | 'b' => create_node(root, item),
        'L' => create_symlink(root, item),
        'C' => copy(root, item),
        'w' => {
            for p in glob(root, path) {
                write_file(root, item, &p)?;
            }
            Ok(())
        }
        'e' | 'z' | 'Z' | 't' | 'T' | 'h' | 'H' => {
            for p in glob(root, path) {
                adjust(root, item, &p, "ZTH".contains(item.kind))?;
            }
            Ok(())
        }
        'a' | 'A' => {
            for p in glob(root, path) {
                adjust(root, item, &p, item.kind == 'A')?;
            }
            Ok(())
        }
        // x X r R: nothing to create.
        _ => Ok(()),
    }
}

fn data(item: &Item) -> &[u8] {
    match &item.arg {
        Arg::Data(d) => d,
        _ => &[],
    }
}

fn create_file(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    let (dir, name) = parent_of(root, item)?;
    let mode = Mode::from_raw_mode(item.mode.map(|m| m.bits).unwrap_or(item.default_mode));
    let base =
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let excl = base | OFlags::CREATE | OFlags::EXCL;
    let (fd, created) = match rfs::openat(&dir.fd, name.as_str(), excl, mode) {
        Ok(fd) => (Some(fd), true),
        Err(Errno::EXIST) => {
            let st = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
            match st {
                Some(st) if kind_of(&st) == FileType::RegularFile => {
                    if item.plus {
                        let fd = rfs::openat(
                            &dir.fd,
                            name.as_str(),
                            base | OFlags::TRUNC,
                            Mode::empty(),
                        )
                        .map_err(|e| fail(path, errno_msg(e)))?;
                        (Some(fd), false)
                    } else {
                        (None, false)
                    }
                }
                Some(_) if item.entry.modifiers.replace => {
                    remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
                    let fd = rfs::openat(&dir.fd, name.as_str(), excl, mode)
                        .map_err(|e| fail(path, errno_msg(e)))?;
                    (Some(fd), true)
                }
                _ => return Err(fail(path, "exists and is not a regular file")),
            }
        }
        Err(e) => {
            return Err(fail(
                path,
                format!("failed to create file: {}", errno_msg(e)),
            ))
        }
    };
    if let Some(fd) = &fd {
        write_all(fd, data(item)).map_err(|e| fail(path, errno_msg(e)))?;
    }
    set_perms(&dir, &name, item, created, path)
}

fn create_dir(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    let (dir, name) = parent_of(root, item)?;
    let mode = Mode::from_raw_mode(item.mode.map(|m| m.bits).unwrap_or(item.default_mode));
    let created = match rfs::mkdirat(&dir.fd, name.as_str(), mode) {
        Ok(()) => true,
        Err(Errno::EXIST) => {
            let st = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
            match st {
                Some(st) if kind_of(&st) == FileType::Directory => false,
                Some(_) if item.entry.modifiers.replace => {
                    remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
                    rfs::mkdirat(&dir.fd, name.as_str(), mode)
                        .map_err(|e| fail(path, errno_msg(e)))?;
                    true
                }
                _ => return Err(fail(path, "exists and is not a directory")),
            }
        }
        Err(e) => {
            return Err(fail(
                path,
                format!("failed to create directory: {}", errno_msg(e)),
            ))
        }
    };
    set_perms(&dir, &name, item, created, path)
}

fn create_node(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    let (dir, name) = parent_of(root, item)?;
    let (ft, dev) = match (item.kind, &item.arg) {
        ('p', _) => (FileType::Fifo, 0),
        ('c', Arg::Dev(a, b)) => (FileType::CharacterDevice, rfs::makedev(*a, *b)),
        ('b', Arg::Dev(a, b)) => (FileType::BlockDevice, rfs::makedev(*a, *b)),
        _ => return Err(fail(path, "device numbers missing")),
    };
    let mode = Mode::from_raw_mode(item.mode.map(|m| m.bits).unwrap_or(item.default_mode));
    let created = match rfs::mknodat(&dir.fd, name.as_str(), ft, mode, dev) {
        Ok(()) => true,
        Err(Errno::EXIST) => {
            let st = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
            let same = st
                .as_ref()
                .is_some_and(|s| kind_of(s) == ft && (ft == FileType::Fifo || s.st_rdev == dev));
            if same {
                false
            } else if item.plus {
                remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
                rfs::mknodat(&dir.fd, name.as_str(), ft, mode, dev)
                    .map_err(|e| fail(path, errno_msg(e)))?;
                true
            } else if ft == FileType::Fifo {
                return Err(fail(path, "file exists and is not a fifo"));
            } else {
                // systemd only logs this at debug level and leaves the node alone.
                return Ok(());
            }
        }
        Err(e) => {
            return Err(fail(
                path,
                format!("failed to create node: {}", errno_msg(e)),
            ))
        }
    };
    set_perms(&dir, &name, item, created, path)
}

fn create_symlink(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    let Arg::Target(target) = &item.arg else {
        return Ok(());
    };
    let (dir, name) = parent_of(root, item)?;
    match rfs::symlinkat(target.as_str(), &dir.fd, name.as_str()) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => {
            let cur = rfs::readlinkat(&dir.fd, name.as_str(), Vec::new()).ok();
            let same = cur
                .as_ref()
                .is_some_and(|c| c.to_bytes() == target.as_bytes());
            // `+` replaces anything; `=` replaces an object of the wrong type.
            if same || !(item.plus || (item.entry.modifiers.replace && cur.is_none())) {
                return Ok(());
            }
            remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
            rfs::symlinkat(target.as_str(), &dir.fd, name.as_str())
                .map_err(|e| fail(path, errno_msg(e)))
        }
        Err(e) => Err(fail(
            path,
            format!("failed to create symlink: {}", errno_msg(e)),
        )),
    }
}

fn write_file(root: &Root, item: &Item, path: &str) -> R {
    let (dir, name) = match root.resolve_follow(path) {
        Ok(x) => x,
        Err(WalkError::Errno(Errno::NOENT)) => return Ok(()),
        Err(e) => return Err(fail(path, e)),
    };
    let flags = OFlags::WRONLY
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY
        | if item.plus {
            OFlags::APPEND
        } else {
            OFlags::TRUNC
        };
    let fd = match rfs::openat(&dir.fd, name.as_str(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => {
            return Err(fail(
                path,
                format!("failed to open for writing: {}", errno_msg(e)),
            ))
        }
    };
    write_all(&fd, data(item)).map_err(|e| fail(path, errno_msg(e)))?;
    set_perms(&dir, &name, item, false, path)
}

fn adjust(root: &Root, item: &Item, path: &str, recursive: bool) -> R {
    let (dir, name) = match root.parent(
        path,
        Walk {
            safe: true,
            ..Walk::default()
        },
    ) {
        Ok(x) => x,
        Err(WalkError::Errno(Errno::NOENT)) => return Ok(()),
        Err(e) => return Err(fail(path, e)),
    };
    let Some(st) = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))? else {
        return Ok(());
    };
    adjust_one(&dir, &name, item, path, &st)?;
    if recursive && kind_of(&st) == FileType::Directory {
        let fd = rfs::openat(
            &dir.fd,
            name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(path, errno_msg(e)))?;
        let sub = DirRef {
            fd,
            uid: st.st_uid,
            path: path.to_owned(),
        };
        adjust_tree(&sub, item)?;
    }
    Ok(())
}

fn adjust_tree(dir: &DirRef, item: &Item) -> R {
    for (n, _) in list_dir(dir).map_err(|e| fail(&dir.path, errno_msg(e)))? {
        let p = format!("{}/{n}", dir.path.trim_end_matches('/'));
        let Some(st) = ftype_at(dir, &n).map_err(|e| fail(&p, errno_msg(e)))? else {
            continue;
        };
        adjust_one(dir, &n, item, &p, &st)?;
        if kind_of(&st) == FileType::Directory {
            let fd = rfs::openat(
                &dir.fd,
                n.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail(&p, errno_msg(e)))?;
            adjust_tree(
                &DirRef {
                    fd,
                    uid: st.st_uid,
                    path: p,
                },
                item,
            )?;
        }
    }
    Ok(())
}

fn adjust_one(dir: &DirRef, name: &str, item: &Item, path: &str, st: &rfs::Stat) -> R {
    let ft = kind_of(st);
    match item.kind {
        'e' if ft != FileType::Directory => Ok(()),
        'e' | 'z' | 'Z' => set_perms_stat(dir, name, item, false, path, st),
        't' | 'T' => {
            let Arg::Xattrs(pairs) = &item.arg else {
                return Ok(());
            };
            if ft == FileType::Symlink {
                return Ok(());
            }
            let fd = open_for_attrs(dir, name, path)?;
            for (n, v) in pairs {
                rfs::fsetxattr(&fd, n.as_str(), v.as_bytes(), rfs::XattrFlags::empty())
                    .map_err(|e| fail(path, format!("cannot set xattr {n}: {}", errno_msg(e))))?;
            }
            Ok(())
        }
        'a' | 'A' => set_acls(dir, name, item, path, st),
        'h' | 'H' => {
            let Arg::Attrs(op, letters) = &item.arg else {
                return Ok(());
            };
            if !matches!(ft, FileType::Directory | FileType::RegularFile) {
                return Ok(());
            }
            let fd = open_for_attrs(dir, name, path)?;
            let want = attr_flags(letters);
            let all = attr_flags(crate::entry::ATTR_LETTERS);
            let cur = rfs::ioctl_getflags(&fd)
                .map_err(|e| {
                    fail(
                        path,
                        format!("cannot read file attributes: {}", errno_msg(e)),
                    )
                })?
                .bits();
            let new = match op {
                '-' => cur & !want.bits(),
                '=' => (cur & !all.bits()) | want.bits(),
                _ => cur | want.bits(),
            };
            if new != cur {
                rfs::ioctl_setflags(&fd, rfs::IFlags::from_bits_retain(new)).map_err(|e| {
                    fail(
                        path,
                        format!("cannot set file attributes: {}", errno_msg(e)),
                    )
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// tmpfiles' `path_set_acls()` on `dir/name`: never on a symlink; the default ACL only on
/// a directory; the access ACL first (it changes the mode's group bits to the mask, which
/// the default ACL's base entries are then taken from).
fn set_acls(dir: &DirRef, name: &str, item: &Item, path: &str, st: &rfs::Stat) -> R {
    let Arg::Acl(spec) = &item.arg else {
        return Ok(());
    };
    if kind_of(st) == FileType::Symlink {
        return Ok(());
    }
    // An O_PATH handle reached without following links; the xattr calls go through its
    // /proc/self/fd link (as systemd's), so devices and FIFOs are never opened.
    let fd = rfs::openat(
        &dir.fd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(path, format!("adjusting ACL failed: {}", errno_msg(e))))?;
    let st = rfs::fstat(&fd).map_err(|e| fail(path, errno_msg(e)))?;
    if kind_of(&st) == FileType::Symlink {
        return Ok(());
    }
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let r = match &spec.access {
        Some(a) => set_acl(&fd, &proc, acl::XATTR_ACCESS, a, item.plus, path),
        None => Ok(()),
    };
    let r = match (&spec.default, r) {
        (Some(d), Ok(())) if kind_of(&st) == FileType::Directory => {
            set_acl(&fd, &proc, acl::XATTR_DEFAULT, d, item.plus, path)
        }
        (_, r) => r,
    };
    match r {
        // systemd: no error when the filesystem does not support ACLs.
        Err((Errno::OPNOTSUPP | Errno::NOTTY | Errno::NOSYS, _)) => Ok(()),
        Err((_, m)) => Err(fail(path, m)),
        Ok(()) => Ok(()),
    }
}

/// tmpfiles' `path_set_acl()`: with `+` merge into the current ACL and compute the mask
/// if it has none; add the base entries the ACL lacks from the current mode; write.
fn set_acl(
    fd: &OwnedFd,
    proc: &str,
    xattr: &str,
    new: &Acl,
    plus: bool,
    path: &str,
) -> Result<(), (Errno, String)> {
    let what = if xattr == acl::XATTR_ACCESS {
        "access"
    } else {
        "default"
    };
    let mode = |fd: &OwnedFd| {
        rfs::fstat(fd)
            .map(|s| s.st_mode)
            .map_err(|e| (e, errno_msg(e)))
    };
    let mut acl = if plus {
        let mut buf = vec![0u8; 65536];
        let old = match rfs::getxattr(proc, xattr, &mut buf) {
            Ok(n) => Acl::decode(&buf[..n]).map_err(|e| (Errno::INVAL, e.to_string()))?,
            Err(Errno::NODATA) if what == "access" => Acl::from_mode(mode(fd)?),
            Err(Errno::NODATA) => Acl::default(),
            Err(e) => {
                return Err((
                    e,
                    format!("cannot read {what} ACL of {path}: {}", errno_msg(e)),
                ))
            }
        };
        let mut m = old.merged(new);
        m.calc_mask_if_needed();
        m
    } else {
        new.clone()
    };
    acl.add_base_if_needed(mode(fd)?);
    rfs::setxattr(proc, xattr, &acl.encode(), rfs::XattrFlags::empty()).map_err(|e| {
        (
            e,
            format!(
                "setting {what} ACL \"{acl}\" on {path} failed: {}",
                errno_msg(e)
            ),
        )
    })
}

fn open_for_attrs(dir: &DirRef, name: &str, path: &str) -> Result<OwnedFd, (String, String)> {
    rfs::openat(
        &dir.fd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| fail(path, errno_msg(e)))
}

fn attr_flags(letters: &str) -> rfs::IFlags {
    use rfs::IFlags as F;
    let mut f = F::empty();
    for c in letters.chars() {
        f |= match c {
            'a' => F::APPEND,
            'A' => F::NOATIME,
            'c' => F::COMPRESSED,
            'C' => F::NOCOW,
            'd' => F::NODUMP,
            'D' => F::DIRSYNC,
            'e' => F::from_bits_retain(0x0008_0000),
            'i' => F::IMMUTABLE,
            'j' => F::JOURNALING,
            'P' => F::PROJECT_INHERIT,
            's' => F::SECURE_REMOVAL,
            'S' => F::SYNC,
            't' => F::NOTAIL,
            'T' => F::TOPDIR,
            'u' => F::UNRM,
            'x' => F::from_bits_retain(0x0200_0000),
            _ => F::empty(),
        };
    }
    f
}

fn copy(root: &Root, item: &Item) -> R {
    let path = item.path.as_str();
    let Arg::CopyFrom(src) = &item.arg else {
        return Ok(());
    };
    let (sdir, sname) = match root.parent(src, Walk::default()) {
        Ok(x) => x,
        Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
        Err(e) => return Err(fail(src, e)),
    };
    let Some(sst) = ftype_at(&sdir, &sname).map_err(|e| fail(src, errno_msg(e)))? else {
        // systemd skips a C line whose source does not exist.
        return Ok(());
    };
    let (dir, name) = parent_of(root, item)?;
    let dst = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
    let owner = (item.uid.map(|u| u.0), item.gid.map(|g| g.0));
    let created = match dst {
        None => {
            copy_node(&sdir, &sname, &sst, &dir, &name, owner)
                .map_err(|e| fail(path, errno_msg(e)))?;
            true
        }
        Some(d) if kind_of(&d) == FileType::Directory && kind_of(&sst) == FileType::Directory => {
            let fd = rfs::openat(
                &dir.fd,
                name.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail(path, errno_msg(e)))?;
            let ddir = DirRef {
                fd,
                uid: d.st_uid,
                path: path.to_owned(),
            };
            if list_dir(&ddir)
                .map_err(|e| fail(path, errno_msg(e)))?
                .is_empty()
                || item.plus
            {
                let sfd = rfs::openat(
                    &sdir.fd,
                    sname.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail(src, errno_msg(e)))?;
                let s = DirRef {
                    fd: sfd,
                    uid: sst.st_uid,
                    path: src.clone(),
                };
                copy_children(&s, &ddir, owner, item.plus).map_err(|e| fail(path, errno_msg(e)))?;
            }
            false
        }
        Some(_) => false,
    };
    set_perms(&dir, &name, item, created, path)
}

fn copy_children(
    s: &DirRef,
    d: &DirRef,
    owner: (Option<u32>, Option<u32>),
    merge: bool,
) -> Result<(), Errno> {
    for (n, _) in list_dir(s)? {
        let Some(st) = ftype_at(s, &n)? else { continue };
        match ftype_at(d, &n)? {
            None => copy_node(s, &n, &st, d, &n, owner)?,
            Some(dst)
                if merge
                    && kind_of(&dst) == FileType::Directory
                    && kind_of(&st) == FileType::Directory =>
            {
                copy_subdir(s, &n, d, &n, owner, merge)?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Open the subdirectories `sname` of `s` and `dname` of `d` (never following a symlink)
/// and copy the children of one into the other.
fn copy_subdir(
    s: &DirRef,
    sname: &str,
    d: &DirRef,
    dname: &str,
    owner: (Option<u32>, Option<u32>),
    merge: bool,
) -> Result<(), Errno> {
    let open = |at: &DirRef, name: &str| {
        rfs::openat(
            &at.fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(|fd| DirRef {
            fd,
            uid: 0,
            path: String::new(),
        })
    };
    copy_children(&open(s, sname)?, &open(d, dname)?, owner, merge)
}

/// Copy one node (recursively for directories), keeping mode and owner (or the given one).
fn copy_node(
    sdir: &DirRef,
    sname: &str,
    st: &rfs::Stat,
    ddir: &DirRef,
    dname: &str,
    owner: (Option<u32>, Option<u32>),
) -> Result<(), Errno> {
    let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
    match kind_of(st) {
        FileType::Directory => {
            rfs::mkdirat(&ddir.fd, dname, Mode::from_raw_mode(0o700))?;
            copy_subdir(sdir, sname, ddir, dname, owner, false)?;
        }
        FileType::RegularFile => {
            let content = read_at(&sdir.fd, sname)?;
            let fd = rfs::openat(
                &ddir.fd,
                dname,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            write_all(&fd, &content)?;
        }
        FileType::Symlink => {
            let t = rfs::readlinkat(&sdir.fd, sname, Vec::new())?;
            rfs::symlinkat(t.as_c_str(), &ddir.fd, dname)?;
        }
        ft @ (FileType::Fifo
        | FileType::CharacterDevice
        | FileType::BlockDevice
        | FileType::Socket) => {
            rfs::mknodat(&ddir.fd, dname, ft, mode, st.st_rdev)?;
        }
        _ => return Ok(()),
    }
    let uid = owner.0.unwrap_or(st.st_uid);
    let gid = owner.1.unwrap_or(st.st_gid);
    if (uid, gid) != (0, 0) {
        chown_at(ddir, dname, Some(uid), Some(gid))?;
    }
    if kind_of(st) != FileType::Symlink {
        rfs::chmodat(&ddir.fd, dname, mode, AtFlags::empty())?;
    }
    Ok(())
}

/// Expand a glob (`* ? [...]` and `{a,b}`) inside the root; a path without glob
/// characters is returned as is. Hidden names only match a pattern starting with `.`.
pub fn glob(root: &Root, pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in expand_braces(pattern) {
        if !p.contains(['*', '?', '[']) {
            out.push(p);
            continue;
        }
        let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = vec![String::from("")];
        for c in comps {
            let mut next = Vec::new();
            for base in &cur {
                let dir = if base.is_empty() {
                    "/".to_string()
                } else {
                    base.clone()
                };
                if c.contains(['*', '?', '[']) {
                    for n in root.list(&dir).unwrap_or_default() {
                        if fnmatch(c, &n) {
                            next.push(format!("{base}/{n}"));
                        }
                    }
                } else {
                    next.push(format!("{base}/{c}"));
                }
            }
            cur = next;
        }
        out.extend(cur);
    }
    out.sort();
    out.dedup();
    out
}

fn expand_braces(p: &str) -> Vec<String> {
    let Some(open) = p.find('{') else {
        return vec![p.to_owned()];
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in p[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let Some(close) = close else {
        return vec![p.to_owned()];
    };
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let alt = &p[w[0] + 1..w[1]];
        out.extend(expand_braces(&format!(
            "{}{}{}",
            &p[..open],
            alt,
            &p[close + 1..]
        )));
    }
    out
}

/// fnmatch(3) with FNM_PATHNAME | FNM_PERIOD on one path component.
pub fn fnmatch(pat: &str, name: &str) -> bool {
    if name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| m(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let mut i = 1;
                let neg = matches!(p.get(1), Some('!' | '^'));
                if neg {
                    i += 1;
                }
                let mut hit = false;
                let mut first = true;
                while i < p.len() && (p[i] != ']' || first) {
                    first = false;
                    if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                        hit |= p[i] <= *c && *c <= p[i + 2];
                        i += 3;
                    } else {
                        hit |= p[i] == *c;
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return p[0] == *c && m(&p[1..], &n[1..]);
                }
                hit != neg && m(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Read the host configuration files named on the command line.
pub fn read_host_files(files: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>, Error> {
    files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|c| (f.display().to_string(), c))
                .map_err(|e| Error::Read {
                    root: PathBuf::from("/"),
                    path: f.display().to_string(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Open a root (the one place a root path is resolved on the host).
pub fn open_root(path: &Path) -> Result<Root, Error> {
    Root::open(path).map_err(|source| Error::OpenRoot {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(fnmatch("*.conf", "a.conf"));
        assert!(!fnmatch("*.conf", ".a.conf"));
        assert!(fnmatch("x[0-9]*", "x1y"));
        assert!(!fnmatch("x[!0-9]", "x1"));
        assert!(fnmatch("?", "a"));
        assert_eq!(
            expand_braces("/a/{b,c{d,e}}/f"),
            ["/a/b/f", "/a/cd/f", "/a/ce/f"]
        );
    }
}
