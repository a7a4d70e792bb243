//! Walking a root through directory handles, never following symlinks.

use crate::Error;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Open a directory without following a symlink at its last component.
pub fn open_dir(at: impl AsFd, name: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Error::errno(shown))
}

/// Open the root directory itself.
pub fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    open_dir(CWD, root, root)
}

/// Open `rel` (a relative path inside the root) one component at a time, refusing to
/// follow any symlink. Returns the directory handle of `rel`.
pub fn open_beneath(root: &OwnedFd, rel: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    let mut cur = rustix::io::dup(root).map_err(Error::errno(shown))?;
    for comp in rel.components() {
        match comp {
            std::path::Component::Normal(c) => cur = open_dir(&cur, Path::new(c), shown)?,
            std::path::Component::CurDir | std::path::Component::RootDir => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: `..` is not allowed here",
                    shown.display()
                )))
            }
        }
    }
    Ok(cur)
}

/// One entry met by [`walk`].
pub struct Entry<'a> {
    /// Path relative to the root, starting with `/` (the root itself is `/`).
    pub path: &'a Path,
    pub stat: &'a Stat,
    /// The directory that holds the entry and its name there (None for the root).
    pub parent: Option<(&'a OwnedFd, &'a OsStr)>,
}

impl Entry<'_> {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// Visit every entry under `root` (the root first, then depth-first in name order),
/// never following a symlink.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Entry) -> Result<(), Error>) -> Result<(), Error> {
    let fd = open_root(root)?;
    let st = statat(&fd, "", AtFlags::EMPTY_PATH).map_err(Error::errno(root))?;
    f(&Entry {
        path: Path::new("/"),
        stat: &st,
        parent: None,
    })?;
    walk_dir(&fd, PathBuf::from("/"), root, f)
}

fn walk_dir(
    dir: &OwnedFd,
    rel: PathBuf,
    root: &Path,
    f: &mut dyn FnMut(&Entry) -> Result<(), Error>,
) -> Result<(), Error> {
    let shown = root.join(rel.strip_prefix("/").unwrap_or(&rel));
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut d = Dir::read_from(dir).map_err(Error::errno(&shown))?;
    while let Some(e) = d.next() {
        let e = e.map_err(Error::errno(&shown))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    for n in names {
        let name = OsStr::from_bytes(&n);
        let path = rel.join(name);
        let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(Error::errno(&shown.join(name)))?;
        f(&Entry {
            path: &path,
            stat: &st,
            parent: Some((dir, name)),
        })?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = open_dir(dir, Path::new(name), &shown.join(name))?;
            walk_dir(&sub, path, root, f)?;
        }
    }
    Ok(())
}
