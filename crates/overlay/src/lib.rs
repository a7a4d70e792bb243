//! Overlay sync into a root: the semantics of `rsync -rlptgoD -O --chown=0:0 SRC/ DEST/`,
//! with no rsync at run time, confined to DEST.
//!
//! [`sync`] copies the contents of each source directory into DEST, in order (a later
//! source wins where two hold the same name): regular files (content, permission bits, mtime),
//! symlinks (target verbatim, never followed), directories (created with the source's
//! permission bits; their mtimes are never copied), fifos, sockets and device nodes.
//! Everything written is owned by 0:0. [`set_mtime`] then sets one path's mtime (the
//! pipeline's `/usr` := build time).
//!
//! **Architecture invariant:** nothing under DEST is reached by a path string. DEST is opened
//! once; every later operation is a (directory handle, single name) pair: `openat` with
//! `O_NOFOLLOW`, `fstatat`/`utimensat` with `AT_SYMLINK_NOFOLLOW`, `mkdirat`, `mknodat`,
//! `symlinkat`, `renameat`, `unlinkat`, and `rootdir`'s `lchown_at` (through the directory
//! handle's `/proc` path) and `chmod_nofollow` (through an `O_PATH` handle).
//! A symlink inside DEST is therefore replaced or left alone, never followed, whatever it
//! points at. Paths appear only in error messages.
//!
//! **Atomicity:** DEST never holds a partially written file at a final name. A new file is
//! written as an unnamed file (`O_TMPFILE`) in its directory and linked in (`linkat`) only
//! when complete; a file replacing an existing entry is written to a temporary name in the
//! same directory (`.keel.PID.N`) and renamed over it; symlinks and special files are made
//! at a temporary name and renamed the same way.
//!
//! **Threads:** one source is synced at a time (a later source's entries are written after
//! every entry of the earlier ones). Within a source, worker threads take directories from
//! a shared stack of (source handle, DEST handle) jobs; each directory's entries are
//! handled by the one worker that took it, so no two threads ever touch the same name. The
//! result, the stats and the error list (sorted into depth-first walk order) do not depend
//! on the number of threads.

mod sync;

/// Timestamps that set the mtime to `mtime` and leave the access time alone.
fn only_mtime(mtime: rustix::fs::Timespec) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: mtime,
    }
}

use std::io;
use std::path::{Component, Path, PathBuf};

pub use sync::{sync, sync_with_threads};

/// What a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Directories created in DEST.
    pub dirs_created: u64,
    /// Regular files written (new or changed).
    pub files_written: u64,
    /// Regular files left alone because size and mtime matched (rsync's quick check).
    pub files_unchanged: u64,
    /// Symlinks created or replaced.
    pub symlinks_written: u64,
    /// Fifos, sockets and device nodes created or replaced.
    pub specials_written: u64,
    /// Bytes of file content copied.
    pub bytes_copied: u64,
}

/// Everything that can go wrong; each variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source `{}`: {cause}", path.display())]
    Source { path: PathBuf, cause: io::Error },
    #[error("source `{}` is not a directory", path.display())]
    SourceNotDir { path: PathBuf },
    #[error("destination `{}`: {cause}", path.display())]
    Dest { path: PathBuf, cause: io::Error },
    #[error("destination `{}` is not a directory", path.display())]
    DestNotDir { path: PathBuf },
    /// DEST is a source, is inside one, or holds one, by identity (device and inode), not by
    /// the paths' strings: the sync would copy its own output without end (`sync b b/in`),
    /// or write into a source as it reads it. Refused before anything is written.
    #[error("destination `{}` {} source `{}`; {}", dest.display(), nesting.relation(), src.display(), nesting.consequence())]
    Nested {
        dest: PathBuf,
        src: PathBuf,
        nesting: Nesting,
    },
    /// Reading a source entry failed.
    #[error("cannot {op} source `{}`: {cause}", path.display())]
    Read {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// Writing a DEST entry failed.
    #[error("cannot {op} `{}`: {cause}", path.display())]
    Write {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("cannot copy `{}` to `{}`: {cause}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        cause: io::Error,
    },
    /// A non-empty directory in DEST where the source has a non-directory: kept, as rsync
    /// without `--force` keeps it ("cannot delete non-empty directory").
    #[error("cannot replace non-empty directory `{}` with a {kind}", path.display())]
    NonEmptyDir { path: PathBuf, kind: &'static str },
    #[error("`{}`: unsupported file type in source", path.display())]
    UnsupportedType { path: PathBuf },
    /// A path given to [`set_mtime`] that leaves the root or crosses a symlink.
    #[error("`{}` inside `{}`: {why}", path.display(), root.display())]
    BadPath {
        root: PathBuf,
        path: PathBuf,
        why: String,
    },
    /// Some entries failed; every other entry was synced (as rsync continues and exits 23).
    #[error("{} entr{} could not be synced:\n{}", errors.len(), if errors.len() == 1 { "y" } else { "ies" }, list(errors))]
    Incomplete { errors: Vec<Error>, stats: Stats },
}

/// How DEST and a source are nested, for [`Error::Nested`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// DEST is the source directory itself.
    Same,
    /// DEST is below the source (or would be created below it).
    Inside,
    /// The source is below DEST.
    Contains,
}

impl Nesting {
    fn relation(self) -> &'static str {
        match self {
            Nesting::Same => "is the same directory as",
            Nesting::Inside => "is inside",
            Nesting::Contains => "contains",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Nesting::Same => "a directory cannot be synced onto itself",
            Nesting::Inside => "the copy would contain itself",
            Nesting::Contains => "the sync would write into the source as it reads it",
        }
    }
}

fn list(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A modification time: seconds since the epoch (may be negative) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtime {
    pub secs: i64,
    pub nsecs: u32,
}

impl Mtime {
    pub fn from_secs(secs: i64) -> Self {
        Mtime { secs, nsecs: 0 }
    }
}

/// Set the mtime of `path` inside `root` (e.g. `/usr` := build time). `path` is taken
/// relative to `root` (a leading `/` is allowed); `..` is refused. No component is followed
/// as a symlink: an intermediate symlink is an error, and a final symlink gets its own mtime
/// changed, not its target's. The access time is left alone.
pub fn set_mtime(root: &Path, path: &Path, mtime: Mtime) -> Result<(), Error> {
    use rustix::fd::AsFd;
    use rustix::fs::{self as fs, AtFlags, Mode, OFlags, Timespec};

    let bad = |why: &str| Error::BadPath {
        root: root.to_owned(),
        path: path.to_owned(),
        why: why.to_owned(),
    };
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => names.push(n),
            Component::ParentDir => return Err(bad("`..` is not allowed")),
            Component::Prefix(_) => return Err(bad("not a Unix path")),
        }
    }
    let open_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let dir = fs::open(root, open_flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::NOTDIR => Error::DestNotDir {
            path: root.to_owned(),
        },
        e => Error::Dest {
            path: root.to_owned(),
            cause: e.into(),
        },
    })?;
    let times = only_mtime(Timespec {
        tv_sec: mtime.secs,
        tv_nsec: mtime.nsecs.into(),
    });
    let display = |upto: usize| {
        let mut p = root.to_owned();
        p.extend(&names[..upto]);
        p
    };
    let Some((last, parents)) = names.split_last() else {
        return fs::futimens(&dir, &times).map_err(|e| Error::Write {
            op: "set the mtime of",
            path: root.to_owned(),
            cause: e.into(),
        });
    };
    let dir = rootdir::open_dir_nofollow(dir.as_fd(), parents.iter().copied()).map_err(
        |(i, e)| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Error::BadPath {
                root: root.to_owned(),
                path: path.to_owned(),
                why: format!(
                    "`{}` is a symlink or not a directory; not followed",
                    display(i + 1).display()
                ),
            },
            e => Error::Write {
                op: "open",
                path: display(i + 1),
                cause: e.into(),
            },
        },
    )?;
    fs::utimensat(&dir, *last, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Error::Write {
        op: "set the mtime of",
        path: display(names.len()),
        cause: e.into(),
    })
}
