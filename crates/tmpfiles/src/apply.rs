//! Reading a root's configuration and applying a [`Plan`] to the root with systemd's
//! `--create` semantics, through [`Root`] handles only.

use crate::acl::{self, Acl};
use crate::config::{self, Found, DIRS};
use crate::entry::Mode as EMode;
use crate::plan::{self, Arg, Diagnostic, Item, Options, Plan, Source, Users};
use crate::root::{open_dir_at, DirRef, Root, Walk, WalkError};
use crate::spec::{Host, Specifiers};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Errors that stop the whole run (the root cannot be opened or its configuration read).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open root `{}`: {cause}", path.display())]
    OpenRoot {
        path: PathBuf,
        cause: std::io::Error,
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
    /// Reported, not errors: failures of lines with the `-` modifier, and what systemd
    /// only warns about (an existing entry of another type for `d p c b e`).
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

/// Read a regular file. Opened non-blocking, so a FIFO in its place (a hostile root's
/// `/etc/passwd`) is refused at once instead of blocking; devices are refused too.
fn read_at(dir: impl AsFd, name: &str) -> Result<Vec<u8>, Errno> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let st = rfs::fstat(&fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(Errno::ISDIR),
        _ => return Err(Errno::INVAL),
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

/// The names in a directory (lossy UTF-8, as every path here is a string).
fn list_dir(dir: &DirRef) -> Result<Vec<String>, Errno> {
    Ok(rootdir::read_names(dir.fd.as_fd())?
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .collect())
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
        self.list_at(path, true)
    }

    /// Names in a directory inside the root, sorted; with `follow`, a symlink naming the
    /// directory is followed. Empty when there is no such directory.
    fn list_at(&self, path: &str, follow: bool) -> Result<Vec<String>, WalkError> {
        let found = if follow {
            self.lookup_follow(path, Walk::default())
        } else {
            self.lookup(path, Walk::default())
        };
        let found = match found {
            Ok(x) => x,
            Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let fd = match open_dir_at(&found.dir.fd, found.name.as_str()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let d = DirRef {
            fd,
            uid: 0,
            path: path.to_owned(),
        };
        let mut v = list_dir(&d)?;
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
        let mut warnings = Vec::new();
        let r = if is_normalized(&item.path) || "xXrR".contains(item.kind) {
            apply_item(root, item, &mut warnings)
        } else {
            // systemd refuses such a path ("not normalized") for every line that creates or
            // changes something (252 still follows `..` for `e Z T A H`; Keel never does).
            Err(fail(
                &item.path,
                "path is not normalized (it has a \"..\" component)",
            ))
        };
        report.applied += 1;
        let failure = |(path, message)| Failure {
            source: item.source.clone(),
            path,
            message,
        };
        report.notes.extend(warnings.into_iter().map(failure));
        if let Err(e) = r {
            if item.entry.modifiers.allow_failure {
                report.notes.push(failure(e));
            } else {
                report.failures.push(failure(e));
            }
        }
    }
    rustix::process::umask(old);
    report
}

/// `parent/name` for paths inside the root (`name` empty: `parent/`).
fn join_path(parent: &str, name: &str) -> String {
    format!("{}/{name}", parent.trim_end_matches('/'))
}

/// Whether a path has no `..` component (systemd's `path_is_normalized()`, for the
/// simplified paths of a plan).
fn is_normalized(path: &str) -> bool {
    !path.split('/').any(|c| c == "..")
}

type R = Result<(), (String, String)>;

fn fail(path: &str, e: impl std::fmt::Display) -> (String, String) {
    (path.to_owned(), e.to_string())
}

fn ftype_at(dir: &DirRef, name: &str) -> Result<Option<rfs::Stat>, Errno> {
    rootdir::lstat_at(dir.fd.as_fd(), name)
}

fn kind_of(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Remove whatever is at `dir/name`, recursively for directories (never following links);
/// nothing there is no error.
fn remove_any(dir: &DirRef, name: &str) -> Result<(), Errno> {
    match rootdir::remove_all(dir.fd.as_fd(), name.as_bytes()) {
        Err(Errno::NOENT) => Ok(()),
        r => r,
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

/// systemd's `fd_set_perms()` on `dir/name`, never following a symlink there (a link
/// gets its owner changed, never a mode).
fn set_perms(dir: &DirRef, name: &str, item: &Item, created: bool, path: &str) -> R {
    let Some(st) = ftype_at(dir, name).map_err(|e| fail(path, errno_msg(e)))? else {
        return Ok(());
    };
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
    // systemd's fd_set_perms(): the owner and mode wanted (a `:` field only for what was
    // created), the mode first narrowed to the bits old and new share, then the owner,
    // then the mode again whenever the owner changed, since chown() clears the set-id
    // bits (a setuid file keeps its bits when only its owner changes).
    let new_uid = (item.uid.filter(|(_, oc)| created || !oc)).map_or(st.st_uid, |u| u.0);
    let new_gid = (item.gid.filter(|(_, oc)| created || !oc)).map_or(st.st_gid, |g| g.0);
    let do_chown = new_uid != st.st_uid || new_gid != st.st_gid;
    let old_mode = st.st_mode & 0o7777;
    let new_mode = match &item.mode {
        Some(m) if created || !m.only_create => masked_mode(m, st),
        _ => old_mode,
    };
    let do_chmod = new_mode != old_mode;
    let is_link = kind_of(st) == FileType::Symlink;
    let chmod = |bits: u32| {
        rfs::chmodat(&dir.fd, name, Mode::from_raw_mode(bits), AtFlags::empty())
            .map_err(|e| fail(path, format!("cannot change mode: {}", errno_msg(e))))
    };
    if do_chmod && do_chown && !is_link && new_mode & old_mode != old_mode {
        chmod(new_mode & old_mode)?;
    }
    if do_chown {
        chown_at(
            dir,
            name,
            (new_uid != st.st_uid).then_some(new_uid),
            (new_gid != st.st_gid).then_some(new_gid),
        )
        .map_err(|e| fail(path, format!("cannot change ownership: {}", errno_msg(e))))?;
    }
    if (do_chmod || do_chown) && !is_link {
        chmod(new_mode)?;
    }
    Ok(())
}

/// Change the owner of `dir/name` without following a symlink there.
fn chown_at(dir: &DirRef, name: &str, uid: Option<u32>, gid: Option<u32>) -> Result<(), Errno> {
    rootdir::lchown_at(dir.fd.as_fd(), name.as_bytes(), uid, gid)
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

/// What systemd only warns about: (path, message), reported as notes.
type Warnings = Vec<(String, String)>;

fn apply_item(root: &Root, item: &Item, warn: &mut Warnings) -> R {
    let path = item.path.as_str();
    match item.kind {
        'f' => create_file(root, item),
        'd' | 'D' | 'v' | 'q' | 'Q' => create_dir(root, item, warn),
        'p' | 'c' | 'b' => create_node(root, item, warn),
        'L' => create_symlink(root, item),
        'C' => copy(root, item),
        // As systemd, a match that fails does not stop the others; the first error is
        // the line's.
        'w' => glob(root, path)
            .iter()
            .map(|p| write_file(root, item, p))
            .fold(Ok(()), R::and),
        'e' | 'z' | 'Z' | 't' | 'T' | 'h' | 'H' | 'a' | 'A' => glob(root, path)
            .iter()
            .map(|p| adjust(root, item, p, "ZTHA".contains(item.kind), warn))
            .fold(Ok(()), R::and),
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

fn create_dir(root: &Root, item: &Item, warn: &mut Warnings) -> R {
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
                _ => {
                    // systemd 252 logs this as an error but the line does not fail.
                    warn.push(fail(path, "already exists and is not a directory"));
                    return Ok(());
                }
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

fn create_node(root: &Root, item: &Item, warn: &mut Warnings) -> R {
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
            // As systemd: a node of the right type is kept whatever its device numbers.
            if st.as_ref().is_some_and(|s| kind_of(s) == ft) {
                false
            } else if item.plus {
                remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
                rfs::mknodat(&dir.fd, name.as_str(), ft, mode, dev)
                    .map_err(|e| fail(path, errno_msg(e)))?;
                true
            } else {
                // systemd warns and leaves the entry alone; the line does not fail.
                let what = if ft == FileType::Fifo {
                    "a FIFO"
                } else {
                    "a device node"
                };
                warn.push(fail(path, format!("already exists and is not {what}")));
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
    if item.entry.modifiers.optional && !link_target_exists(root, &dir, target, path)? {
        // `L?` (current systemd): no link to a target that does not exist.
        return Ok(());
    }
    let created = match rfs::symlinkat(target.as_str(), &dir.fd, name.as_str()) {
        Ok(()) => true,
        Err(Errno::EXIST) => {
            let cur = rfs::readlinkat(&dir.fd, name.as_str(), Vec::new()).ok();
            let same = cur
                .as_ref()
                .is_some_and(|c| c.to_bytes() == target.as_bytes());
            // `+` replaces anything; `=` replaces an object of the wrong type.
            let replace = item.plus || (item.entry.modifiers.replace && cur.is_none());
            if !(same || replace) {
                return Ok(());
            }
            if !same {
                remove_any(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
                rfs::symlinkat(target.as_str(), &dir.fd, name.as_str())
                    .map_err(|e| fail(path, errno_msg(e)))?;
            }
            !same
        }
        Err(e) => {
            return Err(fail(
                path,
                format!("failed to create symlink: {}", errno_msg(e)),
            ))
        }
    };
    // The link's own owner (systemd chowns the link; there is no mode to set).
    set_perms(&dir, &name, item, created, path)
}

/// Whether an `L?` line's target exists inside the root: an absolute target from the
/// root, a relative one from the link's directory; its last component is not followed
/// (a dangling link counts), and the walk is checked for unsafe transitions.
fn link_target_exists(
    root: &Root,
    dir: &DirRef,
    target: &str,
    path: &str,
) -> Result<bool, (String, String)> {
    let full = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{}/{target}", dir.path.trim_end_matches('/'))
    };
    let walk = Walk {
        safe: true,
        ..Walk::default()
    };
    match root.lookup(&full, walk) {
        Ok(found) => Ok(found.stat.is_some()),
        Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => Ok(false),
        Err(e) => Err(fail(
            path,
            format!("cannot check symlink target {target}: {e}"),
        )),
    }
}

fn write_file(root: &Root, item: &Item, path: &str) -> R {
    // `w` follows a symlink in its last component: every step is checked, the link
    // included (systemd 252 follows it on the host unchecked).
    let walk = Walk {
        safe: true,
        ..Walk::default()
    };
    let found = match root.lookup_follow(path, walk) {
        Ok(found) => found,
        Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
        Err(e) => return Err(fail(path, e)),
    };
    if found.stat.is_none() {
        return Ok(());
    }
    // As systemd: no O_TRUNC (the data overwrites the start of the file; a kernel file
    // takes it whole), non-blocking (a FIFO without a reader fails with ENXIO at once
    // instead of blocking).
    let flags = OFlags::WRONLY
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY
        | OFlags::NONBLOCK
        | if item.plus {
            OFlags::APPEND
        } else {
            OFlags::empty()
        };
    let (dir, name) = (&found.dir, found.name.as_str());
    let fd = match rfs::openat(&dir.fd, name, flags, Mode::empty()) {
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
    set_perms(dir, name, item, false, path)
}

fn adjust(root: &Root, item: &Item, path: &str, recursive: bool, warn: &mut Warnings) -> R {
    // systemd's path_open_safe(): the last component is looked at, not followed, and the
    // step to it is checked too; `e` follows it (chase() without CHASE_NOFOLLOW).
    let walk = Walk {
        safe: true,
        ..Walk::default()
    };
    let found = if item.kind == 'e' {
        root.lookup_follow(path, walk)
    } else {
        root.lookup(path, walk)
    };
    let found = match found {
        Ok(found) => found,
        Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
        Err(e) => return Err(fail(path, e)),
    };
    let Some(st) = found.stat else {
        return Ok(());
    };
    let (dir, name) = (&found.dir, found.name.as_str());
    let first = adjust_one(dir, name, item, path, &st, warn);
    if recursive && kind_of(&st) == FileType::Directory {
        let fd = open_dir_at(&dir.fd, name).map_err(|e| fail(path, errno_msg(e)))?;
        let sub = DirRef {
            fd,
            uid: st.st_uid,
            path: path.to_owned(),
        };
        let rest = adjust_tree(&sub, item, warn);
        return first.and(rest);
    }
    first
}

/// The children of `dir`, recursively, through directory handles (never following a
/// symlink); as systemd, an entry that fails does not stop the others: the first error
/// is returned.
fn adjust_tree(dir: &DirRef, item: &Item, warn: &mut Warnings) -> R {
    let mut first = Ok(());
    for n in list_dir(dir).map_err(|e| fail(&dir.path, errno_msg(e)))? {
        let p = format!("{}/{n}", dir.path.trim_end_matches('/'));
        let r = (|| {
            let Some(st) = ftype_at(dir, &n).map_err(|e| fail(&p, errno_msg(e)))? else {
                return Ok(());
            };
            let one = adjust_one(dir, &n, item, &p, &st, warn);
            if kind_of(&st) != FileType::Directory {
                return one;
            }
            let fd = open_dir_at(&dir.fd, n.as_str()).map_err(|e| fail(&p, errno_msg(e)))?;
            let sub = DirRef {
                fd,
                uid: st.st_uid,
                path: p.clone(),
            };
            let rest = adjust_tree(&sub, item, warn);
            one.and(rest)
        })();
        if first.is_ok() {
            first = r;
        }
    }
    first
}

fn adjust_one(
    dir: &DirRef,
    name: &str,
    item: &Item,
    path: &str,
    st: &rfs::Stat,
    warn: &mut Warnings,
) -> R {
    let ft = kind_of(st);
    match item.kind {
        'e' if ft != FileType::Directory => {
            warn.push(fail(path, "already exists and is not a directory"));
            Ok(())
        }
        'e' | 'z' | 'Z' => set_perms_stat(dir, name, item, false, path, st),
        't' | 'T' => {
            let Arg::Xattrs(pairs) = &item.arg else {
                return Ok(());
            };
            // As systemd: through the O_PATH handle's /proc/self/fd link, so a device or
            // FIFO is never opened; on a symlink the kernel refuses user.* attributes.
            let fd = rootdir::pin(dir.fd.as_fd(), name.as_bytes())
                .map_err(|e| fail(path, errno_msg(e)))?;
            let proc = rootdir::proc_self_fd(fd.as_fd());
            for (n, v) in pairs {
                rfs::setxattr(
                    proc.as_str(),
                    n.as_str(),
                    v.as_bytes(),
                    rfs::XattrFlags::empty(),
                )
                .map_err(|e| fail(path, format!("cannot set xattr {n}: {}", errno_msg(e))))?;
            }
            Ok(())
        }
        'a' | 'A' => set_acls(dir, name, item, path, st),
        'h' | 'H' => {
            let Arg::Attrs(op, letters) = &item.arg else {
                return Ok(());
            };
            // The ioctls would reach a device's driver: refused, as systemd does.
            if !matches!(ft, FileType::Directory | FileType::RegularFile) {
                return Err(fail(
                    path,
                    "setting file attributes is only supported on regular files and directories",
                ));
            }
            let fd = open_for_attrs(dir, name, path)?;
            let want = attr_flags(letters);
            let all = attr_flags(crate::entry::ATTR_LETTERS);
            // systemd only warns when the attributes cannot be read or set.
            let cur = match rfs::ioctl_getflags(&fd) {
                Ok(f) => f.bits(),
                Err(e) => {
                    warn.push(fail(
                        path,
                        format!("cannot read file attributes, ignoring: {}", errno_msg(e)),
                    ));
                    return Ok(());
                }
            };
            let new = match op {
                '-' => cur & !want.bits(),
                '=' => (cur & !all.bits()) | want.bits(),
                _ => cur | want.bits(),
            };
            if new != cur {
                if let Err(e) = rfs::ioctl_setflags(&fd, rfs::IFlags::from_bits_retain(new)) {
                    warn.push(fail(
                        path,
                        format!("cannot set file attributes, ignoring: {}", errno_msg(e)),
                    ));
                }
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
    let fd = rootdir::pin(dir.fd.as_fd(), name.as_bytes())
        .map_err(|e| fail(path, format!("adjusting ACL failed: {}", errno_msg(e))))?;
    let st = rfs::fstat(&fd).map_err(|e| fail(path, errno_msg(e)))?;
    if kind_of(&st) == FileType::Symlink {
        return Ok(());
    }
    let proc = rootdir::proc_self_fd(fd.as_fd());
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
    // The source is resolved inside the root and checked like any path (systemd 252
    // reads it on the host); its last component is not followed: a link is copied as a
    // link, dangling or not (current systemd; 252 copies it, then fails on stat()).
    let walk = Walk {
        safe: true,
        ..Walk::default()
    };
    let source = match root.lookup(src, walk) {
        Ok(found) => found,
        Err(WalkError::Errno(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
        Err(e) => return Err(fail(src, e)),
    };
    let Some(sst) = source.stat else {
        // systemd skips a C line whose source does not exist.
        return Ok(());
    };
    let (sdir, sname) = (&source.dir, source.name.as_str());
    let (dir, name) = parent_of(root, item)?;
    let dst_path = join_path(&dir.path, &name);
    let src_path = source.path();
    if kind_of(&sst) == FileType::Directory
        && (dst_path == src_path || dst_path.starts_with(&join_path(&src_path, "")))
    {
        // systemd 252 copies the tree into itself until the path is too long.
        return Err(fail(
            path,
            format!("cannot copy directory {src_path} into itself"),
        ));
    }
    let dst = ftype_at(&dir, &name).map_err(|e| fail(path, errno_msg(e)))?;
    let owner = (item.uid.map(|u| u.0), item.gid.map(|g| g.0));
    let created = match dst {
        None => {
            copy_node(sdir, sname, &sst, &dir, &name, owner)
                .map_err(|e| fail(path, errno_msg(e)))?;
            true
        }
        Some(d) if kind_of(&d) == FileType::Directory && kind_of(&sst) == FileType::Directory => {
            let fd = open_dir_at(&dir.fd, name.as_str()).map_err(|e| fail(path, errno_msg(e)))?;
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
                let sfd = open_dir_at(&sdir.fd, sname).map_err(|e| fail(src, errno_msg(e)))?;
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
    for n in list_dir(s)? {
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
        open_dir_at(&at.fd, name).map(|fd| DirRef {
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
                    // As systemd's glob (opendir_nomod()): a directory to list is not
                    // reached through a symlink in its last component.
                    for n in root.list_at(&dir, false).unwrap_or_default() {
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
        cause: source,
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

    fn run(root: &Path, conf: &str) -> Report {
        let root = open_root(root).unwrap();
        let files = [("t.conf".to_owned(), conf.as_bytes().to_vec())];
        apply_files(&root, &files, &Options::default(), &Host::default())
    }

    fn mkfifo(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        rfs::mknodat(rfs::CWD, p, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
    }

    /// In a thread, so that a regression fails the test instead of hanging it.
    fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("blocked for 10 s")
    }

    /// A hostile root's `/etc/passwd` or configuration file that is a FIFO is refused at
    /// once: opening it for reading would block forever.
    #[test]
    fn fifos_in_the_root_never_block() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().to_owned();
        mkfifo(&r.join("etc/passwd"));
        mkfifo(&r.join("etc/tmpfiles.d/x.conf"));
        mkfifo(&r.join("w"));
        let r2 = r.clone();
        let (config, report) = within_seconds(move || {
            let root = open_root(&r2).unwrap();
            let config = load_config(&root).map(|_| ()).map_err(|e| e.to_string());
            (config, run(&r2, "d /made 0755 4242\nw /w - - - - x\n"))
        });
        assert!(config.unwrap_err().contains("/etc/tmpfiles.d/x.conf"));
        assert!(r.join("made").is_dir());
        let f: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            f,
            ["t.conf:2: /w: failed to open for writing: No such device or address (os error 6)"]
        );
    }

    /// `C` of a directory into itself fails the line (systemd 252 copies it into itself
    /// until the path is too long; Keel's recursion overflowed its stack).
    #[test]
    fn a_directory_is_not_copied_into_itself() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().to_owned();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        std::fs::write(r.join("a/f"), "f").unwrap();
        let r2 = r.clone();
        let report = within_seconds(move || {
            run(
                &r2,
                "C /a/c - - - - /a\nC+ /a/b - - - - /a\nC /x/y - - - - /\nC /ok - - - - /a\n",
            )
        });
        let f: Vec<String> = report.failures.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            f,
            [
                "t.conf:1: /a/c: cannot copy directory /a into itself",
                "t.conf:2: /a/b: cannot copy directory /a into itself",
                "t.conf:3: /x/y: cannot copy directory / into itself",
            ]
        );
        assert!(!r.join("a/c").exists() && r.join("ok/b").is_dir() && r.join("ok/f").is_file());
    }
}
