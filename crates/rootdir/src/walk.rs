//! Walking a whole tree through directory handles, never following a symlink.

use crate::{get_xattr_at, open_nofollow, read_names, set_xattr_at, PathError, DIR_FLAGS};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One entry met by [`walk`].
pub struct Entry<'a> {
    /// Path relative to the top, starting with `/` (the top itself is `/`).
    pub path: &'a Path,
    /// The entry's own `lstat` (a symlink is reported as a link).
    pub stat: &'a Stat,
    /// The directory that holds the entry and its name there (`None` for the top).
    pub parent: Option<(BorrowedFd<'a>, &'a OsStr)>,
    /// The top directory of the walk (the entry itself when `parent` is `None`).
    pub top: BorrowedFd<'a>,
    /// The top's path on the host, for messages.
    pub top_path: &'a Path,
}

impl Entry<'_> {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }

    /// The entry's path on the host, for messages only.
    pub fn shown(&self) -> PathBuf {
        shown(self.top_path, self.path)
    }

    /// The extended attribute `key` of the entry itself (a link's own, never its
    /// target's): its length in `buf`.
    pub fn get_xattr(&self, key: &str, buf: &mut [u8]) -> Result<usize, Errno> {
        match self.parent {
            Some((dir, name)) => get_xattr_at(dir, name.as_bytes(), key, buf),
            None => fs::fgetxattr(self.top, key, buf),
        }
    }

    /// Set the extended attribute `key` of the entry itself to `value`.
    pub fn set_xattr(&self, key: &str, value: &[u8]) -> Result<(), Errno> {
        match self.parent {
            Some((dir, name)) => set_xattr_at(dir, name.as_bytes(), key, value),
            None => fs::fsetxattr(self.top, key, value, fs::XattrFlags::empty()),
        }
    }
}

fn shown(top: &Path, rel: &Path) -> PathBuf {
    top.join(rel.strip_prefix("/").unwrap_or(rel))
}

/// Visit every entry of the tree at `top` (the top first, then depth-first in bytewise
/// name order), never following a symlink, the top included ([`open_nofollow`]). An error
/// of the walk names the entry's path on the host; one of `f` stops the walk.
pub fn walk<E: From<PathError>>(
    top: &Path,
    f: &mut dyn FnMut(&Entry) -> Result<(), E>,
) -> Result<(), E> {
    let fd = open_nofollow(top)?;
    walk_at(fd.as_fd(), top, f)
}

/// [`walk`] from a top directory already held (`top_path` is for messages).
fn walk_at<E: From<PathError>>(
    top: BorrowedFd<'_>,
    top_path: &Path,
    f: &mut dyn FnMut(&Entry) -> Result<(), E>,
) -> Result<(), E> {
    let st = fs::fstat(top).map_err(PathError::at(top_path))?;
    f(&Entry {
        path: Path::new("/"),
        stat: &st,
        parent: None,
        top,
        top_path,
    })?;
    walk_dir(top, &mut PathBuf::from("/"), top, top_path, f)
}

fn walk_dir<E: From<PathError>>(
    dir: BorrowedFd<'_>,
    rel: &mut PathBuf,
    top: BorrowedFd<'_>,
    top_path: &Path,
    f: &mut dyn FnMut(&Entry) -> Result<(), E>,
) -> Result<(), E> {
    let mut names = read_names(dir).map_err(PathError::at(shown(top_path, rel)))?;
    names.sort_unstable();
    for n in names {
        let name = OsStr::from_bytes(&n);
        rel.push(name);
        let st = fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(PathError::at(shown(top_path, rel)))?;
        f(&Entry {
            path: rel,
            stat: &st,
            parent: Some((dir, name)),
            top,
            top_path,
        })?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub: OwnedFd = fs::openat(dir, name, DIR_FLAGS, Mode::empty())
                .map_err(PathError::at(shown(top_path, rel)))?;
            walk_dir(sub.as_fd(), rel, top, top_path, f)?;
        }
        rel.pop();
    }
    Ok(())
}
