//! Directory handles: the one way Keel touches a tree it did not write.
//!
//! A tree Keel builds or unpacks holds symlinks that packages and images put there. After
//! the tree's top directory is opened by path ([`Root::open`]), everything below it is
//! reached from that handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: a
//! link is followed only while it stays inside the tree, and one that leads out (an
//! absolute target, or `..` above the top) is refused with [`Error::Escapes`], which names
//! the link and its target. Reads of files someone else wrote are capped ([`read_capped`])
//! and never block on a FIFO or a device.
//!
//! The primitives on a held directory ([`read_names`], [`remove_all`], [`chmod_nofollow`],
//! [`lchown_at`], [`get_xattr_at`], [`set_xattr_at`], [`pin`], [`fd_path`]) never follow a
//! link at the name they are given. A tree Keel built itself (a finished root) is walked
//! without following any link at all: [`open_nofollow`], [`open_dir_nofollow`] and
//! [`walk`]. An I/O error carries its path in a [`PathError`], which crates wrap.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Flags for opening a directory to hold: read-only, never a link, closed on exec.
pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Resolution beneath a root: links are followed only while they stay inside it.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A link on the way leads out of the tree.
    #[error(
        "{tree}: refused {path}: {link} is a symlink to {target}, which leads out of the tree"
    )]
    Escapes {
        tree: PathBuf,
        /// The path asked for, as seen from the tree's top (`/lib/modules`).
        path: String,
        /// The link on the way (`/lib`), and what it points to.
        link: String,
        target: String,
    },
    /// Not the kind of file the caller needs (a FIFO where a file was wanted, ...).
    #[error("{}: {what}", path.display())]
    Kind { path: PathBuf, what: String },
    /// More than the caller's limit.
    #[error("{}: {size} bytes, more than the limit of {limit} bytes for {what}", path.display())]
    TooBig {
        path: PathBuf,
        size: u64,
        limit: u64,
        what: String,
    },
    #[error(transparent)]
    Io(#[from] PathError),
}

impl Error {
    /// The error of `op` on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(Errno) -> Error {
        let at = PathError::at(path);
        move |e| Error::Io(at(e))
    }
    /// True when the file asked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
    /// True when the file asked for is not there, or a component on the way is not a
    /// directory (`variants/README/variant.toml`).
    pub fn is_absent(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
        ))
    }
}

/// An I/O error and the path it happened on: what a crate's `Error::Io { path, source }`
/// holds. A crate wraps it (`Io(#[from] rootdir::PathError)`, shown as is) instead of
/// writing its own `io(path)` closure.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub struct PathError {
    pub path: PathBuf,
    pub cause: std::io::Error,
}

impl PathError {
    /// `.map_err(PathError::at(path))`, for a `std::io::Error` or an `Errno`.
    pub fn at<E: Into<std::io::Error>>(path: impl Into<PathBuf>) -> impl FnOnce(E) -> PathError {
        let path = path.into();
        move |e| PathError {
            path,
            cause: e.into(),
        }
    }

    pub fn kind(&self) -> std::io::ErrorKind {
        self.cause.kind()
    }

    /// The errno, when the error is one.
    pub fn errno(&self) -> Option<Errno> {
        self.cause.raw_os_error().map(Errno::from_raw_os_error)
    }
}

/// The top directory of a tree, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// `rel` as the tree sees it: `/lib/modules`.
fn shown(rel: &Path) -> String {
    let mut s = String::from("/");
    s.push_str(&rel.to_string_lossy());
    s
}

/// `rel` without a leading `/` or `.`; `None` when it has `..` (a caller's bug or a hostile
/// name; refused before the kernel sees it).
fn relative(rel: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Root {
    /// Open the tree at `path` (the path itself is the caller's, and may be a link).
    pub fn open(path: &Path) -> Result<Root, Error> {
        let fd = fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(Error::io(path))?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    /// The handle of the top directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path the tree was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `rel` in the tree, for messages only.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path
            .join(relative(rel).unwrap_or_else(|| rel.to_owned()))
    }

    /// Open `rel` (relative to the top; a leading `/` is the top) with `flags`, following
    /// links only while they stay inside the tree.
    pub fn open_at(&self, rel: &Path, flags: OFlags, mode: u32) -> Result<OwnedFd, Error> {
        let Some(r) = relative(rel) else {
            return Err(self.dotdot(rel));
        };
        let r = if r.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            r
        };
        match fs::openat2(
            &self.fd,
            &r,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
            BENEATH,
        ) {
            Ok(fd) => Ok(fd),
            Err(e @ (Errno::XDEV | Errno::LOOP)) => match self.first_link_out(&r) {
                Some((link, target)) => Err(self.escapes(rel, Path::new(&link), &target)),
                None => Err(Error::io(self.display(rel))(e)),
            },
            Err(e) => Err(Error::io(self.display(rel))(e)),
        }
    }

    /// Open the directory `rel` to hold (a link at its last component is followed too,
    /// inside the tree only).
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd, Error> {
        self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
    }

    /// Open the directory `rel`, making each missing component with `mode` (as `mkdir -p`,
    /// through links that stay inside the tree, never out of it).
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<OwnedFd, Error> {
        let Some(r) = relative(rel) else {
            return Err(self.dotdot(rel));
        };
        let mut done = PathBuf::new();
        let mut fd = self.open_dir(Path::new(""))?;
        for c in r.components() {
            done.push(c);
            match fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::io(self.display(&done))(e)),
            }
            // Opened from the top again, so a link made at this name is judged as a whole.
            fd = self.open_dir(&done)?;
        }
        Ok(fd)
    }

    /// The type and mode of `rel` itself (a link is reported as a link), `None` when it
    /// is not there. The directories on the way are resolved inside the tree.
    pub fn lstat(&self, rel: &Path) -> Result<Option<fs::Stat>, Error> {
        let (dir, name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => return fs::fstat(&self.fd).map(Some).map_err(Error::io(&self.path)),
        };
        let d = match self.open_dir(dir) {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        lstat_at(d.as_fd(), name).map_err(Error::io(self.display(rel)))
    }

    /// Whether `rel` is there and is a regular file, following links inside the tree only
    /// (one out of the tree counts as not there).
    pub fn is_file(&self, rel: &Path) -> bool {
        self.open_at(rel, OFlags::PATH, 0)
            .ok()
            .and_then(|fd| fs::fstat(&fd).ok())
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    }

    /// Open the regular file `rel` for reading (links inside the tree followed); anything
    /// else (a FIFO, a device, a directory) is refused without being opened for I/O.
    pub fn open_file(&self, rel: &Path) -> Result<std::fs::File, Error> {
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY, 0)?;
        let st = fs::fstat(&fd).map_err(Error::io(self.display(rel)))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(Error::Kind {
                path: self.display(rel),
                what: format!("a {}, not a regular file", kind_name(kind)),
            });
        }
        Ok(std::fs::File::from(fd))
    }

    /// Whether `rel` is a directory (a link to one inside the tree counts).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.open_dir(rel).is_ok()
    }

    /// The names in the directory `rel`, sorted (lossy UTF-8).
    pub fn names(&self, rel: &Path) -> Result<Vec<String>, Error> {
        let d = self.open_dir(rel)?;
        let mut names: Vec<String> = read_names(d.as_fd())
            .map_err(Error::io(self.display(rel)))?
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The content of the regular file `rel` ([`Root::open_file`]), at most `limit` bytes
    /// (`what` names the input in the error).
    pub fn read(&self, rel: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Error> {
        let f = self.open_file(rel)?;
        read_capped(f, &self.display(rel), limit, what)
    }

    fn dotdot(&self, rel: &Path) -> Error {
        Error::Kind {
            path: self.path.join(rel),
            what: "a path with `..` in it, refused in a tree".into(),
        }
    }

    fn escapes(&self, rel: &Path, link: &Path, target: &str) -> Error {
        Error::Escapes {
            tree: self.path.clone(),
            path: shown(&relative(rel).unwrap_or_else(|| rel.to_owned())),
            link: link.to_string_lossy().into_owned(),
            target: target.to_owned(),
        }
    }

    /// The first link on the way to `rel` whose target leaves the tree, resolving as the
    /// kernel would (links inside are followed). `None` when none is found.
    fn first_link_out(&self, rel: &Path) -> Option<(String, String)> {
        // Walked by hand: `stack` is the directory reached, `todo` what is left; at most
        // 40 links, as the kernel.
        let mut stack: Vec<OsString> = Vec::new();
        let mut todo: std::collections::VecDeque<OsString> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                _ => None,
            })
            .collect();
        let mut links = 0;
        let mut shown_so_far = PathBuf::new();
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                if stack.pop().is_none() {
                    return Some((shown(&shown_so_far), "..".into()));
                }
                continue;
            }
            let here: PathBuf = stack.iter().collect();
            let dir = if here.as_os_str().is_empty() {
                fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty()).ok()?
            } else {
                fs::openat2(&self.fd, &here, DIR_FLAGS, Mode::empty(), BENEATH).ok()?
            };
            let st = fs::statat(&dir, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
            shown_so_far = here.join(&c);
            if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                stack.push(c);
                continue;
            }
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs::readlinkat(&dir, c.as_os_str(), Vec::new()).ok()?;
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                return Some((shown(&shown_so_far), target.to_string_lossy().into_owned()));
            }
            // A relative target: resolved from the link's directory; count `..` above the top.
            let mut depth = stack.len() as isize;
            for t in target.components() {
                match t {
                    Component::ParentDir => depth -= 1,
                    Component::Normal(_) => depth += 1,
                    _ => {}
                }
                if depth < 0 {
                    return Some((shown(&shown_so_far), target.to_string_lossy().into_owned()));
                }
            }
            for t in target.components().rev() {
                match t {
                    Component::ParentDir => todo.push_front("..".into()),
                    Component::Normal(n) => todo.push_front(n.to_owned()),
                    _ => {}
                }
            }
        }
        None
    }
}

/// A file type in words.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// Read all of `file`, refusing it when it has more than `limit` bytes (`what` names the
/// input in the error). The size is checked before reading and the read is capped, so a
/// file that grows while read cannot run past the limit.
pub fn read_capped(
    mut file: impl Read,
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(PathError::at(path))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooBig {
            path: path.to_owned(),
            size: buf.len() as u64,
            limit,
            what: what.to_owned(),
        });
    }
    Ok(buf)
}

/// `/proc/<pid>/fd/DIR/NAME`: a path to NAME in the directory held by `dir` that resolves
/// nothing inside the tree on the way (the magic link is the directory itself). It is
/// valid for a child process too (it names this process's handle) while `dir` is open.
pub fn fd_path(dir: BorrowedFd<'_>, name: &[u8]) -> OsString {
    let mut p = format!("/proc/{}/fd/{}/", std::process::id(), dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    OsString::from_vec(p)
}

/// The names in a directory, `.` and `..` left out (`dir` may be an `O_PATH` handle).
pub fn read_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// The `lstat` of `name` in `dir` (a link is reported as a link), `None` when it is not there.
pub fn lstat_at(
    dir: BorrowedFd<'_>,
    name: impl rustix::path::Arg,
) -> Result<Option<fs::Stat>, Errno> {
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove `name` in `dir` and, if it is a directory, everything below it, never following a
/// symlink.
pub fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let refused = match fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(e @ (Errno::ISDIR | Errno::PERM)) => e,
        Err(e) => return Err(e),
    };
    let fd = match fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        // Not a directory: the unlink's own refusal (an immutable file, a sticky directory).
        Err(Errno::NOTDIR | Errno::LOOP) => return Err(refused),
        Err(e) => return Err(e),
    };
    for n in read_names(fd.as_fd())? {
        remove_all(fd.as_fd(), &n)?;
    }
    fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// chmod of `name` in `dir` without following a symlink: the entry is pinned by an `O_PATH`
/// handle opened with `O_NOFOLLOW`, checked not to be a symlink, and changed through its
/// `/proc/self/fd` entry (what glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` does). Device nodes
/// and FIFOs are never opened for I/O.
pub fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<(), Errno> {
    let fd = pin(dir, name)?;
    let st = fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    fs::chmodat(
        fs::CWD,
        proc_self_fd(fd.as_fd()).as_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
}

/// An `O_PATH` handle on the entry `name` in `dir` itself (a symlink there is the link,
/// never its target): it pins the entry for later calls without opening it for I/O, so a
/// device or FIFO is never opened.
pub fn pin(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `/proc/self/fd/N`: a path that names the file `fd` holds (a link pinned by [`pin`] is
/// the link itself), for the calls that take only a path.
pub fn proc_self_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// chown of `name` in `dir` without following a symlink there (a link gets its own
/// owner); `None` leaves the id as it is.
pub fn lchown_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), Errno> {
    std::os::unix::fs::lchown(fd_path(dir, name), uid, gid)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
}

/// The extended attribute `key` of `name` in `dir` itself, never following a link there
/// (`lgetxattr` through the directory's handle, see [`fd_path`]): its length in `buf`.
pub fn get_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    key: impl rustix::path::Arg,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    fs::lgetxattr(fd_path(dir, name), key, buf)
}

/// Set the extended attribute `key` of `name` in `dir` itself to `value`, never following
/// a link there (`lsetxattr`; the kernel refuses `user.*` on a symlink).
pub fn set_xattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    key: impl rustix::path::Arg,
    value: &[u8],
) -> Result<(), Errno> {
    fs::lsetxattr(fd_path(dir, name), key, value, fs::XattrFlags::empty())
}

/// The modification time of `st`.
pub fn mtime_of(st: &fs::Stat) -> fs::Timespec {
    fs::Timespec {
        tv_sec: st.st_mtime as _,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

/// Open the directory at `path` itself to hold, refusing a symlink there (the directories
/// on the way are the caller's): the top of a tree walked with [`walk`].
pub fn open_nofollow(path: &Path) -> Result<OwnedFd, PathError> {
    fs::openat(fs::CWD, path, DIR_FLAGS, Mode::empty()).map_err(PathError::at(path))
}

/// Open the directory reached from `at` through `names`, one name at a time, never
/// following a symlink (a link or a non-directory on the way is `ENOTDIR` or `ELOOP`). No names:
/// `at` opened again. On error, the index of the name that failed and the errno (with no
/// names, index 0: `at` could not be opened again).
pub fn open_dir_nofollow<I>(at: BorrowedFd<'_>, names: I) -> Result<OwnedFd, (usize, Errno)>
where
    I: IntoIterator,
    I::Item: rustix::path::Arg,
{
    let mut cur: Option<OwnedFd> = None;
    for (i, name) in names.into_iter().enumerate() {
        let from = cur.as_ref().map_or(at, |fd| fd.as_fd());
        cur = Some(fs::openat(from, name, DIR_FLAGS, Mode::empty()).map_err(|e| (i, e))?);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => fs::openat(at, c".", DIR_FLAGS, Mode::empty()).map_err(|e| (0, e)),
    }
}

/// An exclusive `flock` on `path` (made if missing), held until the file is dropped;
/// `None` when another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let f = lock_file(path)?;
    match fs::flock(&f, fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// [`try_lock`], waiting for the holder when there is one (`waiting` is called first, to
/// say so).
pub fn lock(path: &Path, waiting: impl FnOnce()) -> std::io::Result<std::fs::File> {
    if let Some(f) = try_lock(path)? {
        return Ok(f);
    }
    waiting();
    let f = lock_file(path)?;
    fs::flock(&f, fs::FlockOperation::LockExclusive)?;
    Ok(f)
}

fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Write `data` to `path` with `mode`, atomically: a temporary file in the same directory
/// (made if missing), then a rename, so a reader sees the old content or the new, never
/// part of it.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        // The mode as given, not as the umask left it.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

mod walk;
pub use walk::{walk, Entry};

#[cfg(test)]
mod tests;
