//! Walking a root through directory handles, never following symlinks: `rootdir`'s walk
//! with this crate's errors.

use crate::Error;
use rustix::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

pub use rootdir::Entry;

/// Open the root directory itself.
pub fn open_root(root: &Path) -> Result<OwnedFd, Error> {
    Ok(rootdir::open_nofollow(root)?)
}

/// Open `rel` (a relative path inside the root) one component at a time, refusing to
/// follow any symlink. Returns the directory handle of `rel`.
pub fn open_beneath(root: &OwnedFd, rel: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    let mut names = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(c) => names.push(c),
            Component::CurDir | Component::RootDir => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: `..` is not allowed here",
                    shown.display()
                )))
            }
        }
    }
    rootdir::open_dir_nofollow(root.as_fd(), names).map_err(|(_, e)| Error::errno(shown)(e))
}

/// Visit every entry under `root` (the root first, then depth-first in name order),
/// never following a symlink.
pub fn walk(root: &Path, f: &mut dyn FnMut(&Entry) -> Result<(), Error>) -> Result<(), Error> {
    rootdir::walk(root, f)
}
