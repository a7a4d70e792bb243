//! The end of the pipeline: fixups of the finished root, the image, and manifests.
//!
//! Everything that walks or changes a root goes through directory handles opened with
//! `O_NOFOLLOW` (see [`walk`]): a symlink inside the root is never followed, so nothing
//! outside the root is read or changed.

pub mod fixups;
pub mod make;
pub mod manifest;
pub mod walk;

use rootdir::PathError;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |e| PathError::at(path)(e).into()
    }
    pub fn errno(path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error + '_ {
        move |e| PathError::at(path)(e).into()
    }
}
