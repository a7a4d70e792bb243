//! Portage from PyPI in a private venv, for hosts that are not Gentoo.
//!
//! The venv is made from the system interpreter (`/usr/bin/python3`): a venv on an
//! interpreter under `/root` fails inside ebuild phases, where the unprivileged `portage`
//! user runs python (see docs/portage.md). The version is pinned, and Keel patches one bash
//! race out of it ([`PATCH`]); the venv's directory name carries both, so a new pin or a
//! new patch makes a new venv.

use exec::Cmd;
use std::path::{Path, PathBuf};

/// The pinned PyPI `portage` release.
pub const PORTAGE_VERSION: &str = "3.0.83";
/// Keel's patch to it, applied in the venv's `lib/portage`: Portage's helpers check a
/// process substitution's status with `wait "$!"`, which bash 5.2.15 (Debian 12) sometimes
/// answers with -1 for one that has already exited (the file's header has the numbers).
pub const PATCH: &str = include_str!("portage-3.0.83-procsub-wait.patch");
/// What a venv holds (its directory's name and its stamp): the version and Keel's patch level.
pub const VENV_ID: &str = "3.0.83-keel1";
const PYTHON: &str = "/usr/bin/python3";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The venv directory under a build directory (`build/tools/portage-3.0.83-keel1`).
pub fn venv_dir(build_dir: &Path) -> PathBuf {
    build_dir.join("tools").join(format!("portage-{VENV_ID}"))
}

/// A venv made elsewhere (`KEEL_PORTAGE_VENV`): complete, and of the pinned version.
pub fn check(dir: &Path) -> Result<PathBuf, Error> {
    let stamp = dir.join(".keel-complete");
    match std::fs::read_to_string(&stamp) {
        Ok(v) if v.trim() == VENV_ID => Ok(dir.to_owned()),
        Ok(v) => Err(Error::Invalid(format!(
            "KEEL_PORTAGE_VENV={}: holds Portage {}, Keel pins {VENV_ID} (make one with `keel tools portage-venv`)",
            dir.display(),
            v.trim()
        ))),
        Err(e) => Err(Error::Invalid(format!(
            "KEEL_PORTAGE_VENV={}: not a complete Portage venv ({}: {e})",
            dir.display(),
            stamp.display()
        ))),
    }
}

/// Make sure the venv exists and holds the pinned Portage; returns its directory.
/// A venv is complete only when its stamp exists: an interrupted install is redone.
pub fn ensure(build_dir: &Path) -> Result<PathBuf, Error> {
    let dir = venv_dir(build_dir);
    let stamp = dir.join(".keel-complete");
    if stamp.exists() {
        return Ok(dir);
    }
    let log = build_dir.join("logs/portage-venv.log");
    eprintln!(
        "keel: installing Portage {PORTAGE_VERSION} from PyPI into {} (log: {})",
        dir.display(),
        log.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            cause: source,
        })?;
    }
    Cmd::new(PYTHON)
        .args(["-m", "venv"])
        .arg(&dir)
        .log(&log)
        .run()?;
    Cmd::new(dir.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("portage=={PORTAGE_VERSION}"),
        ])
        .log(&log)
        .run()?;
    let patch = dir.join("keel-portage.patch");
    std::fs::write(&patch, PATCH).map_err(|source| Error::Io {
        path: patch.clone(),
        cause: source,
    })?;
    Cmd::new("patch")
        .args(["-p1", "--forward", "--no-backup-if-mismatch", "-d"])
        .arg(dir.join("lib/portage"))
        .arg("-i")
        .arg(&patch)
        .log(&log)
        .run()?;
    std::fs::write(&stamp, VENV_ID).map_err(|source| Error::Io {
        path: stamp,
        cause: source,
    })?;
    Ok(dir)
}
